"""The smoke pipeline end to end on kfp.local, as `make run` runs it.

What is pinned here holds on any machine: the scrape and distill steps are integer
and text work, the DAG and the promotion rules are logic. Scores come from floats
trained on this CPU's kernels, so they are checked for their names and ranges, and
for a direction only where the margin dwarfs what another CPU could move
(see MARGINS).
"""

import builtins
import json
import re
from pathlib import Path

import pytest

from resumo import promote, registry_pointer, tables
from resumo.pipelines import local
from resumo.config import load_config

pytestmark = pytest.mark.numerics  # make test-kernels reruns it on other CPU kernels

# The tasks kfp.local runs, the two `distill` runs being the shards of the ParallelFor, and what
# each must wait for. kfp.local orders ties by its protobuf map's iteration order, which differs
# between machines (scrape and plan-shards came out either way round), so only the DAG is pinned.
TASKS = ["check-parameters", "distill", "distill", "merge-pairs", "plan-shards", "promote", "report", "score", "scrape", "train", "tune"]
RUNS_AFTER = {
    "scrape": {"check-parameters"},
    "plan-shards": {"check-parameters"},
    "distill": {"scrape", "plan-shards"},
    "merge-pairs": {"distill"},
    "tune": {"merge-pairs"},
    "train": {"tune"},
    "score": {"train"},
    "report": {"score"},
    "promote": {"score", "report"},
}
# The bundled corpus: 73 pages, 65 articles kept, split by article (docs/stages.md: "The bundled corpus").
SPLITS = {"train": 39, "val": 13, "test": 13}
SCORE_NAMES = {
    "rouge1", "rouge2", "rougeL", "rougeLsum", "bertscore_f1", "words_mean", "words_p25", "words_p50", "words_p75", "empty_share",
    "not_portuguese_share", "repeated_trigram_share", "compression_ratio", "novel_1gram_share", "novel_2gram_share", "novel_3gram_share",
}  # fmt: skip
GATES = ["rougeLsum", "bertscore_f1", "not_portuguese_share"]


def _executed_tasks(output: str) -> list[str]:
    """Task names in the order kfp.local logged them (its logger writes to stdout, in colour)."""
    return re.findall(r"Executing task '([^']+)'", re.sub(r"\x1b\[[0-9;]*m", "", output))


@pytest.mark.slow
@pytest.mark.xdist_group("local-pipeline")
def test_smoke_pipeline_runs_end_to_end(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    cfg = load_config("smoke", ["score.max_samples=8", "train.epochs=2", "train.eval_samples=4"])
    plain_print = builtins.print
    summary_path = local.run(cfg, tmp_path / "runs")
    # kfp.local's per-task print swaps race in ParallelFor threads; Katib-format lines printed
    # later in the same process must not come out indented.
    assert builtins.print is plain_print
    executed = _executed_tasks(capsys.readouterr().out)
    assert sorted(executed) == TASKS
    for task, upstream in RUNS_AFTER.items():
        first_run = executed.index(task)
        assert all(max(i for i, name in enumerate(executed) if name == up) < first_run for up in upstream), (task, executed)
    summary = json.loads(summary_path.read_text())

    (run_artifacts,) = Path(summary["artifacts"]).iterdir()
    articles, pairs = run_artifacts / "scrape" / "articles", run_artifacts / "merge-pairs" / "pairs"
    assert {split: len(tables.read_split(articles, split)) for split in tables.SPLITS} == SPLITS
    # The extractive teacher answers every article and the filter keeps every answer.
    pair_splits = {split: tables.read_split(pairs, split) for split in tables.SPLITS}
    assert {split: len(df) for split, df in pair_splits.items()} == SPLITS
    assert all(df["filter_reason"].isna().all() for df in pair_splits.values())

    scores = summary["scores"]
    assert set(scores) == {"baseline", "tuned"}
    for values in scores.values():
        assert SCORE_NAMES <= set(values)
        assert all(0 <= values[k] <= 1 for k in ("rouge1", "rouge2", "rougeL", "rougeLsum"))
    # Every scored model beside the lead of each article cut at its own length, with the paired difference (issue 26).
    (scored,) = [json.loads(f.read_text()) for f in run_artifacts.rglob("scores.json") if "versus_lead" in json.loads(f.read_text())]
    assert set(scored["versus_lead"]) == {"baseline", "tuned"} and set(scored["baselines"]) == {"lead", "lead_at_baseline", "lead_at_tuned"}
    assert all(set(diff["rougeLsum"]) == {"difference", "interval", "n"} for diff in scored["versus_lead"].values())
    assert summary["tune"]["params"]["lora.r"] in cfg.tune.space.lora_r.values
    # Nothing cached and tune.policy always: this run costs what a full run costs.
    cost = summary["cost"]
    assert cost["this_run"]["pages_cleaned"] == cost["full_run"]["pages_cleaned"] == cost["this_run"]["pages_read"]
    assert cost["this_run"]["teacher_calls"] == cost["full_run"]["teacher_calls"] == sum(SPLITS.values())
    assert cost["this_run"]["tune_trials"] == cost["full_run"]["tune_trials"] == 2
    # The first run has no production model to beat, so it is published, every gate passing.
    promotion = summary["promotion"]
    assert promotion["promoted"] and promotion["production_score"] is None
    assert [(g["name"], g["passed"]) for g in promotion["gates"]] == [(name, True) for name in GATES]
    production = registry_pointer.current_production(str(tmp_path / "runs" / "registry"))
    assert production["version"] == promotion["version"]
    assert production["score"] == scores["tuned"]["rougeLsum"]
