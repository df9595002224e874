"""`fused_token_stats`: token statistics from the last hidden state, logits never stored (Triton).

    hidden  [T, D]  fp32 / fp16 / bf16 (the final, normed hidden state)
    weight  [V, D]  the unembedding (tied or not), same dtype as hidden
    bias    [V] or None;  logit_scale: float or None;  softcap: float or None
    targets [T] int64, ``ignore_index`` for rows without a target
    → TokenStats as :func:`token_stats` returns

    logits = softcap · tanh((hidden @ weight.T + bias) · logit_scale / softcap)

One program owns BLOCK_T rows and walks the vocabulary in BLOCK_V tiles; each tile of
logits is a ``tl.dot`` over D in BLOCK_D chunks (bf16/fp16 tensor cores; full float32
precision, not TF32, for float32 inputs), accumulated in float32, folded into the
online statistics and dropped. Extra memory is O(T·k). The target's logit is computed
once beforehand as a row-wise dot product; rank counts the other entries strictly above
it. The torch reference is :func:`.reference.fused_token_stats_reference`.
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
def head_transform(x, scale, cap, HAS_SCALE: tl.constexpr, HAS_CAP: tl.constexpr):
    """Logit scale, then softcap ``cap·tanh(x / cap)`` (tanh from exp: no libdevice)."""
    if HAS_SCALE:
        x = x * scale
    if HAS_CAP:
        x = cap * (1.0 - 2.0 / (tl.exp(2.0 * x / cap) + 1.0))
    return x


@triton.jit
def _fused_token_stats_kernel(
    h_ptr, stride_h, w_ptr, stride_w, b_ptr, targets_ptr, T, V, D, ignore_index, scale, cap,
    logprob_ptr, lse_ptr, ent_ptr, rank_ptr, keys_ptr,
    HAS_BIAS: tl.constexpr, HAS_SCALE: tl.constexpr, HAS_CAP: tl.constexpr, UPCAST: tl.constexpr,
    PRECISION: tl.constexpr, K: tl.constexpr, K_PAD: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_D: tl.constexpr,
):
    rows, rmask, target, ignored, safe = program_rows(targets_ptr, T, ignore_index, BLOCK_T)
    h_rows = h_ptr + rows.to(tl.int64)[:, None] * stride_h

    # The target's logit: hidden · weight[target], row by row.
    t_acc = tl.zeros([BLOCK_T], tl.float32)
    for d0 in range(0, D, BLOCK_D):
        dc = d0 + tl.arange(0, BLOCK_D)
        hm = rmask[:, None] & (dc[None, :] < D)
        h = tl.load(h_rows + dc[None, :], mask=hm, other=0.0).to(tl.float32)
        wt = tl.load(w_ptr + safe.to(tl.int64)[:, None] * stride_w + dc[None, :], mask=hm, other=0.0)
        t_acc += tl.sum(h * wt.to(tl.float32), 1)
    if HAS_BIAS:
        t_acc += tl.load(b_ptr + safe, mask=rmask, other=0.0).to(tl.float32)
    t_logit = head_transform(t_acc, scale, cap, HAS_SCALE, HAS_CAP)

    m, s, w, cnt, nan = init_stats(BLOCK_T)
    top = topk_init(BLOCK_T, K, K_PAD)
    for v0 in range(0, V, BLOCK_V):
        cols = v0 + tl.arange(0, BLOCK_V)
        cmask = cols < V
        acc = tl.zeros([BLOCK_T, BLOCK_V], tl.float32)
        for d0 in range(0, D, BLOCK_D):
            dc = d0 + tl.arange(0, BLOCK_D)
            dmask = dc < D
            h = tl.load(h_rows + dc[None, :], mask=rmask[:, None] & dmask[None, :], other=0.0)
            wv = tl.load(w_ptr + cols.to(tl.int64)[:, None] * stride_w + dc[None, :],
                         mask=cmask[:, None] & dmask[None, :], other=0.0)
            if UPCAST:
                h = h.to(tl.float32)
                wv = wv.to(tl.float32)
            acc = tl.dot(h, tl.trans(wv), acc, input_precision=PRECISION)
        if HAS_BIAS:
            acc += tl.load(b_ptr + cols, mask=cmask, other=0.0).to(tl.float32)[None, :]
        x = tl.where(cmask[None, :], head_transform(acc, scale, cap, HAS_SCALE, HAS_CAP), float("-inf"))
        m, s, w, cnt, nan = online_update(x, cols, m, s, w, cnt, nan, t_logit, target)
        if K > 0:
            top = topk_merge(top, x, cols, cmask)
    finish_and_store(rows, rmask, m, s, w, cnt, nan, t_logit, ignored, top,
                     logprob_ptr, lse_ptr, ent_ptr, rank_ptr, keys_ptr, K, K_PAD)


def fused_token_stats_triton(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    top_k: int = 0,
    *,
    bias: torch.Tensor | None = None,
    logit_scale: float | None = None,
    softcap: float | None = None,
    ignore_index: int = IGNORE_INDEX,
) -> TokenStats:
    """Token statistics of ``head(hidden)`` without materialising the [T, V] logits.

    >>> h, w = torch.randn(3, 8), torch.randn(50, 8)   # on CUDA, or CPU with TRITON_INTERPRET=1
    >>> s = fused_token_stats_triton(h, w, torch.tensor([1, 2, 3]), top_k=5)
    >>> s.entropy.shape, s.top_k_ids.shape
    (torch.Size([3]), torch.Size([3, 5]))
    """
    if hidden.dim() != 2 or weight.dim() != 2 or hidden.shape[1] != weight.shape[1]:
        raise ValueError(f"need hidden [T, D] and weight [V, D], got {tuple(hidden.shape)} and {tuple(weight.shape)}")
    if hidden.dtype != weight.dtype:
        hidden = hidden.to(weight.dtype)
    hidden = hidden if hidden.stride(1) == 1 else hidden.contiguous()
    weight = weight if weight.stride(1) == 1 else weight.contiguous()
    (t, d), v = hidden.shape, weight.shape[0]
    targets = check_targets(targets, t, v, ignore_index)
    k = check_top_k(top_k, v)
    logprob, lse, ent, rank, keys = empty_outputs(t, k, hidden.device)
    if t == 0:
        return TokenStats(logprob, lse, ent, rank, keys, keys.float())
    interp = interpreting()
    block_t, block_v = (16, min(next_pow2(v), 1024)) if interp else (64, 128)
    block_d = min(next_pow2(d), 256 if interp else 64)
    _fused_token_stats_kernel[(triton.cdiv(t, block_t),)](
        hidden, hidden.stride(0), weight, weight.stride(0), bias if bias is not None else weight,
        targets, t, v, d, ignore_index, float(logit_scale or 1.0), float(softcap or 1.0),
        logprob, lse, ent, rank, keys,
        HAS_BIAS=bias is not None, HAS_SCALE=logit_scale is not None, HAS_CAP=softcap is not None,
        UPCAST=interp or hidden.dtype == torch.float32,
        PRECISION="ieee" if hidden.dtype == torch.float32 else "tf32", K=k, K_PAD=max(1, next_pow2(k)),
        BLOCK_T=block_t, BLOCK_V=block_v, BLOCK_D=block_d,
        **({} if interp else {"num_warps": 8, "num_stages": 3}),
    )
    ids, top_lp = decode_topk(keys, lse)
    return TokenStats(logprob, lse, ent, rank, ids, top_lp)


def compile_sources(dtype: str, k: int, bias: bool, cap: bool):
    """The launch configuration :func:`fused_token_stats_triton` uses on a GPU, as a Triton
    source for ahead-of-time compilation (:mod:`lightlens.kernels.aot`)."""
    from triton.compiler import ASTSource

    sig = {"h_ptr": f"*{dtype}", "stride_h": "i64", "w_ptr": f"*{dtype}", "stride_w": "i64",
           "b_ptr": f"*{dtype}", "targets_ptr": "*i64", "T": "i32", "V": "i32", "D": "i32",
           "ignore_index": "i32", "scale": "fp32", "cap": "fp32", **OUTPUT_SIGNATURE}
    const = {"HAS_BIAS": bias, "HAS_SCALE": False, "HAS_CAP": cap, "UPCAST": dtype == "fp32",
             "PRECISION": "ieee" if dtype == "fp32" else "tf32",
             "K": k, "K_PAD": max(1, next_pow2(k)), "BLOCK_T": 64, "BLOCK_V": 128, "BLOCK_D": 64}
    return ASTSource(_fused_token_stats_kernel, {**sig, **{c: "constexpr" for c in const}}, constexprs=const)
