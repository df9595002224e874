"""A local stand-in for LightLLM, vLLM, OpenAI-compatible, TGI and llama.cpp servers, with faults.

It answers on 127.0.0.1 exactly in each server's JSON format (built the way each project's
HTTP layer builds it), from a ``scorer`` that says what the "model" thinks of a prompt, and a
``generator`` that says what it generates after a prompt (greedy, with logprobs: the answer to a
generation request, see :mod:`lightlens.remote.generation`). It serves the tests (and the client
benchmark), and can misbehave on request: slow answers, 500s, 429s with Retry-After, dropped
connections, truncated or malformed JSON, a logprob list of the wrong length, an answer for
another prompt, a generation without logprobs.

>>> with MockServer("vllm", word_scorer) as server:
...     lightlens.score("Hi there", model=f"vllm+{server.url}").tokens
['Hi', ' there']
"""
from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from ..remote.generation import GeneratedTokens
from ..remote.tokens import ServerTokens

FAULTS = ("slow", "500", "429", "drop", "truncated", "malformed", "wrong_length", "other_prompt",
          "no_max_tokens_0", "no_logprobs")


def render(kind: str, st: ServerTokens, request: dict, model_name: str = "mock") -> dict:
    """``st`` as ``kind``'s server would send it in answer to ``request``.

    >>> render("tgi", ServerTokens([None, -0.5], ids=[5, 6], pieces=["a", "b"]), {})["details"]["prefill"][1]
    {'id': 6, 'text': 'b', 'logprob': -0.5}
    """
    n = len(st.logprobs)
    if kind == "lightllm":
        return {"generated_text": [" x"], "count_output_tokens": 1, "finish_reason": "length",
                "prompt_token_ids": st.ids,
                "prompt_logprobs": [[st.ids[i], {str(st.ids[i + 1]): st.logprobs[i + 1]}] for i in range(n - 1)]}
    if kind == "tgi":
        return {"generated_text": " x", "details": {
            "finish_reason": "length", "generated_tokens": 1, "seed": None,
            "prefill": [{"id": st.ids[i], "text": st.pieces[i], "logprob": st.logprobs[i]} for i in range(n)],
            "tokens": [{"id": 0, "text": " x", "logprob": -1.0, "special": False}]}}
    k = int(request.get("prompt_logprobs", request.get("logprobs", 0)) or 0)
    if kind == "vllm":
        positions = [None] + [_vllm_entry(st, i, k) for i in range(1, n)]
        choice = {"index": 0, "text": " x", "logprobs": None, "finish_reason": "length", "stop_reason": None,
                  "token_ids": None, "prompt_logprobs": positions,
                  "prompt_token_ids": st.ids if request.get("return_token_ids") else None}
        return _completion(model_name, choice, n)
    if kind == "openai":
        tokens, lps = list(st.pieces), list(st.logprobs)
        tops = [None] + [{p: lp for _, p, lp in sorted(st.top[i], key=lambda a: -a[2])[:k]} for i in range(1, n)]
        if request.get("max_tokens"):
            tokens, lps, tops = tokens + [" x"], lps + [-1.0], tops + [{" x": -1.0}]
        offsets = [sum(len(t) for t in tokens[:i]) for i in range(len(tokens))]
        choice = {"index": 0, "text": "".join(tokens), "finish_reason": "length",
                  "logprobs": {"tokens": tokens, "token_logprobs": lps, "top_logprobs": tops, "text_offset": offsets}}
        return _completion(model_name, choice, n)
    if kind == "llamacpp":  # llama-server ignores what asks for prompt logprobs: it generates
        return render_generation(kind, word_generator(str(request.get("prompt")), 1), request, model_name)
    raise ValueError(f"unknown server kind {kind!r}")


# ---- generation ------------------------------------------------------------------------------
def generation_request(kind: str, body: dict) -> tuple[str, int, int, list[str]] | None:
    """``(prompt, max new tokens, top-k asked, stop strings)`` when ``body`` asks ``kind``'s server
    for a generation with logprobs rather than for prompt logprobs; else None.

    >>> generation_request("tgi", {"inputs": "Hi", "parameters": {"max_new_tokens": 4, "details": True}})
    ('Hi', 4, 0, [])
    """
    if kind == "llamacpp":  # /completion: llama-server only generates
        return body.get("prompt"), body.get("n_predict", 16), body.get("n_probs", 0), _stops(body.get("stop"))
    if kind in ("vllm", "openai"):
        if body.get("echo") or "prompt_logprobs" in body:
            return None
        return body.get("prompt"), body.get("max_tokens", 16), body.get("logprobs") or 0, _stops(body.get("stop"))
    params = body.get("parameters") or {}
    if kind == "tgi" and params.get("details") and not params.get("decoder_input_details"):
        return body.get("inputs"), params.get("max_new_tokens", 20), params.get("top_n_tokens") or 0, \
            _stops(params.get("stop"))
    if kind == "lightllm" and params.get("return_details"):
        return body.get("inputs"), params.get("max_new_tokens", 16), 0, _stops(params.get("stop_sequences"))
    return None


def _stops(stop) -> list[str]:
    return [stop] if isinstance(stop, str) else list(stop or [])


def render_generation(kind: str, g: GeneratedTokens, request: dict, model_name: str = "mock", *,
                      fault: str | None = None) -> dict:
    """``g`` as ``kind``'s server answers a generation request (``request``, asking for top-k
    alternatives as that server spells it); the end-of-sequence token, when ``g`` ends with one, is
    sent the way each server sends it. ``fault="no_logprobs"``: the answer of a server that
    ignored the request for logprobs.

    >>> g = word_generator("Hi", 2)
    >>> render_generation("tgi", g, {"parameters": {"details": True, "top_n_tokens": 1}})["details"]["top_tokens"][1]
    [{'id': 37720, 'text': ' cat', 'logprob': -0.2, 'special': False}]
    """
    _, _, k, _ = generation_request(kind, request) or (None, 0, 0, [])
    n, eos = len(g), g.finish_reason == "eos"
    special = [eos and i == n - 1 for i in range(n)]
    no_lp = fault == "no_logprobs"
    if kind == "llamacpp":
        def entry(piece, tid, lp):
            return {"id": tid, "token": piece, "bytes": list(piece.encode("utf-8")), "logprob": lp}

        body = {"index": 0, "content": g.text, "tokens": list(g.ids) if request.get("return_tokens") else [],
                "id_slot": 0, "stop": True, "model": model_name, "tokens_predicted": n,
                "stop_type": {"length": "limit", "eos": "eos", "stop": "word"}[g.finish_reason]}
        if k and n and not no_lp:
            body["completion_probabilities"] = [
                {**entry(g.pieces[i], g.ids[i], g.logprobs[i]), "top_logprobs": [entry(*a) for a in g.top[i][:k]]}
                for i in range(n)]
        return body
    if kind in ("vllm", "openai"):
        offsets = [len(str(request.get("prompt"))) + sum(len(p) for p in g.pieces[:i]) for i in range(n)]
        tops = []
        for i in range(n):  # vLLM: the chosen token besides the top k (one entry per id)
            alts = {tid: (p, lp) for p, tid, lp in g.top[i][:k]}
            if kind == "vllm":
                alts.setdefault(g.ids[i], (g.pieces[i], g.logprobs[i]))
            tops.append({p: lp for p, lp in sorted(alts.values(), key=lambda a: -a[1])})
        logprobs = None if no_lp or not (k or kind == "vllm") else {
            "text_offset": offsets, "token_logprobs": list(g.logprobs), "tokens": list(g.pieces), "top_logprobs": tops}
        choice = {"index": 0, "text": g.text, "logprobs": logprobs,
                  "finish_reason": "length" if g.finish_reason == "length" else "stop"}
        if kind == "vllm":
            stops = _stops(request.get("stop"))
            choice.update({"stop_reason": next((s for s in stops if g.finish_reason == "stop"), None),
                           "token_ids": list(g.ids) if request.get("return_token_ids") else None,
                           "prompt_logprobs": None, "prompt_token_ids": None})
        body = _completion(model_name, choice, 0)
        body["usage"].update(completion_tokens=n, total_tokens=n)
        return body
    if kind == "tgi":
        tokens = [{"id": g.ids[i], "text": "</s>" if special[i] else g.pieces[i], "logprob": g.logprobs[i],
                   "special": special[i]} for i in range(n)]
        details = {"finish_reason": {"length": "length", "eos": "eos_token", "stop": "stop_sequence"}[g.finish_reason],
                   "generated_tokens": n, "seed": None, "prefill": [], "tokens": tokens}
        if k:
            details["top_tokens"] = [[{"id": tid, "text": p, "logprob": lp, "special": False}
                                      for p, tid, lp in g.top[i][:k]] for i in range(n)]
        return {"generated_text": g.text, **({} if no_lp else {"details": details})}
    if kind == "lightllm":
        body = {"generated_text": [g.text], "count_output_tokens": n,
                "finish_reason": "length" if g.finish_reason == "length" else "stop", "prompt_tokens": 0}
        if not no_lp:
            body["tokens"] = [{"id": g.ids[i], "logprob": g.logprobs[i], "special": special[i],
                               "count_output_tokens": i + 1, "prompt_tokens": 0, "text": g.pieces[i]} for i in range(n)]
        return body
    raise ValueError(f"unknown server kind {kind!r}")


def with_stop(g: GeneratedTokens, stops) -> GeneratedTokens:
    """``g`` cut before the first stop string in its text (the tokens wholly before it kept),
    as a server stops at a stop string; unchanged when none occurs.

    >>> with_stop(word_generator("Hi", 5), [" on"]).pieces
    [' the', ' cat', ' sat']
    """
    hits = [g.text.find(s) for s in stops if s in g.text]
    if not hits:
        return g
    cut, keep, end = min(hits), 0, 0
    while keep < len(g) and end + len(g.pieces[keep]) <= cut:
        end += len(g.pieces[keep])
        keep += 1
    return GeneratedTokens(g.pieces[:keep], None if g.ids is None else g.ids[:keep], g.logprobs[:keep], g.top[:keep],
                           "stop", g.text[:cut])


WORDS = [" the", " cat", " sat", " on", " the", " mat", "."]


def word_generator(prompt: str, max_new_tokens: int, stop=()) -> GeneratedTokens:
    """An instant stand-in model's greedy completion: the same seven words after any prompt, then
    its end token (id 0, no text); the i-th token's logprob is −0.1·(i+1), its alternatives are
    ``" w1"``, ``" w2"``, … one nat apart (top-k up to 64).

    >>> g = word_generator("Hi", 9)
    >>> g.text, g.finish_reason, len(g), g.top[0][:2]
    (' the cat sat on the mat.', 'eos', 8, [(' the', 17750, -0.1), (' w1', 1, -1.1)])
    """
    pieces, ids, logprobs, top = [], [], [], []
    for i in range(min(max_new_tokens, len(WORDS) + 1)):
        piece = WORDS[i] if i < len(WORDS) else ""
        lp = round(-0.1 * (i + 1), 6)
        pieces.append(piece), ids.append(_word_id(piece) if piece else 0), logprobs.append(lp)
        top.append([(piece, ids[-1], lp)] + [(f" w{j}", j, round(lp - j, 6)) for j in range(1, 64)])
    finish = "eos" if max_new_tokens > len(WORDS) else "length"
    return with_stop(GeneratedTokens(pieces, ids, logprobs, top, finish, "".join(pieces)), stop)


def generator_from_model(lm, *, top_k: int = 8):
    """What a server running ``lm`` generates greedily after a prompt (tokenized with the
    tokenizer's special tokens, as servers do), with each token's float32 logprob and top-k; it
    stops at the tokenizer's end token. Pieces are decoded in the prompt's context, a token that
    ends inside a character holding back its bytes (vLLM's incremental detokenizer).

    >>> g = generator_from_model(tiny)("Hello", 3)
    >>> len(g), g.finish_reason, len(g.top[0])
    (3, 'length', 8)
    """
    import torch

    def generate(prompt: str, max_new_tokens: int, stop=()) -> GeneratedTokens:
        tok = lm.tokenizer
        prompt_ids = tok(prompt)["input_ids"]
        ids, logprobs, top, finish = [], [], [], "length"
        for _ in range(max_new_tokens):
            with torch.no_grad():
                logits = lm.model(torch.tensor([prompt_ids + ids], device=lm.device)).logits[0, -1].float()
            values, order = torch.log_softmax(logits, -1).topk(min(top_k, logits.numel()))
            ids.append(int(order[0]))
            logprobs.append(float(values[0]))
            top.append([(tok.decode([int(i)]), int(i), float(v)) for v, i in zip(values, order)])
            if ids[-1] == tok.eos_token_id:
                finish = "eos"
                break
        pieces = _pieces(tok, prompt_ids, ids)
        return with_stop(GeneratedTokens(pieces, ids, logprobs, top, finish, "".join(pieces)), stop)

    return generate


def _pieces(tok, prompt_ids: list[int], ids: list[int]) -> list[str]:
    """Each generated token's text in context; an unfinished character waits for the token
    that completes it; the end token adds nothing."""
    base = tok.decode(prompt_ids)
    pieces, said = [], ""
    for i in range(len(ids)):
        text = tok.decode(prompt_ids + [t for t in ids[: i + 1] if t != tok.eos_token_id])[len(base):]
        if text.endswith("\ufffd") and i < len(ids) - 1:
            pieces.append("")
            continue
        pieces.append(text[len(said):])
        said = text
    return pieces


def bad_request(message: str) -> dict:
    """The body of a 400 answer (vLLM's and OpenAI's error shape; TGI's ``error`` key too).

    >>> bad_request("no prompt")["message"]
    'no prompt'
    """
    return {"object": "error", "message": message, "error": message, "type": "BadRequestError",
            "param": None, "code": 400}


def prompt_problem(text) -> str | None:
    """Why a server would refuse ``text`` as a prompt (not a str, not Unicode), or None.

    >>> prompt_problem("bad \\ud800 text")
    'the prompt is not valid Unicode: a lone surrogate U+D800 at character 4'
    >>> prompt_problem("fine") is None
    True
    """
    if not isinstance(text, str):
        return f"the prompt must be a string, got {type(text).__name__}"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        return f"the prompt is not valid Unicode: a lone surrogate U+{ord(text[err.start]):04X} at character {err.start}"
    return None


def _vllm_entry(st: ServerTokens, i: int, k: int) -> dict:
    alts = sorted(st.top[i], key=lambda a: -a[2])[:k] if st.top else []
    entry = {str(tid): {"logprob": lp, "rank": r + 1, "decoded_token": p} for r, (tid, p, lp) in enumerate(alts)}
    entry[str(st.ids[i])] = {"logprob": st.logprobs[i], "rank": st.ranks[i] if st.ranks else None,
                             "decoded_token": st.pieces[i] if st.pieces else None}
    return entry


def _completion(model_name: str, choice: dict, n: int) -> dict:
    return {"id": "cmpl-mock", "object": "text_completion", "created": int(time.time()), "model": model_name,
            "choices": [choice], "usage": {"prompt_tokens": n, "completion_tokens": 1, "total_tokens": n + 1}}


def corrupt(st: ServerTokens, fault: str, scorer: Callable[[str], ServerTokens]) -> ServerTokens:
    """The wrong answers: one logprob too few, or the scores of another prompt.

    >>> len(corrupt(word_scorer("a b c"), "wrong_length", word_scorer).logprobs)
    2
    """
    if fault == "wrong_length":
        return replace(st, logprobs=st.logprobs[:-1])
    return scorer("An entirely different prompt.")


class MockServer:
    """A threaded HTTP server answering as ``kind`` would; ``faults`` are used one per request.

    ``scorer`` answers requests for prompt logprobs, ``generator`` (``(prompt, max_new_tokens,
    stop) -> GeneratedTokens``; default :func:`word_generator`) generation requests.
    ``always`` makes one fault permanent; ``delay`` seconds pass before every answer.
    ``requests`` records what arrived (body, headers); ``max_in_flight`` the most requests
    handled at once.

    >>> with MockServer("tgi", word_scorer, faults=["500"]) as server:
    ...     r = RemoteModel("tgi", server.url, backoff=0.01).score("Hello there")   # retried once
    ...     len(server.requests)
    2
    """

    def __init__(self, kind: str, scorer: Callable[[str], ServerTokens], *, faults=(), always: str | None = None,
                 slow_seconds: float = 2.0, retry_after: str = "0.05", delay: float = 0.0,
                 model_name: str = "mock", quiet: bool = True,
                 generator: Callable[..., GeneratedTokens] | None = None):
        for f in (*faults, *([always] if always else [])):
            if f not in FAULTS:
                raise ValueError(f"unknown fault {f!r}: choose from {FAULTS}")
        self.kind, self.scorer, self.model_name = kind, scorer, model_name
        self.generator = generator or word_generator
        self.faults, self.always, self.slow_seconds = deque(faults), always, slow_seconds
        self.retry_after, self.delay = retry_after, delay
        self.requests: list[tuple[dict, dict]] = []
        self.in_flight = self.max_in_flight = 0
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self, quiet))
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def next_fault(self) -> str | None:
        """The fault for the next request (queued ones first, then ``always``), or None."""
        with self._lock:
            return self.faults.popleft() if self.faults else self.always

    def answer(self, path: str, body: dict, fault: str | None) -> tuple[int, dict]:
        """Status and JSON for one request (after the transport faults were applied)."""
        if path == "/v1/models":
            return 200, {"object": "list", "data": [{"id": self.model_name, "object": "model"}]}
        if fault == "no_max_tokens_0" and body.get("max_tokens") == 0:
            return 400, bad_request("max_tokens must be at least 1, got 0.")
        text = body.get("prompt", body.get("inputs"))
        problem = prompt_problem(text)
        if problem:
            return 400, bad_request(problem)
        asked = generation_request(self.kind, body)
        if asked is not None:
            prompt, max_new_tokens, _, stop = asked
            g = self.generator(prompt, max_new_tokens, stop)
            return 200, render_generation(self.kind, g, body, self.model_name, fault=fault)
        st = self.scorer(text)
        if fault in ("wrong_length", "other_prompt"):
            st = corrupt(st, fault, self.scorer)
        return 200, render(self.kind, st, body, self.model_name)

    def start(self) -> "MockServer":
        """Serve in a background thread; returns self (``url`` is ready)."""
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> "MockServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _handler(server: MockServer, quiet: bool):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out at once, not 40 ms apart

        def log_message(self, *args):  # noqa: D401 - silence the default stderr log
            if not quiet:
                super().log_message(*args)

        def do_GET(self):
            self._reply(*server.answer(self.path, {}, None))

        def do_POST(self):
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            except ValueError as err:  # not JSON, or not UTF-8
                return self._reply(400, bad_request(f"the request body is not JSON: {err}"))
            with server._lock:
                server.requests.append((body, dict(self.headers)))
                server.in_flight += 1
                server.max_in_flight = max(server.max_in_flight, server.in_flight)
            try:
                self._post(body)
            finally:
                with server._lock:
                    server.in_flight -= 1

        def _post(self, body: dict):
            fault = server.next_fault()
            if server.delay:
                time.sleep(server.delay)
            if fault == "drop":
                self.close_connection = True
                self.connection.close()
                return
            if fault == "slow":
                time.sleep(server.slow_seconds)
            if fault in ("500", "429"):
                extra = {"Retry-After": server.retry_after} if fault == "429" else {}
                return self._reply(int(fault), {"error": "mock fault"}, extra)
            status, payload = server.answer(self.path, body, fault)
            data = json.dumps(payload).encode()
            if fault == "truncated":
                data = data[: len(data) // 2]
            elif fault == "malformed":
                data = b"<html>502 Bad Gateway</html>"
            self._send(status, data, {})

        def _reply(self, status: int, payload: dict, extra: dict | None = None):
            self._send(status, json.dumps(payload).encode(), extra or {})

        def _send(self, status: int, data: bytes, extra: dict):
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in extra.items():
                self.send_header(k, v)
            self.end_headers()
            try:
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up waiting (the "slow" fault)

    return Handler


def scorer_from_model(lm, *, top_k: int = 5, pieces: str = "text") -> Callable[[str], ServerTokens]:
    """What a server running ``lm`` would report: its in-process scores, BOS included.

    ``pieces="text"`` gives each token the characters it covers (vLLM's incremental
    detokenizer), ``"decode"`` decodes each token alone (TGI: byte pieces become U+FFFD),
    ``"raw"`` the vocabulary strings (``Ġthe``; some servers' echo ``tokens``).

    >>> with MockServer("vllm", scorer_from_model(tiny, top_k=5)) as server:
    ...     r = lightlens.score("Hello world", model=f"vllm+{server.url}")
    >>> bool(abs(r.logprobs[1] - tiny.score("Hello world").logprobs[1]) < 1e-5)
    True
    """

    def scorer(text: str) -> ServerTokens:
        r = lm.score(text, top_k=top_k)
        ids = r.token_ids.tolist()
        strings = {"text": lambda: list(r.tokens), "raw": lambda: lm.tokenizer.convert_ids_to_tokens(ids),
                   "decode": lambda: [lm.tokenizer.decode([i]) for i in ids]}[pieces]()
        logprobs = [None if lp != lp else float(lp) for lp in r.logprobs.tolist()]
        ranks = [None if rk == 0 else int(rk) for rk in r.ranks.tolist()]
        top = [[(int(t), s, float(lp)) for t, s, lp in zip(r.top_k_ids[i], r.top_k_tokens[i], r.top_k_logprobs[i])
                if t >= 0] for i in range(len(ids))]
        if r.bos:
            bos = lm.tokenizer.bos_token_id
            ids, strings = [bos] + ids, [lm.tokenizer.bos_token] + strings
            logprobs, ranks, top = [None] + logprobs, [None] + ranks, [[]] + top
        return ServerTokens(logprobs, ids=ids, pieces=strings, ranks=ranks, top=top)

    return scorer


def word_scorer(text: str) -> ServerTokens:
    """An instant stand-in model: words (with their leading space) as tokens, logprob −1 each.

    >>> word_scorer("Hello big world").pieces
    ['Hello', ' big', ' world']
    """
    import re

    words = re.findall(r"\s*\S+|\s+", text)
    ids = [_word_id(w) for w in words]
    top = [[(7, " the", -0.5), (8, ",", -1.5)] for _ in words]
    return ServerTokens([None] + [-1.0] * (len(words) - 1), ids=ids, pieces=words,
                        ranks=[None] + [2] * (len(words) - 1), top=top)


def _word_id(word: str) -> int:
    """A word's token id in the stand-in models: the same in every process."""
    import zlib

    return zlib.crc32(word.encode("utf-8")) % 50_000
