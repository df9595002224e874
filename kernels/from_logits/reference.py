"""`token_stats_reference`: the statistics of logits [T, V] in pure torch, a chunk of rows at a
time, so the float32 copy never exceeds ``chunk_bytes`` (extra memory O(chunk + T·k)). The CPU
path, and the oracle the Triton kernel is tested against."""
from __future__ import annotations

import torch

from ..common import CHUNK_BYTES, IGNORE_INDEX, TokenStats, cat_stats, chunk_rows, row_stats


def token_stats_reference(
    logits: torch.Tensor,
    targets: torch.Tensor,
    top_k: int = 0,
    *,
    ignore_index: int = IGNORE_INDEX,
    chunk_bytes: int = CHUNK_BYTES,
) -> TokenStats:
    """Token statistics from logits [T, V], in float32, ``chunk_bytes`` of them at a time.

    >>> s = token_stats_reference(torch.tensor([[0.0, 0.0]]), torch.tensor([1]))
    >>> round(float(s.logprob[0]), 4), int(s.rank[0])
    (-0.6931, 1)
    """
    rows = chunk_rows(logits.shape[-1], chunk_bytes)
    parts = [
        row_stats(logits[i : i + rows].float(), targets[i : i + rows], top_k, ignore_index)
        for i in range(0, logits.shape[0], rows)
    ]
    return cat_stats(parts, logits.device, min(top_k, logits.shape[-1]))
