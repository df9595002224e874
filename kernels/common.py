"""What both ops share, in torch only: the result type, targets, joining row blocks, and which
implementation runs (the references' tile-by-tile statistics are in :mod:`.online`).

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
CHUNK_BYTES = 8 * 2**20  # one float32 tile of logits on the CPU path: fits the last-level cache


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


def split_targets(targets: torch.Tensor, ignore_index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(targets with ignored rows set to id 0, which rows are ignored)."""
    ignored = targets == ignore_index
    return targets.masked_fill(ignored, 0), ignored


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


TOPK_BLOCK = 64  # columns per block in :func:`top_k_rows`


def top_k_rows(x: torch.Tensor, k: int, *, block: int = TOPK_BLOCK) -> tuple[torch.Tensor, torch.Tensor]:
    """``x.topk(k, 1)`` of float rows [R, V], through block maxima where rows are wide.

    torch's CPU top-k walks each row element by element (~1 ns an entry); a block maximum is a
    vectorised pass. The k best entries of a row lie in the k blocks of ``block`` columns with
    the highest maxima (a best entry in any other block would have k blocks' maxima, k other
    entries, at or above it), so the top-k of those k·block columns, plus the last ``V % block``
    columns, is the row's: the same values, ids alike except among equal values. About 5x
    faster at V = 49,152 and 42 rows. Narrow rows (fewer than 16 blocks) use ``topk`` itself.

    >>> x = torch.arange(10_000.0).flip(0)[None].roll(3, 1)
    >>> [t.tolist() for t in top_k_rows(x, 3)] == [t.tolist() for t in x.topk(3, 1)]
    True
    """
    r, v = x.shape
    blocks = v // block
    if blocks < max(16, k):
        return x.topk(k, 1)
    cut = blocks * block
    best = x[:, :cut].view(r, blocks, block).amax(2).topk(k, 1).indices  # [R, k] block numbers
    cols = (best[:, :, None] * block + torch.arange(block, device=x.device)).view(r, k * block)
    if cut < v:
        cols = torch.cat([cols, torch.arange(cut, v, device=x.device).expand(r, v - cut)], 1)
    vals, j = x.gather(1, cols).topk(k, 1)
    return vals, cols.gather(1, j)
