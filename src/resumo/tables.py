"""Parquet datasets between stages: one file per split, one row per article."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

from resumo import artifacts, storage
from resumo.errors import DataError

SPLITS = ("train", "val", "test")


def write_split(df: pd.DataFrame, folder: str | Path, split: str) -> str:
    """Write atomically, so a failed stage leaves an earlier output whole."""
    buffer = io.BytesIO()
    df.to_parquet(buffer, index=False)
    uri = storage.join(folder, artifacts.split_file(split))
    storage.write_bytes(uri, buffer.getvalue())
    return uri


def read_split(folder: str | Path, split: str, columns: list[str] | None = None) -> pd.DataFrame:
    uri = storage.join(folder, artifacts.split_file(split))
    if not storage.exists(uri):
        raise DataError(f"{uri} is missing; run the previous stage first (it writes {', '.join(SPLITS)})")
    df = pd.read_parquet(io.BytesIO(storage.read_bytes(uri)))
    missing = sorted(set(columns or []) - set(df.columns))
    if missing:
        raise DataError(f"{uri} lacks columns {missing}; it was written by another stage or version")
    return df


def read_table(path: str | Path, required: tuple[str, ...]) -> pd.DataFrame:
    """Rows of a JSONL (.jsonl, .json) or Parquet (.parquet) file that has the `required` columns."""
    path = Path(path)
    if path.suffix not in (".jsonl", ".json", ".parquet"):
        raise DataError(f"{path}: expected a .jsonl or .parquet file, not {path.suffix or 'no suffix'!r}")
    try:
        df = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_json(path, lines=True, dtype=False)
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: cannot read it as {path.suffix.lstrip('.')} ({err})") from None
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DataError(f"{path} has no {', '.join(f'`{c}`' for c in missing)} column (columns: {list(df.columns)})")
    if df.empty:
        raise DataError(f"{path} has no rows")
    return df
