"""End-to-end scoring on tiny seeded models, against float64 torch and the model's own loss."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

import lightlens
from lightlens.text.windows import plan_windows

from oracles import model_oracle, model_tol

TEXT = "The quick brown fox jumps over the lazy dog. Perplexity is the exponential of the mean."


def full_ids(lm, text, bos):
    ids = lm.tokenizer(text, add_special_tokens=False)["input_ids"]
    return [lm.tokenizer.bos_token_id] + ids if bos else ids


def test_matches_float64_log_softmax_and_model_loss(tiny_model):
    r = lightlens.score(TEXT, model=tiny_model, top_k=5)
    ids = full_ids(tiny_model, TEXT, r.bos)
    lp, ent, rank, top_ids, top_lp = model_oracle(tiny_model, ids)
    s = slice(0 if r.bos else 1, None)  # the result's scored tokens
    tol = model_tol(tiny_model)  # lightlens redoes the head's matmul (fused): float32 both ways
    np.testing.assert_allclose(r.logprobs[s], lp, rtol=0, atol=tol)
    np.testing.assert_allclose(r.entropy[s], ent, rtol=0, atol=tol)
    np.testing.assert_array_equal(r.ranks[s], rank)
    np.testing.assert_array_equal(r.top_k_ids[s], top_ids)
    np.testing.assert_allclose(r.top_k_logprobs[s], top_lp, rtol=0, atol=tol)
    with torch.no_grad():
        t = torch.tensor([ids])
        loss = tiny_model.model(t, labels=t).loss.item()
    # a mean of logprobs each within tol (the model's float32 loss is within tol of float64 too)
    assert r.nll == pytest.approx(loss, abs=2 * tol)
    assert r.perplexity == pytest.approx(math.exp(loss), rel=2 * tol)  # d(exp(nll)) = exp(nll)*d(nll)
    assert r.top_k_tokens[-1][0] == tiny_model.tokenizer.decode([int(top_ids[-1, 0])])


def test_bos_policy_first_token(tiny_llama, tiny_gpt2):
    with_bos = lightlens.score("Hello world again", model=tiny_llama)
    assert with_bos.bos and not math.isnan(with_bos.logprobs[0])  # Llama: BOS prepended, all scored
    assert with_bos.num_scored == len(with_bos)
    no_bos = lightlens.score("Hello world again", model=tiny_gpt2)
    assert not no_bos.bos and math.isnan(no_bos.logprobs[0]) and no_bos.ranks[0] == 0
    forced = lightlens.score("Hello world again", model=tiny_gpt2, bos=True)
    assert forced.bos and forced.num_scored == len(forced)
    off = lightlens.score("Hello world again", model=tiny_llama, bos=False)
    assert not off.bos and math.isnan(off.logprobs[0]) and off.num_scored == len(off) - 1


def test_no_double_bos(tiny_llama):
    text = "<s> Hello world"  # the text itself starts with the BOS token
    from lightlens.text.tokens import encode

    enc = encode(tiny_llama.tokenizer, text)
    assert list(enc.ids).count(tiny_llama.tokenizer.bos_token_id) == 1
    assert "".join(enc.tokens) == text


def hf_protocol_nll(lm, ids, max_length, stride):
    """The Hugging Face 'perplexity of fixed-length models' loop, written out independently."""
    t = torch.tensor([ids])
    nll_sum, n_tokens, prev_end = 0.0, 0, 0
    for begin in range(0, t.size(1), stride):
        end = min(begin + max_length, t.size(1))
        trg_len = end - prev_end
        input_ids = t[:, begin:end]
        target = input_ids.clone()
        target[:, :-trg_len] = -100
        with torch.no_grad():
            loss = lm.model(input_ids, labels=target).loss
        # The model shifts labels left by one, so position 0's label is never a target. (The
        # guide subtracts 1 from every window's count; that is only right for the first window.)
        n_valid = (target[:, 1:] != -100).sum().item()
        nll_sum += loss.item() * n_valid
        n_tokens += n_valid
        prev_end = end
        if end == t.size(1):
            break
    return nll_sum / n_tokens, n_tokens


@pytest.mark.parametrize("max_length,stride", [(16, 8), (16, 5), (24, 1), (10, 9)])
def test_sliding_window_equals_hf_protocol(tiny_model, max_length, stride):
    text = " ".join([TEXT] * 3)
    r = lightlens.score(text, model=tiny_model, max_length=max_length, stride=stride, bos=False)
    nll, n = hf_protocol_nll(tiny_model, full_ids(tiny_model, text, False), max_length, stride)
    assert r.num_scored == n == len(r) - 1  # every token but the first scored, once
    assert r.nll == pytest.approx(nll, abs=2 * model_tol(tiny_model))  # both float32, as above
    assert r.window["windowed"] and r.window["num_windows"] > 1


def test_stride_equal_max_length_is_disjoint_windows(tiny_model):
    text = " ".join([TEXT] * 3)
    L = 12
    r = lightlens.score(text, model=tiny_model, max_length=L, stride=L, bos=False)
    ids = full_ids(tiny_model, text, False)
    # Disjoint inputs ids[kL:(k+1)L]; each predicts the next L tokens, so all are scored.
    want = np.full(len(ids), np.nan)
    for begin in range(0, len(ids), L):
        chunk = ids[begin : begin + L]
        with torch.no_grad():
            logp = tiny_model.model(torch.tensor([chunk])).logits[0].double().log_softmax(-1)
        for p in range(len(chunk)):
            if begin + p + 1 < len(ids):
                want[begin + p + 1] = logp[p, ids[begin + p + 1]].item()
    np.testing.assert_allclose(r.logprobs, want, rtol=0, atol=model_tol(tiny_model))
    assert r.num_scored == len(ids) - 1


def test_short_text_window_equals_one_pass(tiny_model):
    one = lightlens.score(TEXT, model=tiny_model)
    windowed = lightlens.score(TEXT, model=tiny_model, max_length=60, stride=7)
    assert not one.window["windowed"] and not windowed.window["windowed"]
    np.testing.assert_array_equal(one.logprobs, windowed.logprobs)


def test_text_longer_than_context_is_windowed_automatically(tiny_model):
    text = " ".join([TEXT] * 6)  # far more than the tiny models' 64 positions
    r = lightlens.score(text, model=tiny_model)
    assert len(r) > tiny_model.context_length
    assert r.window["windowed"] and r.window["max_length"] == tiny_model.context_length
    assert r.num_scored == len(r) - (0 if r.bos else 1)
    assert "windowed" in repr(r)


def test_batched_equals_one_by_one(tiny_model):
    texts = ["Hi.", TEXT, "Hello world! Hello again, world.", " ".join([TEXT] * 4), "a b"]
    batched = lightlens.score(texts, model=tiny_model, batch_size=4)
    tol = 2 * model_tol(tiny_model)  # padded shapes: other blocks, other rounding; each within tol
    for text, b in zip(texts, batched):
        single = lightlens.score(text, model=tiny_model, batch_size=1)
        assert b.text == text and b.tokens == single.tokens
        np.testing.assert_allclose(b.logprobs, single.logprobs, rtol=0, atol=tol)
        np.testing.assert_allclose(b.entropy, single.entropy, rtol=0, atol=tol)
        np.testing.assert_array_equal(b.ranks, single.ranks)


def test_logits_path_equals_hidden_path(tiny_model, monkeypatch):
    fused = lightlens.score(TEXT, model=tiny_model, top_k=5)
    assert tiny_model.head is not None
    monkeypatch.setattr(tiny_model, "_head", None)  # as for a head we do not model
    logits = lightlens.score(TEXT, model=tiny_model, top_k=5)
    np.testing.assert_allclose(fused.logprobs, logits.logprobs, rtol=0, atol=2 * model_tol(tiny_model))
    np.testing.assert_array_equal(fused.top_k_ids, logits.top_k_ids)


def test_one_token_text_warns_and_gives_nan(tiny_gpt2):
    with pytest.warns(lightlens.NoScoredTokensWarning, match="bos=True"):
        r = lightlens.score("a", model=tiny_gpt2)
    assert len(r) == 1 and r.num_scored == 0 and math.isnan(r.perplexity)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"text": ""}, ValueError, "empty"),
        ({"text": b"bytes"}, TypeError, "decode"),
        ({"text": 42}, TypeError, "str"),
        ({"text": []}, ValueError, "non-empty"),
        ({"text": ["ok", None]}, TypeError, "NoneType"),
        ({"max_length": 1}, ValueError, "max_length"),
        ({"max_length": 16, "stride": 17}, ValueError, "stride"),
        ({"max_length": 16, "stride": 0}, ValueError, "stride"),
        ({"max_length": 1000}, ValueError, "context"),
        ({"top_k": -1}, ValueError, "top_k"),
        ({"batch_size": 0}, ValueError, "batch_size"),
    ],
)
def test_bad_input_is_a_clear_error(tiny_gpt2, kwargs, error, match):
    kwargs = {"text": TEXT, **kwargs}
    text = kwargs.pop("text")
    with pytest.raises(error, match=match):
        lightlens.score(text, model=tiny_gpt2, **kwargs)


def test_windows_cover_every_target_once():
    for n in range(1, 40):
        for L in range(2, 12):
            for S in range(1, L + 1):
                ws = plan_windows(n, max_length=L, stride=S)
                targets = [i for w in ws for i in range(w.first, w.last)]
                assert targets == list(range(1, n))
                for w in ws:
                    assert 0 < w.end - w.begin <= L and w.begin < w.first and w.last <= w.end + 1
                    assert w.last - 1 < n


def test_perplexity_of_a_corpus_aggregates_tokens_not_texts(tiny_gpt2, tmp_path):
    texts = ["Hello world! Hello again, world.", TEXT, " ".join([TEXT] * 3)]
    c = lightlens.perplexity(texts, model=tiny_gpt2, progress=False)
    rs = lightlens.score(texts, model=tiny_gpt2)
    total = -sum(float(np.nansum(r.logprobs.astype(np.float64))) for r in rs)
    n = sum(r.num_scored for r in rs)
    # The same float32 logprobs summed in float64 here and there: only the order of ~100 float64
    # additions differs (~1e-14); 1e-6 allows a float32 sum somewhere, not a per-text average.
    assert c.num_scored == n and c.perplexity == pytest.approx(math.exp(total / n), rel=1e-6)
    assert c.perplexity != pytest.approx(np.mean([r.perplexity for r in rs]), rel=1e-3)
    nbytes = sum(len(r.scored_text.encode()) for r in rs)
    assert c.bits_per_byte == pytest.approx(total / math.log(2) / nbytes, rel=1e-6)
    words = sum(len(r.scored_text.split()) for r in rs)
    assert c.word_perplexity == pytest.approx(math.exp(total / words), rel=1e-6)
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text("\n".join('{"text": %s}' % __import__("json").dumps(t) for t in texts))
    assert lightlens.perplexity(jsonl, model=tiny_gpt2).perplexity == pytest.approx(c.perplexity, rel=1e-6)
    with pytest.raises(FileNotFoundError, match="no file"):
        lightlens.perplexity("missing/corpus.txt", model=tiny_gpt2)


def test_second_score_does_not_reload(llama_dir, monkeypatch):
    from lightlens.models import loading

    calls = []
    real = loading._load_uncached
    monkeypatch.setattr(loading, "_load_uncached", lambda *a: calls.append(a) or real(*a))
    loading.clear_cache()
    lightlens.score("Hello world", model=str(llama_dir))
    lightlens.score("Hello again", model=str(llama_dir))
    assert len(calls) == 1
    assert calls[0][5] is False  # trust_remote_code is never set unless asked


def test_no_warnings_on_normal_scoring(tiny_model):
    with warnings.catch_warnings():
        warnings.simplefilter("error", lightlens.NoScoredTokensWarning)
        lightlens.score(TEXT, model=tiny_model)
