"""lightlens.divergence: two models on the same ids, per token, against float64 from the models'
own logits (tests/oracles.py); windows; the Divergence result; full distributions; bad input."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

import lightlens
from lightlens import Divergence
from lightlens.text.windows import plan_windows

from conftest import save_tiny_gpt2
from oracles import float64_divergence, model_tol

TEXTS = ["Hello world! Hello again, world. The quick brown fox jumps over the lazy dog.",
         "A language model assigns a probability to every token of a text."]


@pytest.fixture(scope="module")
def other_gpt2(tmp_path_factory):
    """The tiny GPT-2 with other weights (seed 1) and the same tokenizer: a different model."""
    return lightlens.load(save_tiny_gpt2(tmp_path_factory.mktemp("tiny-gpt2-other"), seed=1))


def logits_of(lm, ids) -> torch.Tensor:
    with torch.no_grad():
        return lm.model(torch.tensor([ids])).logits[0].double()


def window_oracle(base, model, ids, max_length, stride):
    """Float64 per-target values of a text under the HF sliding-window layout, each window's
    logits from the models' own forward passes (a loop written here, not lightlens's batches)."""
    out = {k: np.full(len(ids), np.nan) for k in ("kl", "reverse_kl", "js", "logprob_p", "logprob_q", "abs_d")}
    top1 = np.full((2, len(ids)), -1)
    for w in plan_windows(len(ids), max_length=max_length, stride=stride):
        lp, lq = logits_of(base, ids[w.begin:w.end]), logits_of(model, ids[w.begin:w.end])
        pos = list(w.positions)
        want = float64_divergence(lp[pos], lq[pos], torch.tensor(ids[w.first:w.last]))
        for k in ("kl", "reverse_kl", "js", "logprob_p", "logprob_q"):
            out[k][w.first:w.last] = want[k].numpy()
        out["abs_d"][w.first:w.last] = want["mean_abs_d"].numpy()
        top1[0, w.first:w.last], top1[1, w.first:w.last] = want["top1_p"].numpy(), want["top1_q"].numpy()
    return out, top1


def tol(base, model, abs_d):
    """KL, JS sensitivity to float32 logits off by up to ``model_tol`` (another summation order
    than the model's own forward): |dKL| <= 2·max|δ|·(E|log P − log Q| + 1), per token."""
    return 2 * (model_tol(base) + model_tol(model)) * (abs_d + 1)


def test_model_against_itself_is_zero(tiny_model):
    d = lightlens.divergence(TEXTS, base=tiny_model, model=tiny_model, top_k=3)
    ok = d.scored
    assert ok.sum() == len(d) - sum(not b for b in d.bos)  # the first token of a text without BOS
    for name in ("kl", "reverse_kl", "js", "delta_p"):
        assert float(np.abs(getattr(d, name)[ok]).max()) <= 1e-6, name
    s = d.stats()
    assert s["same_top1"] == 100.0 and s["mean_kl"] <= 1e-6 and s["cor_logprob"] == 1.0
    assert s["mean_top_k_overlap"] == 1.0
    np.testing.assert_array_equal(d.logprob[ok], d.logprob_base[ok])


@pytest.mark.parametrize("method", ["fused", "logits"])
def test_per_token_values_equal_float64(tiny_gpt2, other_gpt2, method):
    d = lightlens.divergence(TEXTS, base=tiny_gpt2, model=other_gpt2, top_k=4, method=method)
    for i, text in enumerate(TEXTS):
        sl = d.text_slice(i)
        ids = d.token_ids[sl].tolist()
        assert "".join(d.tokens[sl]) == text and (d.doc[sl] == i).all()
        want, top1 = window_oracle(tiny_gpt2, other_gpt2, ids, 64, 32)
        t = tol(tiny_gpt2, other_gpt2, want["abs_d"][1:])
        for name in ("kl", "reverse_kl", "js"):
            got = getattr(d, name)[sl]
            assert np.isnan(got[0])
            assert (np.abs(got[1:] - want[name][1:]) <= t).all(), name
        lt = model_tol(tiny_gpt2) + model_tol(other_gpt2)
        np.testing.assert_allclose(d.logprob_base[sl][1:], want["logprob_p"][1:], atol=lt, rtol=0)
        np.testing.assert_allclose(d.logprob[sl][1:], want["logprob_q"][1:], atol=lt, rtol=0)
        dp = np.exp(want["logprob_q"][1:]) - np.exp(want["logprob_p"][1:])
        np.testing.assert_allclose(d.delta_p[sl][1:], dp, atol=2 * lt, rtol=0)
        np.testing.assert_array_equal(d.top1_base[sl][1:], top1[0, 1:])
        np.testing.assert_array_equal(d.top1[sl][1:], top1[1, 1:])
    assert d.stats()["mean_kl"] > 0.01  # two different models: the test can fail


def test_windows_count_each_token_once_and_match_unwindowed(tiny_gpt2, other_gpt2):
    text = " ".join(TEXTS)  # fits the context of 64 unwindowed
    full = lightlens.divergence(text, base=tiny_gpt2, model=other_gpt2, max_length=64)
    win = lightlens.divergence(text, base=tiny_gpt2, model=other_gpt2, max_length=24, stride=8)
    n = len(full)
    assert 40 < n <= 64 and full.num_scored == win.num_scored == n - 1 and win.window["windowed"]
    same = slice(1, 24)  # the first window's targets: the same contexts in both runs
    t = 2 * (model_tol(tiny_gpt2) + model_tol(other_gpt2)) * 10
    np.testing.assert_allclose(win.kl[same], full.kl[same], atol=t, rtol=0)
    assert not np.allclose(win.kl[30:], full.kl[30:], atol=t)  # shorter contexts after: values differ
    want, _ = window_oracle(tiny_gpt2, other_gpt2, win.token_ids.tolist(), 24, 8)
    assert (np.abs(win.kl[1:] - want["kl"][1:]) <= tol(tiny_gpt2, other_gpt2, want["abs_d"][1:])).all()
    disjoint = lightlens.divergence(text, base=tiny_gpt2, model=other_gpt2, max_length=16, stride=16)
    assert disjoint.num_scored == n - 1


def test_stats_equal_numpy(tiny_gpt2, other_gpt2):
    d = lightlens.divergence(TEXTS, base=tiny_gpt2, model=other_gpt2)
    s, ok = d.stats(), d.scored
    kl, dp = d.kl[ok].astype(np.float64), d.delta_p[ok].astype(np.float64)
    assert s["num_scored"] == ok.sum() == len(d) - 2
    assert s["mean_kl"] == pytest.approx(kl.mean(), rel=1e-12)
    assert s["mean_kl_err"] == pytest.approx(kl.std(ddof=1) / math.sqrt(len(kl)), rel=1e-9)
    for q in (99.9, 99, 95, 90, 50, 10, 5, 1, 0.1):
        assert s[f"kl_p{q:g}"] == pytest.approx(np.percentile(kl, q), rel=1e-12)
    assert s["max_kl"] == kl.max() and s["min_kl"] == kl.min() and s["median_kl"] == np.median(kl)
    assert s["rms_delta_p"] == pytest.approx(math.sqrt((dp ** 2).mean()), rel=1e-12)
    assert s["mean_delta_p"] == pytest.approx(dp.mean(), rel=1e-12)
    same = (d.top1[ok] == d.top1_base[ok]).mean() * 100
    assert s["same_top1"] == pytest.approx(same)
    lpb, lpq = d.logprob_base[ok].astype(np.float64), d.logprob[ok].astype(np.float64)
    assert s["ln_ppl_ratio"] == pytest.approx(lpb.mean() - lpq.mean(), rel=1e-9)
    assert s["cor_logprob"] == pytest.approx(np.corrcoef(lpb, lpq)[0, 1], rel=1e-9)
    rs = tiny_gpt2.score(TEXTS)
    nll = sum(r.total_nll for r in rs) / sum(r.num_scored for r in rs)
    assert s["ppl_base"] == pytest.approx(math.exp(nll), rel=1e-4)
    report = d.report()
    for line in ("Mean    KLD:", "Median  KLD:", "99.9%   KLD:", "RMS Δp    :", "Same top p:", "Mean ln(PPL(Q)/PPL(base))"):
        assert line in report, line
    assert f"{s['mean_kl']:10.6f}" in report


def test_stats_of_hand_made_values():
    """The aggregates of known arrays (NaN = unscored), including partial top-1 agreement."""
    rng = np.random.default_rng(0)
    n = 501
    kl = rng.exponential(0.01, n).astype(np.float32)
    lpb = -rng.exponential(2.0, n).astype(np.float32)
    lpq = (lpb + rng.normal(0, 0.1, n)).astype(np.float32)
    kl[0] = lpb[0] = lpq[0] = np.nan
    top1b = rng.integers(0, 3, n)
    top1 = rng.integers(0, 3, n)
    z = np.zeros(n, np.float32)
    d = Divergence(texts=["x" * n], tokens=["x"] * n, token_ids=np.zeros(n), offsets=np.stack([np.arange(n), np.arange(n) + 1], 1),
                   doc=np.zeros(n), kl=kl, reverse_kl=kl, js=kl / 4, logprob_base=lpb, logprob=lpq,
                   delta_p=np.exp(lpq) - np.exp(lpb), entropy_base=z, entropy=z, top1_base=top1b, top1=top1,
                   rank_base=np.ones(n), rank=np.ones(n), top_k_overlap=z, top_k_ids_base=np.zeros((n, 0)),
                   top_k_logprobs_base=np.zeros((n, 0)), top_k_tokens_base=[[]] * n, top_k_ids=np.zeros((n, 0)),
                   top_k_logprobs=np.zeros((n, 0)), top_k_tokens=[[]] * n)
    s = d.stats()
    k = kl[1:].astype(np.float64)
    assert s["num_scored"] == n - 1 and s["mean_kl"] == pytest.approx(k.mean(), rel=1e-12)
    assert s["kl_p99.9"] == pytest.approx(np.percentile(k, 99.9)) and s["kl_p0.1"] == pytest.approx(np.percentile(k, 0.1))
    same = (top1b[1:] == top1[1:]).mean()
    assert s["same_top1"] == pytest.approx(100 * same) and 20 < s["same_top1"] < 50
    assert s["same_top1_err"] == pytest.approx(100 * math.sqrt(same * (1 - same) / (n - 2)))
    a, b = lpb[1:].astype(np.float64), lpq[1:].astype(np.float64)
    assert s["ln_ppl_ratio"] == pytest.approx(a.mean() - b.mean(), rel=1e-9)
    assert s["ln_ppl_ratio_err"] == pytest.approx((a - b).std(ddof=1) / math.sqrt(n - 1), rel=1e-9)
    assert s["cor_logprob"] == pytest.approx(np.corrcoef(a, b)[0, 1], rel=1e-9) and s["cor_logprob"] < 1
    assert not d.same_top1[0]


def test_result_saves_loads_and_renders(tiny_gpt2, other_gpt2, tmp_path):
    d = lightlens.divergence(TEXTS, base=tiny_gpt2, model=other_gpt2, top_k=3)
    for suffix in (".json", ".parquet"):
        e = Divergence.load(d.save(tmp_path / f"d{suffix}"))
        for name in ("kl", "reverse_kl", "js", "delta_p", "logprob", "top1", "doc", "offsets", "top_k_ids_base",
                     "top_k_logprobs", "top_k_overlap"):
            np.testing.assert_array_equal(getattr(e, name), getattr(d, name), err_msg=name)
        assert e.tokens == d.tokens and e.top_k_tokens == d.top_k_tokens and e.texts == d.texts
        assert e.stats() == d.stats() and e.base_model == d.base_model
    df = d.to_pandas()
    assert len(df) == len(d) and df["same_top1"].dtype == bool and list(df["kl"]) == pytest.approx(list(d.kl), nan_ok=True)
    assert "Divergence(" in repr(d) and "mean_kl=" in repr(d)
    html = d._repr_html_()
    assert html.count("data-tip=") == len(d) and "<script" not in html and "http" not in html
    with pytest.raises(ValueError, match="json or .parquet"):
        d.save(tmp_path / "d.csv")


def test_distributions_are_the_models_log_softmax(tiny_model):
    text = TEXTS[0]
    r = tiny_model.score(text)
    rows = list(tiny_model.distributions(text))
    allrows = torch.cat(rows)
    first = 0 if r.bos else 1
    assert allrows.dtype == torch.float32 and allrows.shape == (len(r) - first, tiny_model.vocab_size)
    ids = ([tiny_model.tokenizer.bos_token_id] if r.bos else []) + r.token_ids.tolist()
    want = logits_of(tiny_model, ids)[:-1].log_softmax(-1)[-len(allrows):]
    np.testing.assert_allclose(allrows.double().numpy(), want.numpy(), atol=model_tol(tiny_model) * 4, rtol=0)
    got = allrows.gather(1, torch.from_numpy(r.token_ids[first:])[:, None])[:, 0]
    np.testing.assert_allclose(got.numpy(), r.logprobs[first:], atol=model_tol(tiny_model))
    some = torch.cat(list(tiny_model.distributions(text, positions=[5, 2, 9])))
    np.testing.assert_array_equal(some.numpy(), allrows[[2 - first, 5 - first, 9 - first]].numpy())
    with pytest.raises(ValueError, match="has no distribution"):
        list(tiny_model.distributions(text, positions=[len(r)]))


def test_saved_base_file(tiny_gpt2, other_gpt2, tmp_path):
    text = TEXTS[0]
    exact = lightlens.divergence(text, base=tiny_gpt2, model=other_gpt2)
    f32 = tiny_gpt2.save_distributions(text, tmp_path / "base.safetensors")
    d = lightlens.divergence(text, base=f32, model=other_gpt2)
    t = 2 * (model_tol(tiny_gpt2) + model_tol(other_gpt2)) * 10
    np.testing.assert_allclose(d.kl, exact.kl, atol=t, rtol=0)
    np.testing.assert_array_equal(d.top1_base, exact.top1_base)
    assert d.base_model["file_dtype"] == "float32" and "exact" in d.exactness
    bf = tiny_gpt2.save_distributions(text, tmp_path / "base-bf16.safetensors", dtype="bfloat16")
    b = lightlens.divergence(text, base=str(bf), model=other_gpt2)
    assert "2^-9" in b.exactness
    # the stated first-order bound, from the float32 rows: 2^-9·E_P[|log P|·|log P − log Q − KL|]
    p = torch.cat(list(tiny_gpt2.distributions(text))).double()
    q = torch.cat(list(other_gpt2.distributions(text))).double()
    kl = torch.from_numpy(exact.kl[1:]).double()
    bound = 2.0**-9 * (p.exp() * p.abs() * (p - q - kl[:, None]).abs()).sum(1)
    err = np.abs(b.kl[1:] - exact.kl[1:])
    assert (err <= 2 * bound.numpy() + t).all() and err.max() > 0


def test_bad_input(tiny_gpt2, tiny_llama, other_gpt2, tmp_path):
    with pytest.raises(ValueError, match=r"lightlens\.compare"):
        lightlens.divergence("Hello world", base=tiny_gpt2, model=tiny_llama)
    with pytest.raises(ValueError, match="empty"):
        lightlens.divergence("", base=tiny_gpt2, model=other_gpt2)
    with pytest.raises(ValueError, match="text 1 is empty"):
        lightlens.divergence(["Hello", ""], base=tiny_gpt2, model=other_gpt2)
    with pytest.raises(ValueError, match="base="):
        lightlens.divergence("Hello world", model=other_gpt2)
    f = tiny_gpt2.save_distributions("Hello world", tmp_path / "hw.safetensors")
    with pytest.raises(ValueError, match="another text"):
        lightlens.divergence("Hello again", base=f, model=other_gpt2)
    with pytest.raises(ValueError, match="ids|tokenizes"):
        lightlens.divergence("Hello world", base=f, model=tiny_llama)
    with pytest.raises(ValueError, match="max_length=64"):
        lightlens.divergence("Hello world", base=f, model=other_gpt2, max_length=32)
    with pytest.raises(FileNotFoundError, match="save_distributions"):
        lightlens.divergence("Hello world", base=tmp_path / "missing.safetensors", model=other_gpt2)
    (tmp_path / "junk.safetensors").write_bytes(b"not a file")
    with pytest.raises(ValueError, match="not a safetensors"):
        lightlens.divergence("Hello world", base=tmp_path / "junk.safetensors", model=other_gpt2)
    with pytest.raises(ValueError, match="dtype"):
        tiny_gpt2.save_distributions("Hello world", tmp_path / "x.safetensors", dtype="float16")


def test_cli_prints_llamacpp_table_and_json(gpt2_dir, other_gpt2, tmp_path):
    path = tmp_path / "t.txt"
    path.write_text(TEXTS[0], encoding="utf-8")
    other_dir = other_gpt2.source if other_gpt2.source else None
    run = lambda *a: subprocess.run([sys.executable, "-m", "lightlens", "divergence", *a],  # noqa: E731
                                    capture_output=True, text=True, timeout=300)
    out = run(str(path), "--base", str(gpt2_dir), "--model", str(other_dir), "--out", str(tmp_path / "d.parquet"))
    assert out.returncode == 0, out.stderr
    for line in ("====== KL divergence statistics ======", "Mean    KLD:", "Same top p:"):
        assert line in out.stdout
    d = Divergence.load(tmp_path / "d.parquet")
    assert f"{d.stats()['mean_kl']:10.6f}" in out.stdout
    js = run(str(path), "--base", str(gpt2_dir), "--model", str(other_dir), "--json")
    s = json.loads(js.stdout)
    assert s["mean_kl"] == pytest.approx(d.stats()["mean_kl"], rel=1e-6) and s["num_scored"] == d.num_scored
    bad = run(str(path), "--base", str(gpt2_dir), "--model", "vllm+http://127.0.0.1:9")
    assert bad.returncode == 1 and "servers do not return" in bad.stderr and len(bad.stderr.splitlines()) == 1
