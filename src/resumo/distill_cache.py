"""Content-addressed cache of teacher answers in object storage (s3:// or a path).

One object per answer, `<prefix>/<key[:2]>/<key>.json`, where the key is the
SHA-256 of everything that decides the answer: the article (id, revision), the
exact prompt the teacher saw (version and the rendered messages, so the text and
`n_words` too), the teacher (backend, model) and the generation settings. A
recurring run therefore asks the teacher only about new or changed articles,
and a new prompt, teacher or setting is a clean miss, never a stale hit.

The revision alone is not enough: the same revision cut to another token budget,
or cleaned by a newer scraper, is a different input. Without a revision column
the text's hash stands in for it.

The raw answer is stored, before cleaning and filtering, so a better filter
applies to cached answers without asking the teacher again.
"""

from __future__ import annotations

import hashlib
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

from resumo import prompts, storage
from resumo.config import PromptConfig, TeacherConfig
from resumo.errors import StorageError

log = logging.getLogger(__name__)

# Bump when the key's material or the object's layout changes.
CACHE_FORMAT = "1"
# Parallel GETs/PUTs; below botocore's default pool of 10 connections.
IO_THREADS = 8
# Columns that name an article's revision: scrape's, then the name other tables often use.
REVISION_COLUMNS = ("revid", "revision_id")


def key_material(article_id: str, revision: str | None, text: str, teacher: TeacherConfig, prompt: PromptConfig) -> dict:
    """What the key hashes, also stored in the object so a cache entry explains itself."""
    messages = prompts.user_message(text, prompt)
    return {
        "format": CACHE_FORMAT,
        "article": {"id": str(article_id), "revision": revision or "text-sha256:" + _sha256(text)},
        "prompt": {"version": prompt.version, "messages_sha256": _sha256(json.dumps(messages, ensure_ascii=False, sort_keys=True))},
        # The extractive teacher has no model, only its rule (its word limit is in the prompt): a
        # new rule misses the answers of the old one ("lead-nearest" replaced whole-sentences-that-fit).
        "teacher": {"backend": teacher.backend, "model": "lead-nearest" if teacher.backend == "extractive" else teacher.model},
        "generation": {"greedy": True, "max_new_tokens": teacher.max_new_tokens},
    }


def cache_key(material: dict) -> str:
    return _sha256(json.dumps(material, sort_keys=True, ensure_ascii=False))


@dataclass(frozen=True)
class TeacherCache:
    prefix: str

    def uri(self, key: str) -> str:
        return storage.join(self.prefix, f"{key[:2]}/{key}.json")

    def get_many(self, keys: list[str]) -> dict[str, str]:
        """The cached answers among `keys`; a missing or unreadable entry is a miss."""
        with ThreadPoolExecutor(IO_THREADS) as pool:
            found = dict(zip(keys, pool.map(self._get, keys)))
        return {key: answer for key, answer in found.items() if answer is not None}

    def put_many(self, entries: dict[str, tuple[dict, str]]) -> None:
        """Store answers, key -> (key material, raw answer); each PUT is atomic."""
        with ThreadPoolExecutor(IO_THREADS) as pool:
            list(pool.map(lambda item: self._put(item[0], *item[1]), entries.items()))

    def _get(self, key: str) -> str | None:
        uri = self.uri(key)
        try:
            data = storage.read_bytes(uri)
        except StorageError:
            if storage.exists(uri):
                raise  # the object is there but unreadable: a permissions or endpoint problem to fix, not a miss
            return None
        try:
            entry = json.loads(data)
            return str(entry["answer"])
        except (ValueError, KeyError, TypeError):
            log.warning("cache entry %s is corrupt; asking the teacher again", uri)
            return None

    def _put(self, key: str, material: dict, answer: str) -> None:
        entry = {"key": key, "material": material, "answer": answer, "written_at": datetime.now(UTC).isoformat(timespec="seconds")}
        storage.write_text(self.uri(key), json.dumps(entry, ensure_ascii=False))


def revision_of(row: dict) -> str | None:
    for column in REVISION_COLUMNS:
        value = row.get(column)
        if value is not None and str(value) not in ("", "0", "nan", "None"):
            return str(value)
    return None


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
