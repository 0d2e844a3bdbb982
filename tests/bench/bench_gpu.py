"""The GPU path at the study's shapes: training variants and generation engines, on one GPU.

    make bench-gpu        # = python tests/bench/bench_gpu.py; writes runs/bench/gpu.json

Model: Qwen2.5-0.5B-Instruct's architecture (hidden 896, 24 layers, 14 heads, 2 KV
heads, MLP 4864, vocabulary 151,936, tied embeddings, rope theta 1e6) with random bf16
weights and the bundled tiny tokenizer: speed does not depend on the weights' values,
and no pretrained weights fit in what the GPU machine can be sent. The embedding rows
past the tokenizer's 4,096 ids are zeroed, so greedy decoding writes only ids it can
decode. Rows are study-shaped: articles cut from the bundled corpus to token budgets
uniform in 500..4,000, summaries of 150 tokens.

Training: resumo's own `train._build_trainer` on the `full` profile's values (LoRA
r=64 on the seven projections, global batch 16 x 4), one optimizer step of warm-up
(allocations, kernel selection, Triton compiles), then TIMED_STEPS steps each timed
with the GPU synchronised: real (non-padding) tokens per second, MFU counting
6 x 494 M FLOP a token against the GPU's dense bf16 peak (989 TFLOP/s on an H100/H200),
and the peak of allocated memory. Each variant changes one thing from the default,
so each row is what that lever is worth. Generation: `resumo.generation` at 128 new
tokens on the same articles, per engine and batch, output tokens per second.

On the GPU machine (Python 3.12, torch 2.11+cu130, transformers and peft present, no
network), carry these wheels, pinned as in constraints.txt, in a folder that travels
with the working tree (`run`'s carry, 64 MiB in all; `pip download --no-deps
--python-version 3.12 --only-binary=:all:` for the compiled ones, `pip wheel --no-deps`
for rouge_score's sdist): trl, datasets, dill, multiprocess, xxhash, pydantic,
pydantic_core (cp312), annotated-types, typing-inspection, huggingface_hub, hf-xet,
tokenizers, transformers, liger-kernel, py3langid, nltk, rouge_score, pytest (+ pluggy,
iniconfig), then:

    pip install --no-deps --no-index wheels/*.whl
    PYTHONPATH=src python tests/bench/bench_gpu.py --out $OUT/gpu.json

A deadline (--budget-s) skips what would not finish, and the JSON is rewritten after
every row, so a cut-short run still says what it measured.
"""

from __future__ import annotations

import argparse
import gc
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

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

from transformers import TrainerCallback  # noqa: E402

N_PARAMS = 494_032_768  # Qwen2.5-0.5B, tied embeddings counted once
PEAK_FLOPS = 989e12  # H100/H200 SXM dense bf16, from the datasheet
TIMED_STEPS = 2
GLOBAL_BATCH = 64
NEW_TOKENS = 128
QWEN_05B = dict(
    hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
    vocab_size=151_936, tie_word_embeddings=True, rope_theta=1_000_000.0, max_position_embeddings=32_768,
)

# (name, overrides of the full profile): the default first, then one lever changed at a time.
TRAIN_VARIANTS = [
    ("default", []),
    ("old default: length-grouped, sdpa, checkpointing, 16 x 4", ["train.batching=length_grouped", "train.attn_implementation=sdpa", "train.micro_batch_tokens=0", "train.gradient_checkpointing=true"]),
    ("default with Liger", ["train.liger_kernel=true"]),
    ("default, LoRA dropout 0", ["train.lora.dropout=0"]),
    ("default with checkpointing", ["train.gradient_checkpointing=true"]),
    ("length-grouped padded micro-batches, sdpa, same budget", ["train.batching=length_grouped", "train.attn_implementation=sdpa"]),
    ("default, budget 8,192", ["train.micro_batch_tokens=8192"]),
    ("default, budget 16,384", ["train.micro_batch_tokens=16384"]),
    ("default, budget 24,576", ["train.micro_batch_tokens=24576"]),
    ("default, budget 28,672", ["train.micro_batch_tokens=28672"]),
    ("default, budget 32,768", ["train.micro_batch_tokens=32768"]),
    # train.compile: the decoder layers compiled in place, against the step's ~5,500 launches per micro-batch
    ("default, compiled layers", ["train.compile=true"]),
    ("compiled layers, LoRA dropout 0", ["train.compile=true", "train.lora.dropout=0"]),
    ("compiled layers, budget 24,576", ["train.compile=true", "train.micro_batch_tokens=24576"]),
]
# (engine, batch, texts); static last: its first batch compiles the decoding step.
GENERATE_RUNS = [("dynamic", 64, 64), ("continuous", 64, 64), ("continuous", 256, 256), ("static", 64, 64)]


def study_rows(tokenizer, n: int, seed: int):
    import pandas as pd

    from resumo import wiki

    stream = tokenizer("\n\n".join(wiki.bundled_texts()), add_special_tokens=False)["input_ids"]
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        budget = rng.randint(500, 4000)
        start = rng.randrange(0, len(stream) - budget - 200)
        rows.append({"text": tokenizer.decode(stream[start : start + budget]), "summary": tokenizer.decode(stream[start : start + 150])})
    return pd.DataFrame(rows)


def build_model(folder: Path) -> Path:
    """Qwen2.5-0.5B's shape, random bf16 weights, the tiny tokenizer; saved so that from_pretrained loads it."""
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    from resumo import models

    tokenizer = AutoTokenizer.from_pretrained(models.resolve("tiny:qwen2"))
    config = Qwen2Config(**QWEN_05B, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    with torch.no_grad():
        model.model.embed_tokens.weight[len(tokenizer) :] = 0  # greedy decoding writes only ids the tokenizer knows
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    del model
    torch.cuda.empty_cache()
    return folder


class StepClock(TrainerCallback):
    """Times optimizer steps after the first, with the GPU synchronised at both ends."""

    def __init__(self):
        import torch

        self.torch, self.times, self.tokens, self._t, self._seen = torch, [], [], 0.0, 0

    def _sync(self):
        if self.torch.cuda.is_available():
            self.torch.cuda.synchronize()

    def on_step_begin(self, args, state, control, **kwargs):
        self._sync()
        self._t, self._seen = time.perf_counter(), state.num_input_tokens_seen

    def on_step_end(self, args, state, control, **kwargs):
        self._sync()
        if state.global_step > 1:  # the first step warms up
            self.times.append(time.perf_counter() - self._t)
            self.tokens.append(state.num_input_tokens_seen - self._seen)


def train_row(name: str, overrides: list[str], model_dir: Path, rows, out: Path) -> dict:
    import torch

    from resumo import train
    from resumo.config import load_config

    sets = [f"train.student={model_dir}", "train.epochs=1", "train.save_steps=1000", "train.eval_samples=1"] + overrides
    cfg = load_config("full", sets).train
    clock = StepClock()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    trainer = train._build_trainer(cfg, rows, rows.head(2), out, callbacks=[clock])
    started = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - started
    tokens_per_second = sum(clock.tokens) / sum(clock.times)
    row = {
        "name": name,
        "config": {
            "batching": cfg.batching,
            "attention": cfg.attn_implementation,
            "checkpointing": bool(trainer.args.gradient_checkpointing),
            "micro_batch_tokens": cfg.micro_batch_tokens,
            "micro_batch_examples": None if cfg.micro_batch_tokens else cfg.batch_size,
            "liger": cfg.liger_kernel,
            "compiled": cfg.compile,
            "lora_dropout": cfg.lora.dropout,
            "global_batch": cfg.batch_size * cfg.gradient_accumulation,
        },
        "default": not overrides,
        "tokens_per_second": round(tokens_per_second),
        "mfu": round(6 * N_PARAMS * tokens_per_second / PEAK_FLOPS, 4),
        "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 1) if torch.cuda.is_available() else None,
        "step_seconds": [round(t, 3) for t in clock.times],
        "step_tokens": clock.tokens,
        "wall_seconds": round(wall, 1),
    }
    del trainer
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return row


def profile_step(model_dir: Path, rows, out: Path, report: Path) -> None:
    """Where one optimizer step of the default spends its time: host (Python and launches) or GPU kernels."""
    import torch
    from torch.profiler import ProfilerActivity, profile, schedule

    from resumo import train
    from resumo.config import load_config

    cfg = load_config("full", [f"train.student={model_dir}", "train.epochs=1", "train.save_steps=1000"]).train

    class Step(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            prof.step()

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA], schedule=schedule(wait=0, warmup=1, active=1, repeat=1)) as prof:
        trainer = train._build_trainer(cfg, rows.head(GLOBAL_BATCH * 2), rows.head(2), out, callbacks=[Step()])
        trainer.train()
    averages = prof.key_averages()
    cpu_total = sum(e.self_cpu_time_total for e in averages) / 1e6
    cuda_total = sum(getattr(e, "self_device_time_total", 0) for e in averages) / 1e6
    launches = sum(e.count for e in averages if e.key in ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC"))
    lines = [f"one optimizer step: host self time {cpu_total:.2f} s, GPU kernel time {cuda_total:.2f} s, kernel launches {launches}"]
    lines.append(averages.table(sort_by="self_cpu_time_total", row_limit=25))
    lines.append(averages.table(sort_by="self_device_time_total", row_limit=15))
    report.write_text("\n".join(lines))
    print(lines[0], flush=True)
    del trainer
    gc.collect()
    torch.cuda.empty_cache()


def profile_generation(model_dir: Path, rows, report: Path, texts: int = 16, new_tokens: int = 16, device: str = "cuda") -> None:
    """Where one dynamic-cache batch spends its time: the prompt's forward (one new token) against the
    decoding steps, and which kernels and host calls dominate each."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from resumo import generation, prompts
    from resumo.config import PromptConfig

    cuda = device == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    loaded = generation.load(str(model_dir), device=device)
    rendered = [loaded.tokenizer.apply_chat_template(prompts.user_message(t, PromptConfig()), tokenize=False, add_generation_prompt=True) for t in rows["text"][:texts]]
    stops = generation.stop_token_ids(loaded.tokenizer, loaded.model)
    generation._batched(loaded, rendered, texts, 2, stops, "warm-up", static=False)  # kernels chosen, memory pooled
    lines = []
    for label, tokens in (("prefill only (1 new token)", 1), (f"prefill and {new_tokens - 1} decoding steps", new_tokens)):
        sync()
        with profile(activities=[ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if cuda else [])]) as prof:
            generation._batched(loaded, rendered, texts, tokens, stops, label, static=False)
            sync()
        averages = prof.key_averages()
        cpu_total = sum(e.self_cpu_time_total for e in averages) / 1e6
        cuda_total = sum(getattr(e, "self_device_time_total", 0) for e in averages) / 1e6
        launches = sum(e.count for e in averages if e.key in ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC"))
        lines.append(f"{label}, batch {texts}: host self time {cpu_total:.2f} s, GPU kernel time {cuda_total:.2f} s, kernel launches {launches}")
        lines.append(averages.table(sort_by="self_device_time_total", row_limit=12))
    lines.append(averages.table(sort_by="self_cpu_time_total", row_limit=15))
    report.write_text("\n".join(lines))
    print("\n".join(line for line in lines if line.startswith(("prefill",))), flush=True)
    del loaded
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()


def generate_row(engine: str, batch: int, n_texts: int, model_dir: Path, rows, device: str = "cuda") -> dict:
    import torch

    from resumo import generation, prompts
    from resumo.config import PromptConfig

    loaded = generation.load(str(model_dir), device=device)
    tokenizer = loaded.tokenizer
    chats = [prompts.user_message(t, PromptConfig()) for t in rows["text"][:n_texts]]
    rendered = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in chats]
    stops = generation.stop_token_ids(tokenizer, loaded.model)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def generate():
        if engine == "continuous":
            return generation._continuous(loaded, rendered, NEW_TOKENS, stops, desc=f"bench {engine}")
        return generation._batched(loaded, rendered, batch, NEW_TOKENS, stops, f"bench {engine}", static=engine == "static")

    prefill = None
    if engine == "dynamic":  # the same batches with one new token: how much of the time is reading the prompts
        sync()
        started = time.perf_counter()
        generation._batched(loaded, rendered, batch, 1, stops, f"bench {engine} prefill", static=False)
        sync()
        prefill = round(time.perf_counter() - started, 2)
    first = None
    if engine == "static":  # its first call compiles the decoding step for these shapes: timed apart
        sync()
        started = time.perf_counter()
        generate()
        sync()
        first = round(time.perf_counter() - started, 1)
    sync()
    started = time.perf_counter()
    tokens = generate()
    sync()
    seconds = time.perf_counter() - started
    generated = sum(len(t) for t in tokens)
    del loaded
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    row = {"engine": engine, "batch": batch, "texts": n_texts, "new_tokens": NEW_TOKENS, "output_tokens": generated, "seconds": round(seconds, 1), "tokens_per_second": round(generated / seconds)}
    return row | ({"first_call_seconds": first} if first is not None else {}) | ({"prefill_seconds": prefill} if prefill is not None else {})


def machine() -> dict:
    import importlib.metadata as md

    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), platform.processor())
    versions = {}
    for package in ("torch", "transformers", "trl", "peft", "accelerate", "liger-kernel", "triton"):
        try:
            versions[package] = md.version(package)
        except md.PackageNotFoundError:
            versions[package] = None
    props = torch.cuda.get_device_properties(0)
    return {"gpu": torch.cuda.get_device_name(0), "gpu_memory_gib": round(props.total_memory / 2**30), "gpus": torch.cuda.device_count(), "cuda": torch.version.cuda, "cpu": cpu, "python": sys.version.split()[0], "versions": versions}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=str(ROOT / "runs" / "bench" / "gpu.json"))
    parser.add_argument("--budget-s", type=float, default=300, help="skip rows that would start after this many seconds")
    parser.add_argument("--skip", nargs="*", default=[], help="train or generate, to skip a part")
    parser.add_argument("--only", nargs="*", default=None, help="the rows to run: training variants by name, generation runs as engine:batch")
    parser.add_argument("--profile", action="store_true", help="also profile one optimizer step of the default and one generation batch (torch.profiler) into <out>.profile.txt and <out>.generate.profile.txt")
    parser.add_argument("--cpu-check", action="store_true", help="the script's own check on CPU: tiny model, two training rows, small generations")
    opts = parser.parse_args()

    import torch
    from transformers import AutoTokenizer

    if opts.cpu_check:
        return cpu_check()
    if not torch.cuda.is_available():
        sys.exit("bench_gpu needs a CUDA GPU")
    started = time.perf_counter()
    out = Path(opts.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {"machine": machine(), "setup": {"model": "Qwen2.5-0.5B shape, random bf16", "lora_r": 64, "articles_tokens": [500, 4000], "summary_tokens": 150, "global_batch": GLOBAL_BATCH, "timed_steps": TIMED_STEPS, "peak_flops": PEAK_FLOPS, "n_params": N_PARAMS}, "train": [], "generate": [], "skipped": []}

    def save():
        out.write_text(json.dumps(result, indent=2))

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_model(Path(tmp) / "qwen-0.5b-shape")
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        rows = study_rows(tokenizer, GLOBAL_BATCH * (1 + TIMED_STEPS), seed=42)
        if opts.profile:
            try:
                profile_step(model_dir, rows, Path(tmp) / "profile", out.with_suffix(".profile.txt"))
            except Exception as err:  # noqa: BLE001 - the profile is a diagnosis; the rows still run
                print(f"profile failed: {type(err).__name__}: {err}", flush=True)
            try:
                profile_generation(model_dir, rows, out.with_suffix(".generate.profile.txt"))
            except Exception as err:  # noqa: BLE001
                print(f"generation profile failed: {type(err).__name__}: {err}", flush=True)
        for name, overrides in ([] if "train" in opts.skip else TRAIN_VARIANTS):
            if opts.only is not None and name not in opts.only:
                continue
            if time.perf_counter() - started > opts.budget_s * 0.65:
                result["skipped"].append(name)
                continue
            try:
                row = train_row(name, overrides, model_dir, rows, Path(tmp) / "train")
            except Exception as err:  # noqa: BLE001 - a failing variant is a result too; the others still run
                row = {"name": name, "error": f"{type(err).__name__}: {err}"[:500]}
                gc.collect()
                torch.cuda.empty_cache()
            result["train"].append(row)
            print(json.dumps(row), flush=True)
            save()
        for engine, batch, n_texts in ([] if "generate" in opts.skip else GENERATE_RUNS):
            if opts.only is not None and f"{engine}:{batch}" not in opts.only:
                continue
            if time.perf_counter() - started > opts.budget_s:
                result["skipped"].append(f"generate {engine} {batch}")
                continue
            gen_rows = study_rows(tokenizer, n_texts, seed=7)
            try:
                row = generate_row(engine, batch, n_texts, model_dir, gen_rows)
            except Exception as err:  # noqa: BLE001
                row = {"engine": engine, "batch": batch, "error": f"{type(err).__name__}: {err}"[:500]}
            result["generate"].append(row)
            print(json.dumps(row), flush=True)
            save()
    result["seconds"] = round(time.perf_counter() - started)
    save()
    print(f"wrote {out}")


def cpu_check() -> None:
    """Every code path above on CPU with the tiny model, so that the GPU call fails on nothing but the GPU."""
    from transformers import AutoTokenizer

    from resumo import models

    global GLOBAL_BATCH, NEW_TOKENS
    tiny = Path(models.resolve("tiny:qwen2"))
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    with tempfile.TemporaryDirectory() as tmp:
        rows = study_rows(tokenizer, GLOBAL_BATCH * (1 + TIMED_STEPS), seed=42)
        rows["text"] = [t[:600] for t in rows["text"]]
        compiled = [v for v in TRAIN_VARIANTS if v[0] == "default, compiled layers"]
        for name, overrides in TRAIN_VARIANTS[:2] + TRAIN_VARIANTS[5:6] + compiled:
            cpu = ["train.max_length=1024", "train.micro_batch_tokens=4096"] if "train.micro_batch_tokens=0" not in overrides else ["train.max_length=1024"]
            print(json.dumps(train_row(name, cpu + [o for o in overrides if "attn_implementation=sdpa" not in o or "length_grouped" in " ".join(overrides)], tiny, rows, Path(tmp) / "train")))
        NEW_TOKENS = 8
        for engine, batch, n_texts in GENERATE_RUNS[:2]:
            print(json.dumps(generate_row(engine, 4, 8, tiny, rows, device="cpu")))
        profile_generation(tiny, rows, Path(tmp) / "generate.profile.txt", texts=4, new_tokens=4, device="cpu")


if __name__ == "__main__":
    main()
