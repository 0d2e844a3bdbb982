"""`attn_implementation="varlen"`: attention within each example of a padding-free row.

A padding-free micro-batch (resumo.batching) lays its examples end to end in one
row, with position ids restarting at 0 in each; trl's collator also hands the model
the row's boundaries (`cu_seq_lens_q`, `max_length_q`). This implementation attends
within each example, so a row costs sum(l_i^2) attention work, with no mask and no
padding:

- on CUDA in bf16/fp16: `torch.nn.attention.varlen.varlen_attn`, flash-attention's
  varlen kernel as PyTorch itself ships it (torch >= 2.10), so no flash-attn
  package has to be built into the image;
- elsewhere (CPU, float32): `scaled_dot_product_attention` per example, the same
  arithmetic as each example run alone, which is what the CPU tests check.

Anything that is not a padding-free row (generation with a KV cache, a padded batch
with its attention mask) goes to transformers' own `sdpa`, so a model loaded with
`varlen` also generates, and validation during training needs no switch.
"""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F

NAME = "varlen"


def register() -> str:
    """Make `attn_implementation="varlen"` known to transformers (idempotent); returns the name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(NAME, varlen_attention_forward)
    AttentionMaskInterface.register(NAME, _mask)
    return NAME


def available_on_cuda() -> bool:
    """Whether this torch has the varlen flash kernel (torch >= 2.10 built with CUDA)."""
    try:
        from torch.nn.attention.varlen import varlen_attn  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available()


def _mask(*args, attention_mask=None, **kwargs):
    """No mask for a padding-free row (the boundaries do its work); transformers' sdpa mask otherwise."""
    if attention_mask is None:
        return None
    from transformers.masking_utils import sdpa_mask

    return sdpa_mask(*args, attention_mask=attention_mask, **kwargs)


def varlen_attention_forward(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """transformers' attention-function contract: query (1, Hq, T, D), key/value (1, Hkv, T, D) in,
    (1, T, Hq, D) and no weights out."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    boundaries = kwargs.get("cu_seq_lens_q")
    position_ids = kwargs.get("position_ids")
    is_row = attention_mask is None and query.shape[0] == 1 and query.shape[2] == key.shape[2]
    if not is_row or (boundaries is None and position_ids is None):
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs)
    if dropout:
        raise ValueError(f"attn_implementation={NAME!r} has no attention dropout (got {dropout}); set the model's attention_dropout to 0")
    if boundaries is None:  # a caller that gave position ids but not the collator's boundaries
        boundaries = sequence_boundaries(position_ids[0])
    max_length = kwargs.get("max_length_q") or int(boundaries.diff().max())
    q, k, v = (t[0].transpose(0, 1).contiguous() for t in (query, key, value))  # (T, H, D)
    if q.is_cuda and q.dtype in (torch.bfloat16, torch.float16) and available_on_cuda():
        out = _flash_varlen(q, k, v, boundaries.to(q.device, torch.int32), max_length, scaling)
    else:
        out = _per_example(q, k, v, boundaries.tolist(), scaling)
    return out.unsqueeze(0), None


def sequence_boundaries(position_ids: torch.Tensor) -> torch.Tensor:
    """Cumulative example lengths of a row from its position ids, which restart at 0 in each example."""
    starts = (position_ids == 0).nonzero().flatten()
    return torch.cat([starts, torch.tensor([position_ids.numel()], device=starts.device)]).to(torch.int32)


def _per_example(q, k, v, boundaries: list[int], scaling):
    """Causal sdpa over each example alone: (T, H, D) in and out."""
    pieces = []
    for start, end in zip(boundaries[:-1], boundaries[1:]):
        qs, ks, vs = (t[start:end].transpose(0, 1) for t in (q, k, v))  # (H, l, D)
        pieces.append(F.scaled_dot_product_attention(qs, ks, vs, is_causal=True, scale=scaling, enable_gqa=qs.shape[0] != ks.shape[0]).transpose(0, 1))
    return torch.cat(pieces)


def _varlen_parameters() -> frozenset[str]:
    """varlen_attn's keyword names, read once here: its spelling changed across torch releases."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return frozenset()
    return frozenset(inspect.signature(varlen_attn).parameters)


_VARLEN_PARAMETERS = _varlen_parameters()  # at import, not per call: a compiled layer traces no inspect


def _flash_varlen(q, k, v, boundaries, max_length: int, scaling):
    from torch.nn.attention.varlen import varlen_attn

    params = _VARLEN_PARAMETERS
    if q.shape[1] != k.shape[1] and "enable_gqa" not in params:  # torch 2.10/2.11: one key/value head per query head
        groups = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    options = {"enable_gqa": True} if q.shape[1] != k.shape[1] else {}
    # torch 2.9 spelt causality is_causal; 2.10 on, a (left, right) window where (-1, 0) is causal.
    options |= {"is_causal": True} if "is_causal" in params else {"window_size": (-1, 0)}
    if "scale" in params:
        options["scale"] = scaling
    return varlen_attn(q, k, v, boundaries, boundaries, max_length, max_length, **options)
