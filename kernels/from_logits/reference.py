"""`token_stats_reference`: the statistics of logits [T, V] in pure torch, one cache-sized
float32 tile at a time (:class:`..online.OnlineStats`), so the float32 copy never exceeds
``chunk_bytes`` (extra memory O(chunk + T·k)). The CPU path, and the Triton kernel's twin."""
from __future__ import annotations

import torch

from ..common import CHUNK_BYTES, IGNORE_INDEX, TokenStats, cat_stats, split_targets
from ..online import OnlineStats, flat_buffer, tile, tile_shape


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
    (t, v), k = logits.shape, min(top_k, logits.shape[-1])
    rows, cols = tile_shape(t, v, chunk_bytes)
    acc = OnlineStats(rows=rows, width=cols, top_k=k, device=logits.device)
    buffer = flat_buffer(rows, cols, device=logits.device)
    parts = []
    for r0 in range(0, t, rows):
        x = logits[r0 : r0 + rows]
        safe, ignored = split_targets(targets[r0 : r0 + rows], ignore_index)
        acc.begin(x.gather(1, safe[:, None])[:, 0], safe, ignored)
        for v0 in range(0, v, cols):
            n = min(cols, v - v0)
            acc.add(tile(buffer, x.shape[0], n).copy_(x[:, v0 : v0 + n]), v0)
        parts.append(acc.finish())
    return cat_stats(parts, logits.device, k)
