"""Many short texts on a tiny model: the engine's own overhead (``python -m benchmarks cpu``).

A seeded 2-layer Llama (D=64, V=1,000, a byte-level BPE trained on WikiText-2 offline) scores
2,000 texts of about 60 tokens. The plain loop tokenizes 32 texts at a time with padding, runs
the model and takes a float32 log-softmax + gather of each padded batch; lightlens runs
``lm.score(texts, top_k=5)`` (entropy, rank, top-5 ids, logprobs and strings besides, and a
ScoreResult with character offsets per text). Each fresh process warms both on a few texts,
then the two take turns for ``rounds`` rounds, lightlens first (each call is about 1 s, and
between fresh processes the same call varied by ±10% here, more than the margin measured);
documents per second are the medians over every round of ``runs`` processes.
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "wikitext-2-raw-v1-test.txt"
LOOP_BATCH = 32


def make_model(folder: Path, *, vocab: int = 1000, seed: int = 0) -> Path:
    """Save the tiny seeded model and its tokenizer (trained here, offline) to ``folder``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    lines = DATA.read_text(encoding="utf-8").splitlines()[:4000]
    tok.train_from_iterator(lines, trainers.BpeTrainer(vocab_size=vocab, special_tokens=["<|endoftext|>"],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                   pad_token="<|endoftext|>")
    cfg = LlamaConfig(vocab_size=len(fast), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512,
                      tie_word_embeddings=False)
    torch.manual_seed(seed)
    LlamaForCausalLM(cfg).save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


def make_texts(tokenizer, n: int = 2000, tokens: int = 60) -> list[str]:
    """``n`` consecutive pieces of WikiText-2 of 50–70 tokens each (cut at token boundaries)."""
    text = DATA.read_text(encoding="utf-8")[: n * tokens * 6]
    spans = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    texts, i = [], 0
    while len(texts) < n:
        j = i + tokens - 10 + (len(texts) * 7) % 21
        texts.append(text[spans[i][0] : spans[j][0]])
        i = j
    return texts


def loop(model, tokenizer, texts: list[str]) -> float:
    """The plain loop: padded batches of 32, float32 log-softmax + gather; the total logprob."""
    import torch

    total = 0.0
    with torch.inference_mode():
        for b in range(0, len(texts), LOOP_BATCH):
            enc = tokenizer(texts[b : b + LOOP_BATCH], padding=True, return_tensors="pt", add_special_tokens=False)
            ids, mask = enc["input_ids"], enc["attention_mask"]
            logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), -1)
            lp = logp[:, :-1].gather(2, ids[:, 1:, None])[..., 0]
            total += float((lp * mask[:, 1:]).sum())
    return total


def _worker(folder: str, rounds: int) -> dict:
    """Both sides in this process, taking turns: their seconds per round."""
    import lightlens

    lm = lightlens.load(folder, device="cpu")
    texts = make_texts(lm.tokenizer)
    lm.score(texts[:40], top_k=5, progress=False)
    loop(lm.model, lm.tokenizer, texts[:40])
    seconds: dict[str, list[float]] = {"lightlens": [], "loop": []}
    totals = {}
    for _ in range(rounds):
        t0 = time.perf_counter()
        totals["lightlens"] = sum(r.total_logprob for r in lm.score(texts, top_k=5, progress=False))
        seconds["lightlens"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        totals["loop"] = loop(lm.model, lm.tokenizer, texts)
        seconds["loop"].append(time.perf_counter() - t0)
    n_tokens = sum(len(lm.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)
    return {"texts": len(texts), "mean_tokens": n_tokens / len(texts), "seconds": seconds, "total_logprob": totals}


def run(runs: int = 3, rounds: int = 5) -> dict:
    """``runs`` fresh processes of ``rounds`` turns each; documents/s medians and their ratio."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_model(Path(tmp) / "tiny")
        results = []
        for _ in range(runs):
            out = subprocess.run([sys.executable, "-m", "benchmarks.short", str(folder), str(rounds)],
                                 capture_output=True, text=True, check=True, cwd=ROOT)
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    first = results[0]
    dps = {side: [first["texts"] / t for r in results for t in r["seconds"][side]] for side in ("loop", "lightlens")}
    loop_dps, ours_dps = statistics.median(dps["loop"]), statistics.median(dps["lightlens"])
    return {"texts": first["texts"], "mean_tokens": first["mean_tokens"], "loop_batch": LOOP_BATCH,
            "loop_docs_per_s": loop_dps, "lightlens_docs_per_s": ours_dps, "ratio": ours_dps / loop_dps,
            "rounds": rounds, "docs_per_s": dps, "runs": results}


if __name__ == "__main__":  # one process: both sides, taking turns
    print(json.dumps(_worker(sys.argv[1], int(sys.argv[2]))))
