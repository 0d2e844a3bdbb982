"""Scoring throughput: our ROUGE against rouge_score's default scorer, length-sorted BERTScore batches against input order.

    make bench BENCH=score        (or: .venv/bin/python tests/bench/bench_score.py)

1. ROUGE-1/2/L/Lsum on 1,000 (prediction, reference) pairs cut from the bundled
   corpus: `rouge_score.rouge_scorer.RougeScorer(use_stemmer=False)` (the
   baseline: what `evaluate` runs) against `resumo.metrics.rouge_per_pair` with
   the `unicode` tokenizer (which also splits sentences for Lsum) and with the
   `rouge-score` tokenizer (checked equal to the baseline, pair by pair).
2. BERTScore F1 on tiny:bert, 200 pairs of mixed lengths (5 to 300 words):
   bert-score's own path, which sorts all texts by length before batching (what
   `resumo.metrics.bertscore_per_pair` calls), against the same scorer fed
   input-order chunks so each forward pass holds the same number of texts in
   arrival order. Both give the same F1 (checked).
ROUGE cases run interleaved, 50 pairs at a time in rotating order; BERTScore timings
are the best of REPEATS runs, alternating the two paths.
Ratios are ours / baseline throughput; the absolute times depend on the machine.
"""

from __future__ import annotations

import json
import os
import platform
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
os.environ.setdefault("RESUMO_CACHE", str(ROOT / ".cache" / "resumo"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One torch thread, as in the tests: on a shared 2-core machine two threads spend a tiny
# model's forward pass in thread synchronisation (16 x 32 tokens: 0.36 s with 2, 0.016 s with 1),
# which hides the cost of padding that this benchmark measures.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from resumo import metrics, models, wiki  # noqa: E402
from resumo.text import split_sentences  # noqa: E402

ROUGE_PAIRS = 1000
ROUGE_CHUNK = 50
BERT_PAIRS = 200
BERT_BATCH = 16
REPEATS = 2
SEED = 0


def rouge_pairs(n: int) -> tuple[list[str], list[str]]:
    """A reference from an article's lead (~100 words) and a prediction of sentences drawn from the same article."""
    rng = random.Random(SEED)
    articles = [split_sentences(t) for t in wiki.bundled_texts()]
    articles = [s for s in articles if len(s) >= 8]
    predictions, references = [], []
    for i in range(n):
        sentences = articles[i % len(articles)]
        lead = " ".join(" ".join(sentences).split()[: rng.randint(60, 140)])
        picked = sorted(rng.sample(range(len(sentences)), k=min(len(sentences), rng.randint(3, 6))))
        predictions.append(" ".join(sentences[j] for j in picked))
        references.append(lead)
    return predictions, references


def bert_pairs(n: int) -> tuple[list[str], list[str]]:
    rng = random.Random(SEED)
    words = " ".join(wiki.bundled_texts()).split()

    def text() -> str:
        start, length = rng.randrange(len(words) - 400), rng.choice([rng.randint(5, 30), rng.randint(30, 300)])
        return " ".join(words[start : start + length])

    return [text() for _ in range(n)], [text() for _ in range(n)]


def bench_rouge() -> list[dict]:
    from rouge_score import rouge_scorer

    predictions, references = rouge_pairs(ROUGE_PAIRS)
    scorer = rouge_scorer.RougeScorer(list(metrics.ROUGE_TYPES), use_stemmer=False)
    cases = {
        "rouge_score RougeScorer(use_stemmer=False) (baseline)": lambda p, r: [scorer.score(b, a) for a, b in zip(p, r)],
        "resumo metrics.rouge_per_pair, tokenizer=rouge-score": lambda p, r: metrics.rouge_per_pair(p, r, "rouge-score"),
        "resumo metrics.rouge_per_pair, tokenizer=unicode": lambda p, r: metrics.rouge_per_pair(p, r, "unicode"),
    }
    # Interleaved in chunks, the order rotating per chunk, so a shift in machine load hits every case alike.
    seconds = dict.fromkeys(cases, 0.0)
    results: dict[str, list] = {name: [] for name in cases}
    names = list(cases)
    for k, start in enumerate(range(0, ROUGE_PAIRS, ROUGE_CHUNK)):
        chunk = predictions[start : start + ROUGE_CHUNK], references[start : start + ROUGE_CHUNK]
        for name in names[k % len(names) :] + names[: k % len(names)]:
            began = time.perf_counter()
            results[name].append(cases[name](*chunk))
            seconds[name] += time.perf_counter() - began
    baseline_name, published_name = names[0], names[1]
    for name in metrics.ROUGE_TYPES:
        expected = [s[name].fmeasure for part in results[baseline_name] for s in part]
        assert [v for part in results[published_name] for v in part[name]] == expected, f"{name} differs from rouge_score"
    base = seconds[baseline_name]
    return [{"case": name, "seconds": t, "pairs_per_s": ROUGE_PAIRS / t, "ratio": base / t} for name, t in seconds.items()]


def bench_bertscore() -> list[dict]:
    import bert_score

    predictions, references = bert_pairs(BERT_PAIRS)
    scorer = bert_score.BERTScorer(model_type=models.resolve("tiny:bert"), num_layers=2, batch_size=BERT_BATCH, lang="pt")

    def sorted_batches():
        return scorer.score(predictions, references, batch_size=BERT_BATCH)[2].numpy()

    def input_order():
        # Half a batch of pairs per call: its predictions and references fill one forward pass of BERT_BATCH texts.
        chunk = BERT_BATCH // 2
        parts = [scorer.score(predictions[i : i + chunk], references[i : i + chunk], batch_size=BERT_BATCH)[2].numpy() for i in range(0, BERT_PAIRS, chunk)]
        return np.concatenate(parts)

    rows = []
    for _ in range(REPEATS):  # alternate, so drift in machine load hits both
        for name, fn in (("input order", input_order), ("sorted by length", sorted_batches)):
            start = time.perf_counter()
            result = fn()
            seconds = time.perf_counter() - start
            rows.append((name, seconds, result))
    unsorted_s = min(s for n, s, _ in rows if n == "input order")
    sorted_s = min(s for n, s, _ in rows if n == "sorted by length")
    unsorted_f1, sorted_f1 = rows[0][2], rows[1][2]
    max_diff = float(np.abs(unsorted_f1 - sorted_f1).max())
    assert max_diff < 1e-4, f"sorted and input-order batches disagree by {max_diff}"
    ours = metrics.bertscore_per_pair(predictions, references, "tiny:bert", num_layers=2, batch_size=BERT_BATCH)
    assert np.allclose(ours, sorted_f1, atol=1e-5), "resumo.metrics does not take bert-score's sorted path"
    return [
        {"case": f"bert-score, input-order batches of {BERT_BATCH} texts (baseline)", "seconds": unsorted_s, "pairs_per_s": BERT_PAIRS / unsorted_s, "ratio": 1.0},
        {"case": f"bert-score, length-sorted batches of {BERT_BATCH} texts (resumo)", "seconds": sorted_s, "pairs_per_s": BERT_PAIRS / sorted_s, "ratio": unsorted_s / sorted_s, "max_f1_difference": max_diff},
    ]


def main() -> None:
    import torch

    rouge_rows = bench_rouge()
    bert_rows = bench_bertscore()
    table = ["| benchmark | case | seconds | pairs/s | ratio |", "|---|---|---|---|---|"]
    for section, rows in (("ROUGE, 1,000 pairs", rouge_rows), ("BERTScore tiny:bert, 200 pairs", bert_rows)):
        table += [f"| {section} | {r['case']} | {r['seconds']:.2f} | {r['pairs_per_s']:.0f} | {r['ratio']:.2f}x |" for r in rows]
    print("\n".join(table))
    out = ROOT / "runs" / "bench" / "score.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    machine = {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    out.write_text(json.dumps({"rouge": rouge_rows, "bertscore": bert_rows, "repeats": REPEATS, "machine": machine}, indent=2))
    print(f"\nwritten: {out}")


if __name__ == "__main__":
    main()
