"""ROUGE, BERTScore and length statistics of predicted against reference summaries."""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np

from resumo import models
from resumo.text import UnicodeTokenizer, split_sentences, words

log = logging.getLogger(__name__)

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")

# bert-score's default layer for mBERT (what lang="pt" picks); other encoders need it given.
DEFAULT_BERTSCORE_LAYERS = {"bert-base-multilingual-cased": 9}


def rouge(predictions: list[str], references: list[str], tokenizer: Literal["unicode", "rouge-score"] = "unicode") -> dict[str, float]:
    """Mean F-measures with `rouge_score`'s algorithms.

    `rouge-score` is exactly `RougeScorer(use_stemmer=False)`, as `evaluate` and the
    original study used it (its tokenizer drops non-ASCII letters). `unicode` keeps
    accented words whole. ROUGE-Lsum compares sentence by sentence, so texts are
    split with a Portuguese-aware splitter (rouge_score splits on newlines only).
    """
    from rouge_score import rouge_scorer

    _check_pairs(predictions, references)
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=False, tokenizer=UnicodeTokenizer() if tokenizer == "unicode" else None)
    totals = dict.fromkeys(ROUGE_TYPES, 0.0)
    for prediction, reference in zip(predictions, references):
        if tokenizer == "unicode":
            prediction, reference = _sentence_lines(prediction), _sentence_lines(reference)
        for name, score in scorer.score(reference, prediction).items():
            totals[name] += score.fmeasure
    return {name: total / len(predictions) for name, total in totals.items()}


def bertscore_f1(predictions: list[str], references: list[str], model: str, num_layers: int | None, batch_size: int) -> float:
    """Mean BERTScore F1, without baseline rescaling (as in the original study)."""
    import bert_score

    _check_pairs(predictions, references)
    layers = num_layers or DEFAULT_BERTSCORE_LAYERS.get(model)
    if layers is None:
        from transformers import AutoConfig

        layers = AutoConfig.from_pretrained(models.resolve(model)).num_hidden_layers
    _, _, f1 = bert_score.score(predictions, references, model_type=models.resolve(model), num_layers=layers, batch_size=batch_size, verbose=False)
    return float(f1.mean())


def length_stats(texts: list[str]) -> dict[str, float]:
    counts = np.array([len(words(t)) for t in texts], dtype=float)
    return {
        "words_mean": float(counts.mean()),
        "words_p25": float(np.percentile(counts, 25)),
        "words_p75": float(np.percentile(counts, 75)),
        "empty_share": float((counts == 0).mean()),
    }


def _sentence_lines(text: str) -> str:
    return "\n".join(split_sentences(text))


def _check_pairs(predictions: list[str], references: list[str]) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    if not predictions:
        raise ValueError("no pairs to score")
