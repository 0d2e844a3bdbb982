"""A training process killed after a checkpoint resumes from it and ends where an uninterrupted run ends."""

import json
import os
import re
import signal
import subprocess
import sys

import pytest

from resumo import checkpoints, storage, train
from resumo.config import load_config

pytestmark = pytest.mark.numerics  # make test-kernels reruns these on other CPU kernels

# Two epochs, a checkpoint after each: the kill lands in the second.
SETTINGS = ["train.epochs=2", "train.eval_samples=1", "train.max_new_tokens=2"]


def _command(pairs_dir, out, *extra):
    sets = [arg for value in SETTINGS for arg in ("--set", value)]
    return [sys.executable, "-c", "from resumo.cli import main; main()", "train", "--pairs", str(pairs_dir), "--out", str(out), *sets, *extra]


@pytest.fixture(scope="module")
def whole(pairs_dir, tmp_path_factory):
    """An uninterrupted run, as `resumo train` calls it: what every resumed run must end at."""
    out = tmp_path_factory.mktemp("whole")
    train.run(load_config("smoke", SETTINGS).train, pairs_dir, out)
    return _final(out)


def _signal_after_first_checkpoint(command, out, sig=signal.SIGKILL):
    """Start training, send `sig` once a complete checkpoint exists; the process, its stderr and the checkpoint's step."""
    log = out.parent / f"{out.name}.stderr"
    with log.open("w") as stderr:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, env=os.environ.copy())
    try:
        for _ in range(3000):  # 0.1 s each: at most 5 minutes on a loaded machine
            checkpoint = train.last_checkpoint(out / "checkpoints")
            if checkpoint:
                proc.send_signal(sig)
                break
            try:
                proc.wait(timeout=0.1)
            except subprocess.TimeoutExpired:
                continue
            pytest.fail(f"training ended (exit {proc.returncode}) before it wrote a checkpoint")
        else:
            pytest.fail("no checkpoint within the polling bound")
        proc.wait(timeout=300)  # SIGTERM: the run saves and stops by itself
    finally:
        proc.kill()
        proc.wait()
    return proc, log.read_text(), int(checkpoint.name.split("-")[1])


def _kill_after_first_checkpoint(command, out) -> int:
    """Start training, SIGKILL it once a complete checkpoint exists; the step it was at."""
    proc, _, step = _signal_after_first_checkpoint(command, out)
    assert proc.returncode == -signal.SIGKILL, "the run finished before the kill: nothing was interrupted"
    return step


def _final(out):
    return json.loads((out / "metrics.json").read_text())


def test_a_killed_run_resumes_from_its_checkpoint_and_loses_no_progress(pairs_dir, tmp_path, whole):
    resumed_out = tmp_path / "resumed"
    killed_at = _kill_after_first_checkpoint(_command(pairs_dir, resumed_out), resumed_out)
    assert not (resumed_out / "metrics.json").exists()

    subprocess.run(_command(pairs_dir, resumed_out), check=True, capture_output=True)

    resumed = _final(resumed_out)
    assert resumed["run"]["start_step"] >= killed_at > 0  # started from the checkpoint, not from step 0
    assert whole["run"]["start_step"] == 0
    assert resumed["run"]["global_step"] == whole["run"]["global_step"]
    # Same data order, weights, optimizer and RNG state after the resume, and the same machine and
    # thread count (the subprocess inherits OMP_NUM_THREADS): each step repeats the same float
    # operations in the same order, so the model is the same to the last bit, not just close.
    assert resumed["metrics"]["eval_loss"] == whole["metrics"]["eval_loss"]


def test_a_sigtermed_run_resumes_from_object_storage_in_an_empty_folder(pairs_dir, tmp_path, s3, whole):
    # A preempted pod: SIGTERM, then its disk is gone. The retry runs on an empty folder with
    # the same run id, and must find the checkpoint in S3; once, it would have started over.
    store = f"{s3}/checkpoints"
    remote = checkpoints.location(store, "R1", "train")
    extra = ("--run-id", "R1", "--set", f"train.checkpoint_store={store}")
    first_out, retry_out = tmp_path / "first-pod", tmp_path / "retry-pod"
    proc, stderr, first_checkpoint = _signal_after_first_checkpoint(_command(pairs_dir, first_out, *extra), first_out, signal.SIGTERM)
    assert proc.returncode == 2, stderr[-2000:]  # failed, so KFP retries it; not killed by the signal
    saved_at = int(re.search(r"stopped on SIGTERM at step (\d+)", stderr).group(1))
    assert saved_at > first_checkpoint  # it saved at the step it was on, not only at the last epoch end
    assert checkpoints.remote_steps(remote) == [saved_at]  # the older one was dropped
    assert not (first_out / "metrics.json").exists()

    subprocess.run(_command(pairs_dir, retry_out, *extra), check=True, capture_output=True)
    retried = _final(retry_out)
    assert retried["run"]["start_step"] == saved_at
    assert retried["run"]["global_step"] == whole["run"]["global_step"]
    # Bit for bit, as the SIGKILL test argues: the same checkpoint bytes, kernels and thread count.
    assert retried["metrics"]["eval_loss"] == whole["metrics"]["eval_loss"]
    assert storage.list_keys(remote) == []  # cleaned up after success
