"""Batching for training: padding-free micro-batches, and a tokens-per-second meter.

The original study's articles run from 500 to 4,000 tokens, so a padded batch of
16 is mostly padding. Padding-free batching lays a micro-batch's examples end to
end in one row, with `position_ids` restarting at 0 in each and no
`attention_mask` (trl's `DataCollatorForLanguageModeling(padding_free=True)`).
What keeps the examples apart:

- flash-attention (`attn_implementation="flash_attention_2"`, GPU): the varlen
  kernel attends within each example, from the collator's `cu_seq_lens`;
- `sdpa` and `eager` (CPU, or a GPU without flash-attn): transformers'
  `masking_utils.find_packed_sequence_indices` reads the restarts in
  `position_ids` and builds a block-diagonal causal mask, but only when no 2D
  `attention_mask` is passed and no KV cache is in use. An all-ones mask, or the
  default `use_cache=True` (even in train mode), turns that off and the second
  example attends to the first (DESIGN.md measured a 0.43 logit shift; on the
  tiny model it is 6). So the collator never adds a mask and its batches carry
  `use_cache=False` themselves rather than relying on trl's `compute_loss`
  setting it. `tests/unit/test_batching.py` checks that each example's logits
  equal those of the example run alone, and that either slip would leak.

The cost: with a mask instead of a varlen kernel, attention work grows with
the square of the whole row, not of each example. `make bench BENCH=train`
(tiny model, CPU, sdpa, 16 examples a row) measured padding-free at 0.75x the
real tokens/s of plain padded batches, and length-grouped padded batches at
1.16x, so `length_grouped` is the default and `padding_free` is for
`flash_attention_2`, where no padding and no cross-example attention is computed.
"""

from __future__ import annotations

import time

from transformers import TrainerCallback
from transformers.trainer_pt_utils import LengthGroupedSampler
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling


class EpochSeededLengthGroupedSampler(LengthGroupedSampler):
    """transformers' length-grouped order, drawn from a generator seeded with (seed + epoch)
    instead of the global RNG. A run resumed mid-epoch restarts the process, so the global
    RNG at its epoch's start is not the uninterrupted run's, and the stock sampler drew
    another order (the same steps, other batches). accelerate calls set_epoch every epoch."""

    def __init__(self, batch_size: int, lengths: list[int], seed: int):
        import torch

        super().__init__(batch_size, lengths=lengths, generator=torch.Generator())
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.generator.manual_seed(self.seed + int(epoch))


def epoch_seeded(sampler, seed: int):
    """The Trainer's train sampler, with a length-grouped one made resumable mid-epoch."""
    if isinstance(sampler, LengthGroupedSampler) and not isinstance(sampler, EpochSeededLengthGroupedSampler):
        return EpochSeededLengthGroupedSampler(sampler.batch_size, sampler.lengths, seed)
    return sampler


def collator(batching: str, pad_token_id: int) -> DataCollatorForLanguageModeling:
    """trl's collator for `TrainConfig.batching` (the order of examples is the sampler's business)."""
    if batching == "padding_free":
        return PaddingFreeCollator(pad_token_id=pad_token_id, padding_free=True)
    return DataCollatorForLanguageModeling(pad_token_id=pad_token_id)


class PaddingFreeCollator(DataCollatorForLanguageModeling):
    """trl's padding-free collator whose batches also switch the KV cache off (see above)."""

    def torch_call(self, examples):
        return {**super().torch_call(examples), "use_cache": False}


def tokens_seen_mode(batching: str) -> str:
    """How the Trainer counts input tokens so that padding is never counted.

    A padding-free row has no padding and no attention mask, so every token is real
    ("all"); counting tokens unequal to the pad id would miss real end-of-turn tokens
    where the pad token is the eos token. A padded batch counts its attention mask.
    """
    return "all" if batching == "padding_free" else "non_padding"


class Throughput(TrainerCallback):
    """Real (non-padding) tokens per second of optimizer steps in this process.

    Timed from each step's start to its end: forward, backward and optimizer step,
    not evaluation or checkpointing, so per-epoch validation does not dilute it.
    `start_step` is the global step this process began at (> 0 after a resume).
    """

    def __init__(self) -> None:
        self.seconds = 0.0
        self.tokens = 0
        self.steps = 0
        self.start_step: int | None = None
        self._tokens_at_start = 0
        self._step_started = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        if self.start_step is None:  # the first step: a resumed state is loaded by now
            self.start_step = state.global_step
            self._tokens_at_start = state.num_input_tokens_seen
        self._step_started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.seconds += time.perf_counter() - self._step_started
        self.steps += 1
        self.tokens = state.num_input_tokens_seen - self._tokens_at_start

    @property
    def tokens_per_second(self) -> float | None:
        return self.tokens / self.seconds if self.seconds else None
