"""Cleaned articles kept between runs in object storage (s3:// or a path): `scrape.cache`.

Cleaning (parsing wikitext, cutting to the token budget) is what a scrape
spends its CPU on, about 170 pages/s on 2 cores, so ptwiki's 1.1 M pages take
hours. A page's cleaned row depends only on its revision and the cleaning
settings, so it is cached by (page id, revision id, cleaning version):

    <cache>/<cleaning key>/rows.parquet      every collected row of the last run (the pool, before selection)
    <cache>/<cleaning key>/skipped.parquet   page_id, revid, title, reason of the pages it skipped
    <cache>/<cleaning key>/state.json        the API source's endpoint and the wiki's clock when the last run began listing
    <cache>/splits/<split key>.parquet       page_id, split: which split each article went to

The cleaning key hashes `CLEANING_VERSION` and every setting that changes a row
(tokenizer, token budget range and seed, min_words); a new cleaner or setting
is a clean miss. A run reads the whole snapshot once and writes it once, after
it succeeded, atomically: one object per page (the teacher cache's layout)
would cost a million GETs per run where this costs two. Pages absent from a
run's source (deleted) leave the snapshot with that run.

Splits are sticky: an article keeps the split it was first given, whatever
its revision, so an article never moves from test into training. Articles new
to the cache are dealt to train and val only (by a hash of seed and page id,
in their train:val ratio): the test set stays the same articles run after run,
minus deleted ones, and scores stay comparable with the production model's. A
new split seed or fractions is a new split key, and splits afresh.

With the API source listing every article (`scrape.api.pages = all`), a run
after a successful one lists only what changed since that run began
(list=recentchanges, resumo.mediawiki.recent_changes), fetches and cleans those
pages, and carries the last run's other pages over; deleted pages are dropped.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from dataclasses import dataclass, field

import pandas as pd

from resumo import storage
from resumo.config import ScrapeConfig, SplitConfig

log = logging.getLogger(__name__)

# Bump when the cleaner's output for the same wikitext changes (resumo.wiki, resumo.scrape._article).
CLEANING_VERSION = "1"
ROWS, SKIPPED, SPLITS, STATE = "rows.parquet", "skipped.parquet", "splits", "state.json"
# Wikimedia wikis keep recent changes 90 days ($wgRCMaxAge); a last run older than that lists everything again.
RC_MAX_AGE_DAYS = 90


def cleaning_key(cfg: ScrapeConfig) -> str:
    settings = {"version": CLEANING_VERSION, "tokenizer": cfg.tokenizer, "min_tokens": cfg.min_tokens, "max_tokens": cfg.max_tokens, "seed": cfg.split.seed, "min_words": cfg.min_words}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def split_key(cfg: SplitConfig) -> str:
    return hashlib.sha256(json.dumps(cfg.model_dump(), sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class ArticleCache:
    """The last run's outcomes, by (page id, revision), and this run's, collected as it goes."""

    prefix: str
    cfg: ScrapeConfig
    known: dict[tuple[int, int], tuple[dict | None, str | None]] = field(default_factory=dict)
    skipped: list[dict] = field(default_factory=list)  # this run's skips: (page_id, revid, title, reason)
    titles: dict[int, str] = field(default_factory=dict)  # page id -> title of every cached page
    state: dict = field(default_factory=dict)  # the last run's state.json
    listed_at: str | None = None  # the wiki's clock when this run began listing (API source)

    @classmethod
    def open(cls, cfg: ScrapeConfig) -> ArticleCache | None:
        if not cfg.cache:
            return None
        cache = cls(storage.join(cfg.cache, cleaning_key(cfg)), cfg)
        for row in _read(storage.join(cache.prefix, ROWS)):
            cache.known[(int(row["page_id"]), int(row["revid"]))] = (row, None)
            cache.titles[int(row["page_id"])] = row["title"]
        for row in _read(storage.join(cache.prefix, SKIPPED)):
            cache.known[(int(row["page_id"]), int(row["revid"]))] = (None, row["reason"])
            cache.titles[int(row["page_id"])] = row["title"]
        state_uri = storage.join(cache.prefix, STATE)
        cache.state = json.loads(storage.read_text(state_uri)) if storage.exists(state_uri) else {}
        log.info("scrape: %d pages cached at %s", len(cache.known), cache.prefix)
        return cache

    def lookup(self, page_id: int, revid: int) -> tuple[dict | None, str | None] | None:
        """The cached (row, skip reason) of this revision, or None: it must be cleaned. A page
        without a revision id (a Parquet snapshot's) is always cleaned: nothing says it is unchanged."""
        if not revid:
            return None
        found = self.known.get((page_id, revid))
        return None if found is None else (dict(found[0]) if found[0] else None, found[1])

    def note_skip(self, page_id: int, revid: int, title: str, reason: str) -> None:
        self.skipped.append({"page_id": page_id, "revid": revid, "title": title, "reason": reason})

    # --- the API source: only what changed ----------------------------------------

    def changes(self, client):
        """What changed since the last run, for an API source listing every article; None: list everything
        (another source, another listing, another endpoint, or no successful run yet)."""
        from resumo import mediawiki

        if self.cfg.source != "api" or self.cfg.api.pages != "all":
            return None
        self.listed_at = mediawiki.server_time(client)  # before listing: an edit made while we list is listed again next time
        if self.state.get("base_url") != self.cfg.api.base_url or not self.state.get("listed_at"):
            return None
        if _age_days(self.state["listed_at"], self.listed_at) > RC_MAX_AGE_DAYS:
            log.warning("scrape: the last run listed at %s, beyond the wiki's %d days of recent changes; listing every article", self.state["listed_at"], RC_MAX_AGE_DAYS)
            return None
        changes = mediawiki.recent_changes(client, self.cfg.api, self.state["listed_at"])
        log.info("scrape: %d articles changed and %d deleted since %s", len(changes.changed), len(changes.deleted), changes.since)
        return changes

    def carry_over(self, changes, counts) -> list[dict]:
        """The last run's rows and skips of pages that did not change, in page order; deleted pages are dropped."""
        rows = []
        for (page_id, revid), (row, reason) in sorted(self.known.items()):
            if page_id in changes.changed or self.titles.get(page_id) in changes.deleted:
                continue
            if row is not None:
                rows.append(dict(row))
            else:
                self.skipped.append({"page_id": page_id, "revid": revid, "title": self.titles[page_id], "reason": reason})
        counts["carried_over"] = len(rows)
        counts["deleted"] = sum(title in changes.deleted for title in set(self.titles.values()))
        return rows

    def save(self, rows: list[dict]) -> None:
        """This run's pool and skips replace the last run's: pages it did not see are gone."""
        _write(storage.join(self.prefix, ROWS), pd.DataFrame(rows))
        _write(storage.join(self.prefix, SKIPPED), pd.DataFrame(self.skipped, columns=["page_id", "revid", "title", "reason"]))
        if self.listed_at:
            storage.write_text(storage.join(self.prefix, STATE), json.dumps({"base_url": self.cfg.api.base_url, "listed_at": self.listed_at}))

    # --- splits -------------------------------------------------------------

    def previous_splits(self) -> dict[int, str]:
        return {int(r["page_id"]): r["split"] for r in _read(self._splits_uri())}

    def save_splits(self, splits: dict[str, list[dict]]) -> None:
        """Every article ever split keeps its entry, deleted or skipped this run too: one that comes
        back (a short stub grown long enough) returns to its old split, so a test article never trains."""
        assigned = self.previous_splits() | {int(a["page_id"]): name for name, articles in splits.items() for a in articles}
        rows = [{"page_id": page_id, "split": name} for page_id, name in sorted(assigned.items())]
        _write(self._splits_uri(), pd.DataFrame(rows, columns=["page_id", "split"]))

    def _splits_uri(self) -> str:
        return storage.join(self.cfg.cache, f"{SPLITS}/{split_key(self.cfg.split)}.parquet")


def sticky_split(articles: list[dict], cfg: SplitConfig, previous: dict[int, str], split_afresh) -> dict[str, list[dict]]:
    """Articles keep their previous split; with none before, `split_afresh` (the stratified split) deals them all."""
    if not previous:
        return split_afresh(articles, cfg)
    splits: dict[str, list[dict]] = {"train": [], "val": [], "test": []}
    val_share = cfg.val_fraction / (1 - cfg.test_fraction)
    for article in articles:
        name = previous.get(int(article["page_id"]))
        if name is None:
            name = "val" if _unit(cfg.seed, article["page_id"]) < val_share else "train"
        splits[name].append(article)
    return splits


def _age_days(then: str, now: str) -> float:
    from datetime import datetime

    return (datetime.fromisoformat(now.replace("Z", "+00:00")) - datetime.fromisoformat(then.replace("Z", "+00:00"))).total_seconds() / 86400


def _unit(seed: int, page_id: int) -> float:
    """A number in [0, 1) fixed by (seed, page id)."""
    digest = hashlib.sha256(f"{seed}-{page_id}".encode()).hexdigest()
    return int(digest[:12], 16) / 16**12


def _read(uri: str) -> list[dict]:
    if not storage.exists(uri):
        return []
    return pd.read_parquet(io.BytesIO(storage.read_bytes(uri))).to_dict("records")


def _write(uri: str, df: pd.DataFrame) -> None:
    buffer = io.BytesIO()
    df.to_parquet(buffer, index=False)
    storage.write_bytes(uri, buffer.getvalue())  # atomic: a reader sees the old snapshot or the new one
