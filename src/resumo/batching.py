"""Batching for training: padding-free micro-batches, and a tokens-per-second meter.

The original study's articles run from 500 to 4,000 tokens, so a padded batch of
16 is mostly padding. Padding-free batching lays a micro-batch's examples end to
end in one row, with `position_ids` restarting at 0 in each and no
`attention_mask` (trl's `DataCollatorForLanguageModeling(padding_free=True)`).
What keeps the examples apart:

- `attn_implementation="varlen"` (resumo.attention, the default): PyTorch's flash
  varlen kernel on a GPU, sdpa per example elsewhere, from the collator's
  `cu_seq_lens`; `flash_attention_2` does the same through the flash-attn package;
- `sdpa` and `eager`: transformers' `masking_utils.find_packed_sequence_indices`
  reads the restarts in `position_ids` and builds a block-diagonal causal mask,
  but only when no 2D `attention_mask` is passed and no KV cache is in use. An
  all-ones mask, or the default `use_cache=True` (even in train mode), turns that
  off and the second example attends to the first (DESIGN.md measured a 0.43 logit
  shift; on the tiny model it is 6). So the collator never adds a mask and its
  batches carry `use_cache=False` themselves rather than relying on trl's
  `compute_loss` setting it. `tests/unit/test_batching.py` checks that each
  example's logits equal those of the example run alone, and that either slip
  would leak. The mask's attention work grows with the square of the whole row:
  on an H200 padding-free rows under sdpa ran at a third of padded batches, so
  train refuses that pairing on a GPU.

Token-budget micro-batches (`TokenBudgetCollator`, `train.micro_batch_tokens`):
the dataloader hands over a whole optimizer step's examples, cut into
micro-batches of at most that many tokens, so a step is as few forward/backward
passes as memory allows. On an H200 a step is bound by launching kernels, about
5,500 a micro-batch, so fewer, larger micro-batches are faster (docs/gpu.md).
`needs_checkpointing` keeps gradient checkpointing off wherever they fit.
"""

from __future__ import annotations

import contextlib
import time

import torch
from transformers import TrainerCallback
from transformers.trainer_pt_utils import LengthGroupedSampler, get_length_grouped_indices
from trl import SFTTrainer
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling


MICRO_BATCHES = "micro_batches"


def collator(batching: str, pad_token_id: int, micro_batch_tokens: int | None = None):
    """trl's collator for `TrainConfig.batching` (the order of examples is the sampler's business);
    with a token budget, one optimizer step's examples cut into micro-batches of at most that many tokens."""
    inner = PaddingFreeCollator(pad_token_id=pad_token_id, padding_free=True) if batching == "padding_free" else DataCollatorForLanguageModeling(pad_token_id=pad_token_id)
    return TokenBudgetCollator(inner, micro_batch_tokens, padded=batching != "padding_free") if micro_batch_tokens else inner


def token_budget_groups(lengths: list[int], budget: int, padded: bool) -> list[list[int]]:
    """The examples' indices cut into as few micro-batches as first-fit decreasing finds, each costing at most
    `budget` tokens: the sum of its lengths in a padding-free row, longest x count when padded.

    Longest first, so a padded micro-batch's first example is its longest and
    similar lengths share a micro-batch. An example longer than the budget gets one
    of its own (TrainConfig makes the budget at least max_length, so it does not happen).
    """
    groups: list[list[int]] = []
    costs: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        for g, group in enumerate(groups):
            cost = lengths[group[0]] * (len(group) + 1) if padded else costs[g] + lengths[i]
            if cost <= budget:
                group.append(i)
                costs[g] = cost
                break
        else:
            groups.append([i])
            costs.append(lengths[i])
    return groups


class TokenBudgetCollator:
    """A whole optimizer step's examples in, `{"micro_batches": [batch, ...]}` out: each batch is what
    `inner` makes of the examples of one token-budget group. `BudgetedSFTTrainer` runs them."""

    def __init__(self, inner, budget: int, padded: bool):
        self.inner, self.budget, self.padded = inner, budget, padded

    def __call__(self, examples):
        groups = token_budget_groups([len(e["input_ids"]) for e in examples], self.budget, self.padded)
        return {MICRO_BATCHES: [self.inner([examples[i] for i in group]) for group in groups]}


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
    """trl's SFTTrainer with token-budget micro-batches, and length groups that are the same whatever
    the number of processes.

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

    # --- token-budget micro-batches (TokenBudgetCollator) ----------------------------------------
    # The dataloader hands over one optimizer step's examples (gradient_accumulation_steps is 1);
    # each micro-batch is a forward and backward, and the loss of each is its summed token losses
    # over the step's label tokens (num_items_in_batch), so the gradient is the step's mean, as with
    # transformers' own gradient accumulation. DDP syncs gradients after the last micro-batch only.

    def training_step(self, model, inputs, num_items_in_batch=None):
        micro_batches = inputs.get(MICRO_BATCHES)
        if micro_batches is None:
            return super().training_step(model, inputs, num_items_in_batch)
        if num_items_in_batch is None:
            raise RuntimeError("token-budget micro-batches need the step's label count (transformers' num_items_in_batch); it was not counted")
        total = 0.0
        for i, micro in enumerate(micro_batches):
            last = i == len(micro_batches) - 1
            with contextlib.nullcontext() if last else self.accelerator.no_sync(model):
                total = total + super().training_step(model, micro, num_items_in_batch)
        return total

    def _get_num_items_in_batch(self, batch_samples, device):
        return super()._get_num_items_in_batch(_flatten(batch_samples), device)

    def _track_num_input_tokens(self, inputs):
        for micro in _flatten([inputs]):
            super()._track_num_input_tokens(micro)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        micro_batches = inputs.get(MICRO_BATCHES)
        if micro_batches is None:
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)
        # Each micro-batch's loss is the mean over its label tokens: weigh them by those counts.
        losses, counts = [], []
        for micro in micro_batches:
            loss, _, _ = super().prediction_step(model, micro, True, ignore_keys)
            losses.append(loss.float())
            counts.append((micro["labels"][..., 1:] != -100).sum().float())
        counts_tensor = torch.stack(counts)
        return (torch.stack(losses) * counts_tensor).sum() / counts_tensor.sum().clamp(min=1), None, None

    # --- length groups ----------------------------------------------------------------------------

    def _get_train_sampler(self, train_dataset=None):
        sampler = super()._get_train_sampler(train_dataset)
        if not isinstance(sampler, LengthGroupedSampler):
            return sampler
        step = self.args.per_device_train_batch_size * self.args.gradient_accumulation_steps * self.args.world_size
        return StepLengthGroupedSampler(sampler.lengths, step, seed=self.args.data_seed if self.args.data_seed is not None else self.args.seed)


def _flatten(batches: list[dict]) -> list[dict]:
    return [micro for batch in batches for micro in batch.get(MICRO_BATCHES, [batch])]


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


# --- memory: when a micro-batch needs gradient checkpointing -----------------------------------

# Of the GPU's memory, the share a micro-batch's activations may take: the rest is the weights, the
# optimizer's state, the backward pass's temporaries and the allocator's fragmentation.
ACTIVATION_SHARE = 0.7


def activation_bytes_per_token(model_config, lora_r: int, lora_targets: int, lora_dropout: float, liger: bool, dtype_bytes: int = 2) -> int:
    """Bytes of activations a LoRA step keeps per token for the backward pass, without checkpointing.

    Counted per decoder layer from what autograd saves (the frozen base weights keep no input;
    each LoRA branch keeps its input, a dropped-out copy and a 1-byte mask when dropout is on):
    two RMSNorms (transformers': their float32 input and the normed output, 6 bytes an element;
    Liger's: the input alone), attention's q, k, v and output, the SwiGLU MLP's gate, up and
    activation (Liger recomputes the activation), and the LoRA branches. On Qwen2.5-0.5B (r=64,
    7 targets, dropout 0.05, no Liger) it counts 1.8 MB a token; on an H200 16,384-token micro-batches
    peaked at 25.1 GiB with everything else included, 1.6 MB a token, so the count errs on the safe side.
    """
    hidden, inter, layers = model_config.hidden_size, model_config.intermediate_size, model_config.num_hidden_layers
    head_dim = getattr(model_config, "head_dim", None) or hidden // model_config.num_attention_heads
    kv = model_config.num_key_value_heads * head_dim
    norms = 2 * hidden * (dtype_bytes if liger else 6)
    attention = dtype_bytes * (2 * hidden + 2 * kv)
    mlp = dtype_bytes * inter * (2 if liger else 3)
    branch_inputs = (18 * hidden + 3 * inter) if lora_dropout else dtype_bytes * (2 * hidden + inter)  # dropout: 6 hidden-wide + down's, 3 bytes each
    low_rank = lora_targets * lora_r * dtype_bytes
    return layers * (norms + attention + mlp + branch_inputs + low_rank)


def needs_checkpointing(tokens: int, bytes_per_token: int, device_bytes: int) -> bool:
    """Whether a micro-batch of `tokens` keeps more activations than ACTIVATION_SHARE of the device holds."""
    return tokens * bytes_per_token > ACTIVATION_SHARE * device_bytes
