"""Score: summarise the test split with each model and compare with the teacher's summaries.

    resumo score --pairs runs/pairs --model baseline=tiny:qwen2 --model tuned=runs/model/adapter --out runs/score
    resumo score --pairs pairs.jsonl --out scores.json --metrics rouge --rouge-tokenizer rouge-score

The first form (a pairs folder and models) is the pipeline stage; the second
scores given `prediction`/`reference` pairs and generates nothing.

The stage writes numbers only, under `--out` (resumo.report renders them):

`scores.json`
    {
      "models":      {name: {metric: mean}},            # what promote reads, e.g. models.tuned.rougeLsum
      "intervals":   {name: {metric: [low, high]}},     # percentile bootstrap over articles, every mean
      "candidate":   "tuned",                            # whose paired differences follow (None if absent)
      "differences": {other: {metric: {"difference": candidate - other, "interval": [low, high], "n": articles}}},
      "n_articles":  int,
      "models_scored": {name: model reference},
      "bootstrap":   {"resamples": int, "confidence": 0.95, "seed": int},
      "config":      the resolved ScoreConfig
    }
    Metrics (each present when its group is in `score.metrics`):
      rouge1, rouge2, rougeL, rougeLsum   mean F-measure (tokenizer: config.rouge_tokenizer)
      bertscore_f1                        mean BERTScore F1 (rescaled if config.bertscore_rescale)
      words_mean, words_p25, words_p50, words_p75   whitespace words per output (quartiles: no interval)
      empty_share                         share of outputs without a word
      not_portuguese_share                share of non-empty outputs resumo.lang does not judge Portuguese
      repeated_trigram_share              mean share of an output's trigrams that repeat an earlier one
      compression_ratio                   mean article words / output words (non-empty outputs)
      novel_1gram_share .. novel_3gram_share   mean share of an output's distinct n-grams not in its article
    A mean over no defined value is null.

`predictions.parquet`
    one row per test article: `id`, `reference`, `prediction_<name>` and, per
    model, the per-article value of each metric as `<metric>_<name>` (per-article
    names: rouge1.., bertscore_f1, words, empty, not_portuguese,
    repeated_trigram_share, compression_ratio, novel_<n>gram_share; NaN where undefined).

`generated/<name>.json`
    each model's summaries with what they depend on; a rerun into the same
    `--out` reuses them instead of generating again (scoring is redone).
"""

from __future__ import annotations

import gc
import json
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd

from resumo import artifacts, generation, metrics, storage, tables
from resumo import models as model_refs
from resumo.config import PromoteConfig, PromptConfig, ScoreConfig
from resumo.errors import ConfigError, DataError

log = logging.getLogger(__name__)

CANDIDATE = "tuned"


def run(
    cfg: ScoreConfig,
    pairs_dir: str | Path,
    models: dict[str, str],
    out_dir: str | Path,
    prompt: PromptConfig | None = None,
    candidate: str = CANDIDATE,
) -> dict[str, dict[str, float]]:
    """Score every model in `models` (name -> reference) and `cfg.reference_models` on the usable test pairs.

    Each model is asked with the prompt it was tuned on; a model that is not ours
    (the untuned baseline, a reference model) gets `prompt`, or else the first
    tuned model's prompt, so every side of a comparison is asked alike. Models
    are loaded one at a time. Returns the means, as under "models" in scores.json.
    """
    out_dir = Path(out_dir)
    all_models = _comparison_set(models, cfg.reference_models)
    test = _test_pairs(cfg, pairs_dir)
    references, articles = list(test["summary"]), list(test["text"])
    shared_prompt = prompt or next((p for p in map(generation.tuned_prompt, all_models.values()) if p), PromptConfig())

    predictions: dict[str, list[str]] = {}
    per_article: dict[str, dict[str, np.ndarray]] = {}
    for name, ref in all_models.items():
        predictions[name] = _generate_once(name, ref, test, shared_prompt, cfg, out_dir)
        per_article[name] = evaluate(predictions[name], references, cfg, articles)
    result = summarize_scores(per_article, cfg, candidate)
    for name, means in result["models"].items():
        log.info("score: %s %s", name, {k: round(v, 4) for k, v in means.items() if v is not None})

    out_dir.mkdir(parents=True, exist_ok=True)
    columns = {"id": test["id"], "reference": references, **{f"prediction_{n}": p for n, p in predictions.items()}}
    columns |= {f"{metric}_{name}": values for name, values in per_article.items() for metric, values in values.items()}
    pd.DataFrame(columns).to_parquet(out_dir / artifacts.PREDICTIONS, index=False)
    scores = {**result, "n_articles": len(test), "models_scored": all_models, "config": cfg.model_dump()}
    (out_dir / artifacts.SCORES).write_text(json.dumps(_json_safe(scores), indent=2, allow_nan=False))
    return result["models"]


def run_stage(cfg: ScoreConfig, promotion: PromoteConfig, pairs_dir: str | Path, models: dict[str, str], out_dir: str | Path) -> dict:
    """The stage, as the CLI and the component call it: `models` (name -> reference; `registry` is the
    production model of promotion.registry), production too when score.compare_production, then `run`.
    Returns scores.json's content."""
    refs = {name: generation.resolve_ref(ref, promotion.registry) for name, ref in models.items()}
    if cfg.compare_production:
        refs = with_production(refs, promotion.registry, promotion.production_name)
    run(cfg, pairs_dir, refs, out_dir)
    return json.loads(Path(out_dir, artifacts.SCORES).read_text())


def with_production(models: dict[str, str], registry: str, name: str) -> dict[str, str]:
    """`models` and, when the registry has one, its production model as `name`.

    Scored on the same test articles as the candidate, production's numbers are
    what promote's gates compare with; the scores stored when it was promoted
    came from another run's articles.
    """
    try:
        production = generation.production_model(registry)
    except ConfigError:  # nothing promoted yet
        log.info("score: nothing promoted to %s yet; no production model to compare", registry)
        return models
    if production in models.values():  # asked for by name already (`--model x=registry`)
        return models
    if name in models:
        raise ConfigError(f"promote.production_name {name!r} is also the name of a scored model; rename it")
    return {**models, name: production}


def run_pairs(cfg: ScoreConfig, pairs_file: str | Path, out_file: str | Path) -> dict:
    """Score the `prediction`/`reference` rows of a JSONL or Parquet file; a `text` column (the article) adds compression and novel n-grams.

    Writes {rouge1: mean, ..., "intervals": {metric: [low, high]}, "n_pairs", "config"}.
    """
    df = tables.read_table(pairs_file, required=("prediction", "reference"))
    predictions, references = _strings(df, "prediction", pairs_file), _strings(df, "reference", pairs_file)
    articles = _strings(df, "text", pairs_file) if "text" in df.columns else None
    result = summarize_scores({"pairs": evaluate(predictions, references, cfg, articles)}, cfg, candidate=None)
    scores = {**result["models"]["pairs"], "intervals": result["intervals"]["pairs"], "n_pairs": len(df), "bootstrap": result["bootstrap"], "config": cfg.model_dump()}
    Path(out_file).parent.mkdir(parents=True, exist_ok=True)
    Path(out_file).write_text(json.dumps(_json_safe(scores), indent=2, allow_nan=False))
    return scores


def evaluate(predictions: list[str], references: list[str], cfg: ScoreConfig, articles: list[str] | None = None) -> dict[str, np.ndarray]:
    """Per-article values of every metric in `cfg.metrics`."""
    per_article: dict[str, np.ndarray] = {}
    if "rouge" in cfg.metrics:
        per_article |= metrics.rouge_per_pair(predictions, references, cfg.rouge_tokenizer, cfg.rouge_stem)
    if "bertscore" in cfg.metrics:
        per_article["bertscore_f1"] = metrics.bertscore_per_pair(
            predictions, references, cfg.bertscore_model, cfg.bertscore_num_layers, cfg.batch_size, cfg.bertscore_rescale, cfg.bertscore_baseline_path
        )
    if "stats" in cfg.metrics:
        per_article |= metrics.output_stats(predictions, articles)
    return per_article


def summarize_scores(per_article: dict[str, dict[str, np.ndarray]], cfg: ScoreConfig, candidate: str | None = CANDIDATE) -> dict:
    """Means, bootstrap intervals and the candidate's paired differences, keyed as in scores.json."""
    boot = {"resamples": cfg.bootstrap_resamples, "confidence": cfg.confidence, "seed": cfg.seed}
    means: dict[str, dict[str, float]] = {}
    intervals: dict[str, dict[str, list[float]]] = {}
    for name, values in per_article.items():
        named = {metrics.MEAN_NAMES.get(metric, metric): v for metric, v in values.items()}
        means[name], intervals[name] = metrics.means_and_intervals(named, **boot)
        if "words" in values:
            means[name] |= metrics.word_quartiles(values["words"])
    differences = {}
    if candidate in per_article:
        for other, values in per_article.items():
            if other != candidate:
                differences[other] = {
                    metrics.MEAN_NAMES.get(metric, metric): metrics.paired_difference(per_article[candidate][metric], v, **boot) for metric, v in values.items()
                }
    return {"models": means, "intervals": intervals, "candidate": candidate if candidate in per_article else None, "differences": differences, "bootstrap": boot}


def _comparison_set(models: dict[str, str], reference_models: dict[str, str]) -> dict[str, str]:
    clash = sorted(set(models) & set(reference_models))
    if clash:
        raise ConfigError(f"score.reference_models reuses the name(s) {clash} of a scored model; rename them")
    return {**models, **reference_models}


def _generate_once(name: str, ref: str, test: pd.DataFrame, shared_prompt: PromptConfig, cfg: ScoreConfig, out_dir: Path) -> list[str]:
    """A model's summaries, kept in `out_dir/generated/<name>.json` so a rerun after a crash skips the models already done.

    They are reused only for the same reference, files (names, sizes, times), prompt, articles and token limit.
    """
    key = {
        "ref": ref,
        "files": _fingerprint(ref),
        "prompt": (generation.tuned_prompt(ref) or shared_prompt).model_dump(),
        "ids": [str(i) for i in test["id"]],
        "max_new_tokens": cfg.max_new_tokens,
    }
    saved = out_dir / artifacts.GENERATED / f"{name}.json"
    if saved.exists():
        previous = json.loads(saved.read_text())
        if previous.get("key") == key:
            log.info("score: %s reuses %d summaries from %s", name, len(previous["predictions"]), saved)
            return previous["predictions"]
    predictions = _generate(ref, list(test["text"]), shared_prompt, cfg, desc=f"score {name}")
    storage.write_text(saved, json.dumps({"key": key, "predictions": predictions}, ensure_ascii=False))  # atomic: never half a file to reuse
    return predictions


def _fingerprint(ref: str) -> list | None:
    """Names, sizes and modification times of a local model folder's files; None for a hub id or s3:// prefix."""
    path = Path(model_refs.resolve(ref)) if ref.startswith(("tiny:", "real:")) else Path(ref.removeprefix("file://"))
    if not path.is_dir():
        return None
    return sorted([str(f.relative_to(path)), f.stat().st_size, f.stat().st_mtime_ns] for f in path.rglob("*") if f.is_file())


def _generate(ref: str, texts: list[str], shared_prompt: PromptConfig, cfg: ScoreConfig, desc: str) -> list[str]:
    """Summaries from one model, which is freed before the next loads (reference models can be large)."""
    loaded = generation.load(ref)
    try:
        return generation.summarize(loaded, texts, loaded.prompt or shared_prompt, cfg.batch_size, cfg.max_new_tokens, desc=desc)
    finally:
        del loaded
        gc.collect()
        _empty_cuda_cache()


def _empty_cuda_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _strings(df: pd.DataFrame, column: str, path: str | Path) -> list[str]:
    values = df[column]
    bad = values[~values.map(lambda v: isinstance(v, str))]
    if not bad.empty:
        raise DataError(f"{path}: column `{column}` has {len(bad)} non-text value(s), first at row {bad.index[0]} ({bad.iloc[0]!r}); use \"\" for an empty text")
    return list(values)


def _json_safe(value):
    """NaN (a mean over nothing) as null, so scores.json is strict JSON."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _test_pairs(cfg: ScoreConfig, pairs_dir: str | Path) -> pd.DataFrame:
    df = tables.read_split(pairs_dir, "test", columns=["id", "text", "summary", "filter_reason"])
    usable = df[df["filter_reason"].isna()]
    if usable.empty:
        raise DataError(f"no usable test pairs in {pairs_dir} ({len(df)} rows, all rejected by the distill filter)")
    return usable.head(cfg.max_samples) if cfg.max_samples else usable
