"""Portuguese text helpers shared by the teacher, scoring and scraping, and cutting a text to a token budget."""

from __future__ import annotations

import re
import unicodedata

# Abbreviations after which a period does not end a sentence (lowercased, without the period).
ABBREVIATIONS = frozenset(
    """sr sra srs sras dr dra drs dras prof profa eng arq gen cel cap ten sgto pe fr d dom sto sta
    av r pç lg trav n nº no núm pág págs p pp cf ex etc vol vols ed eds séc sécs a.c d.c aprox
    jan fev mar abr mai jun jul ago set out nov dez km kg cm mm hab lda ltda cia s.a fig figs op cit
    i.e e.g vs""".split()
)

# A line that ends a sentence: final punctuation, then perhaps closing quotes or brackets.
_ENDS_A_SENTENCE = re.compile(r"[.!?…][\"'»”)\]]*\s*$")
_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"'»”)]*\s+(?=[\"'«“(]?[A-ZÀ-ÖØ-Þ0-9])")
_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def split_sentences(text: str) -> list[str]:
    """Split Portuguese prose into sentences, keeping abbreviations ('Sr.', 'séc.') and initials intact."""
    sentences: list[str] = []
    for paragraph in re.split(r"\n\s*\n|\n", text):
        start = 0
        for match in _SENTENCE_END.finditer(paragraph):
            candidate = paragraph[start : match.start()].rstrip()
            last_word = candidate.rsplit(None, 1)[-1] if candidate else ""
            stem = last_word.rstrip(".!?…\"'»”)").lower()
            # A period after an abbreviation or a single letter (an initial) is not a sentence end.
            if last_word.endswith(".") and (stem in ABBREVIATIONS or (len(stem) == 1 and stem.isalpha())):
                continue
            sentences.append(paragraph[start : match.end()].strip())
            start = match.end()
        tail = paragraph[start:].strip()
        if tail:
            sentences.append(tail)
    return [s for s in sentences if s]


def words(text: str) -> list[str]:
    """Whitespace-separated words, the unit of the original study's word counts."""
    return text.split()


def unicode_tokens(text: str) -> list[str]:
    """NFC, lowercase, maximal runs of Unicode letters or digits: 'Ação-2024' -> ['ação', '2024']."""
    return _WORD.findall(unicodedata.normalize("NFC", text).lower())



def prose(text: str) -> str:
    """`text` without its leading lines that are not sentences: a headline, a byline, a dateline.

    A line is a sentence when it ends in sentence-final punctuation (. ! ? …, then perhaps
    closing quotes or brackets); a news text's "lead" would otherwise be its headline. Only
    leading lines go, and a text with no such line at all is kept whole (a one-line text cut
    mid-sentence is still prose).
    """
    lines = text.strip().split("\n")
    for i, line in enumerate(lines):
        if _ENDS_A_SENTENCE.search(line):
            return "\n".join(lines[i:]).strip()
    return text.strip()


def lead_words(text: str, n_words: int) -> str:
    """The first `n_words` words of the text's prose (`prose`): the lead baseline's summary."""
    return " ".join(words(prose(text))[: max(n_words, 0)])


def truncate_to_budget(text: str, tokenizer, budget: int) -> tuple[str, int]:
    """Leading whole paragraphs whose tokens fit in `budget`; ('', 0) if the first does not."""
    paragraphs = text.split("\n\n")
    lengths = [len(ids) for ids in tokenizer(paragraphs, add_special_tokens=False)["input_ids"]]
    sep = len(tokenizer("\n\n", add_special_tokens=False)["input_ids"])
    kept, total = [], 0
    for paragraph, n in zip(paragraphs, lengths):
        cost = n + (sep if kept else 0)
        if total + cost > budget:
            break
        kept.append(paragraph)
        total += cost
    if not kept:
        return "", 0
    truncated = "\n\n".join(kept)
    return truncated, len(tokenizer(truncated, add_special_tokens=False)["input_ids"])


def cut_to_tokens(text: str, tokenizer, budget: int) -> str:
    """The text within `budget` tokens: its leading whole paragraphs (`truncate_to_budget`), or,
    where even the first paragraph is longer, that paragraph's first `budget` tokens."""
    kept, _ = truncate_to_budget(text, tokenizer, budget)
    if kept:
        return kept
    return tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"][:budget])
