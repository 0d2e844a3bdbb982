"""Scrape: Portuguese Wikipedia in, clean articles out, split train/val/test.

    resumo scrape --out runs/articles                                   # the bundled corpus
    resumo scrape --source dump --dump ptwiki-latest-pages-articles.xml.bz2 --out runs/articles
    resumo scrape --source api --set scrape.api.pages=category --set scrape.api.category=Futebol --out runs/articles
    resumo scrape --source parquet --parquet s3://wiki/20231101.pt/ --out runs/articles

Writes `{train,val,test}.parquet` with `id, page_id, revid, title, url, text,
n_words, n_tokens, topic, views` and `stats.json` with counts per skip reason.
Progress is checkpointed under `OUT/_checkpoint/` as it goes: a killed scrape,
rerun with the same config and --out, continues where its last checkpoint ended.
Given a run id (`--run-id`; in the pipeline, the KFP run's), the checkpoint lives
under `scrape.checkpoint_store` instead (resumo.checkpoints), so a retried pod resumes.
Pages are cleaned in `scrape.workers` processes (`--set scrape.workers=4`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import multiprocessing
import random
import tempfile
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import closing, contextmanager
from functools import partial
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from resumo import artifacts, checkpoints, fanout, mediawiki, models, run_cost, scrape_cache, selection, storage, tables, wiki
from resumo.config import ScrapeConfig, SplitConfig
from resumo.errors import DataError
from resumo.stage import StageResult
from resumo.text import truncate_to_budget, words

log = logging.getLogger(__name__)

# Columns the pool keeps for selection only; they are not part of the output.
POOL_ONLY = ["categories", "article_words"]
# Pages handed to the worker processes ahead of the one being recorded, per worker: enough to
# keep each busy, few enough that a dump is never read far ahead of the checkpoint.
AHEAD_PER_WORKER = 16


@dataclass
class ScrapeResult:
    counts: dict[str, int]  # pages seen, collected, kept, and skipped per reason
    splits: dict[str, int] = field(default_factory=dict)  # articles per split

    @property
    def metrics(self) -> dict[str, int]:
        return {**self.counts, **{f"split_{k}": v for k, v in self.splits.items()}}


def run_stage(cfg: ScrapeConfig, out_dir: str | Path, run_id: str | None = None) -> StageResult:
    """The pipeline's scrape step: `run`, its counts and splits as metrics with the cost figures (resumo.run_cost)."""
    result = run(cfg, out_dir, run_id)
    return StageResult({**result.metrics, **run_cost.scrape_figures(result.counts)}, {"counts": result.counts, "splits": result.splits})


def run(cfg: ScrapeConfig, out_dir: str | Path, run_id: str | None = None) -> ScrapeResult:
    """Scrape into `out_dir`; progress is checkpointed there, or, with a `run_id` and
    scrape.checkpoint_store, under the store for that run (resumo.checkpoints), which outlives the pod."""
    client = _client(cfg)  # first: a missing User-Agent contact fails before any model loads
    # Reads the checkpoint: an unreachable S3 endpoint fails before the tokenizer loads.
    checkpoint = Checkpoint(checkpoints.location(cfg.checkpoint_store, run_id, "scrape") or out_dir, cfg)
    tokenizer = _load_tokenizer(cfg.tokenizer)
    cache = scrape_cache.ArticleCache.open(cfg)  # pages cleaned before, at the same revision, are not cleaned again
    changes = cache.changes(client) if cache else None  # the API source after a successful run: only what changed
    with _batches(cfg, client, checkpoint, changes) as batches, closing(_cleaned(batches, cfg, tokenizer, checkpoint.done, cache)) as pages:
        _collect(pages, cfg, checkpoint, client, cache)
    articles, counts = checkpoint.rows(), checkpoint.counts
    if changes is not None:
        articles = cache.carry_over(changes, counts) + articles
    pool = [dict(row) for row in articles] if cache else []
    articles = selection.drop_duplicates(articles, cfg.selection.near_duplicate_threshold, counts)
    selection.assign_topics(articles, cfg.selection)
    articles = selection.sample_per_topic(articles, cfg.selection, cfg.split.seed, counts)
    counts["kept"] = len(articles)
    splits = scrape_cache.sticky_split(articles, cfg.split, cache.previous_splits(), split_articles) if cache else split_articles(articles, cfg.split)
    for name, rows in splits.items():
        if not rows:
            raise DataError(
                f"split {name!r} is empty: only {len(articles)} articles were kept ({dict(counts)}); "
                f"use a larger source, lower scrape.min_words or raise scrape.split.{name}_fraction"
            )
    # Everything is computed before anything is written: a failure above leaves old outputs whole.
    for name, rows in splits.items():
        tables.write_split(pd.DataFrame(rows).drop(columns=POOL_ONLY), out_dir, name)
    result = ScrapeResult(counts=dict(counts), splits={name: len(rows) for name, rows in splits.items()})
    stats = {"counts": result.counts, "splits": result.splits, "requests": client.requests_sent if client else 0, "config": cfg.model_dump()}
    storage.write_text(storage.join(out_dir, artifacts.SCRAPE_STATS), json.dumps(stats, indent=2))
    if cache:  # last: only a run that succeeded becomes the next run's starting point
        cache.save(pool)
        cache.save_splits(splits)
    checkpoint.remove()
    log.info("scrape: kept %d articles %s, skipped %s", counts["kept"], result.splits, {k: v for k, v in counts.items() if k not in ("seen", "kept", "collected")})
    return result


def _collect(pages: Iterator[tuple], cfg: ScrapeConfig, checkpoint: Checkpoint, client, cache=None) -> None:
    """Record every cleaned page in the checkpoint's pool, in source order, flushing every
    `checkpoint_every` pages and on any error, so nothing collected is lost."""
    counts = checkpoint.counts
    progress = tqdm(desc=f"scrape ({cfg.source})", unit="page", initial=counts["seen"])
    try:
        for batch, page, outcome, cached in pages:
            if _enough(cfg, counts):
                break
            if page is None:  # the batch is through: a restart may resume after it
                counts["missing"] += batch.missing
                checkpoint.cursor = batch.cursor
                if checkpoint.pending >= cfg.checkpoint_every:
                    _flush(checkpoint, cfg, client)
            elif page.page_id not in checkpoint.done:  # a page a dump holds twice counts once
                progress.update()
                checkpoint.record(page.page_id, *outcome)
                counts["cache_hits" if cached else "cleaned"] += 1
                if cache and outcome[1]:
                    cache.note_skip(page.page_id, page.revid, page.title, outcome[1])
    finally:
        _flush(checkpoint, cfg, client)
        progress.close()


def _cleaned(batches: Iterator[mediawiki.Batch], cfg: ScrapeConfig, tokenizer, done: set[int], cache=None) -> Iterator[tuple]:
    """(batch, page, (row, skip reason), from cache) for every page not `done`, in source order, and
    (batch, None, None, False) once a batch's pages are through. A page the cache holds at
    this revision is not cleaned.

    With `scrape.workers` > 1 the pages are cleaned in that many processes: parsing
    wikitext is pure Python, one core each. They work a bounded window ahead, so
    memory stays flat and a kill loses at most the window (it is not checkpointed).
    """
    if cfg.workers == 1:
        pool, clean = None, partial(_article, cfg=cfg, tokenizer=tokenizer)
    else:
        # spawn, not fork: forking a process whose tokenizer threads have started can deadlock.
        context = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(cfg.workers, mp_context=context, initializer=_start_worker, initargs=(cfg, tokenizer))
        clean = _article_in_worker

    def jobs():
        for batch in batches:
            for page in batch.pages:
                if page.page_id not in done:
                    known = cache.lookup(page.page_id, page.revid) if cache else None
                    yield (batch, page, known), None if known else partial(clean, page)
            yield (batch, None, None), None  # the batch is through

    with closing(fanout.in_order(pool, jobs(), ahead=cfg.workers * AHEAD_PER_WORKER)) as cleaned:
        for (batch, page, known), outcome in cleaned:
            yield batch, page, known or outcome, known is not None


_worker: dict = {}


def _start_worker(cfg: ScrapeConfig, tokenizer) -> None:
    _worker.update(cfg=cfg, tokenizer=tokenizer)


def _article_in_worker(page: wiki.Page) -> tuple[dict | None, str | None]:
    return _article(page, _worker["cfg"], _worker["tokenizer"])


def _enough(cfg: ScrapeConfig, counts: Counter) -> bool:
    return bool(cfg.max_articles) and counts["collected"] >= cfg.max_articles


def _article(page: wiki.Page, cfg: ScrapeConfig, tokenizer) -> tuple[dict | None, str | None]:
    """The article's row, or why the page is skipped."""
    reason = _skip_reason(page)
    if reason:
        return None, reason
    text, categories = page.wikitext, []
    try:
        if page.markup == "wikitext":
            code = wiki.parse(page.wikitext)
            if wiki.is_disambiguation(code):
                return None, "disambiguation"
            categories = wiki.categories(page.wikitext)
            text = wiki.clean_wikitext(code)
    except Exception as err:  # one odd page must not stop a crawl of a million
        log.warning("page %s (%s) could not be cleaned: %s", page.page_id, page.title, err)
        return None, "unparsable"
    article_words = len(words(text))
    if article_words < cfg.min_words:
        return None, "too_short"
    text, n_tokens = truncate_to_budget(text, tokenizer, _token_budget(page.page_id, cfg))
    if not text:
        return None, "first_paragraph_over_budget"
    row = {
        "id": f"{page.page_id}-{page.revid}",
        "page_id": page.page_id,
        "revid": page.revid,
        "title": page.title,
        "url": page.url,
        "text": text,
        "n_words": len(words(text)),
        "n_tokens": n_tokens,
        "views": None,
        "categories": categories,
        "article_words": article_words,  # before truncation: the study weighted by the article's words
    }
    return row, None


def _flush(checkpoint: Checkpoint, cfg: ScrapeConfig, client) -> None:
    if cfg.pageviews.enabled and checkpoint.pending_rows:
        views = mediawiki.pageviews(client, cfg.pageviews, [r["title"] for r in checkpoint.pending_rows], cfg.api.concurrency)
        for row, n in zip(checkpoint.pending_rows, views):
            row["views"] = n
    checkpoint.flush()


def _client(cfg: ScrapeConfig) -> mediawiki.Client | None:
    if cfg.source != "api" and not cfg.pageviews.enabled:
        return None
    return mediawiki.Client(cfg.api, mediawiki.user_agent(cfg.api.contact), seed=cfg.split.seed)


@contextmanager
def _batches(cfg: ScrapeConfig, client, checkpoint: Checkpoint, changes=None) -> Iterator[Iterator[mediawiki.Batch]]:
    """The configured source as batches of pages (one page each for files); with `changes`, the changed pages only."""
    if cfg.source == "api" and changes is not None:
        yield mediawiki.changed_batches(client, cfg.api, changes, checkpoint.done)
    elif cfg.source == "api":
        yield mediawiki.iter_batches(client, cfg.api, checkpoint.done, checkpoint.cursor)
    elif cfg.source == "parquet":
        with _local_parquet(cfg.parquet) as paths:
            yield (mediawiki.Batch([page]) for page in wiki.iter_parquet_pages(paths))
    else:
        with _local_dump(cfg.dump) as path:
            yield (mediawiki.Batch([page]) for page in wiki.iter_pages(path))


class Checkpoint:
    """Progress under OUT/_checkpoint/<config fingerprint>/, appended as numbered parts:
    part-N.parquet holds the rows collected since part N-1 and part-N.json the page ids
    processed (kept or skipped), the counts so far and the source's cursor. The .json is
    written last, so a part a kill interrupted has none and is ignored. A different config
    has a different fingerprint and starts afresh."""

    def __init__(self, folder: str | Path, cfg: ScrapeConfig):
        self.root = storage.join(folder, artifacts.SCRAPE_CHECKPOINT)
        self.prefix = storage.join(self.root, _fingerprint(cfg))
        self.done: set[int] = set()
        self.counts: Counter = Counter(seen=0, collected=0)
        self.cursor: dict | None = None
        self.pending_rows: list[dict] = []
        self._pending_ids: list[int] = []
        self._parts: list[tuple[str, int]] = []  # (part name, rows it holds)
        for key in (k for k in storage.list_keys(self.prefix) if k.endswith(".json")):  # sorted: part order
            marker = json.loads(storage.read_text(storage.join(self.prefix, key)))
            self._parts.append((key.removesuffix(".json"), marker["rows"]))
            self.done.update(marker["processed"])
            self.counts, self.cursor = Counter(marker["counts"]), marker["cursor"]
        self._flushed = (dict(self.counts), self.cursor)
        if self._parts:
            log.info("scrape: resuming from %d checkpointed parts (%d pages processed, %d collected)", len(self._parts), len(self.done), self.counts["collected"])

    @property
    def pending(self) -> int:
        return len(self._pending_ids)

    def record(self, page_id: int, row: dict | None, reason: str | None) -> None:
        self.done.add(page_id)
        self._pending_ids.append(page_id)
        self.counts["seen"] += 1
        self.counts[reason or "collected"] += 1
        if row:
            self.pending_rows.append(row)

    def flush(self) -> None:
        if not self._pending_ids and self._flushed == (dict(self.counts), self.cursor):
            return
        name = f"part-{len(self._parts):06d}"
        if self.pending_rows:
            tables.write_split(pd.DataFrame(self.pending_rows), self.prefix, name)
        marker = {"processed": self._pending_ids, "rows": len(self.pending_rows), "counts": dict(self.counts), "cursor": self.cursor}
        storage.write_text(storage.join(self.prefix, f"{name}.json"), json.dumps(marker))
        self._parts.append((name, len(self.pending_rows)))
        self.pending_rows, self._pending_ids = [], []
        self._flushed = (dict(self.counts), self.cursor)

    def rows(self) -> list[dict]:
        return [row for name, n_rows in self._parts if n_rows for row in tables.read_split(self.prefix, name).to_dict("records")]

    def remove(self) -> None:
        """The outputs are written: the checkpoint is no longer needed, wherever it is."""
        storage.delete_prefix(self.root)


def _fingerprint(cfg: ScrapeConfig) -> str:
    """What decides which rows are collected; settings of politeness, speed and selection are not part of it."""
    politeness = {"contact", "concurrency", "max_retries", "backoff_s", "max_wait_s", "timeout_s"}
    values = cfg.model_dump(exclude={"checkpoint_every": True, "checkpoint_store": True, "workers": True, "cache": True, "selection": True, "split": {"val_fraction", "test_fraction"}, "api": politeness})
    return hashlib.sha1(json.dumps(values, sort_keys=True).encode()).hexdigest()[:12]


def _skip_reason(page: wiki.Page) -> str | None:
    """Why a page is skipped before parsing (a disambiguation template is found by parsing)."""
    if page.namespace != 0:
        return "not_article"
    if page.redirect:
        return "redirect"
    if not page.wikitext.strip():
        return "no_text"
    if page.markup == "text" and wiki.looks_like_disambiguation_text(page.wikitext):
        return "disambiguation"
    return None


def _token_budget(page_id: int, cfg: ScrapeConfig) -> int:
    """Uniform in [min_tokens, max_tokens], drawn per article from (seed, page id): stable across runs."""
    rng = random.Random(f"{cfg.split.seed}-{page_id}")
    return rng.randint(cfg.min_tokens, cfg.max_tokens)


def split_articles(articles: list[dict], cfg: SplitConfig) -> dict[str, list[dict]]:
    """Split by article, stratified by length as in the original study: order by length decile
    (random order inside a decile), then deal articles out so each split gets its share of
    every decile. Deterministic for a seed."""
    rng = random.Random(cfg.seed)
    ordered = sorted(articles, key=lambda a: (a["n_tokens"], a["id"]))
    deciles = [ordered[math.floor(i * len(ordered) / 10) : math.floor((i + 1) * len(ordered) / 10)] for i in range(10)]
    for decile in deciles:
        rng.shuffle(decile)
    splits: dict[str, list[dict]] = {"train": [], "val": [], "test": []}
    test_due, val_due = rng.random(), rng.random()
    for article in (a for decile in deciles for a in decile):
        test_due += cfg.test_fraction
        val_due += cfg.val_fraction
        if test_due >= 1:
            splits["test"].append(article)
            test_due -= 1
        elif val_due >= 1:
            splits["val"].append(article)
            val_due -= 1
        else:
            splits["train"].append(article)
    return splits


def _load_tokenizer(ref: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(models.resolve(ref))


@contextmanager
def _local_dump(uri: str) -> Iterator[Path]:
    """The dump as a local file: the bundled corpus, a path, or a download from s3://."""
    if uri == "bundled":
        yield wiki.bundled_dump_path()
        return
    loc = storage.parse(uri)
    if loc.scheme == "file":
        if not Path(loc.key).is_file():
            raise DataError(f"scrape.dump = {uri!r} does not exist; give a pages-articles XML or .bz2 path, or `bundled`")
        yield Path(loc.key)
        return
    with tempfile.TemporaryDirectory(prefix="resumo-dump-") as tmp:
        yield storage.download(uri, Path(tmp) / Path(loc.key).name)


@contextmanager
def _local_parquet(uri: str) -> Iterator[list[Path]]:
    """The snapshot's Parquet files, sorted: a file, a folder, or an s3:// object or prefix (downloaded)."""
    loc = storage.parse(uri)
    with tempfile.TemporaryDirectory(prefix="resumo-parquet-") as tmp:
        root = Path(loc.key) if loc.scheme == "file" else storage.download(uri, Path(tmp) / (Path(loc.key).name or "snapshot"))
        paths = [root] if root.is_file() else sorted(root.rglob("*.parquet"))
        if not paths:
            raise DataError(f"scrape.parquet = {uri!r} holds no .parquet files; give a wikimedia/wikipedia snapshot file or folder")
        yield paths
