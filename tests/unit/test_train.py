import json

import pytest
from safetensors.torch import load_file

from resumo import generation, train, tune
from resumo.config import load_config
from resumo.errors import DataError


@pytest.fixture(scope="module")
def short_run(tmp_path_factory, pairs_dir):
    cfg = load_config("smoke", ["train.epochs=2", "train.eval_samples=3", "train.max_new_tokens=8", "train.merge=true", "train.batching=padding_free"]).train
    out = tmp_path_factory.mktemp("train")
    return cfg, out, train.run(cfg, pairs_dir, out)


def test_prompt_is_masked_and_only_the_summary_is_learned(pairs_dir, tmp_path):
    cfg = load_config("smoke").train
    rows = train._usable_pairs(pairs_dir, "train").head(2)
    trainer = train._build_trainer(cfg, rows, rows, tmp_path)
    example = trainer.train_dataset[0]
    learned = [t for t, label in zip(example["input_ids"], example["labels"]) if label != -100]
    text = trainer.processing_class.decode(learned)
    assert text.startswith(rows["summary"].iloc[0][:30])
    assert text.rstrip().endswith("<|im_end|>")  # the student learns to stop
    assert "Texto:" not in text  # nothing of the prompt


def test_training_moves_every_adapter_weight_and_writes_outputs(short_run):
    cfg, out, result = short_run
    weights = load_file(result.adapter_dir / "adapter_model.safetensors")
    lora_b = [w for name, w in weights.items() if "lora_B" in name]
    assert len(lora_b) == 2 * len(cfg.lora.target_modules)  # two layers in the tiny model
    assert all(w.abs().sum() > 0 for w in lora_b)  # B starts at zero: each one learned
    assert not any("embed_tokens" in name or "lm_head" in name for name in weights)
    meta = json.loads((result.adapter_dir / generation.MODEL_META).read_text())
    assert meta["base_model"] == "tiny:qwen2" and meta["prompt"]["n_words"] == cfg.prompt.n_words
    assert (out / "curves.png").stat().st_size > 1000
    assert set(result.metrics) == {"eval_loss", "rougeLsum", "train_tokens_per_second"}
    assert 0 <= result.metrics["rougeLsum"] <= 1
    assert (out / "merged" / "model.safetensors").exists() == cfg.merge


def test_each_epoch_is_validated_with_generated_rouge(short_run):
    cfg, out, result = short_run
    history = json.loads((train.last_checkpoint(out / "checkpoints") / "trainer_state.json").read_text())["log_history"]
    rouge = [h for h in history if "eval_rougeLsum" in h]
    assert [round(h["epoch"]) for h in rouge] == [1, 2]
    assert result.metrics["rougeLsum"] == rouge[-1]["eval_rougeLsum"]


def test_tokens_per_second_counts_every_real_token_once(short_run, pairs_dir):
    cfg, out, result = short_run
    run = json.loads((out / "metrics.json").read_text())["run"]
    rows = train._usable_pairs(pairs_dir, "train")
    trainer = train._build_trainer(cfg, rows, rows.head(1), out / "probe")
    lengths = [len(ids) for ids in trainer.train_dataset["input_ids"]]
    assert run["train_tokens"] == cfg.epochs * sum(lengths)  # padding-free: no padding to leave out
    assert result.metrics["train_tokens_per_second"] == pytest.approx(run["train_tokens"] / run["train_seconds"])


def test_padding_free_and_padded_batches_train_the_same_model(pairs_dir, tmp_path):
    """The same examples per step and no attention across examples: the same losses, step by step."""
    losses = {}
    for batching in ("padding_free", "padded"):
        cfg = load_config("smoke", ["train.epochs=1", f"train.batching={batching}"]).train
        rows = train._usable_pairs(pairs_dir, "train").head(12)
        trainer = train._build_trainer(cfg, rows, rows.head(2), tmp_path / batching)
        trainer.train()
        losses[batching] = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses["padded"]) == 3
    assert losses["padding_free"] == pytest.approx(losses["padded"], rel=1e-4)


def test_training_lowers_validation_loss(short_run):
    history = json.loads((sorted(short_run[1].glob("checkpoints/checkpoint-*"))[-1] / "trainer_state.json").read_text())["log_history"]
    eval_losses = [h["eval_loss"] for h in history if "eval_loss" in h]
    assert len(eval_losses) == 2 and eval_losses[-1] < eval_losses[0]


def test_metric_lines_for_katib_are_printed(short_run, capsys, pairs_dir, tmp_path):
    cfg = load_config("smoke", ["train.epochs=1", "train.eval_samples=2", "train.max_new_tokens=4"]).train
    train.run(cfg, pairs_dir, tmp_path)
    lines = [line for line in capsys.readouterr().out.splitlines() if "=" in line]
    # The epoch's report (what medianstop compares trials on), then the final values.
    assert [line.split("=")[0] for line in lines] == ["eval_loss", "rougeLsum", "eval_loss", "rougeLsum", "train_tokens_per_second"]
    assert all(float(line.split("=")[1]) >= 0 for line in lines)
    assert lines[:2] == lines[2:4]  # one epoch: its report is the final value


def test_a_tuned_adapter_loads_and_summarises(short_run, pairs_dir):
    loaded = generation.load(str(short_run[2].adapter_dir))
    assert loaded.prompt == short_run[0].prompt
    out = generation.summarize(loaded, ["O fado é um género musical português."] * 3, loaded.prompt, batch_size=2, max_new_tokens=5)
    assert len(out) == 3 and out[0] == out[1] == out[2]  # greedy and batch-independent


def test_no_usable_pairs_is_a_clear_error(tmp_path, pairs_dir):
    from resumo import tables

    for split in tables.SPLITS:
        df = tables.read_split(pairs_dir, split)
        tables.write_split(df.assign(filter_reason="too_short"), tmp_path, split)
    with pytest.raises(DataError, match="no usable pairs in split 'train'"):
        train.run(load_config("smoke").train, tmp_path, tmp_path / "out")


def test_tune_tries_each_rank_and_keeps_the_best(pairs_dir, tmp_path):
    cfg = load_config("smoke", ["tune.space.lora_r.values=[2, 4]", "train.epochs=1", "train.eval_samples=2", "train.max_new_tokens=4"])
    result = tune.run(cfg.tune, cfg.train, pairs_dir, tmp_path)
    assert sorted(t["params"]["lora.r"] for t in result.trials) == [2, 4]
    best = max(result.trials, key=lambda t: t["rougeLsum"])
    assert result.best_params == best["params"] and result.best_score == best["rougeLsum"]
    assert (result.best_adapter / "adapter_config.json").exists()
    assert json.loads((tmp_path / "best.json").read_text())["params"] == result.best_params
    assert tune.apply_params(cfg.train, result.best_params).lora.r == result.best_params["lora.r"]
