"""Tune: search LoRA hyperparameters, keep the trial with the best validation ROUGE-Lsum.

    resumo tune --pairs runs/pairs --out runs/tune
    resumo tune --pairs runs/pairs --out runs/tune --set tune.algorithm=random --set tune.max_trials=8
    resumo tune --backend katib --dry-run --pairs s3://resumo/pairs --out experiment.yaml

One search space (`tune.space`, the entries named in `tune.search`) and one set
of algorithm names drive both backends: here an optuna study whose trials are
full `train.run`s in `trial-NNN/` (`best.json` holds the best trial's
hyperparameters as `train.*` overrides, its score and its adapter), and on a
cluster a Katib Experiment (`resumo.katib`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from resumo import artifacts
from resumo.config import ParamRange, SearchSpace, TrainConfig, TuneConfig, train_value

log = logging.getLogger(__name__)


@dataclass
class TuneResult:
    best_params: dict[str, float | int]  # dotted train.* keys, e.g. {"lora.r": 16}
    best_score: float
    best_adapter: Path
    trials: list[dict]


def run(cfg: TuneConfig, train_cfg: TrainConfig, pairs_dir: str | Path, out_dir: str | Path) -> TuneResult:
    """The local backend: an optuna study over `cfg.space`, one `train.run` per trial, in this process."""
    import optuna

    from resumo import launch  # here, not above: the Katib launcher uses this module's space helpers without the training stack

    out_dir = Path(out_dir)
    study = optuna.create_study(direction="maximize", sampler=sampler(cfg))
    trials: list[dict] = []

    def objective(trial) -> float:
        params = suggest(trial, cfg)
        result = launch.train(train_cfg.with_params(params), pairs_dir, out_dir / artifacts.optuna_trial(trial.number))  # every GPU, as the train step
        score = result.metrics[cfg.objective]
        trials.append({"trial": trial.number, "params": params, **result.metrics})
        log.info("tune: trial %d/%d %s -> %s=%.4f", trial.number + 1, n_trials, params, cfg.objective, score)
        return score

    n_trials = cfg.space.trial_count(cfg.search, cfg.algorithm, cfg.max_trials)
    study.optimize(objective, n_trials=n_trials)
    best = study.best_trial
    best_params = train_params(best.params)
    result = TuneResult(best_params, float(best.value), out_dir / artifacts.optuna_trial(best.number) / artifacts.ADAPTER, trials)
    (out_dir / artifacts.BEST).write_text(
        json.dumps({"params": result.best_params, cfg.objective: result.best_score, "adapter": str(result.best_adapter), "trials": trials}, indent=2)
    )
    return result


def suggest(trial, cfg: TuneConfig) -> dict:
    """The trial's values for the searched entries of the space, as dotted train.* overrides."""
    return train_params({name: _suggest(trial, name, getattr(cfg.space, name)) for name in cfg.search})


def train_params(assignments: dict) -> dict:
    """Search-space names and values (numbers, or Katib's strings) to typed dotted train.* overrides."""
    return {SearchSpace.TRAIN_KEYS[name]: train_value(name, value) for name, value in assignments.items()}


def _suggest(trial, name: str, entry: ParamRange):
    if entry.values is not None:
        return trial.suggest_categorical(name, entry.values)
    if isinstance(train_value(name, entry.low), int):
        return trial.suggest_int(name, int(entry.low), int(entry.high), log=entry.log)
    return trial.suggest_float(name, entry.low, entry.high, log=entry.log)


def sampler(cfg: TuneConfig):
    """optuna's sampler for Katib's algorithm name."""
    import optuna

    if cfg.algorithm == "grid":
        return optuna.samplers.GridSampler({name: getattr(cfg.space, name).values for name in cfg.search}, seed=cfg.seed)
    if cfg.algorithm == "random":
        return optuna.samplers.RandomSampler(seed=cfg.seed)
    if cfg.algorithm == "bayesianoptimization":
        # Katib runs scikit-optimize's Gaussian process; optuna's GPSampler needs scipy, which we
        # do not ship, so the local study uses TPE, also a model-based (Bayesian) sampler.
        log.info("tune: bayesianoptimization runs as TPE in the local optuna study")
    return optuna.samplers.TPESampler(seed=cfg.seed)
