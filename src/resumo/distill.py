"""Distill: a teacher writes the target summary of every article.

    resumo distill --articles runs/articles --out runs/pairs
    resumo distill --articles runs/articles --out runs/pairs --set distill.teacher.backend=transformers
    resumo distill --articles runs/articles --out runs/pairs --set distill.cache=s3://resumo/cache/teacher

Writes `{train,val,test}.parquet`: the articles plus `summary` (cleaned),
`raw_summary` (the teacher's words), `teacher`, `prompt_version` and
`filter_reason` (None when the summary is usable). Rejected rows stay in the
output with their reason; they are never dropped.

With `distill.cache` set, answers are cached in object storage as each chunk of
`checkpoint_every` articles finishes (`resumo.distill_cache`): a rerun asks the
teacher only about new or changed articles, and a crashed run redoes only what
is missing. The pipeline runs `run_stage` (the shard step) on `distill.shards` parallel tasks
and `merge_stage` on their outputs; `run` does both in one process.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from resumo import artifacts, lang, prompts, run_cost, storage, tables
from resumo.config import DistillConfig
from resumo.distill_cache import TeacherCache, cache_key, key_material, revision_of
from resumo.errors import DataError
from resumo.stage import StageResult
from resumo.teachers import TeacherUnavailable, make_teacher, teacher_name
from resumo.text import words

log = logging.getLogger(__name__)

# Every reason a summary can be rejected for, in the order they are checked.
REASONS = ("teacher_error", "empty", "prompt_echo", "no_text_answer", "refusal", "too_short", "too_long", "not_portuguese")
_SPLIT = "__split"  # which split a row came from, while the splits are distilled together
COUNTS_FILE = artifacts.DISTILL_COUNTS
TRAFFIC = ("cache_hits", "teacher_answers")

# Chat special tokens teachers leak into their text (the original study's targets kept <|eot_id|>).
# An end-of-turn token ends the answer: anything after it is a new turn, not summary.
_END_OF_TURN = re.compile(r"<\|(?:eot_id|im_end|end|endoftext|eom_id)\|>|<end_of_turn>|</s>")
_ROLE_HEADER = re.compile(r"<\|start_header_id\|>.*?<\|end_header_id\|>|<start_of_turn>\w*", re.DOTALL)
_SPECIAL_TOKENS = re.compile(r"<\|[a-z_]+\|>|</?s>|\[/?INST\]|<(?:bos|eos|pad)>")
# "Aqui está um resumo do texto em 100 palavras:", "Claro! Segue o resumo:", "**Resumo:**".
_PREAMBLE = re.compile(
    r"^\s*(?:\*\*)?(?:(?:claro|certo|com certeza|ok|sure|certainly)\b[!,.]?\s*)?"
    r"(?:(?:aqui|segue|seguem|abaixo|este|esta|eis|o|um|here)\b[^\n:]{0,150}?\b(?:resumo|sumário|síntese|summary)\b[^\n:]{0,80}"
    r"|#*\s*(?:resumo|summary)\b[^\n:]{0,80})\s*(?:\*\*)?\s*:\s*(?:\*\*)?\s*",
    re.IGNORECASE,
)
# Trailing chatter: "(98 palavras)", "Contagem de palavras: 97", "Espero que isso ajude!".
_TRAILER = re.compile(
    r"\s*(?:\(\s*\d+\s+palavras\s*\)|(?:contagem|número|total) de palavras\s*:\s*\d+|espero que (?:isso|este resumo|o resumo) (?:ajude|seja útil)[^\n]*)\.?\s*$",
    re.IGNORECASE,
)
_NO_TEXT = re.compile(
    r"n[ãa]o (?:h[áa]|existe|foi (?:fornecido|enviado|incluído)) (?:nenhum )?texto|n[ãa]o (?:forneceu|enviou|incluiu) (?:nenhum |o )?texto"
    r"|o texto (?:est[áa]|parece estar) vazio|forne[çc]a o texto|there is no text|no text (?:was )?provided|please provide the text|the text is empty",
    re.IGNORECASE,
)
_REFUSAL = re.compile(
    r"^\W*(?:desculpe|lamento(?:,| mas)|sinto muito|i'?m sorry|sorry|i (?:cannot|can't|am unable))\b"
    r"|\bn[ãa]o (?:posso|consigo|sou capaz de) (?:ajudar|fornecer|resumir|criar|gerar|escrever|cumprir|atender)"
    r"|\bcomo (?:um )?(?:modelo de linguagem|assistente de ia)\b|\bas an ai\b",
    re.IGNORECASE,
)


@dataclass
class DistillResult:
    counts: dict[str, int]  # articles, usable, cache hits, teacher answers, and rejected rows per reason


def run(cfg: DistillConfig, articles_dir: str | Path, out_dir: str | Path) -> DistillResult:
    """The whole stage in one process: every article, then the checks the pipeline's merge makes."""
    pairs, counts = distill_articles(cfg, read_articles(articles_dir))
    _require_usable_training_pairs(pairs, counts)
    write_pairs(pairs, out_dir, counts)
    log.info("distill: %s", counts)
    return DistillResult(counts)


def run_stage(cfg: DistillConfig, articles_dir: str | Path, out_dir: str | Path, shard: int) -> StageResult:
    """The pipeline's shard step, one of `cfg.shards` tasks: the articles whose id hashes to `shard`; its counts
    as metrics (the cost figures come once, from `merge_stage`, over every shard's counts)."""
    if not 0 <= shard < cfg.shards:
        raise DataError(f"shard {shard} is outside 0..{cfg.shards - 1} (distill.shards = {cfg.shards})")
    articles = read_articles(articles_dir)
    mine = articles[[shard_of(i, cfg.shards) == shard for i in articles["id"]]]
    log.info("distill shard %d of %d: %d of %d articles", shard, cfg.shards, len(mine), len(articles))
    pairs, counts = distill_articles(cfg, mine)
    write_pairs(pairs, out_dir, counts)
    return StageResult(dict(counts), {"counts": counts})


def merge_stage(articles_dir: str | Path, shard_dirs: list[str | Path], out_dir: str | Path) -> StageResult:
    """The pipeline's merge step: `merge`, its counts as metrics with the cost figures (resumo.run_cost)."""
    result = merge(articles_dir, shard_dirs, out_dir)
    return StageResult({**result.counts, **run_cost.distill_figures(result.counts)}, {"counts": result.counts})


def merge(articles_dir: str | Path, shard_dirs: list[str | Path], out_dir: str | Path) -> DistillResult:
    """The shards' pairs as one dataset in the articles' order, checked to hold every article exactly once."""
    articles = read_articles(articles_dir)
    parts = pd.concat([read_pairs(d) for d in shard_dirs], ignore_index=True)
    duplicated = sorted(set(parts.loc[parts["id"].duplicated(), "id"]))
    missing = sorted(set(articles["id"]) - set(parts["id"]))
    if duplicated or missing:
        raise DataError(
            f"the {len(shard_dirs)} distill shards do not hold every article exactly once: "
            f"missing {missing[:5]}, duplicated {duplicated[:5]}; rerun the pipeline (cached summaries are kept)"
        )
    pairs = parts.set_index("id").loc[articles["id"]].reset_index()
    counts = count_reasons(pairs)
    for part in shard_dirs:  # cache traffic is only known to the shards
        traffic = read_counts(part)
        for key in TRAFFIC:
            counts[key] = counts.get(key, 0) + traffic.get(key, 0)
    _require_usable_training_pairs(pairs, counts)
    write_pairs(pairs, out_dir, counts)
    log.info("distill: %s", counts)
    return DistillResult(counts)


def distill_articles(cfg: DistillConfig, articles: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """Ask the teacher (or the cache), clean, and label every article."""
    answers, traffic = teacher_answers(cfg, articles)
    summaries = [clean_summary(a) if a is not None else "" for a in answers]
    reasons = [filter_reason(s, cfg) if a is not None else "teacher_error" for a, s in zip(answers, summaries)]
    pairs = articles.assign(
        summary=summaries,
        raw_summary=answers,
        teacher=teacher_name(cfg.teacher),
        prompt_version=cfg.prompt.version,
        filter_reason=reasons,
    )
    return pairs, {**count_reasons(pairs), **traffic}


def teacher_answers(cfg: DistillConfig, articles: pd.DataFrame) -> tuple[list[str | None], dict[str, int]]:
    """Raw answers in row order, from the cache where it has them; new answers are cached chunk by chunk."""
    rows = articles.to_dict("records")
    materials = [key_material(r["id"], revision_of(r), str(r["text"]), cfg.teacher, cfg.prompt) for r in rows]
    keys = [cache_key(m) for m in materials]
    cache = TeacherCache(cfg.cache) if cfg.cache else None
    known = cache.get_many(sorted(set(keys))) if cache else {}
    hits = sum(k in known for k in keys)
    first_row = {}
    for i, k in enumerate(keys):
        if k not in known:
            first_row.setdefault(k, i)  # one request per distinct prompt
    todo = sorted(first_row.values())
    log.info("distill: %d articles, %d answers cached, %d to ask the teacher", len(rows), hits, len(todo))
    if todo:
        teacher = make_teacher(cfg.teacher, cfg.prompt)  # only now: a warm run loads no model
        for start in range(0, len(todo), cfg.checkpoint_every):
            chunk = todo[start : start + cfg.checkpoint_every]
            try:
                answers = teacher.generate([str(rows[i]["text"]) for i in chunk])
            except TeacherUnavailable as err:
                _remember(cache, known, chunk, keys, materials, err.answers)  # keep what did arrive, then stop
                raise
            _remember(cache, known, chunk, keys, materials, answers)
            log.info("distill: %d of %d answers asked for%s", min(start + len(chunk), len(todo)), len(todo), " and cached" if cache else "")
    traffic = {"cache_hits": hits, "teacher_answers": sum(keys[i] in known for i in todo)}
    return [known.get(k) for k in keys], traffic


def _remember(cache: TeacherCache | None, known: dict, chunk: list[int], keys: list[str], materials: list[dict], answers: list[str | None]) -> None:
    fresh = {keys[i]: (materials[i], a) for i, a in zip(chunk, answers) if a is not None}
    if cache:
        cache.put_many(fresh)
    known.update({key: answer for key, (_, answer) in fresh.items()})


def clean_summary(summary: str) -> str:
    summary = _ROLE_HEADER.sub("", summary)
    end = _END_OF_TURN.search(summary)
    if end and summary[: end.start()].strip():
        summary = summary[: end.start()]
    summary = _SPECIAL_TOKENS.sub("", summary)
    summary = _PREAMBLE.sub("", summary, count=1)
    summary = _TRAILER.sub("", summary)
    return summary.strip()


def filter_reason(summary: str, cfg: DistillConfig) -> str | None:
    """Why a cleaned summary is unusable as a training target, or None; `REASONS` lists them all."""
    n = len(words(summary))
    if n == 0:
        return "empty"
    if echoes_prompt(summary, cfg):
        return "prompt_echo"
    if _NO_TEXT.search(summary):
        return "no_text_answer"
    if _REFUSAL.search(summary):
        return "refusal"
    # Length before language: a language guess on a few words is unreliable.
    if n < cfg.min_words:
        return "too_short"
    if n > cfg.prompt.n_words * cfg.max_words_ratio:
        return "too_long"
    if not lang.is_portuguese(summary):
        return "not_portuguese"
    return None


def echoes_prompt(summary: str, cfg: DistillConfig) -> bool:
    """The `prompt_echo` rule, shared with score's prompt_echo_share: `resumo.prompts.echoes_instructions`."""
    return prompts.echoes_instructions(summary, cfg.prompt)


def shard_of(article_id: str, shards: int) -> int:
    """A stable shard for an article: the same id lands on the same shard in every run."""
    return int(hashlib.sha256(str(article_id).encode("utf-8")).hexdigest()[:8], 16) % shards


def count_reasons(pairs: pd.DataFrame) -> dict[str, int]:
    reasons = Counter(r for r in pairs["filter_reason"] if isinstance(r, str))
    counts = {"articles": len(pairs), "usable": int(pairs["filter_reason"].isna().sum())}
    counts.update({f"rejected_{reason}": reasons.get(reason, 0) for reason in REASONS})  # zeros too: a stable metric set
    return counts


def read_articles(articles_dir: str | Path) -> pd.DataFrame:
    splits = [tables.read_split(articles_dir, name, columns=["id", "text"]).assign(**{_SPLIT: name}) for name in tables.SPLITS]
    return pd.concat(splits, ignore_index=True)


def read_pairs(folder: str | Path) -> pd.DataFrame:
    splits = [tables.read_split(folder, name, columns=["id", "summary", "filter_reason"]).assign(**{_SPLIT: name}) for name in tables.SPLITS]
    return pd.concat(splits, ignore_index=True)


def write_pairs(pairs: pd.DataFrame, out_dir: str | Path, counts: dict[str, int]) -> None:
    for name in tables.SPLITS:
        tables.write_split(pairs[pairs[_SPLIT] == name].drop(columns=[_SPLIT]), out_dir, name)
    storage.write_text(storage.join(out_dir, COUNTS_FILE), json.dumps(counts, indent=2))


def read_counts(folder: str | Path) -> dict[str, int]:
    uri = storage.join(folder, COUNTS_FILE)
    return json.loads(storage.read_text(uri)) if storage.exists(uri) else {}


def _require_usable_training_pairs(pairs: pd.DataFrame, counts: dict[str, int]) -> None:
    train = pairs[pairs[_SPLIT] == "train"]
    if len(train) and not train["filter_reason"].isna().any():
        raise DataError(
            f"every training summary was rejected ({counts}); check the teacher's raw answers "
            "(kept in distill.cache when it is set) or relax distill.min_words / max_words_ratio"
        )
