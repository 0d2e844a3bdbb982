"""The `openai` teacher against a real OpenAI-compatible HTTP server on 127.0.0.1: faults, retries, concurrency."""

import pytest

from resumo import distill
from resumo.config import DistillConfig, TeacherConfig, load_config
from resumo.errors import ConfigError
from resumo.teachers import OpenAITeacher, TeacherUnavailable
from tests.servers.openai_compat import OpenAICompatServer

TEXTS = [f"O artigo número {i} fala de Lisboa, do Porto e de Coimbra, cidades de Portugal com muita história." for i in range(6)]


def teacher_config(server: OpenAICompatServer, **overrides) -> TeacherConfig:
    values = {"backend": "openai", "model": "teacher-8b", "base_url": server.base_url, "api_key_env": None, "timeout_s": 2.0, "max_retries": 2}
    return TeacherConfig(**{**values, **overrides})


def ask(server: OpenAICompatServer, texts: list[str], **overrides) -> list[str | None]:
    cfg = DistillConfig(teacher=teacher_config(server, **overrides))
    return OpenAITeacher(cfg.teacher, cfg.prompt).generate(texts)


@pytest.fixture
def server():
    with OpenAICompatServer() as s:
        yield s


def test_answers_come_back_in_order_with_the_study_prompt_and_greedy_settings(server):
    answers = ask(server, TEXTS[:3], max_new_tokens=123)
    assert answers == [" ".join(t.split()[:40]) for t in TEXTS[:3]]
    assert server.count == 3
    request = server.requests[0]
    assert request["model"] == "teacher-8b" and request["temperature"] == 0.0 and request["max_tokens"] == 123
    assert request["messages"][0]["role"] == "user" and "no máximo 100 palavras" in request["messages"][0]["content"]


def test_a_500_is_retried(server):
    server.fail_next("500", times=2)
    assert ask(server, TEXTS[:1]) == [" ".join(TEXTS[0].split()[:40])]
    assert server.count == 3


def test_a_request_that_hangs_past_the_timeout_is_retried(server):
    server.fail_next("hang")
    assert ask(server, TEXTS[:1], timeout_s=0.5) == [" ".join(TEXTS[0].split()[:40])]
    assert server.count == 2


def test_an_article_that_keeps_failing_is_none_and_the_others_arrive(server):
    server.fail_when(lambda prompt: "número 1 " in prompt, "500")
    answers = ask(server, TEXTS[:3], max_retries=1)
    assert answers[1] is None and answers[0] and answers[2]
    assert sum("número 0 " in p for p in server.prompts()) == 1  # the healthy ones were asked once
    assert sum("número 1 " in p for p in server.prompts()) == 2  # one try and one retry


def test_malformed_json_is_that_article_s_failure(server):
    server.fail_when(lambda prompt: "número 2 " in prompt, "malformed")
    answers = ask(server, TEXTS[:3])
    assert answers[2] is None and answers[0] and answers[1]


def test_concurrency_is_bounded_and_used(server):
    server.hold_until_in_flight = 2  # each request waits (bounded) until two are open at once
    answers = ask(server, TEXTS, concurrency=2, timeout_s=30)
    assert all(answers) and server.count == len(TEXTS)
    assert server.max_in_flight == 2


def test_a_dead_endpoint_stops_the_run_after_a_streak_of_failures(server):
    server.fail_when(lambda prompt: True, "500")
    with pytest.raises(TeacherUnavailable, match="failed 2 requests in a row") as err:
        ask(server, TEXTS, max_retries=0, concurrency=1, max_consecutive_failures=2)
    assert server.count == 2  # not one request per article
    assert err.value.answers == [None] * len(TEXTS)


def test_the_api_key_comes_from_the_named_environment_variable(server, monkeypatch):
    monkeypatch.setenv("RESUMO_TEST_TEACHER_KEY", "s3cr3t")
    ask(server, TEXTS[:1], api_key_env="RESUMO_TEST_TEACHER_KEY")
    assert server.headers[0]["authorization"] == "Bearer s3cr3t"
    monkeypatch.delenv("RESUMO_TEST_TEACHER_KEY")
    with pytest.raises(ConfigError, match="RESUMO_TEST_TEACHER_KEY"):
        ask(server, TEXTS[:1], api_key_env="RESUMO_TEST_TEACHER_KEY")


def test_openai_backend_needs_a_base_url():
    with pytest.raises(ConfigError, match="base_url"):
        load_config("smoke", ["distill.teacher.backend=openai"])


def test_failed_articles_are_labelled_and_the_stage_goes_on(articles_dir, tmp_path):
    bad = "Texto:\n" + distill.read_articles(articles_dir)["text"][0].strip()[:200]
    with OpenAICompatServer() as server:
        server.fail_when(lambda prompt: bad in prompt, "500")
        cfg = load_config("smoke", ["distill.teacher.backend=openai", f"distill.teacher.base_url={server.base_url}", "distill.teacher.api_key_env=null", "distill.teacher.max_retries=0"]).distill
        result = distill.run(cfg, articles_dir, tmp_path / "pairs")
    assert result.counts["rejected_teacher_error"] == 1
    pairs = distill.read_pairs(tmp_path / "pairs")
    failed = pairs[pairs["filter_reason"] == "teacher_error"]
    assert len(failed) == 1 and failed["raw_summary"].isna().all() and len(pairs) == result.counts["articles"]
