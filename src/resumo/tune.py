"""Tune: search LoRA hyperparameters, keep the trial with the best validation ROUGE-Lsum.

    resumo tune --pairs runs/pairs --out runs/tune
    resumo tune --pairs runs/pairs --out runs/tune --set tune.algorithm=tpe --set tune.max_trials=8

Each trial is a full `train.run` in `trial-NNN/`; `best.json` holds the best
trial's hyperparameters (as `train.*` overrides), its score and its adapter.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from resumo import train
from resumo.config import TrainConfig, TuneConfig, set_dotted, validate

log = logging.getLogger(__name__)


@dataclass
class TuneResult:
    best_params: dict[str, float | int]  # dotted train.* keys, e.g. {"lora.r": 16}
    best_score: float
    best_adapter: Path
    trials: list[dict]


def run(cfg: TuneConfig, train_cfg: TrainConfig, pairs_dir: str | Path, out_dir: str | Path) -> TuneResult:
    import optuna

    out_dir = Path(out_dir)
    space = search_space(cfg)
    study = optuna.create_study(direction="maximize", sampler=_sampler(cfg, space))
    trials: list[dict] = []

    def objective(trial) -> float:
        params = {key: trial.suggest_categorical(key, values) for key, values in space.items()}
        trial_cfg = apply_params(train_cfg, params)
        result = train.run(trial_cfg, pairs_dir, out_dir / f"trial-{trial.number:03d}")
        score = result.metrics[cfg.objective]
        trials.append({"trial": trial.number, "params": params, **result.metrics})
        log.info("tune: trial %d %s -> %s=%.4f", trial.number, params, cfg.objective, score)
        return score

    study.optimize(objective, n_trials=min(cfg.max_trials, _grid_size(space)) if cfg.algorithm == "grid" else cfg.max_trials)
    best = study.best_trial
    result = TuneResult(best.params, float(best.value), out_dir / f"trial-{best.number:03d}" / "adapter", trials)
    (out_dir / "best.json").write_text(
        json.dumps({"params": result.best_params, cfg.objective: result.best_score, "adapter": str(result.best_adapter), "trials": trials}, indent=2)
    )
    return result


def search_space(cfg: TuneConfig) -> dict[str, list]:
    """Dotted train.* keys to the values tried; the one space every backend renders."""
    space: dict[str, list] = {"lora.r": list(cfg.lora_r)}
    if cfg.learning_rate:
        space["learning_rate"] = list(cfg.learning_rate)
    return space


def apply_params(train_cfg: TrainConfig, params: dict) -> TrainConfig:
    """A copy of `train_cfg` with dotted overrides, validated like any config."""
    values = train_cfg.model_dump()
    for key, value in params.items():
        set_dotted(values, key, value)
    return validate(TrainConfig, values)


def _grid_size(space: dict[str, list]) -> int:
    size = 1
    for values in space.values():
        size *= len(set(values))
    return size


def _sampler(cfg: TuneConfig, space: dict[str, list]):
    import optuna

    if cfg.algorithm == "grid":
        return optuna.samplers.GridSampler(space, seed=0)
    if cfg.algorithm == "random":
        return optuna.samplers.RandomSampler(seed=0)
    return optuna.samplers.TPESampler(seed=0)
