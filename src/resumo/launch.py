"""Launch: train on every visible GPU, one process each, under torchrun (DDP through the HF Trainer).

    resumo train --pairs runs/pairs --out runs/model                      # one process per visible GPU, else 1
    resumo train --pairs runs/pairs --out runs/model --nproc-per-node 2   # two processes (gloo on CPU)

`train(cfg, pairs, out)` is the one entry point the CLI, the train component,
the optuna trials and (through `resumo train`) the Katib trials use. With one
process, or when already under torchrun (a TrainJob runs `torchrun -m
resumo.cli train`, see resumo.trainjob), it is `resumo.train.run` in this
process. Otherwise it starts `python -m torch.distributed.run --standalone
--nproc-per-node N -m resumo.launch`, hands the validated train config to the
ranks as JSON in the environment (so they train exactly what was validated
here, once), waits, and reads the result rank 0 wrote.

The configured batch is the global one: `batch_size x gradient_accumulation`
examples per optimizer step whatever the world size (`split_batch`), so a run
on 8 GPUs takes the same optimizer steps as one on 1 GPU, 8 times faster.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from resumo.config import TrainConfig
from resumo.errors import ConfigError, ResumoError

log = logging.getLogger(__name__)

CONFIG_ENV = "RESUMO_TRAIN_CONFIG"  # the ranks' train config, as JSON
RUN_ID_ENV = "RESUMO_TRAIN_RUN_ID"  # the ranks' run key for checkpoints kept in train.checkpoint_store


def visible_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def nproc_per_node(cfg: TrainConfig) -> int:
    """train.nproc_per_node, else one process per visible CUDA GPU, else 1."""
    return cfg.nproc_per_node or max(visible_gpus(), 1)


def under_torchrun() -> bool:
    """torchrun (or a TrainJob's torchrun) started this process: it is one rank of a world."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1")) if under_torchrun() else 1


def is_main() -> bool:
    """Rank 0 of the world (of every node): the one process that writes outputs and prints metric lines."""
    return not under_torchrun() or int(os.environ.get("RANK", "0")) == 0


def split_batch(batch_size: int, gradient_accumulation: int, processes: int) -> tuple[int, int]:
    """(per-device batch, accumulation steps) that give `batch_size x gradient_accumulation` examples
    per optimizer step over `processes` processes.

    Each process takes global / processes examples per step, in micro-batches of
    the largest size that divides its share and is at most `batch_size`: the
    configured micro-batch fits in memory, so a smaller one does too. 16 x 4 on 2
    GPUs is 16 x 2 each; on 8 GPUs, 8 x 1 each.
    """
    global_batch = batch_size * gradient_accumulation
    if global_batch % processes:
        raise ConfigError(
            f"train.batch_size x train.gradient_accumulation = {batch_size} x {gradient_accumulation} = {global_batch} examples per optimizer step "
            f"do not split over {processes} processes; run a number of processes that divides {global_batch} (--nproc-per-node, train.nproc_per_node) "
            f"or set a global batch that {processes} divides"
        )
    share = global_batch // processes
    per_device = max(b for b in range(1, min(batch_size, share) + 1) if share % b == 0)
    return per_device, share // per_device


def train(cfg: TrainConfig, pairs_dir: str | Path, out_dir: str | Path, run_id: str | None = None):
    """`resumo.train.run` on `nproc_per_node(cfg)` processes; the TrainResult that rank 0 wrote."""
    from resumo import train as stage

    nproc = nproc_per_node(cfg)
    if nproc == 1 or under_torchrun():
        return stage.run(cfg, pairs_dir, out_dir, run_id)
    split_batch(cfg.batch_size, cfg.gradient_accumulation, nproc)  # refuse before any process starts
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", "-m", "resumo.launch", str(pairs_dir), str(out_dir)]
    env = {**os.environ, CONFIG_ENV: cfg.model_dump_json(), **({RUN_ID_ENV: run_id} if run_id else {})}
    log.info("train: %d processes under torchrun: %s", nproc, " ".join(command))
    # torchrun gives each rank OMP_NUM_THREADS=1 unless it is set; the ranks' output is this process's.
    code = _run_forwarding_sigterm(command, env)
    if code:
        raise ResumoError(f"train: torchrun with {nproc} processes failed (exit code {code}); the failing rank's error is printed above")
    return stage.result_of(out_dir)


def _run_forwarding_sigterm(command: list[str], env: dict) -> int:
    """Run torchrun, passing a SIGTERM (the pod being stopped) on to it, so that its ranks save and stop."""
    import signal

    proc = subprocess.Popen(command, env=env)
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: proc.send_signal(signal.SIGTERM))
    try:
        return proc.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> None:
    """One rank, as torchrun starts it: `python -m resumo.launch PAIRS OUT` with the config in RESUMO_TRAIN_CONFIG."""
    from resumo import train as stage

    pairs_dir, out_dir = argv or sys.argv[1:]
    logging.basicConfig(level=logging.INFO if is_main() else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    stage.run(TrainConfig.model_validate(json.loads(os.environ[CONFIG_ENV])), pairs_dir, out_dir, os.environ.get(RUN_ID_ENV))


if __name__ == "__main__":
    main()
