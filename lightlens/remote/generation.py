"""Generated tokens and their logprobs, as servers report them: how to ask each server for a
greedy completion with the logprob of every generated token, and how to read its answer.

Each dialect turns its server's JSON into :class:`GeneratedTokens`; an answer without logprobs,
or of the wrong shape, is a :class:`~lightlens.errors.RemoteResponseError` that says which.

- llama.cpp's llama-server (``llamacpp``): POST /completion with ``n_probs`` and ``return_tokens``:
  ``completion_probabilities = [{id, token, bytes, logprob, top_logprobs: [{id, token, bytes,
  logprob}]}]``, ``tokens`` (every generated id), ``stop_type`` (``limit``, ``eos``, ``word``). It
  leaves out the tokens that end inside a UTF-8 character (a character split over byte tokens is
  reported once, at the token that completes it, with all its bytes): those tokens come from
  ``tokens`` here, with a NaN logprob, no alternatives and an empty piece. A stop string's
  tokens are dropped by the server (and from ``ids`` here).
- OpenAI-compatible (``openai``): POST /v1/completions with ``logprobs=k``. Either the classic
  ``tokens``/``token_logprobs``/``top_logprobs`` (``{text: logprob}``)/``text_offset`` (no ids),
  or, from llama-server, ``logprobs.content`` (its list above, ids included, but without the
  left-out tokens: an answer missing some is an error that points to ``llamacpp+``).
- vLLM (``vllm``): the classic shape, plus ``token_ids`` (``return_token_ids``, vLLM ≥ 0.10.2) and
  ``stop_reason`` (None: end of sequence; a string: a stop string). ``top_logprobs`` holds the
  chosen token besides the top k.
- TGI (``tgi``): POST /generate with ``details`` and ``top_n_tokens``: ``details.tokens =
  [{id, text, logprob, special}]``, ``details.top_tokens`` (one such list per token).
- LightLLM (``lightllm``): POST /generate with ``return_details``: ``tokens = [{id, text, logprob,
  special, ...}]``; no alternatives (``top`` is empty lists), no seed (greedy needs none).

Finish reasons are normalised to ``"length"`` (``max_new_tokens`` reached: llama.cpp's ``limit``),
``"eos"`` (the model emitted an end-of-sequence token: TGI's ``eos_token``, llama.cpp's ``eos``,
vLLM's ``stop`` with no ``stop_reason``, and an OpenAI-style ``stop`` whose last token is a special
token that adds no text) and ``"stop"`` (a stop string matched: TGI's ``stop_sequence``, llama.cpp's
``word``; also an OpenAI-style ``stop`` that cannot be told apart); any other value (``"abort"``)
is kept as the server wrote it. The end-of-sequence token, where the server reports it, is the
last token, and its piece is ``""`` (it adds no text).

Logprobs are the model's raw log-probabilities (natural log) as the server computes them, in its
own arithmetic (llama.cpp: the GGUF's quantised kernels), never renormalised here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..errors import RemoteResponseError
from ..results.generation import Generation, extend_offsets
from ..results.score_result import ScoreResult
from .align import is_special
from .formats import guarded

# One alternative: (token text, token id or None, logprob)
Alternative = tuple[str, int | None, float]

# a server's finish reason -> lightlens's ("stop" from OpenAI-style servers is decided per answer)
FINISH = {"length": "length", "limit": "length", "eos_token": "eos", "eos": "eos",
          "stop_sequence": "stop", "word": "stop"}


@dataclass
class GeneratedTokens:
    """A greedy completion as a server reported it: one entry per generated token.

    ``pieces``: each token's text (``"".join(pieces) == text`` where the format guarantees it:
    llama.cpp, TGI, LightLLM; not on a stop string, whose tokens some servers keep); ``ids``:
    token ids, None where the server gives none (classic OpenAI); ``logprobs``: the model's raw
    logprob of each token (NaN where the server left it out); ``top``: alternatives per token,
    most probable first, ``(text, id or None, logprob)``; ``finish_reason``: ``"length"``,
    ``"eos"``, ``"stop"`` (see the module's notes); ``text``: the completion as the server wrote it.

    >>> g = GeneratedTokens([" Paris", "."], [7042, 30], [-0.25, -0.4], [[(" Paris", 7042, -0.25)], []], "length",
    ...                     " Paris.")
    >>> len(g), g.text == "".join(g.pieces)
    (2, True)
    """

    pieces: list[str]
    ids: list[int] | None
    logprobs: list[float]
    top: list[list[Alternative]]
    finish_reason: str
    text: str

    def __len__(self) -> int:
        return len(self.pieces)

    def check(self) -> None:
        """Raise RemoteResponseError unless every list has one entry per token.

        >>> GeneratedTokens(["a"], [1, 2], [-1.0], [[]], "length", "a").check()
        Traceback (most recent call last):
        lightlens.errors.RemoteResponseError: the server reported 2 ids for 1 generated tokens: ...
        """
        n = len(self.pieces)
        for name in ("ids", "logprobs", "top"):
            values = getattr(self, name)
            if values is not None and len(values) != n:
                raise RemoteResponseError(
                    f"the server reported {len(values)} {name} for {n} generated tokens: the answer is inconsistent")
        for i, lp in enumerate(self.logprobs):
            if isinstance(lp, bool) or not isinstance(lp, float) or lp > 1e-3:
                raise RemoteResponseError(f"the server's logprob of generated token {i} is {lp!r}, not a logprob")

    @classmethod
    def empty(cls, finish_reason: str = "length", *, ids: bool = True) -> "GeneratedTokens":
        """No token (``max_new_tokens=0``, or a stop string at once).

        >>> GeneratedTokens.empty().text
        ''
        """
        return cls([], [] if ids else None, [], [], finish_reason, "")


def _no_logprobs(kind: str, what: str) -> RemoteResponseError:
    return RemoteResponseError(
        f"the {kind} server answered without logprobs of the generated tokens ({what}): it ignored the "
        "request for them, so the completion cannot be scored. Check the server kind and its version"
    )


def _number(value, what: str) -> float:
    """A logprob from JSON: a number (None and strings are refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RemoteResponseError(f"the server's {what} is {value!r}, not a number")
    return float(value)


class Generator:
    """One server dialect's generation requests and answers; subclasses define ``kind``,
    ``request`` and ``_parse``.

    >>> GENERATORS["tgi"].request("Hi", max_new_tokens=3, top_k=2, stop=[], seed=None, model_name=None)[0]
    '/generate'
    """

    kind = ""
    needs_model_name = False

    def request(self, prompt: str, *, max_new_tokens: int, top_k: int, stop: Sequence[str], seed: int | None,
                model_name: str | None) -> tuple[str, dict]:
        """The path and JSON body that ask for a greedy completion (temperature 0) of ``prompt``
        with each generated token's logprob and its ``top_k`` alternatives."""
        raise NotImplementedError

    def parse(self, body: Any, top_k: int | None = None) -> GeneratedTokens:
        """The server's JSON answer as GeneratedTokens (alternatives cut to ``top_k``); an answer
        without logprobs or of the wrong shape is a RemoteResponseError.

        >>> GENERATORS["tgi"].parse({"generated_text": "", "details": {"finish_reason": "eos_token",
        ...     "tokens": [{"id": 2, "text": "</s>", "logprob": -0.1, "special": True}]}}).finish_reason
        'eos'
        """
        g = guarded(self.kind, self._parse, body)
        if top_k is not None:
            g.top = [alts[:top_k] for alts in g.top]
        if g.finish_reason == "eos" and g.pieces and not g.text.endswith(g.pieces[-1]):
            g.pieces[-1] = ""  # the end-of-sequence token adds no text ("</s>" from some servers)
        g.check()
        return g

    def _parse(self, body: Any) -> GeneratedTokens:
        raise NotImplementedError

    def fetch(self, pool, prompt: str, *, max_new_tokens: int, top_k: int, stop: Sequence[str],
              seed: int | None, model_name: str | None) -> GeneratedTokens:
        """Ask ``pool`` and parse the answer.

        >>> from lightlens.remote.http import HttpPool
        >>> GENERATORS["vllm"].fetch(HttpPool([server.url]), "Hi", max_new_tokens=3, top_k=2, stop=[], seed=None,
        ...                          model_name="mock").pieces
        [' the', ' cat', ' sat']
        """
        path, payload = self.request(prompt, max_new_tokens=max_new_tokens, top_k=top_k, stop=stop, seed=seed,
                                     model_name=model_name)
        return self.parse(pool.post(path, payload), top_k)


def _seed(seed: int | None) -> dict:
    return {} if seed is None else {"seed": seed}


# ---- llama.cpp ---------------------------------------------------------------------------------
def _llama_piece(entry: dict) -> str:
    """A llama.cpp entry's text: from its ``bytes`` (its ``token`` drops an unfinished character)."""
    raw = entry.get("bytes")
    return bytes(raw).decode("utf-8", "replace") if raw is not None else str(entry["token"])


def _llama_entry(entry: dict) -> tuple[str, int | None, float, list[Alternative]]:
    alts = [(_llama_piece(a), None if a.get("id") is None else int(a["id"]), _number(a["logprob"], "top logprob"))
            for a in entry.get("top_logprobs") or []]
    tid = entry.get("id")
    return (_llama_piece(entry), None if tid is None else int(tid), _number(entry["logprob"], "logprob"),
            sorted(alts, key=lambda a: -a[2]))


def _own_bytes(entry: dict) -> bytes | None:
    """The chosen token's own bytes (its entry among the alternatives), or None when absent."""
    key = "id" if "id" in entry else "logprob"  # a server without ids: the same logprob
    for a in entry.get("top_logprobs") or []:
        if a.get(key) == entry[key]:
            return bytes(a["bytes"]) if a.get("bytes") is not None else None
    return None


def _left_out(kind: str, reported: int, generated: int | str) -> RemoteResponseError:
    return RemoteResponseError(
        f"the {kind} server reported logprobs for {reported} of {generated} generated tokens: llama.cpp's "
        "llama-server leaves out the tokens that end inside a UTF-8 character, so their ids and logprobs are "
        "unknown here. Use a llamacpp+ URL (its /completion endpoint returns every generated id)"
    )


def _check_none_left_out(kind: str, entries: list, finish: str, generated: int | None) -> None:
    """Without every generated id, llama.cpp's entries must be all the tokens: as many as were
    generated (a stop string's tokens aside), and none completing a character whose first bytes
    no entry holds."""
    if generated is not None and finish in ("length", "eos") and generated != len(entries):
        raise _left_out(kind, len(entries), generated)
    for e in entries:
        own = _own_bytes(e)
        if own and 0x80 <= own[0] < 0xC0:  # it starts with a UTF-8 continuation byte
            raise _left_out(kind, len(entries), "more")


def _llama_tokens(kind: str, entries: list, all_ids: list[int] | None, text: str, finish: str,
                  generated: int | None) -> GeneratedTokens:
    """llama.cpp's entries, with the tokens it left out (every id from ``all_ids``) put back;
    ``generated``: how many tokens the server says it generated."""
    parsed = [_llama_entry(e) for e in entries]
    if all_ids is None:
        _check_none_left_out(kind, entries, finish, generated)
        pieces, ids, lps, top = (list(x) for x in zip(*parsed)) if parsed else ([], [], [], [])
        return GeneratedTokens(pieces, None if None in ids else ids, lps, top, finish, text)
    pieces, ids, lps, top, j = [], [], [], [], 0
    for piece, tid, lp, alts in parsed:
        while j < len(all_ids) and all_ids[j] != tid:  # left out: it ends inside a character
            pieces.append(""), ids.append(all_ids[j]), lps.append(math.nan), top.append([])
            j += 1
        if j == len(all_ids):
            raise RemoteResponseError(
                f"llama-server reported a logprob for token {tid}, which is not among the generated ids "
                f"{all_ids[:50]}: the answer is inconsistent")
        pieces.append(piece), ids.append(tid), lps.append(lp), top.append(alts)
        j += 1
    if finish != "stop":  # after a stop string the rest are its tokens, not the completion's
        for tid in all_ids[j:]:  # an unfinished character at the end
            pieces.append(""), ids.append(tid), lps.append(math.nan), top.append([])
        if j < len(all_ids) and text.startswith("".join(pieces)):
            pieces[-1] = text[len("".join(pieces)):]  # its bytes, as the server wrote them (U+FFFD)
    return GeneratedTokens(pieces, ids, lps, top, finish, text)


class LlamaCpp(Generator):
    """llama.cpp's llama-server, native /completion: every generated id (``return_tokens``)."""

    kind = "llamacpp"

    def request(self, prompt, *, max_new_tokens, top_k, stop, seed, model_name):
        return "/completion", {"prompt": prompt, "n_predict": max_new_tokens, "n_probs": max(top_k, 1),
                               "temperature": 0.0, "stop": list(stop), "return_tokens": True, **_seed(seed)}

    def _parse(self, body):
        text, stop_type = body["content"], body["stop_type"]
        finish = FINISH.get(stop_type, stop_type)
        entries = body.get("completion_probabilities")
        all_ids = body.get("tokens") or None
        if all_ids is not None:
            all_ids = [int(i) for i in all_ids]
        if entries is None:
            if finish == "stop" and text == "":
                return GeneratedTokens.empty("stop")  # a stop string at once: nothing to report
            raise _no_logprobs(self.kind, "no completion_probabilities: was n_probs ignored?")
        return _llama_tokens(self.kind, entries, all_ids, text, finish, body.get("tokens_predicted"))


# ---- OpenAI-compatible, vLLM ----------------------------------------------------------------------
def _openai_finish(reason: str, last: str | None) -> str:
    """"stop" becomes "eos" when the last token is a special token (or adds no text)."""
    if reason == "stop":
        return "eos" if last is not None and (last == "" or is_special(last)) else "stop"
    return FINISH.get(reason, reason)


class OpenAI(Generator):
    """An OpenAI-compatible /v1/completions with ``logprobs`` (both answer shapes)."""

    kind = "openai"
    needs_model_name = True

    def request(self, prompt, *, max_new_tokens, top_k, stop, seed, model_name):
        return "/v1/completions", {"model": model_name, "prompt": prompt, "max_tokens": max_new_tokens,
                                   "temperature": 0.0, "logprobs": max(top_k, 1),
                                   **({"stop": list(stop)} if stop else {}), **_seed(seed)}

    def _parse(self, body):
        choice = body["choices"][0]
        text, reason, lp = choice["text"], choice["finish_reason"], choice["logprobs"]
        if lp is None:
            if reason == "stop" and text == "":
                return GeneratedTokens.empty("stop", ids=False)
            raise _no_logprobs(self.kind, "logprobs is null")
        if "tokens" not in lp and "content" in lp:
            return self._content(lp["content"], text, reason, (body.get("usage") or {}).get("completion_tokens"))
        return self._classic(choice, lp, text, reason)

    def _classic(self, choice: dict, lp: dict, text: str, reason: str) -> GeneratedTokens:
        tokens, logprobs = [str(t) for t in lp["tokens"]], lp["token_logprobs"]
        if len(logprobs) != len(tokens):
            raise RemoteResponseError(f"the server returned {len(tokens)} tokens but {len(logprobs)} logprobs")
        tops = lp.get("top_logprobs") or [None] * len(tokens)
        top = [sorted(((str(t), None, _number(v, "top logprob")) for t, v in (d or {}).items()), key=lambda a: -a[2])
               for d in tops]
        return GeneratedTokens(tokens, None, [_number(v, "logprob") for v in logprobs], list(top),
                               self._finish(choice, reason, tokens), text)

    def _finish(self, choice: dict, reason: str, tokens: list[str]) -> str:
        return _openai_finish(reason, tokens[-1] if tokens else None)

    def _content(self, entries: list, text: str, reason: str, generated: int | None) -> GeneratedTokens:
        """The chat-style ``logprobs.content`` list (llama-server's /v1/completions answer)."""
        last = entries[-1] if entries else None
        finish = _openai_finish(reason, None if last is None else (_own_bytes(last) or bytes(last.get("bytes") or []))
                                .decode("utf-8", "replace"))
        return _llama_tokens(self.kind, entries, None, text, finish, generated)


class VLLM(OpenAI):
    """vLLM's /v1/completions with ``logprobs`` and ``return_token_ids``."""

    kind = "vllm"

    def request(self, prompt, *, max_new_tokens, top_k, stop, seed, model_name):
        path, payload = super().request(prompt, max_new_tokens=max_new_tokens, top_k=top_k, stop=stop, seed=seed,
                                        model_name=model_name)
        return path, {**payload, "logprobs": top_k, "return_token_ids": True}

    def _classic(self, choice, lp, text, reason):
        g = super()._classic(choice, lp, text, reason)
        ids = choice.get("token_ids")
        if ids is not None:
            g.ids = [int(i) for i in ids]
        return g

    def _finish(self, choice, reason, tokens):
        if reason == "stop":  # stop_reason: None for the end-of-sequence token, else the stop string (or id)
            return "stop" if isinstance(choice.get("stop_reason"), str) else "eos"
        return FINISH.get(reason, reason)


# ---- TGI, LightLLM ------------------------------------------------------------------------------
class TGI(Generator):
    """Text Generation Inference's /generate with ``details`` and ``top_n_tokens``."""

    kind = "tgi"

    def request(self, prompt, *, max_new_tokens, top_k, stop, seed, model_name):
        return "/generate", {"inputs": prompt, "parameters": {
            "max_new_tokens": max_new_tokens, "do_sample": False, "details": True, "decoder_input_details": False,
            **({"top_n_tokens": top_k} if top_k else {}), **({"stop": list(stop)} if stop else {}), **_seed(seed)}}

    def _parse(self, body):
        if isinstance(body, list):
            body = body[0]
        details = body.get("details")
        if details is None:
            raise _no_logprobs(self.kind, "no details: was details=true ignored?")
        tokens = details["tokens"]
        tops = details.get("top_tokens") or [[] for _ in tokens]
        if len(tops) != len(tokens):
            raise RemoteResponseError(f"the TGI answer has {len(tops)} top_tokens lists for {len(tokens)} tokens")
        top = [sorted(((a["text"], int(a["id"]), _number(a["logprob"], "top logprob")) for a in alts),
                      key=lambda a: -a[2]) for alts in tops]
        return GeneratedTokens(["" if t.get("special") else t["text"] for t in tokens], [int(t["id"]) for t in tokens],
                               [_number(t["logprob"], "logprob") for t in tokens], top,
                               FINISH.get(details["finish_reason"], details["finish_reason"]), body["generated_text"])


class LightLLM(Generator):
    """LightLLM's /generate with ``return_details`` (no alternatives, no seed)."""

    kind = "lightllm"

    def request(self, prompt, *, max_new_tokens, top_k, stop, seed, model_name):
        return "/generate", {"inputs": prompt, "parameters": {
            "max_new_tokens": max_new_tokens, "do_sample": False, "return_details": True,
            **({"stop_sequences": list(stop)} if stop else {})}}

    def _parse(self, body):
        if "tokens" not in body:
            raise _no_logprobs(self.kind, "no tokens: was return_details ignored?")
        tokens, reason, text = body["tokens"], body["finish_reason"], body["generated_text"]
        if tokens and isinstance(tokens[0], list):  # n > 1: the first sequence
            tokens, reason, text = tokens[0], reason[0], text[0]
        text = text[0] if isinstance(text, list) else text
        if reason == "stop":  # LightLLM says "stop" for its end token and for a stop string alike
            reason = "eos" if tokens and tokens[-1].get("special") else "stop"
        return GeneratedTokens(["" if t.get("special") else t["text"] for t in tokens], [int(t["id"]) for t in tokens],
                               [_number(t["logprob"], "logprob") for t in tokens], [[] for _ in tokens],
                               FINISH.get(reason, reason), text)


GENERATORS: dict[str, Generator] = {g.kind: g for g in (LightLLM(), VLLM(), OpenAI(), TGI(), LlamaCpp())}


def to_generation(prompt: ScoreResult, tokens: GeneratedTokens, info: dict, top_k: int) -> Generation:
    """A :class:`Generation` from a server: the prompt's result, then each generated token with
    the raw logprob, rank (its place in the top-k, -1 when not listed) and top-k the server
    reported. The sampler's own numbers are unknown (NaN, kept 0): the server sampled greedily.

    >>> p = ScoreResult("Hi", ["Hi"], [5], [[0, 2]], [np.nan], [np.nan], [0], np.zeros((1, 0)), np.zeros((1, 0)), [[]])
    >>> g = to_generation(p, GeneratedTokens([" there"], [9], [-0.5], [[(" there", 9, -0.5)]], "length", " there"), {}, 1)
    >>> g.text, g.ranks.tolist(), g.num_prompt_tokens
    ('Hi there', [0, 1], 1)
    """
    m, n = len(prompt), len(tokens)
    ids = np.array(tokens.ids if tokens.ids is not None else [-1] * n, dtype=np.int64)
    top_ids = np.full((n, top_k), -1, np.int64)
    top_lps = np.full((n, top_k), np.nan, np.float32)
    top_strings = [[""] * top_k for _ in range(n)]
    ranks = np.full(n, -1, np.int64)
    for i, alternatives in enumerate(tokens.top):
        for j, (piece, tid, lp) in enumerate(alternatives[:top_k]):
            top_ids[i, j], top_lps[i, j], top_strings[i][j] = -1 if tid is None else tid, lp, piece
            same = tid == ids[i] if tid is not None and ids[i] >= 0 else piece == tokens.pieces[i]
            if same and ranks[i] < 0:
                ranks[i] = j + 1
    k_prompt = prompt.top_k_ids.shape[1]
    pad = lambda a, fill: np.concatenate([a, np.full((m, top_k - k_prompt), fill, a.dtype)], 1)[:, :top_k]  # noqa: E731
    return Generation(
        text=prompt.text + "".join(tokens.pieces), tokens=[*prompt.tokens, *tokens.pieces],
        token_ids=np.concatenate([prompt.token_ids, ids]),
        offsets=extend_offsets(prompt.offsets, len(prompt.text), tokens.pieces),
        logprobs=np.concatenate([prompt.logprobs, np.array(tokens.logprobs, np.float32)]),
        entropy=np.concatenate([prompt.entropy, np.full(n, np.nan, np.float32)]),
        ranks=np.concatenate([prompt.ranks, ranks]),
        top_k_ids=np.concatenate([pad(prompt.top_k_ids, -1), top_ids]),
        top_k_logprobs=np.concatenate([pad(prompt.top_k_logprobs, np.nan), top_lps]),
        top_k_tokens=[(list(t) + [""] * top_k)[:top_k] for t in prompt.top_k_tokens] + top_strings,
        model=dict(info), bos=prompt.bos, num_prompt_tokens=m, finish_reason=_finish_reason(tokens.finish_reason),
        sampler="greedy (server)",
    )


def _finish_reason(reason: str) -> str:
    """A server's finish reason as a Generation's: "length", "eos" or "stop" (anything else
    a server invents counts as "stop": it ended the completion itself)."""
    return reason if reason in ("length", "eos", "stop") else "stop"
