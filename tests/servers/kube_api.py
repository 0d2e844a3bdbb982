"""A Kubernetes API server on 127.0.0.1 with the Katib Experiment and Trainer TrainJob endpoints, and their schemas.

It answers the few calls `resumo.katib` and `resumo.trainjob` make, in the API
server's shapes (objects with metadata.uid/resourceVersion, `Status` objects on
errors), and plays each created object through its controller's conditions,
one step per read:

    succeeded: Created -> Running -> Succeeded (Katib, with status.currentOptimalTrial)
                                  -> Complete (TrainJob)
    failed:    Created -> Running -> Failed (max failed trials reached; a TrainJob's node job failed)
    stuck:     Created -> Running, forever (the launcher's timeout)
    flaky:     as succeeded, but the second read answers 503 (a restarting API server)
    deleted:   Created -> Running -> gone (someone deleted it)

`experiment_validator(schemas)` builds a JSON Schema from the Katib CRD and the
Katib API's swagger definitions in ../shared/schemas; given to the server it
refuses invalid Experiments as Katib's validating webhook would.
`trainjob_validator(schemas)` does the same for TrainJobs from Trainer's CRD.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import yaml

from tests.servers.loopback import LoopbackHTTPServer, send_json

PATH = re.compile(
    r"^/apis/(?P<api>kubeflow\.org/v1beta1|trainer\.kubeflow\.org/v1alpha1)/namespaces/(?P<ns>[^/]+)/(?P<plural>experiments|trainjobs)(?:/(?P<name>[^/?]+))?/?(?:\?.*)?$"
)
API_OF = {"experiments": "kubeflow.org/v1beta1", "trainjobs": "trainer.kubeflow.org/v1alpha1"}
GROUP_OF = {"experiments": "experiments.kubeflow.org", "trainjobs": "trainjobs.trainer.kubeflow.org"}
PLAYS = ("succeeded", "failed", "stuck", "flaky", "deleted")
BEST_METRICS = {"rougeLsum": "0.4123", "eval_loss": "1.2345"}


class KubeAPI:
    """The server's state: objects by (plural, namespace, name), the reads each has had, every request."""

    def __init__(self, play: str = "succeeded", validator=None, trainjob_validator=None):
        assert play in PLAYS, f"unknown play {play!r}; one of {PLAYS}"
        self.play = play
        self.validators = {"experiments": validator, "trainjobs": trainjob_validator}
        self.objects: dict[str, dict[tuple[str, str], dict]] = {"experiments": {}, "trainjobs": {}}
        self.reads: dict[tuple[str, str, str], int] = {}
        self.flaked: set[tuple[str, str, str]] = set()
        self.requests: list[tuple[str, str, dict | None]] = []
        self.lock = threading.Lock()
        self.server = LoopbackHTTPServer(_handler(self))
        self.url = self.server.url

    @property
    def experiments(self) -> dict[tuple[str, str], dict]:
        return self.objects["experiments"]

    @property
    def trainjobs(self) -> dict[tuple[str, str], dict]:
        return self.objects["trainjobs"]

    def __enter__(self) -> KubeAPI:
        self.server.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.server.__exit__(*exc)

    def client(self):
        """The real kubernetes ApiClient, pointed at this server."""
        from kubernetes import client

        configuration = client.Configuration()
        configuration.host = self.url
        return client.ApiClient(configuration)

    # --- the API -------------------------------------------------------------

    def create(self, plural: str, ns: str, body: dict) -> tuple[int, dict]:
        name = (body.get("metadata") or {}).get("name")
        if not name:
            return _status(422, "Invalid", "metadata.name: Required value")
        if body["metadata"].get("namespace", ns) != ns:
            return _status(400, "BadRequest", "the namespace of the provided object does not match the namespace sent on the request")
        if (ns, name) in self.objects[plural]:
            return _status(409, "AlreadyExists", f'{GROUP_OF[plural]} "{name}" already exists')
        validator = self.validators[plural]
        if validator is not None:
            errors = validator(body)
            if errors:
                webhook = "validator.experiment.katib.kubeflow.org" if plural == "experiments" else "validator.trainjob.trainer.kubeflow.org"
                return _status(400 if plural == "experiments" else 422, "BadRequest", f'admission webhook "{webhook}" denied the request: {errors[0]}')
        obj = json.loads(json.dumps(body))
        obj["metadata"].update(namespace=ns, uid=str(uuid.uuid4()), resourceVersion="1", creationTimestamp=_now(), generation=1)
        self.objects[plural][(ns, name)] = obj
        self.reads[(plural, ns, name)] = 0
        return 201, obj

    def get(self, plural: str, ns: str, name: str) -> tuple[int, dict]:
        obj = self.objects[plural].get((ns, name))
        if obj is None:
            return _status(404, "NotFound", f'{GROUP_OF[plural]} "{name}" not found')
        key = (plural, ns, name)
        step = self.reads[key]
        if self.play == "flaky" and step == 1 and key not in self.flaked:
            self.flaked.add(key)
            return _status(503, "ServiceUnavailable", "the server is currently unable to handle the request")
        self.reads[key] = step + 1
        if self.play == "deleted" and step == 2:
            del self.objects[plural][(ns, name)]
            return _status(404, "NotFound", f'{GROUP_OF[plural]} "{name}" not found')
        obj["status"] = (_status_at if plural == "experiments" else _trainjob_status_at)(obj, self.play, step)
        obj["metadata"]["resourceVersion"] = str(step + 2)
        return 200, obj

    def delete(self, plural: str, ns: str, name: str) -> tuple[int, dict]:
        if self.objects[plural].pop((ns, name), None) is None:
            return _status(404, "NotFound", f'{GROUP_OF[plural]} "{name}" not found')
        group, kind = GROUP_OF[plural].split(".", 1)[1], plural
        return 200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": {"name": name, "group": group, "kind": kind}}


def _handler(api: KubeAPI):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep test output clean
            pass

        def _route(self, method: str) -> None:
            match = PATH.match(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            with api.lock:
                api.requests.append((method, self.path, body))
                if match is None or API_OF[match["plural"]] != match["api"]:
                    code, payload = _status(404, "NotFound", "the server could not find the requested resource")
                elif method == "POST" and not match["name"]:
                    code, payload = api.create(match["plural"], match["ns"], body or {})
                elif method == "GET" and match["name"]:
                    code, payload = api.get(match["plural"], match["ns"], match["name"])
                elif method == "DELETE" and match["name"]:
                    code, payload = api.delete(match["plural"], match["ns"], match["name"])
                else:
                    code, payload = _status(405, "MethodNotAllowed", f"{method} is not supported here")
            send_json(self, code, payload)

        def do_GET(self) -> None:
            self._route("GET")

        def do_POST(self) -> None:
            self._route("POST")

        def do_DELETE(self) -> None:
            self._route("DELETE")

    return Handler


def _status(code: int, reason: str, message: str) -> tuple[int, dict]:
    return code, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _condition(kind: str, status: str, reason: str, message: str) -> dict:
    return {"type": kind, "status": status, "reason": reason, "message": message, "lastUpdateTime": _now(), "lastTransitionTime": _now()}


def _status_at(obj: dict, play: str, step: int) -> dict:
    """Katib's status of the Experiment after `step` reads, in the controller's shapes and words."""
    name, spec = obj["metadata"]["name"], obj["spec"]
    created = _condition("Created", "True", "ExperimentCreated", "Experiment is created")
    if step == 0:
        return {"startTime": _now(), "conditions": [created]}
    running = _condition("Running", "True", "ExperimentRunning", "Experiment is running")
    trials = [f"{name}-{i:08x}" for i in range(spec.get("parallelTrialCount", 3))]
    if step == 1 or play == "stuck":
        return {"conditions": [created, running], "trials": len(trials), "trialsRunning": len(trials), "runningTrialList": trials}
    running["status"] = "False"
    if play == "failed":
        failed = _condition("Failed", "True", "ExperimentFailed", "Experiment has failed because max failed count has reached")
        return {"conditions": [created, running, failed], "trials": len(trials), "trialsFailed": len(trials), "failedTrialList": trials, "completionTime": _now()}
    succeeded = _condition("Succeeded", "True", "ExperimentMaxTrialsReached", "Experiment has succeeded because max trial count has reached")
    return {
        "conditions": [created, running, succeeded],
        "completionTime": _now(),
        "trials": len(trials),
        "trialsSucceeded": len(trials),
        "succeededTrialList": trials,
        "currentOptimalTrial": {
            "bestTrialName": trials[-1],
            "parameterAssignments": [{"name": p["name"], "value": _pick(p)} for p in spec["parameters"]],
            "observation": {"metrics": [{"name": n, "latest": v, "max": v, "min": v} for n, v in BEST_METRICS.items()]},
        },
    }


def _trainjob_status_at(obj: dict, play: str, step: int) -> dict:
    """Trainer's status of the TrainJob after `step` reads: the JobSet's node job, then its outcome."""
    nodes = obj["spec"]["trainer"].get("numNodes", 1)
    created = _condition("Created", "True", "JobsCreationSucceeded", "Succeeded to create Jobs")
    if step == 0:
        return {"conditions": [created]}
    node = {"name": "node", "active": 1, "ready": 1, "succeeded": 0, "failed": 0, "suspended": 0}
    if step == 1 or play == "stuck":
        return {"conditions": [created], "jobsStatus": [node]}
    if play == "failed":
        failed = _condition("Failed", "True", "FailedJobs", f"jobset failed: ReplicatedJob node failed ({nodes} node(s); a rank exited with code 1)")
        return {"conditions": [created, failed], "jobsStatus": [{**node, "active": 0, "ready": 0, "failed": 1}]}
    complete = _condition("Complete", "True", "JobsCompleted", "jobset completed successfully")
    return {"conditions": [created, complete], "jobsStatus": [{**node, "active": 0, "ready": 0, "succeeded": 1}]}


def _pick(parameter: dict) -> str:
    """A value Katib could have suggested: the last listed one, or the top of the range."""
    space = parameter["feasibleSpace"]
    return space["list"][-1] if "list" in space else space["max"]


# --- the Katib schema -----------------------------------------------------------

# Enumerations Katib's Go types hold as constants, which the swagger does not carry
# (pkg/apis/controller/{common,experiments}/v1beta1).
KATIB_ENUMS = {
    "v1beta1.ParameterSpec": {"parameterType": ["int", "double", "categorical", "discrete"]},
    "v1beta1.FeasibleSpace": {"distribution": ["uniform", "logUniform", "normal", "logNormal"]},
    "v1beta1.ObjectiveSpec": {"type": ["minimize", "maximize"]},
    "v1beta1.CollectorSpec": {"kind": ["StdOut", "File", "TensorFlowEvent", "PrometheusMetric", "Custom", "None"]},
    "v1beta1.MetricStrategy": {"value": ["min", "max", "latest"]},
}
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


def experiment_schema(schemas: Path) -> dict:
    """A JSON Schema of a Katib Experiment: the CRD's group/version/kind and schema, the swagger's field types.

    The CRD preserves unknown fields, so the API server itself checks nothing;
    here the Katib definitions are closed (an unknown or misspelt field is an
    error, where Katib would silently drop it) and carry Katib's enumerations.
    """
    crd = yaml.safe_load((schemas / "katib-v1beta1-crd-experiment.yaml").read_text())
    swagger = json.loads((schemas / "katib-v1beta1-swagger.json").read_text())
    version = next(v for v in crd["spec"]["versions"] if v.get("storage"))
    definitions = {}
    for name, definition in swagger["definitions"].items():
        definition = json.loads(json.dumps(definition))
        if name.startswith("v1beta1.") and "properties" in definition:
            definition.setdefault("additionalProperties", False)
            for prop, allowed in KATIB_ENUMS.get(name, {}).items():
                definition["properties"][prop]["enum"] = allowed
        definitions[name] = definition
    # Kubernetes types the Katib swagger refers to but does not define.
    definitions["v1.ObjectMeta"] = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "pattern": DNS_SUBDOMAIN, "maxLength": 253},
            "namespace": {"type": "string", "pattern": DNS_LABEL, "maxLength": 63},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    }
    definitions["v1.Time"] = {"type": "string"}
    for name in ("v1.unstructured.Unstructured", "v1.Container", "v1.HTTPGetAction", "v1.ListMeta"):
        definitions[name] = {"type": "object"}
    group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
    return {
        "allOf": [version["schema"]["openAPIV3Schema"], {"$ref": "#/definitions/v1beta1.Experiment"}],
        "properties": {"apiVersion": {"const": f"{group}/{version['name']}"}, "kind": {"const": kind}},
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "definitions": definitions,
    }


def experiment_validator(schemas: Path):
    """A function from an Experiment to its schema errors ("path: message"), none if it is valid."""
    from jsonschema import Draft7Validator

    schema = experiment_schema(schemas)
    Draft7Validator.check_schema(schema)
    validator = Draft7Validator(schema)

    def errors(obj: dict) -> list[str]:
        return [f"{'.'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}" for e in sorted(validator.iter_errors(obj), key=str)]

    return errors


def trainjob_validator(schemas: Path):
    """A function from a TrainJob to its errors against Trainer's CRD openAPIV3Schema ("path: message"), none if valid.

    The CRD is structural, so the API server prunes or refuses what it does not
    know; here an unknown field is an error (`additionalProperties: false` on
    every object that lists its properties), so a misspelt field cannot pass.
    """
    from jsonschema import Draft7Validator

    crd = yaml.safe_load((schemas / "trainer-trainjobs-crd.yaml").read_text())
    version = next(v for v in crd["spec"]["versions"] if v.get("storage"))
    schema = _closed(json.loads(json.dumps(version["schema"]["openAPIV3Schema"])))
    schema["properties"]["apiVersion"] = {"const": f"{crd['spec']['group']}/{version['name']}"}
    schema["properties"]["kind"] = {"const": crd["spec"]["names"]["kind"]}
    schema["properties"]["metadata"] = {
        "type": "object",
        "required": ["name"],
        # TrainJob's own rule (x-kubernetes-validations): a name of at most 63 characters, a DNS-1035 label.
        "properties": {"name": {"type": "string", "pattern": r"^[a-z]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63}, "namespace": {"type": "string", "pattern": DNS_LABEL}},
    }
    schema["required"] = ["apiVersion", "kind", "metadata", "spec"]
    Draft7Validator.check_schema(schema)
    validator = Draft7Validator(schema)

    def errors(obj: dict) -> list[str]:
        return [f"{'.'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}" for e in sorted(validator.iter_errors(obj), key=str)]

    return errors


def _closed(node):
    if isinstance(node, dict):
        node = {k: _closed(v) for k, v in node.items()}
        if node.get("type") == "object" and "properties" in node and "additionalProperties" not in node and not node.get("x-kubernetes-preserve-unknown-fields"):
            node["additionalProperties"] = False
        return node
    if isinstance(node, list):
        return [_closed(v) for v in node]
    return node


def schemas_dir() -> Path:
    """../shared/schemas beside the repository (as in CI); RESUMO_SCHEMAS points elsewhere (a worktree)."""
    import os

    root = Path(__file__).resolve().parents[2]
    path = Path(os.environ.get("RESUMO_SCHEMAS") or root.parent / "shared" / "schemas")
    if not (path / "katib-v1beta1-swagger.json").is_file():
        raise FileNotFoundError(f"the Katib schemas are not in {path}; the repository expects ../shared/schemas beside it (or set RESUMO_SCHEMAS)")
    return path
