"""CLI path options take what resumo.storage takes, or refuse the value in one line."""

import subprocess
import sys
from pathlib import Path

from tests.conftest import free_port

RESUMO = [sys.executable, "-c", "from resumo.cli import main; main()"]


def resumo(cwd: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([*RESUMO, *args], cwd=cwd, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=300)


def test_scrape_to_an_unreachable_s3_endpoint_fails_in_one_line_and_writes_nothing_here(tmp_path):
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}", "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}
    done = resumo(tmp_path, "scrape", "--out", "s3://bucket/x", env=env)
    assert done.returncode == 2
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: cannot reach the S3 endpoint") and "s3://bucket/x" in lines[0], done.stdout + done.stderr
    assert list(tmp_path.iterdir()) == []  # no `s3:` folder, nothing at all


def test_a_scheme_storage_does_not_take_is_refused_naming_the_option(tmp_path):
    for args in (["scrape", "--out", "gs://bucket/x"], ["train", "--pairs", "http://host/pairs", "--out", "out"], ["run", "--runs-dir", "s3://bucket/runs"]):
        done = resumo(tmp_path, *args)
        assert done.returncode == 2, args
        assert done.stderr.strip().count("\n") == 0 and done.stderr.startswith(f"error: {args[-2] if args[0] != 'train' else '--pairs'}"), done.stderr
    assert list(tmp_path.iterdir()) == []
