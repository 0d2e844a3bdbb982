"""Judge: an LLM compares the candidate's summary with each other model's, article by article.

    resumo judge --predictions runs/score/predictions.parquet --pairs runs/pairs --out runs/judge \\
        --set judge.base_url=http://vllm-judge:8000/v1

Every (article, opponent) pair is asked twice, with the candidate's summary
first (A) and then second (B): a judge that favours a position then gives one
win and one loss, which average to a tie, instead of a random draw deciding
(the original study drew the position once). Ties are allowed. The answer must
be a JSON object matching `VERDICT_SCHEMA`; the schema is sent to the endpoint
where it supports guided output, and every answer is validated against it
anyway. An answer that does not validate is counted as invalid, never guessed.

An article counts when both of its orders gave a valid verdict; it scores 1
for two wins, 0.5 for a win and a loss or two ties, and so on. The win rate is
the mean over articles, with a percentile bootstrap interval over articles.
Verdicts are appended to `verdicts.jsonl` as they arrive, so a rerun with the
same `--out` asks only what is missing. Writes `judge.json`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from pathlib import Path

import jsonschema
import numpy as np
import pandas as pd

from resumo import artifacts, chat_client, metrics, storage, tables
from resumo.config import JudgeConfig
from resumo.errors import ConfigError, DataError, ResumoError
from resumo.stage import StageResult

log = logging.getLogger(__name__)

RUBRIC_VERSION = "study-v1"
VERDICT_SCHEMA = {
    "type": "object",
    "properties": {"best": {"type": "string", "enum": ["A", "B", "tie"]}, "explanation": {"type": "string"}},
    "required": ["best", "explanation"],
    "additionalProperties": False,
}
SYSTEM = "You are a careful, impartial evaluator of summaries of Portuguese texts."
# The original study's rubric (DESIGN.md): summary quality, quality of Portuguese, and
# length (about 100 words; over 200 or under 30 is bad); a JSON answer with a short
# explanation. We add "tie", which the study's 0-or-1 answer could not express.
RUBRIC = """Two summaries of the Portuguese text below were written by different systems. Decide which summary is better.

Judge by, in this order:
1. Summary quality: it keeps the main information of the text, states it correctly and adds nothing that is not in the text.
2. Quality of the Portuguese: correct, fluent, natural Portuguese. A summary not in Portuguese is bad.
3. Length: about {n_words} words is right; over {too_long} words or under {too_short} words is bad.

If neither summary is better, answer "tie". The order in which the summaries appear says nothing about them.
Answer only with a JSON object: {{"best": "A" or "B" or "tie", "explanation": "one or two sentences"}}

Text:
{text}

Summary A:
{a}

Summary B:
{b}"""

VERDICTS_FILE, RESULT_FILE = artifacts.VERDICTS, artifacts.JUDGE_RESULT
ORDERS = ("candidate_first", "candidate_second")
POINTS = {"win": 1.0, "tie": 0.5, "loss": 0.0}
_FENCE = re.compile(r"^```(?:json)?\s*\n(.*)\n```$", re.S)


def run(cfg: JudgeConfig, predictions: pd.DataFrame, out_dir: str | Path) -> dict:
    """Judge `predictions` (id, text, prediction_<model> columns); write and return judge.json's content."""
    out_dir = Path(out_dir)
    endpoint = chat_client.Endpoint.of(cfg, "judge")  # a missing key fails here, before any request
    rows, opponents = _validated(cfg, predictions)
    out_dir.mkdir(parents=True, exist_ok=True)
    verdicts_file = out_dir / VERDICTS_FILE
    wanted = [_request(cfg, row, opponent, order) for row in rows.itertuples(index=False) for opponent in opponents for order in ORDERS]
    done = _load_verdicts(verdicts_file, {r["key"] for r in wanted})
    todo = [r for r in wanted if r["key"] not in done]
    log.info("judge: %d requests (%d articles x %d opponents x 2 orders), %d already answered", len(wanted), len(rows), len(opponents), len(wanted) - len(todo))
    if todo:
        _ask_all(cfg, endpoint, todo, verdicts_file, done)
    verdicts = [
        done[r["key"]] | {"id": r["id"], "opponent": r["opponent"], "order": r["order"], "outcome": _outcome(done[r["key"]]["verdict"], r["order"])}
        for r in wanted
        if r["key"] in done
    ]
    failed = len(wanted) - len(verdicts)
    if verdicts == [] and failed:
        raise ResumoError(f"the judge endpoint answered none of {failed} requests; check judge.base_url, judge.model and the API key (see the log above)")

    result = {
        "candidate": cfg.candidate,
        "judge_model": cfg.model,
        "rubric_version": RUBRIC_VERSION,
        "opponents": {o: win_rate(cfg, [v for v in verdicts if v["opponent"] == o]) for o in opponents},
        "failed_requests": failed,
        "config": cfg.model_dump(),
    }
    (out_dir / RESULT_FILE).write_text(json.dumps(result, indent=2))
    for opponent, r in result["opponents"].items():
        log.info("judge: %s vs %s: win rate %s on %d articles (%d invalid verdicts)", cfg.candidate, opponent, r["win_rate"], r["n_articles"], r["invalid_verdicts"])
    return result


def run_stage(cfg: JudgeConfig, predictions: str | Path, out_dir: str | Path, pairs_dir: str | Path | None = None) -> StageResult:
    """The stage, as the CLI and the component call it: score's predictions (its folder or the .parquet file),
    joined with the article texts of `pairs_dir` when given, judged by `run`; judge.json's scalars
    (`judge_scalars`, named as the report step names them) and, as output `judged`, judge.json itself."""
    import io

    rows = pd.read_parquet(io.BytesIO(storage.read_bytes(artifacts.predictions_file(predictions))))
    judged = run(cfg, with_articles(rows, pairs_dir) if pairs_dir is not None else rows, out_dir)
    return StageResult(judge_scalars(judged), {"judged": judged})


def with_articles(predictions: pd.DataFrame, pairs_dir: str | Path) -> pd.DataFrame:
    """Join the article texts of the test split (score's predictions carry ids, not texts)."""
    if "text" in predictions.columns:
        return predictions
    texts = tables.read_split(pairs_dir, "test", columns=["id", "text"])[["id", "text"]]
    joined = predictions.merge(texts, on="id", how="left")
    missing = joined["text"].isna().sum()
    if missing:
        raise DataError(f"{missing} predicted ids are not in the test split of {pairs_dir}; pass the pairs that were scored")
    return joined


def parse_verdict(content: str) -> tuple[dict | None, str | None]:
    """(verdict, None) for an answer that is exactly one JSON object matching VERDICT_SCHEMA, else (None, why)."""
    text = content.strip()
    fenced = _FENCE.match(text)  # a lone ```json fence is formatting, not content
    if fenced:
        text = fenced.group(1).strip()
    try:
        verdict = json.loads(text)
        jsonschema.validate(verdict, VERDICT_SCHEMA)
    except json.JSONDecodeError as err:
        return None, f"not JSON: {err.msg} at {err.pos}"
    except jsonschema.ValidationError as err:
        return None, f"schema: {err.message}"
    return verdict, None


def win_rate(cfg: JudgeConfig, verdicts: list[dict]) -> dict:
    """Win rate of the candidate over articles where both orders gave a valid verdict, with its interval and bias diagnostics."""
    valid = [v for v in verdicts if v.get("outcome")]
    by_article: dict[str, dict[str, str]] = {}
    for v in valid:
        by_article.setdefault(v["id"], {})[v["order"]] = v["outcome"]
    complete = {a: o for a, o in by_article.items() if len(o) == 2}
    points = np.array([np.mean([POINTS[x] for x in o.values()]) for o in complete.values()])
    decisive = [v for v in valid if v["verdict"] != "tie"]
    counts = {k: sum(v["outcome"] == k for v in valid) for k in ("win", "tie", "loss")}
    return {
        "win_rate": float(points.mean()) if len(points) else None,
        "interval": list(metrics.bootstrap_interval(points, cfg.bootstrap_resamples, cfg.confidence, cfg.seed)) if len(points) else None,
        "wins": counts["win"],
        "ties": counts["tie"],
        "losses": counts["loss"],
        "n_articles": len(complete),
        "invalid_verdicts": len(verdicts) - len(valid),
        # A fair judge gives the same outcome both ways; a position-biased one does not.
        "position_consistency": float(np.mean([len(set(o.values())) == 1 for o in complete.values()])) if complete else None,
        "first_position_rate": float(np.mean([v["verdict"] == "A" for v in decisive])) if decisive else None,
    }


def untrusted_opponents(judged: dict) -> dict[str, str]:
    """Opponents whose win rate judge.json's own diagnostics void, with why: position consistency
    below the `min_position_consistency` the judge ran with (a judge that always answers "A" gives
    every pair one win and one loss, so a win rate of 0.5 that says nothing about the summaries)."""
    threshold = (judged.get("config") or {}).get("min_position_consistency", JudgeConfig.model_fields["min_position_consistency"].default)
    flagged = {}
    for opponent, r in (judged.get("opponents") or {}).items():
        consistency = r.get("position_consistency")
        if consistency is None:
            flagged[opponent] = "no article got a valid verdict in both orders"
        elif consistency < threshold:
            first = r.get("first_position_rate")
            flagged[opponent] = f"position consistency {consistency:.0%} is below judge.min_position_consistency {threshold:.0%}" + (
                f" (it picked the first summary {first:.0%} of the time)" if first is not None else ""
            )
    return flagged


# --- requests ---------------------------------------------------------------


def _validated(cfg: JudgeConfig, predictions: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    models = [c.removeprefix("prediction_") for c in predictions.columns if c.startswith("prediction_")]
    if cfg.candidate not in models:
        raise ConfigError(f"judge.candidate = {cfg.candidate!r} has no prediction_{cfg.candidate} column (models: {models}); set judge.candidate")
    opponents = [m for m in models if m != cfg.candidate]
    if not opponents:
        raise DataError(f"predictions hold only {cfg.candidate!r}; the judge needs a second model to compare with")
    missing = {"id", "text"} - set(predictions.columns)
    if missing:
        raise DataError(f"predictions lack columns {sorted(missing)}; join the article texts with `judge.with_articles` (the CLI's --pairs)")
    rows = predictions.head(cfg.max_articles) if cfg.max_articles else predictions
    if rows.empty:
        raise DataError("no predictions to judge")
    return rows.rename(columns={f"prediction_{m}": m for m in models}), opponents


def _request(cfg: JudgeConfig, row, opponent: str, order: str) -> dict:
    ours, theirs = str(getattr(row, cfg.candidate) or ""), str(getattr(row, opponent) or "")
    a, b = (ours, theirs) if order == "candidate_first" else (theirs, ours)
    prompt = RUBRIC.format(n_words=cfg.n_words, too_long=cfg.too_long_words, too_short=cfg.too_short_words, text=str(row.text).strip(), a=a.strip(), b=b.strip())
    # The key changes with anything that changes the question, so a resumed run never reuses a stale verdict.
    key = hashlib.sha256(json.dumps([str(row.id), opponent, order, cfg.model, RUBRIC_VERSION, SYSTEM, prompt]).encode()).hexdigest()[:24]
    return {"key": key, "id": str(row.id), "opponent": opponent, "order": order, "prompt": prompt}


def _load_verdicts(path: Path, keys: set[str]) -> dict[str, dict]:
    done = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a crash: that request is asked again
            if record.get("key") in keys:
                done[record["key"]] = record
    return done


def _ask_all(cfg: JudgeConfig, endpoint: chat_client.Endpoint, todo: list[dict], verdicts_file: Path, done: dict[str, dict]) -> None:
    import openai

    formats = chat_client.ResponseFormats(cfg.response_format, "judge", schema=VERDICT_SCHEMA, schema_name="verdict")

    async def ask(client, request: dict) -> None:
        try:
            response = await formats.create(
                client,
                model=cfg.model,
                messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": request["prompt"]}],
                temperature=0.0,
                max_tokens=cfg.max_tokens,
            )
        except (openai.APIConnectionError, openai.APIStatusError) as err:
            log.warning("judge: request for article %s failed after %d retries: %s", request["id"], cfg.max_retries, err)
            return  # not recorded: a rerun asks again
        content = response.choices[0].message.content or ""
        verdict, problem = parse_verdict(content)
        record = {"key": request["key"], "id": request["id"], "opponent": request["opponent"], "order": request["order"]}
        record |= {"raw": content, "error": problem, "verdict": verdict and verdict["best"], "explanation": verdict and verdict["explanation"]}
        done[request["key"]] = record
        with verdicts_file.open("a") as f:  # one event loop: appends never interleave
            f.write(json.dumps(record, ensure_ascii=False) + "\n")

    endpoint.ask_all(ask, todo, desc="judge", unit="verdict")


def _outcome(verdict: str | None, order: str) -> str | None:
    if verdict is None:
        return None
    if verdict == "tie":
        return "tie"
    candidate_position = "A" if order == "candidate_first" else "B"
    return "win" if verdict == candidate_position else "loss"


def judge_scalars(judged: dict) -> dict[str, float]:
    """judge.json's numbers, as the judge and report steps log them: `judge_<opponent>_<key>`,
    `judge_<opponent>_win_rate_ci_low|_ci_high` and `judge_<opponent>_trusted` (1 or 0, see `untrusted_opponents`)."""
    flat: dict[str, float | None] = {}
    for opponent, result in (judged.get("opponents") or {}).items():
        flat |= {f"judge_{opponent}_{k}": v for k, v in result.items() if k != "interval"}
        flat |= interval_bounds(f"judge_{opponent}_win_rate", result.get("interval"))
    untrusted = untrusted_opponents(judged)
    flat |= {f"judge_{opponent}_trusted": int(opponent not in untrusted) for opponent in judged.get("opponents") or {}}
    return finite_numbers(flat)


def finite_numbers(flat: dict) -> dict[str, float]:
    """The finite numbers of `flat` as floats (KFP Metrics); nulls, NaNs, booleans and the rest left out."""
    return {k: float(v) for k, v in flat.items() if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)}


def interval_bounds(key: str, interval) -> dict[str, float | None]:
    """`<key>_ci_low` and `<key>_ci_high` of a [low, high] interval; nothing for anything else."""
    if not isinstance(interval, list | tuple) or len(interval) != 2:
        return {}
    return {f"{key}_ci_low": interval[0], f"{key}_ci_high": interval[1]}
