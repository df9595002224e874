"""`fused_token_stats_reference`: the statistics of ``head(hidden)`` in pure torch, the logits
existing one chunk of rows at a time; and `head_logits`, what an LM head computes. The CPU path,
and the oracle the Triton kernel is tested against."""
from __future__ import annotations

import torch

from ..common import CHUNK_BYTES, IGNORE_INDEX, TokenStats, cat_stats, chunk_rows, row_stats


def head_logits(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    logit_scale: float | None = None,
    softcap: float | None = None,
) -> torch.Tensor:
    """The logits an LM head computes: ``softcap·tanh((h Wᵀ + b)·scale / softcap)``, float32."""
    x = (hidden @ weight.T if bias is None else torch.addmm(bias, hidden, weight.T)).float()
    if logit_scale is not None:
        x = x * logit_scale
    if softcap is not None:
        x = softcap * torch.tanh(x / softcap)
    return x


def fused_token_stats_reference(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    top_k: int = 0,
    *,
    bias: torch.Tensor | None = None,
    logit_scale: float | None = None,
    softcap: float | None = None,
    ignore_index: int = IGNORE_INDEX,
    chunk_bytes: int = CHUNK_BYTES,
) -> TokenStats:
    """Token statistics from the last hidden state [T, D] and the unembedding [V, D].

    The logits exist only one chunk of rows at a time.

    >>> h, w = torch.eye(2), torch.eye(2)
    >>> s = fused_token_stats_reference(h, w, torch.tensor([0, 0]))
    >>> [int(r) for r in s.rank]
    [1, 2]
    """
    rows = chunk_rows(weight.shape[0], chunk_bytes)
    parts = []
    for i in range(0, hidden.shape[0], rows):
        x = head_logits(hidden[i : i + rows], weight, bias, logit_scale, softcap)
        parts.append(row_stats(x, targets[i : i + rows], top_k, ignore_index))
    return cat_stats(parts, hidden.device, min(top_k, weight.shape[0]))
