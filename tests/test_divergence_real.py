"""The real SmolLM2-135M: float32 against bfloat16 of the same weights on the first 2,048 WikiText-2
tokens, every per-token KL against float64 from the two models' own full logits."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import lightlens
from lightlens.text.tokens import truncate_tokens

from conftest import WIKITEXT

pytestmark = pytest.mark.real_model


def float64_kl(lp: torch.Tensor, lq: torch.Tensor) -> np.ndarray:
    """KL(P‖Q) per row from logits [T, V], in float64, 256 rows at a time."""
    out = []
    for a in range(0, len(lp), 256):
        p, q = lp[a:a + 256].double().log_softmax(-1), lq[a:a + 256].double().log_softmax(-1)
        out.append((p.exp() * (p - q)).sum(-1))
    return torch.cat(out).numpy()


def test_float32_vs_bfloat16_equals_float64(smollm2):
    bf16 = lightlens.load(smollm2.source, device="cpu", dtype=torch.bfloat16)
    text = truncate_tokens(smollm2.tokenizer, WIKITEXT.read_text(encoding="utf-8")[:20_000], 2048)
    d = lightlens.divergence(text, base=smollm2, model=bf16, progress=False)
    assert len(d) == 2048 and d.num_scored == 2047 and not d.window["windowed"]
    ids = torch.tensor([d.token_ids.tolist()])
    with torch.no_grad():
        lp = smollm2.model(ids).logits[0, :-1]
        lq = bf16.model(ids).logits[0, :-1]
    want = float64_kl(lp, lq)
    np.testing.assert_allclose(d.kl[1:], want, rtol=0, atol=1e-5)
    assert 1e-4 < want.mean() < 0.1  # bf16 does change the predictions: the test can fail
    s = d.stats()
    assert s["mean_kl"] == pytest.approx(want.mean(), abs=1e-6)
    for q in (99.9, 99, 95, 90, 50, 10, 5, 1, 0.1):
        assert s[f"kl_p{q:g}"] == pytest.approx(np.percentile(want, q), abs=1e-5), q
    assert s["max_kl"] == pytest.approx(want.max(), abs=1e-5) and s["min_kl"] == pytest.approx(want.min(), abs=1e-5)
    lp64, lq64 = lp.double().log_softmax(-1), lq.double().log_softmax(-1)
    tgt = torch.from_numpy(d.token_ids[1:])[:, None]
    a, b = lp64.gather(1, tgt)[:, 0].numpy(), lq64.gather(1, tgt)[:, 0].numpy()
    np.testing.assert_allclose(d.logprob_base[1:], a, atol=1e-4, rtol=0)
    np.testing.assert_allclose(d.logprob[1:], b, atol=1e-4, rtol=0)
    assert s["ln_ppl_ratio"] == pytest.approx(a.mean() - b.mean(), abs=1e-5)
    assert s["cor_logprob"] == pytest.approx(np.corrcoef(a, b)[0, 1], abs=1e-6)
    same = (lp.argmax(-1) == lq.argmax(-1)).double().mean().item() * 100
    assert s["same_top1"] == pytest.approx(same, abs=100 * 2 / 2047)  # a near-tie may flip
    assert 90 < s["same_top1"] < 100
