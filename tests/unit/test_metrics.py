import pytest
from rouge_score import rouge_scorer

from resumo import metrics


PAIRS = [
    ("A ação começou em Lisboa. Depois seguiu para o Porto.", "A ação começou no Porto e terminou em Lisboa."),
    ("O pé-de-meia cresceu 20% em 2024.", "Em 2024 o pé-de-meia cresceu."),
    ("Fado é música portuguesa.", "O fado é um género musical português."),
]


def test_rouge_score_tokenizer_equals_rouge_score_exactly():
    predictions, references = [p for p, _ in PAIRS], [r for _, r in PAIRS]
    ours = metrics.rouge(predictions, references, tokenizer="rouge-score")
    scorer = rouge_scorer.RougeScorer(list(metrics.ROUGE_TYPES), use_stemmer=False)
    for name in metrics.ROUGE_TYPES:
        expected = sum(scorer.score(r, p)[name].fmeasure for p, r in zip(predictions, references)) / len(PAIRS)
        assert ours[name] == pytest.approx(expected, abs=1e-12)


def test_unicode_rouge_counts_accented_words_as_words():
    # 'ação' vs 'acao': the rouge-score tokenizer sees 'a o' in one and 'acao' in the other.
    assert metrics.rouge(["a ação"], ["a ação"])["rouge1"] == 1.0
    assert metrics.rouge(["ação"], ["acao"])["rouge1"] == 0.0
    assert metrics.rouge(["ação"], ["a o"], tokenizer="rouge-score")["rouge1"] == 1.0  # the distortion we avoid


def test_unicode_rouge1_by_hand():
    # prediction tokens: o pé de meia cresceu | reference: em 2024 o pé de meia cresceu
    scores = metrics.rouge(["O pé-de-meia cresceu."], ["Em 2024 o pé-de-meia cresceu."])
    precision, recall = 5 / 5, 5 / 7
    assert scores["rouge1"] == pytest.approx(2 * precision * recall / (precision + recall))


def test_rougelsum_uses_sentences():
    prediction = "Depois seguiu para o Porto. A ação começou em Lisboa."
    reference = "A ação começou em Lisboa. Depois seguiu para o Porto."
    scores = metrics.rouge([prediction], [reference])
    assert scores["rougeLsum"] == pytest.approx(1.0)
    assert scores["rougeL"] < 1.0


def test_bertscore_with_the_tiny_bert():
    same = metrics.bertscore_f1(["O fado é música."], ["O fado é música."], "tiny:bert", None, 4)
    different = metrics.bertscore_f1(["O fado é música."], ["Futebol em Lisboa no domingo."], "tiny:bert", None, 4)
    assert same == pytest.approx(1.0, abs=1e-5)
    assert different < same


def test_length_stats():
    stats = metrics.length_stats(["um dois", "", "um dois três quatro"])
    assert stats["words_mean"] == 2
    assert stats["empty_share"] == pytest.approx(1 / 3)


def test_mismatched_pairs_are_refused():
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        metrics.rouge(["a", "b"], ["a"])
