"""Triton kernels under TRITON_INTERPRET=1 (set in conftest), against float64 torch."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import lightlens
from lightlens.kernels import head_logits
from lightlens.kernels.from_hidden.kernel import fused_token_stats_triton as fused_token_stats
from lightlens.kernels.from_logits.kernel import token_stats_triton as token_stats

from oracles import f32_tol, float64_stats, model_tol

DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def check(stats, want, k, *, terms=None, scale=None, exact_ids=True):
    """The kernel's float32 statistics against the float64 oracle, within ``f32_tol``: sums over V
    terms (``terms``: V*D when the kernel also computes the logits as D-term dot products, whose
    size ``scale`` then bounds; by default the logits' own size)."""
    x, lse = want["x"], want["logsumexp"]
    tol = f32_tol(terms or x.shape[-1], x if scale is None else scale)
    for name in ("logprob", "logsumexp", "entropy"):
        got = getattr(stats, name).double()
        np.testing.assert_allclose(got.numpy(), want[name].numpy(), rtol=0, atol=tol, err_msg=name)
    # Ranks are exact except where another logit is within float32 rounding of the target's.
    t = (want["logprob"] + lse).nan_to_num()[:, None]
    eps = tol
    low = torch.where(want["rank"] == 0, 0, (x > t + eps).sum(-1) + 1)
    high = torch.where(want["rank"] == 0, 0, (x > t - eps).sum(-1))
    got = stats.rank
    assert bool(((got >= low) & (got <= torch.maximum(high, low))).all()), (got, want["rank"])
    near_tie = high > low
    np.testing.assert_array_equal(got[~near_tie].numpy(), want["rank"][~near_tie].numpy())
    assert stats.top_k_ids.shape == (len(want["rank"]), k) and stats.top_k_ids.dtype == torch.int64
    if k:
        np.testing.assert_allclose(stats.top_k_logprobs.double().numpy(), want["top_vals"].numpy(),
                                   rtol=0, atol=tol)
        # the returned ids carry the top values (true under ties too)
        picked = want["x"].gather(1, stats.top_k_ids) - want["logsumexp"][:, None]
        np.testing.assert_allclose(picked.numpy(), want["top_vals"].numpy(), rtol=0, atol=tol)
        if exact_ids:  # ids exact wherever the next or previous value is not within rounding
            vals = want["x"].topk(min(k + 1, x.shape[-1]), -1).values
            gaps = (vals[:, 1:] - vals[:, :-1]).abs() <= 2 * tol
            near = torch.zeros(vals.shape, dtype=torch.bool)
            near[:, 1:] |= gaps
            near[:, :-1] |= gaps
            near = near[:, :k]
            np.testing.assert_array_equal(stats.top_k_ids[~near].numpy(), want["top_ids"][~near].numpy())


def random_case(seed, t, v, dtype):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(t, v, generator=g) * 3).to(dtype)
    targets = torch.randint(0, v, (t,), generator=g)
    targets[1] = -100
    if t > 2:
        logits[2, : v // 3] = float("-inf")  # a masked vocabulary
    return logits, targets


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [0, 1, 20])
def test_token_stats_matches_float64(dtype, k):
    logits, targets = random_case(k + 100 * DTYPES.index(dtype), 19, 2500, dtype)  # V: 3 blocks, not a multiple
    check(token_stats(logits, targets, k), float64_stats(logits, targets, k), k, exact_ids=dtype == torch.float32)


def test_token_stats_any_row_stride_and_big_vocab():
    wide, targets = random_case(5, 6, 3000, torch.float32)
    view = wide[::2, :2900]  # every other row, and a row stride larger than V
    check(token_stats(view, targets[::2], 5), float64_stats(view, targets[::2], 5), 5)
    logits, targets = random_case(6, 2, 262_144, torch.bfloat16)  # Gemma 3's vocabulary
    check(token_stats(logits, targets, 20), float64_stats(logits, targets, 20), 20, exact_ids=False)


def test_token_stats_ties_nan_and_ignore():
    logits = torch.tensor([[1.0, 3.0, 3.0, 0.0, 3.0], [0.0, float("nan"), 1.0, 2.0, 0.5],
                           [float("-inf"), 2.0, float("-inf"), 2.0, 1.0]])
    s = token_stats(logits, torch.tensor([2, 3, -100]), 3)
    assert s.rank.tolist() == [1, 1, 0]  # ties share the best rank; ignored rows rank 0
    assert torch.isnan(s.logprob[1]) and torch.isnan(s.entropy[1]) and torch.isnan(s.logsumexp[1])
    assert torch.isnan(s.logprob[2]) and s.entropy[2] == pytest.approx(float(float64_stats(logits[2:], torch.tensor([1]), 1)["entropy"][0]), rel=1e-6)
    assert s.top_k_ids[0].tolist() == [1, 2, 4]  # equal logits: lower id first


def test_token_stats_rejects_bad_targets():
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        token_stats(torch.zeros(2, 10), torch.tensor([3, 10]))
    with pytest.raises(ValueError, match="top_k"):
        token_stats(torch.zeros(2, 10), torch.tensor([3, 1]), 65)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("head", [{}, {"bias": True}, {"logit_scale": 0.25}, {"softcap": 4.0}])
def test_fused_token_stats_matches_float64(dtype, head):
    g = torch.Generator().manual_seed(len(head) + DTYPES.index(dtype))
    t, d, v = 21, 40, 1300
    hidden = torch.randn(t, d, generator=g).to(dtype)
    weight = (torch.randn(v, d, generator=g) * 0.6).to(dtype)
    bias = torch.randn(v, generator=g).to(dtype) if head.get("bias") else None
    targets = torch.randint(0, v, (t,), generator=g)
    targets[3] = -100
    kw = dict(logit_scale=head.get("logit_scale"), softcap=head.get("softcap"))
    k = 20 if dtype == torch.float32 else 5
    got = fused_token_stats(hidden, weight, targets, k, bias=bias, **kw)
    logits = head_logits(hidden.double(), weight.double(), None if bias is None else bias.double(), **kw)
    # fp16/bf16 inputs are exact in float32 and the oracle starts from the same values: one bound
    dots = (hidden.double().abs() @ weight.double().abs().T).max() + (0 if bias is None else bias.double().abs().max())
    check(got, float64_stats(logits, targets, k), k, terms=v * d, scale=dots)


def test_fused_equals_logits_kernel_on_a_tied_model_head():
    g = torch.Generator().manual_seed(3)
    emb = torch.randn(700, 32, generator=g)  # a tied embedding used as the head
    hidden = torch.randn(9, 32, generator=g)
    targets = torch.randint(0, 700, (9,), generator=g)
    a = fused_token_stats(hidden, emb, targets, 20)
    b = token_stats(hidden @ emb.T, targets, 20)
    # two float32 paths (the kernel's dot products, torch's matmul), each within the bound
    tol = 2 * f32_tol(700 * 32, (hidden.double().abs() @ emb.double().abs().T).max())
    for name in ("logprob", "entropy", "logsumexp", "top_k_logprobs"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name), rtol=0, atol=tol)
    assert torch.equal(a.rank, b.rank) and torch.equal(a.top_k_ids, b.top_k_ids)


@pytest.mark.parametrize("method", ["fused", "logits"])
def test_engine_with_triton_equals_torch(tiny_model, monkeypatch, method):
    text = "The quick brown fox jumps over the lazy dog."
    want = lightlens.score(text, model=tiny_model, top_k=5, method=method)
    monkeypatch.setenv("LIGHTLENS_KERNELS", "triton")
    got = lightlens.score(text, model=tiny_model, top_k=5, method=method)
    tol = 2 * model_tol(tiny_model)  # Triton (numpy sums) and torch: two float32 paths, each within tol
    np.testing.assert_allclose(got.logprobs, want.logprobs, rtol=0, atol=tol)
    np.testing.assert_allclose(got.entropy, want.entropy, rtol=0, atol=tol)
    np.testing.assert_array_equal(got.ranks, want.ranks)
    np.testing.assert_array_equal(got.top_k_ids, want.top_k_ids)


def test_method_option_is_checked(tiny_gpt2, monkeypatch):
    with pytest.raises(ValueError, match="method must be one of"):
        lightlens.score("hello", model=tiny_gpt2, method="magic")
    monkeypatch.setattr(tiny_gpt2, "_head", None)
    with pytest.raises(ValueError, match="method='logits'"):
        lightlens.score("hello", model=tiny_gpt2, method="fused")


def test_kernel_benchmark_runs_on_cpu():
    from benchmarks import kernels as bench_kernels

    rows = bench_kernels.run([(16, 2048, 32)], k=5, device="cpu")
    sides = {r["side"] for r in rows}
    assert {"naive", "ours_token_stats(torch)", "ours_fused(torch)"} <= sides
    assert all(0 < r["seconds"] < 60 for r in rows)  # runs and times something; speed is for benchmarks
