"""A Kubernetes API server on 127.0.0.1 with the Katib Experiment endpoints, and the Katib schema.

It answers the few calls `resumo.katib` makes, in the API server's shapes
(objects with metadata.uid/resourceVersion, `Status` objects on errors), and
plays each created Experiment through Katib's conditions, one step per read:

    succeeded: Created -> Running -> Succeeded (with status.currentOptimalTrial)
    failed:    Created -> Running -> Failed (max failed trials reached)
    stuck:     Created -> Running, forever (the launcher's timeout)
    flaky:     as succeeded, but the second read answers 503 (a restarting API server)
    deleted:   Created -> Running -> gone (someone deleted it)

`experiment_validator(schemas)` builds a JSON Schema from the Katib CRD and the
Katib API's swagger definitions in ../shared/schemas; given to the server it
refuses invalid Experiments as Katib's validating webhook would.
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

PATH = re.compile(r"^/apis/kubeflow\.org/v1beta1/namespaces/(?P<ns>[^/]+)/experiments(?:/(?P<name>[^/?]+))?/?(?:\?.*)?$")
PLAYS = ("succeeded", "failed", "stuck", "flaky", "deleted")
BEST_METRICS = {"rougeLsum": "0.4123", "eval_loss": "1.2345"}


class KubeAPI:
    """The server's state: experiments by (namespace, name), the reads each has had, every request."""

    def __init__(self, play: str = "succeeded", validator=None):
        assert play in PLAYS, f"unknown play {play!r}; one of {PLAYS}"
        self.play = play
        self.validator = validator
        self.experiments: dict[tuple[str, str], dict] = {}
        self.reads: dict[tuple[str, str], int] = {}
        self.flaked: set[tuple[str, str]] = set()
        self.requests: list[tuple[str, str, dict | None]] = []
        self.lock = threading.Lock()
        self.server = LoopbackHTTPServer(_handler(self))
        self.url = self.server.url

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

    def create(self, ns: str, body: dict) -> tuple[int, dict]:
        name = (body.get("metadata") or {}).get("name")
        if not name:
            return _status(422, "Invalid", "metadata.name: Required value")
        if body["metadata"].get("namespace", ns) != ns:
            return _status(400, "BadRequest", "the namespace of the provided object does not match the namespace sent on the request")
        if (ns, name) in self.experiments:
            return _status(409, "AlreadyExists", f'experiments.kubeflow.org "{name}" already exists')
        if self.validator is not None:
            errors = self.validator(body)
            if errors:
                return _status(400, "BadRequest", f'admission webhook "validator.experiment.katib.kubeflow.org" denied the request: {errors[0]}')
        obj = json.loads(json.dumps(body))
        obj["metadata"].update(namespace=ns, uid=str(uuid.uuid4()), resourceVersion="1", creationTimestamp=_now(), generation=1)
        self.experiments[(ns, name)] = obj
        self.reads[(ns, name)] = 0
        return 201, obj

    def get(self, ns: str, name: str) -> tuple[int, dict]:
        obj = self.experiments.get((ns, name))
        if obj is None:
            return _status(404, "NotFound", f'experiments.kubeflow.org "{name}" not found')
        step = self.reads[(ns, name)]
        if self.play == "flaky" and step == 1 and (ns, name) not in self.flaked:
            self.flaked.add((ns, name))
            return _status(503, "ServiceUnavailable", "the server is currently unable to handle the request")
        self.reads[(ns, name)] = step + 1
        if self.play == "deleted" and step == 2:
            del self.experiments[(ns, name)]
            return _status(404, "NotFound", f'experiments.kubeflow.org "{name}" not found')
        obj["status"] = _status_at(obj, self.play, step)
        obj["metadata"]["resourceVersion"] = str(step + 2)
        return 200, obj

    def delete(self, ns: str, name: str) -> tuple[int, dict]:
        if self.experiments.pop((ns, name), None) is None:
            return _status(404, "NotFound", f'experiments.kubeflow.org "{name}" not found')
        return 200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": {"name": name, "group": "kubeflow.org", "kind": "experiments"}}


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
                if match is None:
                    code, payload = _status(404, "NotFound", "the server could not find the requested resource")
                elif method == "POST" and not match["name"]:
                    code, payload = api.create(match["ns"], body or {})
                elif method == "GET" and match["name"]:
                    code, payload = api.get(match["ns"], match["name"])
                elif method == "DELETE" and match["name"]:
                    code, payload = api.delete(match["ns"], match["name"])
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


def schemas_dir() -> Path:
    """../shared/schemas beside the repository (as in CI); RESUMO_SCHEMAS points elsewhere (a worktree)."""
    import os

    root = Path(__file__).resolve().parents[2]
    path = Path(os.environ.get("RESUMO_SCHEMAS") or root.parent / "shared" / "schemas")
    if not (path / "katib-v1beta1-swagger.json").is_file():
        raise FileNotFoundError(f"the Katib schemas are not in {path}; the repository expects ../shared/schemas beside it (or set RESUMO_SCHEMAS)")
    return path
