"""A training process killed after a checkpoint resumes from it and ends where an uninterrupted run ends."""

import json
import os
import signal
import subprocess
import sys

import pytest

from resumo import train
from resumo.config import load_config

pytestmark = pytest.mark.numerics  # make test-kernels reruns these on other CPU kernels

# Two epochs, a checkpoint after each: the kill lands in the second.
SETTINGS = ["train.epochs=2", "train.eval_samples=1", "train.max_new_tokens=2"]


def _command(pairs_dir, out):
    sets = [arg for value in SETTINGS for arg in ("--set", value)]
    return [sys.executable, "-c", "from resumo.cli import main; main()", "train", "--pairs", str(pairs_dir), "--out", str(out), *sets]


def _kill_after_first_checkpoint(command, out) -> int:
    """Start training, SIGKILL it once a complete checkpoint exists; the step it was at."""
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
    try:
        for _ in range(3000):  # 0.1 s each: at most 5 minutes on a loaded machine
            checkpoint = train.last_checkpoint(out / "checkpoints")
            if checkpoint:
                proc.send_signal(signal.SIGKILL)
                break
            try:
                proc.wait(timeout=0.1)
            except subprocess.TimeoutExpired:
                continue
            pytest.fail(f"training ended (exit {proc.returncode}) before it wrote a checkpoint")
        else:
            pytest.fail("no checkpoint within the polling bound")
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before the kill: nothing was interrupted"
    return int(checkpoint.name.split("-")[1])


def _final(out):
    return json.loads((out / "metrics.json").read_text())


def test_a_killed_run_resumes_from_its_checkpoint_and_loses_no_progress(pairs_dir, tmp_path):
    resumed_out, whole_out = tmp_path / "resumed", tmp_path / "whole"
    killed_at = _kill_after_first_checkpoint(_command(pairs_dir, resumed_out), resumed_out)
    assert not (resumed_out / "metrics.json").exists()

    subprocess.run(_command(pairs_dir, resumed_out), check=True, capture_output=True)
    train.run(load_config("smoke", SETTINGS).train, pairs_dir, whole_out)  # what `resumo train` calls

    resumed, whole = _final(resumed_out), _final(whole_out)
    assert resumed["run"]["start_step"] >= killed_at > 0  # started from the checkpoint, not from step 0
    assert whole["run"]["start_step"] == 0
    assert resumed["run"]["global_step"] == whole["run"]["global_step"]
    # Same data order, weights, optimizer and RNG state after the resume, and the same machine and
    # thread count (the subprocess inherits OMP_NUM_THREADS): each step repeats the same float
    # operations in the same order, so the model is the same to the last bit, not just close.
    assert resumed["metrics"]["eval_loss"] == whole["metrics"]["eval_loss"]
