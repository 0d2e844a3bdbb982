"""The registry's production pointer (`production.json` under `promote.registry`), as its readers need it.

promote moves the pointer (by compare-and-swap, reading it with its tag through
`artifacts.read_pointer`); everything else only reads it: the model registry
that follows production, the `registry` model reference (resumo.generation), and
tune.policy reusing production's hyperparameters. They read it here, so none of
them imports promote.
"""

from __future__ import annotations

import hashlib
import json

from resumo import artifacts, storage
from resumo.errors import DataError


def current_production(registry: str, verify: bool = False) -> dict | None:
    """The production pointer, or None; with `verify`, every file of its manifest is read back and checked."""
    pointer, _ = artifacts.read_pointer(registry)
    if pointer is not None and verify:
        verify_version(pointer)
    return pointer


def verify_version(pointer: dict) -> None:
    """Check the manifest's hash and every file's size and sha256; raise DataError on the first mismatch."""
    raw = storage.read_bytes(pointer["manifest"])
    if hashlib.sha256(raw).hexdigest() != pointer["manifest_sha256"]:
        raise DataError(f"{pointer['manifest']} does not match the sha256 in the pointer; the version {pointer['version']} was altered")
    manifest = json.loads(raw)
    for key, expected in manifest["files"].items():
        check_file(storage.join(manifest["prefix"], key), expected)


def check_file(uri: str, expected: dict) -> None:
    """`uri` reads back with the size and sha256 of its manifest entry `expected`, else DataError."""
    data = storage.read_bytes(uri)
    if len(data) != expected["size"] or hashlib.sha256(data).hexdigest() != expected["sha256"]:
        raise DataError(f"{uri} reads back as {len(data)} bytes that do not match its manifest entry {expected}; the pointer was not moved")
