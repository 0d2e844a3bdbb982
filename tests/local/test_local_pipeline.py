"""The smoke pipeline end to end on kfp.local, as `make run` runs it."""

import builtins
import json

import pytest

from resumo import promote
from resumo.pipelines import local
from resumo.config import load_config


@pytest.mark.slow
@pytest.mark.xdist_group("local-pipeline")
def test_smoke_pipeline_runs_end_to_end(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config("smoke", ["score.max_samples=8", "train.epochs=2", "train.eval_samples=4"])
    plain_print = builtins.print
    summary_path = local.run(cfg, tmp_path / "runs")
    # kfp.local's per-task print swaps race in ParallelFor threads; Katib-format lines printed
    # later in the same process must not come out indented.
    assert builtins.print is plain_print
    summary = json.loads(summary_path.read_text())

    scores = summary["scores"]
    assert set(scores) == {"baseline", "tuned"}
    for values in scores.values():
        assert {"rouge1", "rouge2", "rougeL", "rougeLsum", "bertscore_f1", "words_mean"} <= set(values)
        assert all(0 <= values[k] <= 1 for k in ("rouge1", "rouge2", "rougeL", "rougeLsum"))
    assert summary["tune"]["params"]["lora.r"] in cfg.tune.space.lora_r.values
    # The first run has no production model to beat, so it is published.
    assert summary["promotion"]["promoted"]
    production = promote.current_production(str(tmp_path / "runs" / "registry"))
    assert production["version"] == summary["promotion"]["version"]
    assert production["score"] == scores["tuned"]["rougeLsum"]
