"""Kubeflow Model Registry's REST API on 127.0.0.1, checked against its OpenAPI spec.

It serves the registered model, model version and artifact resources that the
`model-registry` client uses, under both prefixes: `/api/model_registry/v1alpha3`
(the spec in ../shared/schemas, kubeflow/model-registry at bd07139a) and
`/api/model_registry/v1` (what the released 0.3.18 client calls; the same
resources and bodies, see ../shared/schemas/README.md).

Every request is matched to the spec's operation; its query parameters and JSON
body are validated against the operation's schemas, and so is every answer the
server gives, before it is sent. The spec's object schemas are open, so a body
is also closed here (`unevaluatedProperties: false`): a misspelt field is an
error where the real server would drop it. Anything that fails lands in
`.invalid`, which a test asserts is empty, and is answered 400 (request) or 500
(answer).

Like the real server: names are unique per parent (409 on a duplicate), ids are
int64 strings, a `find` that matches nothing is 404, a PATCH replaces
`customProperties` as a whole (the Model Registry UI removes a label by sending
the map without it, opendatahub-io/odh-dashboard#2770), and a list pages with
`pageSize` and `nextPageToken`, where the token after the last page is empty
and an empty token starts again (the client's Pager stops when it sees a token
come round again). With `token` set, a request without `Authorization: Bearer
<token>` is 401.

`fail_next(method, suffix, status, times)` answers the next matching requests
with `status` (a registry restarting mid-registration); `before_next(method,
suffix, action)` runs `action` before the next matching request.
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import yaml

from tests.servers.loopback import LoopbackHTTPServer, send_json

SPEC_PREFIX = "/api/model_registry/v1alpha3"
CLIENT_PREFIX = "/api/model_registry/v1"  # model-registry 0.3.18
SPEC_URI = "urn:kubeflow:model-registry-openapi"


class ModelRegistryServer:
    """The registry's state (registered models, versions, artifacts by id) and every request it saw."""

    def __init__(self, schemas: Path, token: str | None = "test-token", tls: tuple[Path, Path] | None = None):
        self.spec = _SpecValidator(schemas / "model-registry-openapi.yaml")
        self.token = token
        self.models: dict[str, dict] = {}
        self.versions: dict[str, dict] = {}
        self.artifacts: dict[str, dict] = {}
        self.version_artifacts: dict[str, list[str]] = {}
        self.requests: list[tuple[str, str, dict | None]] = []
        self.invalid: list[str] = []
        self.failures: list[list] = []  # [method, path suffix, status, times left]
        self.actions: list[list] = []  # [method, path suffix, callable]
        self._ids = 0
        self.lock = threading.Lock()
        self.server = LoopbackHTTPServer(_handler(self))
        self.url = self.server.url
        if tls is not None:  # (certificate, key) PEM files: HTTPS
            import ssl

            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            self.url = self.url.replace("http://", "https://")

    def __enter__(self) -> ModelRegistryServer:
        self.server.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.server.__exit__(*exc)

    def fail_next(self, method: str, suffix: str, status: int = 503, times: int = 1) -> None:
        self.failures.append([method, suffix, status, times])

    def before_next(self, method: str, suffix: str, action) -> None:
        """Call `action()` once, before the next matching request is served (something else happening meanwhile)."""
        self.actions.append([method, suffix, action])

    def writes(self) -> list[tuple[str, str]]:
        """(method, path without prefix) of every POST and PATCH, in order."""
        return [(m, _strip(p).split("?")[0]) for m, p, _ in self.requests if m in ("POST", "PATCH")]

    # --- the API -------------------------------------------------------------

    def handle(self, method: str, path: str, query: dict[str, str], body: dict | None) -> tuple[int, dict]:
        parts = path.strip("/").split("/")
        if method == "GET" and parts == ["registered_models"]:
            return self._page(list(self.models.values()), query)
        if method == "POST" and parts == ["registered_models"]:
            if any(m["name"] == body["name"] for m in self.models.values()):
                return _error(409, f"registered model {body['name']!r} already exists")
            return 201, self._create(self.models, body, state="LIVE")
        if method == "GET" and parts == ["registered_model"]:
            return self._find(self.models.values(), query)
        if parts[0] == "registered_models" and len(parts) >= 2:
            if parts[1] not in self.models:
                return _error(404, f"no registered model {parts[1]}")
            if len(parts) == 2:
                return self._get_or_patch(self.models, parts[1], method, body)
            if method == "GET" and parts[2] == "versions":
                return self._page([v for v in self.versions.values() if v["registeredModelId"] == parts[1]], query)
        if method == "POST" and parts == ["model_versions"]:
            if body["registeredModelId"] not in self.models:
                return _error(404, f"no registered model {body['registeredModelId']}")
            if any(v["name"] == body["name"] and v["registeredModelId"] == body["registeredModelId"] for v in self.versions.values()):
                return _error(409, f"version {body['name']!r} already exists")
            version = self._create(self.versions, body, state="LIVE")
            self.version_artifacts[version["id"]] = []
            return 201, version
        if method == "GET" and parts == ["model_version"]:
            return self._find(self.versions.values(), query, parent="registeredModelId")
        if method == "GET" and parts == ["model_artifact"]:
            candidates = [self.artifacts[a] for a in self.version_artifacts.get(query.get("parentResourceId", ""), [])] if "parentResourceId" in query else self.artifacts.values()
            return self._find(candidates, query)
        if parts[0] == "model_versions" and len(parts) >= 2:
            if parts[1] not in self.versions:
                return _error(404, f"no model version {parts[1]}")
            if len(parts) == 2:
                return self._get_or_patch(self.versions, parts[1], method, body)
            if parts[2] == "artifacts" and method == "GET":
                return self._page([self.artifacts[a] for a in self.version_artifacts[parts[1]]], query)
            if parts[2] == "artifacts" and method == "POST":
                mine = [self.artifacts[a] for a in self.version_artifacts[parts[1]]]
                if any(a.get("name") == body.get("name") for a in mine):
                    return _error(409, f"artifact {body.get('name')!r} already exists in version {parts[1]}")
                artifact = self._create(self.artifacts, body, state="UNKNOWN")
                self.version_artifacts[parts[1]].append(artifact["id"])
                return 201, artifact
        return _error(404, f"{method} {path} is not served here")

    def _create(self, table: dict[str, dict], body: dict, state: str) -> dict:
        self._ids += 1
        now = str(int(time.time() * 1000))
        obj = {"state": state, "customProperties": {}, **body, "id": str(self._ids), "createTimeSinceEpoch": now, "lastUpdateTimeSinceEpoch": now}
        table[obj["id"]] = obj
        return obj

    def _get_or_patch(self, table: dict[str, dict], id_: str, method: str, body: dict | None) -> tuple[int, dict]:
        if method == "PATCH":
            table[id_].update(body or {})  # customProperties included: replaced, not merged
            table[id_]["lastUpdateTimeSinceEpoch"] = str(int(time.time() * 1000))
        elif method != "GET":
            return _error(405, f"{method} is not allowed here")
        return 200, table[id_]

    def _find(self, candidates, query: dict[str, str], parent: str | None = None) -> tuple[int, dict]:
        if "name" not in query and "externalId" not in query:
            return _error(400, "give name or externalId")
        for obj in candidates:
            if "name" in query and obj.get("name") != query["name"]:
                continue
            if "externalId" in query and obj.get("externalId") != query["externalId"]:
                continue
            if parent and "parentResourceId" in query and obj.get(parent) != query["parentResourceId"]:
                continue
            return 200, obj
        return _error(404, f"no entity matches {query}")

    def _page(self, items: list[dict], query: dict[str, str]) -> tuple[int, dict]:
        size = int(query.get("pageSize") or 100)
        start = int(query.get("nextPageToken") or 0)
        reverse = query.get("sortOrder") == "DESC"
        items = sorted(items, key=lambda o: int(o["id"]), reverse=reverse)
        page = items[start : start + size]
        token = str(start + size) if start + size < len(items) else ""
        return 200, {"items": page, "size": len(page), "pageSize": size, "nextPageToken": token}


def _handler(api: ModelRegistryServer):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep test output clean
            pass

        def _route(self, method: str) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            with api.lock:
                code, payload = self._answer(method, url, raw)
            send_json(self, code, payload)

        def _answer(self, method: str, url, raw: bytes) -> tuple[int, dict]:
            body = json.loads(raw) if raw else None
            api.requests.append((method, self.path, body))
            path = _strip(url.path)
            if path is None:
                return _error(404, f"{url.path} is under neither {SPEC_PREFIX} nor {CLIENT_PREFIX}")
            if api.token is not None and self.headers.get("Authorization") != f"Bearer {api.token}":
                return _error(401, "missing or wrong bearer token")
            for action in [a for a in api.actions if a[0] == method and path.endswith(a[1])][:1]:
                api.actions.remove(action)
                action[2]()
            for failure in api.failures:
                if failure[0] == method and path.endswith(failure[1]) and failure[3] > 0:
                    failure[3] -= 1
                    return _error(failure[2], "the registry is restarting (injected)")
            query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
            operation = api.spec.operation(method, path)
            if operation is None:
                return _error(404, f"{method} {path} is not in the spec")
            errors = api.spec.request_errors(operation, query, body)
            if errors:
                api.invalid += [f"{method} {path}: {e}" for e in errors]
                return _error(400, "; ".join(errors))
            code, payload = api.handle(method, path, query, body)
            errors = api.spec.response_errors(operation, code, payload)
            if errors:
                api.invalid += [f"answer to {method} {path} ({code}): {e}" for e in errors]
                return _error(500, "; ".join(errors))
            return code, payload

        def do_GET(self) -> None:
            self._route("GET")

        def do_POST(self) -> None:
            self._route("POST")

        def do_PATCH(self) -> None:
            self._route("PATCH")

    return Handler


def _strip(path: str) -> str | None:
    for prefix in (SPEC_PREFIX, CLIENT_PREFIX):
        if path.startswith(prefix + "/"):
            return path[len(prefix) :]
    return None


def _error(code: int, message: str) -> tuple[int, dict]:
    return code, {"code": str(code), "message": message}  # the spec's Error schema


# --- the spec ---------------------------------------------------------------


class _SpecValidator:
    """The spec's operations and JSON Schemas, with $refs resolved through `referencing`."""

    def __init__(self, path: Path):
        from referencing import Registry, Resource
        from referencing.jsonschema import DRAFT202012

        self.doc = _with_discriminators(yaml.safe_load(path.read_text()))
        self.registry = Registry().with_resource(SPEC_URI, Resource(self.doc, DRAFT202012))
        self.templates = [
            (re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(p.removeprefix(SPEC_PREFIX))) + "$"), item)
            for p, item in self.doc["paths"].items()
        ]
        self._validators: dict[str, object] = {}

    def operation(self, method: str, path: str) -> dict | None:
        for pattern, item in self.templates:
            if pattern.match(path) and method.lower() in item:
                op = dict(item[method.lower()])
                op["parameters"] = [self._deref(p) for p in item.get("parameters", []) + op.get("parameters", [])]
                return op
        return None

    def request_errors(self, operation: dict, query: dict[str, str], body) -> list[str]:
        errors = []
        params = {p["name"]: p for p in operation["parameters"] if p["in"] == "query"}
        for name, value in query.items():
            if name not in params:
                errors.append(f"query parameter {name!r} is not in the spec")
            else:
                errors += [f"query {name}: {e}" for e in self._errors(params[name]["schema"], value, closed=False)]
        if "requestBody" in operation:
            schema = self._deref(operation["requestBody"])["content"]["application/json"]["schema"]
            errors += [f"body: {e}" for e in self._errors(schema, body, closed=True)]
        elif body is not None:
            errors.append("the operation takes no body")
        return errors

    def response_errors(self, operation: dict, code: int, payload) -> list[str]:
        response = operation["responses"].get(str(code))
        if response is None:
            return [f"status {code} is not a documented answer"]
        schema = self._deref(response)["content"]["application/json"]["schema"]
        return self._errors(schema, payload, closed=True)

    def _deref(self, node: dict) -> dict:
        while "$ref" in node:
            node = self.registry.resolver(SPEC_URI).lookup(node["$ref"]).contents
        return node

    def _errors(self, schema: dict, value, closed: bool) -> list[str]:
        from jsonschema import Draft202012Validator

        key = json.dumps(schema, sort_keys=True) + str(closed)
        if key not in self._validators:
            wrapped = {"$ref": SPEC_URI + schema["$ref"]} if "$ref" in schema else {**schema, "$id": SPEC_URI + "#inline"}
            if closed and "$ref" in schema:
                wrapped["unevaluatedProperties"] = False
            self._validators[key] = Draft202012Validator(wrapped, registry=self.registry)
        validator = self._validators[key]
        return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in validator.iter_errors(value)]


def _with_discriminators(node):
    """OpenAPI's `discriminator` picks one branch of a `oneOf` by a property; JSON Schema has no such keyword.

    Without it, a ModelArtifact body also matches DocArtifact (their schemas are
    open), and `oneOf` fails; with it, the branch named by `artifactType` (or
    `metadataType`) must hold.
    """
    if isinstance(node, list):
        return [_with_discriminators(n) for n in node]
    if not isinstance(node, dict):
        return node
    node = {k: _with_discriminators(v) for k, v in node.items()}
    if "discriminator" in node and "oneOf" in node:
        prop, mapping = node["discriminator"]["propertyName"], node["discriminator"]["mapping"]
        del node["oneOf"]
        node["required"] = sorted(set(node.get("required", [])) | {prop})
        node["properties"] = {**node.get("properties", {}), prop: {"enum": list(mapping)}}
        node["allOf"] = node.get("allOf", []) + [{"if": {"properties": {prop: {"const": k}}}, "then": {"$ref": ref}} for k, ref in mapping.items()]
    return node
