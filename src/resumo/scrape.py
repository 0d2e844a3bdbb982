"""Scrape: a MediaWiki dump in, clean Portuguese articles out, split train/val/test.

    resumo scrape --out runs/articles                 # the bundled corpus
    resumo scrape --dump ptwiki-pages-articles.xml.bz2 --out runs/articles

Writes `{train,val,test}.parquet` with `id, page_id, revid, title, url, text,
n_words, n_tokens` and `stats.json` with counts per skip reason.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from resumo import models, storage, tables, wiki
from resumo.config import ScrapeConfig, SplitConfig
from resumo.errors import DataError
from resumo.text import words

log = logging.getLogger(__name__)


@dataclass
class ScrapeResult:
    counts: dict[str, int]  # pages seen, kept, and skipped per reason
    splits: dict[str, int] = field(default_factory=dict)  # articles per split


def run(cfg: ScrapeConfig, out_dir: str | Path) -> ScrapeResult:
    tokenizer = _load_tokenizer(cfg.tokenizer)
    with _local_dump(cfg.dump) as dump_path:
        articles, counts = _collect(dump_path, cfg, tokenizer)
    articles = _drop_duplicates(articles, counts)
    splits = split_articles(articles, cfg.split)
    for name, rows in splits.items():
        if not rows:
            raise DataError(
                f"split {name!r} is empty: only {len(articles)} articles were kept ({dict(counts)}); "
                f"use a larger dump, lower scrape.min_words or raise scrape.split.{name}_fraction"
            )
    # Everything is computed before anything is written: a failure above leaves old outputs whole.
    for name, rows in splits.items():
        tables.write_split(pd.DataFrame(rows), out_dir, name)
    result = ScrapeResult(counts=dict(counts), splits={name: len(rows) for name, rows in splits.items()})
    storage.write_text(storage.join(out_dir, "stats.json"), json.dumps({"counts": result.counts, "splits": result.splits, "config": cfg.model_dump()}, indent=2))
    log.info("scrape: kept %d articles %s, skipped %s", counts["kept"], result.splits, {k: v for k, v in counts.items() if k not in ("seen", "kept")})
    return result


def _collect(dump_path: Path, cfg: ScrapeConfig, tokenizer) -> tuple[list[dict], Counter]:
    counts: Counter = Counter(seen=0, kept=0)
    articles = []
    for page in tqdm(wiki.iter_pages(dump_path), desc="scrape", unit="page"):
        counts["seen"] += 1
        reason = _skip_reason(page, cfg)
        text = "" if reason else wiki.clean_wikitext(page.wikitext)
        if not reason and len(words(text)) < cfg.min_words:
            reason = "too_short"
        if not reason:
            text, n_tokens = truncate_to_budget(text, tokenizer, _token_budget(page.page_id, cfg))
            reason = None if text else "first_paragraph_over_budget"
        if reason:
            counts[reason] += 1
            continue
        counts["kept"] += 1
        articles.append(
            {
                "id": f"{page.page_id}-{page.revid}",
                "page_id": page.page_id,
                "revid": page.revid,
                "title": page.title,
                "url": page.url,
                "text": text,
                "n_words": len(words(text)),
                "n_tokens": n_tokens,
            }
        )
        if cfg.max_articles and counts["kept"] >= cfg.max_articles:
            break
    return articles, counts


def _skip_reason(page: wiki.Page, cfg: ScrapeConfig) -> str | None:
    if page.namespace != 0:
        return "not_article"
    if page.redirect:
        return "redirect"
    if not page.wikitext.strip():
        return "no_text"
    if wiki.is_disambiguation(page.wikitext):
        return "disambiguation"
    return None


def _token_budget(page_id: int, cfg: ScrapeConfig) -> int:
    """Uniform in [min_tokens, max_tokens], drawn per article from (seed, page id): stable across runs."""
    rng = random.Random(f"{cfg.split.seed}-{page_id}")
    return rng.randint(cfg.min_tokens, cfg.max_tokens)


def truncate_to_budget(text: str, tokenizer, budget: int) -> tuple[str, int]:
    """Leading whole paragraphs whose tokens fit in `budget`; ('', 0) if the first does not."""
    paragraphs = text.split("\n\n")
    lengths = [len(ids) for ids in tokenizer(paragraphs, add_special_tokens=False)["input_ids"]]
    sep = len(tokenizer("\n\n", add_special_tokens=False)["input_ids"])
    kept, total = [], 0
    for paragraph, n in zip(paragraphs, lengths):
        cost = n + (sep if kept else 0)
        if total + cost > budget:
            break
        kept.append(paragraph)
        total += cost
    if not kept:
        return "", 0
    truncated = "\n\n".join(kept)
    return truncated, len(tokenizer(truncated, add_special_tokens=False)["input_ids"])


def _drop_duplicates(articles: list[dict], counts: Counter) -> list[dict]:
    seen, unique = set(), []
    for article in articles:
        key = hashlib.sha1(" ".join(words(article["text"].lower())).encode()).hexdigest()
        if key in seen:
            counts["duplicate"] += 1
            counts["kept"] -= 1
            continue
        seen.add(key)
        unique.append(article)
    return unique


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
