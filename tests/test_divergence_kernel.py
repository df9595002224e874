"""The divergence op (kernels/divergence): the chunked torch reference and the Triton kernel
under TRITON_INTERPRET=1 (set in conftest), both against float64 straight from the definitions
(tests/oracles.py). KL: 1e-5 relative where KL > 1e-4, 1e-7 absolute below (the issue's bound)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lightlens.kernels.divergence import divergence_stats, divergence_stats_reference
from lightlens.kernels.divergence.kernel import divergence_stats_triton

from oracles import f32_tol, float64_divergence, js_tol, kl_tol

OPS = {"reference": divergence_stats_reference, "triton": divergence_stats_triton}


def pair(t, v, scale, noise, dtype=torch.float32, seed=0):
    """Base logits of size ``scale`` and a perturbed copy (``noise``: how far the other model is)."""
    g = torch.Generator().manual_seed(seed)
    xp = torch.randn(t, v, generator=g) * scale
    xq = xp + noise * torch.randn(t, v, generator=g)
    targets = torch.randint(0, v, (t,), generator=g)
    return xp.to(dtype), xq.to(dtype), targets


def check(s, xp, xq, targets):
    """Every statistic against float64 of the same (rounded) inputs."""
    want = float64_divergence(xp, xq, targets)
    for name in ("kl", "reverse_kl", "js"):
        got, ref = getattr(s, name).double(), want[name]
        finite = torch.isfinite(ref)
        assert torch.equal(torch.isinf(got), torch.isinf(ref)), name
        err = (got - ref).abs()[finite]
        tol = (js_tol(want, xp.shape[1]) if name == "js" else kl_tol(ref))[finite]
        assert bool((err <= tol).all()), (name, float((err / tol).max()))
        assert bool((got[finite] >= -1e-7).all()), name
    tol = f32_tol(xp.shape[1], torch.cat([xp.float(), xq.float()]))
    for name in ("lse_p", "lse_q", "entropy_p", "entropy_q", "logprob_p", "logprob_q"):
        np.testing.assert_allclose(getattr(s, name).double().numpy(), want[name].numpy(), rtol=0, atol=tol,
                                   err_msg=name)
    for name in ("rank_p", "rank_q", "top1_p", "top1_q"):
        np.testing.assert_array_equal(getattr(s, name).numpy(), want[name].numpy(), err_msg=name)
    return want


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("scale,noise", [(3.0, 1.0), (5.0, 1e-2), (10.0, 3e-2), (20.0, 0.1), (10.0, 1e-3)])
def test_against_float64(op, scale, noise):
    v = 3000 if op == "reference" else 1000  # not a multiple of any block
    xp, xq, targets = pair(24, v, scale, noise)
    kw = {"block_v": 256} if op == "triton" else {"block_bytes": 8 * v * 4}  # several tiles / blocks
    check(OPS[op](xp, xq, targets, **kw), xp, xq, targets)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_inputs(op, dtype):
    xp, xq, targets = pair(16, 777, 8.0, 0.05, dtype)
    s = OPS[op](xp, xq, targets, top_k=3)
    check(s, xp, xq, targets)
    want = xp.float().log_softmax(-1).topk(3, dim=1)
    np.testing.assert_array_equal(s.top_k_ids_p.numpy(), want.indices.numpy())
    np.testing.assert_allclose(s.top_k_logprobs_p.numpy(), want.values.numpy(), atol=1e-5)


@pytest.mark.parametrize("op", OPS)
def test_identical_rows_give_zero(op):
    xp, _, targets = pair(20, 1500, 10.0, 0.0)
    xp[3, ::7] = float("-inf")  # masked entries in both
    s = OPS[op](xp, xp.clone(), targets)
    for name in ("kl", "reverse_kl", "js"):
        assert float(getattr(s, name).abs().max()) <= 1e-7, name
    assert torch.equal(s.top1_p, s.top1_q) and torch.equal(s.logprob_p, s.logprob_q)


@pytest.mark.parametrize("op", OPS)
def test_minus_inf_in_either_row(op):
    xp, xq, targets = pair(6, 500, 4.0, 0.5)
    xp[0, 10:200] = float("-inf")        # P has no mass there: those entries add nothing to KL(P‖Q)
    xq[1, 300:420] = float("-inf")       # Q has none where P has: KL(P‖Q) = inf, KL(Q‖P) finite
    xp[2, :250] = xq[2, :250] = float("-inf")  # both
    xq[3, 5] = float("-inf")
    xp[3, 5] = -60.0                     # P ~ 1e-27 there, not 0: still infinite
    targets[0] = 50                      # a target P gives probability 0
    s = OPS[op](xp, xq, targets, **({"block_v": 128} if op == "triton" else {}))
    want = check(s, xp, xq, targets)
    assert float(s.logprob_p[0]) == float("-inf") and torch.isfinite(s.kl[0])
    assert s.kl[1] == float("inf") and torch.isfinite(s.reverse_kl[1]) and torch.isfinite(s.js[1])
    assert s.kl[3] == float("inf") and torch.isfinite(want["js"][3])


@pytest.mark.parametrize("op", OPS)
def test_nan_and_ignored_rows(op):
    xp, xq, targets = pair(4, 300, 3.0, 0.3)
    xq[1, 7] = float("nan")
    targets[2] = -100
    s = OPS[op](xp, xq, targets)
    assert all(bool(torch.isnan(getattr(s, n)[1])) for n in ("kl", "reverse_kl", "js", "lse_q", "logprob_p"))
    assert int(s.top1_q[1]) == -1
    assert torch.isnan(s.logprob_p[2]) and int(s.rank_p[2]) == 0 and torch.isfinite(s.kl[2])
    assert torch.isfinite(s.kl[[0, 3]]).all()


@pytest.mark.parametrize("op", OPS)
def test_gemma_vocabulary(op):
    """V = 262,144 (Gemma 3) in bf16, two rows: one tile under the interpreter."""
    xp, xq, targets = pair(2, 262_144, 6.0, 0.05, torch.bfloat16, seed=3)
    check(OPS[op](xp, xq, targets), xp, xq, targets)


def test_dispatch_on_cpu_is_the_reference():
    xp, xq, targets = pair(5, 100, 2.0, 0.5)
    a, b = divergence_stats(xp, xq, targets), divergence_stats_reference(xp, xq, targets)
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_bad_shapes():
    with pytest.raises(ValueError, match="one shape"):
        divergence_stats(torch.zeros(2, 5), torch.zeros(2, 6), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="targets"):
        divergence_stats(torch.zeros(2, 5), torch.zeros(2, 5), torch.zeros(3, dtype=torch.long))


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("k", [0, 1, 3])
def test_ties_at_the_top_take_the_lowest_id(op, k):
    xp, xq, targets = pair(4, 300, 1.0, 0.1)
    xp[:, [250, 40, 90]] = 9.0  # three equal best logits in P
    xq[:, 77] = 9.0
    s = OPS[op](xp, xq, targets, top_k=k)
    assert s.top1_p.tolist() == [40] * 4 and s.top1_q.tolist() == [77] * 4
    want = float64_divergence(xp, xq, targets)
    np.testing.assert_array_equal(s.rank_p.numpy(), want["rank_p"].numpy())


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("gap", [16.0, 19.0, 25.0])
def test_one_token_far_more_likely_under_p(op, gap):
    """P gives one token e^gap times Q's probability (two different models): reverse KL gets
    about p of it and must stay finite and exact (1 + expm1(-D) rounds to 0 from D ~ 17)."""
    xp, xq, targets = pair(6, 3000, 2.0, 0.01)
    xq[:, 7] -= gap  # log P - log Q = gap at token 7: still the fast path (|D| <= 30)
    kw = {"block_v": 256} if op == "triton" else {}
    s = OPS[op](xp, xq, targets, **kw)
    assert torch.isfinite(s.reverse_kl).all()
    check(s, xp, xq, targets)
