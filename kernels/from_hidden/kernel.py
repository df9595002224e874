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
it. When the row blocks are too few to fill the GPU (under 2 programs per SM), programs
split the vocabulary and :mod:`..split_v` merges their partial states. How it is launched
(tiles, warps, stages, splits) is :func:`launch_config`, a plain function of the shape,
dtype, k, alignment and device kind that :func:`compile_sources` (ahead-of-time compiles)
and the tests share. The torch reference is :func:`.reference.fused_token_stats_reference`.
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
    cdiv,
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

@triton.jit
def head_transform(x, scale, cap):
    """Logit scale (1.0 when the head has none), then, when ``cap`` > 0, the softcap
    ``cap·tanh(x / cap)`` (tanh from exp: no libdevice)."""
    x = x * scale
    if cap > 0:
        x = cap * (1.0 - 2.0 / (tl.exp(2.0 * x / cap) + 1.0))
    return x


@triton.jit(do_not_specialize=["K", "has_bias"])
def _fused_token_stats_kernel(
    h_ptr, stride_h, w_ptr, stride_w, b_ptr, targets_ptr, T, V, D, ignore_index, K, has_bias, scale, cap,
    v_per_split, logprob_ptr, lse_ptr, ent_ptr, rank_ptr, keys_ptr, part_f_ptr, part_i_ptr, part_keys_ptr,
    UPCAST: tl.constexpr, PRECISION: tl.constexpr, K_PAD: tl.constexpr, TOPK: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_D: tl.constexpr,
):
    rows, rmask, target, ignored, safe = program_rows(targets_ptr, T, V, ignore_index, BLOCK_T)
    h_rows = h_ptr + rows.to(tl.int64)[:, None] * stride_h

    # The target's logit: hidden · weight[target], row by row.
    t_acc = tl.zeros([BLOCK_T], tl.float32)
    for d0 in range(0, D, BLOCK_D):
        dc = d0 + tl.arange(0, BLOCK_D)
        hm = rmask[:, None] & (dc[None, :] < D)
        h = tl.load(h_rows + dc[None, :], mask=hm, other=0.0).to(tl.float32)
        wt = tl.load(w_ptr + safe.to(tl.int64)[:, None] * stride_w + dc[None, :], mask=hm, other=0.0)
        t_acc += tl.sum(h * wt.to(tl.float32), 1)
    if has_bias != 0:
        t_acc += tl.load(b_ptr + safe, mask=rmask, other=0.0).to(tl.float32)
    t_logit = head_transform(t_acc, scale, cap)

    v_lo = tl.program_id(1) * v_per_split  # this program's columns (all of them when unsplit)
    v_hi = tl.minimum(V, v_lo + v_per_split)
    m, s, w, cnt = init_stats(BLOCK_T)
    top = topk_init(BLOCK_T, K, K_PAD)
    for v0 in range(v_lo, v_hi, BLOCK_V):
        cols = v0 + tl.arange(0, BLOCK_V)
        cmask = cols < v_hi
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
        if has_bias != 0:
            acc += tl.load(b_ptr + cols, mask=cmask, other=0.0).to(tl.float32)[None, :]
        x = tl.where(cmask[None, :], head_transform(acc, scale, cap), float("-inf"))
        m, s, w, cnt, top = fold_tile(x, cols, cmask, m, s, w, cnt, top, t_logit, target, True, TOPK)
    finish(rows, rmask, T, t_logit, m, s, w, cnt, ignored, top, logprob_ptr, lse_ptr, ent_ptr, rank_ptr, keys_ptr,
           part_f_ptr, part_i_ptr, part_keys_ptr, K, K_PAD, TOPK)


def launch_config(t: int, v: int, d: int, dtype, k: int, device: str = "sm_90", sms: int = DEFAULT_SMS,
                  aligned: bool = True) -> LaunchConfig:
    """The launch configuration of :func:`fused_token_stats_triton` for hidden [t, d], an
    unembedding [v, d] of ``dtype`` and top-``k``.

    On a GPU (``device`` "sm_90" for Hopper and newer, "sm_80" for Ampere and Ada), 64 rows
    per program and 8 warps:

    - bf16/fp16, ``aligned`` (hidden size, row strides and vocabulary multiples of 16, as in
      every real model): 64 hidden features per ``tl.dot`` step on tensor cores, 3 stages, and
      tiles of 128 columns; 64 columns when k > 32 on sm_90 and when k > 0 on sm_80, where
      the running top-k needs the registers;
    - bf16/fp16 otherwise (scalar loads): 64 columns × 16 features, 2 stages;
    - float32 (exact float32 products, not TF32): 64 columns × 16 features, 1 stage, and a
      stated register ceiling of 255 (``maxnreg``): without one, ptxas caps a demand just
      above 128 registers at 128 and spills, to fit two blocks per SM.

    These are the largest tiles that compile without register spills for every k
    (``python -m lightlens.kernels.aot --report``). BLOCK_D is at least 16, as ``tl.dot``
    needs: a smaller hidden size is padded by masked loads. The vocabulary is split over
    programs when the row blocks alone give fewer than two programs per SM (``sms`` of them).
    Under the interpreter (``"interpret"``): 16 rows, up to 1,024 columns and 256 features at
    once, unsplit.

    >>> launch_config(8192, 128256, 4096, torch.bfloat16, 20)
    LaunchConfig(block_t=64, block_v=128, block_d=64, num_warps=8, num_stages=3, splits=3, maxnreg=None)
    >>> launch_config(8192, 128256, 4096, torch.bfloat16, 20, "sm_80").block_v
    64
    >>> launch_config(1000, 49152, 576, "fp32", 64).splits
    18
    """
    name = dtype_name(dtype)
    if device == "interpret":
        return LaunchConfig(16, min(next_pow2(v), 1024), min(next_pow2(d), 256), num_warps=1, num_stages=1)
    if name == "fp32":
        return LaunchConfig(64, 64, 16, num_warps=8, num_stages=1, maxnreg=255,
                            splits=choose_splits(cdiv(t, 64), v, 64, sms))
    if not aligned:
        block_v, block_d, stages = 64, 16, 2
    else:
        wide = k <= 32 if device == "sm_90" else k == 0
        block_v, block_d, stages = 128 if wide else 64, 64, 3
    return LaunchConfig(64, block_v, block_d, num_warps=8, num_stages=stages,
                        splits=choose_splits(cdiv(t, 64), v, block_v, sms))


def is_aligned(*tensors: torch.Tensor) -> bool:
    """True when every tensor starts on 16 bytes and its row stride and width are multiples of
    16 elements: what Triton specialises on, and what lets the fused kernel load vectors.

    >>> is_aligned(torch.zeros(4, 64)), is_aligned(torch.zeros(4, 40)), is_aligned(torch.zeros(4, 65)[:, 1:])
    (True, False, False)
    """
    return all(x.data_ptr() % 16 == 0 and x.stride(0) % 16 == 0 and x.shape[-1] % 16 == 0 for x in tensors)


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
    config: LaunchConfig | None = None,
) -> TokenStats:
    """Token statistics of ``head(hidden)`` without materialising the [T, V] logits.

    ``config`` overrides :func:`launch_config` (tests run the GPU configurations under the
    interpreter this way). Targets may be on the CPU (checked there, then uploaded without a
    stall) or on the hidden state's device (see :func:`.._triton_utils.check_targets`).

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
    targets = check_targets(targets, t, v, ignore_index, hidden.device)
    k = check_top_k(top_k, v)
    interp = interpreting()
    config = config or launch_config(t, v, d, weight.dtype, k, device_kind(hidden.device), sm_count(hidden.device),
                                     aligned=is_aligned(hidden, weight))
    if config.block_d < 16 and not interp:
        raise ValueError(f"BLOCK_D must be at least 16 (tl.dot's minimum), got {config.block_d}")
    fp32 = weight.dtype == torch.float32
    scale = 1.0 if logit_scale is None else float(logit_scale)
    cap = 0.0 if softcap is None else float(softcap)
    if softcap is not None and not cap > 0:
        raise ValueError(f"softcap must be positive, got {softcap}")

    def run_main(grid, v_per_split, outputs, partials):
        _fused_token_stats_kernel[grid](
            hidden, hidden.stride(0), weight, weight.stride(0), bias if bias is not None else weight,
            targets, t, v, d, ignore_index, k, int(bias is not None), scale, cap, v_per_split,
            *outputs, *partials, UPCAST=interp or fp32, PRECISION="ieee" if fp32 else "tf32", **topk_constexprs(k),
            BLOCK_T=config.block_t, BLOCK_V=config.block_v, BLOCK_D=config.block_d,
            **config.launch_options(interp),
        )

    return launch(run_main, t=t, v=v, k=k, config=config, targets=targets, ignore_index=ignore_index,
                  device=hidden.device)


def compile_sources(dtype: str, k: int, aligned: bool = True, device: str = "sm_90"):
    """The kernel :func:`fused_token_stats_triton` launches on a GPU for ``dtype`` (bf16, fp16,
    fp32) and top-``k`` (any head: bias, logit scale and softcap are runtime arguments), as a
    Triton source for ahead-of-time compilation (:mod:`lightlens.kernels.aot`), with its launch
    options on ``device`` ("sm_90" or "sm_80").
    ``aligned``: the specialisation of a hidden size and row strides that are multiples of 16
    (every real model's); else none.

    >>> src, options = compile_sources("bf16", 20)
    >>> options, src.signature["w_ptr"]
    ({'num_warps': 8, 'num_stages': 3}, '*bf16')
    """
    config = launch_config(1 << 20, 1 << 17, 4096, dtype, k, device, aligned=aligned)  # any GPU shape: these tiles
    sig = {"h_ptr": f"*{dtype}", "stride_h": "i64", "w_ptr": f"*{dtype}", "stride_w": "i64",
           "b_ptr": f"*{dtype}", "targets_ptr": "*i64", "T": "i32", "V": "i32", "D": "i32",
           "ignore_index": "i32", "K": "i32", "has_bias": "i32", "scale": "fp32", "cap": "fp32",
           "v_per_split": "i32", **OUTPUT_SIGNATURE, **PARTIAL_SIGNATURE}
    const = {"UPCAST": dtype == "fp32", "PRECISION": "ieee" if dtype == "fp32" else "tf32", **topk_constexprs(k),
             "BLOCK_T": config.block_t, "BLOCK_V": config.block_v,
             "BLOCK_D": config.block_d}
    src = ast_source(_fused_token_stats_kernel, sig, const, aligned, ints=["stride_h", "stride_w", "D", "V"],
                     always=["v_per_split"])
    return src, config.launch_options(False)


def shipped_configs():
    """Every (dtype, k, aligned) whose kernel :func:`fused_token_stats_triton` can launch on a
    GPU: one k per compiled top-k variant (:func:`.._triton_utils.topk_constexprs`), with and
    without the alignment specialisation (:func:`launch_config` picks other tiles without it).
    Each kernel serves every head (bias, logit scale and softcap are runtime arguments) and
    split and unsplit launches alike.

    >>> len(shipped_configs()), shipped_configs()[-1]
    (30, ('fp32', 64, False))
    """
    return shipped_variants()
