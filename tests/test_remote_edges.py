"""Remote backends at the edges (issue 10, §2 and §6): keys, odd servers, Ctrl-C, BOS/EOS, ranks."""
from __future__ import annotations

import json
import math
import signal
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import lightlens
from lightlens.errors import RemoteError, RemoteResponseError
from lightlens.remote import FORMATS, RemoteModel, ServerTokens, connect, is_remote, to_result
from lightlens.remote.align import align
from lightlens.testing.mock_server import MockServer, render, word_scorer

FAST = dict(backoff=0.001, max_wait=1.0)
SECRET = "sk-live-edge-0123456789abcdef"


@contextmanager
def http_server(answer):
    """A bare http.server on 127.0.0.1: ``answer(handler, body) -> (status, bytes)`` for each POST.
    ``requests`` lists the (body, headers) that arrived."""
    requests = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            requests.append((body, dict(self.headers)))
            status, data = answer(self, body)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", requests
    finally:
        httpd.shutdown()
        httpd.server_close()


def echo_headers(status: int):
    """A server that copies the request's headers (Authorization included) into its answer."""
    def answer(handler, body):
        said = {"error": f"bad key: {handler.headers['Authorization']}", "headers": dict(handler.headers)}
        return status, json.dumps(said).encode()
    return answer


# ---- §2 secrets never appear ----------------------------------------------------------------
@pytest.mark.parametrize("how", ["argument", "environment"])
def test_a_key_read_from_a_file_keeps_no_newline(tmp_path, monkeypatch, how):
    (tmp_path / "key").write_text(SECRET + "\n")
    key = open(tmp_path / "key").read()  # noqa: SIM115 - as a user would write it
    if how == "environment":
        monkeypatch.setenv("LIGHTLENS_API_KEY", key)
    with MockServer("vllm", word_scorer) as server:
        m = RemoteModel("vllm", server.url, model_name="mock", api_key=key if how == "argument" else None)
        assert m.score("Hello there").tokens == ["Hello", " there"]
        assert server.requests[-1][1]["Authorization"] == f"Bearer {SECRET}"


@pytest.mark.parametrize("bad", ["\x00", "\n", "\r\nX-Evil: 1", "é"])
def test_a_key_with_a_control_character_is_refused_without_showing_it(monkeypatch, bad):
    key = SECRET[:10] + bad + SECRET[10:]
    errors = []
    with pytest.raises(ValueError, match="cannot be sent in an HTTP header") as err:
        RemoteModel("vllm", "http://127.0.0.1:9", api_key=key)  # before any request
    errors.append(err.value)
    if "\x00" not in key:  # an environment cannot hold a NUL
        monkeypatch.setenv("LIGHTLENS_API_KEY", key)
        with pytest.raises(ValueError, match="LIGHTLENS_API_KEY") as err:
            RemoteModel("vllm", "http://127.0.0.1:9")
        errors.append(err.value)
    for e in errors:
        assert SECRET[:10] not in str(e) + repr(e) and SECRET[10:] not in str(e) + repr(e)


@pytest.mark.parametrize("status", [401, 500, 501, 200])
def test_a_server_that_echoes_the_key_does_not_get_it_into_errors(status):
    with http_server(echo_headers(status)) as (url, requests):
        m = RemoteModel("vllm", url, model_name="mock", api_key=SECRET, retries=1, **FAST)
        with pytest.raises(RemoteError) as err:
            m.score("Hello there")
        (_, each), = m.score_each(["Hello there"])
    assert requests[0][1]["Authorization"] == f"Bearer {SECRET}"  # it was echoed back
    for e in (err.value, each):
        assert isinstance(e, RemoteError)
        for shown in (str(e), repr(e), repr(e.args), str(e.__cause__), str(e.__context__)):
            assert SECRET not in shown
        assert "***" in str(e)


@pytest.mark.parametrize("status", [503, 200])
def test_a_key_cut_in_half_by_the_error_excerpt_is_not_shown(status):
    def answer(handler, body):  # the key straddles the 200 characters an error quotes
        return status, json.dumps({"x" * 170: handler.headers["Authorization"]}).encode()

    with http_server(answer) as (url, _):
        with pytest.raises(RemoteError) as err:
            RemoteModel("tgi", url, api_key=SECRET, retries=0, **FAST).score("Hello there")
    assert SECRET[:8] not in str(err.value)


def test_an_echoed_key_stays_out_of_the_corpus_error_column(tmp_path):
    def answer(handler, body):
        if "bad" in body["prompt"]:
            return echo_headers(400)(handler, body)
        return 200, json.dumps(render("vllm", word_scorer(body["prompt"]), body)).encode()

    with http_server(answer) as (url, _):
        m = RemoteModel("vllm", url, model_name="mock", api_key=SECRET, retries=0, **FAST)
        c = lightlens.score_corpus(["a good document", "a bad one"], model=m, out=tmp_path / "c.parquet",
                                   progress=False)
    assert len(c.failed) == 1
    stored = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    assert SECRET.encode() not in stored and b"Bearer ***" in stored


# ---- §6 servers -------------------------------------------------------------------------------
def test_a_first_token_of_another_prompt_is_not_taken_for_bos():
    with pytest.raises(RemoteResponseError, match="token 0"):
        align("world", ["Hello", "world"])
    with pytest.raises(RemoteResponseError):
        to_result("world", ServerTokens([None, -1.0], pieces=["Hello", "world"]), top_k=0, model={})
    for bos in ("<s>", "<|begin_of_text|>", "<bos>", "<|endoftext|>", "[CLS]", ""):
        spans, kept = align("world", [bos, "world"])
        assert spans.tolist() == [[0, 0], [0, 5]] and kept == slice(1, 2)
    assert align("world", ["BOS", "world"], specials={"BOS"})[1] == slice(1, 2)  # the tokenizer's own


@pytest.mark.parametrize("eos", ["", "</s>", "<|endoftext|>"])
def test_a_trailing_special_token_is_not_a_text_token(eos):
    st = ServerTokens([None, -1.0, -2.0, -9.0], pieces=["<s>", "a", " b", eos], ranks=[None, 1, 2, 3])
    r = to_result("a b", st, top_k=0, model={})
    assert r.tokens == ["a", " b"] and r.offsets.tolist() == [[0, 1], [1, 3]]
    assert r.logprobs.tolist() == [-1.0, -2.0] and r.ranks.tolist() == [1, 2]
    assert r.perplexity == pytest.approx(math.exp(1.5))
    with pytest.raises(RemoteResponseError):  # a trailing piece before the text is covered is no EOS
        to_result("a b c", st, top_k=0, model={})


def test_a_trailing_special_id_is_not_a_text_token(tiny_gpt2):
    tok = tiny_gpt2.tokenizer
    ids = tok("Hello world", add_special_tokens=False)["input_ids"]
    st = ServerTokens([None] + [-1.0] * len(ids), ids=ids + [tok.eos_token_id])
    r = to_result("Hello world", st, top_k=0, tokenizer=tok, model={})
    assert r.token_ids.tolist() == ids and "".join(r.tokens) == "Hello world"


def test_a_text_ending_in_a_space_keeps_its_last_token():
    """A lone SentencePiece "▁" decoded alone is "": a text token, not an EOS."""
    r = to_result("Hello ", ServerTokens([None, -1.0], pieces=["Hello", ""]), top_k=0, model={})
    assert r.tokens == ["Hello", " "] and r.logprobs[1] == -1.0


@pytest.mark.parametrize("status,retried", [(501, False), (505, False), (405, False), (408, True), (503, True)])
def test_only_transient_statuses_are_retried(status, retried):
    with http_server(lambda h, b: (status, b"<html>Unsupported method ('POST')</html>")) as (url, requests):
        t0 = time.perf_counter()
        with pytest.raises(RemoteError) as err:
            RemoteModel("tgi", url, retries=3, **FAST).score("Hello there")
        assert time.perf_counter() - t0 < 3
    assert len(requests) == (4 if retried else 1)
    if status in (405, 501):
        assert "does not speak this API" in str(err.value) and "overloaded" not in str(err.value)


def test_a_plain_web_server_is_not_an_api():
    class NoPost(BaseHTTPRequestHandler):  # http.server's own answer to POST: 501
        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), NoPost)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        t0 = time.perf_counter()
        with pytest.raises(RemoteError, match="does not speak this API"):
            RemoteModel("vllm", f"http://127.0.0.1:{httpd.server_address[1]}", model_name="m").score("Hi")
        assert time.perf_counter() - t0 < 2  # no 6 tries over 11 s
    finally:
        httpd.shutdown()
        httpd.server_close()


LLAMA_SERVER = {"choices": [{"text": "x", "index": 0, "logprobs": {"content": [
    {"id": 87, "token": "x", "bytes": [120], "logprob": -1.2,
     "top_logprobs": [{"id": 87, "token": "x", "bytes": [120], "logprob": -1.2}]}]}}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1}}


def test_a_server_that_ignores_echo_says_so():
    with pytest.raises(RemoteResponseError, match="does not return prompt logprobs") as err:
        FORMATS["openai"].parse(LLAMA_SERVER, "Hello there")
    assert "in-process" in str(err.value) and "KeyError" not in str(err.value)
    with http_server(lambda h, b: (200, json.dumps(LLAMA_SERVER).encode())) as (url, _):
        with pytest.raises(RemoteResponseError, match="does not return prompt logprobs"):
            RemoteModel("openai", url, model_name="m").score("Hello there")


def test_ctrl_c_in_the_consumer_stops_at_once():
    texts = [f"document {i}" for i in range(40)]
    with MockServer("vllm", word_scorer, delay=2.0) as server:
        m = RemoteModel("vllm", server.url, model_name="mock", concurrency=4)
        with pytest.raises(KeyboardInterrupt):
            for _ in m.score_each(texts):
                t0 = time.perf_counter()
                raise KeyboardInterrupt
        assert time.perf_counter() - t0 < 1.0  # not after the queued requests
        time.sleep(2.5)
        assert len(server.requests) <= 8  # nothing new was started after the interrupt


def test_ctrl_c_while_waiting_stops_at_once():
    """SIGINT arrives while the pool waits for answers (the usual case), not in the consumer."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals reach the main thread only")
    with MockServer("vllm", word_scorer, delay=2.0) as server:
        m = RemoteModel("vllm", server.url, model_name="mock", concurrency=4)
        timer = threading.Timer(0.5, signal.pthread_kill, (threading.main_thread().ident, signal.SIGINT))
        t0 = time.perf_counter()
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            list(m.score_each([f"document {i}" for i in range(40)]))
        assert time.perf_counter() - t0 < 1.5  # the requests in flight end in the background
        timer.join()


def test_pool_map_stops_when_the_consumer_breaks():
    started = []

    def slow(item):
        started.append(item)
        time.sleep(1.0)
        return item

    pool = RemoteModel("vllm", "http://127.0.0.1:9").pool
    t0 = time.perf_counter()
    for _ in pool.map(slow, list(range(100)), concurrency=4):
        break
    assert time.perf_counter() - t0 < 1.5  # not after the 2 × 4 items started ahead
    time.sleep(1.5)
    assert len(started) <= 8


def test_a_rank_the_server_did_not_report_is_unknown_not_zero():
    with MockServer("tgi", word_scorer) as server:  # TGI reports no rank and no prompt top-k
        r = RemoteModel("tgi", server.url).score("Hello there, world.")
    assert r.ranks.tolist() == [0, -1, -1]  # 0: unscored; -1: not reported
    with MockServer("vllm", word_scorer) as server:
        assert RemoteModel("vllm", server.url).score("Hello there, world.").ranks.tolist() == [0, 2, 2]
    st = ServerTokens([None, -0.5, -3.0], pieces=["a", " b", " c"], top=[[], [(None, " b", -0.5)], [(None, "x", -1)]])
    assert to_result("a b c", st, top_k=1, model={}).ranks.tolist() == [0, 1, -1]  # from the top-k when in it


def test_credentials_in_a_url_are_not_dropped_silently():
    with pytest.warns(UserWarning, match="not sent") as caught:
        m = RemoteModel("tgi", "http://user:hunter2pw@gpu1:8080")
    message = str(caught[0].message)
    assert "hunter2pw" not in message and "api_key=" in message and "LIGHTLENS_API_KEY" in message
    assert "hunter2pw" not in repr(m) + str(m.info())


def test_server_kinds_in_any_case_and_urls_without_a_scheme():
    assert is_remote("VLLM+http://a:1") and connect("VLLM+http://a:1").kind == "vllm"
    assert RemoteModel("TGI", "http://a:1").kind == "tgi"
    for spec in ("vllm+127.0.0.1:8000", "tgi+gpu1:8080,gpu2:8080"):
        with pytest.raises(ValueError, match=r"needs http:// or https://"):
            connect(spec)
    with MockServer("vllm", word_scorer) as server:
        assert lightlens.score("Hello there", model=f"VLLM+{server.url}").tokens == ["Hello", " there"]
        with pytest.raises(ValueError, match=r"needs http:// or https://"):
            lightlens.score("Hello there", model="vllm+" + server.url.removeprefix("http://"))


@pytest.mark.parametrize("top_k", [-1, 65, 100000, True, 2.0])
def test_top_k_is_checked_before_anything_is_sent(top_k):
    with MockServer("vllm", word_scorer) as server:
        m = RemoteModel("vllm", server.url, model_name="mock")
        for call in (lambda: m.score("Hello there", top_k=top_k), lambda: m.score(["a b", "c d"], top_k=top_k),
                     lambda: m.score_one("Hello there", top_k=top_k), lambda: m.score_each(["a b"], top_k=top_k)):
            with pytest.raises(ValueError, match="top_k must be an int in"):
                call()
        assert server.requests == []


def test_a_short_placeholder_key_does_not_garble_errors():
    from lightlens.errors import RemoteError, add_secret

    add_secret("e")  # vLLM set-ups often use a placeholder such as "EMPTY"
    err = RemoteError("the server does not speak this API (Bearer e)")
    assert str(err) == "the server does not speak this API (Bearer ***)"


def test_a_local_folder_with_a_plus_in_its_name_is_local(tmp_path, gpt2_dir):
    import shutil

    from lightlens.remote import is_remote

    folder = tmp_path / "openai+tiny"
    shutil.copytree(gpt2_dir, folder)
    assert not is_remote(str(folder)) and is_remote("openai+http://h:1")
    assert lightlens.score("Hello world", model=str(folder)).tokens == ["Hello", " world"]


@pytest.mark.parametrize("options", [dict(retries=-1), dict(retries=True), dict(timeout="5"), dict(timeout=0),
                                     dict(concurrency=0), dict(backoff=-1)])
def test_server_options_are_checked_when_the_model_is_made(options):
    from lightlens.remote import RemoteModel

    with pytest.raises(ValueError, match=next(iter(options))):
        RemoteModel("vllm", "http://127.0.0.1:9", **options)


def test_numpy_integers_are_server_options_too():
    import numpy as np

    from lightlens.remote import RemoteModel

    assert RemoteModel("vllm", "http://127.0.0.1:9", concurrency=np.int64(2)).concurrency == 2


@pytest.mark.parametrize("piece", ["<html>", "<0x0A>"])
def test_a_first_piece_that_only_looks_special_is_not_bos(piece):
    from lightlens.errors import RemoteResponseError
    from lightlens.remote.align import align

    with pytest.raises(RemoteResponseError):
        align("world", [piece, "world"])
