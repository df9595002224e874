"""What both ops share, in torch only: the result type, the statistics of one chunk of float32
logits (the references' building block), chunking, and which implementation runs.

Shapes and dtypes:
    logits  [T, V]  fp32 / fp16 / bf16, any row stride
    hidden  [T, D]  and  weight [V, D] (the unembedding), bias [V] or None
    targets [T]     int64; ``ignore_index`` marks rows with no target
Every op returns a :class:`TokenStats` of float32 / int64 tensors on the input's device.
"""
from __future__ import annotations

import importlib.util
import os
from typing import NamedTuple

import torch

IGNORE_INDEX = -100
MAX_TOP_K = 64  # the most alternatives any path keeps per token (the Triton kernels' register budget)
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


def chunk_rows(v: int, chunk_bytes: int) -> int:
    return max(1, chunk_bytes // (4 * max(v, 1)))


def cat_stats(parts: list[TokenStats], device, k: int) -> TokenStats:
    if not parts:
        f = torch.empty(0, device=device)
        i = torch.empty(0, dtype=torch.int64, device=device)
        return TokenStats(f, f, f, i, i.reshape(0, k), f.reshape(0, k))
    return TokenStats(*(torch.cat(cols) for cols in zip(*parts)))


def implementation(device: torch.device) -> str:
    """``"triton"`` or ``"torch"``: which implementation runs for tensors on ``device``
    (``LIGHTLENS_KERNELS=torch|triton`` forces one).

    >>> implementation(torch.device("cpu"))
    'torch'
    """
    forced = os.environ.get("LIGHTLENS_KERNELS", "").strip().lower()
    if forced in ("torch", "triton"):
        return forced
    if forced:
        raise ValueError(f"LIGHTLENS_KERNELS must be 'torch' or 'triton', got {forced!r}")
    cuda = device.type == "cuda"
    return "triton" if cuda and importlib.util.find_spec("triton") is not None else "torch"
