"""Versioned summarisation prompts, shared by the teacher, the student and scoring.

A change of wording is a new version: the version is part of the teacher cache
key and is saved with every tuned model, so a model is always asked in the
words it was tuned on.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from resumo.config import PromptConfig
from resumo.text import unicode_tokens


@dataclass(frozen=True)
class Prompt:
    version: str
    template: str

    def render(self, text: str, n_words: int) -> str:
        return self.template.format(text=text.strip(), n_words=n_words)

    @property
    def sha256(self) -> str:
        """Hash of the wording: the teacher cache keys on it, so even an edit without a new version misses the cache."""
        return hashlib.sha256(self.template.encode("utf-8")).hexdigest()


# The original study's instructions (DESIGN.md): the assistant writes summaries of
# Portuguese texts, at most n_words words with all the main information; the text;
# then the request again.
PROMPTS = {
    "pt-v1": Prompt(
        "pt-v1",
        "Você é um assistente que escreve resumos de textos em português. "
        "O resumo deve ter no máximo {n_words} palavras e conter todas as informações principais do texto.\n\n"
        "Texto:\n{text}\n\n"
        "Escreva um resumo do texto acima com no máximo {n_words} palavras.",
    ),
}


# Words in a row that a summary may share with the prompt's instructions before it counts as an echo.
# The instructions are generic ("o resumo deve ter no máximo 40 palavras"), so an article quoting
# six of their words in order is rare; a base model repeating its prompt shares dozens.
ECHO_WORDS = 6


def echoes_instructions(summary: str, cfg: PromptConfig) -> bool:
    """Whether `summary` repeats ECHO_WORDS words in a row of the prompt's own instructions (the
    wording around the article, not the article, which an extractive summary rightly copies).

    A small or base model often answers with its prompt ("Você é um assistente que escreve
    resumos de textos em português. O resumo deve ter no máximo..."), which is Portuguese and
    about the right length. The distill filter rejects such teacher answers (`prompt_echo`);
    score counts the student outputs that do it (`prompt_echo_share`).
    """
    template = PROMPTS[cfg.version].template
    runs = set()
    for part in template.split("{text}"):  # the instructions before and after the article, each on its own
        said = unicode_tokens(part.format(n_words=cfg.n_words))
        runs |= {tuple(said[i : i + ECHO_WORDS]) for i in range(len(said) - ECHO_WORDS + 1)}
    tokens = unicode_tokens(summary)
    return any(tuple(tokens[i : i + ECHO_WORDS]) in runs for i in range(len(tokens) - ECHO_WORDS + 1))


def user_message(text: str, cfg: PromptConfig) -> list[dict[str, str]]:
    """The chat messages that ask for a summary of `text`; each backend applies its model's own chat template to them."""
    return [{"role": "user", "content": PROMPTS[cfg.version].render(text, cfg.n_words)}]
