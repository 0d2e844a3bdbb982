"""The pairwise judge against a real OpenAI-compatible HTTP server on loopback, with scripted verdicts."""

import json

import pandas as pd
import pytest

from resumo import judge
from resumo.config import JudgeConfig
from resumo.errors import ConfigError, DataError, ResumoError
from tests.servers import judge_server

N = 6


def verdict(best: str) -> str:
    return json.dumps({"best": best, "explanation": "scripted"})


def prefers_good(a: str, b: str) -> str:
    """A fair judge: the summary marked BOM is better, whichever position it is in."""
    return verdict("A" if "BOM" in a and "BOM" not in b else "B" if "BOM" in b and "BOM" not in a else "tie")


@pytest.fixture
def predictions():
    return pd.DataFrame(
        {
            "id": [f"{i}-1" for i in range(N)],
            "text": [f"Artigo número {i} sobre Lisboa." for i in range(N)],
            "reference": ["ref"] * N,
            "prediction_baseline": [f"resumo RUIM {i}" for i in range(N)],
            "prediction_llama": [f"resumo BOM {i}" if i < 3 else f"resumo RUIM {i}" for i in range(N)],
            "prediction_tuned": [f"resumo BOM {i}" for i in range(N)],
        }
    )


def config(server, **values) -> JudgeConfig:
    values = {"api_key_env": None} | values  # the loopback judge needs no key
    return JudgeConfig(base_url=server.url, model="judge-test", max_retries=0, timeout_s=10, bootstrap_resamples=500, **values)


def test_a_fair_judge_sees_the_better_model_with_both_orders_asked(predictions, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-123")
    with judge_server.serve(prefers_good) as server:
        result = judge.run(config(server, api_key_env="OPENAI_API_KEY"), predictions, tmp_path)
    assert len(server.requests) == N * 2 * 2  # articles x opponents x orders
    assert all(h["authorization"] == "Bearer sk-test-123" for h in server.headers)
    first = server.requests[0]
    assert first["model"] == "judge-test" and first["temperature"] == 0.0
    assert first["response_format"]["json_schema"]["schema"] == judge.VERDICT_SCHEMA
    assert "about 100 words is right; over 200 words or under 30 words is bad" in first["messages"][-1]["content"]

    baseline, llama = result["opponents"]["baseline"], result["opponents"]["llama"]
    assert baseline | {"interval": None} == {
        "win_rate": 1.0, "interval": None, "wins": 2 * N, "ties": 0, "losses": 0, "n_articles": N,
        "invalid_verdicts": 0, "position_consistency": 1.0, "first_position_rate": 0.5,
    }  # fmt: skip
    assert baseline["interval"] == [1.0, 1.0]
    # Against llama: three ties (both BOM) and three wins.
    assert llama["win_rate"] == pytest.approx(0.75) and (llama["wins"], llama["ties"]) == (6, 6)
    assert llama["interval"][0] < 0.75 < llama["interval"][1]
    assert json.loads((tmp_path / "judge.json").read_text())["opponents"] == result["opponents"]


def test_a_judge_that_always_answers_a_comes_out_even(predictions, tmp_path):
    with judge_server.serve(lambda a, b: verdict("A")) as server:
        result = judge.run(config(server), predictions, tmp_path)
    for r in result["opponents"].values():
        assert r["win_rate"] == 0.5 and r["wins"] == r["losses"] == N and r["ties"] == 0
        assert r["position_consistency"] == 0.0 and r["first_position_rate"] == 1.0
        assert r["interval"] == [0.5, 0.5]


def test_malformed_answers_are_counted_not_guessed(predictions, tmp_path):
    broken = {
        "resumo BOM 0": "A is better.",  # prose
        "resumo BOM 1": '{"best": "A", "explanation": "cut',  # truncated
        "resumo BOM 2": '{"best": "C", "explanation": "x"}',  # outside the schema
        "resumo BOM 3": '{"best": "A", "explanation": "x", "score": 9}',  # extra key
    }

    def script(a, b):
        return broken.get(a, prefers_good(a, b))  # breaks only the candidate-first order of 4 articles

    with judge_server.serve(script) as server:
        result = judge.run(config(server), predictions.drop(columns=["prediction_llama"]), tmp_path)
    r = result["opponents"]["baseline"]
    assert r["invalid_verdicts"] == 4 and r["n_articles"] == N - 4 and r["win_rate"] == 1.0
    errors = [json.loads(line)["error"] for line in (tmp_path / judge.VERDICTS_FILE).read_text().splitlines()]
    assert sorted(e.split(":")[0] for e in errors if e) == ["not JSON", "not JSON", "schema", "schema"]


def test_fenced_json_is_accepted_and_everything_else_strictly_refused():
    assert judge.parse_verdict('```json\n{"best": "tie", "explanation": "x"}\n```')[0] == {"best": "tie", "explanation": "x"}
    for bad in ('{"best": "a", "explanation": "x"}', '[{"best": "A", "explanation": "x"}]', 'Sure! {"best": "A", "explanation": "x"}', ""):
        assert judge.parse_verdict(bad)[0] is None, bad


def test_without_json_schema_support_it_steps_down_to_json_object(predictions, tmp_path):
    with judge_server.serve(prefers_good, json_schema=False) as server:
        result = judge.run(config(server, concurrency=1), predictions, tmp_path)
    kinds = [(r.get("response_format") or {}).get("type") for r in server.requests]
    assert kinds[0] == "json_schema" and set(kinds[1:]) == {"json_object"} and len(kinds) == 1 + N * 4
    assert result["opponents"]["baseline"]["win_rate"] == 1.0


def test_a_rerun_asks_only_what_is_missing(predictions, tmp_path):
    flaky = {"n": 0, "on": True}

    def fails_sometimes(a, b):
        flaky["n"] += 1
        return 503 if flaky["on"] and flaky["n"] % 4 == 0 else prefers_good(a, b)

    with judge_server.serve(fails_sometimes) as server:
        first = judge.run(config(server, concurrency=1), predictions, tmp_path)
        assert first["failed_requests"] == N
        before, flaky["on"] = len(server.requests), False
        second = judge.run(config(server, concurrency=1), predictions, tmp_path)
    assert len(server.requests) - before == N  # only the failed ones
    assert second["failed_requests"] == 0 and second["opponents"]["baseline"]["n_articles"] == N


def test_unreachable_endpoint_and_bad_inputs_are_clear_errors(predictions, tmp_path):
    cfg = JudgeConfig(base_url="http://127.0.0.1:9/v1", api_key_env=None, max_retries=0, timeout_s=5)
    with pytest.raises(ResumoError, match="answered none of 24 requests"):
        judge.run(cfg, predictions, tmp_path)
    with pytest.raises(ConfigError, match="judge.candidate = 'nope'"):
        judge.run(cfg.model_copy(update={"candidate": "nope"}), predictions, tmp_path)
    with pytest.raises(DataError, match=r"lack columns \['text'\]"):
        judge.run(cfg, predictions.drop(columns=["text"]), tmp_path)
    with pytest.raises(ConfigError, match="too_short_words < n_words"):
        from resumo.config import validate

        validate(JudgeConfig, {"n_words": 300})


def test_component_joins_articles_and_logs_win_rates(predictions, tmp_path):
    from kfp import dsl

    from resumo import tables
    from resumo.components.judge import judge as component

    tables.write_split(predictions[["id", "text"]], tmp_path / "pairs", "test")
    (tmp_path / "scores").mkdir()
    predictions.drop(columns=["text"]).to_parquet(tmp_path / "scores" / "predictions.parquet")
    metrics = dsl.Metrics(uri=str(tmp_path / "m"))
    with judge_server.serve(prefers_good) as server:
        component.python_func(
            config=config(server).model_dump(), pairs=dsl.Dataset(uri=str(tmp_path / "pairs")), scores=dsl.Artifact(uri=str(tmp_path / "scores")),
            verdicts=dsl.Artifact(uri=str(tmp_path / "verdicts")), metrics=metrics,
        )  # fmt: skip
    result = json.loads((tmp_path / "verdicts" / judge.RESULT_FILE).read_text())
    assert result["opponents"]["baseline"]["win_rate"] == 1.0
    # named as the report task names them (resumo.report), so the two tasks agree
    assert metrics.metadata == judge.judge_scalars(result)
    logged = {k: metrics.metadata[f"judge_{k}"] for k in ("baseline_win_rate", "baseline_n_articles", "baseline_invalid_verdicts", "llama_win_rate", "llama_n_articles", "llama_invalid_verdicts")}
    assert logged == {"baseline_win_rate": 1.0, "baseline_n_articles": N, "baseline_invalid_verdicts": 0, "llama_win_rate": 0.75, "llama_n_articles": N, "llama_invalid_verdicts": 0}


def test_a_named_key_that_is_not_set_stops_the_judge_before_any_request(predictions, tmp_path, monkeypatch):
    # The judge once sent the placeholder "EMPTY" here, and an endpoint that wants a key
    # refused every request, hours into a run; the teacher refused to start. Now both refuse.
    monkeypatch.delenv("JUDGE_KEY_NOT_SET", raising=False)
    with judge_server.serve(prefers_good) as server:
        with pytest.raises(ConfigError, match=r"judge.api_key_env = 'JUDGE_KEY_NOT_SET'.*judge.api_key_env=null"):
            judge.run(config(server, api_key_env="JUDGE_KEY_NOT_SET"), predictions, tmp_path)
    assert server.requests == []
    assert not (tmp_path / judge.VERDICTS_FILE).exists()
