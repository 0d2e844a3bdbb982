"""Training throughput: padding-free batches against trl's plain padded batches.

    make bench BENCH=train        # = .venv/bin/python tests/bench/bench_train.py

The same rows, seed and sampler order for each batching, so each run trains on
the same real tokens; we report real (non-padding) tokens per second of training
steps (resumo.batching.Throughput) and the ratio to the padded baseline.

Rows follow the original study's length distribution scaled down by SCALE to fit
two shared CPU cores in about three minutes: article budgets uniform in
500/SCALE..4,000/SCALE tokens (the study: 500..4,000) and summaries of about
150/SCALE tokens (the study: about 100 words). Tiny random model (tiny:qwen2,
hidden size 64), float32, sdpa attention, batch 16 x 1. On the tiny model
attention is a larger share of the work than in Qwen2.5-0.5B, which favours
padded batches (their attention is per example; a padding-free row's masked
attention spans the whole row), so the ratio here understates the gain there.

Like the other benches: one torch thread (OMP_NUM_THREADS, as in the tests), a
warm-up training per batching that is not timed (first-call allocations and
kernel selection), then ROUNDS interleaved rounds, each timing every batching
in a rotated order so that a slow spell of the shared machine hits all of them;
each batching's best round is reported.
"""

from __future__ import annotations

import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[2]
SCALE = 10
ROWS = 128
BATCH = 16
SEED = 42
ROUNDS = 3
WARMUP_ROWS = BATCH * 2
BATCHINGS = ("padded", "length_grouped", "padding_free")  # the baseline first


def study_like_rows(tokenizer, n: int, seed: int):
    """Articles with token budgets uniform in [500, 4000] / SCALE, cut from the bundled corpus."""
    import pandas as pd

    from resumo import wiki

    stream = tokenizer("\n\n".join(wiki.bundled_texts()), add_special_tokens=False)["input_ids"]
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        budget = rng.randint(500 // SCALE, 4000 // SCALE)
        start = rng.randrange(0, len(stream) - budget - 200)
        article = tokenizer.decode(stream[start : start + budget])
        summary = tokenizer.decode(stream[start : start + 150 // SCALE])
        rows.append({"text": article, "summary": summary, "budget": budget})
    return pd.DataFrame(rows)


def measure(batching: str, rows, out: Path) -> dict:
    from resumo import batching as batching_module
    from resumo import train
    from resumo.config import load_config

    cfg = load_config("smoke", ["train.epochs=1", f"train.batch_size={BATCH}", "train.gradient_accumulation=1", f"train.batching={batching}", "train.max_length=1024"]).train
    meter = batching_module.Throughput()
    trainer = train._build_trainer(cfg, rows, rows.head(2), out / batching, callbacks=[meter])
    started = time.perf_counter()
    trainer.train()
    computed = sum(len(b["input_ids"][0]) if batching == "padding_free" else b["input_ids"].numel() for b in _batches(trainer))
    return {
        "batching": batching,
        "steps": meter.steps,
        "real_tokens": meter.tokens,
        "computed_tokens": computed,
        "train_seconds": meter.seconds,
        "wall_seconds": time.perf_counter() - started,
        "tokens_per_second": meter.tokens_per_second,
    }


def _batches(trainer):
    """The batches the trainer's sampler and collator make (to count padding), without training."""
    return list(trainer.get_train_dataloader())


def main() -> None:
    import torch
    from transformers import AutoTokenizer

    from resumo import models

    torch.manual_seed(SEED)
    tokenizer = AutoTokenizer.from_pretrained(models.resolve("tiny:qwen2"))
    rows = study_like_rows(tokenizer, ROWS, SEED)
    rounds: dict[str, list[dict]] = {b: [] for b in BATCHINGS}
    with tempfile.TemporaryDirectory() as tmp:
        for b in BATCHINGS:
            measure(b, rows.head(WARMUP_ROWS), Path(tmp) / "warmup")
        for i in range(ROUNDS):
            for b in BATCHINGS[i % len(BATCHINGS) :] + BATCHINGS[: i % len(BATCHINGS)]:
                rounds[b].append(measure(b, rows, Path(tmp) / f"round{i}"))
    results = [max(rounds[b], key=lambda r: r["tokens_per_second"]) for b in BATCHINGS]
    baseline = results[0]
    assert all(r["real_tokens"] == baseline["real_tokens"] for r in results), "each batching must train on the same tokens"
    for r in results:
        r["ratio_vs_padded"] = r["tokens_per_second"] / baseline["tokens_per_second"]
        r["padding_share"] = 1 - r["real_tokens"] / r["computed_tokens"]

    print(f"\nbest of {ROUNDS} interleaved rounds; {ROWS} rows, article budgets uniform {500 // SCALE}-{4000 // SCALE} tokens (the study's 500-4,000 / {SCALE}), batch {BATCH}, tiny:qwen2, CPU x{torch.get_num_threads()} threads\n")
    print("| batching | real tokens | padding share | train s | real tokens/s | vs padded |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['batching']} | {r['real_tokens']:,} | {r['padding_share']:.0%} | {r['train_seconds']:.1f} | {r['tokens_per_second']:,.0f} | {r['ratio_vs_padded']:.2f}x |")
    out = ROOT / "runs" / "bench" / "train.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"rows": ROWS, "scale": SCALE, "batch": BATCH, "budget_range": [500 // SCALE, 4000 // SCALE], "python": sys.version.split()[0], "machine": platform.machine(), "threads": torch.get_num_threads(), "rounds": ROUNDS}
    out.write_text(json.dumps({"setup": meta, "results": results}, indent=2))
    print(f"\nwrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
