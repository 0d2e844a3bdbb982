"""The distill components' bodies, called as KFP calls them, with stand-in artifacts."""

from kfp.dsl import Dataset, Metrics

from resumo import distill, tables
from resumo.components.distill import distill_shard, merge_pairs, plan_shards


def test_plan_validates_and_lists_the_shards_even_from_a_float_struct():
    # KFP passes a dict parameter as a protobuf Struct, where every number is a float.
    assert plan_shards.python_func(config={"shards": 3.0}) == [0, 1, 2]


def test_shards_and_merge_log_counts_per_reason_as_metrics(articles_dir, smoke_config, tmp_path):
    config = smoke_config.distill.model_copy(update={"shards": 2}).model_dump(mode="json", exclude_none=True)
    articles = Dataset(uri=str(articles_dir))
    parts, shard_metrics = [], []
    for shard in plan_shards.python_func(config=config):
        part, metrics = Dataset(uri=str(tmp_path / f"shard-{shard}")), Metrics(uri=str(tmp_path / f"m{shard}"))
        distill_shard("extractive").python_func(config=config, shard=shard, articles=articles, pairs=part, metrics=metrics)
        parts.append(part)
        shard_metrics.append(metrics.metadata)
    pairs, metrics = Dataset(uri=str(tmp_path / "pairs")), Metrics(uri=str(tmp_path / "m"))
    merge_pairs.python_func(articles=articles, shards=parts, pairs=pairs, metrics=metrics)

    assert metrics.metadata["articles"] == sum(m["articles"] for m in shard_metrics) == len(distill.read_articles(articles_dir))
    assert {f"rejected_{r}" for r in distill.REASONS} <= set(metrics.metadata)
    assert metrics.metadata["usable"] == sum(tables.read_split(pairs.path, s)["filter_reason"].isna().sum() for s in tables.SPLITS)
