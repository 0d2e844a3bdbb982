import unicodedata

import numpy as np
import pytest
from rouge_score import rouge_scorer

from resumo import lang, metrics, wiki
from resumo.config import PromptConfig, ScoreConfig
from resumo.errors import ConfigError

pytestmark = pytest.mark.numerics  # make test-kernels reruns these on other CPU kernels

PAIRS = [
    ("A ação começou em Lisboa. Depois seguiu para o Porto.", "A ação começou no Porto e terminou em Lisboa."),
    ("O pé-de-meia cresceu 20% em 2024.", "Em 2024 o pé-de-meia cresceu."),
    ("Fado é música portuguesa.", "O fado é um género musical português."),
    ("Primeira linha.\nSegunda linha com mais palavras.", "Segunda linha.\nPrimeira linha com palavras."),
    ("", "Uma referência sem predição."),
    ("!!! ... ???", "Só pontuação na predição."),
    ("The same sentence in English, twice: the same sentence.", "The same sentence in English."),
    ("São Paulo, 25 de janeiro de 1554: fundação do colégio.", "Fundado em 1554, o colégio de São Paulo."),
]


def corpus_pairs(n=12):
    """Longer pairs from the bundled corpus: a lead against a later stretch of the same article."""
    texts = [t for t in wiki.bundled_texts() if len(t.split()) > 120][:n]
    return [(" ".join(t.split()[:60]), " ".join(t.split()[40:140])) for t in texts]


def test_rouge_score_tokenizer_equals_rouge_score_exactly():
    pairs = PAIRS + corpus_pairs()
    predictions, references = [p for p, _ in pairs], [r for _, r in pairs]
    ours = metrics.rouge_per_pair(predictions, references, tokenizer="rouge-score")
    scorer = rouge_scorer.RougeScorer(list(metrics.ROUGE_TYPES), use_stemmer=False)
    for name in metrics.ROUGE_TYPES:
        expected = [scorer.score(r, p)[name].fmeasure for p, r in pairs]
        assert list(ours[name]) == expected  # exact, pair by pair
    means = metrics.rouge(predictions, references, tokenizer="rouge-score")
    # Two float64 means of the same len(pairs) values in [0, 1], summed in any order, differ by at most
    # 2 len(pairs) 2**-53 (each sum's error is bounded by (n - 1) u times the sum of |terms|, here <= n).
    assert means["rougeLsum"] == pytest.approx(np.mean([scorer.score(r, p)["rougeLsum"].fmeasure for p, r in pairs]), abs=2 * len(pairs) * 2**-53)


def test_accents_and_case_are_one_token():
    # unicode: pred [ação, rápida], ref [a, ação, foi, rápida]
    # 2 common -> P = 2/2, R = 2/4, F = 2*1*.5/1.5 = 2/3. R-2: (ação rápida) is not in the reference -> 0.
    scores = metrics.rouge(["Ação rápida."], ["a ação foi rápida"])
    assert scores["rouge1"] == pytest.approx(2 / 3)
    assert scores["rouge2"] == 0.0
    # NFD input (a + combining tilde) and upper case are the same token after NFC + lowercase.
    assert metrics.rouge([unicodedata.normalize("NFD", "AÇÃO")], ["ação"])["rouge1"] == 1.0
    assert metrics.rouge(["ação"], ["acao"])["rouge1"] == 0.0
    # rouge-score's tokenizer sees 'a o' in 'ação': the distortion `unicode` avoids.
    assert metrics.rouge(["ação"], ["a o"], tokenizer="rouge-score")["rouge1"] == 1.0


def test_hyphens_split_words():
    # pred [guarda, chuva, azul], ref [o, guarda, chuva]
    # 2 common of 3 and 3 -> 2/3. R-2: (guarda chuva) common, 1 of 2 and 2 -> 1/2. R-L: LCS 'guarda chuva' = 2 -> 2/3.
    scores = metrics.rouge(["guarda-chuva azul"], ["o guarda chuva"])
    assert scores["rouge1"] == pytest.approx(2 / 3)
    assert scores["rouge2"] == pytest.approx(1 / 2)
    assert scores["rougeL"] == pytest.approx(2 / 3)


def test_digits_are_kept_and_decimals_split_at_the_comma():
    # pred [em, 1554, subiu, 3, 5], ref [subiu, 3, 5, em, 1554]
    # all 5 common -> 1. R-2: pred (em 1554)(1554 subiu)(subiu 3)(3 5), ref (subiu 3)(3 5)(5 em)(em 1554):
    # 3 common of 4 and 4 -> 3/4. R-L: LCS 'subiu 3 5' = 3 of 5 -> 3/5.
    scores = metrics.rouge(["Em 1554 subiu 3,5%."], ["subiu 3,5 em 1554"])
    assert scores["rouge1"] == pytest.approx(1.0)
    assert scores["rouge2"] == pytest.approx(3 / 4)
    assert scores["rougeL"] == pytest.approx(3 / 5)
    assert metrics.rouge(["3,5"], ["35"])["rouge1"] == 0.0


def test_unicode_rouge1_by_hand():
    # prediction tokens: o pé de meia cresceu | reference: em 2024 o pé de meia cresceu
    scores = metrics.rouge(["O pé-de-meia cresceu."], ["Em 2024 o pé-de-meia cresceu."])
    precision, recall = 5 / 5, 5 / 7
    assert scores["rouge1"] == pytest.approx(2 * precision * recall / (precision + recall))


def test_portuguese_stemming_is_optional():
    # Snowball stems: meninas, menina -> menin; cantavam, cantou -> cant; 'as' and 'a' stay apart.
    # stemmed R-1: pred [as, menin, cant], ref [a, menin, cant]: 2 of 3 and 3 -> 2/3; R-2: (menin cant) -> 1/2.
    prediction, reference = ["As meninas cantavam."], ["A menina cantou."]
    assert metrics.rouge(prediction, reference)["rouge1"] == 0.0
    stemmed = metrics.rouge(prediction, reference, stem=True)
    assert stemmed["rouge1"] == pytest.approx(2 / 3)
    assert stemmed["rouge2"] == pytest.approx(1 / 2)
    with pytest.raises(ConfigError, match="rouge_tokenizer=unicode"):
        metrics.rouge(prediction, reference, tokenizer="rouge-score", stem=True)


def test_rougelsum_uses_portuguese_sentences():
    prediction = "Depois seguiu para o Porto. A ação começou em Lisboa."
    reference = "A ação começou em Lisboa. Depois seguiu para o Porto."
    scores = metrics.rouge([prediction], [reference])
    assert scores["rougeLsum"] == pytest.approx(1.0)
    assert scores["rougeL"] < 1.0
    # rouge-score splits on newlines only, so its Lsum is its L on one-line texts.
    published = metrics.rouge([prediction], [reference], tokenizer="rouge-score")
    assert published["rougeLsum"] == published["rougeL"]


def test_bertscore_with_the_tiny_bert():
    same, different = metrics.bertscore_per_pair(["O fado é música."] * 2, ["O fado é música.", "Futebol em Lisboa no domingo."], "tiny:bert", batch_size=4)
    # Identical texts embed identically, so every token's best cosine is cos(x, x) = 1, up to
    # float32 rounding of a 64-dimensional norm (~64 * 6e-8 = 4e-6 relative).
    assert same == pytest.approx(1.0, abs=1e-5)
    assert different < same


def test_bertscore_rescaling_uses_the_baseline(tmp_path):
    predictions, references = ["O fado é música.", "Lisboa tem um rio."], ["Futebol em Lisboa no domingo.", "O rio Tejo passa em Lisboa."]
    raw = metrics.bertscore_per_pair(predictions, references, "tiny:bert", num_layers=2)
    baseline = tmp_path / "tiny.tsv"
    # bert-score reads the row of the layer used (2); F is the last column.
    baseline.write_text("LAYER,P,R,F\n0,0.1,0.1,0.1\n1,0.2,0.2,0.2\n2,0.5,0.5,0.5\n")
    rescaled = metrics.bertscore_per_pair(predictions, references, "tiny:bert", num_layers=2, rescale=True, baseline_path=str(baseline))
    np.testing.assert_allclose(rescaled, (raw - 0.5) / (1 - 0.5), rtol=1e-5)
    # an empty text scores a raw 0, as bert-score defines it, then rescaled like the rest
    empty = metrics.bertscore_per_pair(["", predictions[1]], references, "tiny:bert", num_layers=2, rescale=True, baseline_path=str(baseline))
    assert empty[0] == pytest.approx((0 - 0.5) / (1 - 0.5)) and empty[1] == pytest.approx(rescaled[1], rel=1e-5)
    assert metrics.bertscore_per_pair(["  "], ["Lisboa."], "tiny:bert", num_layers=2)[0] == 0.0
    with pytest.raises(ConfigError, match="bertscore_baseline_path"):
        metrics.bertscore_per_pair(predictions, references, "tiny:bert", num_layers=2, rescale=True)


def test_output_stats_on_crafted_outputs():
    predictions = [
        "um dois três um dois três",
        "",
        "Der Hund läuft schnell über die Straße.",
        "O rio Tejo atravessa a cidade, que recebeu muitos turistas no verão passado.",
    ]
    articles = [
        "um dois quatro cinco seis sete oito nove dez onze doze treze",
        "um artigo",
        "Der Hund läuft schnell über die Straße und bellt laut.",
        "O rio Tejo atravessa a cidade de Lisboa. A cidade recebeu muitos turistas no verão passado, mais do que em qualquer ano.",
    ]
    stats = metrics.output_stats(predictions, articles)
    np.testing.assert_array_equal(stats["words"], [6, 0, 7, 13])
    np.testing.assert_array_equal(stats["empty"], [0, 1, 0, 0])
    np.testing.assert_array_equal(stats["not_portuguese"], [stats["not_portuguese"][0], np.nan, 1, 0])
    # trigrams (um dois três)(dois três um)(três um dois)(um dois três): 1 of 4 repeats.
    assert stats["repeated_trigram_share"][0] == pytest.approx(1 / 4)
    assert stats["repeated_trigram_share"][3] == 0.0
    assert np.isnan(stats["repeated_trigram_share"][1])
    # 12 article words / 6 output words; undefined for the empty output.
    assert stats["compression_ratio"][0] == pytest.approx(2.0)
    assert np.isnan(stats["compression_ratio"][1])
    # distinct unigrams {um, dois, três}: 'três' is not in the article.
    assert stats["novel_1gram_share"][0] == pytest.approx(1 / 3)
    # a copied sentence has no novel n-grams; a paraphrased one has novel bigrams ('cidade que').
    assert stats["novel_1gram_share"][2] == 0.0 and stats["novel_2gram_share"][2] == 0.0
    assert 0 < stats["novel_2gram_share"][3] < 1


def test_a_short_portuguese_output_is_undetermined_not_foreign():
    headline = "Governo anuncia reforma"  # 3 Portuguese words that langid takes for another language
    assert not lang.is_portuguese(headline)  # what made not_portuguese_share count such outputs as foreign
    judged_anyway = metrics.output_stats([headline], min_language_words=1)
    assert judged_anyway["not_portuguese"][0] == 1.0
    stats = metrics.output_stats([headline, GERMAN, ""], min_language_words=ScoreConfig().min_language_words)
    np.testing.assert_array_equal(stats["not_portuguese"], [np.nan, 1.0, np.nan])  # left out; a long foreign output still counts
    np.testing.assert_array_equal(stats["language_undetermined"], [1.0, 0.0, np.nan])  # counted on its own; empty outputs in neither
    means, _ = metrics.means_and_intervals({metrics.MEAN_NAMES.get(k, k): v for k, v in stats.items()}, resamples=0, confidence=0.95, seed=0)
    assert means["not_portuguese_share"] == 1.0 and means["language_undetermined_share"] == 0.5


GERMAN = "Der Hund läuft jeden Morgen schnell über die breite Straße, bellt laut und kommt erst am Abend müde nach Hause zurück."


def test_copy_diagnostics_on_crafted_outputs():
    article = "Notícia de hoje\nA ponte nova abriu ao trânsito na segunda-feira. Liga as duas margens do rio e custou dez milhões."
    prompt = PromptConfig(n_words=40)
    predictions = [
        "A ponte nova abriu ao trânsito",  # the opening of the prose (the headline line skipped), word for word
        "Notícia de hoje. A ponte nova",  # the opening of the text itself, punctuation aside
        "Liga as duas margens do rio. A ponte abriu.",  # copied, but not from the start
        "Você é um assistente que escreve resumos de textos em português.",  # the prompt's first words
        "",
    ]
    stats = metrics.output_stats(predictions, [article] * 5, too_short_words=7, prompt=prompt)
    np.testing.assert_array_equal(stats["verbatim_prefix"], [1, 1, 0, 0, np.nan])
    # unicode tokens in the longest run found in the article: all 6, all 6, 'liga as duas margens do rio', only 'de'
    np.testing.assert_array_equal(stats["longest_copied_span"], [6, 6, 6, 1, np.nan])
    np.testing.assert_array_equal(stats["prompt_echo"], [0, 0, 0, 1, 0])
    np.testing.assert_array_equal(stats["too_short"], [1, 1, 0, 0, 1])  # 6, 6, 9, 11 and 0 words against 7


def test_longest_copied_span_equals_the_quadratic_longest_common_substring():
    rng = np.random.default_rng(0)
    for _ in range(200):
        a, b = (list(rng.integers(0, 4, size=rng.integers(1, 30)).astype(str)) for _ in range(2))
        brute = max(k for k in range(len(a) + 1) if k == 0 or any(a[i : i + k] == b[j : j + k] for i in range(len(a) - k + 1) for j in range(len(b) - k + 1)))
        assert metrics._longest_copied_span(a, b) == brute


def test_word_quartiles():
    words = metrics.output_stats(["um dois", "", "um dois três quatro", "um"])["words"]
    quartiles = metrics.word_quartiles(words)
    assert (quartiles["words_p25"], quartiles["words_p50"], quartiles["words_p75"]) == (0.75, 1.5, 2.5)


def test_bootstrap_interval_contains_the_mean_and_narrows_with_more_data():
    rng = np.random.default_rng(0)
    small, large = rng.uniform(size=30), rng.uniform(size=3000)
    for values in (small, large):
        low, high = metrics.bootstrap_interval(values, resamples=500)
        assert low < values.mean() < high
    small_width = np.subtract(*metrics.bootstrap_interval(small, resamples=500)[::-1])
    large_width = np.subtract(*metrics.bootstrap_interval(large, resamples=500)[::-1])
    # width shrinks like 1/sqrt(n): 100x the data, about a tenth of the width
    assert 0.05 < large_width / small_width < 0.2
    assert metrics.bootstrap_interval(small, resamples=500, seed=7) == metrics.bootstrap_interval(small, resamples=500, seed=7)


def test_bootstrap_skips_undefined_values():
    assert metrics.bootstrap_interval(np.array([np.nan, 0.5, np.nan])) == (0.5, 0.5)
    assert all(np.isnan(metrics.bootstrap_interval(np.array([np.nan]))))


def test_paired_difference_is_narrower_than_separate_intervals():
    rng = np.random.default_rng(1)
    difficulty = rng.uniform(0.1, 0.9, size=200)  # shared by both models: the pairing removes it
    baseline = difficulty + rng.normal(0, 0.02, size=200)
    tuned = baseline + 0.05 + rng.normal(0, 0.02, size=200)
    paired = metrics.paired_difference(tuned, baseline, resamples=500)
    assert paired["difference"] == pytest.approx(np.mean(tuned - baseline))
    low, high = paired["interval"]
    assert 0 < low < paired["difference"] < high
    tuned_low, tuned_high = metrics.bootstrap_interval(tuned, resamples=500)
    assert high - low < (tuned_high - tuned_low) / 5
    exact = metrics.paired_difference(np.array([0.3, 0.5]), np.array([0.2, 0.4]))
    assert exact["difference"] == pytest.approx(0.1) and exact["interval"] == pytest.approx([0.1, 0.1])


def test_mismatched_pairs_are_refused():
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        metrics.rouge(["a", "b"], ["a"])
