"""The original study's selection over the collected pool: duplicates out, a topic per
article, then a sample per topic with probability proportional to views x words."""

from __future__ import annotations

import hashlib
import re
from collections import Counter

import numpy as np

from resumo.config import SelectionConfig
from resumo.text import unicode_tokens

SHINGLE = 5  # word 5-grams: long enough that shared boilerplate sentences rarely match
NUM_PERM = 128  # MinHash permutations: Jaccard estimates within about ±0.09 (1/sqrt(128))


def drop_duplicates(articles: list[dict], threshold: float | None, counts: Counter) -> list[dict]:
    """Exact duplicates (same words), then near-duplicates (MinHash LSH over word 5-grams) when
    `threshold` is set. Articles are visited by page id, so the older page is the one kept and
    the result is the same on every run."""
    from datasketch import MinHash, MinHashLSH

    seen: set[str] = set()
    lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM) if threshold else None
    unique = []
    for article in sorted(articles, key=lambda a: (a["page_id"], a["id"])):
        tokens = unicode_tokens(article["text"])
        key = hashlib.sha1(" ".join(tokens).encode()).hexdigest()
        if key in seen:
            counts["duplicate"] += 1
            continue
        seen.add(key)
        if lsh is not None:
            signature = MinHash(num_perm=NUM_PERM, seed=1)
            signature.update_batch([" ".join(tokens[i : i + SHINGLE]).encode() for i in range(max(1, len(tokens) - SHINGLE + 1))])
            if lsh.query(signature):
                counts["near_duplicate"] += 1
                continue
            lsh.insert(article["id"], signature)
        unique.append(article)
    return unique


def topic_of(categories: list[str], topics: dict[str, list[str]]) -> str | None:
    """The topic whose keywords start words in most of the category names; ties go to the
    topic listed first; None when nothing matches."""
    names = [c.lower().replace("_", " ") for c in categories]
    scores = {topic: sum(any(re.search(r"(?<!\w)" + re.escape(k.lower()), n) for k in keys) for n in names) for topic, keys in topics.items()}
    best = max(scores, key=scores.get, default=None)
    return best if best is not None and scores[best] > 0 else None


def sample_per_topic(articles: list[dict], cfg: SelectionConfig, seed: int, counts: Counter) -> list[dict]:
    """Up to `per_topic` articles of each topic, drawn without replacement with probability
    proportional to views x words (views + 1, so unviewed articles keep a chance). No-op when
    `per_topic` is None."""
    if cfg.per_topic is None:
        return articles
    rng = np.random.default_rng(seed)
    chosen = []
    for topic in cfg.topics:
        pool = sorted((a for a in articles if a["topic"] == topic), key=lambda a: a["id"])
        if len(pool) <= cfg.per_topic:
            chosen += pool
            continue
        weights = np.array([(a.get("views") or 0) + 1 for a in pool], dtype=float) * np.array([max(1, a["article_words"]) for a in pool], dtype=float)
        picks = rng.choice(len(pool), size=cfg.per_topic, replace=False, p=weights / weights.sum())
        chosen += [pool[i] for i in sorted(picks)]
        counts["not_sampled"] += len(pool) - cfg.per_topic
    counts["no_topic"] += sum(a["topic"] is None for a in articles)
    return chosen

