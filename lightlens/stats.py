"""Which token-statistics implementation runs: one place that picks it.

Both entry points return :class:`lightlens.kernels.TokenStats` in float32 / int64.
"""
from __future__ import annotations

import torch

from .head import Head
from .kernels import TokenStats, fused_token_stats_reference, token_stats_reference


def stats_from_hidden(head: Head, hidden: torch.Tensor, targets: torch.Tensor, top_k: int) -> TokenStats:
    """Statistics of ``head(hidden)`` [N, D] → [N, V] without materialising all logits."""
    return fused_token_stats_reference(
        hidden, head.weight, targets, top_k,
        bias=head.bias, logit_scale=head.logit_scale, softcap=head.softcap,
    )


def stats_from_logits(logits: torch.Tensor, targets: torch.Tensor, top_k: int) -> TokenStats:
    """Statistics of logits [N, V], read in chunks."""
    return token_stats_reference(logits, targets, top_k)
