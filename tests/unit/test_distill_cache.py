"""The teacher cache in object storage (S3 on a loopback moto server, or a path), with a counting teacher server."""

import pandas as pd
import pytest

from resumo import distill, storage, tables
from resumo.config import DistillConfig, PromptConfig, TeacherConfig, load_config
from resumo.distill_cache import TeacherCache, cache_key, key_material
from resumo.teachers import TeacherUnavailable
from tests.servers.openai_compat import OpenAICompatServer

ROWS_PER_SPLIT = 4


@pytest.fixture
def few_articles(articles_dir, tmp_path):
    """Four articles per split, in a folder a test may change."""
    out = tmp_path / "articles"
    for split in tables.SPLITS:
        tables.write_split(tables.read_split(articles_dir, split).head(ROWS_PER_SPLIT), out, split)
    return out


@pytest.fixture
def server():
    with OpenAICompatServer() as s:
        yield s


def config(server: OpenAICompatServer, cache: str, *overrides: str) -> DistillConfig:
    return load_config(
        "smoke",
        ["distill.teacher.backend=openai", f"distill.teacher.base_url={server.base_url}", "distill.teacher.api_key_env=null", f"distill.cache={cache}", *overrides],
    ).distill


def cached_objects(prefix: str) -> list[str]:
    return [k for k in storage.list_keys(prefix) if k.endswith(".json")]


def test_a_second_run_asks_the_teacher_nothing_and_a_changed_article_once(s3, server, few_articles, tmp_path):
    cache = f"{s3}/cache/teacher"
    n = ROWS_PER_SPLIT * len(tables.SPLITS)

    first = distill.run(config(server, cache), few_articles, tmp_path / "run1")
    assert server.count == n and first.counts["teacher_answers"] == n and first.counts["cache_hits"] == 0
    assert len(cached_objects(cache)) == n

    second = distill.run(config(server, cache), few_articles, tmp_path / "run2")
    assert server.count == n  # zero new requests
    assert second.counts["cache_hits"] == n and second.counts["teacher_answers"] == 0
    for split in tables.SPLITS:
        pd.testing.assert_frame_equal(tables.read_split(tmp_path / "run1", split), tables.read_split(tmp_path / "run2", split))

    # A new revision of one article: the teacher is asked about it, and only it.
    test = tables.read_split(few_articles, "test")
    test.loc[1, "text"] = "Nova versão do artigo. " + test.loc[1, "text"]
    test.loc[1, "revid"] = test.loc[1, "revid"] + 1
    tables.write_split(test, few_articles, "test")
    third = distill.run(config(server, cache), few_articles, tmp_path / "run3")
    assert server.count == n + 1 and "Nova versão do artigo." in server.prompts()[-1]
    assert third.counts["cache_hits"] == n - 1 and third.counts["teacher_answers"] == 1


def test_a_crashed_run_redoes_only_what_is_missing(s3, server, few_articles, tmp_path):
    cache = f"{s3}/cache/teacher"
    n = ROWS_PER_SPLIT * len(tables.SPLITS)
    sixth = distill.read_articles(few_articles)["text"][6].strip()[:200]
    # Chunks of 4, one request at a time; the endpoint "goes down" at the 7th article.
    server.fail_when(lambda prompt: sixth in prompt, "500")
    crashing = config(server, cache, "distill.checkpoint_every=4", "distill.teacher.concurrency=1", "distill.teacher.max_retries=0", "distill.teacher.max_consecutive_failures=1")
    with pytest.raises(TeacherUnavailable):
        distill.run(crashing, few_articles, tmp_path / "crashed")
    assert len(cached_objects(cache)) == 6  # the first chunk, and what arrived of the second before the failure
    assert not (tmp_path / "crashed").exists()

    with OpenAICompatServer() as healthy:
        distill.run(config(healthy, cache), few_articles, tmp_path / "resumed")
        assert healthy.count == n - 6
    assert len(cached_objects(cache)) == n


def test_a_corrupt_entry_is_asked_again_and_replaced(server, few_articles, tmp_path):
    cache = str(tmp_path / "cache")
    distill.run(config(server, cache), few_articles, tmp_path / "run1")
    victim = storage.join(cache, cached_objects(cache)[0])
    storage.write_text(victim, "{truncated")
    distill.run(config(server, cache), few_articles, tmp_path / "run2")
    assert server.count == ROWS_PER_SPLIT * len(tables.SPLITS) + 1
    assert "answer" in storage.read_text(victim)


def test_teacher_errors_are_not_cached(server, few_articles, tmp_path):
    cache = str(tmp_path / "cache")
    first = distill.read_articles(few_articles)["text"][0].strip()[:200]
    server.fail_when(lambda prompt: first in prompt, "500")
    result = distill.run(config(server, cache, "distill.teacher.max_retries=0"), few_articles, tmp_path / "run1")
    assert result.counts["rejected_teacher_error"] == 1
    assert len(cached_objects(cache)) == ROWS_PER_SPLIT * len(tables.SPLITS) - 1


def material(**changes):
    article = {"article_id": "10-100", "revision": "100", "text": "O Porto é uma cidade.", **changes.pop("article", {})}
    teacher = TeacherConfig(**{"backend": "vllm", "model": "teacher-8b", **changes.pop("teacher", {})})
    prompt = PromptConfig(**changes.pop("prompt", {}))
    return cache_key(key_material(article["article_id"], article["revision"], article["text"], teacher, prompt))


@pytest.mark.parametrize(
    "change",
    [
        {"article": {"revision": "101"}},
        {"article": {"text": "O Porto é uma cidade do Norte."}},  # same revision, another cut of the text
        {"article": {"article_id": "11-100"}},
        {"teacher": {"model": "teacher-70b"}},
        {"teacher": {"backend": "transformers"}},
        {"teacher": {"max_new_tokens": 256}},
        {"prompt": {"n_words": 50}},
    ],
)
def test_the_key_changes_with_everything_that_decides_the_answer(change):
    assert material(**change) != material()


def test_the_key_ignores_what_does_not_change_the_answer():
    assert material(teacher={"concurrency": 4, "batch_size": 32}) == material()
    # Without a revision, the text's hash stands in for it.
    assert material(article={"revision": None}) != material(article={"revision": None, "text": "Outro texto."})


def test_cache_entries_explain_themselves(tmp_path):
    cache = TeacherCache(str(tmp_path))
    m = key_material("1-2", "2", "Texto.", TeacherConfig(), PromptConfig())
    cache.put_many({cache_key(m): (m, "Resumo.")})
    assert cache.get_many([cache_key(m), "0" * 64]) == {cache_key(m): "Resumo."}
    assert '"model": "meta-llama/Llama-3.1-8B-Instruct"' in storage.read_text(cache.uri(cache_key(m)))
