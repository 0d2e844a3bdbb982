"""A Kubeflow Pipelines v2beta1 REST API on 127.0.0.1, for the real `kfp.Client`.

It implements the endpoints `resumo submit|runs|schedule` use (healthz, pipeline
upload and versions, experiments, runs, recurring runs), answers in the API's
JSON shapes, refuses what the real API server refuses (a spec that is not a
pipeline, unknown run parameters, a cron that is not six fields, max
concurrency outside [1, 10]) and records every request for assertions.
"""

from __future__ import annotations

import email.parser
import itertools
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlparse

import yaml

from tests.servers.loopback import LoopbackHTTPServer, send_json

PREFIX = "/apis/v2beta1"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    body: object
    headers: dict[str, str]  # names lower-cased


@dataclass
class KfpState:
    pipelines: dict[str, dict] = field(default_factory=dict)
    versions: dict[str, dict] = field(default_factory=dict)  # version id -> version (with its spec)
    experiments: dict[str, dict] = field(default_factory=dict)
    runs: dict[str, dict] = field(default_factory=dict)
    recurring_runs: dict[str, dict] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    # The states a run reports on successive GETs, the last one repeated: a run that progresses.
    run_states: list[str] = field(default_factory=lambda: ["PENDING", "RUNNING", "RUNNING", "SUCCEEDED"])
    _gets: dict[str, itertools.count] = field(default_factory=dict)

    def of(self, method: str, path_suffix: str = "") -> list[Request]:
        return [r for r in self.requests if r.method == method and r.path.endswith(path_suffix)]


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _new_id() -> str:
    return str(uuid.uuid4())


def _filter_value(query: dict[str, str], key: str = "display_name") -> str | None:
    if not query.get("filter"):
        return None
    for predicate in json.loads(query["filter"]).get("predicates", []):
        if predicate.get("key") == key and predicate.get("operation") == "EQUALS":
            return predicate.get("stringValue", predicate.get("string_value"))
    return None


def _pipeline_spec(raw: bytes) -> dict:
    """What the API server checks of an upload: a YAML pipeline spec with a name and a root DAG."""
    try:
        docs = list(yaml.safe_load_all(raw))
    except yaml.YAMLError as err:
        raise ApiError(400, f"invalid pipeline spec: {err}") from None
    spec = docs[0] if docs else None
    if not isinstance(spec, dict) or not spec.get("pipelineInfo", {}).get("name") or "dag" not in spec.get("root", {}):
        raise ApiError(400, "invalid pipeline spec: no pipelineInfo.name or root.dag")
    return spec


class KfpHandler(BaseHTTPRequestHandler):
    state: KfpState  # set on the subclass made per server

    def log_message(self, *args):  # quiet test output
        pass

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def do_DELETE(self):
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        url = urlparse(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = self._body(raw)
        self.state.requests.append(Request(method, url.path, query, body, {k.lower(): v for k, v in self.headers.items()}))
        try:
            status, payload = 200, self._route(method, url.path.removeprefix(PREFIX), query, body)
        except ApiError as err:
            status, payload = err.status, {"error": err.message, "code": 3 if err.status == 400 else 5, "message": err.message}
        send_json(self, status, payload)

    def _body(self, raw: bytes):
        content_type = self.headers.get("Content-Type", "")
        if content_type.startswith("multipart/form-data"):
            message = email.parser.BytesParser().parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
            return {part.get_param("name", header="content-disposition"): part.get_payload(decode=True) for part in message.get_payload()}
        return json.loads(raw) if raw else None

    def _route(self, method: str, path: str, query: dict, body) -> dict:
        parts = path.strip("/").split("/")
        s = self.state
        match method, parts:
            case "GET", ["healthz"]:
                return {"multi_user": False, "pipeline_store": "database"}
            case "GET", ["pipelines"]:
                name = _filter_value(query)
                return {"pipelines": [p for p in s.pipelines.values() if name is None or p["display_name"] == name]}
            case "POST", ["pipelines", "upload"]:
                return self._upload(query, body)
            case "POST", ["pipelines", "upload_version"]:
                return self._upload_version(query, body)
            case "GET", ["pipelines", pipeline_id, "versions"]:
                versions = sorted((v for v in s.versions.values() if v["pipeline_id"] == pipeline_id), key=lambda v: v["created_at"], reverse=True)
                return {"pipeline_versions": [_public(v) for v in versions[: int(query.get("page_size", 10))]]}
            case "GET", ["experiments"]:
                name = _filter_value(query)
                found = [e for e in s.experiments.values() if name is None or e["display_name"] == name]
                return {"experiments": found, "total_size": len(found)}
            case "POST", ["experiments"]:
                if not body.get("display_name"):
                    raise ApiError(400, "experiment display_name is empty")
                experiment = {"experiment_id": _new_id(), "display_name": body["display_name"], "created_at": _now(), "storage_state": "AVAILABLE"}
                s.experiments[experiment["experiment_id"]] = experiment
                return experiment
            case "POST", ["runs"]:
                return self._create_run(body)
            case "GET", ["runs"]:
                runs = [self._progress(r) for r in s.runs.values() if query.get("experiment_id") in (None, r["experiment_id"])]
                runs.sort(key=lambda r: r["created_at"], reverse=query.get("sort_by", "").endswith("desc"))
                return {"runs": runs[: int(query.get("page_size", 10))], "total_size": len(runs)}
            case "GET", ["runs", run_id]:
                if run_id not in s.runs:
                    raise ApiError(404, f"run {run_id} not found")
                return self._progress(s.runs[run_id], advance=True)
            case "POST", ["recurringruns"]:
                return self._create_recurring_run(body)
            case "GET", ["recurringruns"]:
                found = [r for r in s.recurring_runs.values() if query.get("experiment_id") in (None, r["experiment_id"])]
                return {"recurringRuns": found, "total_size": len(found)}
            case "DELETE", ["recurringruns", recurring_run_id]:
                if s.recurring_runs.pop(recurring_run_id, None) is None:
                    raise ApiError(404, f"recurring run {recurring_run_id} not found")
                return {}
        raise ApiError(404, f"{method} {path} is not implemented here")

    def _upload(self, query: dict, body: dict) -> dict:
        spec = _pipeline_spec(body.get("uploadfile", b""))
        name = query.get("name") or query.get("display_name")
        if not name:
            raise ApiError(400, "pipeline name is empty")
        if any(p["display_name"] == name for p in self.state.pipelines.values()):
            raise ApiError(409, f"pipeline {name} already exists")
        pipeline = {"pipeline_id": _new_id(), "display_name": name, "name": name, "created_at": _now()}
        self.state.pipelines[pipeline["pipeline_id"]] = pipeline
        self._add_version(pipeline["pipeline_id"], name, spec)
        return pipeline

    def _upload_version(self, query: dict, body: dict) -> dict:
        spec = _pipeline_spec(body.get("uploadfile", b""))
        if query.get("pipelineid") not in self.state.pipelines:
            raise ApiError(404, f"pipeline {query.get('pipelineid')} not found")
        return _public(self._add_version(query["pipelineid"], query.get("name") or query.get("display_name") or "", spec))

    def _add_version(self, pipeline_id: str, name: str, spec: dict) -> dict:
        version = {"pipeline_id": pipeline_id, "pipeline_version_id": _new_id(), "display_name": name, "name": name, "created_at": _now(), "spec": spec}
        self.state.versions[version["pipeline_version_id"]] = version
        return version

    def _spec_of(self, body: dict) -> dict:
        if body.get("pipeline_spec"):
            return body["pipeline_spec"]
        ref = body.get("pipeline_version_reference") or {}
        version = self.state.versions.get(ref.get("pipeline_version_id"))
        if version is None or version["pipeline_id"] != ref.get("pipeline_id"):
            raise ApiError(400, f"no pipeline spec and no existing pipeline version in {ref}")
        return version["spec"]

    def _check_parameters(self, body: dict) -> None:
        declared = self._spec_of(body)["root"].get("inputDefinitions", {}).get("parameters", {})
        unknown = set((body.get("runtime_config") or {}).get("parameters") or {}) - set(declared)
        if unknown:
            raise ApiError(400, f"unrecognized input parameters: {sorted(unknown)}")

    def _create_run(self, body: dict) -> dict:
        if body.get("experiment_id") not in self.state.experiments:
            raise ApiError(400, f"experiment {body.get('experiment_id')} not found")
        self._check_parameters(body)
        run = {**body, "run_id": _new_id(), "created_at": _now(), "state": "PENDING", "storage_state": "AVAILABLE"}
        self.state.runs[run["run_id"]] = run
        return run

    def _progress(self, run: dict, advance: bool = False) -> dict:
        counter = self.state._gets.setdefault(run["run_id"], itertools.count())
        n = next(counter) if advance else 0
        state = self.state.run_states[min(n, len(self.state.run_states) - 1)]
        tasks = [{"display_name": "scrape", "state": "SUCCEEDED" if state == "SUCCEEDED" or n > 1 else state}]
        return {**run, "state": state, "run_details": {"task_details": tasks}}

    def _create_recurring_run(self, body: dict) -> dict:
        cron = ((body.get("trigger") or {}).get("cron_schedule") or {}).get("cron", "")
        if len(cron.split()) != 6:
            raise ApiError(400, f"invalid cron {cron!r}: expected six fields")
        if not 1 <= int(body.get("max_concurrency") or 0) <= 10:
            raise ApiError(400, "max concurrency of the recurring run should be within [1, 10]")
        if body.get("experiment_id") not in self.state.experiments:
            raise ApiError(400, f"experiment {body.get('experiment_id')} not found")
        self._check_parameters(body)
        recurring = {**body, "recurring_run_id": _new_id(), "created_at": _now(), "status": "ENABLED"}
        self.state.recurring_runs[recurring["recurring_run_id"]] = recurring
        return recurring


def _public(version: dict) -> dict:
    return {k: v for k, v in version.items() if k != "spec"}


class KfpApiServer:
    """`with KfpApiServer() as api:` serves on 127.0.0.1:<free port>; `api.url`, `api.state`."""

    def __init__(self):
        self.state = KfpState()
        handler = type("Handler", (KfpHandler,), {"state": self.state})
        self._server = LoopbackHTTPServer(handler)
        self.url = self._server.url

    def __enter__(self) -> KfpApiServer:
        self._server.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._server.__exit__(*exc)
