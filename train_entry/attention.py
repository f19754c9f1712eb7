"""Variable-length attention for packed, padding-free batches without FlashAttention.

A padding-free batch is one row holding several samples (position_ids restart at 0 for each). With the
stock `sdpa` implementation, transformers builds a block-diagonal mask and SDPA still computes attention over
the whole row (row_length² per head). `cloudft_varlen` runs SDPA once per sample with the causal kernel instead:
the same result, at sum(sample_length²) cost, and no mask is materialised. The sample boundaries come from
TRL's collator (`cu_seq_lens_q`) or, failing that, from where `position_ids` restart. Anything that is not a
single packed row (padded batches, generation with a cache) goes to the stock SDPA path unchanged.

Registered under the name `cloudft_varlen` with transformers' AttentionInterface; `train_entry.modeling`
picks it when FlashAttention is not installed.
"""

from __future__ import annotations

from typing import Any, Optional

NAME = "cloudft_varlen"
_registered = False


def _segments(query, key, attention_mask, kwargs: dict[str, Any]) -> Optional[list[tuple[int, int]]]:
    """(start, end) of each sample in a single packed row, or None when this is not one."""
    import torch

    if attention_mask is not None or query.shape[0] != 1 or query.shape[2] != key.shape[2] or query.shape[2] < 2:
        return None
    cu = kwargs.get("cu_seq_lens_q")
    if cu is None:
        pos = kwargs.get("position_ids")
        if pos is None or pos.shape[-1] != query.shape[2]:
            return None
        starts = (pos.reshape(-1) == 0).nonzero().flatten()
        if starts.numel() <= 1:
            return None
        cu = torch.cat([starts, torch.tensor([pos.shape[-1]], device=starts.device)])
    bounds = [int(x) for x in cu.tolist()]
    if len(bounds) <= 2 or bounds[-1] != query.shape[2]:
        return None
    return [(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def varlen_sdpa_attention(module, query, key, value, attention_mask, dropout: float = 0.0,
                          scaling: Optional[float] = None, is_causal: Optional[bool] = None, **kwargs):
    """Per-sample causal SDPA over a packed row; the stock SDPA path for everything else."""
    import torch
    from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward

    bounds = _segments(query, key, attention_mask, kwargs)
    if bounds is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    groups = getattr(module, "num_key_value_groups", 1)
    if groups > 1:
        key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    p = dropout if module.training else 0.0
    outs = [torch.nn.functional.scaled_dot_product_attention(query[:, :, a:b], key[:, :, a:b], value[:, :, a:b],
                                                             is_causal=True, dropout_p=p, scale=scaling)
            for a, b in bounds]
    return torch.cat(outs, dim=2).transpose(1, 2).contiguous(), None


def _varlen_mask(batch_size: int, *args, attention_mask=None, **kwargs):
    """No mask for an unpadded single row (the attention splits it); the stock SDPA mask otherwise.

    The mask interface changed within transformers 5: 5.24 passes (batch_size, q_length, kv_length, ...), 5.3 (the
    SageMaker image's) passes (batch_size, cache_position, kv_length, ...). Both are taken as they come and passed on
    to the same version's `sdpa_mask` unchanged."""
    from transformers.masking_utils import sdpa_mask

    named = dict(zip(("q_length", "kv_length") if "q_length" in _sdpa_parameters() else ("cache_position", "kv_length"),
                     args))
    kwargs.update(named)
    q_length = kwargs["q_length"] if "q_length" in kwargs else kwargs["cache_position"].shape[0]
    if attention_mask is None and batch_size == 1 and q_length == kwargs["kv_length"]:
        return None
    return sdpa_mask(batch_size=batch_size, attention_mask=attention_mask, **kwargs)


def _sdpa_parameters() -> tuple[str, ...]:
    import inspect

    from transformers.masking_utils import sdpa_mask

    return tuple(inspect.signature(sdpa_mask).parameters)


def register() -> str:
    """Register `cloudft_varlen` with transformers (idempotent); returns its name."""
    global _registered
    if not _registered:
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface

        AttentionInterface.register(NAME, varlen_sdpa_attention)
        AttentionMaskInterface.register(NAME, _varlen_mask)
        _registered = True
    return NAME
