"""The local model cache ($RESUMO_CACHE): folders made once, whole or not at all.

Beneath resumo.models (s3:// models downloaded once) and resumo.real_models
(real models converted once), which both keep their folders here.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def cache_dir() -> Path:
    return Path(os.environ.get("RESUMO_CACHE", Path.home() / ".cache" / "resumo"))


def made_once(target: Path, marker: str, make) -> Path:
    """`target`, made by `make(folder)` the first time, which writes `marker` last.

    It is made in a folder beside the target and renamed into place, so parallel
    processes (test workers, pods sharing a cache) never see half of it.
    """
    if (target / marker).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    try:
        make(staging)
        try:
            staging.rename(target)
        except OSError:
            if not (target / marker).exists():  # left by an older layout without the marker
                shutil.rmtree(target)
                staging.rename(target)
            # else another process finished first; what it made is the same
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
