"""The local optuna study: the shared search space, sampled by the algorithm Katib would run."""

import math

import optuna
import pytest

from resumo import tune
from resumo.config import load_config

optuna.logging.set_verbosity(optuna.logging.WARNING)


def sample(cfg, n_trials: int) -> list[dict]:
    """The train.* overrides the study proposes, scored by a known function instead of training."""
    study = optuna.create_study(direction="maximize", sampler=tune.sampler(cfg.tune))
    proposed = []

    def objective(trial):
        params = tune.suggest(trial, cfg.tune)
        proposed.append(params)
        return -abs(math.log10(params.get("learning_rate", 1e-4)) + 4) + params["lora.r"] / 64  # best near lr=1e-4, large r

    study.optimize(objective, n_trials=n_trials)
    return proposed


@pytest.mark.parametrize("algorithm", ["tpe", "random", "bayesianoptimization"])
def test_every_proposal_lies_in_the_space_and_is_a_valid_train_config(algorithm):
    cfg = load_config("full", [f"tune.algorithm={algorithm}"])
    proposed = sample(cfg, 12)
    for params in proposed:
        assert set(params) == {"lora.r", "lora.alpha_ratio", "learning_rate", "lora.dropout", "epochs"}
        assert params["lora.r"] in (8, 16, 32, 64) and isinstance(params["lora.r"], int)
        assert params["lora.alpha_ratio"] in (1, 2, 4) and params["epochs"] in (2, 3, 4)
        assert 1e-5 <= params["learning_rate"] <= 3e-4 and 0 <= params["lora.dropout"] <= 0.1
        trained = cfg.train.with_params(params)
        assert trained.lora.alpha == params["lora.alpha_ratio"] * params["lora.r"]
    # log-uniform: about half the draws fall below the geometric middle (~5.5e-5), far more than a uniform draw would.
    below = sum(p["learning_rate"] < math.sqrt(1e-5 * 3e-4) for p in proposed)
    assert below >= 3
    # Same seed, same proposals: a study can be rerun.
    assert sample(cfg, 12) == proposed


def test_grid_tries_each_combination_once():
    cfg = load_config("full", ["tune.algorithm=grid", "tune.search=[lora_r, epochs]"])
    grid = cfg.tune.space.grid_size(cfg.tune.search)
    proposed = sample(cfg, grid)
    assert grid == 12
    assert sorted((p["lora.r"], p["epochs"]) for p in proposed) == sorted((r, e) for r in (8, 16, 32, 64) for e in (2.0, 3.0, 4.0))


def test_unsearched_entries_keep_the_train_value():
    cfg = load_config("smoke")
    proposed = sample(cfg, 2)
    assert [set(p) for p in proposed] == [{"lora.r"}, {"lora.r"}]
    assert {cfg.train.with_params(p).learning_rate for p in proposed} == {cfg.train.learning_rate}


def test_katib_assignments_become_typed_train_overrides():
    params = tune.train_params({"lora_r": "32", "learning_rate": "1.5e-05", "epochs": "3", "lora_dropout": "0.05"})
    assert params == {"lora.r": 32, "learning_rate": 1.5e-05, "epochs": 3.0, "lora.dropout": 0.05}
    assert isinstance(params["lora.r"], int)


def test_bayesianoptimization_runs_as_tpe_locally_and_random_is_another_search():
    """The same seed and objective: bayesianoptimization proposes exactly what TPE proposes, random does not."""
    proposals = {algorithm: sample(load_config("full", [f"tune.algorithm={algorithm}"]), 12) for algorithm in ("bayesianoptimization", "tpe", "random")}
    assert proposals["bayesianoptimization"] == proposals["tpe"]
    assert proposals["random"] != proposals["tpe"]
