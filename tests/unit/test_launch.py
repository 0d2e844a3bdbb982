"""Training on N processes under torchrun (gloo on CPU) trains what one process trains at the same global batch."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from resumo import distributed, launch, tables
from resumo.config import load_config
from resumo.errors import ConfigError

RESUMO = str(Path(sys.executable).parent / "resumo")


@pytest.mark.parametrize(
    ("batch_size", "accumulation", "processes", "expected"),
    [
        (16, 4, 1, (16, 4)),
        (16, 4, 2, (16, 2)),  # fewer accumulation steps each
        (16, 4, 8, (8, 1)),  # 64 over 8: smaller micro-batches, never larger ones
        (4, 1, 2, (2, 1)),  # the smoke profile on 2 processes
        (6, 2, 4, (3, 1)),
        (16, 4, 64, (1, 1)),
    ],
)
def test_the_configured_batch_is_the_global_one(batch_size, accumulation, processes, expected):
    per_device, steps = distributed.split_batch(batch_size, accumulation, processes)
    assert (per_device, steps) == expected
    assert per_device * steps * processes == batch_size * accumulation and per_device <= batch_size


def test_a_global_batch_that_does_not_split_is_refused_before_anything_starts(pairs_dir, tmp_path):
    with pytest.raises(ConfigError, match=r"16 x 4 = 64 examples per optimizer step do not split over 3 processes; .*--nproc-per-node"):
        distributed.split_batch(16, 4, 3)
    cfg = load_config("smoke", ["train.nproc_per_node=3"]).train  # 4 x 1 over 3
    with pytest.raises(ConfigError, match="do not split over 3 processes"):
        launch.train(cfg, pairs_dir, tmp_path)
    assert not (tmp_path / "checkpoints").exists()


def test_one_process_per_visible_gpu_else_one(monkeypatch):
    cfg = load_config("smoke").train
    assert launch.nproc_per_node(cfg) == max(launch.visible_gpus(), 1)
    assert launch.nproc_per_node(cfg.model_copy(update={"nproc_per_node": 4})) == 4
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert (distributed.under_torchrun(), distributed.world_size(), distributed.is_main()) == (False, 1, True)
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "16")
    monkeypatch.setenv("RANK", "9")  # node 1's second GPU
    assert (distributed.under_torchrun(), distributed.world_size(), distributed.is_main()) == (True, 16, False)


@pytest.fixture(scope="module")
def even_pairs(pairs_dir, tmp_path_factory):
    """16 training and 8 validation pairs: whole optimizer steps and whole evaluation batches on 1 and 2 processes,
    so neither run pads its last batch with repeated examples (accelerate's even_batches)."""
    out = tmp_path_factory.mktemp("even-pairs")
    for split, rows in (("train", 16), ("val", 8), ("test", 2)):
        df = tables.read_split(pairs_dir, split)
        tables.write_split(df[df["filter_reason"].isna()].head(rows), out, split)
    return out


def _train_cli(pairs, out, batching, processes):
    # 2 x 2 on one process, 2 x 1 on each of two: the same micro-batches make the same 4-example optimizer steps.
    sets = ["train.epochs=2", "train.batch_size=2", "train.gradient_accumulation=2", "train.lora.dropout=0", f"train.batching={batching}"]
    sets += ["train.eval_samples=2", "train.max_new_tokens=4"]
    command = [RESUMO, "train", "--pairs", str(pairs), "--out", str(out), "--nproc-per-node", str(processes), *(f"--set={s}" for s in sets)]
    env = {k: v for k, v in os.environ.items() if k not in ("LOCAL_RANK", "WORLD_SIZE", "RANK")}
    done = subprocess.run(command, env={**env, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "metrics.json").read_text()), done.stdout


# Why the two runs agree to EVAL_LOSS_RTOL. Both run on one machine with one thread per
# process, so the same kernels: an AVX-512 or AMX machine changes both runs alike. Each
# optimizer step sees the same two micro-batches of 2 (same examples, same shapes, so the same
# forward and backward arithmetic); the one difference is where their gradients meet. One
# process adds the second micro-batch's gradient to the first's; two processes scale their
# loss by the world size (2), DDP divides by 2 and gloo sums the two: multiplying and dividing
# by 2 is exact in binary floating point and a + b == b + a, so the weights, and eval_loss,
# come out bit for bit equal (measured on AMD EPYC, AVX2: 4.334205627441406 padded and
# 4.335814952850342 length-grouped, equal on 1 and 2 processes). So the bound is a guard, not a
# rounding analysis: it leaves about 80 float32 epsilons (2**-23) of the loss for an allreduce that would group
# its sum otherwise, while the smallest change of substance measured here is 37 times larger
# (the padded and the length-grouped orders of the same examples end 3.7e-4 relative apart).
EVAL_LOSS_RTOL = 1e-5


@pytest.mark.slow
@pytest.mark.numerics
@pytest.mark.parametrize("batching", ["padded", "length_grouped"])
def test_two_processes_train_what_one_trains(even_pairs, tmp_path, batching):
    one, _ = _train_cli(even_pairs, tmp_path / "one", batching, 1)
    two, stdout = _train_cli(even_pairs, tmp_path / "two", batching, 2)

    assert (one["run"]["world_size"], two["run"]["world_size"]) == (1, 2)
    assert (two["run"]["per_device_batch_size"], two["run"]["gradient_accumulation"]) == (2, 1)
    assert one["run"]["global_step"] == two["run"]["global_step"] == 8  # 16 examples / 4 per step x 2 epochs
    assert two["metrics"]["eval_loss"] == pytest.approx(one["metrics"]["eval_loss"], rel=EVAL_LOSS_RTOL)
    # Tokens are counted over both processes: the same real tokens as one process trained on.
    assert two["run"]["train_tokens"] == one["run"]["train_tokens"]
    # Rank 0 alone prints Katib's lines: one report per epoch and the final values, not one per rank.
    metric_lines = [line.split("=")[0] for line in stdout.splitlines() if re.fullmatch(r"\w+=[-+0-9.eE]+", line)]
    assert metric_lines == ["eval_loss", "rougeLsum"] * 3 + ["train_tokens_per_second"]
    assert (tmp_path / "two" / "adapter" / "adapter_model.safetensors").exists()


def test_the_step_sampler_groups_whole_global_steps_the_same_on_every_rank():
    """transformers' group_by_length sampler draws from the global RNG; ours from (seed, epoch) alone."""
    from resumo.batching import StepLengthGroupedSampler

    lengths = [(7 * i) % 23 + 1 for i in range(64)]
    a, b = StepLengthGroupedSampler(lengths, 8, seed=42), StepLengthGroupedSampler(lengths, 8, seed=42)
    import torch

    torch.manual_seed(0)
    first = list(a)
    torch.manual_seed(1)  # another rank's RNG after dropout drew other masks
    assert list(b) == first and sorted(first) == list(range(64))
    a.set_epoch(1)
    assert list(a) != first and sorted(a) == list(range(64))
