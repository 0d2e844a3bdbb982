"""Promote: publish the candidate to the registry if it beats production.

    resumo promote --model runs/model/adapter --scores runs/score/scores.json

Registry layout under `promote.registry` (a path or s3:// prefix):

    models/<version>/model/...         the adapter (or merged model) files
    models/<version>/scores.json       the scores it was promoted on
    models/<version>/MODEL_CARD.md     data, parameters, scores, the gates it passed
    models/<version>/report.html       the scoring report, when given
    models/<version>/manifest.json     every file above with its size and sha256
    production.json                    the pointer: {"version", "manifest", "scores", "hyperparameters", "validation", ...}

The gates (PromoteConfig): ROUGE-Lsum above production's by more than
`min_improvement`; BERTScore F1 not below production's by more than
`max_bertscore_drop`; share of outputs not in Portuguese at most
`max_not_portuguese`; and, when `min_lead_difference` is set, the low end of
the candidate's paired interval against the lead at its own length above it. A threshold set to None is skipped and says so; a
threshold whose score is missing from scores.json is an error, because a gate
that silently passes is no gate.

The publish is versioned and atomic. A version id is taken when the promotion
starts; ids sort in time order, so "newer" means "started later" (pass
`version` to order by something else, such as the pipeline run's creation
time). Every file is written, read back and checked against the manifest
before the pointer moves, so a crash mid-publish leaves the old pointer and the
files it names intact (the half-written version folder is never pointed at).
The pointer moves by compare-and-swap (`registry_pointer.move`): if
another promotion moved it meanwhile, a newer one is left in place and an older
one is re-judged against the candidate, whose gates must pass again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from resumo import artifacts, model_registry, registry_pointer, report, storage, tune_policy
from resumo.artifacts import CARD, MANIFEST
from resumo.config import PromoteConfig
from resumo.errors import ConfigError, DataError
from resumo.judge import untrusted_opponents
from resumo.registry_pointer import check_file as _check_file
from resumo.stage import StageResult

log = logging.getLogger(__name__)

# The candidate's paired difference against the lead at its own length, and its interval's low end, on promote.metric.
LEAD_DIFFERENCE, LEAD_DIFFERENCE_LOW = "minus_lead_at_own_length", "minus_lead_at_own_length_ci_low"
# Each retry follows a promotion that landed meanwhile; a handful covers any realistic schedule.
MAX_POINTER_ATTEMPTS = 5
_VERSION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._-]*$")


@dataclass
class Gate:
    name: str
    passed: bool
    detail: str


@dataclass
class PromoteResult:
    promoted: bool
    reason: str
    candidate_score: float
    production_score: float | None  # what the gates compared with: production on these articles, else as it was promoted
    version: str | None
    gates: list[Gate] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # e.g. a position-biased judge, whose win rates mean nothing

    @property
    def metrics(self) -> dict[str, int]:
        return {"promoted": int(self.promoted), **{f"gate_{g.name}_passed": int(g.passed) for g in self.gates}}


def run_stage(
    cfg: PromoteConfig,
    model: str | Path,
    scores: str | Path,
    report_html: str | Path | None = None,
    decision_file: str | Path | None = None,
    judge: str | Path | None = None,
    run_id: str = "",
    **options,
) -> StageResult:
    """The stage, as the CLI and the component call it: `model` is train's folder (or its adapter folder),
    `scores` score's folder (or its scores.json), `judge` judge's folder if the run was judged; the
    decision is also written to `decision_file` as JSON. `run_id` (KFP's) and the judge's win rates go
    into the version's lineage. `options` go to `run` (candidate, version).
    Metrics: `PromoteResult.metrics` (promoted, each gate passed); output `decision`: the PromoteResult."""
    import resumo

    scores_file = artifacts.scores_file(scores)
    try:
        score_data = json.loads(storage.read_text(scores_file))
    except (storage.StorageError, json.JSONDecodeError) as err:
        raise DataError(f"scores {scores_file}: {err}") from None
    judged = json.loads(storage.read_text(f"{judge}/{artifacts.JUDGE_RESULT}")) if judge else {}
    # Win rates are lineage, never a gate; a position-biased judge's are flagged as void besides.
    untrusted = untrusted_opponents(judged)
    for warning in report.judge_warnings(judged):
        log.warning("promote: %s", warning)
    lineage = {"kfp_run_id": run_id, "pipeline_version": resumo.__version__, "judge": judged.get("opponents", {}), "judge_untrusted": untrusted}
    result = run(cfg, artifacts.adapter_in(model), score_data, report_html=report_html, lineage=lineage, **options)
    result.warnings = report.judge_warnings(judged)
    if decision_file is not None:
        storage.write_text(decision_file, json.dumps(asdict(result), indent=2))
    return StageResult(result.metrics, {"decision": result})


def run(
    cfg: PromoteConfig,
    model_dir: str | Path,
    scores: dict,
    candidate: str = "tuned",
    report_html: str | Path | None = None,
    version: str | None = None,
    lineage: dict | None = None,
) -> PromoteResult:
    """`scores` is score's output: {"models": {name: {metric: value}}, ...}; `candidate` names the model to promote.

    `lineage` (KFP run id, pipeline version, judge win rates) is kept in the pointer. Then, promoted or
    not, Model Registry is brought in step with production (model_registry.follow_production), so a
    retry after it failed registers what the first attempt promoted.
    """
    result = _gate_and_publish(cfg, model_dir, scores, candidate, report_html, version, lineage)
    model_registry.follow_production(cfg)
    return result


def _gate_and_publish(cfg, model_dir, scores, candidate, report_html, version, lineage) -> PromoteResult:
    version = version or datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    if not _VERSION.match(version):
        raise ConfigError(f"version {version!r} must be letters, digits, '.', '_' or '-' (it becomes a key under models/)")
    candidate_scores = _candidate_scores(cfg, scores, candidate)
    production, tag = registry_pointer.read_tagged(cfg.registry)
    run_id = (lineage or {}).get("kfp_run_id")
    if run_id and production and (production.get("lineage") or {}).get("kfp_run_id") == run_id:
        # A retry of this run's promote, whose first attempt moved the pointer and then failed
        # (Model Registry down, say): report that promotion, rather than judging the model
        # against itself and saying it was kept.
        reason = f"this run ({run_id}) promoted {production['version']} in an earlier attempt of this task"
        log.info("promote: %s", reason)
        gates = [Gate(**g) for g in production.get("gates", [])]  # as the first attempt judged them
        return PromoteResult(True, reason, candidate_scores[cfg.metric], None, production["version"], gates)
    compared = _production_scores(cfg, scores, production)  # production on these articles, or as promoted
    gates = check_gates(cfg, candidate_scores, compared)
    if not all(g.passed for g in gates):
        return _kept(cfg, candidate_scores, production, gates, compared)

    pointer = _publish_version(cfg, version, Path(model_dir), scores, candidate, candidate_scores, production, gates, report_html)
    pointer["lineage"] = lineage or {}
    pointer |= tune_policy.training_record(model_dir)  # hyperparameters and validation scores: what tune.policy=reuse reuses
    for _ in range(MAX_POINTER_ATTEMPTS):
        try:
            registry_pointer.move(cfg.registry, pointer, tag)
        except storage.StaleWrite:
            production, tag = registry_pointer.read_tagged(cfg.registry)
            log.info("promote: production moved to %s while %s was published; judging again", production and production["version"], version)
            if production and production["version"] >= version:
                reason = f"a newer version {production['version']} was promoted while {version} was published; it stays"
                log.info("promote: kept production; %s", reason)
                return PromoteResult(False, reason, candidate_scores[cfg.metric], _score(production, cfg.metric), None, gates)
            # Only the pointer's stored scores describe the model that just landed.
            compared = _pointer_scores(production, cfg.metric)
            gates = check_gates(cfg, candidate_scores, compared)
            if not all(g.passed for g in gates):
                return _kept(cfg, candidate_scores, production, gates, compared)
            pointer["previous"] = production and production["version"]
            continue
        reason = "; ".join(g.detail for g in gates)
        log.info("promote: published %s (%s)", version, reason)
        return PromoteResult(True, reason, candidate_scores[cfg.metric], compared.get(cfg.metric) if compared else None, version, gates)
    raise storage.StaleWrite(f"{registry_pointer.uri(cfg.registry)} kept moving during {MAX_POINTER_ATTEMPTS} attempts; {version} is published but not in production")


def check_gates(cfg: PromoteConfig, candidate: dict[str, float], production: dict[str, float] | None) -> list[Gate]:
    """Each gate of PromoteConfig with its verdict and numbers; `production` None means there is none yet."""
    gates = []
    value = candidate[cfg.metric]
    if production is None or production.get(cfg.metric) is None:
        gates.append(Gate(cfg.metric, True, "no production model yet" if production is None else f"production has no {cfg.metric}"))
    else:
        bar = production[cfg.metric] + cfg.min_improvement
        beats = value > bar
        gates.append(
            Gate(cfg.metric, beats, f"{cfg.metric} {value:.4f} {'beats' if beats else 'does not beat'} production {production[cfg.metric]:.4f} by more than {cfg.min_improvement}")
        )
    if cfg.max_bertscore_drop is not None and cfg.metric != "bertscore_f1":
        if production is None or production.get("bertscore_f1") is None:
            gates.append(Gate("bertscore_f1", True, "no production BERTScore to compare with"))
        else:
            floor = production["bertscore_f1"] - cfg.max_bertscore_drop
            ok = candidate["bertscore_f1"] >= floor
            gates.append(
                Gate("bertscore_f1", ok, f"BERTScore F1 {candidate['bertscore_f1']:.4f} {'within' if ok else 'falls more than'} {cfg.max_bertscore_drop} of production {production['bertscore_f1']:.4f}")
            )
    if cfg.max_not_portuguese is None:
        log.info("promote: language gate skipped (promote.max_not_portuguese is None)")
        gates.append(Gate("not_portuguese_share", True, "not checked: promote.max_not_portuguese is None"))
    elif candidate.get("not_portuguese_share") is None:
        # Every output empty or under score.min_language_words: no language was judged. Only a
        # bound that lets any share pass (1.0, the smoke profile's) lets that pass too.
        ok = cfg.max_not_portuguese >= 1
        gates.append(Gate("not_portuguese_share", ok, f"no output long enough to judge its language (bound {cfg.max_not_portuguese:.1%})"))
    else:
        share = candidate["not_portuguese_share"]
        ok = share <= cfg.max_not_portuguese
        gates.append(Gate("not_portuguese_share", ok, f"{share:.1%} of outputs not in Portuguese ({'within' if ok else 'above'} {cfg.max_not_portuguese:.1%})"))
    if cfg.min_lead_difference is not None:
        gates.append(_lead_gate(cfg, candidate))
    return gates


def _lead_gate(cfg: PromoteConfig, candidate: dict[str, float]) -> Gate:
    """The candidate must beat the lead cut at its own length: the low end of the paired interval above promote.min_lead_difference."""
    difference, low = candidate.get(LEAD_DIFFERENCE), candidate.get(LEAD_DIFFERENCE_LOW)
    if difference is None or low is None:
        return Gate("versus_lead", False, f"no {cfg.metric} difference against the lead at its own length (no article defines one)")
    ok = low > cfg.min_lead_difference
    return Gate(
        "versus_lead",
        ok,
        f"{cfg.metric} {difference:+.4f} against the lead at its own length, interval from {low:+.4f}: {'above' if ok else 'not above'} {cfg.min_lead_difference}",
    )


def _candidate_scores(cfg: PromoteConfig, scores: dict, candidate: str) -> dict[str, float]:
    models = scores.get("models", {}) if isinstance(scores, dict) else {}
    if candidate not in models:
        raise DataError(f"scores have no model {candidate!r} (models: {sorted(models)}); pass the scores.json that `resumo score` wrote and --candidate")
    values = models[candidate]
    needed = [cfg.metric]
    if cfg.max_bertscore_drop is not None and cfg.metric != "bertscore_f1":
        needed.append("bertscore_f1")
    if cfg.max_not_portuguese is not None:
        needed.append("not_portuguese_share")
    for key in needed:
        if key not in values:
            fix = "set promote.max_not_portuguese=null to skip the language gate" if key == "not_portuguese_share" else "score the model again with `resumo score`"
            raise DataError(f"scores have no {key!r} for model {candidate!r}; {fix}")
    found = {k: float(v) for k, v in values.items() if isinstance(v, int | float)}
    if cfg.min_lead_difference is not None:
        versus = (scores.get("versus_lead") or {}).get(candidate, {}).get(cfg.metric)
        if versus is None:
            raise DataError(
                f"scores have no versus_lead.{candidate}.{cfg.metric} (the lead baseline) for promote.min_lead_difference; "
                "score the model again with `resumo score`, or set promote.min_lead_difference=null"
            )
        found[LEAD_DIFFERENCE], found[LEAD_DIFFERENCE_LOW] = versus["difference"], (versus.get("interval") or [None])[0]
        found = {k: v for k, v in found.items() if v is not None}
    return found


def _production_scores(cfg: PromoteConfig, scores: dict, production: dict | None) -> dict[str, float] | None:
    if production is None:
        return None
    same_articles = scores["models"].get(cfg.production_name)
    scored_model = scores.get("models_scored", {}).get(cfg.production_name, production.get("model"))
    if same_articles is not None and scored_model == production.get("model"):
        return same_articles
    if same_articles is not None:  # e.g. a cached score step from before the last promotion
        why = f"its {cfg.production_name!r} model is {scored_model}, no longer production ({production.get('model')})"
    else:
        why = f"it has no {cfg.production_name!r} model"
    log.warning(
        "promote: scores.json: %s; comparing with the scores production %s was promoted on, which came from other test articles",
        why,
        production["version"],
    )
    return _pointer_scores(production, cfg.metric)


def _pointer_scores(pointer: dict | None, metric: str) -> dict[str, float] | None:
    if pointer is None:
        return None
    return pointer.get("scores") or {pointer.get("metric", metric): pointer.get("score")}


def _kept(cfg: PromoteConfig, candidate: dict[str, float], production: dict | None, gates: list[Gate], compared: dict[str, float] | None) -> PromoteResult:
    reason = "; ".join(g.detail for g in gates if not g.passed)
    log.info("promote: kept production %s; %s", production and production["version"], reason)
    return PromoteResult(False, reason, candidate[cfg.metric], compared.get(cfg.metric) if compared else None, None, gates)


def _score(pointer: dict | None, metric: str) -> float | None:
    if pointer is None:
        return None
    return (pointer.get("scores") or {}).get(metric, pointer.get("score") if pointer.get("metric") == metric else None)


def _publish_version(cfg, version, model_dir, scores, candidate, candidate_scores, production, gates, report_html) -> dict:
    """Write every file of the version, read each back, then the manifest; return the pointer to move."""
    if not model_dir.is_dir():
        raise DataError(f"model folder {model_dir} does not exist; pass the adapter folder `resumo train` wrote")
    prefix = storage.join(cfg.registry, artifacts.version_prefix(version))
    model_key = artifacts.VERSION_MODEL
    files: dict[str, bytes] = {f"{model_key}/{p.relative_to(model_dir).as_posix()}": p.read_bytes() for p in sorted(model_dir.rglob("*")) if p.is_file()}
    files[artifacts.SCORES] = json.dumps(scores, indent=2).encode()
    if report_html is not None:
        files[artifacts.REPORT_HTML] = Path(report_html).read_bytes()
    files[CARD] = report.model_card(version, _model_meta(model_dir), scores, candidate, production, gates).encode()
    manifest = {"version": version, "prefix": prefix, "files": {}}
    for key, data in files.items():
        expected = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        storage.write_bytes(storage.join(prefix, key), data)
        _check_file(storage.join(prefix, key), expected)
        manifest["files"][key] = expected
    raw = json.dumps(manifest, indent=2).encode()
    storage.write_bytes(storage.join(prefix, MANIFEST), raw)
    _check_file(storage.join(prefix, MANIFEST), {"size": len(raw), "sha256": hashlib.sha256(raw).hexdigest()})
    log.info("promote: wrote and verified %d files under %s", len(files), prefix)
    return {
        "version": version,
        "previous": production and production["version"],
        "promoted_at": datetime.now(UTC).isoformat(),
        "model": storage.join(prefix, model_key),
        "card": storage.join(prefix, CARD),
        "manifest": storage.join(prefix, MANIFEST),
        "manifest_sha256": hashlib.sha256(raw).hexdigest(),
        "candidate": candidate,
        "metric": cfg.metric,
        "score": candidate_scores[cfg.metric],
        "scores": {k: v for k, v in candidate_scores.items() if k in report.CARD_SCORES},
        "gates": [asdict(g) for g in gates],
    }


def _model_meta(model_dir: Path) -> dict:
    """The model's resumo_model.json (base model, prompt, LoRA, train config), read without importing torch."""
    meta_file = model_dir / artifacts.MODEL_META
    return json.loads(meta_file.read_text()) if meta_file.exists() else {}
