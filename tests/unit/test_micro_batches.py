"""Token-budget micro-batches (resumo.batching.TokenBudgetCollator) and the varlen attention
(resumo.attention): the same step, cut by tokens instead of by count, trains the same model."""

import random

import pytest
import torch
from transformers import AutoModelForCausalLM

from resumo import attention, batching, models, train
from resumo.config import load_config
from resumo.errors import ConfigError

# A float32 value: trl scores each summary token's log-probability in float32 (trl/kernels/chunked_logprob.py,
# ChunkedLogProbFunction: `tile.float()` before the log-sum-exp), whatever the model's dtype, and the loss is their
# sum over the step's label tokens. Two orders of summing n float32 terms of one sign differ by at most
# 2 (n - 1) 2**-24 of the sum, so the loss of a step agrees to that. The gradients are float64 sums of terms
# each carrying one such float32 factor; we hold them to the same relative bound, scaled by the largest
# gradient. A normalisation slip (each micro-batch divided by its own label count) is off by a factor of
# the number of micro-batches, orders of magnitude beyond either.
F32_STEP = 2**-24


@pytest.mark.parametrize("padded", [False, True])
def test_groups_hold_every_example_once_within_the_budget(padded):
    rng = random.Random(0)
    lengths = [rng.randint(50, 400) for _ in range(64)]
    groups = batching.token_budget_groups(lengths, 1000, padded)
    assert sorted(i for g in groups for i in g) == list(range(64))
    for group in groups:
        cost = max(lengths[i] for i in group) * len(group) if padded else sum(lengths[i] for i in group)
        assert cost <= 1000
    # First-fit decreasing wastes little: at most one group more than the tokens need.
    assert len(groups) <= sum(lengths) // 1000 + 2 or padded


def test_an_example_longer_than_the_budget_gets_a_group_of_its_own():
    assert batching.token_budget_groups([50, 2000, 60], 1000, padded=False) == [[1], [2, 0]]


def test_a_budget_below_max_length_is_refused():
    with pytest.raises(ConfigError, match="micro_batch_tokens=512 is below max_length=1024"):
        load_config("smoke", ["train.micro_batch_tokens=512"])


@pytest.mark.numerics
def test_varlen_attention_keeps_the_examples_of_a_row_apart(wholly_float64):
    """Each example's logits in a padding-free row equal those of the example run alone (float64 throughout:
    `wholly_float64` keeps Qwen2's RMSNorm and rotary angles out of float32, see tests/NUMERICS.md)."""
    attention.register()
    path = models.resolve("tiny:qwen2")
    row_model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float64, attn_implementation="varlen").eval()
    alone_model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float64, attn_implementation="sdpa").eval()
    generator = torch.Generator().manual_seed(0)
    examples = [torch.randint(5, 4000, (n,), generator=generator) for n in (7, 13, 5)]
    positions = torch.cat([torch.arange(len(e)) for e in examples])[None]
    with torch.no_grad():
        row = row_model(input_ids=torch.cat(examples)[None], position_ids=positions, use_cache=False).logits[0]
        alone = [alone_model(input_ids=e[None], use_cache=False).logits[0] for e in examples]
    # Per example the same float64 ops on the same values (sdpa on the example's slice); only the GEMMs'
    # row blocking and the order of their sums of K <= 4,096 terms differ, so each value is within
    # K * 2**-53 * sum|terms| (~5e-13 relative) of the other through two layers: 1e-9 holds for any
    # summation order, and is nine orders of magnitude below a leak (logits move by ~1).
    for got, want in zip(row.split([len(e) for e in examples]), alone):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


def _trainer(pairs_dir, out, budget, dtype=torch.float64, compile=False):
    sets = ["train.epochs=1", "train.batching=padding_free", "train.attn_implementation=varlen", "train.lora.dropout=0", "train.batch_size=4", "train.gradient_accumulation=2", "train.max_length=512"]
    cfg = load_config("smoke", sets + [f"train.micro_batch_tokens={budget}", f"train.compile={compile}"]).train
    rows = train._usable_pairs(pairs_dir, "train").head(8)
    trainer = train._build_trainer(cfg, rows, rows.head(2), out)
    trainer.model.to(dtype)
    return trainer


def _one_step(trainer):
    """The loss and LoRA gradients of the first optimizer step's examples, as training_step computes them."""
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    trainer.model.zero_grad()
    num_items = trainer._get_num_items_in_batch([batch], trainer.args.device)
    loss = trainer.training_step(trainer.model, batch, num_items)
    grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    return batch, float(loss), grads, int(num_items)


@pytest.mark.numerics
def test_a_step_cut_by_tokens_gives_the_gradient_of_the_whole_step(pairs_dir, tmp_path):
    whole_batch, whole_loss, whole_grads, n = _one_step(_trainer(pairs_dir, tmp_path / "whole", 100_000))
    cut_batch, cut_loss, cut_grads, _ = _one_step(_trainer(pairs_dir, tmp_path / "cut", 512))
    assert len(whole_batch[batching.MICRO_BATCHES]) == 1 and len(cut_batch[batching.MICRO_BATCHES]) > 2
    assert sum(m["input_ids"].numel() for m in cut_batch[batching.MICRO_BATCHES]) == whole_batch[batching.MICRO_BATCHES][0]["input_ids"].numel()
    bound = 2 * n * F32_STEP
    assert cut_loss == pytest.approx(whole_loss, rel=bound)
    assert any(g.abs().sum() > 0 for g in whole_grads.values())
    for name, grad in whole_grads.items():
        torch.testing.assert_close(cut_grads[name], grad, rtol=bound, atol=bound * grad.abs().max().item(), msg=name)


def test_padding_free_rows_with_sdpa_are_refused_on_a_gpu():
    cfg = load_config("smoke", ["train.batching=padding_free", "train.attn_implementation=sdpa"]).train
    with pytest.raises(ConfigError, match="set train.attn_implementation=varlen"):
        train._refuse_slow_attention(cfg, cuda=True)
    train._refuse_slow_attention(cfg, cuda=False)  # on CPU the mask is the only way, and it is correct


def test_checkpointing_goes_on_only_where_the_activations_would_not_fit():
    from transformers import Qwen2Config

    qwen_05b = Qwen2Config(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2)
    per_token = batching.activation_bytes_per_token(qwen_05b, 64, 7, 0.05, liger=False)
    # On the H200 (runs/bench/gpu.json) the default's 16,384-token micro-batches peaked at 25.1 GiB, weights,
    # optimizer and temporaries included: the count must not fall below that, nor overshoot it by half.
    measured = 25.1 * 2**30 / 16384
    assert measured <= per_token <= 1.5 * measured
    assert batching.activation_bytes_per_token(qwen_05b, 64, 7, 0.05, liger=True) < per_token
    assert batching.activation_bytes_per_token(qwen_05b, 64, 7, 0.0, liger=False) < per_token
    gib = 2**30
    assert not batching.needs_checkpointing(16384, per_token, 80 * gib)  # the default budget on an 80 GB card
    assert batching.needs_checkpointing(16384, per_token, 24 * gib)  # ... and on a 24 GB one


@pytest.mark.numerics
def test_compiled_layers_train_the_step_eager_layers_train(pairs_dir, tmp_path, monkeypatch):
    """train.compile: the decoder layers compiled in place (Inductor's C++ on CPU) give the eager step's loss and
    LoRA gradients, and the parameters keep their names (what the adapter is saved under)."""
    # A fresh Inductor cache: its precompiled C++ header is not keyed by the thread count or ATEN_CPU_CAPABILITY,
    # and one built under other settings broke the compile (`at::vec` undeclared with OMP_NUM_THREADS=1 after
    # runs with 2 threads); a fresh cache compiled and passed under both.
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    torch._dynamo.reset()
    budget = 100_000  # one micro-batch, one shape: a single compilation keeps this test near a minute on 2 cores
    _, eager_loss, eager_grads, _ = _one_step(_trainer(pairs_dir, tmp_path / "eager", budget, dtype=torch.float32))
    compiled = _trainer(pairs_dir, tmp_path / "compiled", budget, dtype=torch.float32, compile=True)
    layers = [m for m in compiled.model.modules() if type(m).__name__ == "Qwen2DecoderLayer"]
    assert layers and all(layer._compiled_call_impl is not None for layer in layers)
    _, compiled_loss, compiled_grads, _ = _one_step(compiled)
    assert list(compiled_grads) == list(eager_grads)  # no `_orig_mod.` in any name
    # Float32 throughout (the model is cast to it). Inductor computes the same ops but may sum a reduction
    # (RMSNorm's mean of squares over 64 channels) in another order, which moves it by at most 63 * 2**-24
    # of its magnitude (~4e-6), and its vectorised exp/rsqrt may round differently, by an ulp or two; these
    # perturbations pass through two small layers and a float32 log-sum-exp, none of which amplify them by
    # more than ~10 (the tiny model's weights have std 0.02). So the loss agrees to ~4e-5 relative and each
    # gradient to ~4e-5 of the largest whatever the order: we allow 1e-4. A compiled graph that dropped the
    # LoRA path, its scaling or a layer would move the B gradients by their own size (relative error ~1).
    assert compiled_loss == pytest.approx(eager_loss, rel=1e-4)
    assert any(g.abs().max() > 0 for g in eager_grads.values())
    for name, grad in eager_grads.items():
        torch.testing.assert_close(compiled_grads[name], grad, rtol=1e-4, atol=1e-4 * grad.abs().max().item(), msg=name)
