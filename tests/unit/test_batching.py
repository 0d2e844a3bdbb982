import pytest
import torch

from resumo import batching, models

pytestmark = pytest.mark.numerics  # make test-kernels reruns these on other CPU kernels


@pytest.fixture(scope="module")
def tiny_lm():
    from transformers import AutoModelForCausalLM

    # float64: packed and alone sum in different orders, and float32 rounding of those sums
    # differs between CPUs; in float64 it stays near 1e-15, far under the tolerance below.
    path = models.resolve("tiny:qwen2")
    return {impl: AutoModelForCausalLM.from_pretrained(path, attn_implementation=impl, dtype=torch.float64).eval() for impl in ("sdpa", "eager")}


def _examples():
    generator = torch.Generator().manual_seed(0)
    lengths = (37, 23, 51)
    return [{"input_ids": torch.randint(10, 4000, (n,), generator=generator).tolist()} for n in lengths]


def test_a_padding_free_batch_is_one_row_without_padding_or_attention_mask():
    examples = _examples()
    batch = batching.collator("padding_free", pad_token_id=0)(examples)
    total = sum(len(e["input_ids"]) for e in examples)
    assert batch["input_ids"].shape == (1, total)
    assert "attention_mask" not in batch and batch["use_cache"] is False  # either would switch off the per-example masking
    assert batch["position_ids"][0].tolist() == [i for e in examples for i in range(len(e["input_ids"]))]
    padded = batching.collator("padded", pad_token_id=0)(examples)
    assert padded["input_ids"].shape == (3, 51) and padded["attention_mask"].sum() == total


# How far packed and alone may differ, against a leak's shift of more than 1e-2 (the test below).
# With `wholly_float64` (tests/unit/conftest.py: Qwen2's RMSNorm and rotary angles otherwise run in float32)
# sdpa runs wholly in float64: the two sum in other orders, each sum of K <= 4,096 terms within
# K * 2**-53 * sum|terms| (5e-13) of exact in any order; 5e-15 apart measured. eager upcasts its softmax
# to float32 whatever the model's dtype (transformers' eager_attention_forward), so its attention
# weights carry float32 rounding (2**-24 = 6e-8 relative each), which the value sums and the
# vocabulary projection of two layers grow to ~1e-6: 1.8e-6 seen on the default kernel set,
# 5e-15 on AVX2, whose vectorised softmax rounds a masked and an unmasked row alike. 1e-5 bounds it
# with a margin of 5, and stays 1,000 times below a leak.
PACKED_ATOL = {"sdpa": 1e-9, "eager": 1e-5}


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_packed_examples_do_not_see_each_other(tiny_lm, impl, wholly_float64):
    """Each example's logits in a padding-free row equal its logits when run alone."""
    model, examples = tiny_lm[impl], _examples()
    batch = batching.collator("padding_free", pad_token_id=0)(examples)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        packed = model(**inputs).logits[0]
        start = 0
        for example in examples:
            alone = model(input_ids=torch.tensor([example["input_ids"]])).logits[0]
            end = start + len(example["input_ids"])
            torch.testing.assert_close(packed[start:end], alone, atol=PACKED_ATOL[impl], rtol=0)
            start = end


@pytest.mark.parametrize("slip", [{"attention_mask": "ones"}, {"use_cache": True}])
def test_a_mask_of_ones_or_a_kv_cache_would_leak_across_examples(tiny_lm, slip, wholly_float64):
    """Why the collator adds no mask and turns the cache off: the test above would catch either."""
    model, examples = tiny_lm["sdpa"], _examples()
    batch = batching.collator("padding_free", pad_token_id=0)(examples)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    inputs.update({k: torch.ones_like(batch["input_ids"]) if v == "ones" else v for k, v in slip.items()})
    with torch.no_grad():
        leaky = model(**inputs).logits[0]
        first = len(examples[0]["input_ids"])
        second_alone = model(input_ids=torch.tensor([examples[1]["input_ids"]])).logits[0]
    assert (leaky[first : first + len(examples[1]["input_ids"])] - second_alone).abs().max() > 1e-2


def test_tokens_seen_never_count_padding():
    assert batching.tokens_seen_mode("padding_free") == "all"  # no padding in the row
    assert batching.tokens_seen_mode("padded") == batching.tokens_seen_mode("length_grouped") == "non_padding"
