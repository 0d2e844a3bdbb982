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
      "baselines":   {"lead": {metric: mean}, "lead_at_<name>": {metric: mean}},   # the lead of each article (below)
      "baseline_intervals": {baseline: {metric: [low, high]}},
      "versus_lead": {name: {metric: {"difference": name - lead_at_<name>, "interval": [low, high], "n": articles}}},
      "lead":        {"n_words": the prompt's n_words, "rule": how the lead is taken},
      "input_guard": {name: {"range": [low, high], "longer": int, "shorter": int, "n": int, "share": float, "cut": int (score.long_inputs=cut)}},
      "config":      the resolved ScoreConfig
    }
    Lead baselines (quality metrics only): `lead` is the first prompt.n_words words of each
    article's prose (leading lines without sentence-final punctuation, a headline or byline,
    skipped); `lead_at_<name>` is cut, article by article, at <name>'s own output length.
    `versus_lead` is the number that says whether a model summarises or copies the opening.
    `input_guard` has the models whose resumo_model.json records the token-length range of
    their training texts; models.<name>.inputs_beyond_training_share repeats the share. With
    score.long_inputs=cut, such a model reads a longer article cut to that range (`fit_inputs`).
    Metrics (each present when its group is in `score.metrics`):
      rouge1, rouge2, rougeL, rougeLsum   mean F-measure (tokenizer: config.rouge_tokenizer)
      bertscore_f1                        mean BERTScore F1 (rescaled if config.bertscore_rescale)
      words_mean, words_p25, words_p50, words_p75   whitespace words per output (quartiles: no interval)
      empty_share                         share of outputs without a word
      not_portuguese_share                share of outputs of at least score.min_language_words words that resumo.lang does not judge Portuguese
      language_undetermined_share         share of non-empty outputs too short (under score.min_language_words) to judge their language
      repeated_trigram_share              mean share of an output's trigrams that repeat an earlier one
      too_short_share                     share of outputs under score.too_short_words words
      prompt_echo_share                   share of outputs that repeat the prompt's instructions (distill's prompt_echo rule)
      verbatim_prefix_share               share of non-empty outputs that are, token for token, the opening of their article
      longest_copied_span_mean            mean tokens in an output's longest run found verbatim in its article
      compression_ratio                   mean article words / output words (non-empty outputs)
      novel_1gram_share .. novel_3gram_share   mean share of an output's distinct n-grams not in its article
    A mean over no defined value is null.

`predictions.parquet`
    one row per test article: `id`, `reference`, `prediction_<name>` and, per
    model, the per-article value of each metric as `<metric>_<name>` (per-article
    names: rouge1.., bertscore_f1, words, empty, not_portuguese, language_undetermined,
    repeated_trigram_share, too_short, prompt_echo, compression_ratio, novel_<n>gram_share,
    verbatim_prefix, longest_copied_span; NaN where undefined), and the leads' quality
    metrics as `<metric>_lead` and `<metric>_lead_at_<name>`.

`generated/<name>.json`
    each model's summaries with what they depend on; a rerun into the same
    `--out` reuses them instead of generating again (scoring is redone).
"""

from __future__ import annotations

import gc
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from resumo import artifacts, generation, metrics, report, storage, tables
from resumo import models as model_refs
from resumo.config import PipelineConfig, PromoteConfig, PromptConfig, ScoreConfig
from resumo.errors import ConfigError, DataError
from resumo.stage import StageResult
from resumo.text import cut_to_tokens, lead_words, words

log = logging.getLogger(__name__)

CANDIDATE = "tuned"
PAIRS = "pairs"  # the one "model" of a pairs file
# The lead baselines' names in scores.json: the lead at the prompt's n_words, and at a model's own length.
LEAD, LEAD_AT = "lead", "lead_at_"
INPUT_TOKENS = "input_tokens"  # resumo_model.json: the token-length range of the training texts


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
    inputs: dict[str, list[str]] = {}
    guards: dict[str, dict] = {}
    for name, ref in all_models.items():
        inputs[name], guard = fit_inputs(ref, articles, cfg.long_inputs)
        if guard is not None:
            guards[name] = guard
            log.log(logging.WARNING if guard["longer"] + guard["shorter"] else logging.INFO, "score: %s", report.guard_line(name, guard))
    engine = _engine(cfg, all_models)
    try:
        for name, ref in all_models.items():
            predictions[name] = _generate_once(name, ref, inputs[name], test, shared_prompt, cfg, out_dir, engine)
    finally:
        if engine is not None:
            engine.close()
    for name, ref in all_models.items():
        prompt_used = generation.tuned_prompt(ref) or shared_prompt
        per_article[name] = evaluate(predictions[name], references, cfg, articles, prompt_used)
    result = summarize_scores(per_article, cfg, candidate)
    lead, lead_per_article = lead_baselines(predictions, per_article, references, articles, cfg, shared_prompt.n_words)
    for name, guard in guards.items():
        result["models"][name]["inputs_beyond_training_share"] = guard["share"]
    for name, means in result["models"].items():
        log.info("score: %s %s", name, {k: round(v, 4) for k, v in means.items() if v is not None})
    for line in report.lead_sentences({**lead, "config": {"confidence": cfg.confidence}}):
        log.info("score: %s", line)

    out_dir.mkdir(parents=True, exist_ok=True)
    columns = {"id": test["id"], "reference": references, **{f"prediction_{n}": p for n, p in predictions.items()}}
    columns |= {f"{metric}_{name}": values for name, values in (per_article | lead_per_article).items() for metric, values in values.items()}
    pd.DataFrame(columns).to_parquet(out_dir / artifacts.PREDICTIONS, index=False)
    scores = {**result, **lead, "input_guard": guards, "n_articles": len(test), "models_scored": all_models, "config": cfg.model_dump()}
    (out_dir / artifacts.SCORES).write_text(json.dumps(_json_safe(scores), indent=2, allow_nan=False))
    return result["models"]


def run_stage(cfg: ScoreConfig, promotion: PromoteConfig, pairs_dir: str | Path, models: dict[str, str], out_dir: str | Path) -> StageResult:
    """The stage, as the CLI and the component call it: `models` (name -> reference; `registry` is the
    production model of promotion.registry), production too when score.compare_production, then `run`.
    Returns every number of scores.json as metrics (named as resumo.report names them) and its content as outputs["scores"]."""
    refs = {name: generation.resolve_ref(ref, promotion.registry) for name, ref in models.items()}
    if cfg.compare_production:
        refs = with_production(refs, promotion.registry, promotion.production_name)
    run(cfg, pairs_dir, refs, out_dir)
    scores = json.loads(Path(out_dir, artifacts.SCORES).read_text())
    return StageResult(report.scalar_metrics(scores), {"scores": scores})


def pipeline_models(student: str, model_dir: str | Path) -> dict[str, str]:
    """What the pipeline scores: the untuned student (baseline) and the adapter train wrote in `model_dir` (tuned)."""
    return {"baseline": student, CANDIDATE: str(artifacts.adapter_in(model_dir))}


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


def run_pairs(cfg: ScoreConfig, pairs_file: str | Path, out_file: str | Path, prompt: PromptConfig | None = None) -> dict:
    """Score the `prediction`/`reference` rows of a JSONL or Parquet file.

    A `text` column (the article) adds compression, novel n-grams, the copy diagnostics and the lead
    baselines (cut at `prompt.n_words`, and at each prediction's own length), with the predictions'
    paired difference against the latter. `prompt` (default PromptConfig()) is what prompt_echo_share
    looks for and what sets the lead's length.

    Writes {rouge1: mean, ..., "intervals": {metric: [low, high]}, "n_pairs", "config"} and, with a
    `text` column, "baselines": {"lead"|"lead_at_own_length": {metric: mean}}, "baseline_intervals"
    and "versus_lead": {metric: {"difference", "interval", "n"}}.
    """
    prompt = prompt or PromptConfig()
    df = tables.read_table(pairs_file, required=("prediction", "reference"))
    predictions, references = _strings(df, "prediction", pairs_file), _strings(df, "reference", pairs_file)
    articles = _strings(df, "text", pairs_file) if "text" in df.columns else None
    per_article = {PAIRS: evaluate(predictions, references, cfg, articles, prompt)}
    result = summarize_scores(per_article, cfg, candidate=None)
    scores = {**result["models"][PAIRS], "intervals": result["intervals"][PAIRS], "n_pairs": len(df), "bootstrap": result["bootstrap"], "config": cfg.model_dump()}
    if articles is not None:
        lead, _ = lead_baselines({PAIRS: predictions}, per_article, references, articles, cfg, prompt.n_words)
        if lead:
            own = f"{LEAD_AT}{PAIRS}"
            rename = {own: "lead_at_own_length"}
            scores["baselines"] = {rename.get(k, k): v for k, v in lead["baselines"].items()}
            scores["baseline_intervals"] = {rename.get(k, k): v for k, v in lead["baseline_intervals"].items()}
            scores["versus_lead"] = lead["versus_lead"][PAIRS]
            scores["lead"] = lead["lead"]
            for line in report.lead_sentences({**lead, "config": {"confidence": cfg.confidence}}):
                log.info("score: %s", line.replace(PAIRS, "predictions", 1))
    Path(out_file).parent.mkdir(parents=True, exist_ok=True)
    Path(out_file).write_text(json.dumps(_json_safe(scores), indent=2, allow_nan=False))
    return scores


@dataclass
class Summarized:
    rows: int  # rows written, each with its summary
    guard: str | None  # the input-length guard's line, when the model records the lengths it was trained on


def summarize_file(cfg: PipelineConfig, model: str, input_file: Path, output_file: Path, column: str = "prediction", source: str | None = None) -> Summarized:
    """Add `model`'s summary of each row's `text` to a JSONL or Parquet file, in a new column `column`.

    `model` is any reference generation.resolve_ref takes (`registry`: production of promote.registry);
    a model not ours is asked with `cfg.prompt`. `output_file` is Parquet if it ends in .parquet, else JSONL.
    `source` names the input in errors (the URI it was downloaded from; default: `input_file`).
    """
    df = tables.read_table(input_file, required=("text",))
    if column in df.columns:
        raise ConfigError(f"--in {source or input_file} already has a column {column!r}, which --column {column} would overwrite; name another with --column")
    ref = generation.resolve_ref(model, cfg.promote.registry)
    texts, guard = fit_inputs(ref, list(df["text"]), cfg.score.long_inputs)
    loaded = generation.load(ref)
    df[column] = generation.summarize(loaded, texts, loaded.prompt or cfg.prompt, cfg.score.batch_size, cfg.score.max_new_tokens)
    output_file = Path(output_file)
    df.to_parquet(output_file, index=False) if output_file.suffix == ".parquet" else df.to_json(output_file, orient="records", lines=True, force_ascii=False)
    return Summarized(len(df), guard and report.guard_line(model, guard))


def evaluate(
    predictions: list[str], references: list[str], cfg: ScoreConfig, articles: list[str] | None = None, prompt: PromptConfig | None = None
) -> dict[str, np.ndarray]:
    """Per-article values of every metric in `cfg.metrics`; `prompt`, the one the model was asked with, adds prompt_echo."""
    per_article: dict[str, np.ndarray] = {}
    if "rouge" in cfg.metrics:
        per_article |= metrics.rouge_per_pair(predictions, references, cfg.rouge_tokenizer, cfg.rouge_stem)
    if "bertscore" in cfg.metrics:
        per_article["bertscore_f1"] = metrics.bertscore_per_pair(
            predictions, references, cfg.bertscore_model, cfg.bertscore_num_layers, cfg.batch_size, cfg.bertscore_rescale, cfg.bertscore_baseline_path
        )
    if "stats" in cfg.metrics:
        per_article |= metrics.output_stats(predictions, articles, cfg.min_language_words, cfg.too_short_words, prompt)
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


def lead_baselines(
    predictions: dict[str, list[str]],
    per_article: dict[str, dict[str, np.ndarray]],
    references: list[str],
    articles: list[str],
    cfg: ScoreConfig,
    n_words: int,
) -> tuple[dict, dict[str, dict[str, np.ndarray]]]:
    """The lead of each article scored like a model, and each model's paired difference against it.

    Two leads (`resumo.text.lead_words`: the first words of the article's prose, a headline or
    byline line skipped): `lead`, cut at the prompt's `n_words`; and `lead_at_<model>`, cut per
    article at that model's own output length in words, so length alone cannot explain a gap. A
    model's difference against `lead_at_<model>`, with its paired bootstrap interval, says whether
    it summarises or copies the opening: an interval above 0 beats copying at cfg.confidence.
    Only the quality metrics (ROUGE, BERTScore) are computed for leads. Returns scores.json's
    "baselines", "baseline_intervals", "versus_lead" and "lead" ({} without a quality metric),
    and the per-article values (for predictions.parquet).
    """
    quality = [m for m in cfg.metrics if m != "stats"]
    if not quality:
        return {}, {}
    quality_cfg = cfg.model_copy(update={"metrics": quality})
    leads = {LEAD: [lead_words(a, n_words) for a in articles]}
    for name, outputs in predictions.items():
        leads[f"{LEAD_AT}{name}"] = [lead_words(a, len(words(p))) for a, p in zip(articles, outputs)]
    lead_per_article = {name: evaluate(outputs, references, quality_cfg) for name, outputs in leads.items()}
    summary = summarize_scores(lead_per_article, cfg, candidate=None)
    boot = summary["bootstrap"]
    versus = {
        name: {
            metrics.MEAN_NAMES.get(metric, metric): metrics.paired_difference(per_article[name][metric], own[metric], **boot)
            for metric in own
            if metric in per_article[name]
        }
        for name in predictions
        for own in [lead_per_article[f"{LEAD_AT}{name}"]]
    }
    lead = {
        "baselines": summary["models"],
        "baseline_intervals": summary["intervals"],
        "versus_lead": versus,
        "lead": {"n_words": n_words, "rule": "first words of the article after its leading lines without sentence-final punctuation (headline, byline, dateline)"},
    }
    return lead, lead_per_article


def fit_inputs(ref: str, texts: list[str], long_inputs: str = "keep") -> tuple[list[str], dict | None]:
    """What the model `ref` reads of `texts`, and how many fall outside the token-length range of its training texts.

    The range is what `resumo train` records in resumo_model.json (`input_tokens`); a model that
    records none (not ours, or trained before it was recorded) reads every text whole and gets no
    guard (None). Lengths are counted as train counted them: the model's tokenizer on the text, no
    special tokens. With `long_inputs="cut"` (score.long_inputs), a text longer than the longest
    training text is cut to what fits in it (`resumo.text.cut_to_tokens`), and the guard counts it
    under "cut".
    """
    trained, path = _trained_range(ref)
    if not trained:
        return list(texts), None
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    lengths = token_lengths(tokenizer, texts)
    guard = count_beyond(lengths, trained["min"], trained["max"])
    if long_inputs != "cut":
        return list(texts), guard
    fitted = [cut_to_tokens(text, tokenizer, trained["max"]) if n > trained["max"] else text for text, n in zip(texts, lengths)]
    return fitted, guard | {"cut": guard["longer"]}


def _trained_range(ref: str) -> tuple[dict | None, Path]:
    """resumo_model.json's `input_tokens` of the model `ref` (None where it records none), and the model's folder."""
    path = Path(model_refs.resolve(ref))
    meta_file = path / artifacts.MODEL_META
    return (json.loads(meta_file.read_text()).get(INPUT_TOKENS) if meta_file.is_file() else None), path


def token_lengths(tokenizer, texts: list[str]) -> list[int]:
    """Tokens of each text alone (no special tokens, no prompt): how train records its range and the guard counts."""
    return [len(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]] if texts else []


def training_input_record(tokenizer, texts: list[str]) -> dict:
    """resumo_model.json's `input_tokens`: the token-length range of the texts a model is trained on."""
    lengths = token_lengths(tokenizer, texts)
    return {"min": min(lengths), "max": max(lengths), "n": len(lengths), "unit": "tokens of the article text, the model's tokenizer, no special tokens"}


def count_beyond(lengths: list[int], low: int, high: int) -> dict:
    """scores.json's `input_guard` entry: the range, how many lengths lie above and below it, and their share."""
    longer, shorter = sum(n > high for n in lengths), sum(n < low for n in lengths)
    return {"range": [low, high], "longer": longer, "shorter": shorter, "n": len(lengths), "share": (longer + shorter) / len(lengths) if lengths else 0.0}


def _comparison_set(models: dict[str, str], reference_models: dict[str, str]) -> dict[str, str]:
    clash = sorted(set(models) & set(reference_models))
    if clash:
        raise ConfigError(f"score.reference_models reuses the name(s) {clash} of a scored model; rename them")
    both = {**models, **reference_models}
    taken = sorted(name for name in both if name == LEAD or name.startswith(LEAD_AT))
    if taken:
        raise ConfigError(f"model name(s) {taken} are kept for the lead baselines ({LEAD!r}, {LEAD_AT!r}<model>); rename them")
    return both


def _engine(cfg: ScoreConfig, refs: dict[str, str]):
    """score.engine=vllm: one vLLM engine per base model, each adapter of it a LoRA request (resumo.vllm_engine)."""
    if cfg.engine != "vllm":
        return None
    from resumo import vllm_engine

    return vllm_engine.ScoreEngine({name: generation.base_and_adapter(ref) for name, ref in refs.items()}, cfg.max_new_tokens)


def _generate_once(
    name: str, ref: str, texts: list[str], test: pd.DataFrame, shared_prompt: PromptConfig, cfg: ScoreConfig, out_dir: Path, engine=None
) -> list[str]:
    """A model's summaries of `texts` (the test articles as it reads them, `fit_inputs`), kept in
    `out_dir/generated/<name>.json` so a rerun after a crash skips the models already done.

    They are reused only for the same reference, files (names, sizes, times), prompt, articles, long-input rule and token limit.
    """
    key = {
        "ref": ref,
        "files": _fingerprint(ref),
        "prompt": (generation.tuned_prompt(ref) or shared_prompt).model_dump(),
        "ids": [str(i) for i in test["id"]],
        "long_inputs": cfg.long_inputs,
        "max_new_tokens": cfg.max_new_tokens,
    }
    saved = out_dir / artifacts.GENERATED / f"{name}.json"
    if saved.exists():
        previous = json.loads(saved.read_text())
        if previous.get("key") == key:
            log.info("score: %s reuses %d summaries from %s", name, len(previous["predictions"]), saved)
            return previous["predictions"]
    if engine is not None:
        predictions = engine.summarize(name, texts, generation.tuned_prompt(ref) or shared_prompt)
    else:
        predictions = _generate(ref, texts, shared_prompt, cfg, desc=f"score {name}")
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
        return generation.summarize(loaded, texts, loaded.prompt or shared_prompt, cfg.batch_size, cfg.max_new_tokens, desc=desc, engine=cfg.engine)
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
