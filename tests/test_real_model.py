"""The real SmolLM2-135M-Instruct (Q4_1 GGUF from PyPI, dequantised): numbers against oracles."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import lightlens
from lightlens.models.gguf import converted_dir

from conftest import WIKITEXT
from oracles import model_oracle
from test_scoring import hf_protocol_nll

pytestmark = pytest.mark.real_model


def test_logprobs_equal_float64_and_model_loss(smollm2):
    text = "The capital of France is Paris. Its most famous landmark is the Eiffel Tower."
    r = lightlens.score(text, model=smollm2, top_k=5)
    ids = smollm2.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert list(r.token_ids) == ids and not r.bos
    lp, ent, rank, top_ids, _ = model_oracle(smollm2, ids)
    np.testing.assert_allclose(r.logprobs[1:], lp, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(r.entropy[1:], ent, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(r.ranks[1:], rank)
    np.testing.assert_array_equal(r.top_k_ids[1:], top_ids)
    t = torch.tensor([ids])
    with torch.no_grad():
        loss = smollm2.model(t, labels=t).loss.item()
    assert r.nll == pytest.approx(loss, rel=1e-5)
    assert r.model["name"] == "SmolLM2-135M-Instruct.Q4_1" and r.model["dtype"] == "float32"
    assert smollm2.head is not None  # tied Llama head: scored from hidden states


@pytest.mark.slow
def test_wikitext_4096_tokens_equal_hf_protocol(smollm2):
    text = WIKITEXT.read_text(encoding="utf-8")[:40_000]
    c = lightlens.perplexity([text], model=smollm2, max_length=1024, stride=512, max_tokens=4096,
                             progress=False)
    prefix = c.documents[0].text
    ids = smollm2.tokenizer(prefix, add_special_tokens=False)["input_ids"]
    assert len(ids) == 4096
    nll, n = hf_protocol_nll(smollm2, ids, 1024, 512)
    assert c.num_scored == n == 4095 and c.num_tokens == 4096
    assert c.perplexity == pytest.approx(math.exp(nll), rel=1e-5)
    assert 10 < c.perplexity < 40  # SmolLM2-135M on WikiText-2 is in the 20s


def test_gguf_is_converted_once(smollm2):
    from lightlens.models.fetch import default_gguf_path

    folder = converted_dir(default_gguf_path())
    assert (folder / "config.json").exists() and (folder / "model.safetensors").exists()
    assert "quantization_config" not in (folder / "config.json").read_text()
