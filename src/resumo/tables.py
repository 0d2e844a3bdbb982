"""Parquet datasets between stages: one file per split, one row per article."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

from resumo import storage
from resumo.errors import DataError

SPLITS = ("train", "val", "test")


def write_split(df: pd.DataFrame, folder: str | Path, split: str) -> str:
    """Write atomically, so a failed stage leaves an earlier output whole."""
    buffer = io.BytesIO()
    df.to_parquet(buffer, index=False)
    uri = storage.join(folder, f"{split}.parquet")
    storage.write_bytes(uri, buffer.getvalue())
    return uri


def read_split(folder: str | Path, split: str, columns: list[str] | None = None) -> pd.DataFrame:
    uri = storage.join(folder, f"{split}.parquet")
    if not storage.exists(uri):
        raise DataError(f"{uri} is missing; run the previous stage first (it writes {', '.join(SPLITS)})")
    df = pd.read_parquet(io.BytesIO(storage.read_bytes(uri)))
    missing = sorted(set(columns or []) - set(df.columns))
    if missing:
        raise DataError(f"{uri} lacks columns {missing}; it was written by another stage or version")
    return df
