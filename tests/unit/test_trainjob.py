"""The TrainJob (train.backend: trainjob): its schema, its node script, and its launcher against a Kubernetes API on 127.0.0.1."""

import json

import pytest
import yaml
from typer.testing import CliRunner

from resumo import kube, storage, trainjob
from resumo.cli import app
from resumo.components import TRAIN_IMAGE
from resumo.config import GpuConfig, load_config
from resumo.errors import ConfigError
from tests.servers import kube_api

PAIRS = "s3://resumo/pairs"
RUN_ID = "0b6e5c1e-7d2a-4a8e-9f1a-3c2b1d0e9f8a"  # a KFP run id


@pytest.fixture(scope="module")
def validator():
    return kube_api.trainjob_validator(kube_api.schemas_dir())


def test_the_dry_run_validates_against_trainers_crd_and_asks_for_every_gpu(validator, tmp_path):
    out = tmp_path / "trainjob.yaml"
    sets = ["cluster.gpu.count=8", "cluster.gpu.memory=400Gi", "train.trainjob.num_nodes=2", "train.trainjob.namespace=team-a"]
    result = CliRunner().invoke(app, ["train", "-p", "full", "--backend", "trainjob", "--dry-run", "--pairs", PAIRS, "--out", str(out), *(f"--set={s}" for s in sets)])
    assert result.exit_code == 0, result.output
    body = yaml.safe_load(out.read_text())

    assert validator(body) == []
    assert (body["apiVersion"], body["kind"], body["metadata"]["namespace"]) == ("trainer.kubeflow.org/v1alpha1", "TrainJob", "team-a")
    assert body["spec"]["runtimeRef"] == {"apiGroup": "trainer.kubeflow.org", "kind": "ClusterTrainingRuntime", "name": "torch-distributed"}
    trainer = body["spec"]["trainer"]
    # 2 nodes x 8 GPUs: the GPUs asked for, per node, and one torchrun rank for each.
    assert trainer["resourcesPerNode"] == {"requests": {"cpu": "8", "memory": "400Gi"}, "limits": {"nvidia.com/gpu": "8"}}
    assert (trainer["numNodes"], trainer["numProcPerNode"], trainer["image"]) == (2, 8, TRAIN_IMAGE)
    assert "torchrun --no-python resumo train" in trainer["command"][-1]
    # The nodes train the full profile's config themselves (backend pod), on every GPU of each node.
    env = {e["name"]: e for e in trainer["env"]}
    node_cfg = json.loads(env["RESUMO_CONFIG"]["value"])["train"]
    assert (node_cfg["backend"], node_cfg["nproc_per_node"], node_cfg["lora"]["r"]) == ("pod", 8, 64)
    assert env["RESUMO_PAIRS"]["value"] == PAIRS and env["RESUMO_OUT"]["value"].startswith("s3://resumo/train/resumo-train-")
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"] == {"secretKeyRef": {"name": "resumo-s3", "key": "AWS_SECRET_ACCESS_KEY"}}
    pod = body["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]
    assert pod["tolerations"] == GpuConfig().tolerations
    # The schema check has teeth: a misspelt field or a bad quantity is refused.
    trainer["numNode"] = 2
    trainer["resourcesPerNode"]["requests"]["memory"] = "400 GB"
    assert len(validator(body)) == 2


def test_the_global_batch_must_split_over_every_rank_of_every_node(tmp_path):
    # 16 x 4 = 64 over 3 nodes x 8 GPUs = 24 ranks: refused when the nodes would start, so before creating anything.
    result = CliRunner().invoke(
        app, ["train", "-p", "full", "--backend", "trainjob", "--dry-run", "--pairs", PAIRS, "--out", str(tmp_path / "t.yaml"), "--set=cluster.gpu.count=8", "--set=train.trainjob.num_nodes=3"]
    )
    assert isinstance(result.exception, ConfigError) and "do not split over 24 processes" in str(result.exception)
    assert not (tmp_path / "t.yaml").exists()


def test_names_come_from_the_run_id(validator):
    assert trainjob.job_name("resumo-train", RUN_ID) == trainjob.job_name("resumo-train", RUN_ID)  # a retry meets its TrainJob
    assert trainjob.job_name("resumo-train", RUN_ID) != trainjob.job_name("resumo-train", RUN_ID + "x")
    assert trainjob.job_name("resumo-train") != trainjob.job_name("resumo-train")  # the CLI: a fresh one each launch
    assert len(trainjob.job_name("a" * 40, RUN_ID)) <= 63


@pytest.fixture
def cfg(s3):
    return load_config("full", [f"storage_root={s3}", "train.trainjob.namespace=team-a", "train.trainjob.poll_s=0", "train.trainjob.timeout_s=30"]).train


def _node_wrote(cfg, adapter_r=64):
    """What node 0 uploads when training ends (the node script's last line)."""
    out = trainjob.output_of(cfg.trainjob.output, trainjob.job_name(cfg.trainjob.name_prefix, RUN_ID))
    storage.write_text(f"{out}/adapter/adapter_config.json", json.dumps({"r": adapter_r}))
    storage.write_text(f"{out}/metrics.json", json.dumps({"metrics": {"eval_loss": 1.25, "rougeLsum": 0.41}, "run": {"world_size": 16}}))
    return out


def _run(api, cfg, tmp_path, **kw):
    return trainjob.run(cfg, PAIRS, tmp_path / "model", kube.JobTarget(GpuConfig(count=8), TRAIN_IMAGE, RUN_ID), api_client=api.client(), **kw)


def test_a_completed_trainjob_hands_on_its_adapter(cfg, validator, tmp_path):
    out = _node_wrote(cfg)
    with kube_api.KubeAPI("succeeded", trainjob_validator=validator) as api:
        result = _run(api, cfg, tmp_path)
    (method, path, body), *reads = api.requests
    assert (method, path) == ("POST", "/apis/trainer.kubeflow.org/v1alpha1/namespaces/team-a/trainjobs")
    assert body == yaml.safe_load((tmp_path / "model" / "trainjob.yaml").read_text())  # the TrainJob is kept beside the model
    assert out == f"{cfg.trainjob.output}/{body['metadata']['name']}"
    # Created -> Running -> Complete: three reads.
    assert [m for m, *_ in reads] == ["GET"] * 3
    assert result.metrics == {"eval_loss": 1.25, "rougeLsum": 0.41}
    assert json.loads((result.adapter_dir / "adapter_config.json").read_text()) == {"r": 64}
    assert len(api.trainjobs) == 1  # not asked to delete: kept, its logs readable


def test_the_stage_entry_applies_params_and_returns_the_runs_metrics(cfg, validator, tmp_path, monkeypatch):
    from resumo.stage import StageResult

    _node_wrote(cfg)
    with kube_api.KubeAPI("succeeded", trainjob_validator=validator) as api:
        monkeypatch.setattr(kube, "client", lambda resource: api.client())
        result = trainjob.run_stage(cfg, {"lora.r": 8}, PAIRS, tmp_path / "model", kube.JobTarget(GpuConfig(count=8), TRAIN_IMAGE, RUN_ID))
    assert isinstance(result, StageResult) and result.metrics == {"eval_loss": 1.25, "rougeLsum": 0.41}
    body = yaml.safe_load((tmp_path / "model" / "trainjob.yaml").read_text())
    env = {e["name"]: e.get("value") for e in body["spec"]["trainer"]["env"]}
    assert yaml.safe_load(env["RESUMO_CONFIG"])["train"]["lora"]["r"] == 8 != cfg.lora.r  # tune's params reached the TrainJob


def test_a_retried_task_meets_its_trainjob_and_creates_no_duplicate(cfg, validator, tmp_path):
    _node_wrote(cfg)
    with kube_api.KubeAPI("succeeded", trainjob_validator=validator) as api:
        # The first attempt created the TrainJob and was killed while it waited.
        first = trainjob.render(cfg, PAIRS, kube.JobTarget(GpuConfig(count=8), TRAIN_IMAGE, RUN_ID))
        assert api.create("trainjobs", "team-a", first)[0] == 201
        result = _run(api, cfg, tmp_path)
        retried_again = _run(api, cfg, tmp_path / "again")  # and once more, after it completed
    posts = [path for method, path, _ in api.requests if method == "POST"]
    assert len(posts) == 2 and len(api.trainjobs) == 1  # both answered 409: one TrainJob
    assert result.metrics == retried_again.metrics == {"eval_loss": 1.25, "rougeLsum": 0.41}


def test_a_failed_trainjob_is_a_clear_error_and_is_deleted_when_asked(cfg, validator, tmp_path):
    cfg.trainjob.delete = True
    with kube_api.KubeAPI("failed", trainjob_validator=validator) as api:
        with pytest.raises(trainjob.TrainJobError, match=r"TrainJob team-a/resumo-train-\w{12} failed: FailedJobs: jobset failed.*kubectl -n team-a logs"):
            _run(api, cfg, tmp_path)
        assert api.trainjobs == {}
        assert api.requests[-1][0] == "DELETE"


def test_a_stuck_trainjob_times_out_and_stays_unless_asked(cfg, validator, tmp_path):
    cfg.trainjob.timeout_s = 1
    cfg.trainjob.poll_s = 0.05
    with kube_api.KubeAPI("stuck", trainjob_validator=validator) as api:
        with pytest.raises(trainjob.TrainJobError, match=r"did not finish within 1 s \(last: Created, 1 node job\(s\) active\)"):
            _run(api, cfg, tmp_path)
        reads = sum(1 for m, *_ in api.requests if m == "GET")
        assert 2 <= reads <= 60 and len(api.trainjobs) == 1
    assert api.requests[0][2]["spec"]["activeDeadlineSeconds"] == 1  # the cluster stops it too


def test_a_restarting_api_server_is_waited_out(cfg, validator, tmp_path):
    _node_wrote(cfg)
    with kube_api.KubeAPI("flaky", trainjob_validator=validator) as api:
        result = _run(api, cfg, tmp_path)
    assert result.metrics["rougeLsum"] == 0.41


def test_a_trainjob_that_completed_without_an_adapter_is_an_error(cfg, validator, tmp_path):
    with kube_api.KubeAPI("succeeded", trainjob_validator=validator) as api:
        with pytest.raises(trainjob.TrainJobError, match="completed but wrote no adapter under s3://"):
            _run(api, cfg, tmp_path)


def test_an_invalid_trainjob_is_refused_by_the_server_with_its_reason(cfg, validator, tmp_path):
    with kube_api.KubeAPI("succeeded", trainjob_validator=lambda body: ["spec.trainer.numNode: unknown field"]) as api:
        with pytest.raises(trainjob.TrainJobError, match=r"cannot create TrainJob team-a/resumo-train-\w+: HTTP 422 .*unknown field"):
            _run(api, cfg, tmp_path)


@pytest.mark.slow
def test_the_node_script_trains_on_two_ranks_and_the_launcher_hands_its_adapter_on(s3, pairs_dir, validator, tmp_path):
    """Each node's command, run here as Trainer's torch plugin would start node 0 of 1 with 2 processes
    (its PET_* variables; gloo on CPU), then the launcher reading what it uploaded."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from tests.conftest import free_port

    storage.upload(pairs_dir, f"{s3}/pairs")
    cfg = load_config("smoke", [f"storage_root={s3}", "train.epochs=1", "train.eval_samples=2", "train.max_new_tokens=4", "train.trainjob.poll_s=0"]).train
    body = trainjob.render(cfg, f"{s3}/pairs", kube.JobTarget(GpuConfig(count=2), TRAIN_IMAGE, RUN_ID))
    trainer = body["spec"]["trainer"]
    env = {e["name"]: e["value"] for e in trainer["env"] if "value" in e}  # the S3 keys come from this test's environment, as from the Secret
    pet = {"PET_NNODES": "1", "PET_NPROC_PER_NODE": str(trainer["numProcPerNode"]), "PET_NODE_RANK": "0", "PET_MASTER_ADDR": "127.0.0.1", "PET_MASTER_PORT": str(free_port())}
    script = trainer["command"][-1].replace(f"cd {trainjob.WORKDIR}", f"cd {tmp_path}")  # the pod's emptyDir
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    done = subprocess.run(["sh", "-c", script], env={**os.environ, **env, **pet, "PATH": path, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    uploaded = json.loads(storage.read_text(f"{env['RESUMO_OUT']}/metrics.json"))
    assert uploaded["run"]["world_size"] == 2 and uploaded["config"]["backend"] == "pod"

    with kube_api.KubeAPI("succeeded", trainjob_validator=validator) as api:
        result = trainjob.run(cfg, f"{s3}/pairs", tmp_path / "model", kube.JobTarget(GpuConfig(count=2), TRAIN_IMAGE, RUN_ID), api_client=api.client())
    assert result.metrics == uploaded["metrics"]
    assert (result.adapter_dir / "adapter_model.safetensors").exists()
