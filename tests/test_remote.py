"""Remote backends: real HTTP on 127.0.0.1 in each server's format, faults, keys, pools."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest

import lightlens
from lightlens.errors import RemoteError, RemoteResponseError
from lightlens.remote import FORMATS, RemoteModel, to_result
from lightlens.remote.http import RetryPolicy, _seconds
from lightlens.testing.mock_server import MockServer, scorer_from_model, word_scorer

from conftest import TRICKY_TEXTS

FIXTURES = Path(__file__).parent / "fixtures" / "remote"
FAST = dict(backoff=0.001, max_wait=1.0)


def fixture(kind: str) -> dict:
    return json.loads((FIXTURES / f"{kind}.json").read_text())


# ---- payloads as the servers send them ---------------------------------------------------
def test_vllm_fixture():
    body = fixture("vllm")
    r = to_result("The cat sat on", FORMATS["vllm"].parse(body), top_k=2, model={})
    positions = body["choices"][0]["prompt_logprobs"]
    assert r.tokens == ["The", " cat", " sat", " on"]
    assert r.offsets.tolist() == [[0, 3], [3, 7], [7, 11], [11, 14]]
    assert r.token_ids.tolist() == body["choices"][0]["prompt_token_ids"]
    assert math.isnan(r.logprobs[0]) and not r.bos
    ids = r.token_ids.tolist()
    assert r.logprobs[1:].tolist() == [positions[i][str(ids[i])]["logprob"] for i in (1, 2, 3)]
    assert r.ranks.tolist() == [0, 1503, 37, 1]
    assert r.top_k_tokens[1] == [",", " is"] and r.top_k_ids[1].tolist() == [11, 318]
    assert r.top_k_ids[3].tolist() == [319, 287]  # the token itself when it is in the top-k
    assert np.isnan(r.entropy).all()  # servers do not report entropy


def test_openai_fixture_drops_the_generated_token_and_derives_ranks():
    body = fixture("openai")
    lp = body["choices"][0]["logprobs"]
    r = to_result("The cat sat on", FORMATS["openai"].parse(body, "The cat sat on"), top_k=2, model={})
    assert r.tokens == lp["tokens"][:4]
    assert r.logprobs[1:].tolist() == lp["token_logprobs"][1:4]
    assert (r.token_ids == -1).all()  # the legacy API gives no ids
    assert r.ranks.tolist() == [0, -1, -1, 1]  # known only where the token is in the top-k; -1: not reported
    assert r.top_k_tokens[2] == [".", ","]


def test_tgi_fixture_with_bos_and_sentencepiece_spaces():
    body = fixture("tgi")
    prefill = body["details"]["prefill"]
    r = to_result("The cat sat", FORMATS["tgi"].parse(body), top_k=3, model={})
    assert r.bos and r.tokens == ["The", " cat", " sat"]
    assert r.token_ids.tolist() == [p["id"] for p in prefill[1:]]
    assert r.logprobs.tolist() == [p["logprob"] for p in prefill[1:]]  # every text token scored
    assert (r.top_k_ids == -1).all()  # TGI gives no prompt top-k


def test_lightllm_fixture_needs_a_tokenizer():
    body = fixture("lightllm")
    st = FORMATS["lightllm"].parse(body)
    assert st.ids == body["prompt_token_ids"]
    assert st.logprobs == [None] + [list(p[1].values())[0] for p in body["prompt_logprobs"]]
    with pytest.raises(RemoteResponseError, match="tokenizer="):
        to_result("The cat sat cat", st, top_k=0, model={})


def test_lightllm_inconsistent_pairs_are_refused():
    body = fixture("lightllm")
    body["prompt_logprobs"][1][1] = {"999": -1.0}
    with pytest.raises(RemoteResponseError, match="pair 1"):
        FORMATS["lightllm"].parse(body)
    with pytest.raises(RemoteResponseError, match="return_all_prompt_logprobs"):
        FORMATS["lightllm"].parse({"generated_text": ["x"]})


@pytest.mark.parametrize("kind", sorted(FORMATS))
def test_garbage_shapes_are_clear_errors(kind):
    for body in ({"choices": "nope"}, {"details": {"prefill": [{"id": "x"}]}}, ["a"], None, {"prompt_logprobs": 3}):
        with pytest.raises(RemoteResponseError):
            FORMATS[kind].parse(body)


# ---- the same numbers as in-process --------------------------------------------------------
CASES = [("vllm", "text", False), ("openai", "text", False), ("tgi", "decode", False),
         ("lightllm", "text", True), ("openai", "raw", True), ("tgi", "decode", True)]


@pytest.mark.parametrize("kind,pieces,with_tokenizer", CASES)
def test_remote_equals_in_process(tiny_model, kind, pieces, with_tokenizer):
    lm = tiny_model
    texts = [t for t in TRICKY_TEXTS if len(lm.tokenizer(t, add_special_tokens=False)["input_ids"]) > 1]
    if not with_tokenizer and lm.tokenizer.unk_token_id is not None:  # <unk> cannot be placed by its string
        texts = [t for t in texts if lm.tokenizer.unk_token_id not in lm.tokenizer(t)["input_ids"]]
    local = lm.score(texts, top_k=3)
    with MockServer(kind, scorer_from_model(lm, top_k=3, pieces=pieces)) as server:
        remote = RemoteModel(kind, server.url, tokenizer=lm.tokenizer if with_tokenizer else None,
                             concurrency=4).score(texts, top_k=3)
    for a, b in zip(local, remote):
        assert "".join(b.tokens) == a.text and b.bos == a.bos and len(b.tokens) == len(a.tokens)
        if pieces != "decode" or with_tokenizer or a.text.isascii():
            # Tokens decoded one by one lose which bytes of a split character each holds: there
            # spans may differ (the numbers may not); everywhere else the spans are exact.
            assert b.tokens == a.tokens and b.offsets.tolist() == a.offsets.tolist()
        np.testing.assert_allclose(b.logprobs, a.logprobs, rtol=1e-5, atol=1e-5)  # a: batched, server: one
        assert b.perplexity == pytest.approx(a.perplexity, rel=1e-5)
        if kind != "openai" or with_tokenizer:
            assert b.token_ids.tolist() == a.token_ids.tolist()
        if kind == "vllm":
            assert b.ranks.tolist() == a.ranks.tolist()
            assert b.top_k_ids.tolist() == a.top_k_ids.tolist()
            np.testing.assert_allclose(b.top_k_logprobs, a.top_k_logprobs, rtol=1e-5, atol=1e-5)
        known = b.ranks > 0
        assert (b.ranks[known] == a.ranks[known]).all()


def test_score_with_a_server_spec_and_refused_options():
    with MockServer("vllm", word_scorer) as server:
        r = lightlens.score("Hello there, world.", model=f"vllm+{server.url}", top_k=1)
        assert r.tokens == ["Hello", " there,", " world."] and r.model["backend"] == "vllm"
        assert r.model["url"] == server.url and r.model["name"] == "mock"  # asked from /v1/models
        with pytest.raises(ValueError, match="max_length"):
            lightlens.score("Hello there", model=f"vllm+{server.url}", max_length=8)
    assert "vllm" in r.to_dict()["model"]["backend"]


# ---- faults --------------------------------------------------------------------------------
@pytest.mark.parametrize("fault", ["slow", "500", "429", "drop", "truncated", "malformed"])
def test_transient_faults_are_retried(fault):
    with MockServer("vllm", word_scorer, faults=[fault], slow_seconds=1.0) as server:
        m = RemoteModel("vllm", server.url, model_name="mock", timeout=0.4, **FAST)
        r = m.score("Hello there, world.")
        assert len(server.requests) == 2  # one fault, one good answer
    assert r.logprobs[1:].tolist() == [-1.0, -1.0]


@pytest.mark.parametrize("fault", ["500", "drop", "malformed", "slow"])
def test_persistent_faults_give_up_with_a_clear_error(fault):
    with MockServer("tgi", word_scorer, always=fault, slow_seconds=0.5) as server:
        m = RemoteModel("tgi", server.url, timeout=0.2, retries=3, **FAST)
        t0 = time.perf_counter()
        with pytest.raises(RemoteError, match="gave up after 4 attempts"):
            m.score("Hello there")
        assert time.perf_counter() - t0 < 5
        assert len(server.requests) == 4


@pytest.mark.parametrize("kind", sorted(FORMATS))
@pytest.mark.parametrize("fault", ["wrong_length", "other_prompt"])
def test_wrong_answers_are_errors_not_numbers(kind, fault, tiny_gpt2):
    tokenizer = tiny_gpt2.tokenizer if kind == "lightllm" else None
    with MockServer(kind, scorer_from_model(tiny_gpt2), always=fault) as server:
        m = RemoteModel(kind, server.url, tokenizer=tokenizer, model_name="mock", **FAST)
        with pytest.raises(RemoteResponseError):
            m.score("Hello world! Hello again, world.")
        assert len(server.requests) == 1  # a wrong answer is not retried into a number


def test_retry_after_is_honoured():
    with MockServer("vllm", word_scorer, faults=["429"], retry_after="0.6") as server:
        t0 = time.perf_counter()
        RemoteModel("vllm", server.url, model_name="mock", **FAST).score("Hello there")
        assert time.perf_counter() - t0 >= 0.6
    assert RetryPolicy(max_wait=5).delay(1, 30.0) == 5.0  # never more than max_wait
    assert 0 < _seconds("Wed, 21 Oct 2099 07:28:00 GMT") and _seconds("soon") is None


def test_openai_server_that_refuses_max_tokens_0():
    with MockServer("openai", word_scorer, always="no_max_tokens_0") as server:
        r = RemoteModel("openai", server.url, model_name="mock").score("Hello there, world.", top_k=1)
        assert [b["max_tokens"] for b, _ in server.requests] == [0, 1]
    assert r.tokens == ["Hello", " there,", " world."]  # the generated " x" is dropped


def test_other_4xx_fail_at_once():
    with MockServer("openai", word_scorer, always="no_max_tokens_0") as server:
        with pytest.raises(RemoteError, match="HTTP 400"):
            RemoteModel("vllm", server.url).pool.post("/v1/completions", {"prompt": "hi", "max_tokens": 0})
        assert len(server.requests) == 1


# ---- keys, pools, concurrency -----------------------------------------------------------------
def test_api_key_is_sent_and_never_shown(tmp_path, monkeypatch):
    secret = "sk-live-0123456789abcdef"
    monkeypatch.setenv("LIGHTLENS_API_KEY", secret)
    with MockServer("vllm", word_scorer, faults=["500"], always=None) as server:
        m = RemoteModel("vllm", server.url, model_name="mock", **FAST)
        r = m.score("Hello there")
        assert server.requests[-1][1]["Authorization"] == f"Bearer {secret}"
    with MockServer("vllm", word_scorer, always="500") as server:
        m2 = RemoteModel("vllm", server.url, api_key=secret, retries=1, **FAST)
        with pytest.raises(RemoteError) as err:
            m2.score("Hello there")
    saved = r.save(tmp_path / "r.json").read_text() + r.save(tmp_path / "r.parquet").read_bytes().decode("latin-1")
    for shown in (repr(m), repr(m2), repr(m.pool), str(err.value), repr(err.value), saved, r.summary(), repr(r)):
        assert secret not in shown
    assert "api_key='***'" in repr(m)


def test_pool_of_servers_shares_the_work_and_survives_a_dead_one():
    texts = [f"Document number {i} says hello." for i in range(24)]
    with MockServer("vllm", word_scorer) as a, MockServer("vllm", word_scorer) as b, \
            MockServer("vllm", word_scorer, always="500") as dead:
        m = lightlens.remote.connect(f"vllm+{a.url},{b.url},{dead.url}?model=mock", concurrency=6, **FAST)
        results = m.score(texts)
        assert [r.tokens[1] for r in results] == [" number"] * 24
        assert [r.text for r in results] == texts
        assert len(a.requests) >= 8 and len(b.requests) >= 8 and len(dead.requests) >= 1


def test_concurrency_is_bounded():
    with MockServer("vllm", word_scorer, delay=0.05) as server:
        m = RemoteModel("vllm", server.url, model_name="mock", concurrency=4)
        m.score([f"text {i} here" for i in range(24)], progress=False)
        assert 2 <= server.max_in_flight <= 4


def test_score_each_records_errors_per_text():
    with MockServer("vllm", word_scorer, faults=["other_prompt"]) as server:
        m = RemoteModel("vllm", server.url, model_name="mock", concurrency=1)
        out = dict(m.score_each(["Hello there", "General Kenobi"]))
    assert isinstance(out[0], RemoteResponseError) and out[1].tokens == ["General", " Kenobi"]


def test_connect_parses_specs():
    m = lightlens.remote.connect("tgi+http://a:1,b:2")
    assert m.pool.urls == ["http://a:1", "http://b:2"] and m.kind == "tgi"
    with pytest.raises(ValueError, match="unknown option"):
        lightlens.remote.connect("tgi+http://a:1?key=x")
    with pytest.raises(ValueError, match="unknown server kind"):
        RemoteModel("sglang", "http://a:1")


def test_client_benchmark_runs_end_to_end():
    """The benchmark of RESULTS.md, small: every document comes back scored, none failed."""
    from benchmarks import client as bench_client

    r = bench_client.run(kind="openai", docs=120, concurrency=8)
    assert r["docs"] == 120 and r["tokens"] > 120 * 40
    assert r["score_each_docs_per_s"] > 0 and r["score_corpus_docs_per_s"] > 0


def test_remote_results_render_without_entropy_or_rank():
    with MockServer("tgi", word_scorer) as server:
        r = lightlens.score("Hello there, world of servers.", model=f"tgi+{server.url}")
    html = r.heatmap(metric="entropy")._repr_html_()
    assert "entropy not reported by this backend" in html and "background:" not in html.split("ll-text")[-1]
    tips = r._repr_html_()
    assert "rank ?" in tips and "entropy ?" in tips
    assert "background:" in tips.split("ll-text")[-1]  # logprob colours still drawn
