"""The API source against a MediaWiki server on 127.0.0.1 that answers in the real shapes."""

import json
import random

import pandas as pd
import pytest

from resumo import mediawiki, scrape, tables
from resumo.config import ApiConfig, load_config
from resumo.errors import ConfigError, DataError
from tests.servers.mediawiki import WikiPage, bundled_pages, serve

CONTACT = "resumo-tests@example.org"


def api_config(server, *sets):
    base = ["scrape.source=api", f"scrape.api.base_url={server.api_url}", f"scrape.api.contact={CONTACT}", "scrape.api.max_wait_s=0"]
    return load_config("smoke", base + list(sets)).scrape


def some_articles(n=15):
    """The first n articles of the bundled corpus: enough for three splits, quick to scrape."""
    return [p for p in bundled_pages() if p.ns == 0 and not p.redirect and "esboço" not in p.title][:n]


def read_all(folder):
    return pd.concat([tables.read_split(folder, name).assign(split=name) for name in tables.SPLITS]).set_index("id").sort_index()


def test_all_pages_through_the_api_equal_the_dump(tmp_path, articles_dir):
    with serve() as server:
        result = scrape.run(api_config(server), tmp_path / "api")
        articles = len([p for p in server.pages if p.ns == 0 and not p.redirect])
        content = server.content_requests()
    api, dump = read_all(tmp_path / "api"), read_all(articles_dir)
    assert list(api.index) == list(dump.index)
    assert (api["text"] == dump["text"]).all() and (api["split"] == dump["split"]).all()
    assert (api["revid"] == dump["revid"]).all() and (api["revid"] > 0).all()
    assert api["url"].str.startswith(server.api_url.removesuffix("w/api.php") + "wiki/").all()
    assert result.counts["disambiguation"] == 2 and result.counts["too_short"] >= 1
    # 50 titles per content request, 500 per listing request, every request polite.
    assert len(content) == -(-articles // 50) == 2
    assert len(server.requests) == len(content) + 1
    assert all(r["maxlag"] == "5" for r in server.requests)
    assert all(ua.startswith("resumo/") and CONTACT in ua for ua in server.user_agents)


def test_one_title_per_request_when_asked(tmp_path):
    with serve() as server:
        titles = sorted(p.title for p in server.pages if p.ns == 0 and not p.redirect)[:5]
        cfg = api_config(server, "scrape.api.pages=titles", f"scrape.api.titles={json.dumps(titles)}", "scrape.api.batch_size=1", "scrape.min_words=0")
        scrape.run(cfg, tmp_path / "out")
        assert sorted(r["titles"] for r in server.content_requests()) == titles


def test_faults_are_retried_and_the_result_is_unchanged(tmp_path):
    with serve(some_articles()) as server:
        clean = scrape.run(api_config(server), tmp_path / "clean")
        n_requests = len(server.requests)
        server.faults.extend([("429", "0"), ("maxlag", "0"), ("503", None), ("badjson", None), None, ("502", None)])
        faulty = scrape.run(api_config(server), tmp_path / "faulty")
        assert len(server.requests) - n_requests == n_requests + 5
    assert faulty.counts == clean.counts
    assert read_all(tmp_path / "faulty").equals(read_all(tmp_path / "clean"))


def test_retry_wait_honours_retry_after_and_grows_exponentially():
    rng = random.Random(0)
    assert mediawiki.retry_delay(0, "7", backoff=1, cap=120, rng=rng) == 7
    assert mediawiki.retry_delay(0, "7", backoff=1, cap=5, rng=rng) == 5  # the cap wins
    assert mediawiki.retry_delay(0, "Wed, 21 Oct 2015 07:28:00 GMT", backoff=1, cap=120, rng=rng) <= 1  # a date in the past
    delays = [mediawiki.retry_delay(n, None, backoff=1, cap=1000, rng=rng) for n in range(6)]
    assert all(2**n / 2 <= d <= 2**n for n, d in enumerate(delays))


def test_the_client_waits_what_the_server_says():
    waits = []
    with serve() as server:
        server.faults.extend([("429", "7"), ("maxlag", "3")])
        client = mediawiki.Client(ApiConfig(base_url=server.api_url, backoff_s=0.5), mediawiki.user_agent(CONTACT), sleep=waits.append)
        result, _ = next(client.query({"list": "allpages", "aplimit": 2}))
    assert len(result["allpages"]) == 2
    assert waits[0] == 7 and waits[1] >= 3


def test_an_api_that_keeps_failing_is_a_clear_error_that_keeps_progress(tmp_path):
    out = tmp_path / "out"
    with serve() as server:
        cfg = api_config(server, "scrape.api.batch_size=10", "scrape.api.concurrency=1", "scrape.checkpoint_every=10", "scrape.api.max_retries=2")
        # The listing and 3 content batches succeed, then every answer is broken JSON.
        server.faults.extend([None] * 4 + [("badjson", None)] * 50)
        with pytest.raises(DataError, match=r"failed 3 times, last: invalid JSON.*rerun to resume"):
            scrape.run(cfg, out)
        parts = sorted((out / "_checkpoint").rglob("part-*.json"))
        assert len(parts) >= 3
        done = {i for p in parts for i in json.loads(p.read_text())["processed"]}
        server.faults.clear()
        before = len(server.requests)
        scrape.run(cfg, out)
        refetched = {int(i) for r in server.requests[before:] if r.get("pageids") for i in r["pageids"].split("|")}
    assert not refetched & done
    assert not (out / "_checkpoint").exists()


def test_missing_titles_and_empty_pages_are_counted(tmp_path):
    pages = some_articles() + [WikiPage(9001, "Página vazia", "", 1)]
    with serve(pages) as server:
        titles = sorted(p.title for p in pages if p.ns == 0 and not p.redirect)
        cfg = api_config(server, "scrape.api.pages=titles", f"scrape.api.titles={json.dumps([*titles, 'Não_Existe', 'Outra inexistente'])}")
        result = scrape.run(cfg, tmp_path / "out")
    assert result.counts["missing"] == 2
    assert result.counts["no_text"] == 1


def test_content_split_over_continue_responses_is_merged(tmp_path):
    with serve(some_articles(), revisions_per_response=4) as server:
        result = scrape.run(api_config(server), tmp_path / "out")
        assert len(server.content_requests()) == 4  # one batch of 15, its content over 4 responses
        assert all("rvcontinue" in r for r in server.content_requests()[1:])
    assert result.counts["kept"] == 15


def test_category_tree_follows_subcategories_to_the_depth_asked(tmp_path):
    by_title = {p.title: p for p in bundled_pages() if p.ns == 0 and not p.redirect and "Desportos" in p.content}
    pages = [WikiPage(5000, "Categoria:Desporto", "Raiz.", 1, ns=14), WikiPage(5001, "Categoria:Desportos coletivos", "[[Categoria:Desporto]]", 1, ns=14)]
    pages += list(by_title.values())
    with serve(pages) as server:
        cfg = api_config(server, "scrape.api.pages=category", "scrape.api.category=Desporto", "scrape.min_words=0", "scrape.split.val_fraction=0.01", "scrape.split.test_fraction=0.01")
        listed = {}
        for depth in (0, 1):
            client = mediawiki.Client(cfg.api, mediawiki.user_agent(CONTACT))
            api = cfg.api.model_copy(update={"category_depth": depth})
            listed[depth] = [p.title for b in mediawiki.iter_batches(client, api, set()) for p in b.pages]
    coletivos = {p.title for p in pages if p.ns == 0 and "Categoria:Desportos coletivos" in p.categories}
    assert coletivos and not coletivos & set(listed[0])
    assert coletivos <= set(listed[1]) and len(listed[1]) == len(set(listed[1]))


def test_contact_is_required_and_never_defaulted(monkeypatch):
    monkeypatch.delenv(mediawiki.CONTACT_ENV, raising=False)
    with pytest.raises(ConfigError, match="RESUMO_WIKI_CONTACT"):
        mediawiki.user_agent(None)
    monkeypatch.setenv(mediawiki.CONTACT_ENV, "https://example.org/ops")
    assert "(https://example.org/ops)" in mediawiki.user_agent(None)


def test_pageviews_are_summed_per_article(tmp_path):
    pages = some_articles()
    titles = sorted(p.title for p in pages)
    views = {title: 1000 + n for n, title in enumerate(titles) if n != 1}  # titles[1] has no data: the API answers 404
    with serve(pages, views=views) as server:
        cfg = api_config(server, "scrape.pageviews.enabled=true", f"scrape.pageviews.base_url={server.rest_url}")
        scrape.run(cfg, tmp_path / "out")
        views_requests = [r for r in server.requests if "/metrics/pageviews/per-article/pt.wikipedia/all-access/user/" in r["_path"]]
    rows = read_all(tmp_path / "out").set_index("title")
    assert rows["views"].to_dict() == {title: views.get(title, 0) for title in rows.index}
    assert rows.loc[titles[1], "views"] == 0
    assert len(views_requests) == 15 and all(r["_path"].endswith("/monthly/20230101/20240229") for r in views_requests)


def test_random_pages_stop_at_max_articles_without_repeats(tmp_path):
    with serve(some_articles(40)) as server:
        cfg = api_config(server, "scrape.api.pages=random", "scrape.api.list_limit=7", "scrape.max_articles=30")
        result = scrape.run(cfg, tmp_path / "out")
    rows = read_all(tmp_path / "out")
    assert result.counts["collected"] == 30 and rows["page_id"].is_unique
