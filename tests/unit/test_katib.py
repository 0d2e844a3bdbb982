"""The Katib Experiment: valid against Katib's schema, the shared search space, a trial that really trains."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from resumo import generation, katib, kube, storage, tables
from resumo.components import TRAIN_IMAGE
from resumo.config import load_config
from resumo.errors import ConfigError
from tests.servers import kube_api

PAIRS = "s3://resumo/pairs"


@pytest.fixture(scope="module")
def schema_errors():
    return kube_api.experiment_validator(kube_api.schemas_dir())


def render(profile: str = "full", *sets: str) -> dict:
    cfg = load_config(profile, list(sets))
    return katib.experiment(cfg.tune, cfg.train, PAIRS, "resumo-1a2b3c", "team-a", target=kube.JobTarget(image=TRAIN_IMAGE))


@pytest.mark.parametrize("algorithm", ["tpe", "random", "bayesianoptimization", "grid"])
@pytest.mark.parametrize("early_stopping", ["medianstop", "none"])
def test_experiment_validates_against_the_katib_crd_schema(schema_errors, algorithm, early_stopping):
    grid = ["tune.search=[lora_r, lora_alpha_ratio, epochs]"] if algorithm == "grid" else []
    exp = render("full", f"tune.algorithm={algorithm}", f"tune.early_stopping={early_stopping}", *grid)
    assert schema_errors(exp) == []
    assert (exp["apiVersion"], exp["kind"], exp["metadata"]["namespace"]) == ("kubeflow.org/v1beta1", "Experiment", "team-a")
    spec = exp["spec"]
    assert spec["algorithm"]["algorithmName"] == algorithm
    # Katib's grid suggestion refuses settings; the others are seeded for reproducible suggestions.
    assert spec["algorithm"].get("algorithmSettings", []) == ([] if algorithm == "grid" else [{"name": "random_state", "value": "42"}])
    assert ("earlyStopping" in spec) == (early_stopping == "medianstop")
    # And the YAML the dry run writes reads back to the same object.
    assert yaml.safe_load(kube.to_yaml(exp)) == exp


@pytest.mark.parametrize(
    ("path", "value", "error"),
    [
        (["spec", "maxTrialCount"], "12", "'12' is not of type 'integer'"),
        (["spec", "maxTrialCounts"], 12, "Additional properties are not allowed ('maxTrialCounts'"),
        (["spec", "parameters", 0, "parameterType"], "float", "'float' is not one of"),
        (["spec", "parameters", 2, "feasibleSpace", "min"], 1e-5, "is not of type 'string'"),
        (["spec", "objective", "type"], "maximise", "'maximise' is not one of"),
        (["kind"], "Job", "'Experiment' was expected"),
        (["metadata", "name"], "Resumo_1", "does not match"),
    ],
)
def test_an_invalid_experiment_is_refused(schema_errors, path, value, error):
    exp = render()
    node = exp
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    errors = schema_errors(exp)
    assert errors and any(error in e for e in errors), errors


def test_an_experiment_without_spec_is_refused(schema_errors):
    exp = render()
    del exp["spec"]
    assert any("'spec' is a required property" in e for e in schema_errors(exp))


def test_the_search_space_renders_as_katib_parameters():
    params = {p["name"]: p for p in render()["spec"]["parameters"]}
    assert list(params) == ["lora_r", "lora_alpha_ratio", "learning_rate", "lora_dropout", "epochs"]
    assert params["lora_r"] == {"name": "lora_r", "parameterType": "discrete", "feasibleSpace": {"list": ["8", "16", "32", "64"]}}
    assert params["learning_rate"]["parameterType"] == "double"
    assert params["learning_rate"]["feasibleSpace"] == {"min": "1e-05", "max": "0.0003", "distribution": "logUniform"}
    assert params["lora_dropout"]["feasibleSpace"]["distribution"] == "uniform"
    # An integer field searched over a range is a Katib `int`, with integer bounds.
    ranged = render("full", "tune.space.lora_r.values=null", "tune.space.lora_r.low=4", "tune.space.lora_r.high=128")
    assert ranged["spec"]["parameters"][0] == {
        "name": "lora_r",
        "parameterType": "int",
        "feasibleSpace": {"min": "4", "max": "128", "distribution": "uniform"},
    }


def test_only_the_searched_entries_vary_and_counts_come_from_the_config():
    spec = render("smoke", "tune.algorithm=tpe", "tune.max_trials=7", "tune.parallel_trials=2", "tune.max_failed_trials=1")["spec"]
    assert [p["name"] for p in spec["parameters"]] == ["lora_r"]
    assert (spec["maxTrialCount"], spec["parallelTrialCount"], spec["maxFailedTrialCount"]) == (7, 2, 1)
    assert spec["objective"]["objectiveMetricName"] == "rougeLsum" and spec["objective"]["type"] == "maximize"
    assert spec["objective"]["additionalMetricNames"] == ["eval_loss"]
    assert spec["earlyStopping"] == {
        "algorithmName": "medianstop",
        "algorithmSettings": [{"name": "min_trials_required", "value": "3"}, {"name": "start_step", "value": "1"}],
    }


def test_trial_counts_stay_within_what_katib_accepts():
    # smoke: a grid of 2 ranks, 3 parallel trials by default; Katib refuses parallel > max and max > grid points.
    spec = render("smoke", "tune.max_trials=10")["spec"]
    assert (spec["maxTrialCount"], spec["parallelTrialCount"], spec["maxFailedTrialCount"]) == (2, 2, 2)


def test_every_trial_parameter_is_defined_and_used():
    """Katib's webhook rule: each ${trialParameters.X} has a trialParameter, each trialParameter is used."""
    template = render()["spec"]["trialTemplate"]
    used = set(re.findall(r"\$\{trialParameters\.([^}]+)\}", json.dumps(template["trialSpec"])))
    declared = {p["name"]: p["reference"] for p in template["trialParameters"]}
    assert used == set(declared)
    assert declared.pop("trialName") == "${trialSpec.Name}"
    assert set(declared.values()) == {p["name"] for p in render()["spec"]["parameters"]}


def test_the_trial_runs_the_train_image_with_the_pipeline_train_config():
    cfg = load_config("full", ["train.max_length=2048"])
    job = katib.experiment(cfg.tune, cfg.train, PAIRS, "resumo-1a2b3c", "team-a", target=kube.JobTarget(image=TRAIN_IMAGE))["spec"]["trialTemplate"]["trialSpec"]
    assert (job["apiVersion"], job["kind"], job["spec"]["backoffLimit"]) == ("batch/v1", "Job", 0)
    pod = job["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    assert container["image"] == TRAIN_IMAGE and container["name"] == "training"
    assert container["resources"] == {"limits": {"nvidia.com/gpu": "1"}, "requests": {"cpu": "8", "memory": "48Gi"}}  # cluster.gpu's defaults
    assert pod["spec"]["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert "nodeSelector" not in pod["spec"]
    assert container["envFrom"] == [{"secretRef": {"name": "resumo-s3"}}]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert json.loads(env["RESUMO_CONFIG"])["train"]["max_length"] == 2048
    assert env["RESUMO_TRIAL_OUT"] == "s3://resumo/tune/${trialParameters.trialName}"
    assert pod["metadata"]["annotations"] == {"sidecar.istio.io/inject": "false"}
    assert "--set train.learning_rate=${trialParameters.learning_rate}" in container["command"][2]


def test_metrics_format_reads_our_lines_and_nothing_else():
    pattern = render()["spec"]["metricsCollectorSpec"]["source"]["filter"]["metricsFormat"][0]
    # Katib's webhook: two top subexpressions, the name then the value.
    assert re.match(r".*\(.*\).*\(.*\).*", pattern)
    log = "eval_loss=1.234567\nrougeLsum=0.412300\ntrain_eval_loss=9.0\n{'eval_loss': 2.5}\nloss=0.5\nrougeLsum=1e-05\n"
    assert re.findall(pattern, log) == [("eval_loss", "1.234567"), ("rougeLsum", "0.412300"), ("rougeLsum", "1e-05")]


def test_local_pairs_are_refused():
    cfg = load_config("full")
    with pytest.raises(ConfigError, match="cannot read a local folder"):
        katib.experiment(cfg.tune, cfg.train, "runs/pairs", "resumo-1a2b3c", "team-a")


@pytest.mark.slow
def test_a_trial_command_trains_reports_metrics_and_writes_its_adapter(s3, pairs_dir, tmp_path):
    """The rendered trial, run as Katib runs it: parameters substituted, the StdOut collector's redirect appended."""
    cfg = load_config("smoke", ["train.epochs=1", "train.eval_samples=2", "train.max_new_tokens=4", f"tune.katib.output={s3}/tune"])
    for split, rows in [("train", 4), ("val", 2)]:  # one optimizer step: the test is about the plumbing
        tables.write_split(tables.read_split(pairs_dir, split).head(rows), f"{s3}/pairs", split)
    exp = katib.experiment(cfg.tune, cfg.train, f"{s3}/pairs", "resumo-1a2b3c", "team-a", target=kube.JobTarget(image=TRAIN_IMAGE))
    trial = "resumo-1a2b3c-x7k2p9qd"
    text = json.dumps(exp["spec"]["trialTemplate"]["trialSpec"])
    text = text.replace("${trialParameters.trialName}", trial).replace("${trialParameters.lora_r}", "16")
    (container,) = json.loads(text)["spec"]["template"]["spec"]["containers"]
    metrics_log = tmp_path / "metrics.log"
    # pkg/webhook/v1beta1/pod/inject_webhook.go: args + "1>FILE 2>&1" + "&& mark completed", joined by spaces.
    wrapped = " ".join([*container["command"][2:], f"1>{metrics_log} 2>&1", "&&", f"echo completed > {tmp_path}/pid"])
    env = {**os.environ, **{e["name"]: e["value"] for e in container["env"]}, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    workdir = tmp_path / "workspace"  # the emptyDir at workingDir
    workdir.mkdir()
    done = subprocess.run(["sh", "-c", wrapped], cwd=workdir, env=env, timeout=300)
    assert done.returncode == 0, metrics_log.read_text()[-3000:]
    assert (tmp_path / "pid").read_text().strip() == "completed"
    # What Katib's collector would report: each metric, parsed by our format, from the whole log.
    pattern = exp["spec"]["metricsCollectorSpec"]["source"]["filter"]["metricsFormat"][0]
    reported = dict(re.findall(pattern, metrics_log.read_text()))
    assert set(reported) == {"rougeLsum", "eval_loss"} and 0 <= float(reported["rougeLsum"]) <= 1
    adapter = f"{s3}/tune/{trial}/adapter"
    assert "adapter_model.safetensors" in storage.list_keys(adapter)
    meta = json.loads(storage.read_text(f"{adapter}/{generation.MODEL_META}"))
    assert meta["lora"]["r"] == 16 and meta["base_model"] == "tiny:qwen2"  # the trial's value over the pipeline's config
    assert json.loads(storage.read_text(f"{s3}/tune/{trial}/metrics.json"))["metrics"]["rougeLsum"] == pytest.approx(float(reported["rougeLsum"]), abs=1e-6)


def resumo(*args):
    return subprocess.run([sys.executable, "-c", "from resumo.cli import main; main()", *args], capture_output=True, text=True, timeout=300)


def test_cli_dry_run_writes_the_experiment_yaml(schema_errors, tmp_path):
    out = tmp_path / "k8s" / "experiment.yaml"
    done = resumo("tune", "--backend", "katib", "--dry-run", "--pairs", PAIRS, "--out", str(out), "-p", "full", "--set", "tune.algorithm=random")
    assert done.returncode == 0, done.stderr
    exp = yaml.safe_load(out.read_text())
    assert schema_errors(exp) == []
    assert exp["spec"]["algorithm"]["algorithmName"] == "random" and exp["metadata"]["name"] in done.stdout
    # Without Katib, a dry run has nothing to render; with local pairs, trial pods could not read them.
    for args, error in [((), "add --backend katib"), (("--backend", "katib", "--pairs", "runs/pairs"), "cannot read a local folder")]:
        done = resumo("tune", "--dry-run", "--pairs", PAIRS, "--out", str(tmp_path / "x.yaml"), *args)
        assert done.returncode == 2 and error in done.stderr.splitlines()[-1] and "Traceback" not in done.stderr
    assert not (tmp_path / "x.yaml").exists()


def test_cli_dry_run_names_the_experiment_after_the_run_id(schema_errors, tmp_path):
    def name(run_id: str, out: str) -> str:
        done = resumo("tune", "-p", "full", "--backend", "katib", "--dry-run", "--pairs", "s3://b/p", "--out", str(tmp_path / out), "--run-id", run_id)
        assert done.returncode == 0, done.stderr
        exp = yaml.safe_load((tmp_path / out).read_text())
        assert schema_errors(exp) == [] and exp["metadata"]["annotations"] == {"resumo.dev/pipeline-run-id": run_id}
        return exp["metadata"]["name"]

    first = name("R1", "e.yaml")
    assert name("R1", "e.yaml") == first  # what a retried launcher would create, and so finds
    assert name("R2", "e2.yaml") != first


@pytest.mark.parametrize(("backend", "image", "gpu"), [("katib", "resumo-cpu", False), ("optuna", "resumo-train", True)])
def test_the_pipeline_launches_katib_or_runs_optuna_as_its_tune_task(tmp_path, backend, image, gpu):
    from kfp import compiler

    from resumo.pipelines.summarization import build

    path = tmp_path / "resumo.yaml"
    compiler.Compiler().compile(build(load_config("full", [f"tune.backend={backend}"])), str(path))
    spec = next(yaml.safe_load_all(path.read_text()))  # then the kubernetes platform spec
    container = spec["deploymentSpec"]["executors"]["exec-tune"]["container"]
    assert f"/{image}:" in container["image"]
    assert ("accelerator" in container.get("resources", {})) == gpu
    source = " ".join(container["command"] + container.get("args", []))
    assert ("run_katib_stage(" in source) == (backend == "katib")  # resumo.tune_policy, which launches katib.run
    outputs = spec["components"]["comp-tune"]["outputDefinitions"]["parameters"]
    assert set(outputs) == {"best_params", "best_adapter"}
    assert spec["root"]["dag"]["tasks"]["train"]["inputs"]["parameters"]["params"]["taskOutputParameter"]["producerTask"] == "tune"
