"""Kubeflow Model Registry around promote: the compiled task's token Secret and run id, and the serving example."""

from pathlib import Path

import yaml

from resumo import model_registry
from resumo.config import ModelRegistryConfig, load_config
from resumo.pipelines.summarization import build

ROOT = Path(__file__).resolve().parents[2]
URL = "promote.model_registry.url=https://model-registry.kubeflow.svc.cluster.local:8443"


def _compile(tmp_path, overrides=()):
    from kfp import compiler

    path = tmp_path / "p.yaml"
    compiler.Compiler().compile(build(load_config("full", list(overrides))), str(path))
    spec, platform = yaml.safe_load_all(path.read_text())
    return spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def test_promote_gets_the_token_secret_only_when_model_registry_is_configured(tmp_path):
    _, executors = _compile(tmp_path)
    assert "resumo-model-registry" not in {s["secretName"] for s in executors["exec-promote"]["secretAsEnv"]}

    spec, executors = _compile(tmp_path, [URL, "promote.model_registry.token_env=MR_TOKEN"])
    secrets = {s["secretName"]: s for s in executors["exec-promote"]["secretAsEnv"]}
    token = secrets["resumo-model-registry"]
    assert token["optional"] and token["keyToEnv"] == [{"envVar": "MR_TOKEN", "secretKey": "MODEL_REGISTRY_TOKEN"}]
    assert "resumo-s3" in secrets  # still
    task = spec["root"]["dag"]["tasks"]["promote"]
    assert task["retryPolicy"]["maxRetryCount"] == 3  # a registry that is down fails the task, and KFP retries it
    assert task["inputs"]["parameters"]["run_id"]["runtimeValue"]["constant"] == "{{$.pipeline_job_uuid}}"


def test_promote_records_the_judge_verdicts_when_judged(tmp_path):
    spec, _ = _compile(tmp_path, ["judge.base_url=http://judge.example:8000/v1"])
    artifacts = spec["root"]["dag"]["tasks"]["promote"]["inputs"]["artifacts"]
    assert artifacts["judge"]["taskOutputArtifact"] == {"outputArtifactKey": "verdicts", "producerTask": "judge"}


def test_the_inference_service_can_take_a_model_registry_version():
    storage = yaml.safe_load((ROOT / "manifests" / "model-registry-storage.yaml").read_text())
    assert (storage["apiVersion"], storage["kind"]) == ("serving.kserve.io/v1alpha1", "ClusterStorageContainer")
    assert storage["spec"]["container"]["name"] == "storage-initializer"  # KServe finds its init container by name
    (uri_format,) = storage["spec"]["supportedUriFormats"]
    uri = model_registry.storage_uri(ModelRegistryConfig(), "VERSION")
    assert uri.startswith(uri_format["prefix"])
    # The example names the same URI `resumo registry show` prints.
    assert uri in (ROOT / "manifests" / "inferenceservice.yaml").read_text()
    kustomization = yaml.safe_load((ROOT / "manifests" / "kustomization.yaml").read_text())
    assert "model-registry-storage.yaml" not in kustomization["resources"]  # cluster-scoped: applied apart


def _resumo(*args):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-c", "from resumo.cli import main; main()", *args], capture_output=True, text=True, timeout=300)


def test_registry_commands_have_help_and_fail_in_one_line(tmp_path):
    from tests.conftest import free_port

    for command in ("list", "show"):
        shown = _resumo("registry", command, "--help")
        assert shown.returncode == 0 and "Example: resumo registry" in shown.stdout, shown.stderr
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    failed = _resumo("registry", "list", "--set", f"promote.registry={tmp_path}", "--set", f"promote.model_registry.url={url}")
    lines = [line for line in failed.stderr.splitlines() if line.strip()]
    assert failed.returncode == 2 and "Traceback" not in failed.stderr
    assert lines[-1].startswith(f"error: Model Registry at {url}: ClientConnectorError"), failed.stderr
