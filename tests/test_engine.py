"""The engine's plumbing: batches by tokens, row indices, host checks, the packed transfer, the
logits path asking for fewer logits, and memory that grows with neither the text nor V."""
from __future__ import annotations

import functools
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import lightlens
from lightlens.engine import scoring
from lightlens.kernels import fused_token_stats_reference, token_stats_reference
from lightlens.text.tokens import encode_many
from lightlens.text.windows import plan_windows

from oracles import f32_tol, float64_stats, model_tol


def _jobs(lm, texts, length, stride):
    encs = encode_many(lm.tokenizer, texts)
    docs = scoring._Doc.many(encs, [plan_windows(len(e.ids), max_length=length, stride=stride) for e in encs], 2)
    return [(d, w) for d in docs for w in d.windows]


def test_batch_rows_and_targets_equal_a_plain_construction(tiny_gpt2):
    texts = ["The quick brown fox jumps over the lazy dog. " * 3, "Hello world", "A language model."]
    jobs = _jobs(tiny_gpt2, texts, 16, 8)
    b = scoring.batch_inputs(tiny_gpt2, jobs)
    want_b, want_t, want_y = [], [], []
    for row, (doc, w) in enumerate(jobs):
        for target in range(w.first, w.last):
            want_b.append(row)
            want_t.append(target - 1 - w.begin)
            want_y.append(int(doc.enc.ids[target]))
            assert b.ids[row, target - 1 - w.begin] == doc.enc.ids[target - 1]  # the position sees its context
    assert b.rows_b.tolist() == want_b and b.rows_t.tolist() == want_t and b.targets.tolist() == want_y
    assert b.first == min(want_t)
    lengths = [w.end - w.begin for _, w in jobs]
    assert b.mask is not None and b.mask.sum(1).tolist() == lengths


def test_batches_are_limited_by_tokens_not_by_count():
    jobs = [(None, plan_windows(60, max_length=64, stride=32)[0]) for _ in range(100)]
    batches = scoring.make_batches(jobs, len(jobs), 2048)
    assert [len(b) for b in batches] == [34, 34, 32]  # 34 * 60 <= 2048 < 35 * 60
    assert [len(b) for b in scoring.make_batches(jobs, 8, 2048)][:2] == [8, 8]


def test_ids_outside_the_vocabulary_are_refused_on_the_host(tiny_gpt2, monkeypatch):
    monkeypatch.setattr(type(tiny_gpt2), "vocab_size", property(lambda self: 50))
    with pytest.raises(ValueError, match="outside the model's vocabulary of 50"):
        lightlens.score("The quick brown fox jumps over the lazy dog.", model=tiny_gpt2)


def test_packed_statistics_round_trip_exactly():
    g = torch.Generator().manual_seed(0)
    logits, targets = torch.randn(7, 300, generator=g), torch.randint(0, 300, (7,), generator=g)
    targets[2] = -100
    s = token_stats_reference(logits, targets, 5)
    u = scoring.unpack_stats(scoring.pack_stats(s), 5)
    for a, b in zip(s, u):
        assert a.dtype == b.dtype and torch.equal(a.nan_to_num(-1), b.nan_to_num(-1))


def test_logits_path_asks_for_the_last_positions_only(tiny_llama, monkeypatch):
    seen = []
    forward = tiny_llama.model.forward

    @functools.wraps(forward)  # the same signature: the engine looks for logits_to_keep there
    def spy(*args, **kwargs):
        seen.append(kwargs.get("logits_to_keep"))
        return forward(*args, **kwargs)

    text = "The quick brown fox jumps over the lazy dog. Perplexity is the exponential of the mean."
    want = lightlens.score(text, model=tiny_llama, max_length=16, stride=4, method="fused")
    monkeypatch.setattr(tiny_llama.model, "forward", spy)
    got = lightlens.score(text, model=tiny_llama, max_length=16, stride=4, method="logits", batch_size=1)
    assert seen[0] == 16 and len(seen) > 1 and max(seen[1:]) <= 4  # later windows: their <= 4 new targets
    tol = 2 * model_tol(tiny_llama)
    np.testing.assert_allclose(got.logprobs, want.logprobs, rtol=0, atol=tol)
    np.testing.assert_array_equal(got.ranks, want.ranks)


def test_top_k_strings_decode_each_id_once(tiny_gpt2, monkeypatch):
    calls = []
    decode = tiny_gpt2.tokenizer.batch_decode
    monkeypatch.setattr(tiny_gpt2.tokenizer, "batch_decode", lambda ids, **kw: calls.append(len(ids)) or decode(ids, **kw))
    monkeypatch.setattr(tiny_gpt2, "_strings", np.empty(0, dtype=object))
    rs = lightlens.score(["Hello world, hello again.", "Hello world, hello again!"], model=tiny_gpt2, top_k=5)
    distinct = len(np.unique(np.concatenate([r.top_k_ids[r.top_k_ids >= 0] for r in rs])))
    assert sum(calls) == distinct
    assert rs[0].top_k_tokens[1] == [tiny_gpt2.tokenizer.decode([i]) for i in rs[0].top_k_ids[1]]


@pytest.mark.parametrize("v", [1000, 5000])
def test_cpu_statistics_over_many_tiles_match_float64(v):
    """Rows and vocabulary both split into tiles (tiny tiles forced), every statistic exact."""
    g = torch.Generator().manual_seed(v)
    t, d = 50, 24
    hidden, weight = torch.randn(t, d, generator=g), torch.randn(v, d, generator=g) * 0.7
    targets = torch.randint(0, v, (t,), generator=g)
    targets[4] = -100
    got = fused_token_stats_reference(hidden, weight, targets, 7, chunk_bytes=4 * 64 * 16)  # 16 rows x 64 ids
    want = float64_stats(hidden.double() @ weight.double().T, targets, 7)
    tol = f32_tol(v * d, (hidden.double().abs() @ weight.double().abs().T).max())
    for name in ("logprob", "logsumexp", "entropy"):
        np.testing.assert_allclose(getattr(got, name).numpy(), want[name].numpy(), rtol=0, atol=tol, err_msg=name)
    np.testing.assert_array_equal(got.rank.numpy(), want["rank"].numpy())
    np.testing.assert_array_equal(got.top_k_ids.numpy(), want["top_ids"].numpy())
    np.testing.assert_allclose(got.top_k_logprobs.numpy(), want["top_vals"].numpy(), rtol=0, atol=tol)


def test_masked_and_nan_rows_over_tiles():
    x = torch.randn(3, 300)
    x[0, :250] = float("-inf")  # whole tiles of -inf first, then finite logits
    x[1, 123] = float("nan")
    s = token_stats_reference(x, torch.tensor([260, 5, 7]), 3, chunk_bytes=4 * 64 * 3)
    want = float64_stats(x, torch.tensor([260, 5, 7]), 3)
    assert torch.isnan(s.logprob[1]) and torch.isnan(s.entropy[1]) and torch.isnan(s.logsumexp[1])
    for i in (0, 2):
        assert float(s.entropy[i]) == pytest.approx(float(want["entropy"][i]), abs=1e-5)
        assert float(s.logprob[i]) == pytest.approx(float(want["logprob"][i]), abs=1e-5)
        assert int(s.rank[i]) == int(want["rank"][i])
    assert s.top_k_ids[0].tolist() == want["top_ids"][0].tolist()


PEAK = textwrap.dedent("""
    import json, sys, torch
    sys.path.insert(0, {bench!r})
    from benchmarks.memory import PeakRSS
    from lightlens.kernels import fused_token_stats_reference
    torch.set_num_threads(1)
    t, d, v = {t}, 64, {v}
    g = torch.Generator().manual_seed(0)
    h, w = torch.randn(t, d, generator=g), torch.randn(v, d, generator=g)
    y = torch.randint(0, v, (t,), generator=g)
    fused_token_stats_reference(h[:8], w, y[:8], 5)  # warm: the library, not the buffers at size
    with PeakRSS() as m:
        fused_token_stats_reference(h, w, y, 5)
    print(json.dumps((m.peak - m.base) / 2**20))
""")


@pytest.mark.slow
def test_cpu_statistics_memory_grows_with_neither_rows_nor_vocabulary(tmp_path):
    """Extra memory stays near two 8 MB tiles for 4k rows at V = 128k, where the float32 logits
    alone would be 2 GB; measured as sampled RSS in a fresh process."""
    from pathlib import Path

    bench = str(Path(__file__).resolve().parents[1])
    extra = {}
    for t, v in ((512, 32768), (4096, 131072)):
        out = subprocess.run([sys.executable, "-c", PEAK.format(bench=bench, t=t, v=v)],
                             capture_output=True, text=True, check=True)
        extra[(t, v)] = json.loads(out.stdout.strip().splitlines()[-1])
    assert max(extra.values()) < 64, extra  # 4096 x 131072 float32 logits: 2,048 MB
