"""Versioned summarisation prompts, shared by the teacher, the student and scoring.

A change of wording is a new version: the version is part of the teacher cache
key and is saved with every tuned model, so a model is always asked in the
words it was tuned on.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from resumo.config import PromptConfig


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


def user_message(text: str, cfg: PromptConfig) -> list[dict[str, str]]:
    """The chat messages that ask for a summary of `text`; each backend applies its model's own chat template to them."""
    return [{"role": "user", "content": PROMPTS[cfg.version].render(text, cfg.n_words)}]
