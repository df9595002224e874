"""`divergence_stats`: two distributions over one vocabulary compared row by row (Triton).

    logits_p, logits_q  [T, V] fp32 / fp16 / bf16, any row stride (columns contiguous); P is the base
    targets             [T] int64, ``ignore_index`` for rows without a target
    → DivergenceStats: lse, KL both ways, JS, entropies, target logprobs and ranks of both,
      top-1 of both (top-k, when asked, by ``torch.topk`` on the rows: one more read)

One program takes BLOCK_T rows of both tensors and walks the vocabulary in BLOCK_V tiles
twice: the first sweep keeps an online max / sum-exp of each row (→ lse), the count of logits
above the target's and the running argmax; the second, with both lse known, sums the KL, JS
and entropy terms in the cancellation-free form of :mod:`.reference` (every KL term ≥ 0 and of
the size of the KL). JS needs both normalisers before its first term, hence two sweeps; the
second reads the same rows again (from L2 on a GPU). Everything is float32; no [T, V] copy is
made. ``expm1`` and ``log1p`` are Kahan's and Goldberg's float32 forms (no libdevice).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..common import IGNORE_INDEX
from .._triton_utils import interpreting, next_pow2
from .reference import DivergenceStats, check_pair

BLOCK_V = 2048  # a GPU tile: two rows of 2,048 float32 over 8 warps
LN2 = 0.6931471805599453


@triton.jit
def _expm1(x):
    """exp(x) − 1 without cancellation (Kahan: (u − 1)·x / log u, u = e^x)."""
    u = tl.exp(x)
    um1 = u - 1.0
    good = (u != 1.0) & (um1 != -1.0) & (u != float("inf"))
    return tl.where(u == 1.0, x, tl.where(good, um1 * x / tl.log(tl.where(good, u, 2.0)), um1))


@triton.jit
def _log1p(x):
    """log(1 + x) without cancellation (Goldberg: log(u)·x / (u − 1), u = 1 + x)."""
    u = 1.0 + x
    good = (u != 1.0) & (u != float("inf"))
    return tl.where(u == 1.0, x, tl.where(good, tl.log(u) * x / tl.where(good, u - 1.0, 1.0), tl.log(u)))


@triton.jit
def _kl_term(p, q, D):
    """p·(D + expm1(−D)) (p·D + q − p where D < −30); q where p == 0 (see :mod:`.reference`)."""
    g = tl.where(D >= -30.0, p * (D + _expm1(-tl.maximum(D, -30.0))), p * D + q - p)
    return tl.where(p > 0, g, q)


@triton.jit
def _js_term(p, u):
    """p·log(2 / (1 + e^u)); 0 where p == 0."""
    f = -_log1p(0.5 * _expm1(tl.minimum(u, 30.0)))
    f = tl.where(u > 30.0, 0.6931471805599453 - u, f)
    return tl.where(p > 0, p * f, 0.0)


@triton.jit
def _load_tiles(rp, rq, rmask, start, V, BLOCK_V: tl.constexpr):
    """Columns ``start .. start + BLOCK_V`` of this program's rows of both tensors, float32
    (-inf beyond V and for rows past T)."""
    cols = start + tl.arange(0, BLOCK_V)
    mask = rmask[:, None] & (cols < V)[None, :]
    xp = tl.load(rp[:, None] + cols[None, :], mask=mask, other=float("-inf")).to(tl.float32)
    xq = tl.load(rq[:, None] + cols[None, :], mask=mask, other=float("-inf")).to(tl.float32)
    return cols, xp, xq


@triton.jit
def _divergence_kernel(
    p_ptr, stride_p, q_ptr, stride_q, targets_ptr, T, V, ignore_index, out_f_ptr, out_i_ptr,
    BLOCK_T: tl.constexpr, BLOCK_V: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    rmask = rows < T
    target = tl.load(targets_ptr + rows, mask=rmask, other=ignore_index)
    ignored = (target == ignore_index) | (target < 0) | (target >= V)
    safe = tl.where(ignored, 0, target)
    rp = p_ptr + rows.to(tl.int64) * stride_p
    rq = q_ptr + rows.to(tl.int64) * stride_q
    tp = tl.load(rp + safe, mask=rmask, other=0.0).to(tl.float32)
    tq = tl.load(rq + safe, mask=rmask, other=0.0).to(tl.float32)

    m_p = tl.full([BLOCK_T], float("-inf"), tl.float32)
    m_q = tl.full([BLOCK_T], float("-inf"), tl.float32)
    s_p = tl.zeros([BLOCK_T], tl.float32)
    s_q = tl.zeros([BLOCK_T], tl.float32)
    cnt_p = tl.zeros([BLOCK_T], tl.int32)
    cnt_q = tl.zeros([BLOCK_T], tl.int32)
    arg_p = tl.zeros([BLOCK_T], tl.int32)
    arg_q = tl.zeros([BLOCK_T], tl.int32)
    nan = tl.zeros([BLOCK_T], tl.int32)
    for start in range(0, V, BLOCK_V):  # sweep 1: lse, ranks, argmax
        cols, xp, xq = _load_tiles(rp, rq, rmask, start, V, BLOCK_V)
        nan = tl.maximum(nan, tl.max(((xp != xp) | (xq != xq)).to(tl.int32), 1))
        cnt_p += tl.sum((xp > tp[:, None]).to(tl.int32), 1)
        cnt_q += tl.sum((xq > tq[:, None]).to(tl.int32), 1)
        tile_p = tl.max(xp, 1)
        tile_q = tl.max(xq, 1)
        at_p = tl.min(tl.where(xp == tile_p[:, None], cols[None, :], 2147483647), 1)
        at_q = tl.min(tl.where(xq == tile_q[:, None], cols[None, :], 2147483647), 1)
        arg_p = tl.where(tile_p > m_p, at_p, arg_p)  # a later tile wins only when strictly larger
        arg_q = tl.where(tile_q > m_q, at_q, arg_q)
        new_p = tl.maximum(m_p, tile_p)
        new_q = tl.maximum(m_q, tile_q)
        ref_p = tl.where(new_p == float("-inf"), 0.0, new_p)
        ref_q = tl.where(new_q == float("-inf"), 0.0, new_q)
        s_p = s_p * tl.exp(m_p - ref_p) + tl.sum(tl.exp(xp - ref_p[:, None]), 1)
        s_q = s_q * tl.exp(m_q - ref_q) + tl.sum(tl.exp(xq - ref_q[:, None]), 1)
        m_p = new_p
        m_q = new_q
    lse_p = m_p + tl.log(s_p)
    lse_q = m_q + tl.log(s_q)
    shift = lse_p - lse_q

    kl = tl.zeros([BLOCK_T], tl.float32)
    rkl = tl.zeros([BLOCK_T], tl.float32)
    js = tl.zeros([BLOCK_T], tl.float32)
    h_p = tl.zeros([BLOCK_T], tl.float32)
    h_q = tl.zeros([BLOCK_T], tl.float32)
    for start in range(0, V, BLOCK_V):  # sweep 2: KL, JS, entropies
        _, xp, xq = _load_tiles(rp, rq, rmask, start, V, BLOCK_V)
        lp = xp - lse_p[:, None]
        lq = xq - lse_q[:, None]
        p = tl.exp(lp)
        q = tl.exp(lq)
        D = (xp - xq) - shift[:, None]
        kl += tl.sum(_kl_term(p, q, D), 1)
        rkl += tl.sum(_kl_term(q, p, -D), 1)
        js += tl.sum(_js_term(p, -D) + _js_term(q, D), 1)
        h_p -= tl.sum(tl.where(p > 0, p * lp, 0.0), 1)
        h_q -= tl.sum(tl.where(q > 0, q * lq, 0.0), 1)

    bad = nan > 0
    lp_t = tl.where(ignored | bad, float("nan"), tp - lse_p)
    lq_t = tl.where(ignored | bad, float("nan"), tq - lse_q)
    n = T.to(tl.int64)
    tl.store(out_f_ptr + 0 * n + rows, tl.where(bad, float("nan"), lse_p), mask=rmask)
    tl.store(out_f_ptr + 1 * n + rows, tl.where(bad, float("nan"), lse_q), mask=rmask)
    tl.store(out_f_ptr + 2 * n + rows, tl.where(bad, float("nan"), kl), mask=rmask)
    tl.store(out_f_ptr + 3 * n + rows, tl.where(bad, float("nan"), rkl), mask=rmask)
    tl.store(out_f_ptr + 4 * n + rows, tl.where(bad, float("nan"), 0.5 * js), mask=rmask)
    tl.store(out_f_ptr + 5 * n + rows, tl.where(bad, float("nan"), h_p), mask=rmask)
    tl.store(out_f_ptr + 6 * n + rows, tl.where(bad, float("nan"), h_q), mask=rmask)
    tl.store(out_f_ptr + 7 * n + rows, lp_t, mask=rmask)
    tl.store(out_f_ptr + 8 * n + rows, lq_t, mask=rmask)
    tl.store(out_i_ptr + 0 * n + rows, tl.where(ignored, 0, cnt_p + 1).to(tl.int64), mask=rmask)
    tl.store(out_i_ptr + 1 * n + rows, tl.where(ignored, 0, cnt_q + 1).to(tl.int64), mask=rmask)
    tl.store(out_i_ptr + 2 * n + rows, tl.where(bad, -1, arg_p).to(tl.int64), mask=rmask)
    tl.store(out_i_ptr + 3 * n + rows, tl.where(bad, -1, arg_q).to(tl.int64), mask=rmask)


def launch_config(v: int, device: str = "cuda") -> tuple[int, int, int]:
    """(BLOCK_T, BLOCK_V, num_warps) for a vocabulary of ``v``: on a GPU one row per program in
    2,048-column tiles over 8 warps; under the interpreter (``"interpret"``), where every loop
    iteration costs milliseconds, 16 rows and tiles as wide as 65,536 columns.

    >>> launch_config(49152), launch_config(100, "interpret")
    ((1, 2048, 8), (16, 128, 1))
    """
    if device == "interpret":
        return 16, min(next_pow2(v), 1 << 16), 1
    return 1, BLOCK_V, 8


def compile_source(dtype: str):
    """The kernel :func:`divergence_stats_triton` launches on a GPU for logits of ``dtype``
    (bf16, fp16, fp32), as a Triton source for ahead-of-time compilation, with its launch options.

    >>> src, options = compile_source("bf16")
    >>> options, src.signature["p_ptr"]
    ({'num_warps': 8, 'num_stages': 2}, '*bf16')
    """
    from triton.compiler import ASTSource

    block_t, block_v, warps = launch_config(1 << 17)
    sig = {"p_ptr": f"*{dtype}", "stride_p": "i64", "q_ptr": f"*{dtype}", "stride_q": "i64",
           "targets_ptr": "*i64", "T": "i32", "V": "i32", "ignore_index": "i32",
           "out_f_ptr": "*fp32", "out_i_ptr": "*i64", "BLOCK_T": "constexpr", "BLOCK_V": "constexpr"}
    const = {"BLOCK_T": block_t, "BLOCK_V": block_v}
    return ASTSource(_divergence_kernel, sig, constexprs=const), {"num_warps": warps, "num_stages": 2}


def divergence_stats_triton(
    logits_p: torch.Tensor,
    logits_q: torch.Tensor,
    targets: torch.Tensor,
    top_k: int = 0,
    *,
    ignore_index: int = IGNORE_INDEX,
    block_v: int | None = None,
) -> DivergenceStats:
    """Compare the rows of ``logits_p`` (base) and ``logits_q`` [T, V] in one launch (Triton;
    CUDA, or CPU when interpreting). ``block_v`` overrides the tile width (tests).

    >>> s = divergence_stats_triton(torch.zeros(2, 8), torch.zeros(2, 8), torch.tensor([1, -100]))
    >>> s.kl.tolist(), s.rank_p.tolist(), s.top1_q.tolist()
    ([0.0, 0.0], [1, 0], [0, 0])
    """
    check_pair(logits_p, logits_q, targets)
    if logits_p.stride(1) != 1:
        logits_p = logits_p.contiguous()
    if logits_q.stride(1) != 1:
        logits_q = logits_q.contiguous()
    t, v = logits_p.shape
    dev = logits_p.device
    targets = targets.to(device=dev, dtype=torch.int64).contiguous()
    block_t, bv, warps = launch_config(v, "interpret" if interpreting() else "cuda")
    bv = block_v or bv
    out_f = torch.empty((9, t), dtype=torch.float32, device=dev)
    out_i = torch.empty((4, t), dtype=torch.int64, device=dev)
    if t:
        options = {} if interpreting() else {"num_warps": warps, "num_stages": 2}
        _divergence_kernel[(triton.cdiv(t, block_t),)](
            logits_p, logits_p.stride(0), logits_q, logits_q.stride(0), targets, t, v, ignore_index,
            out_f, out_i, BLOCK_T=block_t, BLOCK_V=bv, **options)
    k = min(max(0, int(top_k)), v)
    tops = []
    for logits, lse in ((logits_p, out_f[0]), (logits_q, out_f[1])):
        if k:
            vals, ids = logits.topk(k, dim=1)
            tops += [ids, vals.float() - lse[:, None]]
        else:
            tops += [torch.empty((t, 0), dtype=torch.int64, device=dev), torch.empty((t, 0), device=dev)]
    return DivergenceStats(*out_f, *out_i, *tops)
