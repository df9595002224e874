"""`token_stats`: every token statistic in one read of the logits (Triton).

    logits  [T, V] fp32 / fp16 / bf16, any row stride (columns contiguous)
    targets [T] int64, ``ignore_index`` for rows without a target
    → TokenStats: logprob, logsumexp, entropy [T] f32; rank [T] i64; top-k ids [T, k] i64,
      top-k logprobs [T, k] f32

One program scores BLOCK_T rows, walking the vocabulary in BLOCK_V tiles with an online
max / sum-exp in float32: no [T, V] float32 copy is ever made (extra memory O(T·k)).
Ranks count strictly larger logits (ties share the best rank). The torch reference is
:func:`.reference.token_stats_reference`.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..common import IGNORE_INDEX, TokenStats
from .._triton_utils import (
    decode_topk,
    empty_outputs,
    finish_and_store,
    init_stats,
    check_targets,
    check_top_k,
    interpreting,
    OUTPUT_SIGNATURE,
    next_pow2,
    online_update,
    program_rows,
    topk_init,
    topk_merge,
)

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


def token_stats_triton(
    logits: torch.Tensor,
    targets: torch.Tensor,
    top_k: int = 0,
    *,
    ignore_index: int = IGNORE_INDEX,
) -> TokenStats:
    """Token statistics of logits [T, V] in one pass (Triton; CUDA, or CPU when interpreting).

    >>> logits = torch.randn(4, 100)   # on CUDA, or CPU with TRITON_INTERPRET=1
    >>> s = token_stats_triton(logits, torch.tensor([0, 1, 2, -100]), top_k=5)
    >>> s.logprob.shape, s.top_k_ids.shape, s.rank[3].item()
    (torch.Size([4]), torch.Size([4, 5]), 0)
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


def compile_sources(dtype: str, k: int):
    """The launch configurations :func:`token_stats_triton` uses on a GPU, as Triton sources
    for ahead-of-time compilation (:mod:`lightlens.kernels.aot`); ``dtype``: bf16, fp16, fp32."""
    from triton.compiler import ASTSource

    sig = {"logits_ptr": f"*{dtype}", "stride_row": "i64", "targets_ptr": "*i64", "T": "i32", "V": "i32",
           "ignore_index": "i32", **OUTPUT_SIGNATURE}
    const = {"K": k, "K_PAD": max(1, next_pow2(k)), "BLOCK_T": 1, "BLOCK_V": 4096}
    return ASTSource(_token_stats_kernel, {**sig, **{c: "constexpr" for c in const}}, constexprs=const)
