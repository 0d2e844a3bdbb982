import json

import pandas as pd
import pytest

from resumo import scrape, tables
from resumo.config import SplitConfig, load_config
from resumo.errors import DataError


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
    kept, n = scrape.truncate_to_budget(text, tokenizer, full)
    assert (kept, n) == (text, full)
    kept, n = scrape.truncate_to_budget(text, tokenizer, full - 1)
    assert kept == "\n\n".join(paragraphs[:2]) and n < full
    assert scrape.truncate_to_budget(text, tokenizer, 1) == ("", 0)


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
