"""Generation speed against Hugging Face ``generate`` (``python -m benchmarks generate``).

The default model (SmolLM2-135M, float32) generates 128 new tokens per sequence with the same
sampler on both sides (temperature 0.8, top-p 0.9), at batch 1 and batch 8, in one process:
each side is warmed first, then the sides alternate ``runs`` times and the medians are compared.
lightlens keeps every per-token statistic on (raw logprob, entropy, rank, top-5 ids, logprobs
and strings, sampled logprob, kept-set size, sampled entropy) and builds a Generation per
sequence; Hugging Face returns the ids only. End-of-sequence is switched off on both sides so
that both generate exactly 128 tokens. Both sides are warmed on a 2-token run first; extra
memory is the peak RSS during each side's first full-length call (sampled every 2 ms) minus the
RSS before it.
"""
from __future__ import annotations

import argparse
import statistics
import time

from . import write_json
from .memory import PeakRSS

PROMPTS = ["The history of the city begins", "In mathematics, a group is", "She opened the door and",
           "The recipe calls for", "Scientists announced on Tuesday that", "def quicksort(items):",
           "The river flows through", "Once upon a time"]


def hf_generate(lm, prompts: list[str], new: int, temperature: float, top_p: float, seed: int):
    """Hugging Face ``generate`` with sampling on a left-padded batch."""
    import torch

    tok = lm.tokenizer
    tok.padding_side = "left"
    enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    torch.manual_seed(seed)
    return lm.model.generate(**enc, do_sample=True, temperature=temperature, top_p=top_p, top_k=0,
                             max_new_tokens=new, min_new_tokens=0, pad_token_id=tok.pad_token_id or 0)


def run(*, new: int = 128, runs: int = 3, batches=(1, 8)) -> dict:
    """Tokens/s of both sides at each batch size, their ratio and lightlens's extra memory."""
    import torch

    import lightlens
    from lightlens.models.fetch import fetch_default_model
    from lightlens.sampling import Sampler

    lm = lightlens.load(fetch_default_model(quiet=True), device="cpu")
    lm.model.generation_config.eos_token_id = None  # exactly `new` tokens on both sides
    sampler = Sampler.from_options(temperature=0.8, top_p=0.9)
    out = {"model": lm.name, "new_tokens": new, "runs": runs, "threads": torch.get_num_threads(),
           "torch": torch.__version__, "sampler": sampler.describe(), "batches": {}}
    for b in batches:
        prompts = PROMPTS[:b]
        ours = lambda: lm.generate(prompts, max_new_tokens=new, sampler=sampler, seed=1, top_k=5)  # noqa: E731
        theirs = lambda: hf_generate(lm, prompts, new, 0.8, 0.9, 1)  # noqa: E731
        lm.generate(prompts, max_new_tokens=2, sampler=sampler, seed=1)  # warm both on a short run
        hf_generate(lm, prompts, 2, 0.8, 0.9, 1)
        extra_mb = {}
        for name, fn in (("lightlens", ours), ("hf", theirs)):
            with PeakRSS() as mem:  # the first full-length call of each: its peak
                result = fn()
            extra_mb[name] = (mem.peak - mem.base) / 2**20
            if name == "lightlens":
                assert all(g.num_generated == new for g in result), [g.num_generated for g in result]
        times = {"lightlens": [], "hf": []}
        for _ in range(runs):
            for name, fn in (("lightlens", ours), ("hf", theirs)):
                t = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t)
        med = {k: statistics.median(v) for k, v in times.items()}
        out["batches"][b] = {"lightlens_tok_s": b * new / med["lightlens"], "hf_tok_s": b * new / med["hf"],
                             "ratio": med["hf"] / med["lightlens"], "times": times,
                             "lightlens_extra_mb": extra_mb["lightlens"], "hf_extra_mb": extra_mb["hf"]}
    return out


def print_table(r: dict) -> None:
    print(f"{r['model']}, {r['new_tokens']} new tokens, {r['sampler']}, {r['threads']} threads, torch {r['torch']}")
    print(f"{'batch':>6} {'lightlens tok/s':>16} {'HF tok/s':>10} {'ratio':>7} {'extra MB (ours / HF)':>22}")
    for b, x in r["batches"].items():
        print(f"{b:>6} {x['lightlens_tok_s']:>16.1f} {x['hf_tok_s']:>10.1f} {x['ratio']:>7.3f} "
              f"{x['lightlens_extra_mb']:>11.0f} / {x['hf_extra_mb']:.0f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks generate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--new-tokens", type=int, default=128, help="tokens generated per sequence (default 128)")
    p.add_argument("--runs", type=int, default=3, help="alternating timed runs per side (default 3)")
    p.add_argument("--out", help="also write the measurements as JSON here")
    args = p.parse_args(argv)
    r = run(new=args.new_tokens, runs=args.runs)
    print_table(r)
    write_json(r, args.out)
    return 0
