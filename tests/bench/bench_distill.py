"""Distill benchmarks: batched length-sorted generation against one text at a time; a warm teacher cache against a cold one.

    make bench BENCH=distill        # or: .venv/bin/python tests/bench/bench_distill.py

1. The `transformers` teacher's generation (`resumo.generation`: left padding,
   batches sorted by length) against the same model asked one text at a time,
   on the tiny Qwen2 model, CPU. Also the share of padding tokens that length
   sorting saves against batches in arrival order, and how many greedy outputs
   are identical both ways (left padding can move the last digits of logits).
2. `resumo distill` with the `transformers` teacher twice over the same articles
   with the cache on S3 (moto's server on 127.0.0.1): the cold run loads the
   model and generates; the warm run reads the cache and loads no model.

Ratios are measured in the same process; absolute seconds depend on the machine.
Tiny random models: these numbers say nothing about summary quality.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
os.environ.setdefault("RESUMO_CACHE", str(ROOT / ".cache" / "resumo"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One torch thread: on a shared 2-core machine, OpenMP threads that wait on each other make
# timings noise. CPU seconds are reported beside wall seconds for the same reason.
os.environ.setdefault("OMP_NUM_THREADS", "1")

N_TEXTS = 32
BATCH_SIZE = 8
MAX_NEW_TOKENS = 32
ROUNDS = 2  # alternate the two ways and keep each one's best round, so a burst of load hits both alike


def main() -> None:
    import logging

    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's server logs every request
    from resumo import scrape
    from resumo.config import load_config

    cfg = load_config("smoke", ["distill.teacher.backend=transformers", "distill.teacher.model=tiny:qwen2", f"distill.teacher.max_new_tokens={MAX_NEW_TOKENS}", f"distill.teacher.batch_size={BATCH_SIZE}"])
    with tempfile.TemporaryDirectory() as tmp:
        articles = Path(tmp) / "articles"
        scrape.run(cfg.scrape, articles)
        results = {"generation": bench_generation(cfg, articles), "cache": bench_cache(cfg, articles, Path(tmp))}
    results["setup"] = {"model": "tiny:qwen2", "texts": N_TEXTS, "batch_size": BATCH_SIZE, "max_new_tokens": MAX_NEW_TOKENS, "cpus": os.cpu_count(), "torch_threads": _torch_threads()}
    print(report(results))
    out = ROOT / "runs" / "bench" / "distill.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"\nwritten to {out.relative_to(ROOT)}")


def bench_generation(cfg, articles: Path) -> dict:
    from resumo import distill, generation, prompts

    # A seeded shuffle: scrape writes articles ordered by length, which would hide what sorting saves.
    texts = list(distill.read_articles(articles)["text"].sample(frac=1.0, random_state=0))[:N_TEXTS]
    loaded = generation.load(cfg.distill.teacher.model, device="cpu")
    chats = [prompts.user_message(t, cfg.distill.prompt) for t in texts]
    generation.generate_chat(loaded, chats[:2], BATCH_SIZE, 4, desc="warm-up")  # first-call overheads out of the timings

    timings: dict[str, list[tuple[float, float]]] = {"batched": [], "single": []}
    for _ in range(ROUNDS):
        batched, wall, cpu = _timed(generation.generate_chat, loaded, chats, BATCH_SIZE, MAX_NEW_TOKENS, desc="batched, sorted")
        timings["batched"].append((wall, cpu))
        single, wall, cpu = _timed(generation.generate_chat, loaded, chats, 1, MAX_NEW_TOKENS, desc="one at a time")
        timings["single"].append((wall, cpu))
    (batched_s, batched_cpu), (single_s, single_cpu) = min(timings["batched"]), min(timings["single"])

    rendered = [loaded.tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in chats]
    lengths = [len(ids) for ids in loaded.tokenizer(rendered, add_special_tokens=False)["input_ids"]]
    return {
        "batched_sorted_s": round(batched_s, 2),
        "one_at_a_time_s": round(single_s, 2),
        "speedup": round(single_s / batched_s, 2),
        "batched_sorted_cpu_s": round(batched_cpu, 2),
        "one_at_a_time_cpu_s": round(single_cpu, 2),
        "cpu_speedup": round(single_cpu / batched_cpu, 2),
        "prompt_tokens_min_max": [min(lengths), max(lengths)],
        "prompt_padding_share_sorted": round(_padding_share(sorted(lengths, reverse=True)), 3),
        "prompt_padding_share_arrival_order": round(_padding_share(lengths), 3),
        "identical_outputs": sum(a == b for a, b in zip(batched, single)),
    }


def bench_cache(cfg, articles: Path, tmp: Path) -> dict:
    from resumo import distill

    with _loopback_s3() as bucket:
        distill_cfg = cfg.distill.model_copy(update={"cache": f"{bucket}/cache/teacher"})
        started = time.perf_counter()
        cold = distill.run(distill_cfg, articles, tmp / "cold")
        cold_s = time.perf_counter() - started
        started = time.perf_counter()
        warm = distill.run(distill_cfg, articles, tmp / "warm")
        warm_s = time.perf_counter() - started
    return {
        "articles": cold.counts["articles"],
        "cold_s": round(cold_s, 2),
        "warm_s": round(warm_s, 2),
        "speedup": round(cold_s / warm_s, 1),
        "cold_teacher_answers": cold.counts["teacher_answers"],
        "warm_teacher_answers": warm.counts["teacher_answers"],
        "warm_cache_hits": warm.counts["cache_hits"],
    }


def report(results: dict) -> str:
    g, c = results["generation"], results["cache"]
    return "\n".join(
        [
            f"| distill on tiny:qwen2, {os.cpu_count()} CPUs | ours | baseline | ratio |",
            "|---|---|---|---|",
            f"| generate {N_TEXTS} summaries ({MAX_NEW_TOKENS} new tokens, prompts of {g['prompt_tokens_min_max'][0]}-{g['prompt_tokens_min_max'][1]} tokens): batched x{BATCH_SIZE}, length-sorted vs one at a time, wall | {g['batched_sorted_s']} s | {g['one_at_a_time_s']} s | {g['speedup']}x faster |",
            f"| the same, CPU time | {g['batched_sorted_cpu_s']} s | {g['one_at_a_time_cpu_s']} s | {g['cpu_speedup']}x less |",
            f"| prompt padding per batch: length-sorted vs arrival order | {g['prompt_padding_share_sorted']:.1%} | {g['prompt_padding_share_arrival_order']:.1%} | |",
            f"| greedy outputs identical batched and one at a time | {g['identical_outputs']} of {N_TEXTS} | | |",
            f"| `resumo distill` over {c['articles']} articles, cache on S3: warm vs cold | {c['warm_s']} s ({c['warm_teacher_answers']} teacher calls) | {c['cold_s']} s ({c['cold_teacher_answers']} teacher calls) | {c['speedup']}x faster |",
        ]
    )


def _timed(fn, *args, **kwargs):
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def _padding_share(lengths: list[int]) -> float:
    """Pad tokens over all prompt tokens when `lengths` are batched in this order."""
    batches = [lengths[i : i + BATCH_SIZE] for i in range(0, len(lengths), BATCH_SIZE)]
    padded = sum(max(b) * len(b) for b in batches)
    return (padded - sum(lengths)) / padded


class _loopback_s3:
    """moto's S3 server on 127.0.0.1 and a bucket, with boto3 pointed at it."""

    def __enter__(self) -> str:
        import boto3
        from moto.server import ThreadedMotoServer

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self._server.start()
        endpoint = f"http://127.0.0.1:{port}"
        os.environ.update({"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"})
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="bench")
        return "s3://bench"

    def __exit__(self, *exc) -> None:
        self._server.stop()


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


if __name__ == "__main__":
    sys.exit(main())
