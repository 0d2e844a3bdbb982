"""Score: summarise the test split with each model and compare with the teacher's summaries.

    resumo score --pairs runs/pairs --model baseline=tiny:qwen2 --model tuned=runs/model/adapter --out runs/score

Writes `scores.json` ({model: {rouge1, rouge2, rougeL, rougeLsum, bertscore_f1,
words_mean, ...}}), `predictions.parquet` and `report.md`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from resumo import generation, metrics, tables
from resumo.config import PromptConfig, ScoreConfig
from resumo.errors import DataError

log = logging.getLogger(__name__)


def run(cfg: ScoreConfig, pairs_dir: str | Path, models: dict[str, str], out_dir: str | Path, prompt: PromptConfig | None = None) -> dict[str, dict[str, float]]:
    """Score every model in `models` (name -> reference) on the usable test pairs.

    Each model is asked with the prompt it was tuned on; a model that is not ours
    (the untuned baseline) gets `prompt`, or else the first tuned model's prompt,
    so both sides of a comparison are asked alike.
    """
    out_dir = Path(out_dir)
    test = _test_pairs(cfg, pairs_dir)
    references = list(test["summary"])
    predictions: dict[str, list[str]] = {}
    scores: dict[str, dict[str, float]] = {}
    loaded = {name: generation.load(ref) for name, ref in models.items()}
    shared_prompt = prompt or next((m.prompt for m in loaded.values() if m.prompt), PromptConfig())
    for name, model in loaded.items():
        predictions[name] = generation.summarize(
            model, list(test["text"]), model.prompt or shared_prompt, cfg.batch_size, cfg.max_new_tokens, desc=f"score {name}"
        )
        scores[name] = evaluate(predictions[name], references, cfg)
        log.info("score: %s %s", name, {k: round(v, 4) for k, v in scores[name].items()})

    out_dir.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"id": test["id"], "reference": references, **{f"prediction_{n}": p for n, p in predictions.items()}}).to_parquet(
        out_dir / "predictions.parquet", index=False
    )
    (out_dir / "scores.json").write_text(json.dumps({"models": scores, "n_articles": len(test), "models_scored": models, "config": cfg.model_dump()}, indent=2))
    (out_dir / "report.md").write_text(markdown_table(scores, len(test)))
    return scores


def evaluate(predictions: list[str], references: list[str], cfg: ScoreConfig) -> dict[str, float]:
    return {
        **metrics.rouge(predictions, references, cfg.rouge_tokenizer),
        "bertscore_f1": metrics.bertscore_f1(predictions, references, cfg.bertscore_model, cfg.bertscore_num_layers, cfg.batch_size),
        **metrics.length_stats(predictions),
    }


def markdown_table(scores: dict[str, dict[str, float]], n_articles: int) -> str:
    columns = ["rouge1", "rouge2", "rougeL", "rougeLsum", "bertscore_f1", "words_mean"]
    lines = [
        f"# resumo scores ({n_articles} test articles)",
        "",
        "| model | " + " | ".join(columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for name, values in scores.items():
        lines.append(f"| {name} | " + " | ".join(f"{values[c]:.3f}" if c != "words_mean" else f"{values[c]:.0f}" for c in columns) + " |")
    return "\n".join(lines) + "\n"


def _test_pairs(cfg: ScoreConfig, pairs_dir: str | Path) -> pd.DataFrame:
    df = tables.read_split(pairs_dir, "test", columns=["id", "text", "summary", "filter_reason"])
    usable = df[df["filter_reason"].isna()]
    if usable.empty:
        raise DataError(f"no usable test pairs in {pairs_dir} ({len(df)} rows, all rejected by the distill filter)")
    return usable.head(cfg.max_samples) if cfg.max_samples else usable
