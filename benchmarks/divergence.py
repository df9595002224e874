"""Two models compared token by token on CPU: ``python -m benchmarks divergence``.

The default model (SmolLM2-135M from the default GGUF) in float32 as the base and in bfloat16
as the other model (the same weights: a precision comparison), on the first 8,192 tokens of
WikiText-2 in disjoint 2,048-token windows, both models loaded and warmed on a short text
first. Times: the sides take turns in one fresh process, lightlens first; memory: each side's
first call in a fresh process of its own, the peak RSS sampled every 2 ms minus the RSS before
it (:mod:`.memory`):

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


def _setup(data: str, tokens: int, window: int, threads: int):
    """Both models loaded and warmed, the text and its ids."""
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
    return p, q, text, ids


def _call(side: str, p, q, text: str, ids, window: int) -> float:
    """One side's work over the whole text; the mean KL where it computes one."""
    import lightlens

    if side == "lightlens":
        d = lightlens.divergence(text, base=p, model=q, max_length=window, stride=window, top_k=5, progress=False)
        return d.stats()["mean_kl"]
    if side == "loop":
        return plain_loop((p.model, q.model), ids, window)
    forward_only((p.model, q.model), ids, window)
    return float("nan")


def _memory_worker(side: str, data: str, tokens: int, window: int, threads: int) -> dict:
    """One side's first call in this fresh process, its resident memory sampled every 2 ms."""
    p, q, text, ids = _setup(data, tokens, window, threads)
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        mean_kl = _call(side, p, q, text, ids, window)
        seconds = time.perf_counter() - t0
    return {"side": side, "tokens": int(ids.shape[1]), "seconds_while_sampling": seconds, "mean_kl": mean_kl,
            "extra_mb": (mem.peak - mem.base) / 2**20, "rss_base_mb": mem.base / 2**20}


def _timing_worker(data: str, tokens: int, window: int, threads: int, rounds: int) -> dict:
    """Every side ``rounds`` times in this one fresh process, lightlens first in each round (its
    first call is the process's first), nothing sampling: seconds per side and round."""
    p, q, text, ids = _setup(data, tokens, window, threads)
    times: dict[str, list[float]] = {s: [] for s in ("lightlens", "forward", "loop")}
    for _ in range(rounds):
        for side in times:
            t0 = time.perf_counter()
            _call(side, p, q, text, ids, window)
            times[side].append(time.perf_counter() - t0)
    return times


def in_fresh_process(*args: str) -> dict:
    """Run ``python -m benchmarks.divergence ARGS`` and return the JSON it prints last."""
    out = subprocess.run([sys.executable, "-m", "benchmarks.divergence", *args], capture_output=True,
                         text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(data: str = str(DEFAULT_DATA), tokens: int = 8192, window: int = 2048, runs: int = 1,
        threads: int = 0) -> dict:
    """Time: every side ``runs`` times in one fresh process, interleaved round by round, so the
    ratios compare calls in one run (between fresh processes alone the same call varied by
    ±5% here). Memory: each side's first call in a fresh process of its own, sampled (a thread
    reading /proc every 2 ms, which takes CPU time from the work, so those times are not used).
    ``threads``: torch's intra-op threads in each (0: torch's default)."""
    args = (data, str(tokens), str(window), str(threads))
    times = in_fresh_process("times", *args, str(runs))
    memory = {side: in_fresh_process("memory", side, *args) for side in SIDES}
    sides = {s: {**memory[s], "seconds": statistics.median(times[s]), "runs": times[s]} for s in SIDES}
    per_round = [a / b for a, b in zip(times["lightlens"], times["forward"])]
    ours = sides["lightlens"]
    return {**environment(), "setup": {"tokens": tokens, "window": window, "runs": runs, "top_k": 5,
                                       "threads": threads or "default",
                                       "base": "float32", "model": "bfloat16", "data": Path(data).name},
            "sides": sides, "time_over_forward": ours["seconds"] / sides["forward"]["seconds"],
            "time_over_forward_per_round": per_round,
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
    rounds = ", ".join(f"{x:.3f}" for x in r["time_over_forward_per_round"])
    print(f"lightlens / forward passes: time {r['time_over_forward']:.3f}x (goal <= 1.15; rounds {rounds}); "
          f"lightlens / loop: time {r['time_over_loop']:.3f}x, extra memory {r['extra_memory_over_loop']:.3f}x "
          f"(goal <= 0.5); GPU: {r['gpu']}")


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.divergence [--tokens N] [--runs N] [--out FILE]``; with ``memory ...``
    or ``times ...`` one worker (what :func:`in_fresh_process` runs)."""
    import argparse

    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "memory":
        _, side, data, tokens, window, threads = argv
        print(json.dumps(_memory_worker(side, data, int(tokens), int(window), int(threads))))
        return 0
    if argv and argv[0] == "times":
        _, data, tokens, window, threads, rounds = argv
        print(json.dumps(_timing_worker(data, int(tokens), int(window), int(threads), int(rounds))))
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
