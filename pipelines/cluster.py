"""Submit, follow and schedule the pipeline on Kubeflow Pipelines with `kfp.Client`.

    resumo submit --host https://kubeflow.example.com/pipeline --set train.lora.r=16
    resumo runs --host ... --follow RUN_ID
    resumo schedule --host ... --cron "0 0 3 * * 1"      # Mondays 03:00 UTC

Everything a user can get wrong (config values, the cron expression) is checked
before the first request, so a refused command has sent nothing. Each submit
uploads the freshly compiled pipeline as a new version of one named pipeline,
so the UI keeps the history of what ran.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from resumo.config import ClusterConfig, PipelineConfig
from resumo.errors import ConfigError, ResumoError

log = logging.getLogger(__name__)

# The run-date parameter of the pipeline, and what a recurring run puts there: KFP's
# scheduled-workflow controller replaces [[ScheduledTime.<Go layout>]] in run
# parameters with the run's scheduled time (backend/src/crd/controller/scheduledworkflow/util).
RUN_DATE_PARAMETER = "s0_run_date"
SCHEDULED_DATE = "[[ScheduledTime.2006-01-02]]"
TERMINAL_STATES = {"SUCCEEDED", "FAILED", "SKIPPED", "CANCELED"}


@dataclass(frozen=True)
class Submitted:
    run_id: str
    url: str
    pipeline_id: str
    version_id: str


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    name: str
    state: str
    created_at: str
    url: str


def validate_cron(cron: str) -> str:
    """A KFP cron: six fields, seconds first (robfig/cron), that fires at least once."""
    from croniter import CroniterBadCronError, CroniterBadDateError, croniter

    fields = cron.split()
    hint = 'six fields, seconds first: "SEC MIN HOUR DAY MONTH WEEKDAY", e.g. "0 0 3 * * 1" for Mondays 03:00'
    if len(fields) != 6:
        raise ConfigError(f"--cron {cron!r} has {len(fields)} fields; KFP needs {hint}")
    try:
        croniter(cron, datetime.now(UTC), second_at_beginning=True).get_next(datetime)
    except CroniterBadDateError:
        raise ConfigError(f"--cron {cron!r} never fires (no such date); use {hint}") from None
    except (CroniterBadCronError, ValueError) as err:
        raise ConfigError(f"--cron {cron!r} is not valid ({err}); use {hint}") from None
    return " ".join(fields)


def compile_to(cfg: PipelineConfig, path: str | Path) -> Path:
    from kfp import compiler

    from resumo.pipelines.summarization import build  # kfp's own layer, as this module

    compiler.Compiler().compile(build(cfg), str(path))
    return Path(path)


def connect(cluster: ClusterConfig):
    """A kfp.Client: a bearer token from `cluster.token_env`, else the in-cluster
    service-account token KFP mounts, else (no host) in-cluster DNS or the kubeconfig."""
    import kfp
    from kfp.client import KF_PIPELINES_SA_TOKEN_ENV, KF_PIPELINES_SA_TOKEN_PATH, set_volume_credentials

    token = os.environ.get(cluster.token_env) or None
    credentials = None
    sa_token = os.environ.get(KF_PIPELINES_SA_TOKEN_ENV, KF_PIPELINES_SA_TOKEN_PATH)
    if not token and cluster.host and Path(sa_token).is_file():
        credentials = set_volume_credentials.ServiceAccountTokenVolumeCredentials()
    with _api_errors(cluster), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "only works with KFP >= 2.0.0-beta.2": ours is
        return kfp.Client(
            host=cluster.host,
            namespace=cluster.namespace or "kubeflow",
            existing_token=token,
            credentials=credentials,
            kube_context=cluster.kube_context,
        )


def submit(cfg: PipelineConfig, run_name: str | None = None, run_date: str | None = None, client=None) -> Submitted:
    """Compile `cfg`, upload it as a new pipeline version and start a run of it."""
    cluster = cfg.cluster
    run_date = run_date or datetime.now(UTC).strftime("%Y-%m-%d")
    with tempfile.TemporaryDirectory() as tmp:
        package = compile_to(cfg, Path(tmp) / "resumo.yaml")
        client = client or connect(cluster)
        with _api_errors(cluster):
            experiment_id = _experiment_id(client, cluster)
            pipeline_id, version_id = _upload(client, cluster, package)
            with contextlib.redirect_stdout(io.StringIO()):  # kfp prints its own link; we print ours
                run = client.run_pipeline(
                    experiment_id=experiment_id,
                    job_name=run_name or f"{cluster.pipeline_name} {run_date}",
                    params={RUN_DATE_PARAMETER: run_date},
                    pipeline_id=pipeline_id,
                    version_id=version_id,
                    pipeline_root=cluster.pipeline_root,
                    service_account=cluster.service_account,
                )
    return Submitted(run.run_id, run_url(cluster, run.run_id), pipeline_id, version_id)


def list_runs(cluster: ClusterConfig, client, limit: int = 10) -> list[RunInfo]:
    with _api_errors(cluster):
        response = client.list_runs(
            experiment_id=_experiment_id(client, cluster), page_size=limit, sort_by="created_at desc", namespace=cluster.namespace
        )
    return [_run_info(cluster, run) for run in response.runs or []]


def follow(
    cluster: ClusterConfig,
    client,
    run_id: str,
    interval: float = 30,
    max_polls: int = 2880,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[str]:
    """Yield a line for each change of the run's or a task's state until the run ends.

    At most `max_polls` polls, `interval` seconds apart (defaults: a day at 30 s);
    raises if the run is still going then.
    """
    seen: dict[str, str] = {}
    for poll in range(max_polls):
        with _api_errors(cluster):
            run = client.get_run(run_id)
        for task in (run.run_details.task_details if run.run_details else None) or []:
            if task.display_name and seen.get(task.display_name) != task.state:
                seen[task.display_name] = task.state
                yield f"  {task.display_name}: {task.state}"
        if seen.get("") != run.state:
            seen[""] = run.state
            yield f"run {run_id}: {run.state}"
        if run.state in TERMINAL_STATES:
            return
        if poll + 1 < max_polls:
            sleep(interval)
    raise ResumoError(f"run {run_id} is still {run.state} after {max_polls} polls; follow it again with `resumo runs --follow {run_id}`")


def schedule(cfg: PipelineConfig, cron: str, name: str | None = None, client=None):
    """A recurring run of a freshly uploaded version: one run at a time, no catch-up,
    each run's `s0_run_date` set to its scheduled day."""
    cron = validate_cron(cron)
    if cfg.tune.policy is None:  # a recurring run reuses production's hyperparameters unless told otherwise
        cfg = cfg.model_copy(update={"tune": cfg.tune.model_copy(update={"policy": "reuse"})})
    cluster = cfg.cluster
    name = name or f"{cluster.pipeline_name} retrain"
    with tempfile.TemporaryDirectory() as tmp:
        package = compile_to(cfg, Path(tmp) / "resumo.yaml")
        client = client or connect(cluster)
        # Two schedules of one name would both retrain and promote; changing one is delete + create.
        for job in list_schedules(cluster, client):
            if job.display_name == name:
                raise ResumoError(f"a recurring run named {name!r} exists ({job.recurring_run_id}); delete it first: resumo schedule --delete {job.recurring_run_id}")
        with _api_errors(cluster):
            experiment_id = _experiment_id(client, cluster)
            pipeline_id, version_id = _upload(client, cluster, package)
            return client.create_recurring_run(
                experiment_id=experiment_id,
                job_name=name,
                description=f"resumo recurring retrain, cron {cron!r} (UTC)",
                cron_expression=cron,
                # A retrain takes hours; a second one at once would compete for the same GPUs
                # and registry. After a pause, run once, not once per missed slot.
                max_concurrency=1,
                no_catchup=True,
                params={RUN_DATE_PARAMETER: SCHEDULED_DATE},
                pipeline_id=pipeline_id,
                version_id=version_id,
                pipeline_root=cluster.pipeline_root,
                service_account=cluster.service_account,
            )


def list_schedules(cluster: ClusterConfig, client) -> list:
    with _api_errors(cluster):
        response = client.list_recurring_runs(experiment_id=_experiment_id(client, cluster), page_size=100, namespace=cluster.namespace)
    return response.recurring_runs or []


def delete_schedule(cluster: ClusterConfig, client, recurring_run_id: str) -> None:
    with _api_errors(cluster):
        client.delete_recurring_run(recurring_run_id)


def run_url(cluster: ClusterConfig, run_id: str) -> str:
    # The UI is served beside the API (https://host/pipeline/#/runs/details/ID); in-cluster, under /pipeline.
    return f"{(cluster.host or '/pipeline').rstrip('/')}/#/runs/details/{run_id}"


def _experiment_id(client, cluster: ClusterConfig) -> str:
    with contextlib.redirect_stdout(io.StringIO()):  # create_experiment prints a link too
        return client.create_experiment(cluster.experiment, namespace=cluster.namespace).experiment_id


def _upload(client, cluster: ClusterConfig, package: Path) -> tuple[str, str]:
    """A new version of the named pipeline (the pipeline itself the first time)."""
    version_name = f"{cluster.pipeline_name}-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S-%f')}"
    pipeline_id = client.get_pipeline_id(cluster.pipeline_name)
    if pipeline_id is None:
        pipeline_id = client.upload_pipeline(str(package), pipeline_name=cluster.pipeline_name, namespace=cluster.namespace).pipeline_id
        versions = client.list_pipeline_versions(pipeline_id, sort_by="created_at desc", page_size=1).pipeline_versions
        return pipeline_id, versions[0].pipeline_version_id
    version = client.upload_pipeline_version(str(package), pipeline_version_name=version_name, pipeline_id=pipeline_id)
    return pipeline_id, version.pipeline_version_id


def _run_info(cluster: ClusterConfig, run) -> RunInfo:
    created = run.created_at.strftime("%Y-%m-%d %H:%M") if run.created_at else ""
    return RunInfo(run.run_id, run.display_name or "", run.state or "", created, run_url(cluster, run.run_id))


@contextlib.contextmanager
def _api_errors(cluster: ClusterConfig):
    """The KFP API's refusals and unreachable hosts as one-line errors."""
    import kfp_server_api
    import urllib3

    where = cluster.host or "the in-cluster or kubeconfig KFP endpoint"
    try:
        yield
    except kfp_server_api.ApiException as err:
        detail = (err.body or err.reason or "").strip().replace("\n", " ")[:300]
        hint = f"; set a token in ${cluster.token_env}" if err.status in (401, 403) else ""
        raise ResumoError(f"KFP API at {where} answered {err.status}: {detail}{hint}") from None
    except urllib3.exceptions.HTTPError as err:
        raise ResumoError(f"cannot reach KFP at {where} ({type(err).__name__}); check --host") from None
