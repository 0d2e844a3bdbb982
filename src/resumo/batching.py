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

import torch
from transformers import TrainerCallback
from transformers.trainer_pt_utils import LengthGroupedSampler, get_length_grouped_indices
from trl import SFTTrainer
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling


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


class StepGroupedSFTTrainer(SFTTrainer):
    """trl's SFTTrainer whose length groups are the same whatever the number of processes.

    transformers' `group_by_length` sampler groups by `per-device batch x
    accumulation`, one process's share of an optimizer step, and draws its order
    from the global torch RNG. Under torchrun, accelerate deals the sampler's
    batches out to the ranks in turn, so that share shrinks with the world size
    (other groups, other steps than one process trains) and the ranks' RNGs drift
    apart once dropout has drawn masks of different shapes on each (in the next
    epoch the ranks would see other permutations: some examples twice, some never).
    `StepLengthGroupedSampler` groups whole optimizer steps over every process,
    from a generator seeded per epoch that every rank and a resumed run share.
    """

    def _get_train_sampler(self, train_dataset=None):
        sampler = super()._get_train_sampler(train_dataset)
        if not isinstance(sampler, LengthGroupedSampler):
            return sampler
        step = self.args.per_device_train_batch_size * self.args.gradient_accumulation_steps * self.args.world_size
        return StepLengthGroupedSampler(sampler.lengths, step, seed=self.args.data_seed if self.args.data_seed is not None else self.args.seed)


class StepLengthGroupedSampler(LengthGroupedSampler):
    """transformers' length grouping over `global_batch` examples, ordered by (seed, epoch) alone."""

    def __init__(self, lengths: list[int], global_batch: int, seed: int):
        super().__init__(global_batch, lengths=lengths)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:  # the Trainer calls it before each epoch, a resumed one too
        self.epoch = epoch

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(get_length_grouped_indices(self.lengths, self.batch_size, generator=generator))
