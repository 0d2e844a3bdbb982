import json

import pandas as pd
import pytest

from resumo import scrape, tables
from resumo.config import SplitConfig, load_config
from resumo.errors import DataError
from resumo.text import truncate_to_budget


def test_scrape_writes_clean_split_articles(articles_dir):
    splits = {name: tables.read_split(articles_dir, name) for name in tables.SPLITS}
    stats = json.loads((articles_dir / "stats.json").read_text())
    assert stats["counts"]["redirect"] == 3
    assert stats["counts"]["disambiguation"] == 2
    assert stats["counts"]["not_article"] == 2
    assert stats["counts"]["too_short"] >= 1
    everything = pd.concat(splits.values())
    assert len(everything) == stats["counts"]["kept"] >= 60
    assert everything["id"].is_unique  # no article in two splits
    assert {"id", "title", "url", "text", "n_tokens"} <= set(everything.columns)
    assert not everything["text"].str.contains(r"\{\{|\[\[|<ref|'''", regex=True).any()
    cfg = load_config("smoke").scrape
    assert everything["n_tokens"].between(1, cfg.max_tokens).all()


def test_worker_processes_write_what_one_process_writes(tmp_path, articles_dir, smoke_config):
    """Cleaning in 2 spawned processes, a bounded window ahead: the same rows, in the same order,
    for the whole corpus and when max_articles stops the stream with pages still in the window."""
    in_workers = smoke_config.scrape.model_copy(update={"workers": 2, "checkpoint_every": 10})
    scrape.run(in_workers, tmp_path / "workers")
    for name in tables.SPLITS:
        pd.testing.assert_frame_equal(tables.read_split(tmp_path / "workers", name), tables.read_split(articles_dir, name))

    capped = {"max_articles": 40}
    one = scrape.run(smoke_config.scrape.model_copy(update=capped), tmp_path / "one")
    two = scrape.run(in_workers.model_copy(update=capped), tmp_path / "two")
    assert one.counts == two.counts and one.counts["collected"] == 40
    for name in tables.SPLITS:
        pd.testing.assert_frame_equal(tables.read_split(tmp_path / "two", name), tables.read_split(tmp_path / "one", name))


def test_split_is_deterministic_stratified_and_in_proportion():
    articles = [{"id": f"{i}-1", "n_tokens": (i * 37) % 1000} for i in range(500)]
    cfg = SplitConfig(val_fraction=0.2, test_fraction=0.2, seed=42)
    first, again = scrape.split_articles(articles, cfg), scrape.split_articles(articles, cfg)
    assert {k: [a["id"] for a in v] for k, v in first.items()} == {k: [a["id"] for a in v] for k, v in again.items()}
    assert {k: len(v) for k, v in first.items()} == {"train": 300, "val": 100, "test": 100}
    # Each split spans the length range like the whole set does.
    for rows in first.values():
        assert abs(pd.Series([a["n_tokens"] for a in rows]).median() - 500) < 60
    other = scrape.split_articles(articles, SplitConfig(seed=7))
    assert [a["id"] for a in other["test"]] != [a["id"] for a in first["test"]]


def test_truncation_keeps_whole_paragraphs_under_the_budget():
    from transformers import AutoTokenizer

    from resumo import models

    tokenizer = AutoTokenizer.from_pretrained(models.resolve("tiny:qwen2"))
    paragraphs = ["Primeiro parágrafo com algumas palavras.", "Segundo parágrafo, um pouco maior que o primeiro.", "Terceiro."]
    text = "\n\n".join(paragraphs)
    full = len(tokenizer(text, add_special_tokens=False)["input_ids"])
    kept, n = truncate_to_budget(text, tokenizer, full)
    assert (kept, n) == (text, full)
    kept, n = truncate_to_budget(text, tokenizer, full - 1)
    assert kept == "\n\n".join(paragraphs[:2]) and n < full
    assert truncate_to_budget(text, tokenizer, 1) == ("", 0)


def test_empty_split_is_an_error_that_leaves_old_outputs(tmp_path, articles_dir):
    out = tmp_path / "articles"
    cfg = load_config("smoke").scrape
    scrape.run(cfg, out)
    before = (out / "train.parquet").read_bytes()
    with pytest.raises(DataError, match=r"split '(train|val|test)' is empty"):
        scrape.run(cfg.model_copy(update={"max_articles": 2}), out)
    assert (out / "train.parquet").read_bytes() == before


def test_malformed_dump_leaves_old_outputs(tmp_path, articles_dir):
    from resumo import wiki

    out = tmp_path / "articles"
    cfg = load_config("smoke").scrape
    scrape.run(cfg, out)
    before = (out / "test.parquet").read_bytes()
    broken = tmp_path / "broken.xml"
    text = wiki.bundled_dump_path().read_text(encoding="utf-8")
    broken.write_text(text[: len(text) // 3], encoding="utf-8")
    with pytest.raises(DataError, match="malformed"):
        scrape.run(cfg.model_copy(update={"dump": str(broken)}), out)
    assert (out / "test.parquet").read_bytes() == before


def test_dump_from_s3(s3, tmp_path):
    from resumo import storage, wiki

    uri = s3 + "/dumps/ptwiki-sample.xml"
    storage.write_bytes(uri, wiki.bundled_dump_path().read_bytes())
    result = scrape.run(load_config("smoke", [f"scrape.dump={uri}"]).scrape, tmp_path / "out")
    assert result.counts["kept"] >= 60


def hf_snapshot_rows():
    """The bundled corpus in the layout of the HF wikimedia/wikipedia dataset: plain text, no revisions."""
    from resumo import wiki

    rows = []
    for page in wiki.iter_pages(wiki.bundled_dump_path()):
        if page.namespace == 0 and not page.redirect:
            text = wiki.clean_wikitext(page.wikitext)
            if wiki.is_disambiguation(page.wikitext):
                text = f"{page.title} pode referir-se a:\n\n{text}"
            rows.append({"id": str(page.page_id), "url": f"https://pt.wikipedia.org/wiki?curid={page.page_id}", "title": page.title, "text": text})
    return pd.DataFrame(rows)


def test_parquet_snapshot_gives_the_dump_articles(tmp_path, articles_dir):
    snapshot = tmp_path / "20231101.pt"
    snapshot.mkdir()
    rows = hf_snapshot_rows()
    rows.iloc[:30].to_parquet(snapshot / "train-00000-of-00002.parquet")
    rows.iloc[30:].to_parquet(snapshot / "train-00001-of-00002.parquet")
    result = scrape.run(load_config("smoke", ["scrape.source=parquet", f"scrape.parquet={snapshot}"]).scrape, tmp_path / "out")
    got = pd.concat(tables.read_split(tmp_path / "out", n) for n in tables.SPLITS).set_index("page_id").sort_index()
    want = pd.concat(tables.read_split(articles_dir, n) for n in tables.SPLITS).set_index("page_id").sort_index()
    assert list(got.index) == list(want.index)
    assert (got["text"] == want["text"]).all()
    assert got["url"].str.startswith("https://pt.wikipedia.org/wiki?curid=").all()
    assert result.counts["disambiguation"] == 2


def test_parquet_snapshot_from_s3(s3, tmp_path):
    import io

    from resumo import storage

    buffer = io.BytesIO()
    hf_snapshot_rows().to_parquet(buffer)
    storage.write_bytes(f"{s3}/wikipedia/20231101.pt/train-00000-of-00001.parquet", buffer.getvalue())
    result = scrape.run(load_config("smoke", ["scrape.source=parquet", f"scrape.parquet={s3}/wikipedia/20231101.pt"]).scrape, tmp_path / "out")
    assert result.counts["kept"] == 65


def test_parquet_without_the_snapshot_columns_is_a_clear_error(tmp_path):
    pd.DataFrame({"id": ["1"], "body": ["x"]}).to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(DataError, match=r"lacks columns \['text', 'title', 'url'\]"):
        scrape.run(load_config("smoke", ["scrape.source=parquet", f"scrape.parquet={tmp_path / 'bad.parquet'}"]).scrape, tmp_path / "out")


def test_exact_and_near_duplicates_are_dropped_keeping_the_older_page():
    from collections import Counter

    from resumo import selection, wiki

    texts = [wiki.clean_wikitext(p.wikitext) for p in wiki.iter_pages(wiki.bundled_dump_path()) if p.namespace == 0 and not p.redirect][:3]
    near = texts[0].replace(" e ", " y ", 1)
    articles = [
        {"id": "7-1", "page_id": 7, "text": near},  # a near copy of page 3, but newer
        {"id": "3-1", "page_id": 3, "text": texts[0]},
        {"id": "4-1", "page_id": 4, "text": texts[1]},
        {"id": "9-1", "page_id": 9, "text": texts[1].upper()},  # the same words
        {"id": "5-1", "page_id": 5, "text": texts[2]},
    ]
    counts = Counter()
    kept = selection.drop_duplicates(articles, 0.8, counts)
    assert [a["id"] for a in kept] == ["3-1", "4-1", "5-1"]
    assert counts == {"duplicate": 1, "near_duplicate": 1}
    assert len(selection.drop_duplicates(articles, None, Counter())) == 4


def test_bundled_articles_map_to_the_five_topics(articles_dir):
    everything = pd.concat(tables.read_split(articles_dir, n) for n in tables.SPLITS)
    topics = everything["topic"].value_counts()
    cfg = load_config("smoke").scrape.selection
    assert set(topics.index) == set(cfg.topics)
    assert topics.sum() >= 0.8 * len(everything)


def test_sampling_per_topic_follows_views_times_words_and_the_seed():
    from collections import Counter

    from resumo import selection
    from resumo.config import SelectionConfig

    articles = [
        {"id": f"{i}-1", "topic": topic, "views": 10**9 if i % 50 == 0 else i, "article_words": 300}
        for topic in ("sport", "culture_art")
        for i in range(100 * (topic == "sport"), 100 * (topic == "sport") + 100)
    ] + [{"id": "999-1", "topic": None, "views": 0, "article_words": 300}]
    cfg = SelectionConfig(topics={"sport": ["x"], "culture_art": ["y"]}, per_topic=10)
    counts = Counter()
    first = selection.sample_per_topic(articles, cfg, seed=42, counts=counts)
    assert Counter(a["topic"] for a in first) == {"sport": 10, "culture_art": 10}
    assert counts == {"not_sampled": 180, "no_topic": 1}
    # The heavily viewed articles are always drawn; the draw is fixed by the seed.
    assert {"0-1", "50-1", "100-1", "150-1"} <= {a["id"] for a in first}
    assert [a["id"] for a in selection.sample_per_topic(articles, cfg, 42, Counter())] == [a["id"] for a in first]
    assert [a["id"] for a in selection.sample_per_topic(articles, cfg, 7, Counter())] != [a["id"] for a in first]
    assert selection.sample_per_topic(articles, cfg.model_copy(update={"per_topic": None}), 42, Counter()) == articles


def test_component_logs_the_counts_as_kfp_metrics(tmp_path, smoke_config):
    from types import SimpleNamespace

    from kfp.dsl import Metrics

    from resumo.components.scrape import scrape as component

    metrics = Metrics(name="metrics", uri=str(tmp_path / "metrics"))
    component.python_func(config=smoke_config.scrape.model_dump(mode="json"), articles=SimpleNamespace(path=str(tmp_path / "articles")), metrics=metrics)
    stats = json.loads((tmp_path / "articles" / "stats.json").read_text())
    cost = {k: v for k, v in metrics.metadata.items() if k.startswith("cost_")}
    assert {k: v for k, v in metrics.metadata.items() if k not in cost} == {**stats["counts"], **{f"split_{k}": v for k, v in stats["splits"].items()}}
    # Nothing cached: every page read is cleaned, as in a full run (resumo.run_cost).
    assert cost == {"cost_pages_read": 73, "cost_pages_cleaned": 73, "cost_full_pages_read": 73, "cost_full_pages_cleaned": 73}
    assert metrics.metadata["kept"] == 65 and metrics.metadata["redirect"] == 3


def test_zero_shot_classifier_assigns_one_of_the_topics(tmp_path):
    """Wiring only: a tiny random NLI head gives arbitrary but valid and repeatable topics."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from resumo import models, selection
    from resumo.config import SelectionConfig

    torch.manual_seed(0)
    labels = {0: "contradiction", 1: "neutral", 2: "entailment"}
    nli = AutoModelForSequenceClassification.from_pretrained(models.resolve("tiny:bert"), num_labels=3, id2label=labels, label2id={v: k for k, v in labels.items()})
    nli.save_pretrained(tmp_path / "nli")
    AutoTokenizer.from_pretrained(models.resolve("tiny:bert")).save_pretrained(tmp_path / "nli")
    cfg = SelectionConfig(topic_classifier=str(tmp_path / "nli"))
    articles = [{"text": "O Benfica venceu o campeonato.\n\nSegundo parágrafo.", "categories": []}, {"text": "O rio Douro nasce em Espanha.", "categories": []}]
    selection.assign_topics(articles, cfg)
    first = [a["topic"] for a in articles]
    assert set(first) <= set(cfg.topics)
    selection.assign_topics(articles, cfg)
    assert [a["topic"] for a in articles] == first
