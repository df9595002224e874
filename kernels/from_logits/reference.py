"""`token_stats_reference`: the statistics of logits [T, V] in pure torch, one cache-sized
float32 tile at a time (:class:`..online.OnlineStats`), so the float32 copy never exceeds
``chunk_bytes`` (extra memory O(chunk + T·k)). The CPU path, and the Triton kernel's twin."""
from __future__ import annotations

import torch

from ..common import CHUNK_BYTES, IGNORE_INDEX, TokenStats
from ..online import fold_tiles


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
    return fold_tiles(t, v, targets, k, ignore_index=ignore_index, chunk_bytes=chunk_bytes, device=logits.device,
                      target_logit=lambda r0, r1, y: logits[r0:r1].gather(1, y[:, None])[:, 0],
                      logits_tile=lambda r0, r1, v0, n, out: out.copy_(logits[r0:r1, v0 : v0 + n]))
