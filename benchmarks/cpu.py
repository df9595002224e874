"""The main job on CPU against a plain loop: ``python -m benchmarks cpu``.

The default model (SmolLM2-135M float32, from the default GGUF) on the first 4,096 tokens of
WikiText-2 in disjoint 2,048-token windows. Every measurement runs in a fresh process with the
model loaded and warmed on a short text first; its time is the first call's, its memory the
peak RSS sampled every 2 ms during the call minus the RSS before it (:mod:`.memory`). Each side
runs ``runs`` times and the medians are reported:

  loop        ``model(w).logits`` → float32 ``log_softmax`` → ``gather``, window by window
  body        the model body alone (``model.model(w)``, no head): the floor for everyone
  lightlens   ``lm.score(text, max_length=2048, stride=2048, top_k=5)``: logprob, entropy,
              rank and top-5 of every token
  long        the same on 16,384 tokens: extra memory must not grow beyond the window's

``parts`` (one process, warm): per 2,048-token window, the body, the head's matmul alone and
the head with every statistic (top-5), so the statistics' own cost is visible.
:mod:`.short` adds many short texts on a tiny model; :mod:`.llamacpp` the peer a CPU user would
pick instead, when its binary is there.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

from .memory import PeakRSS

ROOT = Path(__file__).resolve().parents[1]  # the repository: benchmarks/ is not installed
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "wikitext-2-raw-v1-test.txt"
WARM_TEXT = "The quick brown fox jumps over the lazy dog, and the dog does not mind at all."
SIDES = ("loop", "body", "lightlens", "long")


def load_text(lm, data: str, tokens: int) -> str:
    """The prefix of ``data`` that is exactly ``tokens`` tokens for ``lm``'s tokenizer."""
    from lightlens.text.tokens import truncate_tokens

    return truncate_tokens(lm.tokenizer, Path(data).read_text(encoding="utf-8")[: tokens * 8], tokens)


def plain_loop(model, ids, window: int) -> float:
    """What people write: logits, float32 log-softmax, gather; returns the total logprob."""
    import torch

    total = 0.0
    with torch.inference_mode():
        for begin in range(0, ids.shape[1], window):
            w = ids[:, begin : begin + window]
            logp = torch.log_softmax(model(w).logits.float(), dim=-1)
            total += float(logp[0, :-1].gather(1, w[0, 1:, None]).sum())
    return total


def body_only(model, ids, window: int) -> float:
    """The model body (no head) over the same windows."""
    import torch

    with torch.inference_mode():
        for begin in range(0, ids.shape[1], window):
            model.model(ids[:, begin : begin + window])
    return float("nan")


def _worker(side: str, data: str, tokens: int, window: int) -> dict:
    import torch

    import lightlens

    lm = lightlens.load(device="cpu")
    text = load_text(lm, data, 16384 if side == "long" else tokens)
    ids = torch.tensor([lm.tokenizer(text, add_special_tokens=False)["input_ids"]])
    lm.score(WARM_TEXT, top_k=5, progress=False)  # the head check, first kernels, tokenizer
    plain_loop(lm.model, ids[:, :16], window)
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        if side in ("lightlens", "long"):
            r = lm.score(text, max_length=window, stride=window, top_k=5, progress=False)
            total, scored = r.total_logprob, r.num_scored
        elif side == "loop":
            total, scored = plain_loop(lm.model, ids, window), ids.shape[1] - -(-ids.shape[1] // window)
        else:
            total, scored = body_only(lm.model, ids, window), 0
        seconds = time.perf_counter() - t0
    return {"side": side, "tokens": int(ids.shape[1]), "seconds": seconds, "total_logprob": total,
            "scored": int(scored), "extra_mb": (mem.peak - mem.base) / 2**20, "rss_base_mb": mem.base / 2**20}


def _parts(data: str, window: int, reps: int = 3) -> dict:
    """Per window, in one warm process: body, head matmul alone, head + all statistics."""
    import torch

    import lightlens

    lm = lightlens.load(device="cpu")
    ids = torch.tensor([lm.tokenizer(load_text(lm, data, window), add_special_tokens=False)["input_ids"]])
    head = lm.head
    targets = torch.cat([ids[0, 1:], ids[0, :1]])
    out = {}
    with torch.inference_mode():
        hidden = lm.model.model(ids).last_hidden_state[0]
        steps = {"body": lambda: lm.model.model(ids),
                 "head_matmul": lambda: hidden @ head.weight.T,
                 "head_and_stats": lambda: head.stats(hidden, targets, 5)}
        for name, fn in steps.items():
            fn()
            times = []
            for _ in range(reps):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
            out[name] = statistics.median(times)
    out["stats_over_matmul"] = out["head_and_stats"] / out["head_matmul"]
    return out


def in_fresh_process(*args: str) -> dict:
    """Run ``python -m benchmarks.cpu ARGS`` and return the JSON it prints last."""
    cmd = [sys.executable, "-m", "benchmarks.cpu", *args]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def median_of(runs: list[dict]) -> dict:
    """The median of each measurement over runs, with every run kept."""
    keys = ("seconds", "extra_mb")
    return {**runs[0], **{k: statistics.median(r[k] for r in runs) for k in keys},
            "runs": [{k: r[k] for k in keys} for r in runs]}


def environment() -> dict:
    import torch
    import transformers

    return {"date": date.today().isoformat(),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}",
            "versions": {"python": platform.python_version(), "torch": torch.__version__,
                         "transformers": transformers.__version__}}


def run_cpu(data: str = str(DEFAULT_DATA), tokens: int = 4096, window: int = 2048, runs: int = 3,
            llama_cpp: str | None = None) -> dict:
    """Every side ``runs`` times in fresh processes; the medians and the ratios to the loop."""
    from . import llamacpp, short

    sides = {}
    for side in SIDES:
        sides[side] = median_of([in_fresh_process("side", side, data, str(tokens), str(window))
                                 for _ in range(runs)])
    ours, loop = sides["lightlens"], sides["loop"]
    r = {**environment(), "setup": {"tokens": tokens, "window": window, "runs": runs, "top_k": 5,
                                    "data": Path(data).name},
         "sides": sides,
         "time_ratio": ours["seconds"] / loop["seconds"],
         "extra_memory_ratio": ours["extra_mb"] / loop["extra_mb"],
         "long_over_short_memory": sides["long"]["extra_mb"] / ours["extra_mb"],
         "parts": in_fresh_process("parts", data, str(window)),
         "short": short.run(runs=runs)}
    peer = llamacpp.run(data, window=window, runs=runs, binary=llama_cpp)
    if peer is not None:
        peer["ours_per_window"] = ours["seconds"] / (tokens / window)
        peer["ratio"] = peer["ours_per_window"] / peer["seconds_per_pass"]
        r["llama_cpp"] = peer
    return r


def print_table(r: dict) -> None:
    """The measurements as text."""
    print(f"{r['date']}  {r['machine']}  {r['versions']}")
    print(f"setup: {r['setup']}  (medians; extra = peak RSS during the call minus RSS before)")
    print(f"{'side':>10} {'tokens':>7} {'seconds':>9} {'extra MB':>9}  runs")
    for side, s in r["sides"].items():
        runs = ", ".join(f"{x['seconds']:.2f} s/{x['extra_mb']:.0f} MB" for x in s["runs"])
        print(f"{side:>10} {s['tokens']:>7} {s['seconds']:>9.2f} {s['extra_mb']:>9.0f}  {runs}")
    print(f"lightlens / loop: time {r['time_ratio']:.3f}x (goal <= 1.1), extra memory "
          f"{r['extra_memory_ratio']:.3f}x (goal <= 0.6); 16k / 4k tokens extra memory "
          f"{r['long_over_short_memory']:.2f}x")
    p = r["parts"]
    print(f"per window: body {p['body']:.2f} s, head matmul {p['head_matmul']:.3f} s, head + statistics "
          f"{p['head_and_stats']:.3f} s = {p['stats_over_matmul']:.2f}x the matmul (goal <= 1.3)")
    s = r["short"]
    print(f"{s['texts']} short texts (~{s['mean_tokens']:.0f} tokens, tiny model): loop {s['loop_docs_per_s']:.0f} docs/s, "
          f"lightlens {s['lightlens_docs_per_s']:.0f} docs/s = {s['ratio']:.2f}x (goal >= 0.9)")
    if "llama_cpp" in r:
        q = r["llama_cpp"]
        print(f"llama.cpp llama-perplexity F32, {q['threads']} threads: {q['seconds_per_pass']:.2f} s per "
              f"{r['setup']['window']}-token pass; lightlens {q['ours_per_window']:.2f} s per window = {q['ratio']:.2f}x")
    else:
        print("llama.cpp: not measured (no llama-perplexity binary: see benchmarks/llamacpp.py)")


if __name__ == "__main__":  # one measurement in a fresh process (see in_fresh_process)
    what, *rest = sys.argv[1:]
    if what == "side":
        side, data, tokens, window = rest
        print(json.dumps(_worker(side, data, int(tokens), int(window))))
    else:
        data, window = rest
        print(json.dumps(_parts(data, int(window))))
