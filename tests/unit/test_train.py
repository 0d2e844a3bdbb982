import json

import pytest
import torch
from safetensors.torch import load_file

from resumo import batching, generation, train, tune
from resumo.config import load_config
from resumo.errors import DataError

pytestmark = pytest.mark.numerics  # make test-kernels reruns these on other CPU kernels


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


# Padded and padding-free batches compute the same sums in different orders (other GEMM
# shapes, other softmax lengths), so they agree only up to rounding, and rounding differs
# between CPUs: in float32 two x86 machines' kernel sets moved a loss by 3e-4 relative after
# three optimizer steps (~2.5e3 float32 epsilons). The equivalence tests therefore run in
# float64, where the same growth is 2.5e3 * 2.2e-16 ~ 6e-13: EQUAL_RTOL leaves a margin of
# over 1,000 on any CPU, while one example attending to its neighbour moves the loss by
# more than 1e-3 relative (test_a_leaking_padding_free_batch_is_caught shows it). (The float32
# version of this test compared losses at rel=1e-4 with LoRA dropout on, which draws other masks
# for other tensor shapes: it passed on the noise of two dropout draws, and failed on AVX-512.)
EQUAL_RTOL = 1e-9
# The Trainer logs each step's loss from a float32 accumulator, whatever the model's dtype: two
# float64 losses 1e-13 apart can round to neighbouring float32 values (2**-23 = 1.2e-7 relative
# apart), once in the sum and once in the mean, so logged losses agree to 2 float32 steps.
LOGGED_LOSS_RTOL = 2 * 2**-23 * 1.01


class _LeakyPaddingFree(batching.PaddingFreeCollator):
    """The mask broken on purpose: an all-ones attention_mask lets each example attend to the one before."""

    def torch_call(self, examples):
        batch = super().torch_call(examples)
        return {**batch, "attention_mask": torch.ones_like(batch["input_ids"])}


def _float64_trainer(pairs_dir, out, batching_mode, rows=12):
    # No LoRA dropout: its random mask is drawn per tensor shape, so the two layouts would drop different activations.
    cfg = load_config("smoke", ["train.epochs=1", f"train.batching={batching_mode}", "train.lora.dropout=0"]).train
    train_rows = train._usable_pairs(pairs_dir, "train").head(rows)
    trainer = train._build_trainer(cfg, train_rows, train_rows.head(2), out)
    trainer.model.to(torch.float64)  # before train(): the optimizer is built on these parameters
    return trainer


def _trained(trainer):
    """The logged loss of each step, and the trained LoRA weights (float64)."""
    trainer.train()
    weights = {name: p.detach().clone() for name, p in trainer.model.named_parameters() if p.requires_grad}
    return [h["loss"] for h in trainer.state.log_history if "loss" in h], weights


def test_one_step_of_padded_and_padding_free_batches_gives_the_same_logits_and_gradients(pairs_dir, tmp_path):
    """Before any float error accumulates: each example's logits, the loss and every LoRA gradient."""
    trainer = _float64_trainer(pairs_dir, tmp_path, "padded")
    model, pad_id = trainer.model, trainer.processing_class.pad_token_id
    examples = [trainer.train_dataset[i] for i in range(4)]
    lengths = [len(e["input_ids"]) for e in examples]
    assert len(set(lengths)) > 1  # unequal lengths, so the padded batch really pads

    results = {}
    for mode in ("padded", "padding_free"):
        model.zero_grad()
        out = model(**batching.collator(mode, pad_id)(examples))
        out.loss.backward()
        logits = out.logits if mode == "padded" else out.logits[0].split(lengths)
        results[mode] = (
            [logits[i][:n].detach() for i, n in enumerate(lengths)],
            out.loss.detach(),
            {name: p.grad.clone() for name, p in model.named_parameters() if p.requires_grad},
        )
    (padded_logits, padded_loss, padded_grads), (free_logits, free_loss, free_grads) = results["padded"], results["padding_free"]
    for padded, free in zip(padded_logits, free_logits):
        torch.testing.assert_close(free, padded, rtol=EQUAL_RTOL, atol=EQUAL_RTOL)
    torch.testing.assert_close(free_loss, padded_loss, rtol=EQUAL_RTOL, atol=0)
    assert padded_grads.keys() == free_grads.keys() and any(g.abs().sum() > 0 for g in padded_grads.values())
    for name in padded_grads:
        torch.testing.assert_close(free_grads[name], padded_grads[name], rtol=EQUAL_RTOL, atol=EQUAL_RTOL * padded_grads[name].abs().max().item(), msg=name)


def test_padding_free_and_padded_batches_train_the_same_model(pairs_dir, tmp_path):
    """The same examples per step and no attention across examples: the same losses, step by step."""
    (free_losses, free_weights), (padded_losses, padded_weights) = (_trained(_float64_trainer(pairs_dir, tmp_path / m, m)) for m in ("padding_free", "padded"))
    assert len(padded_losses) == 3
    assert free_losses == pytest.approx(padded_losses, rel=LOGGED_LOSS_RTOL)
    for name, weight in padded_weights.items():
        torch.testing.assert_close(free_weights[name], weight, rtol=EQUAL_RTOL, atol=EQUAL_RTOL * weight.abs().max().item(), msg=name)


def test_a_leaking_padding_free_batch_is_caught(pairs_dir, tmp_path):
    """The test above fails when one example attends to its neighbour."""
    intact, intact_weights = _trained(_float64_trainer(pairs_dir, tmp_path / "intact", "padding_free"))
    leaky_trainer = _float64_trainer(pairs_dir, tmp_path / "leaky", "padding_free")
    leaky_trainer.data_collator = _LeakyPaddingFree(pad_token_id=leaky_trainer.processing_class.pad_token_id, padding_free=True)
    leaky, leaky_weights = _trained(leaky_trainer)
    assert max(abs(a - b) / abs(b) for a, b in zip(leaky, intact)) > 1e3 * LOGGED_LOSS_RTOL
    assert any(not torch.allclose(leaky_weights[n], w, rtol=1e3 * EQUAL_RTOL, atol=0) for n, w in intact_weights.items())


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
    assert cfg.train.with_params(result.best_params).lora.r == result.best_params["lora.r"]
