"""The scoring report's files, scalars and escaping, on small synthetic scores."""

import base64
import html
import io
import json
import re

import matplotlib.image
import pandas as pd
import pytest

from resumo import report, storage

EVIL = "<script>alert('x')</script> & <b>"


def sample_scores(with_extras: bool = True) -> dict:
    scores = {
        "models": {
            "baseline": {"rouge1": 0.40, "rouge2": 0.21, "rougeL": 0.29, "rougeLsum": 0.30, "bertscore_f1": 0.74, "words_mean": 152.0},
            "tuned": {"rouge1": 0.55, "rouge2": 0.33, "rougeL": 0.41, "rougeLsum": 0.41, "bertscore_f1": 0.80, "words_mean": 97.0},
        },
        "n_articles": 4,
        "models_scored": {"baseline": "tiny:qwen2", "tuned": "runs/model/adapter"},
        "config": {"rouge_tokenizer": "unicode"},
    }
    if with_extras:
        scores["models"]["tuned"] |= {"not_portuguese_share": 0.004, "future_stat": 2.5}
        scores["intervals"] = {"tuned": {"rougeLsum": [0.39, 0.43], "bertscore_f1": [0.79, 0.81]}, "baseline": {"rougeLsum": [0.28, 0.32]}}
    return scores


def lead_scores() -> dict:
    """sample_scores with what score adds on a real run: lead baselines, copy diagnostics, an input guard."""
    scores = sample_scores()
    scores["models"]["tuned"] |= {"verbatim_prefix_share": 0.75, "longest_copied_span_mean": 31.5, "too_short_share": 0.6, "language_undetermined_share": 0.25}
    scores["intervals"]["tuned"]["verbatim_prefix_share"] = [0.5, 1.0]
    scores["baselines"] = {
        "lead": {"rougeLsum": 0.45, "bertscore_f1": 0.78},
        "lead_at_baseline": {"rougeLsum": 0.25, "bertscore_f1": 0.70},
        "lead_at_tuned": {"rougeLsum": 0.42, "bertscore_f1": 0.79},
    }
    scores["baseline_intervals"] = {"lead": {"rougeLsum": [0.40, 0.50]}}
    scores["versus_lead"] = {
        "baseline": {"rougeLsum": {"difference": 0.05, "interval": [0.02, 0.08], "n": 4}},
        "tuned": {"rougeLsum": {"difference": -0.01, "interval": [-0.015, -0.001], "n": 4}, "bertscore_f1": {"difference": 0.01, "interval": [-0.02, 0.03], "n": 4}},
    }
    scores["lead"] = {"n_words": 40}
    scores["input_guard"] = {"tuned": {"range": [100, 300], "longer": 3, "shorter": 0, "n": 4, "share": 0.75}}
    scores["config"] |= {"confidence": 0.95, "bertscore_model": "tiny:bert"}
    return scores


def sample_predictions() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": ["1-10", "2-20", "3-30", "4-40"],
            "text": ["Lisboa é a capital de Portugal. " * 20, EVIL, "Texto três.", "Texto quatro."],
            "reference": ["Lisboa é a capital.", "Resumo dois.", "Resumo três.", "Resumo quatro."],
            "prediction_baseline": ["Lisboa fica em Portugal e é grande " * 5, EVIL, "", "b"],
            "prediction_tuned": ["Lisboa é a capital de Portugal.", "Resumo dois bom.", "Resumo três bom.", "t"],
        }
    )


JUDGE = {
    "candidate": "tuned",
    "opponents": {"baseline": {"win_rate": 0.61, "interval": [0.55, 0.67], "wins": 50, "ties": 22, "losses": 28, "n_articles": 100, "invalid_verdicts": 3, "position_consistency": 0.7, "first_position_rate": 0.55}},
}


def images(page: str) -> list[bytes]:
    return [base64.b64decode(b) for b in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


def test_reports_are_written_with_every_section_and_real_pngs(tmp_path):
    curves = report._png(report._pyplot().figure())  # any real PNG stands in for train's curves.png
    paths = report.write_reports(sample_scores(), sample_predictions(), tmp_path, curves_png=curves, judge=JUDGE)
    assert {k: p.name for k, p in paths.items()} == {"html": "report.html", "markdown": "report.md", "metrics": "report_metrics.json"}
    page = paths["html"].read_text()
    pngs = images(page)
    assert len(pngs) == 4  # scores, lengths, judge, curves
    assert curves in pngs
    for png in pngs:
        assert matplotlib.image.imread(io.BytesIO(png), format="png").shape[1] > 100
    for heading in ("Scores", "Output statistics", "Summary lengths", "LLM judge", "Training curves", "Examples"):
        assert f"<h2>{heading}" in page
    assert "0.410 [0.390, 0.430]" in page and "0.4%" in page and "future_stat" in page
    assert page.count("class='example'") == 3  # n_examples


def test_data_is_escaped_and_no_script_or_remote_resource_is_in_the_page(tmp_path):
    page = report.write_reports(sample_scores(), sample_predictions(), tmp_path, n_examples=4)["html"].read_text()
    assert EVIL not in page and html.escape(EVIL) in page
    assert "<script" not in page.lower()
    assert not re.search(r'(src|href)="(?!data:)', page)  # the KFP UI's sandbox loads nothing from outside


def test_missing_optional_keys_are_left_out_not_invented(tmp_path):
    predictions = sample_predictions().drop(columns=["text"])
    paths = report.write_reports(sample_scores(with_extras=False), predictions, tmp_path)
    page = paths["html"].read_text()
    assert "Brackets" not in page and "LLM judge" not in page and "Training curves" not in page and "<details>" not in page
    assert len(images(page)) == 2
    assert "not_portuguese_share" not in paths["markdown"].read_text()


def test_scalar_metrics_flatten_models_intervals_and_judge():
    flat = report.scalar_metrics(sample_scores(), JUDGE)
    assert flat["tuned_rougeLsum"] == 0.41 and flat["baseline_words_mean"] == 152.0
    assert flat["tuned_rougeLsum_ci_low"] == 0.39 and flat["tuned_bertscore_f1_ci_high"] == 0.81
    assert flat["judge_baseline_win_rate"] == 0.61 and flat["judge_baseline_win_rate_ci_low"] == 0.55 and flat["judge_baseline_invalid_verdicts"] == 3
    assert flat["n_articles"] == 4
    assert all(isinstance(v, float) for v in flat.values())


def test_markdown_summary_has_the_table_and_the_judge(tmp_path):
    text = report.render_markdown(sample_scores(), JUDGE)
    assert "| tuned | 0.550 | 0.330 | 0.410 | 0.410 [0.390, 0.430] | 0.800 [0.790, 0.810] |" in text
    assert "## Output statistics\n\n| model | words_mean | not_portuguese_share | future_stat |" in text
    assert "| tuned | 97 | 0.4% | 2.500 |" in text
    assert "| baseline | 61.0% | [55.0%, 67.0%] | 50 / 22 / 28 | 100 | 3 | 70% | 55% |" in text
    assert text.startswith("# resumo scores (4 test articles)") and "Tiny random models" in text


@pytest.mark.parametrize("where", ["file", "s3"])
def test_reports_are_stored_with_the_run(tmp_path, request, where):
    prefix = str(tmp_path / "store") if where == "file" else request.getfixturevalue("s3") + "/reports/run-1"
    paths = report.write_reports(sample_scores(), sample_predictions(), tmp_path / "out", store_uri=prefix)
    assert storage.list_keys(prefix) == ["report.html", "report.md", "report_metrics.json"]
    assert json.loads(storage.read_text(storage.join(prefix, "report_metrics.json"))) == json.loads(paths["metrics"].read_text())


def test_component_logs_every_scalar_and_writes_both_pages(tmp_path):
    from kfp import dsl

    from resumo.components.report import report as component

    scores_dir, model_dir = tmp_path / "scores", tmp_path / "model"
    scores_dir.mkdir()
    model_dir.mkdir()
    (scores_dir / "scores.json").write_text(json.dumps(sample_scores()))
    sample_predictions().drop(columns=["text"]).to_parquet(scores_dir / "predictions.parquet")
    (model_dir / "curves.png").write_bytes(report._png(report._pyplot().figure()))
    (tmp_path / "judge").mkdir()
    (tmp_path / "judge" / "judge.json").write_text(json.dumps(JUDGE))
    page, summary, metrics = dsl.HTML(uri=str(tmp_path / "page.html")), dsl.Markdown(uri=str(tmp_path / "summary.md")), dsl.Metrics(uri=str(tmp_path / "m"))
    component.python_func(
        scores=dsl.Artifact(uri=str(scores_dir)), model=dsl.Model(uri=str(model_dir)), html=page, markdown=summary, metrics=metrics,
        judge=dsl.Artifact(uri=str(tmp_path / "judge")), store_uri=str(tmp_path / "store"),
    )  # fmt: skip
    assert len(images((tmp_path / "page.html").read_text())) == 4
    assert (tmp_path / "summary.md").read_text() == report.render_markdown(sample_scores(), JUDGE)
    assert metrics.metadata == report.scalar_metrics(sample_scores(), JUDGE) and len(metrics.metadata) > 20
    assert storage.list_keys(str(tmp_path / "store")) == ["report.html", "report.md", "report_metrics.json"]


def test_the_cli_prints_the_stages_metrics_and_writes_both_pages(tmp_path):
    from typer.testing import CliRunner

    from resumo.cli import app

    scores_dir, model_dir, judge_dir = tmp_path / "scores", tmp_path / "model", tmp_path / "judge"
    for folder in (scores_dir, model_dir, judge_dir):
        folder.mkdir()
    (scores_dir / "scores.json").write_text(json.dumps(sample_scores()))
    sample_predictions().drop(columns=["text"]).to_parquet(scores_dir / "predictions.parquet")
    (judge_dir / "judge.json").write_text(json.dumps(JUDGE))
    done = CliRunner().invoke(app, ["report", "--scores", str(scores_dir), "--model", str(model_dir), "--judge", str(judge_dir), "--out", str(tmp_path / "out")])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout) == report.scalar_metrics(sample_scores(), JUDGE)
    assert (tmp_path / "out" / "report.md").read_text() == report.render_markdown(sample_scores(), JUDGE)


def test_report_and_judge_components_compile_with_an_optional_judge_input(tmp_path):
    import yaml
    from kfp import compiler

    from resumo.components.judge import judge as judge_component
    from resumo.components.report import report as report_component

    for component in (report_component, judge_component):
        compiler.Compiler().compile(component, str(tmp_path / f"{component.name}.yaml"))
    spec = yaml.safe_load((tmp_path / "report.yaml").read_text())
    artifacts = spec["root"]["inputDefinitions"]["artifacts"]
    assert artifacts["judge"].get("isOptional") is True and not artifacts["scores"].get("isOptional")
    outputs = spec["root"]["outputDefinitions"]["artifacts"]
    assert {k: v["artifactType"]["schemaTitle"] for k, v in outputs.items()} == {"html": "system.HTML", "markdown": "system.Markdown", "metrics": "system.Metrics"}


def test_the_lead_baselines_copy_diagnostics_and_input_guard_are_on_every_page(tmp_path):
    scores = lead_scores()
    page = report.write_reports(scores, sample_predictions(), tmp_path)["html"].read_text()
    # a row per lead in the scores table, the comparison table and its sentence
    assert "<tr class='baseline'><td>lead (40 words)</td><td></td><td></td><td></td><td>0.450 [0.400, 0.500]</td><td>0.780</td></tr>" in page
    assert "lead at tuned&#x27;s length" in page and "<h2>Against copying the lead</h2>" in page
    assert "<td>tuned</td><td>rougeLsum</td><td>0.410</td><td>0.420</td><td>-0.010 [-0.015, -0.001]</td>" in page
    assert "tuned does worse than copying the opening of each text at its own length: rougeLsum -0.010 [-0.015, -0.001] (95% paired bootstrap over 4 articles)" in page
    assert "baseline beats copying the opening of each text at its own length" in page
    assert "<h2>Copy diagnostics</h2>" in page and "75.0% [50.0%, 100.0%]" in page and "31.5" in page
    assert "tuned: 3 of 4 inputs lie outside the 100-300 tokens of the texts it was trained on" in page
    text = report.render_markdown(scores)
    assert "| _lead (40 words)_ |  |  |  | 0.450 [0.400, 0.500] | 0.780 |" in text
    assert "- tuned does worse than copying the opening" in text and "**Warning: tuned: 3 of 4 inputs" in text
    flat = report.scalar_metrics(scores)
    assert flat["lead_rougeLsum"] == 0.45 and flat["lead_rougeLsum_ci_high"] == 0.50 and flat["lead_at_tuned_bertscore_f1"] == 0.79
    assert flat["tuned_minus_lead_at_own_length_rougeLsum"] == -0.01 and flat["tuned_minus_lead_at_own_length_rougeLsum_ci_low"] == -0.015
    assert flat["tuned_verbatim_prefix_share"] == 0.75


def test_an_interval_across_zero_cannot_be_told_from_copying():
    line = report.versus_lead_sentence("tuned", "bertscore_f1", {"difference": 0.01, "interval": [-0.02, 0.03], "n": 4}, 0.9)
    assert line.startswith("tuned cannot be told apart from copying the opening") and "(90% paired" in line
    assert "no rougeLsum difference" in report.versus_lead_sentence("x", "rougeLsum", {"difference": None, "interval": [None, None], "n": 0}, 0.95)


def test_the_model_card_carries_the_lead_and_the_copy_diagnostics():
    from resumo.promote import Gate

    meta = {"base_model": "Qwen/Qwen2.5-0.5B-Instruct", "input_tokens": {"min": 100, "max": 300, "n": 39}}
    card = report.model_card("v1", meta, lead_scores(), "tuned", None, [Gate("rougeLsum", True, "no production model yet")])
    assert "## Against copying the lead" in card and "| tuned | rougeLsum | 0.410 | 0.420 | -0.010 [-0.015, -0.001] |" in card
    assert "| _lead at tuned's length_ |" in card  # the lead rows under the scores table
    assert "## Copy diagnostics" in card and "| **tuned** | 75.0% [50.0%, 100.0%] | 31.5 |" in card
    assert "Trained on 39 texts of 100-300 tokens" in card and "**Warning: tuned: 3 of 4 inputs" in card
