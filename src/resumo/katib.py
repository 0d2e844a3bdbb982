"""Katib: the tune search space as a Katib Experiment, and the launcher that runs it.

    resumo tune --backend katib --dry-run --pairs s3://resumo/pairs --out experiment.yaml
    resumo tune --backend katib --pairs s3://resumo/pairs --out runs/tune   # create, wait, read the best trial

The Experiment is built from the kubeflow-katib-api models (typed, validated
on construction) with the trial's Job built from the kubernetes client's
models; `tune.space`, `tune.search` and `tune.algorithm` mean what they mean
to the local optuna study (`resumo.tune`). Each trial runs `resumo train` in
the train image with its parameters as `--set` overrides and copies its
outputs to `<tune.katib.output>/<trial name>/`, so the launcher hands on
the best trial's adapter URI and nothing is trained twice.

RBAC the launcher's service account needs, in the Experiment's namespace only
(a namespaced Role; manifests/ holds it):

    - apiGroups: ["kubeflow.org"]
      resources: ["experiments"]
      verbs: ["create", "get", "delete"]

`get` is polled (no list/watch); `delete` is used only with tune.katib.delete.
Trial pods need no Kubernetes API access; they run under the run's service account
(`cluster.service_account`) and read the S3 Secret every task reads
(`cluster.secrets.s3`) as environment.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resumo import artifacts, kube, storage
from resumo.config import SearchSpace, TrainConfig, TuneConfig, train_field
from resumo.errors import ConfigError, ResumoError
from resumo.tune import train_params

log = logging.getLogger(__name__)

GROUP, VERSION, PLURAL, KIND = "kubeflow.org", "v1beta1", "experiments", "Experiment"
# Besides the objective, what `resumo train` prints as `name=value` after each epoch and at the end (train.py).
ADDITIONAL_METRICS = ("eval_loss",)
CONTAINER = "training"
WORKDIR = "/workspace"
# Katib terminal condition types (pkg/apis/controller/experiments/v1beta1).
SUCCEEDED, FAILED = "Succeeded", "Failed"


class KatibError(ResumoError):
    """The Experiment could not be created, failed, or did not finish in time."""


@dataclass
class KatibResult:
    experiment: str
    namespace: str
    best_trial: str
    best_params: dict[str, Any]  # dotted train.* keys, e.g. {"lora.r": 16}
    best_score: float
    best_adapter: str  # s3:// URI written by the best trial
    metrics: dict[str, float] = field(default_factory=dict)
    status: dict = field(default_factory=dict)


# --- the Experiment ----------------------------------------------------------


def experiment(
    cfg: TuneConfig,
    train_cfg: TrainConfig,
    pairs_uri: str,
    name: str,
    namespace: str,
    target: kube.JobTarget | None = None,
) -> dict:
    """The Experiment as the JSON the API server takes, built with the Katib SDK models.

    Each trial pod requests `target.gpu` (in the pipeline: the run's s9_gpu_* parameters; else cluster.gpu's defaults)
    and runs tune.katib.image, else `target.image` (the caller's train image: resumo.images.TRAIN_IMAGE),
    under `target.cluster`'s service account with its S3 Secret.
    """
    from kubeflow_katib_api import models as k

    # KFP's default MinIO pipeline root names its artifacts minio://; to boto3 in the trial it is S3.
    pairs_uri = "s3://" + pairs_uri.removeprefix("minio://") if pairs_uri.startswith("minio://") else pairs_uri
    if storage.parse(pairs_uri).scheme != "s3":
        raise ConfigError(f"pairs {pairs_uri!r}: Katib trial pods cannot read a local folder; give the s3:// URI of the distill output")
    parameters = [_parameter_spec(name_, getattr(cfg.space, name_)) for name_ in cfg.search]
    max_trials = cfg.space.trial_count(cfg.search, cfg.algorithm, cfg.max_trials)
    spec = k.V1beta1ExperimentSpec(
        objective=k.V1beta1ObjectiveSpec(
            type="maximize",
            objective_metric_name=cfg.objective,
            additional_metric_names=list(ADDITIONAL_METRICS),
            # `latest`: the score of the adapter the trial saved (its last epoch), not its best epoch.
            metric_strategies=[k.V1beta1MetricStrategy(name=m, value="latest") for m in (cfg.objective, *ADDITIONAL_METRICS)],
        ),
        algorithm=k.V1beta1AlgorithmSpec(algorithm_name=cfg.algorithm, algorithm_settings=_algorithm_settings(cfg)),
        early_stopping=_early_stopping(cfg),
        # Katib's webhook refuses more parallel (or failed) trials than trials, and a grid
        # suggestion refuses more trials than grid points.
        parallel_trial_count=min(cfg.parallel_trials, max_trials),
        max_trial_count=max_trials,
        max_failed_trial_count=min(cfg.max_failed_trials, max_trials),
        parameters=parameters,
        metrics_collector_spec=k.V1beta1MetricsCollectorSpec(
            collector=k.V1beta1CollectorSpec(kind="StdOut"),
            source=k.V1beta1SourceSpec(filter=k.V1beta1FilterSpec(metrics_format=[metrics_format((cfg.objective, *ADDITIONAL_METRICS))])),
        ),
        trial_template=k.V1beta1TrialTemplate(
            primary_container_name=CONTAINER,
            trial_parameters=[k.V1beta1TrialParameterSpec(name="trialName", description="Trial name: the adapter's S3 key", reference="${trialSpec.Name}")]
            + [k.V1beta1TrialParameterSpec(name=p, description=f"train.{SearchSpace.TRAIN_KEYS[p]}", reference=p) for p in cfg.search],
            trial_spec=trial_job(cfg, train_cfg, pairs_uri, target or kube.JobTarget()),
        ),
    )
    meta = k.IoK8sApimachineryPkgApisMetaV1ObjectMeta(name=name, namespace=namespace, labels={"app.kubernetes.io/part-of": "resumo"})
    return k.V1beta1Experiment(api_version=f"{GROUP}/{VERSION}", kind=KIND, metadata=meta, spec=spec).to_dict()


def render(
    cfg: TuneConfig,
    train_cfg: TrainConfig,
    pairs_uri: str,
    target: kube.JobTarget | None = None,
) -> dict:
    """The Experiment of run `target.run_id` (a fresh one without), in tune.katib.namespace or else this pod's own (`default` off-cluster)."""
    target = target or kube.JobTarget()
    name, namespace = experiment_name(cfg.katib.name_prefix, target.run_id), cfg.katib.namespace or kube.own_namespace()
    return kube.mark_run(experiment(cfg, train_cfg, pairs_uri, name, namespace, target), target.run_id)


def experiment_name(prefix: str, run_id: str | None = None) -> str:
    """The same name for every attempt of one pipeline run's tune task, so a retried launcher finds
    the Experiment its first attempt made; without a run id (a hand launch), a fresh one.
    prefix (at most 31) + '-' + 8 hex characters fit Katib's 40, and trial names (name + 9) Job labels."""
    suffix = hashlib.sha256(f"{run_id}/tune".encode()).hexdigest()[:8] if run_id else secrets.token_hex(4)
    return f"{prefix}-{suffix}"


def metrics_format(names: tuple[str, ...]) -> str:
    """Katib's filter: a regex whose two top groups are the metric's name and value (RE2 and Python agree on it).

    The word boundary keeps `eval_loss` from matching inside `train_eval_loss=`.
    """
    return r"\b(" + "|".join(re.escape(n) for n in names) + r")=([-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"


def trial_output(output: str, trial_name: str) -> str:
    """Where a trial writes its adapter and metrics: the one place the launcher and the template agree on."""
    return storage.join(output, trial_name)


def trial_job(cfg: TuneConfig, train_cfg: TrainConfig, pairs_uri: str, target: kube.JobTarget) -> dict:
    """The batch/v1 Job each trial runs, as JSON (kubernetes client models, sanitised by its ApiClient)."""
    from kubernetes import client as k8s

    gpu, cluster = target.gpu, target.cluster
    image = cfg.katib.image or target.image
    if not image:
        raise ConfigError("tune.katib.image is not set and no train image was given; set tune.katib.image to the image trials run")
    env = [
        # The whole train section (and the prompt it shares), so a trial trains exactly as the pipeline's train step would.
        # backend pod: a trial trains in its own pod (on its GPUs), even where the train step launches a TrainJob.
        k8s.V1EnvVar(name="RESUMO_CONFIG", value=json.dumps({"prompt": train_cfg.prompt.model_dump(mode="json"), "train": train_cfg.model_dump(mode="json") | {"backend": "pod"}})),
        k8s.V1EnvVar(name="RESUMO_PAIRS", value=pairs_uri),
        k8s.V1EnvVar(name="RESUMO_TRIAL_OUT", value=trial_output(cfg.katib.output, "${trialParameters.trialName}")),
    ]
    container = k8s.V1Container(
        name=CONTAINER,
        image=image,
        command=["sh", "-c", trial_script(cfg)],
        env=env,
        env_from=[k8s.V1EnvFromSource(secret_ref=k8s.V1SecretEnvSource(name=cluster.secrets.s3))],
        # An extended resource such as nvidia.com/gpu is requested as a limit (the request follows it).
        resources=k8s.V1ResourceRequirements(requests={"cpu": gpu.cpu, "memory": gpu.memory}, limits={gpu.accelerator: str(gpu.count)}),
        volume_mounts=[k8s.V1VolumeMount(name="work", mount_path=WORKDIR)],
        working_dir=WORKDIR,
    )
    pod = k8s.V1PodTemplateSpec(
        # An Istio sidecar would keep the pod, and so the Job and the trial, running after training ends.
        metadata=k8s.V1ObjectMeta(annotations={"sidecar.istio.io/inject": "false"}),
        spec=k8s.V1PodSpec(
            restart_policy="Never",
            service_account_name=cluster.service_account,
            containers=[container],
            tolerations=gpu.tolerations or None,  # Kubernetes' own field names, checked by GpuConfig
            node_selector=gpu.node_selector or None,
            volumes=[k8s.V1Volume(name="work", empty_dir=k8s.V1EmptyDirVolumeSource())],
        ),
    )
    # backoffLimit 0: a failed trial is Katib's to count (maxFailedTrialCount), not the Job's to retry.
    job = k8s.V1Job(api_version="batch/v1", kind="Job", spec=k8s.V1JobSpec(backoff_limit=0, template=pod))
    return k8s.ApiClient().sanitize_for_serialization(job)


def trial_script(cfg: TuneConfig) -> str:
    """The trial's shell command: fetch the pairs, `resumo train` with the trial's values, copy the adapter out.

    Katib's StdOut collector appends ` 1>/var/log/katib/metrics.log 2>&1 && ...`
    to this command, so it is one parenthesised group: the redirect then takes
    every line's output, not only the last command's.
    """
    copy = "python -c 'import sys; from resumo import storage; storage.{}(*sys.argv[1:])'"
    sets = " ".join(f"--set train.{SearchSpace.TRAIN_KEYS[p]}=${{trialParameters.{p}}}" for p in cfg.search)
    lines = [  # in the working directory, an emptyDir
        "set -eu",
        'printf "%s" "$RESUMO_CONFIG" > config.yaml',
        f'{copy.format("download")} "$RESUMO_PAIRS" pairs',
        f"resumo train --profile config.yaml --pairs pairs --out trial {sets}",
        # The trial's folder is a `model` folder, as the train step's is (resumo.artifacts).
        *(f'{copy.format("upload")} trial/{name} "$RESUMO_TRIAL_OUT/{name}"' for name in artifacts.TRIAL_FILES),
    ]
    return "(\n" + "\n".join(lines) + "\n)"


def _parameter_spec(name: str, entry):
    from kubeflow_katib_api import models as k

    integer = train_field(name).annotation is int
    if entry.values is not None:
        space = k.V1beta1FeasibleSpace(list=[_number(v, integer) for v in entry.values])
        kind = "discrete"
    else:
        space = k.V1beta1FeasibleSpace(
            min=_number(entry.low, integer), max=_number(entry.high, integer), distribution="logUniform" if entry.log else "uniform"
        )
        kind = "int" if integer else "double"
    return k.V1beta1ParameterSpec(name=name, parameter_type=kind, feasible_space=space)


def _number(value: float, integer: bool) -> str:
    # Katib carries every value as a string; repr keeps floats exact (2e-05, not 0.0000).
    return str(int(value)) if integer else repr(float(value))


def _algorithm_settings(cfg: TuneConfig):
    from kubeflow_katib_api import models as k

    # Katib's grid suggestion accepts no settings; the others take a random_state.
    if cfg.algorithm == "grid":
        return None
    return [k.V1beta1AlgorithmSetting(name="random_state", value=str(cfg.seed))]


def _early_stopping(cfg: TuneConfig):
    from kubeflow_katib_api import models as k

    if cfg.early_stopping == "none":
        return None
    settings = {"min_trials_required": cfg.median_stop_min_trials, "start_step": cfg.median_stop_start_step}
    return k.V1beta1EarlyStoppingSpec(
        algorithm_name="medianstop", algorithm_settings=[k.V1beta1EarlyStoppingSetting(name=n, value=str(v)) for n, v in settings.items()]
    )


# --- the launcher -------------------------------------------------------------


def run(
    cfg: TuneConfig,
    train_cfg: TrainConfig,
    pairs_uri: str,
    out_dir: str | Path | None = None,
    api_client=None,
    target: kube.JobTarget | None = None,
) -> KatibResult:
    """Create the Experiment (or find run `target.run_id`'s), wait for it, and read its best trial; the Experiment YAML and result go to `out_dir`."""
    api_client = api_client or kube.client(RESOURCE)
    body = render(cfg, train_cfg, pairs_uri, target)
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / artifacts.EXPERIMENT).write_text(kube.to_yaml(body))
    result = launch(body, api_client, cfg)
    if out_dir is not None:
        (Path(out_dir) / artifacts.BEST).write_text(json.dumps(_summary(result, cfg), indent=2))
    return result


def launch(body: dict, api_client, cfg: TuneConfig) -> KatibResult:
    """Create the Experiment `body` (or, on a retry of its run, wait on the one its first attempt made),
    wait for it, read its best trial; delete it afterwards if tune.katib.delete."""
    settings, spec = cfg.katib, body["spec"]
    summary = f"{spec['algorithm']['algorithmName']}, up to {spec['maxTrialCount']} trials"
    status = kube.launch(RESOURCE, body, api_client, timeout_s=settings.timeout_s, poll_s=settings.poll_s, delete=settings.delete, summary=summary)
    return best_trial(status, body["metadata"]["name"], body["metadata"]["namespace"], cfg)


def best_trial(status: dict, name: str, namespace: str, cfg: TuneConfig) -> KatibResult:
    """The best trial's parameters (as typed train.* overrides), its metrics and its adapter's URI."""
    optimal = status.get("currentOptimalTrial") or {}
    trial = optimal.get("bestTrialName")
    if not trial:
        raise KatibError(f"Katib Experiment {namespace}/{name} succeeded without an optimal trial (no trial reported {cfg.objective}); check the trials' logs")
    assignments = {a["name"]: a["value"] for a in optimal.get("parameterAssignments") or []}
    unknown = sorted(set(assignments) - set(cfg.search))
    if unknown:
        raise KatibError(f"Katib Experiment {namespace}/{name}: its best trial assigns {unknown}, which tune.search {cfg.search} does not hold")
    metrics = {m["name"]: float(m["latest"]) for m in (optimal.get("observation") or {}).get("metrics") or [] if m.get("latest") not in (None, "unavailable")}
    if cfg.objective not in metrics:
        raise KatibError(f"Katib Experiment {namespace}/{name}: best trial {trial} has no {cfg.objective} observation (got {sorted(metrics)})")
    return KatibResult(
        experiment=name,
        namespace=namespace,
        best_trial=trial,
        best_params=train_params(assignments),
        best_score=metrics[cfg.objective],
        best_adapter=artifacts.adapter_of(trial_output(cfg.katib.output, trial)),
        metrics=metrics,
        status=status,
    )


def _state(status: dict) -> str | None:
    """The condition that is True now (Created, Running, Succeeded...), None before the first."""
    true = kube.true_conditions(status)
    return true[-1] if true else None


def _progress(status: dict) -> str:
    counts = {k: status.get(f"trials{k[0].upper()}{k[1:]}", 0) for k in ("succeeded", "running", "failed", "earlyStopped")}
    return f"{status.get('trials', 0)} trials (" + ", ".join(f"{v} {k}" for k, v in counts.items()) + ")"


def _summary(result: KatibResult, cfg: TuneConfig) -> dict:
    return {
        "experiment": f"{result.namespace}/{result.experiment}",
        "best_trial": result.best_trial,
        "params": result.best_params,
        cfg.objective: result.best_score,
        "metrics": result.metrics,
        "adapter": result.best_adapter,
    }


# The Experiment as resumo.kube launches it (below the helpers it names).
RESOURCE = kube.Kind(
    GROUP,
    VERSION,
    PLURAL,
    KIND,
    label="Katib Experiment",
    stage="tune",
    error=KatibError,
    done=SUCCEEDED,
    failed=FAILED,
    state=_state,
    progress=_progress,
    failure=lambda status: f"failed trials: {status.get('failedTrialList') or []}",
    inspect="kubectl -n {namespace} describe experiment {name}",
    operator="Katib",
    rbac="manifests/",
    name_prefix="tune.katib.name_prefix",
    timeout_hint="raise tune.katib.timeout_s, or read its result later with `kubectl get experiment`",
    deleted_note="its trials go with it; adapters stay on S3",
)
