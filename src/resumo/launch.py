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
examples per optimizer step whatever the world size (`resumo.distributed.split_batch`),
so a run on 8 GPUs takes the same optimizer steps as one on 1 GPU, 8 times faster.

`run_stage` is the pipeline's train step on top of it (the stage contract,
resumo.stage): `train` with tune's parameters applied, or a Katib trial's
outputs adopted without training again.
This module sits above `resumo.train` (it imports it, inside functions, as the
training stack is heavy); `resumo.train` asks `resumo.distributed`, not this
module, where its process stands.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from resumo import artifacts, storage
from resumo.config import TrainConfig
from resumo.distributed import is_main, split_batch, under_torchrun
from resumo.errors import ResumoError
from resumo.stage import StageResult

if TYPE_CHECKING:
    from resumo.train import TrainResult

log = logging.getLogger(__name__)

CONFIG_ENV = "RESUMO_TRAIN_CONFIG"  # the ranks' train config, as JSON
RUN_ID_ENV = "RESUMO_TRAIN_RUN_ID"  # the ranks' run key for checkpoints kept in train.checkpoint_store


def visible_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def nproc_per_node(cfg: TrainConfig) -> int:
    """train.nproc_per_node, else one process per visible CUDA GPU, else 1."""
    return cfg.nproc_per_node or max(visible_gpus(), 1)


def train(cfg: TrainConfig, pairs_dir: str | Path, out_dir: str | Path, run_id: str | None = None) -> TrainResult:
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
    return result_of(out_dir)


def run_stage(cfg: TrainConfig, params: dict, pairs_dir: str | Path, out_dir: str | Path, best_adapter: str = "", run_id: str | None = None) -> StageResult:
    """The pipeline's train step: `train` with `params` (dotted train.* overrides) applied, or, given a
    tuning trial's `best_adapter`, that trial's outputs handed on without training again; the run's metrics."""
    result = adopt_trial(best_adapter, out_dir) if best_adapter else train(cfg.with_params(params), pairs_dir, out_dir, run_id)
    return StageResult(dict(result.metrics))


def adopt_trial(adapter_uri: str, out_dir: str | Path) -> TrainResult:
    """A tuning trial's outputs as this step's, downloaded rather than trained again.

    A Katib trial's folder is a `model` folder (resumo.artifacts: its adapter, metrics and
    curves); the best trial's adapter was trained with the very parameters a
    retrain would use, so the train step hands it on (unless `tune.retrain_best`).
    """
    out_dir = Path(out_dir)
    storage.download(artifacts.model_of(adapter_uri), out_dir)  # the trial's folder is exactly its outputs
    result = result_of(out_dir)
    log.info("train: adopted the best trial's adapter %s (%d metrics)", adapter_uri, len(result.metrics))
    return result


def result_of(out_dir: str | Path) -> TrainResult:
    """The TrainResult a finished run wrote under `out_dir` (another process's: torchrun's rank 0, a trial, a TrainJob)."""
    from resumo.train import TrainResult

    out_dir = Path(out_dir)
    metrics_file = out_dir / artifacts.TRAIN_METRICS
    scores = json.loads(metrics_file.read_text())["metrics"] if metrics_file.exists() else {}
    return TrainResult(adapter_dir=out_dir / artifacts.ADAPTER, metrics=scores)


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
