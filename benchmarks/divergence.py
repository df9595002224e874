"""Two models compared token by token on CPU: ``python -m benchmarks divergence``.

The default model (SmolLM2-135M from the default GGUF) in float32 as the base and in bfloat16
as the other model (the same weights: a precision comparison), on the first 8,192 tokens of
WikiText-2 in disjoint 2,048-token windows. Every side runs in a fresh process with both
models loaded and warmed on a short text first; its time is the first call's, its memory the
peak RSS sampled every 2 ms during the call minus the RSS before it (:mod:`.memory`):

  forward     both models' forward passes alone (``model(w).logits``, nothing kept): the floor
  loop        the plain loop: both models' float32 ``log_softmax`` of each window, then
              ``KL = Σ p·(log p − log q)`` per token (what people write)
  lightlens   ``lightlens.divergence(text, base=fp32, model=bf16, max_length=2048, stride=2048)``:
              KL both ways, JS, Δp, entropies, top-1 and top-5 of both, every token

Goals (issue 12): lightlens ≤ 1.15× the forward passes' time, and extra memory ≤ 0.5× the loop's.
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from . import write_json
from .cpu import DEFAULT_DATA, ROOT, WARM_TEXT, environment, load_text
from .memory import PeakRSS

SIDES = ("forward", "loop", "lightlens")


def _models():
    import torch

    import lightlens

    return lightlens.load(device="cpu", dtype=torch.float32), lightlens.load(device="cpu", dtype=torch.bfloat16)


def forward_only(models, ids, window: int) -> None:
    """Both models' forward passes over the windows, logits dropped."""
    import torch

    with torch.inference_mode():
        for begin in range(0, ids.shape[1], window):
            for m in models:
                m(ids[:, begin : begin + window]).logits


def plain_loop(models, ids, window: int) -> float:
    """Both models' float32 log-softmax of each window, then the per-token KL; the mean KL."""
    import torch

    kls = []
    with torch.inference_mode():
        for begin in range(0, ids.shape[1], window):
            w = ids[:, begin : begin + window]
            lp, lq = (torch.log_softmax(m(w).logits[0, :-1].float(), dim=-1) for m in models)
            kls.append((lp.exp() * (lp - lq)).sum(-1))
    return float(torch.cat(kls).double().mean())


def _worker(side: str, data: str, tokens: int, window: int, threads: int = 0) -> dict:
    import torch

    import lightlens

    if threads:
        torch.set_num_threads(threads)

    p, q = _models()
    text = load_text(p, data, tokens)
    ids = torch.tensor([p.tokenizer(text, add_special_tokens=False)["input_ids"]])
    # head checks, first kernels; and on every side the malloc settings lightlens.divergence makes
    # (lightlens.engine.allocator), so the forward passes and the loop run with them too
    lightlens.divergence(WARM_TEXT, base=p, model=q, progress=False)
    plain_loop((p.model, q.model), ids[:, :16], window)
    mean_kl = float("nan")
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        if side == "lightlens":
            d = lightlens.divergence(text, base=p, model=q, max_length=window, stride=window, top_k=5,
                                     progress=False)
            mean_kl = d.stats()["mean_kl"]
        elif side == "loop":
            mean_kl = plain_loop((p.model, q.model), ids, window)
        else:
            forward_only((p.model, q.model), ids, window)
        seconds = time.perf_counter() - t0
    return {"side": side, "tokens": int(ids.shape[1]), "seconds": seconds, "mean_kl": mean_kl,
            "extra_mb": (mem.peak - mem.base) / 2**20, "rss_base_mb": mem.base / 2**20}


def in_fresh_process(*args: str) -> dict:
    """Run ``python -m benchmarks.divergence ARGS`` and return the JSON it prints last."""
    out = subprocess.run([sys.executable, "-m", "benchmarks.divergence", *args], capture_output=True,
                         text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(data: str = str(DEFAULT_DATA), tokens: int = 8192, window: int = 2048, runs: int = 1,
        threads: int = 0) -> dict:
    """Every side ``runs`` times in fresh processes, interleaved; the medians and the ratios.
    ``threads``: torch's intra-op threads in each (0: torch's default)."""
    found: dict[str, list[dict]] = {s: [] for s in SIDES}
    for _ in range(runs):
        for side in SIDES:
            found[side].append(in_fresh_process("side", side, data, str(tokens), str(window), str(threads)))
    sides = {s: {**rs[0], "seconds": statistics.median(r["seconds"] for r in rs),
                 "extra_mb": statistics.median(r["extra_mb"] for r in rs),
                 "runs": [{k: r[k] for k in ("seconds", "extra_mb")} for r in rs]} for s, rs in found.items()}
    ours = sides["lightlens"]
    return {**environment(), "setup": {"tokens": tokens, "window": window, "runs": runs, "top_k": 5,
                                       "threads": threads or "default",
                                       "base": "float32", "model": "bfloat16", "data": Path(data).name},
            "sides": sides, "time_over_forward": ours["seconds"] / sides["forward"]["seconds"],
            "time_over_loop": ours["seconds"] / sides["loop"]["seconds"],
            "extra_memory_over_loop": ours["extra_mb"] / sides["loop"]["extra_mb"],
            "gpu": "not measured on GPU"}


def print_table(r: dict) -> None:
    """The measurements as text."""
    print(f"{r['date']}  {r['machine']}  {r['versions']}")
    print(f"setup: {r['setup']}  (medians; extra = peak RSS during the call minus RSS before)")
    print(f"{'side':>10} {'tokens':>7} {'seconds':>9} {'extra MB':>9} {'mean KL':>10}")
    for side, s in r["sides"].items():
        print(f"{side:>10} {s['tokens']:>7} {s['seconds']:>9.2f} {s['extra_mb']:>9.0f} {s['mean_kl']:>10.6f}")
    print(f"lightlens / forward passes: time {r['time_over_forward']:.3f}x (goal <= 1.15); "
          f"lightlens / loop: time {r['time_over_loop']:.3f}x, extra memory {r['extra_memory_over_loop']:.3f}x "
          f"(goal <= 0.5); GPU: {r['gpu']}")


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.divergence [--tokens N] [--runs N] [--out FILE]``; with ``side ...``
    one measurement (what :func:`in_fresh_process` runs)."""
    import argparse

    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "side":
        _, side, data, tokens, window, threads = argv
        print(json.dumps(_worker(side, data, int(tokens), int(window), int(threads))))
        return 0
    p = argparse.ArgumentParser(prog="python -m benchmarks.divergence", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--tokens", type=int, default=8192)
    p.add_argument("--max-length", type=int, default=2048)
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--threads", type=int, default=0, help="torch threads per process (default: torch's)")
    p.add_argument("--out", help="also write the measurements as JSON here")
    args = p.parse_args(argv)
    r = run(args.data, args.tokens, args.max_length, args.runs, args.threads)
    print_table(r)
    write_json(r, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
