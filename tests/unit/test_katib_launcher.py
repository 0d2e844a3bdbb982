"""The Katib launcher against a Kubernetes API server on 127.0.0.1, through the real kubernetes client."""

import json

import pytest
import yaml

from resumo import katib, kube
from resumo.components import TRAIN_IMAGE
from resumo.config import load_config
from tests.servers import kube_api

PAIRS = "s3://resumo/pairs"


@pytest.fixture(scope="module")
def validator():
    return kube_api.experiment_validator(kube_api.schemas_dir())


@pytest.fixture
def cfg():
    return load_config("full", ["tune.katib.namespace=team-a", "tune.katib.poll_s=0", "tune.katib.timeout_s=30"])


def _api(play, validator):
    return kube_api.KubeAPI(play=play, validator=validator)


def test_a_succeeded_experiment_hands_on_the_best_trial(cfg, validator, tmp_path):
    with _api("succeeded", validator) as api:
        result = katib.run(cfg.tune, cfg.train, PAIRS, tmp_path, api_client=api.client(), target=kube.JobTarget(image=TRAIN_IMAGE))
        created = api.requests[0]
    # What was created is the Experiment the dry run renders, accepted by Katib's schema.
    method, path, body = created
    assert (method, path) == ("POST", "/apis/kubeflow.org/v1beta1/namespaces/team-a/experiments")
    assert body == yaml.safe_load((tmp_path / "experiment.yaml").read_text())
    assert body["metadata"]["name"].startswith("resumo-") and len(body["metadata"]["name"]) <= 40
    # Created -> Running -> Succeeded: three reads, then the optimal trial.
    assert [m for m, *_ in api.requests] == ["POST", "GET", "GET", "GET"]
    assert result.best_trial == f"{result.experiment}-00000002"
    # Katib's strings become typed train.* overrides (the server picks the last value or the top of each range).
    assert result.best_params == {"lora.r": 64, "lora.alpha_ratio": 4.0, "learning_rate": 3e-4, "lora.dropout": 0.1, "epochs": 4.0}
    assert isinstance(result.best_params["lora.r"], int)
    assert (result.best_score, result.metrics["eval_loss"]) == (0.4123, 1.2345)
    # The adapter the best trial wrote, at the URI its template gave it: no retraining.
    assert result.best_adapter == f"s3://resumo/tune/{result.best_trial}/adapter"
    best = json.loads((tmp_path / "best.json").read_text())
    assert best["adapter"] == result.best_adapter and best["params"] == result.best_params and best["experiment"] == f"team-a/{result.experiment}"
    # Not asked to delete: the Experiment stays for the Katib UI.
    assert ("team-a", result.experiment) in api.experiments


def test_delete_when_asked(cfg, validator):
    cfg.tune.katib.delete = True
    with _api("succeeded", validator) as api:
        result = katib.run(cfg.tune, cfg.train, PAIRS, api_client=api.client(), target=kube.JobTarget(image=TRAIN_IMAGE))
        assert api.requests[-1][:2] == ("DELETE", f"/apis/kubeflow.org/v1beta1/namespaces/team-a/experiments/{result.experiment}")
        assert api.experiments == {}


def test_a_failed_experiment_is_a_clear_error_and_is_deleted_when_asked(cfg, validator):
    cfg.tune.katib.delete = True
    with _api("failed", validator) as api:
        with pytest.raises(katib.KatibError, match=r"team-a/resumo-\w+ failed: ExperimentFailed: .*max failed count.*failed trials: \['resumo-"):
            katib.run(cfg.tune, cfg.train, PAIRS, api_client=api.client(), target=kube.JobTarget(image=TRAIN_IMAGE))
        assert api.experiments == {}  # asked to delete: its trials stop using GPUs


def test_a_stuck_experiment_times_out_and_stays_unless_asked(cfg, validator):
    cfg.tune.katib.timeout_s = 1
    cfg.tune.katib.poll_s = 0.05
    with _api("stuck", validator) as api:
        with pytest.raises(katib.KatibError, match=r"did not finish within 1 s \(last: Running, 3 trials \(0 succeeded, 3 running"):
            katib.run(cfg.tune, cfg.train, PAIRS, api_client=api.client(), target=kube.JobTarget(image=TRAIN_IMAGE))
        reads = sum(1 for m, *_ in api.requests if m == "GET")
        assert 2 <= reads <= 60  # polled, bounded by the timeout
        assert len(api.experiments) == 1


def test_a_transient_api_error_while_waiting_is_retried(cfg, validator):
    with _api("flaky", validator) as api:
        result = katib.run(cfg.tune, cfg.train, PAIRS, api_client=api.client(), target=kube.JobTarget(image=TRAIN_IMAGE))
        assert result.best_score == 0.4123
        assert sum(1 for m, *_ in api.requests if m == "GET") == 4  # one 503 among them


def test_an_experiment_deleted_while_waiting_is_a_clear_error(cfg, validator):
    with _api("deleted", validator) as api:
        with pytest.raises(katib.KatibError, match="disappeared while the launcher waited"):
            katib.run(cfg.tune, cfg.train, PAIRS, api_client=api.client(), target=kube.JobTarget(image=TRAIN_IMAGE))


def test_an_experiment_katib_refuses_is_reported_with_its_reason(cfg, validator):
    cfg.tune.max_trials = 5
    body = katib.experiment(cfg.tune, cfg.train, PAIRS, "resumo-bad000", "team-a", target=kube.JobTarget(image=TRAIN_IMAGE))
    body["spec"]["parameters"][0]["parameterType"] = "float"
    with _api("succeeded", validator) as api:
        with pytest.raises(katib.KatibError, match=r"cannot create Experiment team-a/resumo-bad000: HTTP 400 .*denied the request: spec.parameters.0.parameterType"):
            katib.launch(body, api.client(), cfg.tune)


def test_a_name_taken_and_an_unreachable_api_are_clear_errors(cfg, validator):
    body = katib.experiment(cfg.tune, cfg.train, PAIRS, "resumo-same00", "team-a", target=kube.JobTarget(image=TRAIN_IMAGE))
    with _api("succeeded", validator) as api:
        katib.launch(body, api.client(), cfg.tune)
        with pytest.raises(katib.KatibError, match="HTTP 409 an Experiment of that name exists already"):
            katib.launch(body, api.client(), cfg.tune)
        client = api.client()
    client.configuration.retries = 0
    with pytest.raises(katib.KatibError, match="Kubernetes API is unreachable"):
        katib.launch(body, client, cfg.tune)


def test_a_retried_launcher_waits_on_its_first_attempts_experiment(cfg, validator):
    # KFP retries the tune task (cluster.retries). Each attempt once drew a fresh random name, so
    # one transient failure left two Experiments' GPU trials running; now the run id names it.
    with _api("succeeded", validator) as api:
        first = katib.render(cfg.tune, cfg.train, PAIRS, target=kube.JobTarget(image=TRAIN_IMAGE, run_id="run-1"))
        api.create("experiments", "team-a", first)  # the first attempt created it, then its pod was lost
        api.get("experiments", "team-a", first["metadata"]["name"])  # ... after the Experiment had started (Created)
        result = katib.run(cfg.tune, cfg.train, PAIRS, api_client=api.client(), target=kube.JobTarget(image=TRAIN_IMAGE, run_id="run-1"))
        assert len(api.experiments) == 1
        assert [m for m, *_ in api.requests] == ["POST", "GET", "GET"]  # refused create (409), the owner check (Running), Succeeded
    assert result.experiment == first["metadata"]["name"] and result.best_trial == f"{result.experiment}-00000002"


def test_an_experiment_of_another_run_under_the_same_name_is_not_adopted(cfg, validator):
    with _api("succeeded", validator) as api:
        body = katib.render(cfg.tune, cfg.train, PAIRS, target=kube.JobTarget(image=TRAIN_IMAGE, run_id="run-1"))
        other = json.loads(json.dumps(body))
        other["metadata"]["annotations"][kube.RUN_ID_ANNOTATION] = "run-0"
        api.create("experiments", "team-a", other)
        with pytest.raises(katib.KatibError, match=r"belongs to run 'run-0', not 'run-1'; delete it, or set tune.katib.name_prefix"):
            katib.launch(body, api.client(), cfg.tune)


def test_the_run_id_names_the_experiment(cfg):
    names = {run: katib.render(cfg.tune, cfg.train, PAIRS, target=kube.JobTarget(image=TRAIN_IMAGE, run_id=run))["metadata"]["name"] for run in ("R1", "R2")}
    assert katib.render(cfg.tune, cfg.train, PAIRS, target=kube.JobTarget(image=TRAIN_IMAGE, run_id="R1"))["metadata"]["name"] == names["R1"]
    assert names["R1"] != names["R2"] and all(len(n) <= 40 for n in names.values())
    # A hand launch without a run id gets a fresh name each time, as before.
    assert katib.render(cfg.tune, cfg.train, PAIRS, target=kube.JobTarget(image=TRAIN_IMAGE))["metadata"]["name"] != katib.render(cfg.tune, cfg.train, PAIRS, target=kube.JobTarget(image=TRAIN_IMAGE))["metadata"]["name"]


class StandIn:
    """What a KFP artifact offers a component body: a path, a URI, log_metric."""

    def __init__(self, path, uri=None):
        self.path, self.uri, self.metrics = str(path), uri or str(path), {}

    def log_metric(self, name, value):
        self.metrics[name] = value


def test_the_launcher_component_finds_the_cluster_through_kubeconfig(validator, tmp_path, monkeypatch):
    from resumo.components.katib import tune as component

    cfg = load_config("full", ["tune.katib.poll_s=0"])
    with _api("succeeded", validator) as api:
        kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "loopback", "cluster": {"server": api.url}}],
            "users": [{"name": "tester", "user": {"token": "not-a-secret"}}],
            "contexts": [{"name": "loopback", "context": {"cluster": "loopback", "user": "tester"}}],
            "current-context": "loopback",
        }
        (tmp_path / "kubeconfig").write_text(yaml.safe_dump(kubeconfig))
        monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)  # not in a pod: kubeconfig it is
        experiment, metrics = StandIn(tmp_path / "experiment"), StandIn(tmp_path / "metrics")
        outputs = component.python_func(
            config=cfg.stage_parameters()["tune"],
            train_config=cfg.stage_parameters()["train"],
            pairs=StandIn(tmp_path / "pairs", uri="minio://mlpipeline/v2/artifacts/resumo/run/distill/pairs"),
            # A run that overrides the s9_gpu_* parameters: its trials must ask for what it asked.
            **{f"gpu_{k}": v for k, v in cfg.cluster.gpu.model_copy(update={"accelerator": "amd.com/gpu", "count": 2, "memory": "96Gi"}).model_dump().items()},
            s3_secret="team-a-s3",
            service_account="pipeline-runner",
            experiment=experiment,
            metrics=metrics,
        )
        body = api.requests[0][2]
    # Named after its inputs, the same on each retry of the task (not the run id: that would miss KFP's cache).
    run_key = body["metadata"]["annotations"][kube.RUN_ID_ANNOTATION]
    assert body["metadata"]["name"] == katib.experiment_name("resumo", run_key) and len(run_key) == 16
    assert api.requests[0][1].startswith("/apis/kubeflow.org/v1beta1/namespaces/default/experiments")  # no pod namespace here
    assert {e["name"]: e.get("value") for e in body["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]["env"]}[
        "RESUMO_PAIRS"
    ] == "s3://mlpipeline/v2/artifacts/resumo/run/distill/pairs"  # KFP's MinIO root, as S3 for boto3
    trial_pod = body["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]
    assert trial_pod["containers"][0]["resources"] == {"limits": {"amd.com/gpu": "2"}, "requests": {"cpu": "8", "memory": "96Gi"}}
    assert trial_pod["tolerations"] == cfg.cluster.gpu.tolerations
    # The run's one S3 Secret and service account, not a second setting of each under tune.katib.
    assert trial_pod["containers"][0]["envFrom"] == [{"secretRef": {"name": "team-a-s3"}}] and trial_pod["serviceAccountName"] == "pipeline-runner"
    assert outputs.best_params["lora.r"] == 64 and outputs.best_adapter.startswith("s3://resumo/tune/resumo-")
    assert {k: metrics.metrics[k] for k in ("best_rougeLsum", "trials")} == {"best_rougeLsum": 0.4123, "trials": 3}
    # tune.policy unset: `always` searched; the cost figures beside a full run's (resumo.run_cost).
    assert (metrics.metrics["policy_searched"], metrics.metrics["cost_tune_trials"], metrics.metrics["cost_full_tune_trials"]) == (1, 3, cfg.tune.max_trials)
    assert (tmp_path / "experiment" / "experiment.yaml").is_file() and (tmp_path / "experiment" / "best.json").is_file()
