"""The cleaned-article cache: a rerun cleans only new or changed revisions, and every article keeps its split."""

import pandas as pd
import pytest

from resumo import scrape, scrape_cache, tables
from resumo.config import load_config
from tests.corpus_edits import week_later


def read_all(folder):
    return pd.concat([tables.read_split(folder, name).assign(split=name) for name in tables.SPLITS], ignore_index=True)


@pytest.fixture(scope="module")
def two_weeks(tmp_path_factory):
    """Week 1: the bundled dump. Week 2: five articles edited, two added, one test article deleted."""
    tmp = tmp_path_factory.mktemp("recurring")
    cache = tmp / "cache"
    first_cfg = load_config("smoke", [f"scrape.cache={cache}"]).scrape
    first = scrape.run(first_cfg, tmp / "week1")
    week1 = read_all(tmp / "week1")
    kept = week1.sort_values("page_id")
    edited = [int(i) for i in kept[kept["split"] != "test"]["page_id"][:3]] + [int(i) for i in kept[kept["split"] == "test"]["page_id"][:2]]
    deleted = [int(kept[kept["split"] == "test"]["page_id"].iloc[-1])]
    dump, added = week_later(tmp / "week2.xml", edited, added=2, deleted=deleted)
    second = scrape.run(load_config("smoke", [f"scrape.cache={cache}", f"scrape.dump={dump}"]).scrape, tmp / "week2")
    return {"first": first, "second": second, "week1": week1, "week2": read_all(tmp / "week2"), "edited": edited, "added": added, "deleted": deleted, "tmp": tmp}


def test_the_first_run_cleans_everything_and_the_second_only_what_changed(two_weeks):
    first, second = two_weeks["first"], two_weeks["second"]
    assert first.counts["cleaned"] == first.counts["seen"] and first.counts.get("cache_hits", 0) == 0
    assert second.counts["cleaned"] == 5 + 2  # the edited revisions and the new pages
    assert second.counts["cache_hits"] == first.counts["seen"] - 5 - 1  # all the rest but the deleted page


def test_edited_and_new_articles_are_in_the_second_run_and_the_deleted_one_is_gone(two_weeks):
    week1, week2 = two_weeks["week1"], two_weeks["week2"]
    assert set(week2["page_id"]) == (set(week1["page_id"]) - set(two_weeks["deleted"])) | set(two_weeks["added"])
    edited = week2[week2["page_id"].isin(two_weeks["edited"])]
    assert len(edited) == 5 and edited["text"].str.contains("Em 2026 o artigo foi revisto").all()
    same = week2[~week2["page_id"].isin(two_weeks["edited"] + two_weeks["added"])].set_index("id").sort_index()
    before = week1.set_index("id").loc[same.index]
    assert same["text"].equals(before["text"]) and same["n_tokens"].equals(before["n_tokens"])  # cached rows are the cleaned rows


def test_every_article_keeps_its_split_and_the_test_set_only_loses_deleted_articles(two_weeks):
    week1, week2 = two_weeks["week1"].set_index("page_id"), two_weeks["week2"].set_index("page_id")
    common = week1.index.intersection(week2.index)
    assert (week1.loc[common, "split"] == week2.loc[common, "split"]).all()
    assert set(week2[week2["split"] == "test"].index) == set(week1[week1["split"] == "test"].index) - set(two_weeks["deleted"])
    assert set(week2.loc[two_weeks["added"], "split"]) <= {"train", "val"}  # new articles never enter the test set


def test_a_new_cleaning_setting_is_a_clean_miss(two_weeks):
    tmp = two_weeks["tmp"]
    cfg = load_config("smoke", [f"scrape.cache={tmp / 'cache'}", "scrape.max_tokens=390"]).scrape
    assert scrape_cache.cleaning_key(cfg) != scrape_cache.cleaning_key(load_config("smoke").scrape)
    result = scrape.run(cfg, tmp / "other-budget")
    assert result.counts["cleaned"] == result.counts["seen"] and result.counts.get("cache_hits", 0) == 0


def test_without_a_cache_nothing_is_kept_between_runs(tmp_path, smoke_config):
    assert smoke_config.scrape.cache == ""
    result = scrape.run(smoke_config.scrape, tmp_path / "articles")
    assert result.counts["cleaned"] == result.counts["seen"]
    assert not list(tmp_path.glob("**/rows.parquet"))


def test_an_api_rerun_lists_only_what_changed_since_the_last_run(tmp_path):
    import re

    from tests.corpus_edits import EDIT
    from tests.servers.mediawiki import serve

    with serve() as server:
        sets = [
            "scrape.source=api", f"scrape.api.base_url={server.api_url}", "scrape.api.contact=resumo-tests@example.org",
            "scrape.api.list_limit=2", f"scrape.cache={tmp_path / 'cache'}",
        ]
        cfg = load_config("smoke", sets).scrape
        first = scrape.run(cfg, tmp_path / "week1")
        week1 = read_all(tmp_path / "week1")
        kept = sorted(int(i) for i in week1["page_id"])
        edited, deleted = kept[:2], next(p for p in server.pages if p.pageid == kept[2])
        for page_id in edited:
            page = next(p for p in server.pages if p.pageid == page_id)
            server.edit(page_id, re.sub(r"^('''.*)$", lambda m: m.group(1) + EDIT, page.content, count=1, flags=re.MULTILINE))
        # A new article: the first paragraph after a heading of six others, so no near-duplicate of any.
        sections = [m.group(1) for p in server.pages if p.pageid in kept[3:] and (m := re.search(r"^== [^=\n]+ ==\n(.+)$", p.content, re.MULTILINE))]
        created = server.create("Artigo novo", "\n\n".join(sections[:6]))
        server.delete(deleted.title)
        before = len(server.requests)
        second = scrape.run(cfg, tmp_path / "week2")
        asked = server.requests[before:]

    listings = [r for r in asked if r.get("list")]
    assert {r["list"] for r in listings} == {"recentchanges"}  # no allpages: nothing is listed in full again
    assert all(r["rcnamespace"] == "0" and r["rcdir"] == "newer" and r["rcstart"] == "2026-12-01T00:00:00Z" for r in listings)
    assert len(listings) == 2 and "rccontinue" in listings[1]  # 4 changes at rclimit=2: the continuation is followed
    fetched = {int(i) for r in asked if r.get("prop") for i in r["pageids"].split("|")}
    assert fetched == {*edited, created.pageid}
    assert second.counts["seen"] == second.counts["cleaned"] == 3
    assert second.counts["carried_over"] == first.counts["collected"] - 3 and second.counts["deleted"] == 1
    week2 = read_all(tmp_path / "week2")
    assert set(week2["page_id"]) == (set(week1["page_id"]) - {deleted.pageid}) | {created.pageid}
    assert week2[week2["page_id"].isin(edited)]["text"].str.contains("Em 2026 o artigo foi revisto").all()
    moved = week1.merge(week2, on="page_id", suffixes=("_1", "_2")).query("split_1 != split_2")
    assert moved.empty


def test_later_changes_win_a_page_edited_then_deleted_is_dropped_and_one_recreated_is_fetched():
    from resumo import mediawiki
    from resumo.config import ApiConfig
    from tests.servers.mediawiki import WikiPage, serve

    pages = [WikiPage(1, "Alfa", "texto", 10), WikiPage(2, "Beta", "texto", 11), WikiPage(3, "Gama", "texto", 12)]
    with serve(pages=pages) as server:
        cfg = ApiConfig(base_url=server.api_url, list_limit=1)
        client = mediawiki.Client(cfg, mediawiki.user_agent("resumo-tests@example.org"))
        since = mediawiki.server_time(client)
        server.edit(1, "texto novo")
        server.delete("Alfa")
        server.delete("Beta")
        recreated = server.create("Beta", "outro texto")
        server.edit(3, "texto revisto")
        changes = mediawiki.recent_changes(client, cfg, since)
    assert changes.changed == {recreated.pageid: "Beta", 3: "Gama"}
    assert changes.deleted == {"Alfa"}
    assert changes.entries == 5  # one entry a response at rclimit=1: every continuation was followed


def test_a_last_run_older_than_the_wikis_recent_changes_lists_everything_again(tmp_path):
    from resumo import mediawiki
    from tests.servers.mediawiki import serve

    with serve() as server:
        cfg = load_config("smoke", ["scrape.source=api", f"scrape.api.base_url={server.api_url}", "scrape.api.contact=resumo-tests@example.org", f"scrape.cache={tmp_path}"]).scrape
        client = mediawiki.Client(cfg.api, mediawiki.user_agent(cfg.api.contact))
        cache = scrape_cache.ArticleCache(str(tmp_path), cfg, state={"base_url": server.api_url, "listed_at": "2026-09-01T00:00:00Z"})
        assert cache.changes(client) is None  # 91 days before the server's clock
        cache.state["listed_at"] = "2026-09-03T00:00:00Z"
        assert cache.changes(client) is not None  # 89 days: recentchanges still holds them
