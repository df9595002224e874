"""The pure-torch token statistics against an independent float64 computation."""
from __future__ import annotations


import numpy as np
import pytest
import torch

from lightlens.kernels import fused_token_stats_reference, token_stats_reference

from oracles import f32_tol, float64_stats

@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("k", [0, 1, 20])
def test_token_stats_reference_matches_float64(dtype, k):
    g = torch.Generator().manual_seed(k + 7)
    T, V = 37, 1000
    logits = (torch.randn(T, V, generator=g) * 4).to(dtype)
    logits[3, 100:200] = float("-inf")  # masked vocabulary
    targets = torch.randint(0, V, (T,), generator=g)
    targets[5] = -100  # ignore index
    s = token_stats_reference(logits, targets, k, chunk_bytes=4 * V * 8)  # 8 rows per chunk
    o = float64_stats(logits, targets, k)
    lp, lse, ent, rank = o["logprob"], o["logsumexp"], o["entropy"], o["rank"]
    tol = f32_tol(V, logits)  # ~8e-5: |logits| < 18
    np.testing.assert_allclose(s.logprob.numpy(), lp.numpy(), rtol=0, atol=tol)
    np.testing.assert_allclose(s.logsumexp.numpy(), lse.numpy(), rtol=0, atol=tol)
    np.testing.assert_allclose(s.entropy.numpy(), ent.numpy(), rtol=0, atol=tol)
    np.testing.assert_array_equal(s.rank.numpy(), rank.numpy())  # comparisons of the same floats: exact
    assert s.top_k_ids.shape == (T, k)
    if k:
        np.testing.assert_allclose(s.top_k_logprobs.numpy(), o["top_vals"].numpy(),
                                   rtol=0, atol=tol)
        if dtype == torch.float32:  # no ties: ids exact
            np.testing.assert_array_equal(s.top_k_ids.numpy(), o["top_ids"].numpy())


def test_ties_share_the_best_rank_and_nan_propagates():
    logits = torch.tensor([[1.0, 3.0, 3.0, 0.0], [float("nan"), 0.0, 1.0, 2.0]])
    s = token_stats_reference(logits, torch.tensor([2, 3]), 2)
    assert s.rank[0] == 1 and s.rank[0] == token_stats_reference(logits, torch.tensor([1, 3])).rank[0]
    assert torch.isnan(s.logprob[1]) and torch.isnan(s.entropy[1])


@pytest.mark.parametrize("extras", [{}, {"bias": True}, {"logit_scale": 0.5}, {"softcap": 5.0}])
def test_fused_reference_equals_logits_path(extras):
    g = torch.Generator().manual_seed(1)
    T, D, V = 29, 16, 300
    hidden, weight = torch.randn(T, D, generator=g), torch.randn(V, D, generator=g)
    bias = torch.randn(V, generator=g) if extras.get("bias") else None
    scale, cap = extras.get("logit_scale"), extras.get("softcap")
    targets = torch.randint(0, V, (T,), generator=g)
    s = fused_token_stats_reference(hidden, weight, targets, 5, bias=bias, logit_scale=scale,
                                    softcap=cap, chunk_bytes=4 * V * 4)
    x = hidden.double() @ weight.double().T + (0 if bias is None else bias.double())
    x = x * (scale or 1.0)
    if cap:
        x = cap * torch.tanh(x / cap)
    o = float64_stats(x, targets, 5)
    lp, lse, ent, rank = o["logprob"], o["logsumexp"], o["entropy"], o["rank"]
    # The float32 logits are D-term dot products, off by <= ~log2(D)*eps*sum|h*w| (the bias, scale
    # and softcap add a rounding or two and do not grow it): the scale is sum|h*w|, not max|x|.
    dot_scale = (hidden.double().abs() @ weight.double().abs().T).max() + (0 if bias is None else bias.abs().max())
    tol = f32_tol(V * D, dot_scale)  # ~2e-4
    np.testing.assert_allclose(s.logprob.numpy(), lp.numpy(), rtol=0, atol=tol)
    np.testing.assert_allclose(s.entropy.numpy(), ent.numpy(), rtol=0, atol=tol)
    np.testing.assert_array_equal(s.top_k_ids.numpy(), o["top_ids"].numpy())
