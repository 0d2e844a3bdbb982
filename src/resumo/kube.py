"""Launching a Kubernetes custom object and waiting for it: what the Katib and TrainJob launchers share.

    kind = kube.Kind("kubeflow.org", "v1beta1", "experiments", "Experiment", ...)
    status = kube.launch(kind, body, api_client, timeout_s=..., poll_s=..., delete=False)

- `client()` and `own_namespace()`: the pod's service account, else ~/.kube/config;
  the pod's namespace, else `default`.
- `create_or_adopt`: create the object; on HTTP 409 (a retried task whose first
  attempt created it) adopt it only when its `RUN_ID_ANNOTATION` names this run,
  and refuse another run's object of the same name.
- `wait`: read it until its done condition or its failed condition is True, or the
  timeout passes; a few failed reads in a row (an API server restarting) are waited out.
- `api_error`: an API error as one line with a hint (RBAC, CRD not installed, name taken).
- `delete`, and `to_yaml` for people (multi-line strings as literal blocks).

`JobTarget` is what both launchers are told about the job beyond its section:
the GPU request of each pod, the image, the run it belongs to and the cluster's
Secret and service account; `JobTarget.of_task` builds it from a pipeline task's
parameters.

Only `get` is polled (no list or watch), so a launcher's Role needs create, get and
delete on its resource, in its namespace only (manifests/).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from resumo.config import ClusterConfig, GpuConfig, validate
from resumo.errors import ResumoError


@dataclass(frozen=True)
class JobTarget:
    """Where and as what a launched job runs, beyond its own section (tune.katib, train.trainjob)."""

    gpu: GpuConfig = field(default_factory=GpuConfig)  # each pod's request (the pipeline's s9_gpu_* parameters, else cluster.gpu)
    image: str | None = None  # the train image, unless the section names its own; None: the section must
    run_id: str | None = None  # the pipeline run: names the object, so a retry meets it; None: a fresh name
    cluster: ClusterConfig = field(default_factory=ClusterConfig)  # the S3 Secret and service account its pods get

    @classmethod
    def of_task(cls, inputs: tuple, gpu: dict, image: str, s3_secret: str, service_account: str) -> JobTarget:
        """A pipeline task's target: its run id a key of the task's `inputs` and `gpu` (the same on every retry, and no
        cache miss: resumo.checkpoints.inputs_key); "" for the service account is none."""
        from resumo import checkpoints

        run_id = checkpoints.inputs_key(*inputs, gpu)
        cluster = validate(ClusterConfig, {"secrets": {"s3": s3_secret}, "service_account": service_account or None})
        return cls(validate(GpuConfig, gpu), image, run_id, cluster)

log = logging.getLogger(__name__)

# Which pipeline run an object belongs to: a retried launcher adopts only its own run's.
RUN_ID_ANNOTATION = "resumo.dev/pipeline-run-id"
# Consecutive failed status reads tolerated while waiting: an API server restart
# or a dropped connection during hours of waiting must not lose the object.
MAX_READ_ERRORS = 5


@dataclass(frozen=True)
class Kind:
    """One custom resource, as a launcher creates, waits on and deletes it, and the words its messages use."""

    group: str
    version: str
    plural: str
    kind: str
    label: str  # how messages name one: "Katib Experiment", "TrainJob"
    stage: str  # the stage whose log lines these are: "tune", "train"
    error: type[ResumoError]  # what the launcher raises
    done: str  # the condition type that ends the wait with the status
    failed: str  # the condition type that ends it with `error`
    state: Callable[[dict], str | None]  # a short state of a status, logged when it changes (None: nothing to say yet)
    progress: Callable[[dict], str]  # more about a status, for the log and the timeout ("" for nothing)
    failure: Callable[[dict], str]  # what a failed status says beyond its condition ("" for nothing)
    inspect: str  # the command that shows why one failed, formatted with namespace and name
    operator: str  # what serves the resource: "Katib", "Kubeflow Trainer"
    rbac: str  # where the launcher's Role is
    name_prefix: str  # the setting that names the objects: "tune.katib.name_prefix"
    timeout_hint: str  # what to do when the wait timed out
    deleted_note: str  # what deleting one leaves behind

    def named(self, name: str, namespace: str) -> str:
        return f"{self.label} {namespace}/{name}"


def mark_run(body: dict, run_id: str | None) -> dict:
    """`body` annotated with the pipeline run it belongs to (nothing without a run id)."""
    if run_id:
        body["metadata"].setdefault("annotations", {})[RUN_ID_ANNOTATION] = run_id
    return body


def run_of(obj: dict) -> str | None:
    return (obj.get("metadata", {}).get("annotations") or {}).get(RUN_ID_ANNOTATION)


def client(kind: Kind):
    """An ApiClient from the pod's service account, else from ~/.kube/config (KUBECONFIG); `kind.error` without either."""
    from kubernetes import client as k8s
    from kubernetes import config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        try:
            # KUBECONFIG read now, not when the kubernetes package was imported.
            config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))
        except (config.ConfigException, OSError) as err:
            raise kind.error(f"no Kubernetes credentials: run in a pod with a service account, or set KUBECONFIG ({err})") from None
    return k8s.ApiClient()


def own_namespace() -> str:
    """The namespace of this pod's service account; `default` off-cluster."""
    path = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    return path.read_text().strip() if path.is_file() else "default"


def launch(kind: Kind, body: dict, api_client, *, timeout_s: float, poll_s: float, delete: bool, summary: str = "") -> dict:
    """Create `body` (or adopt this run's, on a retry) and wait for it; its final status. Deleted afterwards, whatever the outcome, if `delete`."""
    from kubernetes import client as k8s

    api = k8s.CustomObjectsApi(api_client)
    name, namespace = body["metadata"]["name"], body["metadata"]["namespace"]
    if create_or_adopt(kind, api, body):
        log.info("%s: created %s%s", kind.stage, kind.named(name, namespace), f" ({summary})" if summary else "")
    try:
        return wait(kind, api, name, namespace, timeout_s=timeout_s, poll_s=poll_s)
    finally:
        if delete:
            remove(kind, api, name, namespace)


def create_or_adopt(kind: Kind, api, body: dict) -> bool:
    """Create `body`: True. On HTTP 409, an object of that name exists: if it carries this run's
    annotation (a retried task whose first attempt created it) adopt it, False; else `kind.error`."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    name, namespace, run_id = body["metadata"]["name"], body["metadata"]["namespace"], run_of(body)
    what = f"create {kind.kind} {namespace}/{name}"
    try:
        api.create_namespaced_custom_object(kind.group, kind.version, namespace, kind.plural, body)
        return True
    except ApiException as err:
        if err.status != 409 or run_id is None:
            raise api_error(kind, err, what) from None
    except HTTPError as err:
        raise kind.error(f"cannot {what}: the Kubernetes API is unreachable ({err})") from None
    existing = _call(kind, api.get_namespaced_custom_object, kind.group, kind.version, namespace, kind.plural, name, what=f"read {kind.kind} {namespace}/{name}")
    if run_of(existing) != run_id:
        raise kind.error(
            f"cannot {what}: {_a(kind.kind)} of that name belongs to run {run_of(existing)!r}, not {run_id!r}; "
            f"delete it, or set {kind.name_prefix} to another prefix"
        )
    log.info("%s: %s exists from an earlier attempt of run %s; waiting on it instead of launching again", kind.stage, kind.named(name, namespace), run_id)
    return False


def wait(kind: Kind, api, name: str, namespace: str, *, timeout_s: float, poll_s: float) -> dict:
    """Read the object until its `kind.done` condition is True (its status), or `kind.failed` is, or `timeout_s` passed (`kind.error`)."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    what = kind.named(name, namespace)
    deadline = time.monotonic() + timeout_s
    last, errors, status = None, 0, {}
    while True:
        try:
            status = api.get_namespaced_custom_object(kind.group, kind.version, namespace, kind.plural, name).get("status") or {}
            errors = 0
        except (ApiException, HTTPError) as err:
            code = getattr(err, "status", None)
            if code == 404:
                raise kind.error(f"{what} disappeared while the launcher waited for it (deleted?)") from None
            if isinstance(err, ApiException) and code is not None and code < 500 and code != 429:
                raise api_error(kind, err, f"read {kind.kind} {namespace}/{name}") from None
            errors += 1
            reason = f"HTTP {err.status} {err.reason}" if isinstance(err, ApiException) else str(err)
            if errors > MAX_READ_ERRORS:
                raise kind.error(f"cannot read {kind.kind} {namespace}/{name}: {errors} reads in a row failed ({reason}); it may still be running") from None
            log.warning("%s: reading %s failed (%s); retrying", kind.stage, what, reason)
        else:
            state = kind.state(status)
            if state is not None and state != last:
                last = state
                progress = kind.progress(status)
                log.info("%s: %s %s%s", kind.stage, what, state, f": {progress}" if progress else "")
            if is_true(status, kind.done):
                return status
            if is_true(status, kind.failed):
                failed, detail = condition(status, kind.failed), kind.failure(status)
                raise kind.error(
                    f"{what} failed: {failed.get('reason', '?')}: {failed.get('message', '')}{f' ({detail})' if detail else ''}; "
                    f"see `{kind.inspect.format(namespace=namespace, name=name)}`"
                )
        if time.monotonic() >= deadline:
            progress = kind.progress(status)
            raise kind.error(f"{what} did not finish within {timeout_s:g} s (last: {last or 'none'}{f', {progress}' if progress else ''}); {kind.timeout_hint}")
        time.sleep(poll_s)


def api_error(kind: Kind, err, what: str) -> ResumoError:
    """The API server's refusal as one line, with a hint for the usual causes."""
    hints = {
        401: "the credentials were refused",
        403: f"the service account lacks RBAC: it needs create/get/delete on {kind.plural}.{kind.group} in this namespace (see {kind.rbac})",
        404: f"not found: is {kind.operator} installed (CRD {kind.plural}.{kind.group}/{kind.version}) and does the namespace exist?",
        409: f"{_a(kind.kind)} of that name exists already; launch again for a new name, or give the run id it was made for",
    }
    try:
        reason = json.loads(err.body).get("message", "")
    except (TypeError, ValueError, AttributeError):
        reason = str(err.reason)
    return kind.error(f"cannot {what}: HTTP {err.status} {hints.get(err.status, '')} ({reason})".replace("  ", " "))


def remove(kind: Kind, api, name: str, namespace: str) -> None:
    """Delete the object; one already gone is fine, another failure is a warning (the launcher's result stands)."""
    from kubernetes.client.exceptions import ApiException

    try:
        api.delete_namespaced_custom_object(kind.group, kind.version, namespace, kind.plural, name)
        log.info("%s: deleted %s (%s)", kind.stage, kind.named(name, namespace), kind.deleted_note)
    except ApiException as err:
        if err.status != 404:
            log.warning("%s: could not delete %s: %s", kind.stage, kind.named(name, namespace), api_error(kind, err, "delete it"))


def condition(status: dict, kind: str) -> dict:
    return next((c for c in status.get("conditions") or [] if c.get("type") == kind), {})


def is_true(status: dict, kind: str) -> bool:
    return condition(status, kind).get("status") == "True"


def true_conditions(status: dict) -> list[str]:
    """The types of the conditions that are True, in the order the controller wrote them."""
    return [c["type"] for c in status.get("conditions") or [] if c.get("status") == "True"]


def to_yaml(obj: dict) -> str:
    """YAML for people: multi-line strings (trial and node scripts) as literal blocks."""
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper, value: str):
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)

    Dumper.add_representer(str, text)
    return yaml.dump(obj, Dumper=Dumper, sort_keys=False, allow_unicode=True, width=1000)


def _call(kind: Kind, method, *args, what: str):
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        return method(*args)
    except ApiException as err:
        raise api_error(kind, err, what) from None
    except HTTPError as err:
        raise kind.error(f"cannot {what}: the Kubernetes API is unreachable ({err})") from None


def _a(noun: str) -> str:
    return f"{'an' if noun[0] in 'AEIOU' else 'a'} {noun}"
