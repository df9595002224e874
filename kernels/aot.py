"""Compile the Triton kernels for a GPU that is not here: ``python -m lightlens.kernels.aot``.

CI has no GPU; this proves that both kernels, with the launch configurations their launchers
use (each op's ``kernel.compile_sources``), go through Triton's whole pipeline (TTIR → TTGIR →
LLVM → PTX → cubin via ptxas) for Hopper (sm_90) and Ampere (sm_80). It runs without
``TRITON_INTERPRET``.
"""
from __future__ import annotations

import sys

import triton
from triton.backends.compiler import GPUTarget

from .from_hidden import kernel as from_hidden
from .from_logits import kernel as from_logits

DTYPES = ("bf16", "fp16", "fp32")


def compile_all(arch: int = 90) -> list[str]:
    """Compile every configuration for ``sm_<arch>``; returns one line per kernel."""
    target = GPUTarget("cuda", arch, 32)
    lines = []
    for dtype in DTYPES:
        for k in (0, 20):
            kern = triton.compile(from_logits.compile_sources(dtype, k), target=target,
                                  options={"num_warps": 8})
            lines.append(f"sm_{arch} token_stats {dtype} k={k}: cubin {len(kern.asm['cubin'])} B")
    for dtype, k, bias, cap in (("bf16", 20, False, True), ("fp16", 0, True, False), ("fp32", 5, False, False)):
        kern = triton.compile(from_hidden.compile_sources(dtype, k, bias, cap), target=target,
                              options={"num_warps": 8, "num_stages": 3})
        mma = "wgmma" if "wgmma" in kern.asm["ptx"] else ("mma" if "mma" in kern.asm["ptx"] else "no mma")
        lines.append(f"sm_{arch} fused_token_stats {dtype} k={k} bias={bias} softcap={cap}: "
                     f"cubin {len(kern.asm['cubin'])} B, {mma}, shared {kern.metadata.shared} B")
    return lines


if __name__ == "__main__":
    for arch in (int(a) for a in (sys.argv[1:] or ["90", "80"])):
        print("\n".join(compile_all(arch)))
