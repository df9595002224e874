"""Split-V: when a kernel's row blocks are too few to fill the GPU, S programs share each row
block's vocabulary and a second small kernel merges what they found (Triton).

Each main kernel runs on a grid (row blocks, S); program (r, j) walks the columns
[j·v_per_split, min(V, (j+1)·v_per_split)) (``v_per_split`` a multiple of BLOCK_V; a range
may be empty) and, when S > 1, stores its partial state instead of the statistics:

    part_f    [3, S, T] f32   m (max), s (sum exp(x - m)), w (sum exp(x - m)·(x - m))
    part_i    [S, T] i32      cnt (#{x > target logit}, target excluded)
    part_keys [S, T, k] i64   the split's top-k keys (sentinels below every real key where the
                              range has fewer than k entries)
    t_logit   [T] f32         the target's logit, stored by split 0 into the logprob output

``_merge_splits_kernel`` folds the S parts of BLOCK_T rows together (:func:`merge_stats`,
counts added, keys inserted into one top-k; a NaN in any part makes the merged s NaN) and stores the same outputs as
an unsplit kernel: logprob, logsumexp, entropy [T] f32, rank [T] i64, top-k keys [T, k] i64.
Ranks and ids are exactly the unsplit ones; the float sums differ only by rounding order.
"""
from __future__ import annotations

from typing import Callable

import torch
import triton
import triton.language as tl

from .common import TokenStats
from ._triton_utils import (
    LaunchConfig,
    ast_source,
    OUTPUT_SIGNATURE,
    PARTIAL_SIGNATURE,
    cdiv,
    decode_topk,
    empty_outputs,
    finish_and_store,
    init_stats,
    interpreting,
    merge_stats,
    program_rows,
    topk_init,
    topk_constexprs,
    topk_insert,
)


@triton.jit
def store_partials(rows, rmask, T, t_logit, m, s, w, cnt, top,
                   logprob_ptr, part_f_ptr, part_i_ptr, part_keys_ptr,
                   K, K_PAD: tl.constexpr, TOPK: tl.constexpr):
    """Store this program's partial state (split ``program_id(1)`` of its rows)."""
    j = tl.program_id(1)
    n = tl.num_programs(1).to(tl.int64) * T
    at = j.to(tl.int64) * T + rows
    tl.store(part_f_ptr + at, m, mask=rmask)
    tl.store(part_f_ptr + n + at, s, mask=rmask)
    tl.store(part_f_ptr + 2 * n + at, w, mask=rmask)
    tl.store(part_i_ptr + at, cnt, mask=rmask)
    if j == 0:
        tl.store(logprob_ptr + rows, t_logit, mask=rmask)
    if TOPK:
        slots = tl.arange(0, K_PAD)
        tl.store(part_keys_ptr + at[:, None] * K + slots[None, :], top, mask=rmask[:, None] & (slots[None, :] < K))


@triton.jit
def finish(rows, rmask, T, t_logit, m, s, w, cnt, ignored, top,
           logprob_ptr, lse_ptr, ent_ptr, rank_ptr, keys_ptr, part_f_ptr, part_i_ptr, part_keys_ptr,
           K, K_PAD: tl.constexpr, TOPK: tl.constexpr):
    """A main kernel's end: its rows' statistics, or, when the grid splits the vocabulary, its
    partial state for the merge kernel."""
    if tl.num_programs(1) > 1:
        store_partials(rows, rmask, T, t_logit, m, s, w, cnt, top,
                       logprob_ptr, part_f_ptr, part_i_ptr, part_keys_ptr, K, K_PAD, TOPK)
    else:
        finish_and_store(rows, rmask, m, s, w, cnt, t_logit, ignored, top,
                         logprob_ptr, lse_ptr, ent_ptr, rank_ptr, keys_ptr, K, K_PAD, TOPK)


@triton.jit(do_not_specialize=["K"])
def _merge_splits_kernel(
    part_f_ptr, part_i_ptr, part_keys_ptr, targets_ptr, S, T, V, ignore_index, K,
    logprob_ptr, lse_ptr, ent_ptr, rank_ptr, keys_ptr,
    K_PAD: tl.constexpr, TOPK: tl.constexpr, BLOCK_T: tl.constexpr,
):
    rows, rmask, target, ignored, safe = program_rows(targets_ptr, T, V, ignore_index, BLOCK_T)
    t_logit = tl.load(logprob_ptr + rows, mask=rmask, other=0.0)
    n = S.to(tl.int64) * T
    m, s, w, cnt = init_stats(BLOCK_T)
    top = topk_init(BLOCK_T, K, K_PAD)
    slots = tl.arange(0, K_PAD)
    at = rows.to(tl.int64)  # row's entry in split j: j·T + row
    for j in range(0, S):
        m2 = tl.load(part_f_ptr + at, mask=rmask, other=float("-inf"))
        s2 = tl.load(part_f_ptr + n + at, mask=rmask, other=0.0)
        w2 = tl.load(part_f_ptr + 2 * n + at, mask=rmask, other=0.0)
        m, s, w = merge_stats(m, s, w, m2, s2, w2)
        cnt += tl.load(part_i_ptr + at, mask=rmask, other=0)
        if TOPK:
            keys = tl.load(part_keys_ptr + at[:, None] * K + slots[None, :],
                           mask=rmask[:, None] & (slots[None, :] < K), other=-9223372036854775807 - 1)
            # a split's sentinels (-2^63 + slot, slot < 64) are no candidates
            keys = tl.where(keys >= -9223372036854775744, keys, -9223372036854775807 - 1)
            top = topk_insert(top, keys)
        at += T
    finish_and_store(rows, rmask, m, s, w, cnt, t_logit, ignored, top,
                     logprob_ptr, lse_ptr, ent_ptr, rank_ptr, keys_ptr, K, K_PAD, TOPK)


def merge_config(k: int) -> LaunchConfig:
    """The merge kernel's launch configuration (the same on a GPU and in the interpreter).

    >>> merge_config(20)
    LaunchConfig(block_t=32, block_v=0, block_d=0, num_warps=4, num_stages=1, splits=1, maxnreg=None)
    """
    return LaunchConfig(block_t=32, block_v=0, num_warps=4, num_stages=1)


def launch(run_main: Callable, *, t: int, v: int, k: int, config: LaunchConfig, targets: torch.Tensor,
           ignore_index: int, device) -> TokenStats:
    """Run a main kernel on the grid (row blocks, ``config.splits``), then the merge when split.

    ``run_main(grid, v_per_split, outputs, partials)`` launches the op's own kernel (which
    stores partials when its grid has more than one split); ``outputs`` are (logprob, lse,
    entropy, rank, keys), ``partials`` (part_f, part_i, part_keys) or, unsplit, placeholders
    of the right dtypes.

    >>> calls = []
    >>> s = launch(lambda *a: calls.append(a[:2]), t=0, v=10, k=2, config=LaunchConfig(1, 4),
    ...            targets=torch.zeros(0, dtype=torch.long), ignore_index=-100, device="cpu")
    >>> calls, s.top_k_ids.shape   # nothing to launch for no rows
    ([], torch.Size([0, 2]))
    """
    outputs = empty_outputs(t, k, device)
    logprob, lse, ent, rank, keys = outputs
    if t == 0:
        return TokenStats(logprob, lse, ent, rank, keys, keys.float())
    splits = max(1, config.splits)
    v_per_split = cdiv(cdiv(v, config.block_v), splits) * config.block_v
    split = splits > 1
    if split:
        partials = (torch.empty((3, splits, t), dtype=torch.float32, device=device),
                    torch.empty((splits, t), dtype=torch.int32, device=device),
                    torch.empty((splits, t, k), dtype=torch.int64, device=device))
    else:  # never touched: views of the outputs with the dtypes the kernel's signature has
        partials = (lse, lse.view(torch.int32), keys)
    run_main((cdiv(t, config.block_t), splits), v_per_split, outputs, partials)
    if split:
        mc = merge_config(k)
        _merge_splits_kernel[(cdiv(t, mc.block_t),)](
            *partials, targets, splits, t, v, ignore_index, k, *outputs,
            **topk_constexprs(k), BLOCK_T=mc.block_t, **mc.launch_options(interpreting()),
        )
    ids, top_lp = decode_topk(keys, lse)
    return TokenStats(logprob, lse, ent, rank, ids, top_lp)


def compile_sources(k: int):
    """The merge kernel as a Triton source for ahead-of-time compilation, with the
    specialisation a GPU launch gets (16-byte aligned pointers).

    >>> compile_sources(5).constants[(list(compile_sources(5).fn.arg_names).index("K_PAD"),)]
    8
    """
    sig = {**PARTIAL_SIGNATURE, "targets_ptr": "*i64", "S": "i32", "T": "i32", "V": "i32", "ignore_index": "i32",
           "K": "i32", **OUTPUT_SIGNATURE}
    const = {**topk_constexprs(k), "BLOCK_T": merge_config(k).block_t}
    return ast_source(_merge_splits_kernel, sig, const)

