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


# How the zero-shot classifier hears each topic ("Este texto é sobre desporto.").
TOPIC_LABELS = {
    "politics_business": "política e negócios",
    "sport": "desporto",
    "science_technology": "ciência e tecnologia",
    "culture_art": "cultura e arte",
    "geography_history": "geografia e história",
}


def assign_topics(articles: list[dict], cfg: SelectionConfig) -> None:
    """Set each article's `topic`: the zero-shot classifier's pick if one is configured, else the category mapping."""
    if cfg.topic_classifier:
        for article, topic in zip(articles, classify_topics([a["text"] for a in articles], cfg.topic_classifier, list(cfg.topics))):
            article["topic"] = topic
        return
    for article in articles:
        article["topic"] = topic_of(list(article["categories"]), cfg.topics)


def classify_topics(texts: list[str], model_ref: str, topics: list[str], batch_size: int = 16) -> list[str]:
    """Zero-shot topic of each text's first paragraph (transformers' NLI pipeline), as the study did."""
    from transformers import pipeline

    from resumo import models

    if not texts:
        return []
    labels = {TOPIC_LABELS.get(topic, topic.replace("_", " ")): topic for topic in topics}
    classifier = pipeline("zero-shot-classification", model=models.resolve(model_ref))
    first_paragraphs = [text.split("\n\n", 1)[0] for text in texts]
    results = classifier(first_paragraphs, candidate_labels=list(labels), hypothesis_template="Este texto é sobre {}.", batch_size=batch_size)
    return [labels[r["labels"][0]] for r in results]


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

