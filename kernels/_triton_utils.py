"""Pieces both Triton kernels share: the online softmax statistics and the running top-k.

Every kernel works on a tile of logits ``x`` [BLOCK_T, BLOCK_V] in float32 (padding and
masked vocabulary are -inf) and keeps, per row:
    m    running max                       s    sum exp(x - m)
    w    sum exp(x - m)·(x - m)            cnt  #{x > target logit}, the target excluded
    nan  1 if a NaN logit was seen         top  the k best (logit, id) packed as int64 keys
so that at the end ``lse = m + log s`` and ``entropy = log s - w / s``.

Top-k keys: the float's bits made order-preserving as an int32, shifted up 32 bits, plus
``2^31 - 1 - id`` so that equal logits prefer the lower id. One int64 comparison orders
(logit, id) pairs; the host decodes and sorts the k survivors (:func:`decode_topk`).
"""
from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from .common import MAX_TOP_K

# the output pointers every kernel takes, as Triton signature types (for ahead-of-time compiles)
OUTPUT_SIGNATURE = {"logprob_ptr": "*fp32", "lse_ptr": "*fp32", "ent_ptr": "*fp32", "rank_ptr": "*i64", "keys_ptr": "*i64"}


def interpreting() -> bool:
    """True when Triton runs kernels in its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def next_pow2(n: int) -> int:
    """Smallest power of two >= n (at least 1)."""
    return 1 << max(0, (int(n) - 1).bit_length())


@triton.jit
def program_rows(targets_ptr, T, ignore_index, BLOCK_T: tl.constexpr):
    """This program's rows, their mask, targets, which are ignored, and a safe target index."""
    rows = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    rmask = rows < T
    target = tl.load(targets_ptr + rows, mask=rmask, other=ignore_index)
    ignored = target == ignore_index
    return rows, rmask, target, ignored, tl.where(ignored, 0, target)


@triton.jit
def init_stats(BLOCK_T: tl.constexpr):
    """Empty running statistics (m, s, w, cnt, nan) for BLOCK_T rows."""
    return (tl.full([BLOCK_T], float("-inf"), tl.float32), tl.zeros([BLOCK_T], tl.float32),
            tl.zeros([BLOCK_T], tl.float32), tl.zeros([BLOCK_T], tl.int32), tl.zeros([BLOCK_T], tl.int32))


@triton.jit
def online_update(x, cols, m, s, w, cnt, nan, t_logit, target):
    """Fold a tile ``x`` [BT, BV] into the running statistics of its rows."""
    m_new = tl.maximum(m, tl.max(x, 1))
    ref = tl.where(m_new == float("-inf"), 0.0, m_new)
    shift = m - ref
    alpha = tl.exp(shift)
    d = x - ref[:, None]
    e = tl.exp(d)
    ed = e * tl.where(e > 0, d, 0.0)  # 0·(-inf) would be NaN
    w = alpha * (w + tl.where(s > 0, shift, 0.0) * s) + tl.sum(ed, 1)
    s = s * alpha + tl.sum(e, 1)
    above = (x > t_logit[:, None]) & (cols[None, :] != target[:, None])
    cnt += tl.sum(above.to(tl.int32), 1)
    nan = tl.maximum(nan, tl.max((x != x).to(tl.int32), 1))
    return m_new, s, w, cnt, nan


@triton.jit
def topk_init(BLOCK_T: tl.constexpr, K: tl.constexpr, K_PAD: tl.constexpr):
    """Running top-k keys [BT, K_PAD]: distinct sentinels below every real key; pad slots at max."""
    slots = tl.arange(0, K_PAD)
    row = tl.where(slots < K, -9223372036854775807 - 1 + slots.to(tl.int64), 9223372036854775807)
    return tl.zeros([BLOCK_T, K_PAD], dtype=tl.int64) + row[None, :]


@triton.jit
def topk_merge(top, x, cols, cmask):
    """Merge the tile ``x`` [BT, BV] (columns ``cols``, valid where ``cmask``) into ``top``."""
    bits = x.to(tl.int32, bitcast=True)
    key32 = tl.where(bits >= 0, bits, bits ^ 0x7FFFFFFF)
    keys = (key32.to(tl.int64) << 32) + (2147483647 - cols).to(tl.int64)[None, :]
    keys = tl.where(cmask[None, :], keys, -9223372036854775807 - 1)
    best = tl.max(keys, 1)
    worst = tl.min(top, 1)
    while tl.max((best > worst).to(tl.int32), 0) > 0:
        take = best > worst
        top = tl.where((top == worst[:, None]) & take[:, None], best[:, None], top)
        keys = tl.where((keys == best[:, None]) & take[:, None], -9223372036854775807 - 1, keys)
        best = tl.max(keys, 1)
        worst = tl.min(top, 1)
    return top


@triton.jit
def finish_and_store(rows, rmask, m, s, w, cnt, nan, t_logit, ignored, top,
                     logprob_ptr, lse_ptr, ent_ptr, rank_ptr, keys_ptr,
                     K: tl.constexpr, K_PAD: tl.constexpr):
    """Final statistics of each row, stored; NaN logits make every float statistic NaN."""
    has_nan = nan > 0
    lse = tl.where(has_nan, float("nan"), m + tl.log(s))
    ent = tl.where(has_nan, float("nan"), tl.log(s) - w / tl.where(s > 0, s, 1.0))
    logprob = tl.where(ignored | has_nan, float("nan"), t_logit - lse)
    rank = tl.where(ignored, 0, cnt + 1)
    tl.store(lse_ptr + rows, lse, mask=rmask)
    tl.store(ent_ptr + rows, ent, mask=rmask)
    tl.store(logprob_ptr + rows, logprob, mask=rmask)
    tl.store(rank_ptr + rows, rank.to(tl.int64), mask=rmask)
    if K > 0:
        slots = tl.arange(0, K_PAD)
        ptrs = keys_ptr + rows.to(tl.int64)[:, None] * K + slots[None, :]
        tl.store(ptrs, top, mask=rmask[:, None] & (slots[None, :] < K))


def decode_topk(keys: torch.Tensor, lse: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Keys [T, k] → (ids [T, k] int64, logprobs [T, k] float32), best first."""
    keys = keys.sort(dim=-1, descending=True).values
    key32 = keys >> 32
    bits = torch.where(key32 >= 0, key32, key32 ^ 0x7FFFFFFF).to(torch.int32)
    values = bits.view(torch.float32)
    ids = 2147483647 - (keys & 0xFFFFFFFF)
    return ids, values - lse[:, None]


def empty_outputs(t: int, k: int, device):
    """Output buffers: logprob, lse, entropy (f32), rank (i64), top-k keys (i64)."""
    f = dict(dtype=torch.float32, device=device)
    return (torch.empty(t, **f), torch.empty(t, **f), torch.empty(t, **f),
            torch.empty(t, dtype=torch.int64, device=device),
            torch.empty((t, k), dtype=torch.int64, device=device))


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
