"""The registry's production pointer (`production.json` under `promote.registry`), as its readers need it.

Every read and write of the pointer is here. promote moves it by
compare-and-swap (`read_tagged`, then `move`); everything else only reads it
(`current_production`): the model registry that follows production, the
`registry` model reference (resumo.generation), and tune.policy reusing
production's hyperparameters. None of them imports promote.
"""

from __future__ import annotations

import hashlib
import json

from resumo import storage
from resumo.artifacts import POINTER, VERSIONS
from resumo.errors import DataError


def uri(registry: str) -> str:
    """Where the registry's production pointer lies."""
    return storage.join(registry, POINTER)


def read_tagged(registry: str) -> tuple[dict | None, str | None]:
    """The production pointer and its tag (for compare-and-swap), or (None, None) before the first promotion."""
    pointer_uri = uri(registry)
    found = storage.read_tagged(pointer_uri)
    if found is None:
        return None, None
    data, tag = found
    try:
        return json.loads(data), tag
    except json.JSONDecodeError as err:
        raise DataError(f"{pointer_uri} is not JSON ({err}); restore it from {VERSIONS}/<version>/ or remove it to start a new registry") from None


def move(registry: str, pointer: dict, tag: str | None) -> None:
    """Write `pointer` if the stored one still has `tag` (None: if there is none yet); storage.StaleWrite if it moved."""
    storage.write_if_unchanged(uri(registry), json.dumps(pointer, indent=2).encode(), tag)


def current_production(registry: str, verify: bool = False) -> dict | None:
    """The production pointer, or None; with `verify`, every file of its manifest is read back and checked."""
    pointer, _ = read_tagged(registry)
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
