"""tune.policy: always searches, reuse trains production's hyperparameters once, on_regression searches again when they fall behind."""

import json
import logging

import pytest
from kfp import dsl

from resumo import artifacts, katib, kube, model_registry, promote, registry_pointer, train, tune_policy
from resumo.components import tune as component
from resumo.config import load_config

QUICK = ["train.epochs=1", "train.eval_samples=2", "train.max_new_tokens=4", "tune.space.lora_r.values=[2, 4]"]
TEST_SCORES = {"models": {"tuned": {"rougeLsum": 0.2, "bertscore_f1": 0.7, "not_portuguese_share": 0.0}}, "n_articles": 3}


def _config(registry, *overrides):
    return load_config("smoke", [*QUICK, f"promote.registry={registry}", *overrides])


def _artifact(kind, path):
    artifact = kind(name=path.name, uri="")
    artifact.path = str(path)
    return artifact


@pytest.fixture(scope="module")
def production(tmp_path_factory, pairs_dir):
    """A registry whose production version was trained with lora.r=4, learning_rate=0.02, epochs=1."""
    registry = tmp_path_factory.mktemp("registry")
    cfg = _config(registry, "train.lora.r=4", "train.learning_rate=0.02")
    model = tmp_path_factory.mktemp("production-model")
    trained = train.run(cfg.train, pairs_dir, model)
    promote.run(cfg.promote, model / artifacts.ADAPTER, TEST_SCORES)
    return registry, trained


def test_the_promoted_version_stores_the_hyperparameters_it_was_trained_with(production):
    registry, trained = production
    pointer = registry_pointer.current_production(str(registry))
    assert pointer["hyperparameters"] == {"lora.r": 4, "lora.alpha_ratio": 2.0, "learning_rate": 0.02, "lora.dropout": 0.05, "epochs": 1.0}
    assert pointer["validation"]["rougeLsum"] == trained.metrics["rougeLsum"]
    props = model_registry.version_metadata(str(registry), pointer)  # Model Registry's custom properties of the version
    assert props["hyperparameter_lora.r"] == 4 and props["hyperparameter_learning_rate"] == 0.02
    assert props["validation_rougeLsum"] == trained.metrics["rougeLsum"]


def test_reuse_with_no_production_yet_searches(pairs_dir, tmp_path):
    cfg = _config(tmp_path / "empty-registry", "tune.policy=reuse")
    result, decision = tune_policy.run(cfg.tune, cfg.train, pairs_dir, tmp_path / "tune")
    assert decision.searched and "no production version" in decision.reason
    assert sorted(t["params"]["lora.r"] for t in result.trials) == [2, 4]


def test_reuse_hands_on_production_hyperparameters_and_trains_nothing(production, pairs_dir, tmp_path):
    registry, _ = production
    cfg = _config(registry, "tune.policy=reuse")
    out, metrics = tmp_path / "trials", _artifact(dsl.Metrics, tmp_path / "metrics")
    outputs = component.tune.python_func(
        config=cfg.tune.model_dump(mode="json"), train_config=cfg.train.model_dump(mode="json"), pairs=_artifact(dsl.Dataset, pairs_dir), trials=_artifact(dsl.Artifact, out), metrics=metrics
    )
    assert outputs.best_params == registry_pointer.current_production(str(registry))["hyperparameters"]
    assert outputs.best_adapter == ""  # the train step trains once with them
    assert metrics.metadata["trials"] == 0 and metrics.metadata["policy_reused"] == 1 and metrics.metadata["policy_searched"] == 0
    assert [p.name for p in out.iterdir()] == [artifacts.BEST]  # no trial folder: nothing was trained here
    assert "reusing the hyperparameters of production version" in json.loads((out / artifacts.BEST).read_text())["policy"]["reason"]


def test_always_searches_even_with_a_production_version(production, pairs_dir, tmp_path):
    registry, _ = production
    cfg = _config(registry)  # policy unset: `always`, as for resumo run and submit
    result, decision = tune_policy.run(cfg.tune, cfg.train, pairs_dir, tmp_path)
    assert decision.policy == "always" and decision.searched and len(result.trials) == 2


# A retrain's ROUGE, compared with the fixture's: float-sensitive (greedy tokens of a trained model).
@pytest.mark.numerics
def test_on_regression_keeps_reused_values_that_hold_their_validation_score(production, pairs_dir, tmp_path):
    registry, trained = production
    cfg = _config(registry, "tune.policy=on_regression")
    result, decision = tune_policy.run(cfg.tune, cfg.train, pairs_dir, tmp_path)
    # Same pairs, same values, same seed: within the 0.01 margin of the score production was trained to.
    assert not decision.searched and not decision.regression
    assert abs(decision.reused_score - trained.metrics["rougeLsum"]) <= cfg.tune.regression_margin
    assert [t["trial"] for t in result.trials] == [tune_policy.REUSED_TRIAL]
    assert result.best_params == decision.reused


def test_on_regression_searches_again_when_the_reused_values_fall_behind_and_says_why(production, pairs_dir, tmp_path, caplog):
    registry, _ = production
    # Production claims validation ROUGE-Lsum 1.0 (it was trained on a corpus it did better on): the reused values cannot reach it.
    pointer = json.loads((registry / artifacts.POINTER).read_text())
    pointer["validation"]["rougeLsum"] = 1.0
    other = tmp_path / "registry"
    other.mkdir()
    (other / artifacts.POINTER).write_text(json.dumps(pointer))
    cfg = _config(other, "tune.policy=on_regression")
    out, metrics = tmp_path / "trials", _artifact(dsl.Metrics, tmp_path / "metrics")
    with caplog.at_level(logging.INFO, logger="resumo.tune_policy"):
        outputs = component.tune.python_func(
            config=cfg.tune.model_dump(mode="json"), train_config=cfg.train.model_dump(mode="json"), pairs=_artifact(dsl.Dataset, pairs_dir), trials=_artifact(dsl.Artifact, out), metrics=metrics
        )
    assert "more than tune.regression_margin=0.01 below production's 1.0000: searching again" in caplog.text
    assert metrics.metadata["policy_regression"] == 1 and metrics.metadata["policy_searched"] == 1
    assert metrics.metadata["production_score"] == 1.0 and metrics.metadata["reused_score"] < 0.99
    assert metrics.metadata["trials"] == 3  # the check of the reused values, then the two-point grid
    best = json.loads((out / artifacts.BEST).read_text())
    assert len(best["trials"]) == 2 and best["policy"]["regression"]
    assert outputs.best_params["lora.r"] in (2, 4) and outputs.best_adapter.endswith("adapter")


def test_katib_trains_the_reused_values_in_one_trial_of_exactly_those_values():
    cfg = load_config("full", ["tune.backend=katib"])
    params = {"lora.r": 64, "lora.alpha_ratio": 2.0, "learning_rate": 2e-5, "lora.dropout": 0.05, "epochs": 4.0}
    body = katib.render(tune_policy.fixed_space(cfg.tune, params), cfg.train, "s3://resumo/pairs", target=kube.JobTarget(image="example.org/resumo-train:test"))
    assert body["spec"]["maxTrialCount"] == 1 and body["spec"]["parallelTrialCount"] == 1
    assert body["spec"]["algorithm"]["algorithmName"] == "grid"
    spaces = {p["name"]: p["feasibleSpace"]["list"] for p in body["spec"]["parameters"]}
    assert spaces == {"lora_r": ["64"], "lora_alpha_ratio": ["2.0"], "learning_rate": ["2e-05"], "lora_dropout": ["0.05"], "epochs": ["4.0"]}


def test_a_schedule_compiles_reuse_as_its_default_and_a_submit_keeps_always(monkeypatch):
    from resumo.pipelines import cluster
    from tests.servers.kfp_api import KfpApiServer

    monkeypatch.setenv("KF_PIPELINES_TOKEN", "secret-token")
    with KfpApiServer() as api:
        cfg = load_config("full", [f"cluster.host={api.url}"])
        cluster.schedule(cfg, "0 0 3 * * 1", "weekly")
        cluster.submit(cfg)
        scheduled, submitted = (v["spec"]["root"]["inputDefinitions"]["parameters"]["s3_tune"]["defaultValue"] for v in api.state.versions.values())
    assert scheduled["policy"] == "reuse"
    assert "policy" not in submitted  # None: `always` when the task validates it
    assert scheduled["registry"] == cfg.promote.registry


@pytest.fixture(scope="module")
def validator():
    from tests.servers import kube_api

    return kube_api.experiment_validator(kube_api.schemas_dir())  # Katib's CRD schema: slow to build, so once


@pytest.mark.parametrize("policy, validation, experiments", [("reuse", 0.40, 1), ("on_regression", 0.40, 1), ("on_regression", 0.90, 2)])
def test_the_katib_launcher_trains_production_values_in_one_trial_and_searches_only_when_told(tmp_path, validator, policy, validation, experiments):
    from resumo.components import TRAIN_IMAGE
    from tests.servers import kube_api

    registry = tmp_path / "registry"
    registry.mkdir()
    params = {"lora.r": 32, "lora.alpha_ratio": 2.0, "learning_rate": 2e-5, "lora.dropout": 0.05, "epochs": 4.0}
    (registry / artifacts.POINTER).write_text(json.dumps({"version": "v1", "hyperparameters": params, "validation": {"rougeLsum": validation}}))
    cfg = load_config("full", ["tune.katib.namespace=team-a", "tune.katib.poll_s=0", "tune.katib.timeout_s=30", f"tune.policy={policy}", f"promote.registry={registry}"])
    with kube_api.KubeAPI(play="succeeded", validator=validator) as api:
        result, decision, trials = tune_policy.run_katib(cfg.tune, cfg.train, "s3://resumo/pairs", tmp_path / "out", api_client=api.client(), target=kube.JobTarget(image=TRAIN_IMAGE))
        created = [body for method, _, body in api.requests if method == "POST"]
    # The first Experiment is one trial over exactly production's values, and Katib's schema accepts it.
    assert created[0]["spec"]["maxTrialCount"] == 1
    assert {p["name"]: p["feasibleSpace"]["list"] for p in created[0]["spec"]["parameters"]}["lora_r"] == ["32"]
    assert len(created) == experiments
    if experiments == 1:  # the loopback server scores every trial 0.4123: within 0.01 of 0.40
        assert result.best_params == params and not decision.searched and trials == 1
    else:  # 0.4123 is more than 0.01 below 0.90: the full Experiment runs after it
        assert decision.regression and created[1]["spec"]["maxTrialCount"] == cfg.tune.max_trials and trials == 1 + result.status["trials"]  # the one check and the trials Katib reports
        assert "searching again" in json.loads((tmp_path / "out" / artifacts.TUNE_POLICY).read_text())["reason"]
