from rouge_score import tokenize

from resumo.text import split_sentences, unicode_tokens


def test_sentences_respect_portuguese_abbreviations_and_initials():
    text = "O Sr. Silva nasceu no séc. XIX em Lisboa. Estudou com J. M. Pereira! Depois? Partiu para o Brasil em 1890."
    assert split_sentences(text) == [
        "O Sr. Silva nasceu no séc. XIX em Lisboa.",
        "Estudou com J. M. Pereira!",
        "Depois?",
        "Partiu para o Brasil em 1890.",
    ]


def test_sentences_break_at_paragraphs_and_keep_decimals():
    assert split_sentences("A taxa foi de 2.5 por cento\n\nNovo parágrafo. Fim.") == ["A taxa foi de 2.5 por cento", "Novo parágrafo.", "Fim."]


def test_unicode_tokens_keep_accents_split_hyphens_and_keep_digits():
    assert unicode_tokens("Ação, pé-de-meia e 1.º lugar em 2024!") == ["ação", "pé", "de", "meia", "e", "1", "º", "lugar", "em", "2024"]
    # The NFD spelling of 'ação' is the same token.
    assert unicode_tokens("Ac\u0327a\u0303o") == ["ação"]


def test_rouge_score_default_tokenizer_breaks_accented_words():
    """Why `unicode` is our default (DESIGN.md)."""
    assert tokenize.tokenize("ação", None) == ["a", "o"]
    assert unicode_tokens("ação") == ["ação"]
