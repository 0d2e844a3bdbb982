"""ROUGE, BERTScore, output statistics and bootstrap intervals, per article and as means.

Every metric is first computed per article (one value per prediction, NaN where
it is undefined, e.g. the compression ratio of an empty summary), so that means,
bootstrap confidence intervals and paired differences between models all come
from the same numbers that `predictions.parquet` stores.

ROUGE tokenizers (`tokenizer=`):
- `unicode` (default): NFC, lowercase, a token is a maximal run of Unicode
  letters or digits (`resumo.text.unicode_tokens`). So "Ação" and "ação" are one
  token, "guarda-chuva" is two ("guarda", "chuva"), "1554" is one, and a decimal
  "3,5" is two tokens ("3", "5"): punctuation inside numbers splits like any
  other, which keeps the rule one line and still matches "3,5" with "3,5" as a
  bigram. Optional Portuguese Snowball stemming (nltk's) with `stem=True`.
  ROUGE-Lsum compares sentence by sentence on `resumo.text.split_sentences`.
- `rouge-score`: exactly `rouge_score.rouge_scorer.RougeScorer(use_stemmer=False)`
  as `evaluate` and the original study ran it: its tokenizer drops every
  non-ASCII letter ("ação" -> "a o") and its ROUGE-Lsum splits on newlines only.
  Kept so our numbers can be set beside published ones.
The LCS and n-gram algorithms are `rouge_score`'s in both cases.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import lru_cache
from typing import Literal

import numpy as np

from resumo import lang, models, prompts
from resumo.config import PromptConfig
from resumo.errors import ConfigError
from resumo.text import prose, split_sentences, unicode_tokens, words

log = logging.getLogger(__name__)

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")
RougeTokenizerName = Literal["unicode", "rouge-score"]

# bert-score's default layer for mBERT (what lang="pt" picks); other encoders need it given.
DEFAULT_BERTSCORE_LAYERS = {"bert-base-multilingual-cased": 9}
# bert-score looks its rescaling baselines up by language and model name.
BERTSCORE_LANG = "pt"

NOVEL_NGRAM_SIZES = (1, 2, 3)
WORD_QUARTILES = {"words_p25": 25, "words_p50": 50, "words_p75": 75}


# --- ROUGE --------------------------------------------------------------------


class RougeTokenizer:
    """The `unicode` tokenizer as a `rouge_score` tokenizer object, optionally stemming (Portuguese Snowball)."""

    def __init__(self, stem: bool = False):
        self.stem = stem
        if stem:
            from nltk.stem.snowball import SnowballStemmer

            # Stems are cached: a corpus repeats its words, and Snowball is pure Python.
            self._stem = lru_cache(maxsize=200_000)(SnowballStemmer("portuguese").stem)

    def tokenize(self, text: str) -> list[str]:
        tokens = unicode_tokens(text)
        return [self._stem(t) for t in tokens] if self.stem else tokens


def rouge_per_pair(predictions: Sequence[str], references: Sequence[str], tokenizer: RougeTokenizerName = "unicode", stem: bool = False) -> dict[str, np.ndarray]:
    """F-measure of each prediction against its reference, for each of ROUGE_TYPES."""
    from rouge_score import rouge_scorer

    _check_pairs(predictions, references)
    if tokenizer == "rouge-score":
        if stem:
            raise ConfigError("score.rouge_stem=true needs score.rouge_tokenizer=unicode; `rouge-score` is kept exactly as published (no stemmer)")
        scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=False)
        prepare = str
    elif tokenizer == "unicode":
        scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), tokenizer=RougeTokenizer(stem))
        # rouge_score's Lsum splits on newlines: give it one sentence per line.
        prepare = _sentence_lines
    else:
        raise ConfigError(f"score.rouge_tokenizer={tokenizer!r} is not one of 'unicode', 'rouge-score'")
    # A reference is prepared once even when several models are scored against it.
    references = [prepare(r) for r in references]
    scores = {name: np.empty(len(predictions)) for name in ROUGE_TYPES}
    for i, (prediction, reference) in enumerate(zip(predictions, references)):
        for name, score in scorer.score(reference, prepare(prediction)).items():
            scores[name][i] = score.fmeasure
    return scores


def rouge(predictions: Sequence[str], references: Sequence[str], tokenizer: RougeTokenizerName = "unicode", stem: bool = False) -> dict[str, float]:
    """Mean F-measures under rouge1, rouge2, rougeL, rougeLsum."""
    return {name: float(values.mean()) for name, values in rouge_per_pair(predictions, references, tokenizer, stem).items()}


def _sentence_lines(text: str) -> str:
    return "\n".join(split_sentences(text))


# --- BERTScore ----------------------------------------------------------------


def bertscore_per_pair(
    predictions: Sequence[str],
    references: Sequence[str],
    model: str,
    num_layers: int | None = None,
    batch_size: int = 16,
    rescale: bool = False,
    baseline_path: str | None = None,
) -> np.ndarray:
    """BERTScore F1 of each prediction against its reference.

    bert-score already batches by length: `bert_cos_score_idf` deduplicates all
    texts and sorts them by word count, longest first, before embedding, so a
    batch holds texts of similar length and little padding (tests/bench/bench_score.py
    measures what that is worth against input-order batches). With `rescale`,
    F1 becomes (F1 - b) / (1 - b) with b from bert-score's baseline file for
    (lang="pt", model) or from `baseline_path`.
    """
    _check_pairs(predictions, references)
    scorer = _bertscorer(model, num_layers, batch_size, rescale, baseline_path)
    # bert-score gives an empty text a raw F1 of 0, but on transformers 5 it crashes on one
    # (it calls the removed `build_inputs_with_special_tokens`): score only the others.
    scored = [i for i, (p, r) in enumerate(zip(predictions, references)) if p.strip() and r.strip()]
    empty_f1 = 0.0
    if rescale:
        baseline_f1 = float(scorer.baseline_vals[2])
        empty_f1 = (0.0 - baseline_f1) / (1 - baseline_f1)
    f1 = np.full(len(predictions), empty_f1)
    if scored:
        _, _, values = scorer.score([predictions[i] for i in scored], [references[i] for i in scored], batch_size=batch_size)
        f1[scored] = values.numpy()
    return f1


@lru_cache(maxsize=2)
def _bertscorer(model: str, num_layers: int | None, batch_size: int, rescale: bool, baseline_path: str | None):
    """One encoder load per configuration, however many models are scored with it."""
    import os

    import bert_score

    path = models.resolve(model)
    layers = num_layers or DEFAULT_BERTSCORE_LAYERS.get(model)
    if layers is None:
        from transformers import AutoConfig

        layers = AutoConfig.from_pretrained(path).num_hidden_layers
    if rescale:
        baseline_path = baseline_path or os.path.join(os.path.dirname(bert_score.__file__), "rescale_baseline", BERTSCORE_LANG, f"{path}.tsv")
        if not os.path.isfile(baseline_path):
            # bert-score would only warn and silently skip rescaling.
            raise ConfigError(
                f"score.bertscore_rescale=true but there is no baseline at {baseline_path} for bertscore_model={model!r}; "
                "set score.bertscore_baseline_path to a bert-score baseline TSV (columns LAYER,P,R,F) or turn rescaling off"
            )
    return bert_score.BERTScorer(
        model_type=path, num_layers=layers, batch_size=batch_size, lang=BERTSCORE_LANG, rescale_with_baseline=rescale, baseline_path=baseline_path
    )


# --- output statistics --------------------------------------------------------


def output_stats(
    predictions: Sequence[str],
    articles: Sequence[str] | None = None,
    min_language_words: int = 1,
    too_short_words: int | None = None,
    prompt: PromptConfig | None = None,
) -> dict[str, np.ndarray]:
    """Per-output statistics (NaN where undefined); their means are what scores.json reports.

    - words: whitespace words (the original study's unit); empty: 1.0 for an output with none.
    - not_portuguese: 1.0 if resumo.lang does not judge the output Portuguese; NaN for an output
      under `min_language_words` words (empty ones too), whose language is not judged.
    - language_undetermined: 1.0 for a non-empty output under `min_language_words` words; NaN for
      empty ones. A language guess on a few words is mostly wrong (ScoreConfig.min_language_words).
    - repeated_trigram_share: share of the output's trigrams (unicode tokens) that repeat an
      earlier one, a degenerate-loop detector; NaN under three tokens.
    - too_short (with `too_short_words`): 1.0 for an output under that many words, empty ones too.
    - prompt_echo (with `prompt`): 1.0 for an output that repeats the prompt's instructions
      (`resumo.prompts.echoes_instructions`, the distill filter's `prompt_echo` rule).
    - compression_ratio: article words / output words; NaN for empty outputs or without articles.
    - novel_{n}gram_share: share of the output's distinct n-grams absent from the article
      (0 = purely extractive); NaN without articles or n-grams.
    - verbatim_prefix: 1.0 if the output's unicode tokens are the first tokens of its article (or of
      the article's prose, `resumo.text.prose`): the output copies the opening. NaN for empty outputs.
    - longest_copied_span: unicode tokens in the longest run of the output found, in order, in its
      article; NaN for empty outputs.
    """
    if articles is not None:
        _check_pairs(predictions, articles)
    counts = np.array([len(words(p)) for p in predictions], dtype=float)
    judged = [0 < c and c >= min_language_words for c in counts]
    stats = {
        "words": counts,
        "empty": (counts == 0).astype(float),
        "not_portuguese": np.array([float(not lang.is_portuguese(p)) if ok else np.nan for p, ok in zip(predictions, judged)]),
        "language_undetermined": np.array([np.nan if c == 0 else float(not ok) for c, ok in zip(counts, judged)]),
        "repeated_trigram_share": np.array([_repeated_share(_ngrams(unicode_tokens(p), 3)) for p in predictions]),
    }
    if too_short_words is not None:
        stats["too_short"] = (counts < too_short_words).astype(float)
    if prompt is not None:
        stats["prompt_echo"] = np.array([float(prompts.echoes_instructions(p, prompt)) for p in predictions])
    if articles is None:
        return stats
    article_words = np.array([len(words(a)) for a in articles], dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        stats["compression_ratio"] = np.where(counts > 0, article_words / counts, np.nan)
    article_tokens = [unicode_tokens(a) for a in articles]
    prediction_tokens = [unicode_tokens(p) for p in predictions]
    for size in NOVEL_NGRAM_SIZES:
        stats[f"novel_{size}gram_share"] = np.array(
            [_novel_share(set(_ngrams(p, size)), set(_ngrams(a, size))) for p, a in zip(prediction_tokens, article_tokens)]
        )
    prose_tokens = [unicode_tokens(prose(a)) for a in articles]
    stats["verbatim_prefix"] = np.array(
        [np.nan if not p else float(p == a[: len(p)] or p == b[: len(p)]) for p, a, b in zip(prediction_tokens, article_tokens, prose_tokens)]
    )
    stats["longest_copied_span"] = np.array([_longest_copied_span(p, a) for p, a in zip(prediction_tokens, article_tokens)])
    return stats


# What the mean of a per-output statistic is called in scores.json (the others keep their name).
MEAN_NAMES = {
    "words": "words_mean",
    "empty": "empty_share",
    "not_portuguese": "not_portuguese_share",
    "language_undetermined": "language_undetermined_share",
    "too_short": "too_short_share",
    "prompt_echo": "prompt_echo_share",
    "verbatim_prefix": "verbatim_prefix_share",
    "longest_copied_span": "longest_copied_span_mean",
}
# The per-output statistics that say how much a model copies its input rather than summarises it.
COPY_DIAGNOSTICS = ("verbatim_prefix_share", "longest_copied_span_mean", "prompt_echo_share", "repeated_trigram_share", "too_short_share")


def word_quartiles(word_counts: np.ndarray) -> dict[str, float]:
    return {name: float(np.percentile(word_counts, q)) for name, q in WORD_QUARTILES.items()}


def _ngrams(tokens: list[str], size: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + size]) for i in range(len(tokens) - size + 1)]


def _repeated_share(grams: list[tuple[str, ...]]) -> float:
    return (len(grams) - len(set(grams))) / len(grams) if grams else float("nan")


def _longest_copied_span(output: list[str], article: list[str]) -> float:
    """Length of the longest run of `output` that appears contiguously in `article` (longest common substring).

    Only the article positions holding the current output token are visited, so the cost is the
    number of matching token pairs, not len(output) x len(article) (4,000-token articles).
    """
    if not output:
        return float("nan")
    where: dict[str, list[int]] = {}
    for j, token in enumerate(article):
        where.setdefault(token, []).append(j)
    best, previous = 0, {}
    for token in output:
        current = {j: previous.get(j - 1, 0) + 1 for j in where.get(token, ())}
        best = max(best, max(current.values(), default=0))
        previous = current
    return float(best)


def _novel_share(summary: set, article: set) -> float:
    return len(summary - article) / len(summary) if summary else float("nan")


# --- bootstrap ----------------------------------------------------------------


def bootstrap_interval(values: np.ndarray, resamples: int = 1000, confidence: float = 0.95, seed: int = 42) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean, resampling articles with replacement.

    NaNs (values undefined for an article) are left out first. Seeded, so the
    same values give the same interval. Fewer than two values: the interval is
    the value itself (or NaN) as there is nothing to resample.
    """
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return float("nan"), float("nan")
    if len(values) == 1 or resamples == 0:
        mean = float(values.mean())
        return mean, mean
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    # Chunks bound memory at ~8 MB of indices whatever the number of articles.
    chunk = max(1, 1_000_000 // len(values))
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        means[start:stop] = values[rng.integers(0, len(values), size=(stop - start, len(values)))].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def paired_difference(candidate: np.ndarray, other: np.ndarray, resamples: int = 1000, confidence: float = 0.95, seed: int = 42) -> dict:
    """Mean of candidate - other over the articles both define, with a paired bootstrap interval.

    Resampling the per-article differences keeps each article's pairing, so the
    interval is much narrower than the two models' separate intervals suggest
    when both vary with article difficulty. An interval above 0 means the
    candidate is better at this confidence.
    """
    candidate, other = np.asarray(candidate, dtype=float), np.asarray(other, dtype=float)
    if candidate.shape != other.shape:
        raise ValueError(f"paired values differ in length: {len(candidate)} and {len(other)}")
    differences = candidate - other
    defined = differences[~np.isnan(differences)]
    low, high = bootstrap_interval(defined, resamples, confidence, seed)
    return {"difference": float(defined.mean()) if len(defined) else float("nan"), "interval": [low, high], "n": int(len(defined))}


def means_and_intervals(per_article: dict[str, np.ndarray], resamples: int, confidence: float, seed: int) -> tuple[dict[str, float], dict[str, list[float]]]:
    """NaN-skipping means and bootstrap intervals for every per-article metric."""
    means, intervals = {}, {}
    for name, values in per_article.items():
        defined = values[~np.isnan(values)]
        means[name] = float(defined.mean()) if len(defined) else float("nan")
        intervals[name] = list(bootstrap_interval(values, resamples, confidence, seed))
    return means, intervals


def _check_pairs(predictions: Sequence[str], references: Sequence[str]) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    if not predictions:
        raise ValueError("no pairs to score")
