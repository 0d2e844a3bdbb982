"""A position-biased judge, as llama.cpp serving SmolLM2 showed one (it answers "A" every time):
the report and promote flag it, and its win rates gate nothing. Against the loopback judge server."""

import json

import pandas as pd
import pytest

from resumo import judge, promote, registry_pointer, report
from resumo.config import JudgeConfig, PromoteConfig
from tests.servers import judge_server

N = 6


def verdict(best: str) -> str:
    return json.dumps({"best": best, "explanation": "scripted"})


@pytest.fixture
def predictions():
    return pd.DataFrame(
        {
            "id": [f"{i}-1" for i in range(N)],
            "text": [f"Artigo número {i} sobre Lisboa." for i in range(N)],
            "prediction_untuned": [f"resumo RUIM {i}" for i in range(N)],
            "prediction_tuned": [f"resumo BOM {i}" for i in range(N)],
        }
    )


def judged(tmp_path, predictions, answer, **values) -> dict:
    with judge_server.serve(answer) as server:
        cfg = JudgeConfig(base_url=server.url, model="judge-test", api_key_env=None, max_retries=0, timeout_s=10, bootstrap_resamples=200, **values)
        return judge.run(cfg, predictions, tmp_path / "judge")


def fair(a: str, b: str) -> str:
    return verdict("A" if "BOM" in a else "B")


def test_a_judge_that_always_answers_a_is_flagged_in_the_report(tmp_path, predictions):
    result = judged(tmp_path, predictions, lambda a, b: verdict("A"))
    assert result["opponents"]["untuned"]["win_rate"] == 0.5  # looks like an even match
    assert judge.untrusted_opponents(result) == {"untuned": "position consistency 0% is below judge.min_position_consistency 60% (it picked the first summary 100% of the time)"}
    page = report.render_markdown({"models": {}}, result)
    assert "**Warning: the judge is not to be trusted against untuned" in page and "gates nothing" in page
    assert "50.0% (void: position-biased judge)" in page
    assert "not to be trusted" in report.render_html({"models": {}}, pd.DataFrame(), None, result, 0)
    assert judge.judge_scalars(result)["judge_untuned_trusted"] == 0


def test_a_fair_judge_is_not_flagged_and_the_threshold_is_the_judges_config(tmp_path, predictions):
    result = judged(tmp_path, predictions, fair)
    assert result["opponents"]["untuned"]["position_consistency"] == 1.0
    assert judge.untrusted_opponents(result) == {} and report.judge_warnings(result) == []
    assert judge.judge_scalars(result)["judge_untuned_trusted"] == 1
    assert "Warning" not in report.render_markdown({"models": {}}, result)
    # Half the articles consistent: under the default 0.6, above a configured 0.4.
    half = lambda a, b: verdict("A" if "BOM" in a or any(f"RUIM {i}" in a for i in range(N // 2)) else "B")  # noqa: E731
    assert "untuned" in judge.untrusted_opponents(judged(tmp_path / "d", predictions, half))
    assert judge.untrusted_opponents(judged(tmp_path / "c", predictions, half, min_position_consistency=0.4)) == {}


def test_promote_records_the_flag_and_still_decides_on_the_gates_alone(tmp_path, predictions):
    judged(tmp_path, predictions, lambda a, b: verdict("A"))
    model_dir = tmp_path / "adapter"
    model_dir.mkdir()
    (model_dir / "adapter_config.json").write_text('{"r": 8}')
    (model_dir / "resumo_model.json").write_text(json.dumps({"base_model": "tiny:qwen2", "prompt": {"version": "pt-v1", "n_words": 40}}))
    (tmp_path / "scores.json").write_text(json.dumps({"models": {"tuned": {"rougeLsum": 0.3, "bertscore_f1": 0.8, "not_portuguese_share": 0.0}}, "n_articles": N}))
    cfg = PromoteConfig(registry=str(tmp_path / "registry"))
    result = promote.run_stage(cfg, model_dir, tmp_path / "scores.json", judge=tmp_path / "judge", decision_file=tmp_path / "decision.json").outputs["decision"]
    assert result.promoted and [g.name for g in result.gates] == ["rougeLsum", "bertscore_f1", "not_portuguese_share"]  # no judge gate
    assert result.warnings == report.judge_warnings(json.loads((tmp_path / "judge" / "judge.json").read_text())) != []
    assert json.loads((tmp_path / "decision.json").read_text())["warnings"] == result.warnings
    lineage = registry_pointer.current_production(cfg.registry)["lineage"]
    assert lineage["judge_untrusted"] == {"untuned": judge.untrusted_opponents(json.loads((tmp_path / "judge" / "judge.json").read_text()))["untuned"]}
    assert lineage["judge"]["untuned"]["win_rate"] == 0.5
