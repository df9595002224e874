"""`token_stats`: every token statistic in one read of the logits (Triton).

    logits  [T, V] fp32 / fp16 / bf16, any row stride (columns contiguous)
    targets [T] int64, ``ignore_index`` for rows without a target
    → TokenStats: logprob, logsumexp, entropy [T] f32; rank [T] i64; top-k ids [T, k] i64,
      top-k logprobs [T, k] f32

One program scores BLOCK_T rows, walking the vocabulary in BLOCK_V tiles with an online
max / sum-exp in float32: no [T, V] float32 copy is ever made (extra memory O(T·k)).
Ranks count strictly larger logits (ties share the best rank). The torch reference is
:func:`lightlens.kernels.reference.token_stats_reference`.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .reference import IGNORE_INDEX, TokenStats
from .triton_common import (
    decode_topk,
    empty_outputs,
    finish_and_store,
    init_stats,
    interpreting,
    next_pow2,
    online_update,
    program_rows,
    topk_init,
    topk_merge,
)

MAX_TOP_K = 64


@triton.jit
def _token_stats_kernel(
    logits_ptr, stride_row, targets_ptr, T, V, ignore_index,
    logprob_ptr, lse_ptr, ent_ptr, rank_ptr, keys_ptr,
    K: tl.constexpr, K_PAD: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_V: tl.constexpr,
):
    rows, rmask, target, ignored, safe = program_rows(targets_ptr, T, ignore_index, BLOCK_T)
    row_ptr = logits_ptr + rows.to(tl.int64) * stride_row
    t_logit = tl.load(row_ptr + safe, mask=rmask, other=0.0).to(tl.float32)

    m, s, w, cnt, nan = init_stats(BLOCK_T)
    top = topk_init(BLOCK_T, K, K_PAD)
    for start in range(0, V, BLOCK_V):
        cols = start + tl.arange(0, BLOCK_V)
        cmask = cols < V
        x = tl.load(row_ptr[:, None] + cols[None, :], mask=rmask[:, None] & cmask[None, :],
                    other=float("-inf")).to(tl.float32)
        m, s, w, cnt, nan = online_update(x, cols, m, s, w, cnt, nan, t_logit, target)
        if K > 0:
            top = topk_merge(top, x, cols, cmask)
    finish_and_store(rows, rmask, m, s, w, cnt, nan, t_logit, ignored, top,
                     logprob_ptr, lse_ptr, ent_ptr, rank_ptr, keys_ptr, K, K_PAD)


def check_targets(targets: torch.Tensor, t: int, v: int, ignore_index: int) -> torch.Tensor:
    """Targets as a contiguous int64 [T] vector, each in [0, V) or the ignore index."""
    if targets.shape != (t,):
        raise ValueError(f"targets must have shape ({t},), got {tuple(targets.shape)}")
    targets = targets.to(torch.int64).contiguous()
    bad = (targets != ignore_index) & ((targets < 0) | (targets >= v))
    if bool(bad.any()):
        raise ValueError(f"targets must lie in [0, {v}) or equal ignore_index={ignore_index}")
    return targets


def check_top_k(top_k: int, v: int) -> int:
    """top_k clipped to V, within what the kernels support."""
    if not 0 <= top_k <= MAX_TOP_K:
        raise ValueError(f"top_k must be in [0, {MAX_TOP_K}], got {top_k}")
    return min(top_k, v)


def token_stats(
    logits: torch.Tensor,
    targets: torch.Tensor,
    top_k: int = 0,
    *,
    ignore_index: int = IGNORE_INDEX,
) -> TokenStats:
    """Token statistics of logits [T, V] in one pass (Triton; CUDA, or CPU when interpreting).

    >>> s = token_stats(logits.cuda(), targets.cuda(), top_k=5)   # doctest: +SKIP
    >>> s.logprob.shape, s.top_k_ids.shape                        # doctest: +SKIP
    (torch.Size([T]), torch.Size([T, 5]))
    """
    if logits.dim() != 2:
        raise ValueError(f"logits must be [T, V], got shape {tuple(logits.shape)}")
    if logits.stride(1) != 1:
        logits = logits.contiguous()
    t, v = logits.shape
    targets = check_targets(targets, t, v, ignore_index)
    k = check_top_k(top_k, v)
    logprob, lse, ent, rank, keys = empty_outputs(t, k, logits.device)
    if t == 0:
        return TokenStats(logprob, lse, ent, rank, keys, keys.float())
    block_t = 16 if interpreting() else 1
    block_v = min(next_pow2(v), 1024 if interpreting() else 4096)
    _token_stats_kernel[(triton.cdiv(t, block_t),)](
        logits, logits.stride(0), targets, t, v, ignore_index,
        logprob, lse, ent, rank, keys,
        K=k, K_PAD=max(1, next_pow2(k)), BLOCK_T=block_t, BLOCK_V=block_v,
        **({} if interpreting() else {"num_warps": 8}),
    )
    ids, top_lp = decode_topk(keys, lse)
    return TokenStats(logprob, lse, ent, rank, ids, top_lp)
