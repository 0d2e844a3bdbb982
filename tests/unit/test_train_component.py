"""The KFP train component: one call into resumo.train, every metric logged as KFP Metrics."""

import json

from kfp import dsl

from resumo.components import train as component
from resumo.config import load_config


def _artifact(kind, path):
    artifact = kind(name=path.name, uri="")
    artifact.path = str(path)
    return artifact


def test_the_component_trains_with_params_and_logs_metrics(pairs_dir, tmp_path):
    config = load_config("smoke", ["train.epochs=1", "train.eval_samples=2", "train.max_new_tokens=4"]).train.model_dump(mode="json")
    model, metrics = _artifact(dsl.Model, tmp_path / "model"), _artifact(dsl.Metrics, tmp_path / "metrics")
    component.train.python_func(config=config, params={"lora.r": 2}, pairs=_artifact(dsl.Dataset, pairs_dir), model=model, metrics=metrics)

    assert set(metrics.metadata) == {"eval_loss", "rougeLsum", "train_tokens_per_second"}
    assert metrics.metadata["train_tokens_per_second"] > 0
    written = json.loads((tmp_path / "model" / "metrics.json").read_text())
    assert written["metrics"] == metrics.metadata and written["config"]["lora"]["r"] == 2  # params override config
    assert (tmp_path / "model" / "adapter" / "adapter_config.json").exists()
