"""`token_stats`: every token statistic in one read of the logits (Triton).

    logits  [T, V] fp32 / fp16 / bf16, any row stride (columns contiguous)
    targets [T] int64, ``ignore_index`` for rows without a target
    → TokenStats: logprob, logsumexp, entropy [T] f32; rank [T] i64; top-k ids [T, k] i64,
      top-k logprobs [T, k] f32

One program scores BLOCK_T rows, walking the vocabulary in BLOCK_V tiles with an online
max / sum-exp in float32: no [T, V] float32 copy is ever made (extra memory O(T·k)).
Ranks count strictly larger logits (ties share the best rank). When the rows are too few to
fill the GPU, programs split the vocabulary and :mod:`..split_v` merges their partial
states. How it is launched (tiles, warps, splits) is :func:`launch_config`, a plain function
of the shape, dtype, k and device kind that :func:`compile_sources` (ahead-of-time compiles)
and the tests share. The torch reference is :func:`.reference.token_stats_reference`.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..common import IGNORE_INDEX, TokenStats
from .._triton_utils import (
    DEFAULT_SMS,
    LaunchConfig,
    OUTPUT_SIGNATURE,
    PARTIAL_SIGNATURE,
    ast_source,
    check_targets,
    check_top_k,
    choose_splits,
    device_kind,
    dtype_name,
    fold_tile,
    init_stats,
    interpreting,
    next_pow2,
    program_rows,
    shipped_variants,
    sm_count,
    topk_constexprs,
    topk_init,
)
from ..split_v import finish, launch

BLOCK_V = 8192  # one row's tile on a GPU: 16 warps, 16 logits a thread


@triton.jit(do_not_specialize=["K"])
def _token_stats_kernel(
    logits_ptr, stride_row, targets_ptr, T, V, ignore_index, K, v_per_split,
    logprob_ptr, lse_ptr, ent_ptr, rank_ptr, keys_ptr, part_f_ptr, part_i_ptr, part_keys_ptr,
    K_PAD: tl.constexpr, TOPK: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_V: tl.constexpr,
):
    rows, rmask, target, ignored, safe = program_rows(targets_ptr, T, V, ignore_index, BLOCK_T)
    row_ptr = logits_ptr + rows.to(tl.int64) * stride_row
    t_logit = tl.load(row_ptr + safe, mask=rmask, other=0.0).to(tl.float32)
    v_lo = tl.program_id(1) * v_per_split  # this program's columns (all of them when unsplit)
    v_hi = tl.minimum(V, v_lo + v_per_split)

    m, s, w, cnt = init_stats(BLOCK_T)
    top = topk_init(BLOCK_T, K, K_PAD)
    # Each tile is requested one iteration ahead (a hand-written two-stage pipeline), so that
    # two tiles per thread are in flight while one is folded in: twice the bytes in flight of
    # a plain loop, at the cost of one tile of raw logits in registers.
    cols = v_lo + tl.arange(0, BLOCK_V)
    ahead = tl.load(row_ptr[:, None] + cols[None, :], mask=rmask[:, None] & (cols < v_hi)[None, :],
                    other=float("-inf"))
    for start in range(v_lo, v_hi, BLOCK_V):
        cols = start + tl.arange(0, BLOCK_V)
        cmask = cols < v_hi
        x = ahead.to(tl.float32)
        nxt = cols + BLOCK_V
        ahead = tl.load(row_ptr[:, None] + nxt[None, :], mask=rmask[:, None] & (nxt < v_hi)[None, :],
                        other=float("-inf"))
        m, s, w, cnt, top = fold_tile(x, cols, cmask, m, s, w, cnt, top, t_logit, target, False, TOPK)
    finish(rows, rmask, T, t_logit, m, s, w, cnt, ignored, top, logprob_ptr, lse_ptr, ent_ptr, rank_ptr, keys_ptr,
           part_f_ptr, part_i_ptr, part_keys_ptr, K, K_PAD, TOPK)


def launch_config(t: int, v: int, dtype, k: int, device: str = "sm_90", sms: int = DEFAULT_SMS) -> LaunchConfig:
    """The launch configuration of :func:`token_stats_triton` for logits [t, v] of ``dtype``
    and top-``k``: on a GPU (``device`` "sm_90" or "sm_80", the same) one row per program in
    8,192-column tiles over 16 warps (16 logits a thread: at most ~115 registers, no spills,
    16 to 32 warps resident per SM for every dtype and k; the tile is wide because every tile
    costs each thread five block-wide reductions, so wider tiles spend fewer instructions per
    logit), the vocabulary split when the rows alone give fewer than two programs per SM
    (``sms`` of them); under the interpreter (``"interpret"``) 16 rows per program in tiles of
    up to 1,024 columns, which is faster there.

    >>> launch_config(8192, 128256, torch.bfloat16, 20)
    LaunchConfig(block_t=1, block_v=8192, block_d=0, num_warps=16, num_stages=3, splits=1, maxnreg=None)
    >>> launch_config(64, 128256, "fp32", 5).splits   # 64 rows: 6 splits of 3 tiles
    6
    """
    dtype_name(dtype)
    if device == "interpret":
        return LaunchConfig(block_t=16, block_v=min(next_pow2(v), 1024), num_warps=1, num_stages=1)
    return LaunchConfig(block_t=1, block_v=BLOCK_V, num_warps=16, num_stages=3,
                        splits=choose_splits(t, v, BLOCK_V, sms))


def token_stats_triton(
    logits: torch.Tensor,
    targets: torch.Tensor,
    top_k: int = 0,
    *,
    ignore_index: int = IGNORE_INDEX,
    config: LaunchConfig | None = None,
) -> TokenStats:
    """Token statistics of logits [T, V] in one pass (Triton; CUDA, or CPU when interpreting).

    ``config`` overrides :func:`launch_config` (tests run the GPU configurations under the
    interpreter this way). Targets may be on the CPU (checked there, then uploaded without a
    stall) or on the logits' device (see :func:`.._triton_utils.check_targets`).

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
    targets = check_targets(targets, t, v, ignore_index, logits.device)
    k = check_top_k(top_k, v)
    config = config or launch_config(t, v, logits.dtype, k, device_kind(logits.device), sm_count(logits.device))

    def run_main(grid, v_per_split, outputs, partials):
        _token_stats_kernel[grid](
            logits, logits.stride(0), targets, t, v, ignore_index, k, v_per_split, *outputs, *partials,
            **topk_constexprs(k), BLOCK_T=config.block_t, BLOCK_V=config.block_v,
            **config.launch_options(interpreting()),
        )

    return launch(run_main, t=t, v=v, k=k, config=config, targets=targets,
                  ignore_index=ignore_index, device=logits.device)


def compile_sources(dtype: str, k: int, aligned: bool = True, device: str = "sm_90"):
    """The kernel :func:`token_stats_triton` launches on a GPU for ``dtype`` (bf16, fp16, fp32)
    and top-``k``, as a Triton source for ahead-of-time compilation (:mod:`lightlens.kernels.aot`),
    with the launch options it gets on ``device`` ("sm_90" or "sm_80"). ``aligned``: the
    specialisation of a vocabulary and row stride that are multiples of 16 (every real
    model's); else none.

    >>> src, options = compile_sources("bf16", 20)
    >>> options, src.signature["logits_ptr"]
    ({'num_warps': 16, 'num_stages': 3}, '*bf16')
    """
    config = launch_config(1 << 20, 1 << 17, dtype, k, device)  # every GPU shape gets these tiles
    sig = {"logits_ptr": f"*{dtype}", "stride_row": "i64", "targets_ptr": "*i64", "T": "i32", "V": "i32",
           "ignore_index": "i32", "K": "i32", "v_per_split": "i32", **OUTPUT_SIGNATURE, **PARTIAL_SIGNATURE}
    const = {**topk_constexprs(k), "BLOCK_T": config.block_t, "BLOCK_V": config.block_v}
    src = ast_source(_token_stats_kernel, sig, const, aligned, ints=["stride_row", "V"], always=["v_per_split"])
    return src, config.launch_options(False)


def shipped_configs():
    """Every (dtype, k, aligned) whose kernel :func:`token_stats_triton` can launch on a GPU:
    one k per compiled top-k variant (:func:`.._triton_utils.topk_constexprs`), with and
    without the specialisation of a vocabulary and row stride that are multiples of 16. Each
    kernel serves split and unsplit launches alike.

    >>> len(shipped_configs()), shipped_configs()[0]
    (30, ('bf16', 0, True))
    """
    return shipped_variants()
