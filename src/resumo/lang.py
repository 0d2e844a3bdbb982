"""Offline language identification: langid.py's model via py3langid (shipped in the wheel, numpy only).

Used by distill (reject a teacher answer not in Portuguese) and score (share of
outputs not in Portuguese), so both stages judge language the same way.
"""

from __future__ import annotations

from functools import lru_cache

import py3langid.langid as _langid

PORTUGUESE = "pt"


@lru_cache(maxsize=1)
def _identifier() -> _langid.LanguageIdentifier:
    # norm_probs turns langid's log-scores into a probability we can threshold.
    return _langid.LanguageIdentifier.from_model_file(_langid.MODEL_FILE, norm_probs=True)


def detect(text: str) -> tuple[str, float]:
    """The most likely language (ISO 639-1) and its probability; ("", 0.0) for text without letters."""
    if not any(ch.isalpha() for ch in text):
        return "", 0.0
    lang, prob = _identifier().classify(text)
    return lang, float(prob)


def is_portuguese(text: str, min_probability: float = 0.5) -> bool:
    lang, prob = detect(text)
    return lang == PORTUGUESE and prob >= min_probability
