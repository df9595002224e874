"""The server dialects: how to ask each for prompt logprobs and how to read its answer.

Each format turns its server's JSON into :class:`~lightlens.remote.tokens.ServerTokens`;
anything of the wrong shape becomes a :class:`RemoteResponseError` naming the field.

- LightLLM (``--return_all_prompt_logprobs``): POST /generate; ``prompt_token_ids`` and
  ``prompt_logprobs`` = ``[[token_id, {next_token_id: logprob}], ...]`` (input_len − 1 pairs).
  Ids only, no strings, no top-k: spans need the tokenizer. Its OpenAI echo path is not used:
  it keys logprobs by token id, so a token id repeated in the prompt collapses into one value.
- vLLM: POST /v1/completions with ``prompt_logprobs=k`` and ``return_token_ids``; per position
  None (first) or ``{token_id: {logprob, rank, decoded_token}}`` (the actual token + top-k).
- OpenAI-compatible: POST /v1/completions with ``echo``, ``logprobs=k``, ``max_tokens=0`` (1 where
  0 is refused; the generated token is dropped): ``tokens``, ``token_logprobs``, ``top_logprobs``.
- TGI: POST /generate with ``details`` and ``decoder_input_details``: ``details.prefill`` =
  ``[{id, text, logprob}]``. TGI gives top tokens only for generated tokens: no top-k here.
- llama.cpp's llama-server: gives logprobs of generated tokens only (POST /completion with
  ``n_probs``; it ignores ``echo``), so it cannot score a text: a ``llamacpp+`` model generates
  (:mod:`lightlens.remote.generation`) and says so when asked to score.
"""
from __future__ import annotations

from typing import Any

from ..errors import RemoteError, RemoteResponseError, redact_secrets
from .tokens import ServerTokens

LIGHTLLM_HINT = ("start LightLLM with --return_all_prompt_logprobs --disable_dynamic_prompt_cache "
                 "--disable_chunked_prefill")


def _no_prompt_logprobs(kind: str) -> RemoteResponseError:
    return RemoteResponseError(
        f"this server does not return prompt logprobs: it ignored echo and answered with the generated "
        f"token only (llama.cpp's llama-server does this), so it cannot score a text as {kind}+. "
        "Use another server kind (vllm+, tgi+, lightllm+ with --return_all_prompt_logprobs) or score in-process"
    )


def _shape_error(kind: str, err: Exception, body: Any) -> RemoteResponseError:
    return RemoteResponseError(
        f"the {kind} server's answer does not have the expected shape ({type(err).__name__}: {err}); "
        f"the answer began {redact_secrets(str(body))[:200]!r}. Is this really a {kind} server?"
    )


def guarded(kind: str, parse, body: Any, *args):
    """``parse(body, *args)``, with a wrong shape (a missing key, a string where a list should be)
    turned into a RemoteResponseError that names the field and shows how the answer began.

    >>> guarded("tgi", lambda b: b["details"], {"generated_text": "x"})
    Traceback (most recent call last):
    lightlens.errors.RemoteResponseError: the tgi server's answer does not have the expected shape (KeyError: 'details'); ...
    """
    try:
        return parse(body, *args)
    except RemoteResponseError:
        raise
    except (KeyError, TypeError, IndexError, ValueError, AttributeError) as err:
        raise _shape_error(kind, err, body) from err


class Format:
    """One server dialect; subclasses define ``kind``, ``request`` and ``_parse``.

    >>> FORMATS["tgi"].request("Hi", 0, None)[0]
    '/generate'
    """

    kind = ""
    needs_model_name = False
    scores_prompts = True  # whether the server returns the logprobs of a prompt's tokens

    def request(self, text: str, top_k: int, model_name: str | None) -> tuple[str, dict]:
        """The path and JSON body that ask for the prompt logprobs of ``text``.

        >>> FORMATS["vllm"].request("Hi", 5, "gpt2")[1]["prompt_logprobs"]
        5
        """
        raise NotImplementedError

    def parse(self, body: Any, text: str | None = None) -> ServerTokens:
        """The server's JSON answer (to a request for ``text``) as ServerTokens; shape errors
        become RemoteResponseError.

        >>> FORMATS["tgi"].parse({"details": {"prefill": [{"id": 1, "text": "a", "logprob": None}]}}).ids
        [1]
        """
        return guarded(self.kind, self._parse, body, text)

    def _parse(self, body: Any, text: str | None) -> ServerTokens:
        raise NotImplementedError

    def fetch(self, pool, text: str, top_k: int, model_name: str | None) -> ServerTokens:
        """Ask ``pool`` and parse the answer.

        >>> from lightlens.remote.http import HttpPool
        >>> len(FORMATS["vllm"].fetch(HttpPool([server.url]), "Hello world", 5, "mock").logprobs)
        2
        """
        path, payload = self.request(text, top_k, model_name)
        return self.parse(pool.post(path, payload), text)


class LightLLM(Format):
    """LightLLM's /generate with ``--return_all_prompt_logprobs``."""

    kind = "lightllm"

    def request(self, text, top_k, model_name):
        return "/generate", {"inputs": text, "parameters": {"max_new_tokens": 1, "do_sample": False}}

    def _parse(self, body, text):
        if not isinstance(body, dict) or "prompt_logprobs" not in body:
            raise RemoteResponseError(f"the LightLLM answer has no prompt_logprobs: {LIGHTLLM_HINT}")
        ids = [int(i) for i in body["prompt_token_ids"]]
        pairs = body["prompt_logprobs"]
        if pairs and (pairs[0] is None or isinstance(pairs[0], dict)):
            return _vllm_positions(pairs, ids)  # newer LightLLM: vLLM's per-position maps
        if len(pairs) != len(ids) - 1:
            raise RemoteResponseError(
                f"LightLLM returned {len(pairs)} prompt logprobs for {len(ids)} prompt tokens "
                f"(expected {len(ids) - 1}): the answer is inconsistent"
            )
        logprobs: list[float | None] = [None]
        for i, (current, nxt) in enumerate(pairs):
            (next_id, lp), = nxt.items()
            if int(current) != ids[i] or int(next_id) != ids[i + 1]:
                raise RemoteResponseError(
                    f"LightLLM's logprob pair {i} is for tokens ({current}, {next_id}), but the prompt "
                    f"has ({ids[i]}, {ids[i + 1]}) there: the answer is inconsistent"
                )
            logprobs.append(float(lp))
        return ServerTokens(logprobs, ids=ids)


class VLLM(Format):
    """vLLM's /v1/completions with ``prompt_logprobs``."""

    kind = "vllm"
    needs_model_name = True

    def request(self, text, top_k, model_name):
        return "/v1/completions", {
            "model": model_name, "prompt": text, "max_tokens": 1, "temperature": 0.0,
            "prompt_logprobs": top_k, "return_token_ids": True,
        }

    def _parse(self, body, text):
        choice = body["choices"][0]
        positions = choice.get("prompt_logprobs")
        if positions is None:
            raise RemoteResponseError("the vLLM answer has no prompt_logprobs (is this vLLM ≥ 0.4?)")
        ids = choice.get("prompt_token_ids") or body.get("prompt_token_ids")
        return _vllm_positions(positions, None if ids is None else [int(i) for i in ids])


def _vllm_positions(positions: list, ids: list[int] | None) -> ServerTokens:
    """vLLM's ``[None, {id: {logprob, rank, decoded_token}}, ...]`` (also newer LightLLM's)."""
    if ids is None:
        raise RemoteResponseError(
            "the server returned prompt_logprobs without prompt_token_ids, so the actual token at "
            "each position is unknown: use vLLM ≥ 0.10.2 (return_token_ids) or pass tokenizer="
        )
    if len(positions) != len(ids):
        raise RemoteResponseError(
            f"the server returned {len(positions)} prompt_logprobs entries for {len(ids)} prompt tokens"
        )
    logprobs, ranks, pieces, top = [None], [None], [None], [[]]
    for i, entry in enumerate(positions[1:], 1):
        own = entry.get(str(ids[i]), entry.get(ids[i]))  # JSON keys are strings
        if own is None:
            raise RemoteResponseError(
                f"the server's prompt_logprobs at position {i} do not include the prompt token {ids[i]}"
            )
        logprobs.append(float(own["logprob"]))
        ranks.append(own.get("rank"))
        pieces.append(own.get("decoded_token"))
        top.append([(int(tid), v.get("decoded_token"), float(v["logprob"])) for tid, v in entry.items()])
    if any(p is None for p in pieces[1:]):
        pieces = None
    return ServerTokens(logprobs, ids=ids, pieces=pieces, ranks=ranks, top=top)


class OpenAI(Format):
    """An OpenAI-compatible /v1/completions with ``echo`` and ``logprobs``."""

    kind = "openai"
    needs_model_name = True

    def request(self, text, top_k, model_name, max_tokens: int = 0):
        return "/v1/completions", {
            "model": model_name, "prompt": text, "echo": True, "logprobs": max(top_k, 1),
            "max_tokens": max_tokens, "temperature": 0.0,
        }

    def fetch(self, pool, text, top_k, model_name):
        path, payload = self.request(text, top_k, model_name)
        try:
            body = pool.post(path, payload)
        except RemoteError as err:
            if "max_tokens" not in str(err):
                raise
            body = pool.post(path, {**payload, "max_tokens": 1})  # this server wants one new token
        return self.parse(body, text)

    def _parse(self, body, text):
        choice = body["choices"][0]
        lp = choice["logprobs"]
        if lp is None:
            raise RemoteResponseError("the server returned no logprobs: it ignored echo/logprobs")
        if "tokens" not in lp and "content" in lp:
            raise _no_prompt_logprobs(self.kind)  # the chat-style shape: generated tokens only
        n = (body.get("usage") or {}).get("prompt_tokens") or _prompt_count(lp, text)
        tokens, logprobs = list(lp["tokens"])[:n], list(lp["token_logprobs"])[:n]
        if len(tokens) != len(logprobs):
            raise RemoteResponseError(f"the server returned {len(tokens)} tokens but {len(logprobs)} logprobs")
        tops = list(lp.get("top_logprobs") or [None] * len(tokens))[:n]
        top = [[(None, t, float(v)) for t, v in (d or {}).items()] for d in tops]
        return ServerTokens([None] + [None if v is None else float(v) for v in logprobs[1:]],
                            pieces=[str(t) for t in tokens], top=top)


def _prompt_count(lp: dict, text: str | None) -> int:
    """Tokens of the prompt when ``usage`` is missing: those that start inside the prompt."""
    if text is None or not lp.get("text_offset"):
        return len(lp["tokens"])
    return sum(1 for off in lp["text_offset"] if off < len(text))


class TGI(Format):
    """Text Generation Inference's /generate with ``decoder_input_details``."""

    kind = "tgi"

    def request(self, text, top_k, model_name):
        return "/generate", {"inputs": text, "parameters": {
            "details": True, "decoder_input_details": True, "max_new_tokens": 1, "do_sample": False}}

    def _parse(self, body, text):
        if isinstance(body, list):
            body = body[0]
        prefill = body["details"]["prefill"]
        if not prefill:
            raise RemoteResponseError("the TGI answer has an empty details.prefill: "
                                      "was decoder_input_details ignored?")
        return ServerTokens([None] + [None if p["logprob"] is None else float(p["logprob"]) for p in prefill[1:]],
                            ids=[int(p["id"]) for p in prefill], pieces=[p["text"] for p in prefill])


class LlamaCpp(Format):
    """llama.cpp's llama-server: no prompt logprobs; its answer is explained, never scored.

    >>> FORMATS["llamacpp"].parse({"content": " x", "completion_probabilities": []})
    Traceback (most recent call last):
    lightlens.errors.RemoteResponseError: llama.cpp's llama-server returns logprobs of generated tokens only, ...
    """

    kind = "llamacpp"
    scores_prompts = False

    def request(self, text, top_k, model_name):
        return "/completion", {"prompt": text, "n_predict": 1, "n_probs": max(top_k, 1), "temperature": 0.0}

    def _parse(self, body, text):
        raise RemoteResponseError(
            "llama.cpp's llama-server returns logprobs of generated tokens only, not of the prompt, so a "
            "llamacpp+ model cannot score a text: use it to generate (RemoteModel.generate_tokens), or "
            "score in-process (lightlens.load takes the same GGUF file)"
        )


FORMATS: dict[str, Format] = {f.kind: f for f in (LightLLM(), VLLM(), OpenAI(), TGI(), LlamaCpp())}
