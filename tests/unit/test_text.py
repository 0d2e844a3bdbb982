from rouge_score import tokenize

from resumo.text import lead_words, prose, split_sentences, unicode_tokens


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


NEWS = "Governo anuncia reforma da previdência\nPor Maria Souza\nBrasília, 12/03/2024\nO governo anunciou nesta terça-feira uma reforma. Ela muda a idade mínima.\nSem ponto final aqui"


def test_prose_skips_the_leading_lines_that_are_not_sentences():
    # headline, byline and dateline end in no sentence-final punctuation: the prose starts after them
    assert prose(NEWS) == "O governo anunciou nesta terça-feira uma reforma. Ela muda a idade mínima.\nSem ponto final aqui"
    # a line that ends a sentence behind closing quotes or brackets is prose
    assert prose('Título\nEle disse: "Vamos."\nFim.') == 'Ele disse: "Vamos."\nFim.'
    assert prose("Manchete\n(Fonte: agência.)") == "(Fonte: agência.)"
    # text that starts with prose, or has no sentence at all, is kept whole
    assert prose("Uma frase. Outra frase") == "Uma frase. Outra frase"
    assert prose("Só um título\nE outra linha") == "Só um título\nE outra linha"


def test_lead_words_are_the_first_words_of_the_prose():
    assert lead_words(NEWS, 4) == "O governo anunciou nesta"
    assert lead_words(NEWS, 0) == ""
    assert lead_words("Curto.", 10) == "Curto."
