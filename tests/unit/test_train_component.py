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


def test_the_component_hands_on_the_best_trials_outputs_without_training(s3, tmp_path):
    from resumo import storage

    trial = f"{s3}/tune/resumo-abc123-trial-7"  # what a Katib trial uploads (resumo.katib.trial_command)
    storage.write_text(f"{trial}/adapter/adapter_config.json", '{"r": 16}')
    storage.write_text(f"{trial}/adapter/resumo_model.json", '{"base_model": "tiny:qwen2"}')
    storage.write_text(f"{trial}/metrics.json", json.dumps({"metrics": {"rougeLsum": 0.31, "eval_loss": 2.5}}))
    storage.write_bytes(f"{trial}/curves.png", b"\x89PNG")
    model, metrics = _artifact(dsl.Model, tmp_path / "model"), _artifact(dsl.Metrics, tmp_path / "metrics")
    # No pairs are read and nothing is trained: the pairs artifact points nowhere.
    component.train.python_func(
        config={}, params={"lora.r": 16}, pairs=_artifact(dsl.Dataset, tmp_path / "absent"), model=model, metrics=metrics, best_adapter=f"{trial}/adapter"
    )

    assert metrics.metadata == {"rougeLsum": 0.31, "eval_loss": 2.5}
    assert json.loads((tmp_path / "model" / "adapter" / "adapter_config.json").read_text()) == {"r": 16}
    assert (tmp_path / "model" / "curves.png").read_bytes() == b"\x89PNG"
