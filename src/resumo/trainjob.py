"""TrainJob: training as a Kubeflow Trainer v2 TrainJob, over one or more GPU nodes, and its launcher.

    resumo train --backend trainjob --dry-run --pairs s3://resumo/pairs --out trainjob.yaml -p full   # look before you launch
    resumo train --backend trainjob --pairs s3://resumo/pairs --out runs/model -p full                # create, wait, hand on the adapter

With `train.backend: trainjob` the pipeline's train task is a CPU launcher, as
tune is for Katib: it creates a `trainer.kubeflow.org/v1alpha1` TrainJob on the
`torch-distributed` ClusterTrainingRuntime (train.trainjob.runtime), whose torch
plugin (mlPolicy.torch) sets torchrun's PET_* variables on each node. Each of
`train.trainjob.num_nodes` nodes requests the run's GPU settings (s9_gpu_*:
resourcesPerNode, tolerations and node selector through a runtime patch) and
runs, in the train image:

    download the pairs from S3
    torchrun --no-python resumo train ...     # one rank per GPU; resumo.launch sees LOCAL_RANK
    node 0: upload adapter/, metrics.json, curves.png to <train.trainjob.output>/<name>/

The launcher waits for the Complete or Failed condition (or train.trainjob.timeout_s,
also the TrainJob's activeDeadlineSeconds), downloads those outputs into the
task's model artifact and deletes the TrainJob if train.trainjob.delete. The name
comes from the KFP run id, so a retried task meets its TrainJob (HTTP 409),
reads it and, when its run annotation names this run, keeps waiting instead of
training twice; another run's TrainJob of that name is refused (resumo.kube).

RBAC the launcher's service account needs, in the TrainJob's namespace only
(manifests/trainjob-rbac.yaml):

    - apiGroups: ["trainer.kubeflow.org"]
      resources: ["trainjobs"]
      verbs: ["create", "get", "delete"]
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from dataclasses import dataclass
from pathlib import Path

from resumo import artifacts, kube, storage
from resumo.config import TrainConfig
from resumo.errors import ConfigError, ResumoError
from resumo.distributed import split_batch
from resumo.stage import StageResult

log = logging.getLogger(__name__)

GROUP, VERSION, PLURAL, KIND = "trainer.kubeflow.org", "v1alpha1", "trainjobs", "TrainJob"
NODE = "node"  # the torch-distributed runtime's replicated job and container
WORKDIR = "/workspace"
# Trainer v2's condition types (pkg/apis/trainer/v1alpha1/trainjob_types.go).
COMPLETE, FAILED = "Complete", "Failed"
S3_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL")
OUTPUT_FILES = (*artifacts.TRIAL_FILES, artifacts.MERGED)  # what node 0 uploads: the model folder without checkpoints


class TrainJobError(ResumoError):
    """The TrainJob could not be created, failed, or did not finish in time."""


@dataclass
class TrainJobResult:  # resumo.train.TrainResult's fields, without importing the training stack into the launcher
    trainjob: str
    adapter_dir: Path
    metrics: dict[str, float]


# --- the TrainJob ----------------------------------------------------------------


def job_name(prefix: str, run_id: str | None = None) -> str:
    """`prefix`-12 hex characters: of the KFP run id, so every attempt of one run's task names the same
    TrainJob; random without one (the CLI). 53 characters at most, under the 63 a TrainJob may have."""
    suffix = hashlib.sha256(run_id.encode()).hexdigest()[:12] if run_id else secrets.token_hex(6)
    return f"{prefix}-{suffix}"


def trainjob(cfg: TrainConfig, pairs_uri: str, name: str, namespace: str, target: kube.JobTarget | None = None) -> dict:
    """The TrainJob as the JSON the API server takes: `cfg` trained by `num_nodes` x `target.gpu.count` torchrun ranks,
    in train.trainjob.image else `target.image`, with the run's S3 Secret and service account (`target.cluster`: one
    setting each, as for every task)."""
    from kubernetes import client as k8s

    target = target or kube.JobTarget()
    gpu, cluster = target.gpu, target.cluster
    settings = cfg.trainjob
    pairs_uri = "s3://" + pairs_uri.removeprefix("minio://") if pairs_uri.startswith("minio://") else pairs_uri
    if storage.parse(pairs_uri).scheme != "s3":
        raise ConfigError(f"pairs {pairs_uri!r}: a TrainJob's pods cannot read a local folder; give the s3:// URI of the distill output")
    image = settings.image or target.image
    if not image:
        raise ConfigError("train.trainjob.image is not set and no train image was given; set train.trainjob.image to the image the nodes run")
    split_batch(cfg.batch_size, cfg.gradient_accumulation, settings.num_nodes * gpu.count)  # each rank's share, refused here rather than on the nodes
    # The nodes train with backend pod (they are the training), on every GPU of each node.
    node_cfg = cfg.model_copy(update={"backend": "pod", "nproc_per_node": gpu.count})
    env = [
        k8s.V1EnvVar(name="RESUMO_CONFIG", value=json.dumps({"prompt": cfg.prompt.model_dump(mode="json"), "train": node_cfg.model_dump(mode="json")})),
        k8s.V1EnvVar(name="RESUMO_PAIRS", value=pairs_uri),
        k8s.V1EnvVar(name="RESUMO_OUT", value=output_of(settings.output, name)),
        *(k8s.V1EnvVar(name=key, value_from=k8s.V1EnvVarSource(secret_key_ref=k8s.V1SecretKeySelector(name=cluster.secrets.s3, key=key))) for key in S3_KEYS),
    ]
    pod_patch = {
        "tolerations": gpu.tolerations or None,
        "nodeSelector": gpu.node_selector or None,
        "serviceAccountName": cluster.service_account,
        "volumes": [{"name": "work", "emptyDir": {}}],
        "containers": [{"name": NODE, "volumeMounts": [{"name": "work", "mountPath": WORKDIR}]}],
    }
    patch = {
        "manager": "resumo",
        "trainingRuntimeSpec": {
            "template": {
                "spec": {
                    "replicatedJobs": [
                        {
                            "name": NODE,
                            "template": {
                                "spec": {
                                    "template": {
                                        # An Istio sidecar would keep the pod, and so the TrainJob, running after training ends.
                                        "metadata": {"annotations": {"sidecar.istio.io/inject": "false"}},
                                        "spec": {k: v for k, v in pod_patch.items() if v is not None},
                                    }
                                }
                            },
                        }
                    ]
                }
            }
        },
    }
    trainer = {
        "image": image,
        "command": ["sh", "-c", node_script()],
        "env": k8s.ApiClient().sanitize_for_serialization(env),
        "numNodes": settings.num_nodes,
        "numProcPerNode": gpu.count,
        # An extended resource such as nvidia.com/gpu is requested as a limit (the request follows it).
        "resourcesPerNode": {"requests": {"cpu": gpu.cpu, "memory": gpu.memory}, "limits": {gpu.accelerator: str(gpu.count)}},
    }
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {"name": name, "namespace": namespace, "labels": {"app.kubernetes.io/part-of": "resumo"}},
        "spec": {
            "runtimeRef": {"apiGroup": GROUP, "kind": "ClusterTrainingRuntime", "name": settings.runtime},
            "activeDeadlineSeconds": settings.timeout_s,
            "trainer": trainer,
            "runtimePatches": [patch],
        },
    }


def render(cfg: TrainConfig, pairs_uri: str, target: kube.JobTarget | None = None) -> dict:
    """The TrainJob of this run (named from `target.run_id`, random without), in train.trainjob.namespace or this pod's own."""
    settings, target = cfg.trainjob, target or kube.JobTarget()
    body = trainjob(cfg, pairs_uri, job_name(settings.name_prefix, target.run_id), settings.namespace or kube.own_namespace(), target)
    return kube.mark_run(body, target.run_id)


def output_of(output: str, name: str) -> str:
    """Where a TrainJob's node 0 writes its model folder: the one place the launcher and the node script agree on."""
    return storage.join(output, name)


def node_script() -> str:
    """Each node's shell command: fetch the pairs, torchrun `resumo train` over this node's GPUs, node 0 uploads.

    torchrun reads PET_NNODES, PET_NPROC_PER_NODE, PET_NODE_RANK, PET_MASTER_ADDR and
    PET_MASTER_PORT, which Trainer's torch plugin sets; every rank runs the CLI,
    which sees LOCAL_RANK and trains in its own process (resumo.launch).
    """
    copy = "python -c 'import sys; from resumo import storage; storage.{}(*sys.argv[1:])'"
    upload = " ".join(f'[ ! -e model/{f} ] || {copy.format("upload")} model/{f} "$RESUMO_OUT/{f}";' for f in OUTPUT_FILES)
    lines = [
        "set -eu",
        f"cd {WORKDIR}",
        'printf "%s" "$RESUMO_CONFIG" > config.yaml',
        f'{copy.format("download")} "$RESUMO_PAIRS" pairs',
        "torchrun --no-python resumo train --profile config.yaml --pairs pairs --out model",
        # Only global rank 0 (on node 0) wrote the model folder.
        f'if [ "${{PET_NODE_RANK:-0}}" = 0 ]; then {upload} fi',
    ]
    return "\n".join(lines)


# --- the launcher -----------------------------------------------------------------


def run_stage(cfg: TrainConfig, params: dict, pairs_uri: str, out_dir: str | Path, target: kube.JobTarget) -> StageResult:
    """The pipeline's train step on a TrainJob (the stage contract, resumo.stage): `run` with `params`
    (dotted train.* overrides, tune's best) applied; the run's metrics."""
    return StageResult(dict(run(cfg.with_params(params), pairs_uri, out_dir, target).metrics))


def run(
    cfg: TrainConfig,
    pairs_uri: str,
    out_dir: str | Path,
    target: kube.JobTarget | None = None,
    api_client=None,
):
    """Create (or, on a retry of run `target.run_id`, find) this run's TrainJob, wait for it, and download its outputs into `out_dir`."""
    api_client = api_client or kube.client(RESOURCE)
    body = render(cfg, pairs_uri, target)
    launch(body, api_client, cfg)
    out_dir, output = Path(out_dir), output_of(cfg.trainjob.output, body["metadata"]["name"])
    out_dir.mkdir(parents=True, exist_ok=True)
    if storage.list_keys(output):
        storage.download(output, out_dir)
    (out_dir / artifacts.TRAINJOB).write_text(kube.to_yaml(body))
    adapter_dir, metrics_file = out_dir / artifacts.ADAPTER, out_dir / artifacts.TRAIN_METRICS
    if not (adapter_dir / artifacts.ADAPTER_CONFIG).exists():
        raise TrainJobError(f"TrainJob {body['metadata']['name']} completed but wrote no adapter under {output}; see its node 0 logs")
    log.info("train: TrainJob %s's adapter handed on from %s", body["metadata"]["name"], output)
    metrics = json.loads(metrics_file.read_text())["metrics"] if metrics_file.exists() else {}
    return TrainJobResult(body["metadata"]["name"], adapter_dir, metrics)


def launch(body: dict, api_client, cfg: TrainConfig) -> dict:
    """Create the TrainJob `body`, or meet it when this run's exists (a retried task), and wait for it; its final status."""
    settings, trainer = cfg.trainjob, body["spec"]["trainer"]
    summary = f"{trainer['numNodes']} x {trainer['numProcPerNode']} {next(iter(trainer['resourcesPerNode']['limits']))}"
    return kube.launch(RESOURCE, body, api_client, timeout_s=settings.timeout_s, poll_s=settings.poll_s, delete=settings.delete, summary=summary)


def _state(status: dict) -> str:
    true = kube.true_conditions(status)
    jobs = status.get("jobsStatus") or []
    active = sum(j.get("active", 0) for j in jobs)
    return (true[-1] if true else "Pending") + (f", {active} node job(s) active" if active else "")


# The TrainJob as resumo.kube launches it (below the helper it names).
RESOURCE = kube.Kind(
    GROUP,
    VERSION,
    PLURAL,
    KIND,
    label="TrainJob",
    stage="train",
    error=TrainJobError,
    done=COMPLETE,
    failed=FAILED,
    state=_state,
    progress=lambda status: "",
    failure=lambda status: "",
    inspect="kubectl -n {namespace} logs -l jobset.sigs.k8s.io/jobset-name={name}",
    operator="Kubeflow Trainer",
    rbac="manifests/trainjob-rbac.yaml",
    name_prefix="train.trainjob.name_prefix",
    timeout_hint="raise train.trainjob.timeout_s",
    deleted_note="its pods go with it; its outputs stay on S3",
)
