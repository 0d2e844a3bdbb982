"""When a run searches hyperparameters: `tune.policy` = always | reuse | on_regression.

    resumo tune --pairs runs/pairs --out runs/tune --set tune.policy=reuse

A recurring retrain on a corpus that barely moved gets the same hyperparameters
out of every search, and each search costs `max_trials` GPU trainings (12 x 4
epochs in the full profile). So:

- `always` searches every run (`resumo run|submit`).
- `reuse` takes the hyperparameters stored with the production version (promote
  keeps them in production.json, `hyperparameters`) and searches only while there
  is no production version, or one that stores none. Under optuna the tune task
  then trains nothing: the train task trains once. Under Katib the launcher runs a
  one-trial Experiment over exactly those values (the launcher pod has no GPU;
  the trial pod does) and its adapter is handed on, so the run trains once.
- `on_regression` trains once with them, as `reuse` does under Katib, and
  searches again when that training's validation score falls more than
  `regression_margin` below the validation score production was trained to.

The decision is decided here, when the tune task runs, never when the pipeline
is compiled: the policy is a run parameter, so one compiled DAG serves all three.
Its reason is logged, written to best.json (`policy`) and logged as Metrics.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from resumo import artifacts, run_cost, storage
from resumo.config import SearchSpace, TrainConfig, TuneConfig
from resumo.registry_pointer import current_production
from resumo.stage import StageResult

log = logging.getLogger(__name__)

REUSED_TRIAL = artifacts.REUSED_TRIAL  # the one training on_regression checks the reused values with


@dataclass
class Decision:
    policy: str  # the policy in force, None resolved to `always`
    searched: bool  # a full search ran
    reused: dict = field(default_factory=dict)  # the production hyperparameters reused (dotted train.* keys), or {}
    production_version: str | None = None
    production_score: float | None = None  # the validation score production was trained to
    reused_score: float | None = None  # on_regression: the reused values' validation score in this run
    regression: bool = False  # on_regression found the reused values worse by more than the margin
    reason: str = ""
    trainings: int = 0  # trainings the tune step ran: the search's trials and on_regression's check
    training_seconds: float = 0.0  # their wall seconds (Katib: the Experiments' wall time)

    @property
    def metrics(self) -> dict[str, float]:
        """Numbers for KFP Metrics (which hold numbers only; the reason goes to the log and best.json)."""
        values = {"policy_reused": int(bool(self.reused) and not self.searched), "policy_searched": int(self.searched), "policy_regression": int(self.regression)}
        values |= {k: v for k, v in (("production_score", self.production_score), ("reused_score", self.reused_score)) if v is not None}
        return values


def policy_of(cfg: TuneConfig) -> str:
    return cfg.policy or "always"


def production_training(registry: str | None) -> tuple[dict | None, dict, dict]:
    """(production pointer or None, its hyperparameters, its validation scores), read from the registry."""
    if not registry:
        return None, {}, {}
    pointer = current_production(registry)
    if pointer is None:
        return None, {}, {}
    return pointer, dict(pointer.get("hyperparameters") or {}), dict(pointer.get("validation") or {})


def training_record(adapter_dir: str | Path) -> dict:
    """What promote stores with a version: the searchable train.* values it was trained with
    (from its resumo_model.json) and its validation scores (train's metrics.json beside the adapter)."""
    adapter_dir = Path(adapter_dir)
    meta_file = adapter_dir / artifacts.MODEL_META
    if not meta_file.is_file():
        return {}
    config = json.loads(meta_file.read_text()).get("config") or {}
    hyperparameters = {}
    for key in SearchSpace.TRAIN_KEYS.values():
        node = config
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            hyperparameters[key] = node
    record = {"hyperparameters": hyperparameters}
    metrics_file = adapter_dir.parent / artifacts.TRAIN_METRICS
    if metrics_file.is_file():
        scores = json.loads(metrics_file.read_text()).get("metrics") or {}
        record["validation"] = {k: float(v) for k, v in scores.items() if k in ("rougeLsum", "eval_loss")}
    return record


def decide_without_training(cfg: TuneConfig) -> Decision:
    """The decision that needs no training: search (always, or nothing to reuse) or reuse outright."""
    policy = policy_of(cfg)
    if policy == "always":
        return Decision(policy, searched=True, reason="tune.policy is always")
    pointer, params, validation = production_training(cfg.registry)
    if pointer is None:
        return Decision(policy, searched=True, reason=f"no production version in {cfg.registry} yet: searching")
    if not params:
        return Decision(policy, searched=True, production_version=pointer["version"], reason=f"production version {pointer['version']} stores no hyperparameters: searching")
    decision = Decision(policy, searched=False, reused=params, production_version=pointer["version"], production_score=validation.get(cfg.objective))
    decision.reason = f"reusing the hyperparameters of production version {pointer['version']}: {params}"
    return decision


def judge_reused(cfg: TuneConfig, decision: Decision, score: float) -> Decision:
    """on_regression: does the reused values' validation score fall too far below production's?"""
    decision.reused_score = score
    if decision.production_score is None:
        decision.reason += f"; {cfg.objective} {score:.4f} on validation (production stores none to compare with): kept"
        return decision
    floor = decision.production_score - cfg.regression_margin
    if score < floor:
        decision.regression, decision.searched = True, True
        decision.reason = (
            f"the hyperparameters of production version {decision.production_version} ({decision.reused}) reach validation {cfg.objective} {score:.4f}, "
            f"more than tune.regression_margin={cfg.regression_margin} below production's {decision.production_score:.4f}: searching again"
        )
    else:
        decision.reason += f"; validation {cfg.objective} {score:.4f} is within {cfg.regression_margin} of production's {decision.production_score:.4f}: kept"
    return decision


def run_stage(cfg: TuneConfig, train_cfg: TrainConfig, pairs_dir: str | Path, out_dir: str | Path, gpu_count: int = 1) -> StageResult:
    """The pipeline's optuna tune step: `run`, its metrics with the cost figures (`gpu_count`: the GPUs the
    task holds while it trains), and the outputs best_params and best_adapter ("" when nothing was trained here)."""
    found, decision = run(cfg, train_cfg, pairs_dir, out_dir)
    metrics = {"best_" + cfg.objective: found.best_score} if found.trials else {}
    metrics |= {"trials": decision.trainings, **decision.metrics, **run_cost.tune_figures(cfg, decision.trainings, decision.training_seconds, gpu_count)}
    return StageResult(metrics, {"best_params": found.best_params, "best_adapter": str(found.best_adapter) if found.trials else ""})


def run_katib_stage(cfg: TuneConfig, train_cfg: TrainConfig, pairs_uri: str, out_dir: str | Path, target) -> StageResult:
    """The pipeline's Katib tune step: `run_katib`, its metrics with the cost figures, and the outputs
    best_params and best_adapter (the best trial's adapter URI)."""
    result, decision, trials = run_katib(cfg, train_cfg, pairs_uri, out_dir, target)
    # An upper bound: each trial pod holds target.gpu.count GPUs, at most parallel_trials at once, for the Experiments' wall time.
    pod_seconds = decision.training_seconds * min(cfg.parallel_trials, max(trials, 1))
    metrics = {"best_" + cfg.objective: result.best_score, "trials": trials, **decision.metrics, **run_cost.tune_figures(cfg, trials, pod_seconds, target.gpu.count)}
    return StageResult(metrics, {"best_params": result.best_params, "best_adapter": result.best_adapter})


def run(cfg: TuneConfig, train_cfg: TrainConfig, pairs_dir: str | Path, out_dir: str | Path):
    """The local (optuna) tune step under the policy; returns (TuneResult, Decision) and writes best.json."""
    from resumo import train, tune

    out_dir = Path(out_dir)
    started = time.monotonic()
    decision = decide_without_training(cfg)
    result = None
    if not decision.searched and policy_of(cfg) == "on_regression":
        trained = train.run(train_cfg.with_params(decision.reused), pairs_dir, out_dir / REUSED_TRIAL)
        decision = judge_reused(cfg, decision, trained.metrics[cfg.objective])
        if not decision.searched:
            trial = {"trial": REUSED_TRIAL, "params": decision.reused, **trained.metrics}
            result = tune.TuneResult(decision.reused, float(trained.metrics[cfg.objective]), out_dir / REUSED_TRIAL / artifacts.ADAPTER, [trial])
    log.info("tune: %s", decision.reason)
    if decision.searched:
        result = tune.run(cfg, train_cfg, pairs_dir, out_dir)
    decision.trainings = len(result.trials) + int(decision.regression) if decision.searched else len(result.trials) if result else 0
    decision.training_seconds = round(time.monotonic() - started, 3) if decision.trainings else 0.0
    if result is None:  # reuse: nothing trained here; the train step trains once
        result = tune.TuneResult(decision.reused, float("nan") if decision.production_score is None else decision.production_score, Path(""), [])
    write_best(out_dir, cfg, result, decision)
    return result, decision


def write_best(out_dir: Path, cfg: TuneConfig, result, decision: Decision) -> None:
    score = None if math.isnan(result.best_score) else result.best_score  # reuse with no stored score: JSON has no NaN
    best = {"params": result.best_params, cfg.objective: score, "adapter": str(result.best_adapter), "trials": result.trials, "policy": asdict(decision)}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / artifacts.BEST).write_text(json.dumps(best, indent=2))


def fixed_space(cfg: TuneConfig, params: dict) -> TuneConfig:
    """A one-trial search over exactly `params` (dotted train.* keys): how Katib trains the reused values once on a GPU pod."""
    names = {key: name for name, key in SearchSpace.TRAIN_KEYS.items()}
    space = cfg.space.model_dump()
    searched = []
    for key, value in params.items():
        if key in names:
            space[names[key]] = {"values": [value]}
            searched.append(names[key])
    return cfg.model_copy(
        update={"space": SearchSpace.model_validate(space), "search": searched, "algorithm": "grid", "max_trials": 1, "parallel_trials": 1, "early_stopping": "none"}
    )


def run_katib(cfg: TuneConfig, train_cfg: TrainConfig, pairs_uri: str, out_dir: str | Path, target=None, api_client=None):
    """The Katib tune step under the policy: reuse and on_regression run a one-trial Experiment of the
    reused values first (its adapter is what the train step hands on); a search is a full Experiment.
    With a `target.run_id`, each is named after it (the reused one with a suffix), so a retry finds both.
    Returns (KatibResult, Decision, trials run)."""
    import dataclasses

    from resumo import katib, kube

    target = target or kube.JobTarget()

    started = time.monotonic()
    decision = decide_without_training(cfg)
    trials = 0
    result = None
    if not decision.searched:
        reused = dataclasses.replace(target, run_id=target.run_id and f"{target.run_id}-reused")
        result = katib.run(fixed_space(cfg, decision.reused), train_cfg, pairs_uri, out_dir, api_client, reused)
        trials += 1
        if policy_of(cfg) == "on_regression":
            decision = judge_reused(cfg, decision, result.best_score)
    log.info("tune: %s", decision.reason)
    if decision.searched:
        result = katib.run(cfg, train_cfg, pairs_uri, out_dir, api_client, target)
        trials += int(result.status.get("trials", 0))
    decision.trainings, decision.training_seconds = trials, round(time.monotonic() - started, 3)
    storage.write_text(storage.join(str(out_dir), artifacts.TUNE_POLICY), json.dumps(asdict(decision), indent=2))
    return result, decision, trials
