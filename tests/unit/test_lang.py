import pytest

from resumo import lang


@pytest.mark.parametrize(
    "text",
    [
        "O Brasil é o maior país da América do Sul e tem a maior floresta tropical do mundo.",
        "A cidade foi fundada em 1554 por padres jesuítas, que construíram um colégio no planalto.",
    ],
)
def test_portuguese_is_recognised(text):
    assert lang.detect(text)[0] == "pt"
    assert lang.is_portuguese(text)


@pytest.mark.parametrize(
    "text, code",
    [
        ("Here is a short summary of the article about the history of the city.", "en"),
        ("El río Amazonas es el más caudaloso del mundo y atraviesa varios países.", "es"),
    ],
)
def test_other_languages_are_not_portuguese(text, code):
    assert lang.detect(text)[0] == code
    assert not lang.is_portuguese(text)


def test_text_without_letters_has_no_language():
    assert lang.detect("1234 -- 5678") == ("", 0.0)
    assert not lang.is_portuguese("")
