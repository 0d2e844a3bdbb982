import json
import os
import threading

import pytest

from resumo import storage
from resumo.errors import StorageError


@pytest.fixture(params=["file", "s3"])
def prefix(request, tmp_path):
    """The same tests over a local folder and the loopback S3 endpoint."""
    if request.param == "file":
        return str(tmp_path / "store")
    return request.getfixturevalue("s3") + "/store"


def test_write_read_roundtrip(prefix):
    uri = storage.join(prefix, "a/b.json")
    storage.write_text(uri, json.dumps({"ação": 1}))
    assert json.loads(storage.read_text(uri)) == {"ação": 1}
    assert storage.exists(uri)
    assert not storage.exists(storage.join(prefix, "a/missing.json"))


def test_list_keys_is_relative_and_sorted(prefix):
    for key in ["z.txt", "m/2.txt", "m/1.txt"]:
        storage.write_text(storage.join(prefix, key), key)
    assert storage.list_keys(prefix) == ["m/1.txt", "m/2.txt", "z.txt"]
    assert storage.list_keys(storage.join(prefix, "m")) == ["1.txt", "2.txt"]


def test_upload_and_download_a_folder(prefix, tmp_path):
    src = tmp_path / "model"
    (src / "sub").mkdir(parents=True)
    (src / "config.json").write_text("{}")
    (src / "sub" / "weights.bin").write_bytes(os.urandom(2048))
    keys = storage.upload(src, storage.join(prefix, "models/v1"))
    assert keys == ["config.json", "sub/weights.bin"]
    back = storage.download(storage.join(prefix, "models/v1"), tmp_path / "back")
    assert (back / "sub" / "weights.bin").read_bytes() == (src / "sub" / "weights.bin").read_bytes()


def test_missing_object_is_a_storage_error(prefix):
    with pytest.raises(StorageError, match="does not exist"):
        storage.read_bytes(storage.join(prefix, "nope"))


@pytest.mark.parametrize("key", ["../escape", "a/../../b", "/abs", "", "a/./b", "a\\b"])
def test_keys_cannot_escape_their_prefix(key):
    with pytest.raises(StorageError, match="escape"):
        storage.join("s3://bucket/registry", key)


def test_local_writes_are_atomic(tmp_path):
    """A reader polling the file sees the old or the new content, never a mix or nothing."""
    path = tmp_path / "pointer.json"
    old, new = b"o" * 1_000_000, b"n" * 1_000_000
    storage.write_bytes(path, old)
    seen, stop = set(), threading.Event()

    def reader():
        while not stop.is_set():
            data = path.read_bytes()
            seen.add(data[:1] + data[-1:])

    t = threading.Thread(target=reader)
    t.start()
    for _ in range(20):
        storage.write_bytes(path, new)
        storage.write_bytes(path, old)
    stop.set()
    t.join()
    assert seen <= {b"oo", b"nn"}
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_unreachable_endpoint_is_one_clear_error(monkeypatch):
    from tests.conftest import free_port

    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with pytest.raises(StorageError, match="cannot reach the S3 endpoint"):
        storage.write_text("s3://bucket/key", "x")


def test_parse_schemes(tmp_path):
    assert storage.parse("s3://b/k/x").bucket == "b"
    assert storage.parse(f"file://{tmp_path}/x").key == f"{tmp_path}/x"
    with pytest.raises(StorageError, match="unsupported scheme"):
        storage.parse("gs://b/k")
