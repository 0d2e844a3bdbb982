"""manifests/ renders with kustomize and parses as the Kubernetes objects it claims to be."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

import resumo.components as components
from resumo.config import ClusterConfig

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "kubeflow-user-example-com"


def kubectl() -> str:
    found = os.environ.get("KUBECTL") or shutil.which("kubectl") or str(ROOT / ".cache" / "bin" / "kubectl")
    if not Path(found).is_file():
        pytest.skip("no kubectl: `make test` fetches one (.ci/fetch_kubectl.py)")
    return found


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    # Render a copy with the example env file in place of the git-ignored s3.env, as a user would.
    base = tmp_path_factory.mktemp("manifests") / "manifests"
    shutil.copytree(ROOT / "manifests", base, ignore=shutil.ignore_patterns("s3.env"))
    shutil.copy(base / "s3.env.example", base / "s3.env")
    out = subprocess.run([kubectl(), "kustomize", str(base)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return {(o["kind"], o["metadata"]["name"]): o for o in yaml.safe_load_all(out.stdout)}


def deserialize(obj: dict, model: str):
    """The kubernetes client's own model, as `read_namespaced_*` would return it."""
    from kubernetes.client import ApiClient

    class Response:
        data = json.dumps(obj)

    return ApiClient().deserialize(Response(), model)


def test_every_object_is_in_the_profile_namespace(rendered):
    assert set(rendered) == {
        ("Role", "resumo-katib-launcher"),
        ("RoleBinding", "resumo-katib-launcher"),
        ("Role", "resumo-trainjob-launcher"),
        ("RoleBinding", "resumo-trainjob-launcher"),
        ("ConfigMap", "kfp-launcher"),
        ("Secret", "resumo-s3"),
        ("ServiceAccount", "resumo-serving"),
        ("Job", "resumo-schedule-weekly"),
        ("InferenceService", "resumo"),
    }
    assert {o["metadata"]["namespace"] for o in rendered.values()} == {NAMESPACE}


@pytest.mark.parametrize(
    ("name", "group", "resource"), [("resumo-katib-launcher", "kubeflow.org", "experiments"), ("resumo-trainjob-launcher", "trainer.kubeflow.org", "trainjobs")]
)
def test_launchers_may_run_their_jobs_and_nothing_else(rendered, name, group, resource):
    role = deserialize(rendered["Role", name], "V1Role")
    granted = {(g, r, verb) for rule in role.rules for g in rule.api_groups for r in rule.resources for verb in rule.verbs}
    # Exactly the calls resumo.katib and resumo.trainjob make (their docstrings' RBAC blocks).
    assert granted == {(group, resource, v) for v in ("create", "get", "delete")}
    binding = deserialize(rendered["RoleBinding", name], "V1RoleBinding")
    assert binding.role_ref.kind == "Role" and binding.role_ref.name == role.metadata.name
    (subject,) = binding.subjects
    # The runs' service account, in the same namespace (the transformer moved the subject too).
    assert (subject.kind, subject.name, subject.namespace) == ("ServiceAccount", "default-editor", NAMESPACE)


def test_s3_secret_has_the_keys_the_pipeline_maps_and_no_real_value(rendered):
    secret = deserialize(rendered["Secret", "resumo-s3"], "V1Secret")
    assert secret.metadata.name == ClusterConfig().secrets.s3  # the name the compiled pipeline refers to
    assert set(secret.data) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"}
    assert "serving.kserve.io/s3-endpoint" in secret.metadata.annotations
    ignored = subprocess.run(["git", "check-ignore", "manifests/s3.env"], cwd=ROOT, capture_output=True)
    assert ignored.returncode == 0, "manifests/s3.env must be git-ignored"


def test_kfp_launcher_sets_an_s3_pipeline_root_with_our_secret(rendered):
    config_map = deserialize(rendered["ConfigMap", "kfp-launcher"], "V1ConfigMap")
    assert config_map.data["defaultPipelineRoot"].startswith("s3://")
    credentials = yaml.safe_load(config_map.data["providers"])["s3"]["default"]["credentials"]
    assert credentials["secretRef"] == {"secretName": "resumo-s3", "accessKeyKey": "AWS_ACCESS_KEY_ID", "secretKeyKey": "AWS_SECRET_ACCESS_KEY"}


def test_images_are_the_ones_the_components_name(rendered):
    job = deserialize(rendered["Job", "resumo-schedule-weekly"], "V1Job")
    isvc = rendered["InferenceService", "resumo"]
    assert job.spec.template.spec.containers[0].image == components.CPU_IMAGE
    assert isvc["spec"]["predictor"]["containers"][0]["image"] == components.VLLM_IMAGE


def test_recurring_run_job_creates_the_schedule_through_the_kfp_api(rendered, monkeypatch):
    from typer.testing import CliRunner

    from resumo.cli import app
    from tests.servers.kfp_api import KfpApiServer

    job = deserialize(rendered["Job", "resumo-schedule-weekly"], "V1Job")
    pod = job.spec.template.spec
    (container,) = pod.containers
    assert pod.restart_policy == "Never" and pod.security_context.run_as_non_root
    # KFP's in-cluster auth: a projected service-account token for the pipelines audience.
    (source,) = pod.volumes[0].projected.sources
    assert source.service_account_token.audience == "pipelines.kubeflow.org"
    assert container.volume_mounts[0].mount_path == "/var/run/secrets/kubeflow/pipelines"

    # Run the Job's own command line against a KFP API on loopback (single-user: no namespace).
    assert container.command == ["resumo", "schedule"]
    flags = dict(zip(container.args[::2], container.args[1::2]))
    assert flags.pop("--namespace") == "$(NAMESPACE)" and container.env[0].value_from.field_ref.field_path == "metadata.namespace"
    with KfpApiServer() as api:
        flags["--host"] = api.url
        result = CliRunner().invoke(app, ["schedule", *[word for pair in flags.items() for word in pair]])
        assert result.exit_code == 0, result.output
        (created,) = api.state.recurring_runs.values()
    assert created["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * 1"
    assert created["display_name"] == "weekly-retrain" and created["no_catchup"] is True


def test_inference_service_serves_the_registry_adapter_with_vllm(rendered):
    isvc = rendered["InferenceService", "resumo"]
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    predictor = isvc["spec"]["predictor"]
    assert predictor["serviceAccountName"] == "resumo-serving" and ("ServiceAccount", "resumo-serving") in rendered
    (container,) = predictor["containers"]
    container_model = deserialize(container, "V1Container")  # a valid core Container
    assert container_model.command == ["vllm", "serve"]
    args = container_model.args
    assert "--enable-lora" in args and args[args.index("--lora-modules") + 1] == "resumo=/mnt/models"
    # vLLM refuses adapters above --max-lora-rank (default 16); the study's winner is r = 64.
    from resumo.config import LoraSettings

    assert int(args[args.index("--max-lora-rank") + 1]) >= LoraSettings().r
    env = {e.name: e for e in container_model.env}
    assert env["STORAGE_URI"].value.startswith("s3://") and "/models/" in env["STORAGE_URI"].value
    assert env["HF_TOKEN"].value_from.secret_key_ref.optional
    assert container_model.resources.limits["nvidia.com/gpu"] == "1"
