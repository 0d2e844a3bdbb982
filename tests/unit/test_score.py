"""The score stage (models on a pairs folder) and the pairs-file form, and the layout of what they write."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from rouge_score import rouge_scorer
from transformers import AutoTokenizer
from typer.testing import CliRunner

from resumo import generation, models, report, score, tables, wiki
from resumo.config import PromptConfig, ScoreConfig
from resumo.errors import ConfigError, DataError
from resumo.text import lead_words, words

pytestmark = pytest.mark.numerics  # make test-kernels reruns these on other CPU kernels

FAST = {"bertscore_model": "tiny:bert", "bootstrap_resamples": 200, "batch_size": 4}
PAIRS = [
    {"prediction": "A ação começou em Lisboa.", "reference": "A ação começou no Porto e terminou em Lisboa.", "text": "A ação começou em Lisboa e seguiu para o Porto."},
    {"prediction": "O guarda-chuva é azul.", "reference": "O guarda chuva azul.", "text": "O guarda-chuva do avô é azul e velho."},
    {"prediction": "", "reference": "Uma referência.", "text": "Um artigo."},
    {"prediction": "Em 1554 foi fundada a cidade.", "reference": "A cidade foi fundada em 1554.", "text": "A cidade de São Paulo foi fundada em 1554."},
]


@pytest.fixture
def pairs_file(tmp_path):
    path = tmp_path / "pairs.jsonl"
    pd.DataFrame(PAIRS).to_json(path, orient="records", lines=True, force_ascii=False)
    return path


def test_pairs_file_with_the_rouge_score_tokenizer_equals_rouge_score(pairs_file, tmp_path):
    from resumo.cli import app

    out = tmp_path / "scores.json"
    result = CliRunner().invoke(app, ["score", "--pairs", str(pairs_file), "--out", str(out), "--metrics", "rouge", "--rouge-tokenizer", "rouge-score"])
    assert result.exit_code == 0, result.output
    scores = json.loads(out.read_text())
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL", "rougeLsum"], use_stemmer=False)
    for name in ("rouge1", "rouge2", "rougeL", "rougeLsum"):
        assert scores[name] == pytest.approx(np.mean([scorer.score(p["reference"], p["prediction"])[name].fmeasure for p in PAIRS]), abs=1e-15)
        low, high = scores["intervals"][name]
        assert low <= scores[name] <= high
    assert "bertscore_f1" not in scores and "words_mean" not in scores
    assert scores["n_pairs"] == 4 and scores["config"]["rouge_tokenizer"] == "rouge-score"


def test_pairs_file_all_metrics_from_parquet(tmp_path):
    path = tmp_path / "pairs.parquet"
    pd.DataFrame(PAIRS).to_parquet(path)
    scores = score.run_pairs(ScoreConfig(**FAST), path, tmp_path / "scores.json")
    assert set(scores) >= {"rouge1", "rouge2", "rougeL", "rougeLsum", "bertscore_f1", "words_mean", "words_p25", "words_p50", "words_p75",
                           "empty_share", "not_portuguese_share", "repeated_trigram_share", "compression_ratio", "novel_1gram_share"}
    assert scores["empty_share"] == pytest.approx(1 / 4)
    assert set(scores["intervals"]) >= {"rouge1", "bertscore_f1", "empty_share", "compression_ratio"}
    assert "words_p25" not in scores["intervals"]  # a quartile has no bootstrap interval here
    assert json.loads((tmp_path / "scores.json").read_text())["rouge1"] == scores["rouge1"]


def test_pairs_file_errors_name_the_problem(tmp_path, pairs_file):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prediction": "x"}\n')
    with pytest.raises(DataError, match="no `reference` column"):
        score.run_pairs(ScoreConfig(), bad, tmp_path / "s.json")
    with pytest.raises(DataError, match=".jsonl or .parquet"):
        score.run_pairs(ScoreConfig(), tmp_path / "pairs.csv", tmp_path / "s.json")
    nulls = tmp_path / "nulls.jsonl"
    nulls.write_text('{"prediction": null, "reference": "x"}\n')
    with pytest.raises(DataError, match="non-text"):
        score.run_pairs(ScoreConfig(), nulls, tmp_path / "s.json")


def test_cli_forms_are_not_mixed(tmp_path, pairs_file):
    from resumo.cli import app

    folder = CliRunner().invoke(app, ["score", "--pairs", str(tmp_path), "--out", str(tmp_path / "s.json")])
    assert isinstance(folder.exception, ConfigError) and "--model NAME=REF" in str(folder.exception)
    file_with_model = CliRunner().invoke(app, ["score", "--pairs", str(pairs_file), "--out", str(tmp_path / "o"), "--model", "a=tiny:qwen2"])
    assert isinstance(file_with_model.exception, ConfigError) and "drop --model" in str(file_with_model.exception)
    unknown = CliRunner().invoke(app, ["score", "--pairs", str(pairs_file), "--out", str(tmp_path / "s.json"), "--metrics", "rouge,bleu"])
    assert isinstance(unknown.exception, ConfigError) and "score.metrics" in str(unknown.exception)


def test_stemming_with_the_published_tokenizer_fails_in_config():
    with pytest.raises(ValueError, match="rouge_stem=true needs rouge_tokenizer=unicode"):
        ScoreConfig(rouge_stem=True, rouge_tokenizer="rouge-score")


@pytest.fixture(scope="module")
def test_pairs_dir(tmp_path_factory):
    """A pairs folder whose test split is three bundled articles with lead summaries (one rejected by the filter)."""
    texts = [t for t in wiki.bundled_texts() if len(t.split()) > 80][:4]
    folder = tmp_path_factory.mktemp("pairs")
    rows = pd.DataFrame(
        {"id": [f"a{i}" for i in range(4)], "text": texts, "summary": [" ".join(t.split()[:30]) for t in texts], "filter_reason": [None, None, "preamble", None]}
    )
    tables.write_split(rows, folder, "test")
    return folder


@pytest.fixture(scope="module")
def tuned_model(tmp_path_factory):
    """tiny:qwen2 saved as one of ours: a full (merged) model with the prompt it was tuned on."""
    path = tmp_path_factory.mktemp("tuned") / "model"
    shutil.copytree(models.resolve("tiny:qwen2"), path)
    # Trained, it says, on texts of 1-50 tokens: every test article (over 80 words) is longer.
    meta = {"base_model": "tiny:qwen2", "prompt": PromptConfig(n_words=50).model_dump(), score.INPUT_TOKENS: {"min": 1, "max": 50, "n": 2}}
    (path / generation.MODEL_META).write_text(json.dumps(meta))
    return str(path)


def test_stage_scores_the_comparison_set(test_pairs_dir, tuned_model, tmp_path, caplog):
    cfg = ScoreConfig(**FAST, max_new_tokens=8, reference_models={"reference": "tiny:qwen2"})
    with caplog.at_level("INFO", logger="resumo.score"):
        means = score.run(cfg, test_pairs_dir, {"baseline": "tiny:qwen2", "tuned": tuned_model}, tmp_path)
    scores = json.loads((tmp_path / "scores.json").read_text())
    names = ["baseline", "tuned", "reference"]
    assert list(scores["models"]) == names and scores["n_articles"] == 3
    assert means["tuned"]["rougeLsum"] == scores["models"]["tuned"]["rougeLsum"]
    for name in names:
        for metric in ("rouge1", "rouge2", "rougeL", "rougeLsum", "bertscore_f1", "words_mean", "novel_2gram_share", *report.COPY):
            assert metric in scores["models"][name]
            low, high = scores["intervals"][name][metric]
            assert low - 1e-12 <= scores["models"][name][metric] <= high + 1e-12
        # 8 new tokens make fewer words than score.min_language_words: no language is judged
        assert scores["models"][name]["not_portuguese_share"] is None and scores["models"][name]["language_undetermined_share"] == 1.0
    # the untuned baseline and the reference model are asked with the tuned model's prompt: same model, same answers
    predictions = pd.read_parquet(tmp_path / "predictions.parquet")
    assert list(predictions["id"]) == ["a0", "a1", "a3"]
    assert list(predictions["prediction_baseline"]) == list(predictions["prediction_reference"])
    assert scores["models"]["baseline"]["rougeLsum"] == scores["models"]["reference"]["rougeLsum"]
    # per-article values are the ones the means come from
    assert scores["models"]["tuned"]["rouge1"] == pytest.approx(predictions["rouge1_tuned"].mean())
    assert {"words_tuned", "bertscore_f1_baseline", "compression_ratio_reference"} <= set(predictions.columns)
    # paired differences of the candidate against every other model
    assert scores["candidate"] == "tuned" and set(scores["differences"]) == {"baseline", "reference"}
    diff = scores["differences"]["baseline"]["rouge1"]
    assert diff["difference"] == pytest.approx((predictions["rouge1_tuned"] - predictions["rouge1_baseline"]).mean())
    assert diff["n"] == 3
    # every scalar, flat, as the component logs it
    flat = report.scalar_metrics(scores)
    assert flat["tuned_rougeLsum"] == scores["models"]["tuned"]["rougeLsum"]
    assert flat["tuned_rougeLsum_ci_low"] == scores["intervals"]["tuned"]["rougeLsum"][0]
    assert "tuned_minus_baseline_bertscore_f1_ci_high" in flat
    assert all(isinstance(v, float) for v in flat.values())
    assert not (tmp_path / "report.md").exists()  # score writes numbers; resumo.report renders them
    summary = report.render_markdown(scores)
    assert "| tuned |" in summary and "bootstrap" in summary

    # the lead baselines: at the prompt's n_words (the tuned model's prompt, 50), and at each model's own length
    assert scores["lead"]["n_words"] == 50
    assert set(scores["baselines"]) == {"lead", "lead_at_baseline", "lead_at_tuned", "lead_at_reference"}
    assert set(scores["versus_lead"]) == set(names) and set(scores["versus_lead"]["tuned"]) == {"rouge1", "rouge2", "rougeL", "rougeLsum", "bertscore_f1"}
    # the reference summaries are each article's first 30 words, all inside its 50-word lead
    assert scores["baselines"]["lead"]["rouge1"] > scores["models"]["tuned"]["rouge1"]
    versus = scores["versus_lead"]["tuned"]["rougeLsum"]
    paired = predictions["rougeLsum_tuned"].to_numpy() - predictions["rougeLsum_lead_at_tuned"].to_numpy()
    assert versus["difference"] == np.mean(paired) and versus["n"] == 3  # the same float64 values, the same numpy mean: exact
    assert scores["baselines"]["lead_at_tuned"]["rougeLsum"] == np.mean(predictions["rougeLsum_lead_at_tuned"].to_numpy())
    assert not any(c.startswith("prediction_lead") for c in predictions.columns)  # the judge judges models, not baselines
    assert flat["tuned_minus_lead_at_own_length_rougeLsum"] == versus["difference"] and "lead_at_tuned_rougeLsum_ci_low" in flat
    assert "Against copying the lead" in summary and "lead at tuned's length" in summary
    # the input guard: the tuned model records its training inputs' range, tiny:qwen2 records none
    assert scores["input_guard"] == {"tuned": {"range": [1, 50], "longer": 3, "shorter": 0, "n": 3, "share": 1.0}}
    assert scores["models"]["tuned"]["inputs_beyond_training_share"] == 1.0 and "inputs_beyond_training_share" not in scores["models"]["baseline"]
    assert any("tuned: 3 of 3 inputs lie outside the 1-50 tokens" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)
    assert any(r.getMessage().startswith("score: tuned ") and "copying the opening" in r.getMessage() for r in caplog.records)


def test_reference_model_names_must_not_clash(test_pairs_dir, tmp_path):
    cfg = ScoreConfig(**FAST, reference_models={"tuned": "tiny:qwen2"})
    with pytest.raises(ConfigError, match="rename"):
        score.run(cfg, test_pairs_dir, {"baseline": "tiny:qwen2", "tuned": "tiny:qwen2"}, tmp_path)
    with pytest.raises(ConfigError, match="kept for the lead baselines"):
        score.run(ScoreConfig(**FAST), test_pairs_dir, {"lead_at_tuned": "tiny:qwen2"}, tmp_path)


def test_a_prediction_that_is_the_lead_at_its_own_length_differs_from_it_by_nothing(tmp_path):
    texts = [t for t in wiki.bundled_texts() if len(t.split()) > 80][:6]
    lengths = [5, 12, 20, 33, 40, 7]
    rows = [{"text": t, "reference": " ".join(t.split()[10:40]), "prediction": lead_words(t, n)} for t, n in zip(texts, lengths)]
    pd.DataFrame(rows).to_json(tmp_path / "lead.jsonl", orient="records", lines=True, force_ascii=False)
    scores = score.run_pairs(ScoreConfig(**FAST), tmp_path / "lead.jsonl", tmp_path / "s.json", PromptConfig(n_words=25))
    for metric, diff in scores["versus_lead"].items():
        assert diff == {"difference": 0.0, "interval": [0.0, 0.0], "n": 6}, metric
    assert scores["baselines"]["lead_at_own_length"]["rougeLsum"] == scores["rougeLsum"]
    assert scores["verbatim_prefix_share"] == 1.0 and scores["lead"]["n_words"] == 25
    # a summary that is not the opening: the same words as the reference, so it beats the lead at its length
    rows = [r | {"prediction": r["reference"]} for r in rows]
    pd.DataFrame(rows).to_json(tmp_path / "ref.jsonl", orient="records", lines=True, force_ascii=False)
    scores = score.run_pairs(ScoreConfig(**FAST), tmp_path / "ref.jsonl", tmp_path / "s.json", PromptConfig(n_words=25))
    assert scores["versus_lead"]["rougeLsum"]["interval"][0] > 0 and scores["verbatim_prefix_share"] == 0.0
    assert scores["baselines"]["lead"] != scores["baselines"]["lead_at_own_length"]


def test_input_guard_counts_texts_outside_the_training_range(tuned_model):
    tokenizer = AutoTokenizer.from_pretrained(tuned_model)
    texts = ["Lisboa.", "A cidade de Lisboa fica na foz do rio Tejo.", "palavra " * 200]
    lengths = score.token_lengths(tokenizer, texts)
    low, high = lengths[0] + 1, lengths[1]
    assert score.count_beyond(lengths, low, high) == {"range": [low, high], "longer": 1, "shorter": 1, "n": 3, "share": 2 / 3}
    # train's record is the range of the same counts
    assert score.training_input_record(tokenizer, texts)["min"] == min(lengths) and score.training_input_record(tokenizer, texts)["max"] == max(lengths)
    assert score.fit_inputs("tiny:qwen2", texts) == (texts, None)  # a model that records no range is not guarded
    kept, guard = score.fit_inputs(tuned_model, texts)
    assert kept == texts and (guard["longer"], guard["shorter"]) == (sum(n > 50 for n in lengths), 0) and "cut" not in guard


def test_long_inputs_cut_reads_a_longer_text_within_the_training_range(tuned_model):
    # tuned_model was trained on texts of 1-50 tokens
    tokenizer = AutoTokenizer.from_pretrained(tuned_model)
    first = "A cidade de Lisboa fica na foz do rio Tejo."
    paragraphs = "\n\n".join([first, "Lisboa é a capital de Portugal. " * 12, "Fim."])
    one_long_paragraph = "palavra " * 200
    texts = [first, paragraphs, one_long_paragraph]
    fitted, guard = score.fit_inputs(tuned_model, texts, "cut")
    assert guard["cut"] == guard["longer"] == 2
    assert fitted[0] == first  # within the range: read whole
    assert fitted[1] == first  # leading whole paragraphs within 50 tokens, as scrape cut the training articles
    assert fitted[2].split() == ["palavra"] * len(fitted[2].split()) and score.token_lengths(tokenizer, [fitted[2]])[0] <= 50 < len(fitted[2].split()) * 2
    assert score.fit_inputs("tiny:qwen2", texts, "cut") == (texts, None)  # no recorded range: nothing to cut to
    line = report.guard_line("tuned", guard)
    assert "2 longer were cut" in line and "score.long_inputs=cut" in line
    assert "score.long_inputs=cut reads only" in report.guard_line("tuned", score.fit_inputs(tuned_model, texts)[1])


def test_score_with_long_inputs_cut_generates_from_the_cut_article_and_scores_the_whole(test_pairs_dir, tuned_model, tmp_path, monkeypatch):
    read, generate = [], score.generation.summarize

    def spy(loaded, texts, *args, **kwargs):  # what the model is given, then the real generation
        read.append(list(texts))
        return generate(loaded, texts, *args, **kwargs)

    monkeypatch.setattr(score.generation, "summarize", spy)
    cfg = ScoreConfig(**FAST, max_new_tokens=4, metrics=["rouge", "stats"], long_inputs="cut")
    score.run(cfg, test_pairs_dir, {"tuned": tuned_model}, tmp_path)
    scores = json.loads((tmp_path / "scores.json").read_text())
    [texts] = read
    assert max(score.token_lengths(AutoTokenizer.from_pretrained(tuned_model), texts)) <= 50 and scores["input_guard"]["tuned"]["cut"] == 3
    # the metrics read the whole article: compression is the whole article's words over the output's
    # (one correctly rounded float64 division of two integer counts on both sides: equal exactly)
    rows = pd.read_parquet(tmp_path / "predictions.parquet")
    articles = {str(r["id"]): r["text"] for r in tables.read_split(test_pairs_dir, "test").to_dict("records")}
    for row in rows.to_dict("records"):
        if words(row["prediction_tuned"]):
            assert row["compression_ratio_tuned"] == len(words(articles[str(row["id"])])) / len(words(row["prediction_tuned"]))


def test_summarize_writes_its_own_column_and_prints_the_input_guard(tuned_model, tmp_path):
    from resumo.cli import app

    source = tmp_path / "in.jsonl"
    pd.DataFrame({"text": ["A cidade de Lisboa fica na foz do rio Tejo."], "summary": ["Lisboa e o Tejo."]}).to_json(source, orient="records", lines=True)
    sets = ["--set", "score.max_new_tokens=4"]
    result = CliRunner().invoke(app, ["summarize", "--model", tuned_model, "--in", str(source), "--out", str(tmp_path / "out.jsonl"), *sets])
    assert result.exit_code == 0, result.output
    out = pd.read_json(tmp_path / "out.jsonl", lines=True)
    assert list(out.columns) == ["text", "summary", "prediction"] and list(out["summary"]) == ["Lisboa e o Tejo."]  # the references untouched
    assert "0 of 1 inputs lie outside the 1-50 tokens" in result.stderr
    taken = CliRunner().invoke(app, ["summarize", "--model", tuned_model, "--in", str(source), "--out", str(tmp_path / "o2.jsonl"), "--column", "summary", *sets])
    assert isinstance(taken.exception, ConfigError) and "column 'summary'" in str(taken.exception) and "--column" in str(taken.exception)
    assert not (tmp_path / "o2.jsonl").exists()


def test_a_rerun_reuses_the_summaries_already_generated(test_pairs_dir, tuned_model, tmp_path, caplog):
    cfg = ScoreConfig(**FAST, max_new_tokens=4, metrics=["rouge"])
    score.run(cfg, test_pairs_dir, {"baseline": "tiny:qwen2", "tuned": tuned_model}, tmp_path)
    first = pd.read_parquet(tmp_path / "predictions.parquet")
    with caplog.at_level("INFO", logger="resumo.score"):
        score.run(cfg, test_pairs_dir, {"baseline": "tiny:qwen2", "tuned": tuned_model}, tmp_path)
    assert sum("reuses 3 summaries" in r.getMessage() for r in caplog.records) == 2
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "predictions.parquet"), first)
    caplog.clear()
    # a new token limit (or prompt, articles, model files) generates again
    with caplog.at_level("INFO", logger="resumo.score"):
        score.run(cfg.model_copy(update={"max_new_tokens": 6}), test_pairs_dir, {"baseline": "tiny:qwen2"}, tmp_path)
    assert not any("reuses" in r.getMessage() for r in caplog.records)


def test_the_component_scores_production_on_the_same_articles(test_pairs_dir, tuned_model, tmp_path):
    from kfp import dsl

    from resumo import promote, registry_pointer
    from resumo.components import score as component
    from resumo.config import PromoteConfig, TrainConfig

    registry = str(tmp_path / "registry")
    promote.run(PromoteConfig(registry=registry), tuned_model, {"models": {"tuned": {"rougeLsum": 0.2, "bertscore_f1": 0.5, "not_portuguese_share": 0.0}}})
    model_artifact = dsl.Model(name="model", uri="")
    model_artifact.path = str(tmp_path / "train")
    shutil.copytree(tuned_model, tmp_path / "train" / "adapter")
    pairs, scores, metrics = dsl.Dataset(name="pairs", uri=""), dsl.Artifact(name="scores", uri=""), dsl.Metrics(name="metrics", uri="")
    pairs.path, scores.path = str(test_pairs_dir), str(tmp_path / "scores")
    component.score_component(ScoreConfig().engine).python_func(
        config=ScoreConfig(**FAST, max_new_tokens=6, metrics=["rouge"]).model_dump(mode="json"),
        train_config=TrainConfig(student="tiny:qwen2").model_dump(mode="json"),
        promote_config=PromoteConfig(registry=registry).model_dump(mode="json"),
        pairs=pairs, model=model_artifact, scores=scores, metrics=metrics,
    )
    written = json.loads((tmp_path / "scores" / "scores.json").read_text())
    assert list(written["models"]) == ["baseline", "tuned", "production"]
    assert written["models_scored"]["production"] == registry_pointer.current_production(registry)["model"]
    # production holds the same files as the candidate here: the same summaries, the same scores
    assert written["models"]["production"] == written["models"]["tuned"]
    assert metrics.metadata["tuned_minus_production_rougeLsum"] == 0
