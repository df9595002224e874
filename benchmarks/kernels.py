"""Kernel benchmark: ``python -m benchmarks kernels``.

For each shape (bf16 on GPU, float32 on CPU) it times and measures the peak extra memory of
  naive      float32 log_softmax + gather + entropy + rank + topk (what servers do, plus more)
  liger      Liger-Kernel cross entropy, reduction="none" (loss only), if installed
  cce        Cut Cross-Entropy linear_cross_entropy, reduction="none" (loss only), if installed
  ours       token_stats (from logits) and fused_token_stats (from hidden, no logits)
and, on GPU, the measured device-copy bandwidth and bf16 matmul rate of the same run, with
ours as a fraction of them. On CPU only the torch paths run (small shapes), so the command
always works.
"""
from __future__ import annotations

import importlib.util
import statistics
import time
from typing import Callable

import torch

from .memory import PeakRSS

GPU_SHAPES = [(t, v, d) for t in (1024, 8192, 32768, 131072) for v in (32768, 131072, 152064, 262144)
              for d in (2048, 4096)]
CPU_SHAPES = [(256, 32768, 256), (1024, 32768, 512)]


def timed(fn: Callable, device: torch.device, reps: int = 5) -> tuple[float, float]:
    """(median seconds, peak extra MiB) of ``fn()``; ``inf`` when it runs out of memory."""
    cuda = device.type == "cuda"
    try:
        fn()  # warm-up (compiles kernels)
        times = []
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        with PeakRSS() as rss:
            for _ in range(reps):
                t0 = time.perf_counter()
                fn()
                if cuda:
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - t0)
        extra = (torch.cuda.max_memory_allocated() - base) if cuda else (rss.peak - rss.base)
        return statistics.median(times), extra / 2**20
    except torch.OutOfMemoryError:
        if cuda:
            torch.cuda.empty_cache()
        return float("inf"), float("inf")


def naive_stats(logits: torch.Tensor, targets: torch.Tensor, k: int):
    """What a hand-written scorer does: float32 log-softmax of everything, then gather."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    lp = logp.gather(1, targets[:, None])
    ent = -(logp.exp() * logp).sum(-1)
    rank = (logp > lp).sum(-1) + 1
    top = logp.topk(k, dim=-1)
    return lp, ent, rank, top


def copy_bandwidth(device: torch.device) -> float:
    """Bytes per second of a device-to-device copy (read + write), 1 GiB."""
    x = torch.empty(2**29, dtype=torch.bfloat16, device=device)
    y = torch.empty_like(x)
    sec, _ = timed(lambda: y.copy_(x), device)
    return 2 * x.numel() * x.element_size() / sec


def matmul_rate(device: torch.device) -> float:
    """bf16 FLOP/s of an 8192³ matmul."""
    a = torch.randn(8192, 8192, dtype=torch.bfloat16, device=device)
    sec, _ = timed(lambda: a @ a, device)
    return 2 * 8192**3 / sec


def run(shapes=None, *, k: int = 20, device: str | None = None) -> list[dict]:
    """Measure every side on every shape; returns one dict per (shape, side)."""
    from lightlens.kernels import fused_token_stats_reference, token_stats_reference

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cuda = dev.type == "cuda"
    dtype = torch.bfloat16 if cuda else torch.float32
    shapes = shapes or (GPU_SHAPES if cuda else CPU_SHAPES)
    ceilings = {"copy_bytes_per_s": copy_bandwidth(dev), "bf16_flops": matmul_rate(dev)} if cuda else {}
    rows = []
    for t, v, d in shapes:
        g = torch.Generator(device=dev).manual_seed(0)
        try:
            hidden = torch.randn(t, d, device=dev, dtype=dtype, generator=g)
            weight = torch.randn(v, d, device=dev, dtype=dtype, generator=g) / d**0.5
            targets = torch.randint(0, v, (t,), device=dev, generator=g)
            logits = hidden @ weight.T
        except torch.OutOfMemoryError:
            rows.append({"T": t, "V": v, "D": d, "side": "inputs", "seconds": float("inf")})
            torch.cuda.empty_cache()
            continue
        sides = {"naive": lambda: naive_stats(logits, targets, k)}
        if cuda:
            from lightlens.kernels.from_hidden.kernel import fused_token_stats_triton as fused_token_stats
            from lightlens.kernels.from_logits.kernel import token_stats_triton as token_stats

            sides["ours_token_stats"] = lambda: token_stats(logits, targets, k)
            sides["ours_fused"] = lambda: fused_token_stats(hidden, weight, targets, k)
        else:
            sides["ours_token_stats(torch)"] = lambda: token_stats_reference(logits, targets, k)
            sides["ours_fused(torch)"] = lambda: fused_token_stats_reference(hidden, weight, targets, k)
        sides.update(_third_party(hidden, weight, logits, targets, cuda))
        for side, fn in sides.items():
            sec, extra = timed(fn, dev, reps=5 if cuda else 2)
            row = {"T": t, "V": v, "D": d, "side": side, "seconds": sec, "extra_mib": extra}
            if cuda and side == "ours_token_stats":
                row["fraction_of_copy_bw"] = t * v * logits.element_size() / sec / ceilings["copy_bytes_per_s"]
            if cuda and side in ("ours_fused", "cce"):
                row["fraction_of_matmul"] = 2 * t * d * v / sec / ceilings["bf16_flops"]
            rows.append(row)
        del hidden, weight, logits, targets
        if cuda:
            torch.cuda.empty_cache()
    for row in rows:
        row.update(ceilings)
    return rows


def _third_party(hidden, weight, logits, targets, cuda: bool) -> dict[str, Callable]:
    """Liger-Kernel and Cut Cross-Entropy loss-only baselines, where installed (GPU only)."""
    sides: dict[str, Callable] = {}
    if not cuda:
        return sides
    if importlib.util.find_spec("liger_kernel") is not None:
        from liger_kernel.transformers import LigerCrossEntropyLoss

        liger = LigerCrossEntropyLoss(reduction="none")
        sides["liger(loss only)"] = lambda: liger(logits, targets)
    if importlib.util.find_spec("cut_cross_entropy") is not None:
        from cut_cross_entropy import linear_cross_entropy

        sides["cce"] = lambda: linear_cross_entropy(hidden, weight, targets, reduction="none")
    return sides


def print_table(rows: list[dict]) -> None:
    """One line per (shape, side)."""
    if rows and "copy_bytes_per_s" in rows[0]:
        print(f"measured: copy {rows[0]['copy_bytes_per_s'] / 1e9:.0f} GB/s, "
              f"bf16 matmul {rows[0]['bf16_flops'] / 1e12:.0f} TFLOP/s")
    print(f"{'T':>7} {'V':>7} {'D':>5}  {'side':<24} {'ms':>10} {'extra MiB':>10}  of ceiling")
    for r in rows:
        frac = r.get("fraction_of_copy_bw", r.get("fraction_of_matmul"))
        print(f"{r['T']:>7} {r['V']:>7} {r['D']:>5}  {r['side']:<24} {r['seconds'] * 1e3:>10.2f} "
              f"{r.get('extra_mib', float('nan')):>10.1f}  {'' if frac is None else f'{frac:.0%}'}")
