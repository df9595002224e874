"""`fused_token_stats_reference`: the statistics of ``head(hidden)`` in pure torch, the logits
existing one cache-sized tile at a time (rows × a slice of the vocabulary, the slice's matmul
written into a reused buffer, folded in by :class:`..online.OnlineStats`); and `head_logits`,
what an LM head computes. The CPU path, and the Triton kernel's twin."""
from __future__ import annotations

import torch

from ..common import CHUNK_BYTES, IGNORE_INDEX, TokenStats
from ..online import fold_tiles
from ..workspace import workspace


def head_transform(x: torch.Tensor, logit_scale: float | None, softcap: float | None) -> torch.Tensor:
    """Logit scale, then softcap ``softcap·tanh(x / softcap)``, in place on float32 ``x``."""
    if logit_scale is not None:
        x.mul_(logit_scale)
    if softcap is not None:
        x.div_(softcap).tanh_().mul_(softcap)
    return x


def head_logits(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    logit_scale: float | None = None,
    softcap: float | None = None,
    *,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """The logits an LM head computes: ``softcap·tanh((h Wᵀ + b)·scale / softcap)``, float32
    [T, V]; written into ``out`` (a float32 [T, V] buffer the caller reuses) when given.

    >>> head_logits(torch.ones(1, 2), torch.eye(2), softcap=1.0).tolist() == [[0.7615941762924194] * 2]
    True
    """
    if out is None:
        out = torch.empty(hidden.shape[0], weight.shape[0], dtype=torch.float32, device=hidden.device)
    return _head_tile(hidden.to(weight.dtype), weight, bias, out, logit_scale, softcap)


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

    The logits exist only one tile (at most ``chunk_bytes`` of float32) at a time.

    >>> h, w = torch.eye(2), torch.eye(2)
    >>> s = fused_token_stats_reference(h, w, torch.tensor([0, 0]))
    >>> [int(r) for r in s.rank]
    [1, 2]
    """
    hidden = hidden.to(weight.dtype)
    (t, _), v, k = hidden.shape, weight.shape[0], min(top_k, weight.shape[0])

    def target_logit(r0, r1, y):  # a row-wise dot product; its own column is excluded from the rank
        dot = torch.linalg.vecdot(hidden[r0:r1].float(), weight[y].float())
        return head_transform(dot if bias is None else dot + bias[y].float(), logit_scale, softcap)

    def logits_tile(r0, r1, v0, n, out):
        b = None if bias is None else bias[v0 : v0 + n]
        return _head_tile(hidden[r0:r1], weight[v0 : v0 + n], b, out, logit_scale, softcap)

    return fold_tiles(t, v, targets, k, ignore_index=ignore_index, chunk_bytes=chunk_bytes,
                      device=hidden.device, target_logit=target_logit, logits_tile=logits_tile,
                      tiles_exact=weight.dtype == torch.float32)


def _head_tile(h, w, b, out, logit_scale, softcap) -> torch.Tensor:
    """``head(h)`` for the vocabulary slice ``w`` [n, D], written into the float32 tile ``out``."""
    if h.dtype == torch.float32:
        torch.mm(h, w.T, out=out) if b is None else torch.addmm(b.float(), h, w.T, out=out)
    else:  # half precision: the matmul in the weights' dtype, as the model's head does it
        half = workspace("head.half", out.numel(), dtype=h.dtype, device=h.device).view(out.shape)
        out.copy_(torch.mm(h, w.T, out=half) if b is None else torch.addmm(b, h, w.T, out=half))
    return head_transform(out, logit_scale, softcap)
