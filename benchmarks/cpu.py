"""End to end on CPU, lightlens against a hand-written loop: ``python -m benchmarks cpu``.

``cpu``: perplexity of the first N WikiText-2 tokens with the default model, lightlens
against a hand-written Hugging Face loop (``model(ids, labels=...)``) doing the same forward
passes. Each side runs in its own process so that peak memory is its own; the ratio of
the two is printed (time and peak resident memory above the loaded model).
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

from .memory import PeakRSS

ROOT = Path(__file__).resolve().parents[1]  # the repository: benchmarks/ is not installed
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "wikitext-2-raw-v1-test.txt"


def _worker(kind: str, data: str, tokens: int, max_length: int, stride: int) -> dict:
    import torch

    import lightlens
    from lightlens.text.tokens import truncate_tokens

    lm = lightlens.load(device="cpu")
    text = truncate_tokens(lm.tokenizer, Path(data).read_text(encoding="utf-8")[: tokens * 8], tokens)
    ids = torch.tensor([lm.tokenizer(text, add_special_tokens=False)["input_ids"]])
    assert ids.shape[1] == tokens, ids.shape
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        if kind == "lightlens":
            c = lightlens.perplexity([text], model=lm, max_length=max_length, stride=stride, progress=False)
            ppl, n = c.perplexity, c.num_scored
        else:
            ppl, n = _hf_loop(lm.model, ids, max_length, stride)
        seconds = time.perf_counter() - t0
    return {"kind": kind, "seconds": seconds, "perplexity": ppl, "scored": n,
            "rss_base_mb": mem.base / 2**20, "rss_peak_mb": mem.peak / 2**20,
            "extra_mb": (mem.peak - mem.base) / 2**20}


def _hf_loop(model, ids, max_length: int, stride: int):
    """The usual hand-written loop: labels masked to the new tokens, model computes the loss."""
    import math

    import torch

    nll, count, prev_end = 0.0, 0, 0
    for begin in range(0, ids.size(1), stride):
        end = min(begin + max_length, ids.size(1))
        inputs = ids[:, begin:end]
        labels = inputs.clone()
        labels[:, : -(end - prev_end)] = -100
        with torch.no_grad():
            loss = model(inputs, labels=labels).loss
        n = int((labels[:, 1:] != -100).sum())
        nll, count, prev_end = nll + loss.item() * n, count + n, end
        if end == ids.size(1):
            break
    return math.exp(nll / count), count


def run_cpu(data: str, tokens: int, max_length: int, stride: int) -> dict:
    """Both sides in fresh processes; returns their measurements and the ratios."""
    sides = {}
    for kind in ("hf_loop", "lightlens"):
        cmd = [sys.executable, "-m", "benchmarks.cpu", kind, data, str(tokens), str(max_length), str(stride)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
        sides[kind] = json.loads(out.stdout.strip().splitlines()[-1])
    ours, base = sides["lightlens"], sides["hf_loop"]
    import torch
    import transformers

    return {
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}",
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__},
        "setup": {"tokens": tokens, "max_length": max_length, "stride": stride, "data": Path(data).name},
        "sides": sides,
        "time_ratio": ours["seconds"] / base["seconds"],
        "extra_memory_ratio": ours["extra_mb"] / base["extra_mb"],
        "peak_memory_ratio": ours["rss_peak_mb"] / base["rss_peak_mb"],
    }


def print_table(r: dict) -> None:
    print(f"{r['date']}  {r['machine']}  {r['versions']}")
    print(f"setup: {r['setup']}")
    print(f"{'':>10} {'seconds':>9} {'ppl':>9} {'scored':>7} {'peak RSS MB':>12} {'extra MB':>9}")
    for kind, s in r["sides"].items():
        print(f"{kind:>10} {s['seconds']:>9.2f} {s['perplexity']:>9.4f} {s['scored']:>7} "
              f"{s['rss_peak_mb']:>12.0f} {s['extra_mb']:>9.0f}")
    print(f"lightlens / hf_loop: time {r['time_ratio']:.3f}x, extra memory {r['extra_memory_ratio']:.3f}x, "
          f"peak memory {r['peak_memory_ratio']:.3f}x")


if __name__ == "__main__":  # one side, in a fresh process: python -m benchmarks.cpu KIND DATA TOKENS LENGTH STRIDE
    kind, data, tokens, max_length, stride = sys.argv[1:6]
    print(json.dumps(_worker(kind, data, int(tokens), int(max_length), int(stride))))
