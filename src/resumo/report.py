"""Every rendering of scores: the report stage's HTML page and Markdown summary, the model card, and the flat scalars KFP shows.

    resumo report --scores runs/score --model runs/model --out runs/report [--judge runs/judge]

    from resumo import report
    paths = report.write_reports(scores, predictions, "runs/report", curves_png=png, judge=judge)

Score and judge write numbers only (scores.json, judge.json); this module is the
one that turns them into tables, pages and metrics, so a number is named and
formatted the same way in the UI's Metrics, the Markdown, the page and the card.
Scalars are named `<model>_<metric>`, `<model>_<metric>_ci_low|_ci_high`,
`<candidate>_minus_<model>_<metric>` (with its `_ci_low|_ci_high`), the lead
baselines as models (`lead_<metric>`, `lead_at_<model>_<metric>`), each model's
difference against the lead at its own length as
`<model>_minus_lead_at_own_length_<metric>` (with its `_ci_low|_ci_high`),
`n_articles` and `judge_<opponent>_<key>` (with `judge_<opponent>_win_rate_ci_low|_ci_high`).

The Kubeflow UI shows an HTML artifact in a sandboxed iframe that loads nothing
from outside, so every plot is a base64 PNG inside the page and the page runs
no script. Every text that came from data (articles, summaries, model names) is
HTML-escaped. Keys missing from `scores` are left out, not invented: the page
shows whatever score wrote (intervals, language shares, judge win rates).
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import math
import re
from pathlib import Path

import pandas as pd

from resumo import artifacts, storage, text
from resumo.judge import finite_numbers, interval_bounds, judge_scalars, untrusted_opponents
from resumo.stage import StageResult

log = logging.getLogger(__name__)

HTML_FILE, MARKDOWN_FILE, METRICS_FILE = artifacts.REPORT_HTML, artifacts.REPORT_MARKDOWN, artifacts.REPORT_METRICS
# Plotted with error bars: the overlap-based and embedding-based scores, all on [0, 1].
QUALITY = ("rouge1", "rouge2", "rougeL", "rougeLsum", "bertscore_f1")
# How much a model copies its input instead of summarising it (resumo.metrics.output_stats), in this order.
COPY = ("verbatim_prefix_share", "longest_copied_span_mean", "prompt_echo_share", "repeated_trigram_share", "too_short_share")
# Shown first in tables, in this order; any other numeric key follows.
PREFERRED = (*QUALITY, *COPY, "words_mean", "words_p25", "words_p75", "not_portuguese_share", "language_undetermined_share", "empty_share")
# The model card's scores table, and the scores the production pointer keeps.
CARD_SCORES = ("rouge1", "rouge2", "rougeL", "rougeLsum", "bertscore_f1", "words_mean", "not_portuguese_share")
LEAD, LEAD_AT = "lead", "lead_at_"  # score's names of the lead baselines
OWN_LENGTH = "lead_at_own_length"


def run_stage(
    scores_dir: str | Path,
    model_dir: str | Path,
    html_file: str | Path,
    markdown_file: str | Path,
    judge_dir: str | Path | None = None,
    store_uri: str | None = None,
) -> StageResult:
    """The report stage: score's folder (and judge's, and train's curves) to the two pages; the scalars
    (`scalar_metrics`) as metrics.

    With `store_uri` (None or "" is none), the pages and report_metrics.json are also stored there, under their usual names.
    """
    scores = json.loads(Path(scores_dir, artifacts.SCORES).read_text())
    judged = json.loads(Path(judge_dir, artifacts.JUDGE_RESULT).read_text()) if judge_dir is not None else None
    curves = Path(model_dir, artifacts.CURVES)
    predictions = pd.read_parquet(Path(scores_dir, artifacts.PREDICTIONS))
    flat = scalar_metrics(scores, judged)
    pages = {
        HTML_FILE: render_html(scores, predictions, curves.read_bytes() if curves.exists() else None, judged, 3).encode(),
        MARKDOWN_FILE: render_markdown(scores, judged).encode(),
    }
    for path, name in ((html_file, HTML_FILE), (markdown_file, MARKDOWN_FILE)):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(pages[name])
    if store_uri:
        for name, data in {**pages, METRICS_FILE: json.dumps(flat, indent=2).encode()}.items():
            storage.write_bytes(storage.join(store_uri, name), data)
        log.info("report: stored %d files under %s", len(pages) + 1, store_uri)
    return StageResult(flat)


def write_reports(
    scores: dict,
    predictions: pd.DataFrame,
    out_dir: str | Path,
    curves_png: bytes | None = None,
    judge: dict | None = None,
    n_examples: int = 3,
    store_uri: str | None = None,
) -> dict[str, Path]:
    """Write report.html, report.md and report_metrics.json into `out_dir`; copy them under `store_uri` if given.

    `scores` is score's scores.json; `predictions` has `id`, `reference`,
    `prediction_<model>` (and `text`, the article, when joined); `judge` is
    judge.json. Returns {"html", "markdown", "metrics"} -> path.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"html": out_dir / HTML_FILE, "markdown": out_dir / MARKDOWN_FILE, "metrics": out_dir / METRICS_FILE}
    paths["html"].write_text(render_html(scores, predictions, curves_png, judge, n_examples), encoding="utf-8")
    paths["markdown"].write_text(render_markdown(scores, judge), encoding="utf-8")
    paths["metrics"].write_text(json.dumps(scalar_metrics(scores, judge), indent=2))
    if store_uri:
        for path in paths.values():
            storage.write_bytes(storage.join(store_uri, path.name), path.read_bytes())
        log.info("report: stored %d files under %s", len(paths), store_uri)
    return paths


def scalar_metrics(scores: dict, judge: dict | None = None) -> dict[str, float]:
    """Every number of scores.json (and judge.json) as one flat scalar each, for KFP Metrics (names: module docstring); nulls left out."""
    flat: dict[str, float | None] = {}
    intervals = scores.get("intervals") or {}
    for model, values in scores.get("models", {}).items():
        for metric, value in values.items():
            flat[f"{model}_{metric}"] = value
            flat |= interval_bounds(f"{model}_{metric}", intervals.get(model, {}).get(metric))
    for other, values in (scores.get("differences") or {}).items():
        for metric, diff in values.items():
            key = f"{scores['candidate']}_minus_{other}_{metric}"
            flat[key] = diff["difference"]
            flat |= interval_bounds(key, diff.get("interval"))
    baseline_intervals = scores.get("baseline_intervals") or {}
    for baseline, values in (scores.get("baselines") or {}).items():
        for metric, value in values.items():
            flat[f"{baseline}_{metric}"] = value
            flat |= interval_bounds(f"{baseline}_{metric}", baseline_intervals.get(baseline, {}).get(metric))
    for model, values in (scores.get("versus_lead") or {}).items():
        for metric, diff in values.items():
            key = f"{model}_minus_{OWN_LENGTH}_{metric}"
            flat[key] = diff["difference"]
            flat |= interval_bounds(key, diff.get("interval"))
    flat["n_articles"] = scores.get("n_articles")
    return finite_numbers(flat) | judge_scalars(judge or {})


# --- Markdown ---------------------------------------------------------------


def render_markdown(scores: dict, judge: dict | None = None) -> str:
    models = scores.get("models", {})
    lines = [f"# resumo scores ({scores.get('n_articles', '?')} test articles)", ""]
    if _tiny(scores):
        lines += ["_Tiny random models: these numbers show the pipeline works, nothing about summary quality._", ""]
    for title, columns in _column_groups(models):
        lines += [f"## {title}", "", *markdown_table(scores, columns), ""]
    if scores.get("versus_lead"):
        lines += ["## Against copying the lead", "", lead_explanation(scores), "", *_lead_rows(scores), ""]
        lines += [f"- {line}" for line in lead_sentences(scores)] + [""]
    lines += [f"**Warning: {line}.**\n" for line in guard_lines(scores)]
    if scores.get("intervals"):
        lines += [f"Brackets: {_interval_label(scores)}."]
    if judge and judge.get("opponents"):
        lines += ["", f"## LLM judge: {judge.get('candidate', 'candidate')} against each model", "", *_judge_rows(judge)]
        lines += ["", *(f"**{line}**" for line in judge_warnings(judge))]
    return "\n".join(lines) + "\n"


def markdown_table(scores: dict, columns: list[str], highlight: str | None = None) -> list[str]:
    """The lines of a Markdown table of `columns` per model, then per lead baseline with any of them, intervals in brackets; `highlight` in bold."""
    lines = ["| model | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for name, label, values, intervals in _table_rows(scores, columns):
        shown = f"**{label}**" if name == highlight else f"_{label}_" if name not in scores.get("models", {}) else label
        lines.append(f"| {shown} | " + " | ".join(_cell(values.get(c), intervals.get(c), c) for c in columns) + " |")
    return lines


def lead_explanation(scores: dict) -> str:
    """The sentence that says what the lead baselines are."""
    n_words = (scores.get("lead") or {}).get("n_words", "n_words")
    return (
        f"The lead is the opening of each article, its headline or byline lines skipped: `lead` cut at the prompt's {n_words} words, "
        "`lead at <model>'s length` cut at that model's own output length, article by article. "
        "A model that only copies the opening scores like the lead at its own length; the paired difference below says whether it does better."
    )


def lead_sentences(scores: dict) -> list[str]:
    """One sentence per model: does it beat the lead at its own length (ROUGE-Lsum, else the first metric)?"""
    level = (scores.get("config") or {}).get("confidence", 0.95)
    lines = []
    for name, differences in (scores.get("versus_lead") or {}).items():
        if differences:
            metric = "rougeLsum" if "rougeLsum" in differences else next(iter(differences))
            lines.append(versus_lead_sentence(name, metric, differences[metric], level))
    return lines


def versus_lead_sentence(name: str, metric: str, difference: dict, confidence: float) -> str:
    """Whether `name` beats copying the opening of each article at its own length, in one sentence."""
    value, interval = difference.get("difference"), difference.get("interval") or [None, None]
    low, high = interval
    if not all(_is_number(v) and math.isfinite(v) for v in (value, low, high)):
        return f"{name}: no {metric} difference against the lead at its own length (no article defines one)"
    verdict = (
        "beats copying the opening of each text"
        if low > 0
        else "does worse than copying the opening of each text"
        if high < 0
        else "cannot be told apart from copying the opening of each text"
    )
    return f"{name} {verdict} at its own length: {metric} {value:+.3f} [{low:+.3f}, {high:+.3f}] ({confidence:.0%} paired bootstrap over {difference.get('n')} articles)"


def guard_lines(scores: dict) -> list[str]:
    """The input-length warning of each model with inputs outside its training range (scores.json `input_guard`)."""
    return [guard_line(name, guard) for name, guard in (scores.get("input_guard") or {}).items() if guard.get("longer", 0) + guard.get("shorter", 0)]


def guard_line(name: str, guard: dict) -> str:
    """The one line `summarize` and `score` print about inputs outside the token-length range a model was trained on."""
    low, high = guard["range"]
    beyond = guard["longer"] + guard["shorter"]
    line = f"{name}: {beyond} of {guard['n']} inputs lie outside the {low}-{high} tokens of the texts it was trained on ({guard['longer']} longer, {guard['shorter']} shorter)"
    if not beyond:
        return line
    if guard.get("cut"):
        return line + f"; the {guard['cut']} longer were cut to their leading paragraphs within {high} tokens (score.long_inputs=cut), so it summarised only what it read"
    return line + (
        "; it never learnt to summarise such lengths, so expect outputs that stop early or copy, and scores that say little about texts like its training data"
        + (f" (score.long_inputs=cut reads only what fits in {high} tokens)" if guard["longer"] else "")
    )


def _lead_table(scores: dict) -> list[list[str]]:
    """Header and rows: each model's quality metrics, the lead at its own length's, and the paired difference."""
    level = (scores.get("config") or {}).get("confidence")
    head = ["model", "metric", "model's score", "lead at its length", f"difference [{level:.0%} interval]" if _is_number(level) else "difference [interval]"]
    rows = [head]
    for name, differences in (scores.get("versus_lead") or {}).items():
        lead = (scores.get("baselines") or {}).get(f"{LEAD_AT}{name}", {})
        for metric, diff in differences.items():
            low, high = diff.get("interval") or [None, None]
            bounds = f" [{low:+.3f}, {high:+.3f}]" if _is_number(low) and _is_number(high) else ""
            shown = f"{diff['difference']:+.3f}{bounds}" if _is_number(diff.get("difference")) else ""
            rows.append([name, metric, _cell(scores.get("models", {}).get(name, {}).get(metric), None, metric), _cell(lead.get(metric), None, metric), shown])
    return rows


def _lead_rows(scores: dict) -> list[str]:
    head, *rows = _lead_table(scores)
    return ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"] + ["| " + " | ".join(r) + " |" for r in rows]


# --- model card -------------------------------------------------------------


def model_card(version: str, meta: dict, scores: dict, candidate: str, production: dict | None, gates: list) -> str:
    """Markdown: what the model is (`meta`: its resumo_model.json), what it was trained on and with, how it scored, why it was promoted."""
    train = meta.get("config", {})
    base = meta.get("base_model", "unknown")
    lines = [f"# resumo summariser {version}", ""]
    if str(base).startswith("tiny:"):
        lines += ["> **Tiny random model** built for tests and `make run`: its scores show that the pipeline works, nothing about summary quality.", ""]
    lines += [
        f"Portuguese summariser: `{base}` tuned with LoRA on teacher summaries of Portuguese Wikipedia articles (resumo).",
        f"Compared with production {'`' + production['version'] + '`' if production else '(none yet)'} when it was published; `{artifacts.POINTER}` records what it replaced.",
        "",
        "## Parameters",
        "",
        "| parameter | value |",
        "|---|---|",
    ]
    lora = meta.get("lora", {})
    params = {
        "base model": base,
        "LoRA r / alpha / dropout": f"{lora.get('r')} / {lora.get('r', 0) * lora.get('alpha_ratio', 0):g} / {lora.get('dropout')}" if lora else None,
        "LoRA target modules": ", ".join(lora.get("target_modules", [])) or None,
        "prompt version / words": f"{meta['prompt']['version']} / {meta['prompt']['n_words']}" if "prompt" in meta else None,
        **{k.replace("_", " "): train.get(k) for k in ("learning_rate", "lr_scheduler", "epochs", "batch_size", "gradient_accumulation", "max_length", "seed")},
    }
    lines += [f"| {k} | {v} |" for k, v in params.items() if v is not None]
    score_cfg = scores.get("config", {})
    lines += [
        "",
        "## Data",
        "",
        f"Scored on {scores.get('n_articles', '?')} held-out test articles against the teacher's summaries"
        + (f" (ROUGE tokenizer `{score_cfg['rouge_tokenizer']}`, BERTScore encoder `{score_cfg['bertscore_model']}`)." if "rouge_tokenizer" in score_cfg else "."),
        "",
        "## Scores",
        "",
    ]
    columns = [k for k in CARD_SCORES if any(k in v for v in scores.get("models", {}).values())]
    lines += markdown_table(scores, columns, highlight=candidate)
    if scores.get("versus_lead"):
        lines += ["", "## Against copying the lead", "", lead_explanation(scores), "", *_lead_rows(scores), ""]
        lines += [f"- {line}" for line in lead_sentences(scores)]
    copy = [k for k in COPY if k in scores.get("models", {}).get(candidate, {})]
    if copy:
        lines += ["", "## Copy diagnostics", "", *markdown_table(scores, copy, highlight=candidate)]
    trained = meta.get("input_tokens")
    if trained:
        lines += ["", "## Inputs", "", f"Trained on {trained.get('n', '?')} texts of {trained['min']}-{trained['max']} tokens; longer or shorter inputs are outside what it learnt."]
    lines += [f"\n**Warning: {line}.**" for line in guard_lines(scores)]
    lines += ["", "## Promotion gates", "", "| gate | passed | detail |", "|---|---|---|"]
    lines += [f"| {g.name} | {'yes' if g.passed else 'no'} | {g.detail} |" for g in gates]
    lines += ["", f"Files, sizes and sha256 of this version: `{artifacts.MANIFEST}`.", ""]
    return "\n".join(lines)


# --- HTML -------------------------------------------------------------------


def render_html(scores: dict, predictions: pd.DataFrame, curves_png: bytes | None, judge: dict | None, n_examples: int) -> str:
    models = scores.get("models", {})
    e = html.escape
    body = [f"<h1>resumo scores <small>{e(str(scores.get('n_articles', '?')))} test articles</small></h1>"]
    if _tiny(scores):
        body.append('<p class="note">Tiny random models: these numbers show the pipeline works, nothing about summary quality.</p>')
    if scores.get("models_scored"):
        body.append("<p>" + "; ".join(f"<b>{e(n)}</b>: <code>{e(str(r))}</code>" for n, r in scores["models_scored"].items()) + "</p>")

    for title, columns in _column_groups(models):
        body += [f"<h2>{title}</h2>", _scores_table(scores, columns)]
    if scores.get("versus_lead"):
        body += ["<h2>Against copying the lead</h2>", "<p>" + re.sub(r"`([^`]*)`", r"<code>\1</code>", e(lead_explanation(scores))) + "</p>"]
        head, *rows = _lead_table(scores)
        body.append(_html_table([("th", head)] + [("td", row) for row in rows]))
        body += [f"<p class='lead'>{e(line)}</p>" for line in lead_sentences(scores)]
    body += [f"<p class='warning'><strong>Warning: {e(line)}.</strong></p>" for line in guard_lines(scores)]
    if scores.get("intervals"):
        body.append(f"<p class='ci'>Brackets: {html.escape(_interval_label(scores))}.</p>")
    if any(k in v for v in models.values() for k in QUALITY):
        body.append(_img(_scores_plot(scores), "scores with intervals"))
    lengths = _lengths(predictions)
    if lengths:
        body += ["<h2>Summary lengths</h2>", _img(_length_plot(lengths), "histogram of summary lengths in words")]
    if judge and judge.get("opponents"):
        body += [f"<h2>LLM judge: {e(str(judge.get('candidate', 'candidate')))} against each model</h2>", _judge_html(judge), _img(_judge_plot(judge), "judge win rates")]
        body += [f"<p class='warning'><strong>{e(line)}</strong></p>" for line in judge_warnings(judge)]
    if curves_png:
        body += ["<h2>Training curves</h2>", _img(curves_png, "training and validation loss")]
    body += ["<h2>Examples</h2>", _examples_html(predictions, n_examples)]
    if scores.get("config"):
        body += ["<h2>Score config</h2>", f"<pre>{e(json.dumps(scores['config'], indent=2, ensure_ascii=False))}</pre>"]
    return _PAGE.format(body="\n".join(body))


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>resumo report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; max-width: 1200px; }}
table {{ border-collapse: collapse; margin: .5rem 0 1rem; }}
th, td {{ border: 1px solid #ccc; padding: .3rem .6rem; text-align: right; vertical-align: top; }}
th:first-child, td:first-child {{ text-align: left; }}
small, .ci {{ color: #777; font-weight: normal; }}
.note {{ background: #fff4d6; padding: .5rem; }}
.warning {{ background: #fde2e2; padding: .5rem; }}
tr.baseline td {{ font-style: italic; color: #555; }}
img {{ max-width: 100%; display: block; margin: .5rem 0 1rem; }}
.example {{ border-top: 2px solid #888; margin-top: 1rem; }}
.side {{ display: grid; grid-template-columns: repeat(auto-fit, minmax(220px, 1fr)); gap: .8rem; }}
.side div {{ background: #f6f6f6; padding: .5rem; white-space: pre-wrap; font-size: .9rem; }}
.side h4 {{ margin: 0 0 .3rem; }}
pre {{ background: #f6f6f6; padding: .5rem; overflow-x: auto; }}
</style></head>
<body>
{body}
</body></html>
"""


def _scores_table(scores: dict, columns: list[str]) -> str:
    head = "<tr><th>model</th>" + "".join(f"<th>{html.escape(c)}</th>" for c in columns) + "</tr>"
    models = scores.get("models", {})
    rows = [
        ("<tr>" if name in models else "<tr class='baseline'>")
        + f"<td>{html.escape(label)}</td>"
        + "".join(f"<td>{html.escape(_cell(values.get(c), intervals.get(c), c))}</td>" for c in columns)
        + "</tr>"
        for name, label, values, intervals in _table_rows(scores, columns)
    ]
    return f"<table>{head}{''.join(rows)}</table>"


def _table_rows(scores: dict, columns: list[str]) -> list[tuple[str, str, dict, dict]]:
    """(name, label, values, intervals) of each model, then of each lead baseline that has one of `columns`."""
    intervals = scores.get("intervals") or {}
    rows = [(name, name, values, intervals.get(name, {})) for name, values in scores.get("models", {}).items()]
    baseline_intervals = scores.get("baseline_intervals") or {}
    n_words = (scores.get("lead") or {}).get("n_words")
    for name, values in (scores.get("baselines") or {}).items():
        if any(c in values for c in columns):
            label = f"lead at {name.removeprefix(LEAD_AT)}'s length" if name.startswith(LEAD_AT) else f"lead ({n_words} words)" if n_words else name
            rows.append((name, label, values, baseline_intervals.get(name, {})))
    return rows


def _examples_html(predictions: pd.DataFrame, n_examples: int) -> str:
    e = html.escape
    model_columns = [c for c in predictions.columns if c.startswith("prediction_")]
    blocks = []
    for _, row in predictions.head(n_examples).iterrows():
        parts = [f"<div class='example'><h3>article {e(str(row.get('id', '')))}</h3>"]
        if "text" in predictions.columns:
            parts.append(f"<details><summary>article text ({len(text.words(str(row['text'])))} words)</summary><pre>{e(str(row['text']))}</pre></details>")
        cells = [("reference (teacher)", row.get("reference"))] + [(c.removeprefix("prediction_"), row[c]) for c in model_columns]
        parts.append(
            "<div class='side'>"
            + "".join(f"<div><h4>{e(name)} <small>{len(text.words(str(s or '')))} words</small></h4>{e(str(s or ''))}</div>" for name, s in cells)
            + "</div></div>"
        )
        blocks.append("".join(parts))
    return "\n".join(blocks) or "<p>No predictions.</p>"


def _judge_html(judge: dict) -> str:
    return _html_table(_judge_table(judge))


def _html_table(rows: list[tuple[str, list[str]]]) -> str:
    """A table of (cell tag, cells) rows, every cell escaped."""
    return "<table>" + "".join(f"<tr>{''.join(f'<{t}>{html.escape(c)}</{t}>' for c in cells)}</tr>" for t, cells in rows) + "</table>"


def _judge_rows(judge: dict) -> list[str]:
    (_, head), *rows = _judge_table(judge)
    return ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"] + ["| " + " | ".join(cells) + " |" for _, cells in rows]


def judge_warnings(judge: dict) -> list[str]:
    """One line per opponent whose win rate the judge's own position bias voids (judge.untrusted_opponents)."""
    return [
        f"Warning: the judge is not to be trusted against {opponent}: {why}. Its win rate there says nothing about the summaries, and gates nothing."
        for opponent, why in untrusted_opponents(judge).items()
    ]


def _judge_table(judge: dict) -> list[tuple[str, list[str]]]:
    head = ["opponent", "win rate", "interval", "wins / ties / losses", "articles", "invalid verdicts", "same verdict both orders", "picked first position"]
    rows = [("th", head)]
    untrusted = untrusted_opponents(judge)
    for opponent, r in judge["opponents"].items():
        interval = r.get("interval")
        rows.append(
            (
                "td",
                [
                    opponent,
                    _fmt(r.get("win_rate"), "{:.1%}") + (" (void: position-biased judge)" if opponent in untrusted else ""),
                    f"[{interval[0]:.1%}, {interval[1]:.1%}]" if interval else "",
                    f"{r.get('wins', '')} / {r.get('ties', '')} / {r.get('losses', '')}",
                    _fmt(r.get("n_articles"), "{}"),
                    _fmt(r.get("invalid_verdicts"), "{}"),
                    _fmt(r.get("position_consistency"), "{:.0%}"),
                    _fmt(r.get("first_position_rate"), "{:.0%}"),
                ],
            )
        )
    return rows


# --- plots ------------------------------------------------------------------


def _scores_plot(scores: dict) -> bytes:
    plt = _pyplot()
    models, intervals = scores.get("models", {}), scores.get("intervals") or {}
    metrics = [m for m in QUALITY if any(m in v for v in models.values())]
    fig, ax = plt.subplots(figsize=(9, 3.8))
    width = 0.8 / max(len(models), 1)
    for i, (name, values) in enumerate(models.items()):
        xs = [j + i * width for j, m in enumerate(metrics) if m in values]
        ys = [values[m] for m in metrics if m in values]
        ax.bar(xs, ys, width, label=name)
        known = [(x, values[m], intervals[name][m]) for x, m in zip(xs, [m for m in metrics if m in values]) if len(intervals.get(name, {}).get(m) or []) == 2]
        if known:  # error bars only where score reported an interval
            x, y, ci = zip(*known)
            ax.errorbar(x, y, yerr=list(zip(*[_err(v, c) for v, c in zip(y, ci)])), fmt="none", ecolor="black", capsize=3)
    ax.set_xticks([j + width * (len(models) - 1) / 2 for j in range(len(metrics))], metrics)
    ax.set_ylim(0, 1)
    ax.set_ylabel("score")
    ax.legend(fontsize="small")
    return _png(fig)


def _length_plot(lengths: dict[str, list[int]]) -> bytes:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 3.2))
    top = max(max(v, default=0) for v in lengths.values()) + 1
    bins = min(40, max(top, 1))
    for name, counts in lengths.items():
        ax.hist(counts, bins=bins, range=(0, top), histtype="step", linewidth=1.6, label=f"{name} (mean {sum(counts) / max(len(counts), 1):.0f})")
    ax.set_xlabel("words per summary")
    ax.set_ylabel("summaries")
    ax.legend(fontsize="small")
    return _png(fig)


def _judge_plot(judge: dict) -> bytes:
    plt = _pyplot()
    opponents = judge["opponents"]
    fig, ax = plt.subplots(figsize=(6, 0.6 + 0.5 * len(opponents)))
    names = list(opponents)
    rates = [opponents[n].get("win_rate") or 0.0 for n in names]
    errs = [_err(r, opponents[n].get("interval")) for n, r in zip(names, rates)]
    ax.barh(names, rates, xerr=list(zip(*errs)), capsize=3, color="#4c72b0")
    ax.axvline(0.5, color="#999", linestyle="--", linewidth=1)
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"win rate of {judge.get('candidate', 'candidate')} (ties count half)")
    return _png(fig)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display in pods and CI
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=90)
    _pyplot().close(fig)
    return buffer.getvalue()


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


# --- small helpers ----------------------------------------------------------


def _lengths(predictions: pd.DataFrame) -> dict[str, list[int]]:
    columns = (["reference"] if "reference" in predictions.columns else []) + [c for c in predictions.columns if c.startswith("prediction_")]
    return {c.removeprefix("prediction_"): [len(text.words(str(s or ""))) for s in predictions[c]] for c in columns}


def _columns(models: dict) -> list[str]:
    present = {k for v in models.values() for k, x in v.items() if _is_number(x)}
    return [k for k in PREFERRED if k in present] + sorted(present - set(PREFERRED))


def _column_groups(models: dict) -> list[tuple[str, list[str]]]:
    """Quality scores, copy diagnostics, then output statistics: tables a page wide instead of one that scrolls."""
    columns = _columns(models)
    groups = [
        ("Scores", [c for c in columns if c in QUALITY]),
        ("Copy diagnostics", [c for c in columns if c in COPY]),
        ("Output statistics", [c for c in columns if c not in QUALITY and c not in COPY]),
    ]
    return [(title, group) for title, group in groups if group]


def _cell(value, interval, column: str) -> str:
    if not _is_number(value):
        return ""
    fmt = "{:.1%}" if column.startswith("share_") or column.endswith("_share") else "{:.0f}" if column.startswith("words_") else "{:.1f}" if column == "longest_copied_span_mean" else "{:.3f}"
    shown = fmt.format(value)
    if interval and len(interval) == 2:
        shown += f" [{fmt.format(interval[0])}, {fmt.format(interval[1])}]"
    return shown


def _interval_label(scores: dict) -> str:
    level = (scores.get("config") or {}).get("confidence") or scores.get("confidence")
    label = f"{level:.0%} confidence interval over articles" if _is_number(level) else "confidence interval over articles"
    resamples = (scores.get("bootstrap") or {}).get("resamples")
    return label + (f" (percentile bootstrap, {resamples} resamples)" if _is_number(resamples) else "")


def _err(value: float, interval) -> tuple[float, float]:
    if not interval or len(interval) != 2:
        return (0.0, 0.0)
    return (max(value - interval[0], 0.0), max(interval[1] - value, 0.0))


def _fmt(value, pattern: str) -> str:
    return "" if value is None else pattern.format(value)


def _tiny(scores: dict) -> bool:
    return any(str(ref).startswith("tiny:") for ref in (scores.get("models_scored") or {}).values()) or "tiny:" in str(scores.get("config", ""))


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
