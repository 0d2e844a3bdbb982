"""Object storage by URI: `s3://bucket/key`, `file:///path` and plain paths.

KFP moves artifacts inside one run; this module is for what outlives a run
(the model registry, caches, Katib trial outputs). S3 settings come from the
environment as boto3 reads them (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION), never from config files.

Writes are atomic: a local write goes to a temporary file that is renamed into
place, and an S3 PUT is all-or-nothing, so a reader never sees half an object.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlparse

from resumo.errors import StorageError


@dataclass(frozen=True)
class Location:
    scheme: str  # "s3" or "file"
    bucket: str  # empty for files
    key: str  # the S3 key, or the local path

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}" if self.scheme == "s3" else self.key


def parse(uri: str | Path) -> Location:
    text = str(uri)
    if text.startswith("s3://"):
        parsed = urlparse(text)
        if not parsed.netloc:
            raise StorageError(f"{text!r} has no bucket; write s3://BUCKET/KEY")
        return Location("s3", parsed.netloc, parsed.path.lstrip("/"))
    if text.startswith("file://"):
        text = urlparse(text).path
    elif "://" in text:
        raise StorageError(f"{text!r}: unsupported scheme; use s3://, file:// or a plain path")
    return Location("file", "", str(Path(text).expanduser()))


def join(prefix: str | Path, key: str) -> str:
    """`prefix/key`, refusing keys that would escape the prefix (`..`, absolute paths)."""
    if not key or key.startswith("/") or "\\" in key or any(part in ("..", ".") for part in key.split("/")):
        raise StorageError(f"key {key!r} would escape prefix {str(prefix)!r}; use a relative key without '..'")
    return f"{str(prefix).rstrip('/')}/{key}"


def write_bytes(uri: str | Path, data: bytes) -> None:
    loc = parse(uri)
    if loc.scheme == "s3":
        _s3_call(loc, lambda c: c.put_object(Bucket=loc.bucket, Key=loc.key, Body=data))
        return
    path = Path(loc.key)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(uri: str | Path, text: str) -> None:
    write_bytes(uri, text.encode("utf-8"))


def read_bytes(uri: str | Path) -> bytes:
    loc = parse(uri)
    if loc.scheme == "s3":
        return _s3_call(loc, lambda c: c.get_object(Bucket=loc.bucket, Key=loc.key)["Body"].read())
    try:
        return Path(loc.key).read_bytes()
    except FileNotFoundError:
        raise StorageError(f"{loc} does not exist") from None


def read_text(uri: str | Path) -> str:
    return read_bytes(uri).decode("utf-8")


def exists(uri: str | Path) -> bool:
    loc = parse(uri)
    if loc.scheme == "file":
        return Path(loc.key).exists()
    from botocore.exceptions import ClientError

    try:
        _s3_call(loc, lambda c: c.head_object(Bucket=loc.bucket, Key=loc.key), passthrough=ClientError)
        return True
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise StorageError(f"cannot check {loc}: {err}") from None


def list_keys(prefix: str | Path) -> list[str]:
    """Keys under `prefix`, relative to it, sorted; files only for local paths."""
    loc = parse(prefix)
    if loc.scheme == "file":
        root = Path(loc.key)
        if not root.is_dir():
            return []
        return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and not p.name.endswith(".tmp"))
    base = loc.key.rstrip("/") + "/" if loc.key else ""

    def pages(client):
        paginator = client.get_paginator("list_objects_v2")
        return [obj["Key"][len(base):] for page in paginator.paginate(Bucket=loc.bucket, Prefix=base) for obj in page.get("Contents", [])]

    return sorted(_s3_call(loc, pages))


def delete_prefix(prefix: str | Path) -> int:
    """Delete every object under `prefix` (a local folder: the folder); how many were deleted."""
    loc = parse(prefix)
    if loc.scheme == "file":
        root = Path(loc.key)
        count = sum(1 for p in root.rglob("*") if p.is_file()) if root.is_dir() else 0
        shutil.rmtree(root, ignore_errors=True)
        return count
    base = loc.key.rstrip("/") + "/"
    keys = [base + key for key in list_keys(prefix)]
    for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1,000 keys
        batch = {"Objects": [{"Key": key} for key in keys[start : start + 1000]], "Quiet": True}
        _s3_call(loc, lambda c, batch=batch: c.delete_objects(Bucket=loc.bucket, Delete=batch))
    return len(keys)


def upload(local: str | Path, uri: str | Path) -> list[str]:
    """Copy a file, or a folder recursively, to `uri`. Returns the keys written."""
    local = Path(local)
    if local.is_file():
        write_bytes(uri, local.read_bytes())
        return [local.name]
    if not local.is_dir():
        raise StorageError(f"{local} does not exist; nothing to upload")
    keys = sorted(p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file())
    for key in keys:
        write_bytes(join(uri, key), (local / key).read_bytes())
    return keys


def download(uri: str | Path, local: str | Path) -> Path:
    """Copy an object, or every object under a prefix, to a local file or folder."""
    local = Path(local)
    keys = list_keys(uri)
    if not keys:
        if not exists(uri):
            raise StorageError(f"{uri} does not exist")
        write_bytes(local, read_bytes(uri))
        return local
    for key in keys:
        write_bytes(local / key, read_bytes(join(uri, key)))
    return local


@contextmanager
def local_input(uri: str | Path) -> Iterator[Path]:
    """`uri`'s file or folder as a local path: a path is itself, an s3:// object or prefix a temporary download."""
    loc = parse(uri)
    if loc.scheme == "file":
        yield Path(loc.key)
        return
    with tempfile.TemporaryDirectory(prefix="resumo-in-") as tmp:
        yield download(uri, Path(tmp) / (Path(loc.key).name or "input"))


@contextmanager
def local_output(uri: str | Path) -> Iterator[Path]:
    """A local folder for a tool that writes files: a path is itself; for an s3:// prefix, a temporary
    folder that starts with what the prefix holds (so a rerun resumes) and is uploaded when the block succeeds."""
    loc = parse(uri)
    if loc.scheme == "file":
        yield Path(loc.key)
        return
    with tempfile.TemporaryDirectory(prefix="resumo-out-") as tmp:
        folder = Path(tmp) / "out"
        if list_keys(uri):  # also the first request: an unreachable endpoint fails here, before any work
            download(uri, folder)
        folder.mkdir(exist_ok=True)
        yield folder
        upload(folder, uri)


@lru_cache(maxsize=4)
def _client(endpoint: str | None):
    import boto3
    from botocore.config import Config

    # Few, short retries: a wrong endpoint should fail in seconds, not minutes.
    config = Config(connect_timeout=5, read_timeout=60, retries={"max_attempts": 3, "mode": "standard"})
    return boto3.client("s3", endpoint_url=endpoint, config=config)


def _s3_call(loc: Location, call, passthrough: type[Exception] | None = None):
    from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError

    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    try:
        return call(_client(endpoint))
    except EndpointConnectionError:
        raise StorageError(f"cannot reach the S3 endpoint {endpoint or 'of AWS'} for {loc}; check AWS_ENDPOINT_URL and the network") from None
    except NoCredentialsError:
        raise StorageError(f"no S3 credentials for {loc}; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (on a cluster, mount the S3 Secret)") from None
    except ClientError as err:
        if passthrough is not None and isinstance(err, passthrough):
            raise
        code = err.response.get("Error", {}).get("Code", "?")
        if code in ("NoSuchKey", "404"):
            raise StorageError(f"{loc} does not exist") from None
        raise StorageError(f"S3 refused {loc}: {code} ({err.response.get('Error', {}).get('Message', '')})") from None
    except BotoCoreError as err:
        raise StorageError(f"S3 error for {loc}: {err}") from None


# --- compare-and-swap, for pointers that concurrent writers move -------------


class StaleWrite(StorageError):
    """The object changed (or appeared, or vanished) since it was read; read it again and decide anew."""


def read_tagged(uri: str | Path) -> tuple[bytes, str] | None:
    """The object's bytes and a tag that changes whenever it is rewritten (S3 ETag, sha256 locally); None if absent."""
    loc = parse(uri)
    if loc.scheme == "file":
        try:
            data = Path(loc.key).read_bytes()
        except FileNotFoundError:
            return None
        return data, hashlib.sha256(data).hexdigest()
    if not exists(uri):
        return None
    response = _s3_call(loc, lambda c: c.get_object(Bucket=loc.bucket, Key=loc.key))
    return response["Body"].read(), response["ETag"]


def write_if_unchanged(uri: str | Path, data: bytes, tag: str | None) -> None:
    """Write `data` only if the object still has `tag` from `read_tagged` (None: only if it does not exist yet).

    S3 makes the check and the write one step (PutObject with If-Match / If-None-Match);
    locally an exclusive flock on a sibling lock file serialises writers, across
    threads and processes, and the write itself is an atomic rename. Raises StaleWrite
    when another writer got there first.
    """
    loc = parse(uri)
    if loc.scheme == "s3":
        from botocore.exceptions import ClientError

        condition = {"IfMatch": tag} if tag is not None else {"IfNoneMatch": "*"}
        try:
            _s3_call(loc, lambda c: c.put_object(Bucket=loc.bucket, Key=loc.key, Body=data, **condition), passthrough=ClientError)
        except ClientError as err:
            code = err.response.get("Error", {}).get("Code", "?")
            # 412: the tag no longer matches; 409: a concurrent conditional write is in flight; NoSuchKey: it was deleted.
            if code in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409", "NoSuchKey", "404"):
                raise StaleWrite(f"{loc} changed since it was read ({code})") from None
            raise StorageError(f"S3 refused {loc}: {code} ({err.response.get('Error', {}).get('Message', '')})") from None
        return
    import fcntl

    path = Path(loc.key)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if this process dies
        current = read_tagged(path)
        if (current[1] if current else None) != tag:
            raise StaleWrite(f"{loc} changed since it was read")
        write_bytes(path, data)
