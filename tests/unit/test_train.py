import json
import math

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


# Padded and padding-free batches do the same work per example in other layouts (other GEMM
# shapes, other softmax lengths), so their sums run in other orders and agree only up to rounding.
# The equivalence tests below therefore compare in float64, where a sum of K terms in ANY order is
# within K * 2**-53 * sum|terms| of the exact sum: K is at most ~4e3 here (the 4,096-word vocabulary;
# a gradient sums over < 4e3 tokens), so each sum is within 4e3 * 1.1e-16 = 5e-13 of exact relative
# to sum|terms|, and the two layers, the head and three optimizer steps grow that to ~1e-12 (measured
# on the padded and padding-free paths: 1e-15 to 1e-13). EQUAL_RTOL = 1e-9 leaves a margin of 1e3,
# while one example attending to its neighbour moves its logits by ~6 and the loss by more than
# 1e-3 relative (test_a_leaking_padding_free_batch_is_caught).
#
# The model's dtype does not make all of that float64. With transformers 5.24 and trl 1.16 (read in
# .venv/lib/python3.11/site-packages) these run in float32 whatever the model's dtype:
# - transformers/loss/loss_utils.py, ForCausalLMLoss: `logits = logits.float()`, so the model's own
#   `out.loss` is a float32 log-softmax over the vocabulary and a float32 mean over the learned tokens
#   (issue 24: padded and padding-free losses one float32 step apart on an AVX-512/AMX Xeon);
# - trl/trainer/sft_trainer.py, SFTTrainer.compute_loss -> trl/trainer/utils.py, add_fused_lm_head ->
#   trl/kernels/chunked_logprob.py, ChunkedLogProbFunction: training's loss keeps its running max and
#   sum of exponentials in float32, and its backward accumulates the head's gradients in float32;
# - transformers/models/qwen2/modeling_qwen2.py, Qwen2RMSNorm.forward (`hidden_states.to(torch.float32)`,
#   five norms) and Qwen2RotaryEmbedding.forward (cos and sin of float32 angles).
# So `wholly_float64` (tests/unit/conftest.py) runs those two modules in the model's dtype, `_float64_trainer` trains on a float64
# cross-entropy (the Trainer's `compute_loss_func`), and the model's own float32 loss is held to a bound
# that holds for any summation order (`_float32_loss_bound`), not to EQUAL_RTOL.
EQUAL_RTOL = 1e-9
# The Trainer accumulates each step's loss in a float32 tensor (transformers/trainer.py, `self._tr_loss =
# torch.tensor(0.0)`, `tr_loss += loss`), whatever the loss's dtype: two float64 losses 1e-12 apart round
# to float32 values at most one float32 step (2**-23 relative) apart, once per micro-batch (1 here) and
# the mean over one logged step is exact, so logged losses agree to 2 float32 steps with a margin of 2.
LOGGED_LOSS_RTOL = 2 * 2**-23 * 1.01
# float32's unit roundoff: each float32 operation is exact up to a factor (1 + d), |d| <= 2**-24.
U32 = 2.0**-24


def _float64_loss(outputs, labels, num_items_in_batch=None):
    """transformers' ForCausalLMLoss (sum / items) without its float32 cast: the logits stay float64."""
    logits, targets = outputs.logits[:, :-1], labels[:, 1:].to(outputs.logits.device)
    total = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100, reduction="sum")
    return total / (num_items_in_batch if num_items_in_batch is not None else (targets != -100).sum())


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
    trainer.compute_loss_func = _float64_loss  # not trl's fused head, which reduces in float32 (see above)
    return trainer


def _trained(trainer):
    """The logged loss of each step, and the trained LoRA weights (float64)."""
    trainer.train()
    weights = {name: p.detach().clone() for name, p in trainer.model.named_parameters() if p.requires_grad}
    return [h["loss"] for h in trainer.state.log_history if "loss" in h], weights


def _float32_loss_bound(per_token: torch.Tensor, logits: torch.Tensor) -> float:
    """How far ForCausalLMLoss's float32 mean may lie from the float64 mean of `per_token`, in any summation order.

    `per_token`: the n learned tokens' float64 losses; `logits`: their float64 logit rows (V words each).
    Each token's float32 loss, z_y - m - log(sum_j exp(z_j - m)) with m = max z: casting the logits moves
    each by <= u|z| (<= 2uM on the result, M = max|z|); z_j - m rounds by <= 2uM, which exp carries as a
    relative 2uM, plus <= 2u for exp itself (1 ulp); a sum of V positive terms in any order is within
    (V - 1)u of exact, relative; log adds <= 2u log V, and the two subtractions <= 2u(2M + log V). So
    |l32 - l| <= u(V + 8M + 4 log V + 1). The mean: n terms summed in any order are within (n - 1)u of
    exact relative to sum|l32|, and the division rounds once more (u). First order in u, so 1% on top.
    """
    n, vocab = per_token.numel(), logits.size(-1)
    m = logits.abs().amax(-1)
    per_token_bound = U32 * (vocab + 8 * m + 4 * math.log(vocab) + 1)
    abs_sum = (per_token.abs() + per_token_bound).sum()
    bound = per_token_bound.sum() / n + (n - 1) * U32 * abs_sum / n + U32 * abs_sum / n
    return 1.01 * bound.item()


def _one_step(trainer, examples, collate):
    """One forward and backward of `examples` as `collate` lays them out.

    Each example's float64 logits and float64 per-token losses (the inputs to the loss's reduction), the
    model's own float32 loss, and the LoRA gradients of a float64 mean of those per-token losses.
    """
    model = trainer.model
    lengths = [len(e["input_ids"]) for e in examples]
    batch = collate(examples)
    model.zero_grad()
    out = model(**batch)
    if batch["input_ids"].size(0) == 1 and len(examples) > 1:  # one padding-free row
        logits, labels = out.logits[0].split(lengths), batch["labels"][0].split(lengths)
    else:
        logits, labels = out.logits, batch["labels"]
    logits = [logits[i][:n] for i, n in enumerate(lengths)]
    labels = [labels[i][:n] for i, n in enumerate(lengths)]
    per_token, rows = [], []
    for z, y in zip(logits, labels):
        learned = y[1:] != -100
        per_token.append(torch.nn.functional.cross_entropy(z[:-1][learned], y[1:][learned], reduction="none"))
        rows.append(z[:-1][learned])
    all_tokens = torch.cat(per_token)
    assert all_tokens.dtype == torch.float64 and out.loss.dtype == torch.float32  # as the comment above says
    all_tokens.mean().backward()
    return {
        "logits": [z.detach() for z in logits],
        "per_token": [t.detach() for t in per_token],
        "loss32": out.loss.detach().item(),
        "loss32_bound": _float32_loss_bound(all_tokens.detach(), torch.cat(rows).detach()),
        "mean64": all_tokens.detach().mean().item(),
        "grads": {name: p.grad.clone() for name, p in model.named_parameters() if p.requires_grad},
    }


def _assert_same_step(padded, free):
    """What test_one_step_... asserts: float64 values to EQUAL_RTOL, the float32 loss to its bound."""
    for a, b in zip(padded["logits"], free["logits"]):
        torch.testing.assert_close(b, a, rtol=EQUAL_RTOL, atol=EQUAL_RTOL)
    for a, b in zip(padded["per_token"], free["per_token"]):
        torch.testing.assert_close(b, a, rtol=EQUAL_RTOL, atol=0)
    for step in (padded, free):  # each float32 loss is the mean of its own float64 per-token losses, to rounding
        assert abs(step["loss32"] - step["mean64"]) <= step["loss32_bound"], step
    assert abs(free["loss32"] - padded["loss32"]) <= free["loss32_bound"] + padded["loss32_bound"]
    assert padded["grads"].keys() == free["grads"].keys() and any(g.abs().sum() > 0 for g in padded["grads"].values())
    for name, grad in padded["grads"].items():
        torch.testing.assert_close(free["grads"][name], grad, rtol=EQUAL_RTOL, atol=EQUAL_RTOL * grad.abs().max().item(), msg=name)


def test_one_step_of_padded_and_padding_free_batches_gives_the_same_logits_and_gradients(pairs_dir, tmp_path, wholly_float64):
    """Before any float error accumulates: each example's logits and per-token losses, the loss and every LoRA gradient."""
    trainer = _float64_trainer(pairs_dir, tmp_path, "padded")
    pad_id = trainer.processing_class.pad_token_id
    examples = [trainer.train_dataset[i] for i in range(4)]
    assert len({len(e["input_ids"]) for e in examples}) > 1  # unequal lengths, so the padded batch really pads
    padded = _one_step(trainer, examples, batching.collator("padded", pad_id))
    free = _one_step(trainer, examples, batching.collator("padding_free", pad_id))
    _assert_same_step(padded, free)


def test_padding_free_and_padded_batches_train_the_same_model(pairs_dir, tmp_path, wholly_float64):
    """The same examples per step and no attention across examples: the same losses, step by step."""
    (free_losses, free_weights), (padded_losses, padded_weights) = (_trained(_float64_trainer(pairs_dir, tmp_path / m, m)) for m in ("padding_free", "padded"))
    assert len(padded_losses) == 3
    assert free_losses == pytest.approx(padded_losses, rel=LOGGED_LOSS_RTOL)
    for name, weight in padded_weights.items():
        torch.testing.assert_close(free_weights[name], weight, rtol=EQUAL_RTOL, atol=EQUAL_RTOL * weight.abs().max().item(), msg=name)


def test_a_leaking_padding_free_batch_is_caught(pairs_dir, tmp_path, wholly_float64):
    """Both tests above fail when one example attends to its neighbour."""
    trainer = _float64_trainer(pairs_dir, tmp_path / "one-step", "padded")
    pad_id = trainer.processing_class.pad_token_id
    examples = [trainer.train_dataset[i] for i in range(4)]
    padded = _one_step(trainer, examples, batching.collator("padded", pad_id))
    leaky_step = _one_step(trainer, examples, _LeakyPaddingFree(pad_token_id=pad_id, padding_free=True))
    with pytest.raises(AssertionError):
        _assert_same_step(padded, leaky_step)
    # Not by a hair: the second example's per-token losses move by far more than EQUAL_RTOL ...
    moved = ((leaky_step["per_token"][1] - padded["per_token"][1]).abs() / padded["per_token"][1].abs()).max().item()
    assert moved > 1e6 * EQUAL_RTOL
    # ... and the float32 loss by far more than its rounding bound.
    assert abs(leaky_step["loss32"] - padded["loss32"]) > 10 * (leaky_step["loss32_bound"] + padded["loss32_bound"])

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
