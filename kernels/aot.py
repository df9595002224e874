"""Compile the Triton kernels for a GPU that is not here: ``python -m lightlens.kernels.aot``.

CI has no GPU; this proves that both kernels, with the launch configurations the launchers
use, go through Triton's whole pipeline (TTIR → TTGIR → LLVM → PTX → cubin via ptxas) for
Hopper (sm_90) and Ampere (sm_80). It runs without ``TRITON_INTERPRET``.
"""
from __future__ import annotations

import sys

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from .triton_fused_token_stats import _fused_token_stats_kernel
from .triton_token_stats import _token_stats_kernel

OUT = {"logprob_ptr": "*fp32", "lse_ptr": "*fp32", "ent_ptr": "*fp32", "rank_ptr": "*i64", "keys_ptr": "*i64"}
DTYPES = {"bf16": "bf16", "fp16": "fp16", "fp32": "fp32"}


def _token_stats_source(dtype: str, k: int) -> ASTSource:
    sig = {"logits_ptr": f"*{dtype}", "stride_row": "i64", "targets_ptr": "*i64", "T": "i32", "V": "i32",
           "ignore_index": "i32", **OUT}
    const = {"K": k, "K_PAD": max(1, 1 << max(0, (k - 1).bit_length())), "BLOCK_T": 1, "BLOCK_V": 4096}
    return ASTSource(_token_stats_kernel, {**sig, **{c: "constexpr" for c in const}}, constexprs=const)


def _fused_source(dtype: str, k: int, bias: bool, cap: bool) -> ASTSource:
    sig = {"h_ptr": f"*{dtype}", "stride_h": "i64", "w_ptr": f"*{dtype}", "stride_w": "i64",
           "b_ptr": f"*{dtype}", "targets_ptr": "*i64", "T": "i32", "V": "i32", "D": "i32",
           "ignore_index": "i32", "scale": "fp32", "cap": "fp32", **OUT}
    const = {"HAS_BIAS": bias, "HAS_SCALE": False, "HAS_CAP": cap, "UPCAST": dtype == "fp32",
             "PRECISION": "ieee" if dtype == "fp32" else "tf32",
             "K": k, "K_PAD": max(1, 1 << max(0, (k - 1).bit_length())),
             "BLOCK_T": 64, "BLOCK_V": 128, "BLOCK_D": 64}
    return ASTSource(_fused_token_stats_kernel, {**sig, **{c: "constexpr" for c in const}}, constexprs=const)


def compile_all(arch: int = 90) -> list[str]:
    """Compile every configuration for ``sm_<arch>``; returns one line per kernel."""
    target = GPUTarget("cuda", arch, 32)
    lines = []
    for dtype in DTYPES:
        for k in (0, 20):
            kern = triton.compile(_token_stats_source(dtype, k), target=target, options={"num_warps": 8})
            lines.append(f"sm_{arch} token_stats {dtype} k={k}: cubin {len(kern.asm['cubin'])} B")
    for dtype, k, bias, cap in (("bf16", 20, False, True), ("fp16", 0, True, False), ("fp32", 5, False, False)):
        kern = triton.compile(_fused_source(dtype, k, bias, cap), target=target,
                              options={"num_warps": 8, "num_stages": 3})
        mma = "wgmma" if "wgmma" in kern.asm["ptx"] else ("mma" if "mma" in kern.asm["ptx"] else "no mma")
        lines.append(f"sm_{arch} fused_token_stats {dtype} k={k} bias={bias} softcap={cap}: "
                     f"cubin {len(kern.asm['cubin'])} B, {mma}, shared {kern.metadata.shared} B")
    return lines


if __name__ == "__main__":
    for arch in (int(a) for a in (sys.argv[1:] or ["90", "80"])):
        print("\n".join(compile_all(arch)))
