"""Every ScoreResult keeps each position's log-sum-exp, so raw logits are recoverable:
``logit = logprob + logsumexp`` (against the model's own logits in float64)."""
from __future__ import annotations

import json

import numpy as np
import torch

import lightlens
from lightlens import ScoreResult

from oracles import model_tol


def test_logits_recovered_from_logprob_and_logsumexp(tiny_model, tmp_path):
    text = "Hello world! Hello again, world. The cat sat on the mat."
    for method in ("fused", "logits"):
        r = tiny_model.score(text, top_k=4, method=method)
        ids = ([tiny_model.tokenizer.bos_token_id] if r.bos else []) + r.token_ids.tolist()
        with torch.no_grad():
            logits = tiny_model.model(torch.tensor([ids])).logits[0, :-1].double()
        first = 0 if r.bos else 1
        want_lse = logits.logsumexp(-1)[-(len(r) - first):].numpy()
        tol = model_tol(tiny_model) * 4
        assert np.isnan(r.logsumexp[:first]).all() and not np.isnan(r.logsumexp[first:]).any()
        np.testing.assert_allclose(r.logsumexp[first:], want_lse, atol=tol, rtol=1e-6)
        target = logits[-(len(r) - first):].gather(1, torch.from_numpy(r.token_ids[first:])[:, None])[:, 0]
        np.testing.assert_allclose(r.target_logits[first:], target.numpy(), atol=tol, rtol=1e-6)
        top = logits[-(len(r) - first):].gather(1, torch.from_numpy(r.top_k_ids[first:]))
        np.testing.assert_allclose(r.top_k_logits[first:], top.numpy(), atol=tol, rtol=1e-6)
    for suffix in (".json", ".parquet"):
        back = ScoreResult.load(r.save(tmp_path / f"r{suffix}"))
        np.testing.assert_array_equal(back.logsumexp, r.logsumexp)
    assert "logsumexp" in r.to_pandas().columns


def test_results_without_logsumexp_still_load(tmp_path):
    """A result saved before logsumexp was kept (and a server's) has NaN there."""
    r = lightlens.testing.MockServer  # noqa: F841 - servers build ScoreResults without it
    d = json.loads(json.dumps({"format": "lightlens.ScoreResult/1", "text": "ab", "tokens": ["a", "b"],
                               "token_ids": [1, 2], "offsets": [[0, 1], [1, 2]], "logprobs": [None, -1.0],
                               "entropy": [None, 2.0], "ranks": [0, 1], "top_k_ids": [[], []],
                               "top_k_logprobs": [[], []], "top_k_tokens": [[], []], "model": {}, "window": {},
                               "bos": False}))
    old = ScoreResult.from_dict(d)
    assert np.isnan(old.logsumexp).all() and np.isnan(old.target_logits).all()
