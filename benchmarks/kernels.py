"""Kernel benchmark and roofline: ``python -m benchmarks kernels``.

For each shape and dtype (bf16 and float32 on GPU, float32 on CPU) it times and measures the
peak extra memory of
  naive      float32 log_softmax + gather + entropy + rank + topk (what servers do, plus more)
  liger      Liger-Kernel cross entropy, reduction="none" (loss only), if installed
  cce        Cut Cross-Entropy linear_cross_entropy, reduction="none" (loss only), if installed
  ours       token_stats (from logits) and fused_token_stats (from hidden, no logits)
and, on GPU, the measured device-copy bandwidth and bf16 matmul rate of the same run, with
ours as a fraction of them and beside the time the roofline predicts (:func:`roofline`). On
CPU only the torch paths run (small shapes), so the command always works.

``python -m benchmarks.kernels --roofline`` prints the roofline table alone (no GPU needed):
bytes and flops of each kernel at each benchmark shape and the times they imply on an H100.
"""
from __future__ import annotations

import importlib.util
import statistics
import sys
import time
from typing import Callable, NamedTuple

import torch

from .memory import PeakRSS

# The benchmark shapes: T tokens, V vocabulary (SmolLM2 / Llama 3 / Gemma 3), D hidden size
# (SmolLM2-135M / an 8B model); (T, V, D) tuples.
GPU_SHAPES = [(t, v, d) for t in (1024, 8192, 32768) for v in (49152, 128256, 262144) for d in (576, 4096)]
GPU_DTYPES = (torch.bfloat16, torch.float32)
CPU_SHAPES = [(256, 32768, 256), (1024, 32768, 512)]


class Ceilings(NamedTuple):
    """What a GPU sustains, for the roofline. :data:`H100` holds the figures we assume for an
    H100 SXM until a GPU run measures them (copy rate and bf16 matmul rate are measured by
    :func:`run` on a GPU and replace these there).

    >>> round(H100.bf16_flops / H100.copy_bytes_per_s)   # flops per byte where a bf16 kernel turns compute-bound
    263
    """

    name: str
    copy_bytes_per_s: float  # HBM, read + write counted, as a device-to-device copy measures it
    bf16_flops: float  # dense bf16 tensor-core matmul
    fp32_flops: float  # float32 FMA (CUDA cores): our float32 fused kernel multiplies exactly, no TF32
    l2_bytes_per_s: float  # L2 → SM streaming rate
    lane_ops_per_s: float  # 32-bit instructions issued per second, all SMs (128 lanes × SMs × clock)
    sms: int
    load_latency_s: float  # an HBM load under load, for Little's law


H100 = Ceilings(
    name="H100 SXM (assumed)",
    copy_bytes_per_s=3.0e12,  # measured copy rate of H100 SXM; spec 3.35 TB/s
    bf16_flops=790e12,  # measured dense 8192³ bf16 matmul; spec 989 TFLOP/s
    fp32_flops=50e12,  # spec 67 TFLOP/s non-tensor fp32 (132 SMs × 128 FMA × 2 × 1.98 GHz); ~75% sustained
    l2_bytes_per_s=7e12,  # assumption (not a vendor figure): replace with a measured one
    lane_ops_per_s=132 * 128 * 1.98e9,
    sms=132,
    load_latency_s=700e-9,  # assumption
)
# SASS instructions a thread issues per logit in the steady state of our sm_90 kernels (the
# online max / sum-exp / entropy / rank, the top-k prefilter, masks and the tile's block-wide
# reductions; the matmul and the rare top-k insertions left out), as
# ``python -m lightlens.kernels.aot --report`` counts them in the compiled cubins (Triton 3.9).
EPILOGUE_INSTR = {("token_stats", False): 23, ("token_stats", True): 30,
                  ("fused", "bf16", False): 45, ("fused", "bf16", True): 50,
                  ("fused", "fp32", False): 48, ("fused", "fp32", True): 62}


def epilogue_instructions(op: str, dtype: torch.dtype, k: int) -> int:
    """Instructions per logit our kernel spends on the statistics (see :data:`EPILOGUE_INSTR`).

    >>> epilogue_instructions("token_stats", torch.bfloat16, 20), epilogue_instructions("fused", torch.float16, 0)
    (30, 45)
    """
    if op == "token_stats":
        return EPILOGUE_INSTR[(op, k > 0)]
    return EPILOGUE_INSTR[(op, "fp32" if dtype == torch.float32 else "bf16", k > 0)]


def roofline(op: str, t: int, v: int, d: int, dtype: torch.dtype, k: int = 20, ceilings: Ceilings = H100) -> dict:
    """Bytes, flops and the times they imply for one kernel call, with our launch configuration.

    ``op``: ``"token_stats"`` (reads the logits [t, v] once) or ``"fused"`` (hidden [t, d] and
    the unembedding [v, d]: 2·t·v·d flops). Returns ``hbm_bytes`` (what must come from HBM),
    ``flops``, ``ideal_s`` (the larger of bytes at the copy rate and flops at the matmul rate:
    no kernel can beat it) and ``predicted_s`` (what our configuration should reach), with the
    terms behind it and ``bound``, the one that dominates:

    - token_stats: max(HBM bytes / copy rate, Little's law (the bytes our configuration keeps in
      flight per SM over the load latency), epilogue instructions / issue rate); the epilogue
      overlaps the loads (other warps). Instructions per logit: :func:`epilogue_instructions`.
    - fused: max(flops / matmul rate, L2 → SM traffic / L2 rate, HBM traffic / copy rate) +
      epilogue. Each program streams its weight range once per 64-row block and its hidden rows
      once per column tile, all through L2 (the tile's arithmetic intensity is
      2·BLOCK_T·BLOCK_V / ((BLOCK_T + BLOCK_V)·bytes) flops per byte); HBM sees the hidden
      state once and the weight once per wave of resident programs (those in a wave walk the
      same columns). The epilogue runs in the same warps as the matmul, after it: it adds.

    >>> r = roofline("token_stats", 8192, 128256, 4096, torch.bfloat16)
    >>> round(r["hbm_bytes"] / 1e9, 2), round(r["predicted_s"] * 1e3, 2), r["bound"]
    (2.1, 0.94, 'epilogue')
    >>> r = roofline("fused", 8192, 128256, 4096, torch.bfloat16)
    >>> round(r["flops"] / 1e12, 1), round(r["ideal_s"] * 1e3, 1), round(r["predicted_s"] * 1e3, 1), r["bound"]
    (8.6, 10.9, 30.4, 'l2')
    """
    from lightlens.kernels._triton_utils import cdiv

    e = torch.finfo(dtype).bits // 8
    outputs = t * (3 * 4 + 8 + 8 * k + 8)  # logprob, lse, entropy, rank, top-k keys; targets read
    epilogue_s = t * v * epilogue_instructions(op, dtype, k) / ceilings.lane_ops_per_s
    if op == "token_stats":
        from lightlens.kernels.from_logits.kernel import launch_config

        c = launch_config(t, v, dtype, k, "sm_90", ceilings.sms)
        hbm = t * v * e + outputs
        in_flight = 2 * c.block_v * e  # bytes per resident program: this tile and the next
        little = hbm / (ceilings.sms * in_flight / ceilings.load_latency_s)  # one program per SM resident (k >= 16)
        terms = {"hbm": hbm / ceilings.copy_bytes_per_s, "latency": little, "epilogue": epilogue_s}
        flops = 0
        ideal = terms["hbm"]
        predicted = max(terms.values())
    elif op == "fused":
        from lightlens.kernels.from_hidden.kernel import launch_config

        c = launch_config(t, v, d, dtype, k, "sm_90", ceilings.sms)
        flops = 2 * t * v * d
        rate = ceilings.bf16_flops if e == 2 else ceilings.fp32_flops
        row_blocks, col_tiles = cdiv(t, c.block_t), cdiv(v, c.block_v)
        l2 = row_blocks * v * d * e + col_tiles * t * d * e
        waves = cdiv(row_blocks * c.splits, ceilings.sms)  # one program per SM resident
        hbm = t * d * e + waves * v * d * e + outputs
        terms = {"matmul": flops / rate, "l2": l2 / ceilings.l2_bytes_per_s, "hbm": hbm / ceilings.copy_bytes_per_s}
        ideal = max(flops / rate, ((t + v) * d * e + outputs) / ceilings.copy_bytes_per_s)
        predicted = max(terms.values()) + epilogue_s
        terms["epilogue"] = epilogue_s
    else:
        raise ValueError(f"op must be 'token_stats' or 'fused', got {op!r}")
    bound = max((name for name in terms if name != "epilogue" or op == "token_stats"), key=terms.get)
    return {"op": op, "T": t, "V": v, "D": d, "dtype": str(dtype).removeprefix("torch."), "k": k,
            "config": c._asdict(), "hbm_bytes": hbm, "flops": flops, "ideal_s": ideal,
            "predicted_s": predicted, "bound": bound, **{f"{n}_s": x for n, x in terms.items()}}


def roofline_table(shapes=None, dtypes=GPU_DTYPES, k: int = 20, ceilings: Ceilings = H100,
                   measured: dict | None = None) -> str:
    """The roofline of both kernels at every benchmark shape, as a Markdown table; ``measured``
    maps (op, T, V, D, dtype name) to measured milliseconds (rows of :func:`run` on a GPU).

    >>> print(roofline_table([(1024, 49152, 576)], [torch.bfloat16]).splitlines()[2])
    | 1,024 | 49,152 | — | bf16 | token_stats | 0.10 GB | — | 0.03 | 0.05 ms (epilogue) | 0.03 ms (hbm) | 1 × 8192, 16 warps, 1 split | not measured on GPU |
    """
    rows = ["| T | V | D | dtype | kernel | HBM bytes | flops | ideal ms | our config should reach | "
            "next bound | configuration | measured |", "| " + " | ".join(["---"] * 12) + " |"]
    for t, v, d in shapes or GPU_SHAPES:
        for dtype in dtypes:
            for op in ("token_stats", "fused"):
                if op == "token_stats" and d != min(dd for _, _, dd in (shapes or GPU_SHAPES)):
                    continue  # token_stats does not depend on D: one row per (T, V)
                r = roofline(op, t, v, d, dtype, k, ceilings)
                additive = ("epilogue_s",) if op == "fused" else ()  # added to the bound, not one itself
                terms = sorted(((x, n.removesuffix("_s")) for n, x in r.items() if n.endswith("_s")
                                and n not in ("ideal_s", "predicted_s", *additive)), reverse=True)
                c = r["config"]
                tiles = f"{c['block_t']} × {c['block_v']}" + (f" × {c['block_d']}" if c["block_d"] else "")
                nxt = [(x, n) for x, n in terms if n != r["bound"]]
                second = f"{nxt[0][0] * 1e3:.2f} ms ({nxt[0][1]})" if nxt else "—"
                rows.append(
                    f"| {t:,} | {v:,} | {d if op == 'fused' else '—'} | {r['dtype'].replace('bfloat16', 'bf16').replace('float32', 'fp32')} "
                    f"| {op} | {r['hbm_bytes'] / 1e9:.2f} GB | {_flops(r['flops'])} | {r['ideal_s'] * 1e3:.2f} "
                    f"| {r['predicted_s'] * 1e3:.2f} ms ({r['bound']}) | {second} "
                    f"| {tiles}, {c['num_warps']} warps, {c['splits']} split{'s' if c['splits'] > 1 else ''} "
                    f"| {_measured(measured, op, t, v, d, r['dtype'])} |")
    return "\n".join(rows)


def _measured(measured: dict | None, op: str, t: int, v: int, d: int, dtype: str) -> str:
    ms = (measured or {}).get((op, t, v, d if op == "fused" else None, dtype))
    return "not measured on GPU" if ms is None else f"{ms:.2f} ms"


def _flops(f: float) -> str:
    return "—" if not f else f"{f / 1e12:.1f} T"


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


def matmul_rate(device: torch.device, dtype: torch.dtype = torch.bfloat16) -> float:
    """FLOP/s of an 8192³ matmul in ``dtype`` (float32 without TF32: exact products, as our
    float32 fused kernel computes them).

    >>> matmul_rate(torch.device("cuda"), torch.float32) / 1e12   # doctest: +SKIP
    51.3
    """
    a = torch.randn(8192, 8192, dtype=dtype, device=device)
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        sec, _ = timed(lambda: a @ a, device)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    return 2 * 8192**3 / sec


def measured_ceilings(device: torch.device) -> Ceilings:
    """:data:`H100`'s figures with what this GPU measures in place of the assumed ones (copy
    rate, bf16 and float32 matmul rates, SM count).

    >>> measured_ceilings(torch.device("cuda")).sms   # doctest: +SKIP
    132
    """
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    return H100._replace(name=torch.cuda.get_device_name(device), copy_bytes_per_s=copy_bandwidth(device),
                         bf16_flops=matmul_rate(device), fp32_flops=matmul_rate(device, torch.float32), sms=sms,
                         lane_ops_per_s=H100.lane_ops_per_s * sms / H100.sms)


def run(shapes=None, *, k: int = 20, device: str | None = None, dtypes=None) -> list[dict]:
    """Measure every side on every shape (and, on GPU, each of :data:`GPU_DTYPES`); returns one
    dict per (shape, dtype, side), ours with the roofline's ``predicted_ms`` and ``ideal_ms``
    for this GPU's measured ceilings beside the measured time."""
    from lightlens.kernels import fused_token_stats_reference, token_stats_reference

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cuda = dev.type == "cuda"
    dtypes = dtypes or (GPU_DTYPES if cuda else (torch.float32,))
    shapes = shapes or (GPU_SHAPES if cuda else CPU_SHAPES)
    ceilings = measured_ceilings(dev) if cuda else None
    rows = []
    for (t, v, d), dtype in ((shape, dt) for shape in shapes for dt in dtypes):
        base = {"T": t, "V": v, "D": d, "dtype": str(dtype).removeprefix("torch.")}
        g = torch.Generator(device=dev).manual_seed(0)
        try:
            hidden = torch.randn(t, d, device=dev, dtype=dtype, generator=g)
            weight = torch.randn(v, d, device=dev, dtype=dtype, generator=g) / d**0.5
            targets = torch.randint(0, v, (t,), device=dev, generator=g)
            logits = hidden @ weight.T
        except torch.OutOfMemoryError:
            rows.append({**base, "side": "inputs", "seconds": float("inf")})
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
            row = {**base, "side": side, "seconds": sec, "extra_mib": extra}
            if cuda and side in ("ours_token_stats", "ours_fused"):
                r = roofline(side.removeprefix("ours_"), t, v, d, dtype, k, ceilings)
                row.update(predicted_ms=r["predicted_s"] * 1e3, ideal_ms=r["ideal_s"] * 1e3, bound=r["bound"])
            if cuda and side == "ours_token_stats":
                row["fraction_of_copy_bw"] = t * v * logits.element_size() / sec / ceilings.copy_bytes_per_s
            if cuda and side in ("ours_fused", "cce"):
                rate = ceilings.bf16_flops if dtype == torch.bfloat16 else ceilings.fp32_flops
                row["fraction_of_matmul"] = 2 * t * d * v / sec / rate
            rows.append(row)
        del hidden, weight, logits, targets
        if cuda:
            torch.cuda.empty_cache()
    if cuda:
        for row in rows:
            row.update(ceilings._asdict())
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
    """One line per (shape, dtype, side); on GPU ours with the roofline's prediction beside."""
    if rows and "copy_bytes_per_s" in rows[0]:
        r = rows[0]
        print(f"{r['name']}: copy {r['copy_bytes_per_s'] / 1e9:.0f} GB/s, bf16 matmul {r['bf16_flops'] / 1e12:.0f} "
              f"TFLOP/s, fp32 matmul (no TF32) {r['fp32_flops'] / 1e12:.0f} TFLOP/s, {r['sms']} SMs (measured)")
    print(f"{'T':>7} {'V':>7} {'D':>5} {'dtype':>8}  {'side':<24} {'ms':>10} {'predicted':>10} {'ideal':>8} "
          f"{'extra MiB':>10}  of ceiling")
    for r in rows:
        frac = r.get("fraction_of_copy_bw", r.get("fraction_of_matmul"))
        pred = f"{r['predicted_ms']:.2f}" if "predicted_ms" in r else ""
        ideal = f"{r['ideal_ms']:.2f}" if "ideal_ms" in r else ""
        print(f"{r['T']:>7} {r['V']:>7} {r['D']:>5} {r.get('dtype', ''):>8}  {r['side']:<24} {r['seconds'] * 1e3:>10.2f} "
              f"{pred:>10} {ideal:>8} {r.get('extra_mib', float('nan')):>10.1f}  {'' if frac is None else f'{frac:.0%}'}")


if __name__ == "__main__":
    if "--roofline" in sys.argv[1:]:
        print(f"{H100.name}: copy {H100.copy_bytes_per_s / 1e12:.1f} TB/s, bf16 {H100.bf16_flops / 1e12:.0f} TFLOP/s, "
              f"fp32 {H100.fp32_flops / 1e12:.0f} TFLOP/s, L2 {H100.l2_bytes_per_s / 1e12:.0f} TB/s, top-k 20")
        print(roofline_table())
    else:
        rows = run()
        print_table(rows)
