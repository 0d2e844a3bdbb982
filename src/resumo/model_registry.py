"""Kubeflow Model Registry, kept in step with resumo's registry.

    resumo registry list
    resumo registry show 20260101T000000000000Z --set promote.model_registry.url=https://model-registry.kubeflow:8443

resumo's registry (`promote.registry`: models/<version>/ and the production.json
pointer, moved by compare-and-swap) stays the source of truth and the gate.
When `promote.model_registry.url` is set, `follow_production` makes Model
Registry say what production.json says, after the pointer has moved:

- the production version is registered under `promote.model_registry.model_name`
  as a version named after resumo's version, with a model artifact holding its
  s3:// URI and format, and its lineage and scores as custom properties;
- it carries the `production` label (a custom property with an empty string
  value: how the Model Registry UI stores labels), and every other version loses it.

It reads everything from the published version, not from the task that called
it, so it is idempotent and survives a retry: a rerun finds the version it
registered and registers nothing, and a retry after a failure (even after a
promotion that landed, when the rerun's candidate is "kept") registers what is
in production. A registry that cannot be reached raises
ModelRegistryUnavailable, one line; promote never undoes a promotion for it.
A candidate that is kept is never registered.

The `model-registry` client is imported only here, inside functions.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from resumo import artifacts, storage
from resumo.config import ModelRegistryConfig, PromoteConfig
from resumo.errors import ConfigError, ResumoError
from resumo.registry_pointer import current_production

log = logging.getLogger(__name__)

LABEL = "production"
OFF = "off (promote.model_registry.url is not set)"
MAX_POINTER_READS = 3  # each extra read follows a promotion that landed while we registered
# KServe reads a registered version through Model Registry's storage initializer (kubeflow/model-registry cmd/csi).
STORAGE_URI = "model-registry://{model}/{version}"


class ModelRegistryUnavailable(ResumoError):
    """Model Registry could not be reached or refused a call; resumo's own registry is unaffected, a retry registers."""


@dataclass
class Registration:
    version: str
    version_id: str
    registered: bool  # False: the version was there already
    label_added: list[str] = field(default_factory=list)
    label_removed: list[str] = field(default_factory=list)


def follow_production(cfg: PromoteConfig) -> Registration | None:
    """Register resumo's production version in Model Registry and move the label to it; None when off or nothing is in production."""
    mr = cfg.model_registry
    if mr.url is None:
        return None
    pointer = current_production(cfg.registry)
    if pointer is None:
        log.info("model registry: nothing in production in %s yet; nothing to register", cfg.registry)
        return None
    try:
        client = connect(mr)
        for _ in range(MAX_POINTER_READS):
            registration = _register_and_label(client, mr, cfg.registry, pointer)
            # Another promotion may have moved the pointer (and labelled its version) meanwhile: follow it.
            now = current_production(cfg.registry)
            if now["version"] == pointer["version"]:
                break
            pointer = now
    except ResumoError:
        raise
    except Exception as err:  # noqa: BLE001 - every client failure becomes one line below
        if not _is_registry_failure(err):
            raise
        raise ModelRegistryUnavailable(
            f"Model Registry at {mr.url}: {_reason(err)}. resumo's production is {pointer['version']} in {cfg.registry}, "
            "promoted and kept; a retry registers it"
        ) from None
    log.info(
        "model registry: %s version %s (id %s) of %s, labelled %r%s",
        "registered" if registration.registered else "found",
        registration.version,
        registration.version_id,
        mr.model_name,
        LABEL,
        f"; the label left {registration.label_removed}" if registration.label_removed else "",
    )
    return registration


def _import_client() -> None:
    """Import the model-registry client without the `logging.basicConfig` it calls on import.

    Where the root logger has no handler yet (resumo called as a library, a test runner), that
    call installs a StreamHandler bound to the sys.stderr of that moment and sets the root level to
    WARNING: the process's later log lines go to a stream that may have closed since ("Logging
    error ... I/O operation on closed file"), and its INFO lines vanish. The CLI and KFP's
    executor configure logging before this runs, and then the call does nothing."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    import model_registry  # noqa: F401

    root.handlers[:] = handlers
    root.setLevel(level)


def connect(cfg: ModelRegistryConfig):
    """The client, authenticated as it does it: a bearer token from `token_env`, else `token_file`, else the client's default file."""
    _import_client()
    from model_registry import ModelRegistry
    from model_registry.exceptions import StoreError

    token = os.environ.get(cfg.token_env) or None
    if token is None and cfg.token_file is not None:
        try:
            token = Path(cfg.token_file).read_text().strip()
        except OSError as err:
            raise ConfigError(f"promote.model_registry.token_file = {cfg.token_file!r}: {err.strerror}; mount the token there or set ${cfg.token_env}") from None
    # is_secure=False is the client's "no TLS verification" (and plain HTTP for an http:// URL).
    secure = cfg.url.startswith("https://") and cfg.verify_tls
    try:
        return ModelRegistry(cfg.url, author=cfg.author, is_secure=secure, user_token=token, custom_ca=cfg.ca_bundle, async_runner=_run)
    except StoreError as err:
        if "user token must be provided" in str(err):
            raise ConfigError(
                f"promote.model_registry: no bearer token for {cfg.url}; set ${cfg.token_env} (the Secret cluster.secrets.model_registry), "
                "promote.model_registry.token_file, or verify_tls=false for a registry without auth"
            ) from None
        raise


def _run(coro):
    # One event loop per call (the client opens and closes its HTTP session per call), instead of the
    # client's default, nest_asyncio, which patches asyncio for the whole process.
    return asyncio.run(coro)


def storage_uri(cfg: ModelRegistryConfig, version: str) -> str:
    return STORAGE_URI.format(model=cfg.model_name, version=version)


# --- registering --------------------------------------------------------------


def _register_and_label(client, cfg: ModelRegistryConfig, registry: str, pointer: dict) -> Registration:
    # Two promotions registering the same version at once: the second one's client raises
    # "already exists", the task fails and its retry finds the version here.
    found = _find_version(client, cfg.model_name, pointer["version"])
    registration = _register(client, cfg, registry, pointer) if found is None else _complete(client, cfg, pointer, found)
    _move_label(client, cfg.model_name, registration)
    return registration


def _find_version(client, model_name: str, version: str):
    if client.get_registered_model(model_name) is None:
        return None
    return client.get_model_version(model_name, version)


def _register(client, cfg: ModelRegistryConfig, registry: str, pointer: dict) -> Registration:
    fmt, fmt_version = _model_format(pointer)
    client.register_model(
        cfg.model_name,
        pointer["model"],
        version=pointer["version"],
        model_format_name=fmt,
        model_format_version=fmt_version,
        author=cfg.author,
        owner=cfg.author,
        version_description=f"resumo {pointer['version']}: model card {pointer['card']}",
        metadata=version_metadata(registry, pointer),
    )
    found = client.get_model_version(cfg.model_name, pointer["version"])
    return Registration(pointer["version"], found.id, registered=True, label_added=[pointer["version"]])


def _complete(client, cfg: ModelRegistryConfig, pointer: dict, found) -> Registration:
    """A version registered before: add its artifact if a registration was cut off between the two calls."""
    if client.get_model_artifact(cfg.model_name, pointer["version"]) is None:
        fmt, fmt_version = _model_format(pointer)
        log.info("model registry: version %s has no model artifact (an interrupted registration); adding it", pointer["version"])
        # register_model's own step 3; the client has no public call that adds an artifact to an existing version.
        client.async_runner(client._register_model_artifact(found, cfg.model_name, pointer["model"], model_format_name=fmt, model_format_version=fmt_version))
    return Registration(pointer["version"], found.id, registered=False)


def _move_label(client, model_name: str, registration: Registration) -> None:
    for mv in list(client.get_model_versions(model_name)):
        props = dict(mv.custom_properties or {})
        wanted = mv.id == registration.version_id
        if (LABEL in props) == wanted:
            continue
        if wanted:
            props[LABEL] = ""
            registration.label_added.append(mv.name)
        else:
            props.pop(LABEL)
            registration.label_removed.append(mv.name)
        mv.custom_properties = props  # a PATCH replaces the whole map, which is how a label is removed
        client.update(mv)
    registration.label_added = sorted(set(registration.label_added))


def version_metadata(registry: str, pointer: dict) -> dict[str, str | int | float | bool]:
    """Custom properties of a version: lineage, training settings and scores, from what promote published."""
    prefix = storage.join(registry, f"models/{pointer['version']}")
    scores = json.loads(storage.read_text(storage.join(prefix, artifacts.SCORES)))
    meta_uri = storage.join(pointer["model"], artifacts.MODEL_META)
    meta = json.loads(storage.read_text(meta_uri)) if storage.exists(meta_uri) else {}
    lineage = pointer.get("lineage") or {}
    lora = meta.get("lora") or {}
    props: dict = {
        LABEL: "",
        "resumo_registry": registry,
        "resumo_manifest": pointer["manifest"],
        "manifest_sha256": pointer["manifest_sha256"],
        "promoted_at": pointer["promoted_at"],
        "replaced_version": pointer.get("previous") or "",
        "kfp_run_id": lineage.get("kfp_run_id") or "",
        "pipeline_version": lineage.get("pipeline_version") or "",
        "base_model": meta.get("base_model", "unknown"),
        "candidate": pointer["candidate"],
        "n_test_articles": scores.get("n_articles"),
    }
    if lora:
        props |= {
            "lora_r": lora.get("r"),
            "lora_alpha": float(lora["r"] * lora["alpha_ratio"]) if "alpha_ratio" in lora else None,
            "lora_dropout": lora.get("dropout"),
            "lora_target_modules": ",".join(lora.get("target_modules") or []),
        }
    props |= {k: float(v) for k, v in pointer["scores"].items()}
    # What tune.policy=reuse trains the next run with, and the validation score it is held to.
    props |= {f"hyperparameter_{key}": value for key, value in (pointer.get("hyperparameters") or {}).items()}
    props |= {f"validation_{key}": float(value) for key, value in (pointer.get("validation") or {}).items()}
    for metric, (low, high) in (scores.get("intervals", {}).get(pointer["candidate"]) or {}).items():
        if metric in pointer["scores"]:
            props[f"{metric}_low"], props[f"{metric}_high"] = float(low), float(high)
    for opponent, verdict in (lineage.get("judge") or {}).items():
        if verdict.get("win_rate") is not None:
            props[f"judge_win_rate_vs_{opponent}"] = float(verdict["win_rate"])
            if verdict.get("interval"):
                props[f"judge_win_rate_vs_{opponent}_low"], props[f"judge_win_rate_vs_{opponent}_high"] = map(float, verdict["interval"])
    return {k: v for k, v in props.items() if v is not None}


def _model_format(pointer: dict) -> tuple[str, str]:
    """("peft-lora", peft version) for an adapter folder, ("transformers", version) for a full model."""
    adapter_config = storage.join(pointer["model"], artifacts.ADAPTER_CONFIG)
    if storage.exists(adapter_config):
        return "peft-lora", str(json.loads(storage.read_text(adapter_config)).get("peft_version") or "unknown")
    config = storage.join(pointer["model"], artifacts.MODEL_CONFIG)
    version = json.loads(storage.read_text(config)).get("transformers_version") if storage.exists(config) else None
    return "transformers", str(version or "unknown")


# --- reading, for `resumo registry` ---------------------------------------------


def model_registry_versions(cfg: ModelRegistryConfig) -> dict[str, dict]:
    """Model Registry's versions of the model, by name: id, state, labelled production or not, and custom properties."""
    with _read_errors(cfg):
        client = connect(cfg)
        if client.get_registered_model(cfg.model_name) is None:
            return {}
        return {mv.name: _describe(mv) for mv in client.get_model_versions(cfg.model_name)}


def model_registry_version(cfg: ModelRegistryConfig, version: str) -> dict | None:
    """One version with its model artifact (URI, format), or None when Model Registry does not have it."""
    with _read_errors(cfg):
        client = connect(cfg)
        found = _find_version(client, cfg.model_name, version)
        if found is None:
            return None
        artifact = client.get_model_artifact(cfg.model_name, version)
        described = _describe(found)
        described["artifact"] = None if artifact is None else {"id": artifact.id, "uri": artifact.uri, "format": f"{artifact.model_format_name} {artifact.model_format_version}"}
        described["storage_uri"] = storage_uri(cfg, version)
        return described


@contextlib.contextmanager
def _read_errors(cfg: ModelRegistryConfig):
    """A registry that cannot be read is one line, naming it; our own errors pass through as they are."""
    try:
        yield
    except ResumoError:
        raise
    except Exception as err:  # noqa: BLE001
        if not _is_registry_failure(err):
            raise
        raise ModelRegistryUnavailable(f"Model Registry at {cfg.url}: {_reason(err)}") from None


def _describe(mv) -> dict:
    props = dict(mv.custom_properties or {})
    return {"id": mv.id, "state": str(getattr(mv.state, "value", mv.state)), "production": LABEL in props, "properties": props}


def listing(cfg: PromoteConfig) -> list[dict]:
    """Every version in either registry: published (with a manifest) or cut off in resumo's, production, and Model Registry's view."""
    pointer = current_production(cfg.registry)
    keys = storage.list_keys(storage.join(cfg.registry, "models"))
    published = {k.split("/")[0] for k in keys}
    complete = {k.split("/")[0] for k in keys if k.count("/") == 1 and k.endswith(f"/{artifacts.MANIFEST}")}
    registered = model_registry_versions(cfg.model_registry) if cfg.model_registry.url else None
    return [
        {
            "version": v,
            "resumo": ("production" if pointer and pointer["version"] == v else "published" if v in complete else "incomplete") if v in published else "absent",
            "model_registry": None if registered is None else registered.get(v),
        }
        for v in sorted(published | set(registered or {}), reverse=True)
    ]


def describe(cfg: PromoteConfig, version: str) -> dict:
    """One version as resumo's registry and Model Registry hold it."""
    from resumo.errors import DataError

    pointer = current_production(cfg.registry)
    prefix = storage.join(cfg.registry, f"models/{version}")
    manifest_uri = storage.join(prefix, artifacts.MANIFEST)
    resumo_side = None
    if storage.exists(manifest_uri):
        scores = json.loads(storage.read_text(storage.join(prefix, artifacts.SCORES)))
        in_production = bool(pointer and pointer["version"] == version)
        resumo_side = {
            "production": in_production,
            "model": storage.join(prefix, "model"),
            "card": storage.join(prefix, artifacts.CARD),
            "scores": (pointer["scores"] if in_production else None) or scores.get("models", {}).get("tuned"),
            "lineage": pointer.get("lineage") if in_production else None,
        }
    registered = model_registry_version(cfg.model_registry, version) if cfg.model_registry.url else OFF
    if resumo_side is None and registered in (None, OFF):
        raise DataError(f"version {version!r} is not in {cfg.registry}" + ("" if cfg.model_registry.url is None else f" nor in Model Registry at {cfg.model_registry.url}") + "; `resumo registry list` shows the versions")
    return {"version": version, "resumo": resumo_side, "model_registry": registered}


# --- errors -------------------------------------------------------------------


def _is_registry_failure(err: Exception) -> bool:
    _import_client()
    import aiohttp
    from model_registry.exceptions import StoreError
    from mr_openapi.exceptions import ApiException

    return isinstance(err, ApiException | StoreError | aiohttp.ClientError | OSError | asyncio.TimeoutError)


def _reason(err: Exception) -> str:
    """One line: the HTTP status and the server's message, or the connection error."""
    from mr_openapi.exceptions import ApiException

    if isinstance(err, ApiException):
        try:
            message = json.loads(err.body or "{}").get("message") or err.reason
        except (json.JSONDecodeError, AttributeError):
            message = err.reason
        return f"HTTP {err.status} {message}".replace("\n", " ")
    return f"{type(err).__name__}: {err}".replace("\n", " ")
