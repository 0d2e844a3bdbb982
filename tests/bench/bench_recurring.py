"""Recurring retrain benchmark: what a second run costs when the corpus barely changed, against the first.

    make bench BENCH=recurring        # or: .venv/bin/python tests/bench/bench_recurring.py

Two consecutive `resumo run`s (kfp.local, the pipeline's DAG, smoke profile,
tiny models) with one storage root, so they share the article cache, the
teacher cache and the registry, and `tune.policy=reuse` (what `resumo schedule`
runs). The first runs on the bundled corpus: nothing is cached and nothing is in
production, so it cleans every page, asks the teacher about every article and
searches. Between the two, 5 kept articles get a new revision and 2 articles are
added (tests/corpus_edits.py). The second should clean 7 pages, ask the teacher 7
times and run no tune trial, and keep every article's split.

Training is cut to 2 epochs (SHORTER). Writes runs/bench/recurring.json. Wall seconds depend on the machine; the counts do not.
Tiny random models: nothing here says anything about summary quality.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # tests.corpus_edits
os.environ.setdefault("RESUMO_CACHE", str(ROOT / ".cache" / "resumo"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

EDITED, ADDED = 5, 2
# Two epochs instead of the smoke profile's ten: the figures are counts, which epochs do not change,
# and on a shared 2-core machine ten-epoch trainings make the bench take most of an hour.
SHORTER = ["train.epochs=2", "train.eval_samples=4"]
FIGURES = ("pages_read", "pages_cleaned", "teacher_calls", "tune_trials", "gpu_hours_requested")


def main() -> None:
    import logging

    import pandas as pd

    from resumo import tables
    from resumo.config import load_config
    from resumo.pipelines import local
    from tests.corpus_edits import week_later

    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="resumo-recurring-") as tmp:
        root = Path(tmp)
        sets = [f"storage_root={root}", f"scrape.cache={root / 'cache/articles'}", f"distill.cache={root / 'cache/teacher'}", "tune.policy=reuse", *SHORTER]
        first, first_s = _timed(local.run, load_config("smoke", sets), root / "runs")
        first_articles = _articles(first, tables, pd)
        edited = sorted(int(i) for i in first_articles["page_id"])[:EDITED]
        dump, added = week_later(root / "week2.xml", edited, added=ADDED)
        second, second_s = _timed(local.run, load_config("smoke", [*sets, f"scrape.dump={dump}"]), root / "runs")
        second_articles = _articles(second, tables, pd)
        summaries = [json.loads(first.read_text()), json.loads(second.read_text())]

    test_before = set(first_articles.loc[first_articles["split"] == "test", "page_id"])
    test_after = set(second_articles.loc[second_articles["split"] == "test", "page_id"])
    results = {
        "first_run": {**summaries[0]["cost"]["this_run"], "tune_policy": summaries[0]["tune"]["policy"]["reason"], "wall_s": round(first_s, 1)},
        "second_run": {**summaries[1]["cost"]["this_run"], "tune_policy": summaries[1]["tune"]["policy"]["reason"], "wall_s": round(second_s, 1)},
        "full_run": summaries[1]["cost"]["full_run"],
        "between": {"edited_page_ids": edited, "added_page_ids": added, "deleted_page_ids": []},
        "splits": {
            "test_articles_first": len(test_before),
            "test_articles_second": len(test_after),
            "test_split_unchanged": test_before == test_after,
            "articles_that_moved_split": int(_moved(first_articles, second_articles)),
            "added_went_to": sorted(second_articles.loc[second_articles["page_id"].isin(added), "split"]),
        },
        "promotion": [s["promotion"]["promoted"] for s in summaries],
        "setup": {"profile": "smoke", "cpus": os.cpu_count(), "policy": "reuse"},
    }
    print(report(results))
    out = ROOT / "runs" / "bench" / "recurring.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"\nwritten to {out.relative_to(ROOT)}")
    second_run = results["second_run"]
    ok = second_run["teacher_calls"] == EDITED + ADDED and second_run["pages_cleaned"] <= EDITED + ADDED and second_run["tune_trials"] == 0
    if not (ok and results["splits"]["test_split_unchanged"]):
        raise SystemExit("the second run did not cost only what changed; see the table above")


def _timed(fn, *args):
    start = time.perf_counter()
    value = fn(*args)
    return value, time.perf_counter() - start


def _articles(summary_path: Path, tables, pd):
    """The run's articles with their split, from its scrape output."""
    (folder,) = Path(json.loads(summary_path.read_text())["artifacts"]).glob("*/scrape/articles")
    return pd.concat([tables.read_split(folder, name).assign(split=name) for name in tables.SPLITS], ignore_index=True)


def _moved(first, second) -> int:
    merged = first[["page_id", "split"]].merge(second[["page_id", "split"]], on="page_id", suffixes=("_first", "_second"))
    return (merged["split_first"] != merged["split_second"]).sum()


def report(results: dict) -> str:
    first, second, full = results["first_run"], results["second_run"], results["full_run"]
    lines = [f"{'figure':22} {'first run':>12} {'second run':>12} {'full run':>12}"]
    for name in FIGURES:
        lines.append(f"{name:22} {first[name]:>12} {second[name]:>12} {full[name]:>12}")
    lines.append(f"{'wall seconds':22} {first['wall_s']:>12} {second['wall_s']:>12}")
    splits = results["splits"]
    lines.append(f"\ntest split: {splits['test_articles_first']} -> {splits['test_articles_second']} articles, unchanged: {splits['test_split_unchanged']}; "
                 f"articles that moved split: {splits['articles_that_moved_split']}; added went to {splits['added_went_to']}")
    lines.append(f"tune, first run: {first['tune_policy']}")
    lines.append(f"tune, second run: {second['tune_policy']}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
