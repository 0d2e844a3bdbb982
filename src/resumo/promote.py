"""Promote: publish the tuned model to the registry if it beats production.

    resumo promote --model runs/model/adapter --scores runs/score/scores.json

Registry layout under `promote.registry` (a path or s3:// prefix):

    models/<version>/model/...     the adapter (or merged model) files
    models/<version>/scores.json   the scores it was promoted on
    production.json                the pointer: {"version", "metric", "score", ...}

Every model file is written before the pointer moves, so a crash mid-publish
leaves the previous production pointer valid.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from resumo import storage
from resumo.config import PromoteConfig
from resumo.errors import DataError

log = logging.getLogger(__name__)

POINTER = "production.json"


@dataclass
class PromoteResult:
    promoted: bool
    reason: str
    candidate_score: float
    production_score: float | None
    version: str | None


def run(cfg: PromoteConfig, model_dir: str | Path, scores: dict, candidate: str = "tuned") -> PromoteResult:
    """`scores` is score's output: {"models": {name: {metric: value}}}; `candidate` names the model to promote."""
    try:
        candidate_score = float(scores["models"][candidate][cfg.metric])
    except KeyError:
        raise DataError(f"scores have no {cfg.metric!r} for model {candidate!r}; pass the scores.json that `resumo score` wrote") from None
    production = current_production(cfg.registry)
    production_score = production["score"] if production and production.get("metric") == cfg.metric else None
    if production_score is not None and candidate_score <= production_score + cfg.min_improvement:
        reason = f"{cfg.metric} {candidate_score:.4f} does not beat production {production['version']} ({production_score:.4f}) by more than {cfg.min_improvement}"
        log.info("promote: kept production; %s", reason)
        return PromoteResult(False, reason, candidate_score, production_score, None)

    version = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    prefix = storage.join(cfg.registry, f"models/{version}")
    keys = storage.upload(model_dir, storage.join(prefix, "model"))
    storage.write_text(storage.join(prefix, "scores.json"), json.dumps(scores, indent=2))
    pointer = {"version": version, "model": storage.join(prefix, "model"), "metric": cfg.metric, "score": candidate_score, "files": keys}
    storage.write_text(storage.join(cfg.registry, POINTER), json.dumps(pointer, indent=2))
    reason = "no production model yet" if production_score is None else f"{cfg.metric} {candidate_score:.4f} beats production {production_score:.4f}"
    log.info("promote: published %s (%s)", version, reason)
    return PromoteResult(True, reason, candidate_score, production_score, version)


def current_production(registry: str) -> dict | None:
    uri = storage.join(registry, POINTER)
    return json.loads(storage.read_text(uri)) if storage.exists(uri) else None
