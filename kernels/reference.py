"""Pure-torch token statistics: the CPU path and the oracle for the Triton kernels.

Both functions work through the rows in chunks so that the float32 copy of the logits
never exceeds ``chunk_bytes``: extra memory is O(chunk + T·k), whatever T is.

Shapes and dtypes:
    logits  [T, V]  fp32 / fp16 / bf16, any row stride
    hidden  [T, D]  and  weight [V, D] (the unembedding), bias [V] or None
    targets [T]     int64; ``ignore_index`` marks rows with no target
Returns a :class:`TokenStats` of float32 / int64 tensors on the input's device.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

IGNORE_INDEX = -100
CHUNK_BYTES = 32 * 2**20


class TokenStats(NamedTuple):
    """Per-row statistics of a predictive distribution and the token that followed.

    logprob [T] f32   log softmax(logits)[target]; NaN where target == ignore_index
    logsumexp [T] f32 log sum exp(logits)
    entropy [T] f32   -sum p log p, nats
    rank [T] i64      1 + #{v : logits[v] > logits[target]} (ties share the best rank); 0 if ignored
    top_k_ids [T, k] i64, top_k_logprobs [T, k] f32  (k may be 0)
    """

    logprob: torch.Tensor
    logsumexp: torch.Tensor
    entropy: torch.Tensor
    rank: torch.Tensor
    top_k_ids: torch.Tensor
    top_k_logprobs: torch.Tensor


def row_stats(x: torch.Tensor, targets: torch.Tensor, top_k: int, ignore_index: int) -> TokenStats:
    """Statistics of float32 logits ``x`` [T, V] (no chunking; the building block)."""
    lse = torch.logsumexp(x, dim=-1)
    p = (x - lse[:, None]).exp_()
    # H = lse - sum(p·x); a -inf logit gives 0·(-inf) = NaN there, so such rows are redone
    # with 0·log 0 = 0 spelled out (a row with a NaN logit stays NaN either way).
    entropy = lse - torch.linalg.vecdot(p, x)
    redo = torch.isnan(entropy) & ~torch.isnan(lse)
    if redo.any():
        xr, pr = x[redo], p[redo]
        entropy[redo] = -torch.where(pr == 0, torch.zeros_like(pr), pr * (xr - lse[redo, None])).sum(-1)
    ignored = targets == ignore_index
    safe = torch.where(ignored, torch.zeros_like(targets), targets)
    target_logit = x.gather(1, safe[:, None])
    logprob = (target_logit[:, 0] - lse).masked_fill(ignored, float("nan"))
    rank = ((x > target_logit).sum(-1) + 1).masked_fill(ignored, 0)
    top_vals, top_ids = x.topk(min(top_k, x.shape[-1]), dim=-1)
    return TokenStats(logprob, lse, entropy, rank, top_ids, top_vals - lse[:, None])


def _chunk_rows(v: int, chunk_bytes: int) -> int:
    return max(1, chunk_bytes // (4 * max(v, 1)))


def _cat(parts: list[TokenStats], device, k: int) -> TokenStats:
    if not parts:
        f = torch.empty(0, device=device)
        i = torch.empty(0, dtype=torch.int64, device=device)
        return TokenStats(f, f, f, i, i.reshape(0, k), f.reshape(0, k))
    return TokenStats(*(torch.cat(cols) for cols in zip(*parts)))


def token_stats_reference(
    logits: torch.Tensor,
    targets: torch.Tensor,
    top_k: int = 0,
    *,
    ignore_index: int = IGNORE_INDEX,
    chunk_bytes: int = CHUNK_BYTES,
) -> TokenStats:
    """Token statistics from logits [T, V], in float32, ``chunk_bytes`` of them at a time.

    >>> import torch
    >>> s = token_stats_reference(torch.tensor([[0.0, 0.0]]), torch.tensor([1]))
    >>> round(float(s.logprob[0]), 4), int(s.rank[0])
    (-0.6931, 1)
    """
    rows = _chunk_rows(logits.shape[-1], chunk_bytes)
    parts = [
        row_stats(logits[i : i + rows].float(), targets[i : i + rows], top_k, ignore_index)
        for i in range(0, logits.shape[0], rows)
    ]
    return _cat(parts, logits.device, min(top_k, logits.shape[-1]))


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

    >>> import torch
    >>> h, w = torch.eye(2), torch.eye(2)
    >>> s = fused_token_stats_reference(h, w, torch.tensor([0, 0]))
    >>> [int(r) for r in s.rank]
    [1, 2]
    """
    rows = _chunk_rows(weight.shape[0], chunk_bytes)
    parts = []
    for i in range(0, hidden.shape[0], rows):
        x = head_logits(hidden[i : i + rows], weight, bias, logit_scale, softcap)
        parts.append(row_stats(x, targets[i : i + rows], top_k, ignore_index))
    return _cat(parts, hidden.device, min(top_k, weight.shape[0]))
