"""Distill: a teacher writes the target summary of every article.

    resumo distill --articles runs/articles --out runs/pairs
    resumo distill --articles runs/articles --out runs/pairs --set distill.teacher.backend=transformers

Writes `{train,val,test}.parquet`: the articles plus `summary`, `teacher`,
`prompt_version` and `filter_reason` (None when the summary is usable).
Rejected rows stay in the output with their reason; they are never dropped.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from resumo import tables
from resumo.config import DistillConfig, TeacherConfig
from resumo.errors import DataError
from resumo.text import split_sentences, words

log = logging.getLogger(__name__)

# Chat special tokens teachers leak into their text (the original study's targets kept <|eot_id|>).
_SPECIAL_TOKENS = re.compile(r"<\|[a-z_]+\|>|</?s>|\[/?INST\]")
# "Aqui está um resumo do texto:" and the like, at the very start.
_PREAMBLE = re.compile(r"^\s*(aqui (está|estão|vai|segue)|segue|este é)\b[^:\n]{0,80}:\s*", re.IGNORECASE)
_NO_TEXT = re.compile(r"não (há|existe|foi fornecido) (nenhum )?texto|there is no text|no text (was )?provided", re.IGNORECASE)


@dataclass
class DistillResult:
    counts: dict[str, int]  # summaries written, usable, and rejected per reason


def run(cfg: DistillConfig, articles_dir: str | Path, out_dir: str | Path) -> DistillResult:
    splits = {name: tables.read_split(articles_dir, name, columns=["id", "text"]) for name in tables.SPLITS}
    teacher = make_teacher(cfg.teacher)
    outputs = {}
    counts: Counter = Counter(written=0, usable=0)
    for name, df in splits.items():
        raw = teacher([str(t) for t in df["text"]], cfg)
        cleaned = [clean_summary(s) for s in raw]
        reasons = [filter_reason(s, cfg) for s in cleaned]
        outputs[name] = df.assign(
            summary=cleaned, teacher=teacher_name(cfg.teacher), prompt_version=cfg.prompt.version, filter_reason=reasons
        )
        counts["written"] += len(df)
        counts["usable"] += reasons.count(None)
        counts.update(r for r in reasons if r)
    if not (outputs["train"]["filter_reason"].isna()).any():
        raise DataError(f"every training summary was rejected ({dict(counts)}); check the teacher's output in the val/test rows or relax distill.min_words")
    for name, df in outputs.items():
        tables.write_split(df, out_dir, name)
    log.info("distill: %s", dict(counts))
    return DistillResult(counts=dict(counts))


def teacher_name(teacher: TeacherConfig) -> str:
    return "extractive-lead" if teacher.backend == "extractive" else f"{teacher.backend}:{teacher.model}"


def make_teacher(teacher: TeacherConfig):
    """A callable (texts, cfg) -> summaries, one per text, in order."""
    if teacher.backend == "extractive":
        return lambda texts, cfg: [lead_sentences(t, cfg.prompt.n_words) for t in texts]
    if teacher.backend == "transformers":
        return _transformers_teacher(teacher)
    return _vllm_teacher(teacher)


def lead_sentences(text: str, n_words: int) -> str:
    """The first sentences of `text` that fit in `n_words` words (at least one, cut if longer)."""
    kept: list[str] = []
    total = 0
    for sentence in split_sentences(text):
        n = len(words(sentence))
        if kept and total + n > n_words:
            break
        kept.append(sentence)
        total += n
    summary = " ".join(kept)
    return " ".join(words(summary)[:n_words])


def clean_summary(summary: str) -> str:
    summary = _SPECIAL_TOKENS.sub("", summary)
    summary = _PREAMBLE.sub("", summary, count=1)
    return summary.strip()


def filter_reason(summary: str, cfg: DistillConfig) -> str | None:
    n = len(words(summary))
    if n == 0:
        return "empty"
    if _NO_TEXT.search(summary):
        return "no_text_answer"
    if n < cfg.min_words:
        return "too_short"
    if n > cfg.prompt.n_words * cfg.max_words_ratio:
        return "too_long"
    return None


def _transformers_teacher(teacher: TeacherConfig):
    from resumo import generation

    loaded = generation.load(teacher.model)

    def summarize(texts: list[str], cfg: DistillConfig) -> list[str]:
        return generation.summarize(loaded, texts, cfg.prompt, teacher.batch_size, teacher.max_new_tokens, desc="distill")

    return summarize


def _vllm_teacher(teacher: TeacherConfig):  # pragma: no cover - needs a GPU and the vLLM image
    from vllm import LLM, SamplingParams

    from resumo import models, prompts

    llm = LLM(model=models.resolve(teacher.model))
    params = SamplingParams(temperature=0.0, max_tokens=teacher.max_new_tokens)

    def summarize(texts: list[str], cfg: DistillConfig) -> list[str]:
        chats = [prompts.user_message(t, cfg.prompt) for t in texts]
        return [out.outputs[0].text for out in llm.chat(chats, params, use_tqdm=True)]

    return summarize
