"""`RemoteModel`: score texts with a model that runs in a server, not in this process."""
from __future__ import annotations

import os
import threading
from typing import Any, Iterable, Iterator, Sequence
from urllib.parse import parse_qs, urlsplit, urlunsplit

import numpy as np
from tqdm.auto import tqdm

from ..errors import RemoteResponseError
from ..options import check_int, check_stop, check_top_k
from ..results.score_result import ScoreResult
from .formats import FORMATS
from .generation import GENERATORS, GeneratedTokens, to_generation
from .http import HttpPool, RetryPolicy, redact
from .tokens import to_result

API_KEY_ENV = "LIGHTLENS_API_KEY"


class RemoteModel:
    """A model served by LightLLM, vLLM, TGI, llama.cpp or an OpenAI-compatible server (one URL or a pool).

    ``kind``: "lightllm", "vllm", "openai", "tgi" or "llamacpp" (llama-server: generation only,
    :meth:`generate_tokens`; it reports no prompt logprobs). ``urls``: one base URL or several (requests
    go round-robin; a failed request is retried on the next). ``model_name``: what the
    OpenAI-style APIs call the model (asked from /v1/models when None). ``tokenizer``: the
    served model's tokenizer (hub id, folder or object) — needed for LightLLM, which returns
    token ids only; elsewhere it is used to check the server's tokens. ``api_key``: sent as a
    bearer token (default ``$LIGHTLENS_API_KEY``; surrounding whitespace such as a file's last
    newline is dropped), never shown, not even when a server echoes it back. ``kind`` may be
    in any case. ``concurrency`` requests at a time, each timing out after ``timeout`` s and
    retried up to ``retries`` times (waits of ``backoff``·2ⁿ s, or the server's Retry-After,
    never more than ``max_wait`` s).

    >>> m = RemoteModel("vllm", server.url, model_name="mock")   # server: a lightlens.testing.MockServer
    >>> m.score("The cat sat on the mat.", top_k=5).num_scored
    5
    """

    def __init__(self, kind: str, urls: str | Sequence[str], *, model_name: str | None = None,
                 tokenizer=None, api_key: str | None = None, concurrency: int = 8,
                 timeout: float = 120.0, retries: int = 5, backoff: float = 0.5, max_wait: float = 30.0):
        if not isinstance(kind, str) or kind.lower() not in FORMATS:
            raise ValueError(f"unknown server kind {kind!r}: choose one of {', '.join(FORMATS)}")
        kind = kind.lower()
        concurrency = check_int("concurrency", concurrency, minimum=1)
        retries = check_int("retries", retries, minimum=0)
        for name, value in (("timeout", timeout), ("backoff", backoff), ("max_wait", max_wait)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 or (
                    name == "timeout" and value == 0):
                raise ValueError(f"{name} must be a number of seconds{' > 0' if name == 'timeout' else ' >= 0'}, "
                                 f"got {value!r}")
        self.kind, self.format = kind, FORMATS[kind]
        self.pool = HttpPool([urls] if isinstance(urls, str) else list(urls),
                             api_key=api_key if api_key is not None else os.environ.get(API_KEY_ENV),
                             timeout=timeout, retry=RetryPolicy(retries=retries, backoff=backoff, max_wait=max_wait))
        self.concurrency = concurrency
        self._model_name = model_name
        self._tokenizer_spec = tokenizer
        self._tokenizer = None if isinstance(tokenizer, (str, os.PathLike)) else tokenizer
        self._lock = threading.Lock()

    # ---- lazily resolved -----------------------------------------------------------------
    @property
    def tokenizer(self):
        """The tokenizer given (loaded on first use), or None."""
        if self._tokenizer is None and self._tokenizer_spec is not None:
            from transformers import AutoTokenizer

            with self._lock:
                if self._tokenizer is None:
                    self._tokenizer = AutoTokenizer.from_pretrained(os.fspath(self._tokenizer_spec))
        return self._tokenizer

    @property
    def model_name(self) -> str | None:
        """The served model's name (asked from ``/v1/models`` when not given and needed)."""
        if self._model_name is None and self.format.needs_model_name:
            with self._lock:
                if self._model_name is None:
                    self._model_name = _served_model(self.pool)
        return self._model_name

    def info(self) -> dict[str, Any]:
        """Metadata stored in every result (URLs without credentials; never the key).

        >>> RemoteModel("tgi", "http://gpu1:8080/").info()["url"]
        'http://gpu1:8080'
        """
        return {"name": self.model_name or self.kind, "revision": None, "dtype": None, "device": "remote",
                "backend": self.kind, "url": ",".join(redact(u) for u in self.pool.urls)}

    # ---- scoring ---------------------------------------------------------------------------
    def score_one(self, text: str, *, top_k: int = 5) -> ScoreResult:
        """One text, one request.

        >>> m = RemoteModel("vllm", server.url)
        >>> m.score_one("Hello world", top_k=3).tokens
        ['Hello', ' world']
        """
        from ..text.tokens import check_text

        check_text(text)
        top_k = check_top_k(top_k)
        st = self.format.fetch(self.pool, text, top_k, self.model_name)
        if self.kind == "lightllm" and self.tokenizer is None:
            raise RemoteResponseError(
                "LightLLM returns token ids only: pass tokenizer= (the served model's tokenizer, "
                "e.g. its hub id or folder) so lightlens can place the tokens in the text"
            )
        return to_result(text, st, top_k=top_k, tokenizer=self.tokenizer, model=self.info())

    def score_each(self, texts: Sequence[str], *, top_k: int = 5,
                   progress: bool | None = None) -> Iterator[tuple[int, ScoreResult | Exception]]:
        """``(index, result or the error)`` for each text, as requests finish, concurrently.
        ``top_k`` is checked here, before any request; stopping the loop (Ctrl-C) drops the rest.

        >>> m = RemoteModel("vllm", server.url)
        >>> sorted(i for i, r in m.score_each(["a b", "c d e"]))
        [0, 1]
        >>> m.score_each(["a b"], top_k=-1)
        Traceback (most recent call last):
        ValueError: top_k must be an int in [0, 64], got -1
        """
        top_k = check_top_k(top_k)
        return self._each(list(texts), top_k, progress)

    def _each(self, texts: list[str], top_k: int, progress: bool | None) -> Iterator[tuple[int, Any]]:
        bar = None  # shown once the server has answered: a dead server gives one error line, no bar
        try:
            for i, r in self.pool.map(lambda t: self.score_one(t, top_k=top_k), texts,
                                      concurrency=self.concurrency):
                if bar is None and progress and not isinstance(r, Exception):
                    bar = tqdm(total=len(texts), unit="doc", desc="scoring")
                if bar is not None:
                    bar.update(1)
                yield i, r
        finally:
            if bar is not None:
                bar.close()

    @staticmethod
    def check_options(*, max_length=None, stride=None, bos=None, batch_size=None, method="auto") -> None:
        """Refuse what only an in-process model can do, before any request is sent.

        >>> RemoteModel.check_options(max_length=512)
        Traceback (most recent call last):
        ValueError: max_length, stride and bos are not available with a server: ...
        """
        if max_length is not None or stride is not None or bos is not None:
            raise ValueError(
                "max_length, stride and bos are not available with a server: it scores the whole "
                "prompt as it tokenizes it (split long texts yourself, or score them in-process)"
            )
        if batch_size is not None or method != "auto":
            raise ValueError(
                "batch_size and method are not available with a server: it batches requests itself "
                "(use concurrency= on the RemoteModel to send more at once)"
            )

    def score(self, text: str | Sequence[str], *, top_k: int = 5, max_length: int | None = None,
              stride: int | None = None, bos: bool | None = None, progress: bool | None = None,
              batch_size: int | None = None, method: str = "auto") -> ScoreResult | list[ScoreResult]:
        """Score one text (a ScoreResult) or a list (a list, in order; the first error is raised).

        Windows, BOS and batching are the server's business: ``max_length``, ``stride``,
        ``bos``, ``batch_size`` and ``method`` are refused rather than silently ignored.

        >>> m = RemoteModel("vllm", server.url)
        >>> [len(r) for r in m.score(["a text", "another one here"], top_k=0)]
        [2, 3]
        """
        self.check_options(max_length=max_length, stride=stride, bos=bos, batch_size=batch_size, method=method)
        top_k = check_top_k(top_k)
        if isinstance(text, str):
            return self.score_one(text, top_k=top_k)
        texts = list(_check_list(text))
        out: list[Any] = [None] * len(texts)
        for i, r in self.score_each(texts, top_k=top_k, progress=progress if progress is not None
                                    else len(texts) > 1):
            if isinstance(r, Exception):
                raise r
            out[i] = r
        return out

    # ---- generation ------------------------------------------------------------------------
    def generate_tokens(self, prompt: str, *, max_new_tokens: int, top_k: int = 5,
                        stop: str | Sequence[str] | None = None, seed: int | None = None) -> GeneratedTokens:
        """A greedy completion of ``prompt`` (temperature 0) with every generated token's logprob and
        its ``top_k`` alternatives, as the server reports them (one request). ``stop``: strings that
        end the completion (not included in it); ``seed``: passed on where the server takes one
        (greedy needs none). ``max_new_tokens=0`` asks nothing and returns no token.

        >>> g = RemoteModel("vllm", server.url).generate_tokens("Hello", max_new_tokens=4, top_k=2)
        >>> g.pieces, g.finish_reason, g.top[0]
        ([' the', ' cat', ' sat', ' on'], 'length', [(' the', None, -0.1), (' w1', None, -1.1)])
        """
        from ..text.tokens import check_text

        check_text(prompt)
        check_int("max_new_tokens", max_new_tokens, minimum=0)
        check_int("seed", seed, minimum=0, none=True)
        top_k, stops = check_top_k(top_k), check_stop(stop)
        generator = GENERATORS[self.kind]
        if max_new_tokens == 0:
            return GeneratedTokens.empty()
        return generator.fetch(self.pool, prompt, max_new_tokens=max_new_tokens, top_k=top_k, stop=stops, seed=seed,
                               model_name=self.model_name if generator.needs_model_name else None)

    def generate(self, prompt: str | Sequence[str], *, max_new_tokens: int = 64, sampler=None,
                 seed: int | None = None, stop: str | Sequence[str] | None = None, top_k: int = 5, n: int = 1,
                 bos: bool | None = None, use_cache: bool = True, batch_size: int = 32,
                 progress: bool | None = None):
        """A greedy completion from the server as a :class:`Generation` (a list for a list of
        prompts): the completion's raw logprobs, ranks (from the top-k; -1 where not listed) and
        top-k as the server reports them; the prompt scored by the server where it can score
        prompts (else its tokens from ``tokenizer=`` unscored, or the prompt as one unscored
        piece). Samplers run in this process only: ``sampler`` must be None, ``n`` 1.

        >>> g = RemoteModel("vllm", server.url).generate("Hello", max_new_tokens=3, top_k=2)
        >>> g.completion, g.finish_reason, g.sampler
        (' the cat sat', 'length', 'greedy (server)')
        """
        if sampler is not None:
            raise ValueError("a sampler runs in this process and needs the model's full distributions: with a "
                             "server model pass sampler=None (the server's greedy), or load the model locally "
                             "(lightlens.load) to use a sampler")
        if n != 1:
            raise ValueError(f"n={n!r}: a server model generates greedily here, so every completion would be the "
                             "same: use n=1 (or a local model with a sampler for several samples)")
        if bos is not None:
            raise ValueError("bos cannot apply to a server (it tokenizes the prompt its own way): leave bos=None")
        prompts = [prompt] if isinstance(prompt, str) else list(_check_list(prompt))
        out = []
        for p in tqdm(prompts, desc="generating", unit="prompt", disable=not (progress or False)):
            tokens = self.generate_tokens(p, max_new_tokens=max_new_tokens, top_k=top_k, stop=stop, seed=seed)
            g = to_generation(self._prompt_result(p, top_k), tokens, self.info(), top_k)
            g.seed = seed
            out.append(g)
        return out[0] if isinstance(prompt, str) else out

    def _prompt_result(self, prompt: str, top_k: int) -> ScoreResult:
        """The prompt scored by the server, or (a server that does not score prompts) its tokens
        from the tokenizer, unscored; without a tokenizer the prompt is one unscored piece."""
        if self.format.scores_prompts:
            return self.score_one(prompt, top_k=top_k)
        tok = self.tokenizer
        if tok is None:
            ids, spans = [-1], [[0, len(prompt)]]
        else:
            enc = tok(prompt, add_special_tokens=False, return_offsets_mapping=True)
            from ..text.tokens import partition_offsets

            ids, spans = enc["input_ids"], partition_offsets(enc["offset_mapping"], len(prompt)).tolist()
        n = len(ids)
        return ScoreResult(text=prompt, tokens=[prompt[a:b] for a, b in spans], token_ids=ids, offsets=spans,
                           logprobs=np.full(n, np.nan), entropy=np.full(n, np.nan), ranks=np.zeros(n),
                           top_k_ids=np.full((n, top_k), -1), top_k_logprobs=np.full((n, top_k), np.nan),
                           top_k_tokens=[[""] * top_k for _ in range(n)], model=self.info())

    def __repr__(self) -> str:
        name = f", model_name={self._model_name!r}" if self._model_name else ""
        key = ", api_key='***'" if self.pool.has_key else ""
        urls = [redact(u) for u in self.pool.urls]
        return f"RemoteModel({self.kind!r}, {urls[0] if len(urls) == 1 else urls!r}{name}{key})"


def _check_list(texts: Iterable) -> Iterable[str]:
    from ..text.tokens import check_text, check_texts

    texts = check_texts(texts)  # a DataFrame or dict is refused, a Series is its texts
    for t in texts:
        check_text(t)
    return texts


def _served_model(pool: HttpPool) -> str:
    body = pool.get("/v1/models")
    try:
        ids = [m["id"] for m in body["data"]]
    except (KeyError, TypeError) as err:
        raise RemoteResponseError(f"/v1/models answered {str(body)[:200]!r}; pass model_name=") from err
    if len(ids) != 1:
        raise RemoteResponseError(f"the server serves {len(ids)} models ({ids[:10]}): pass model_name=")
    return ids[0]


def is_remote(spec) -> bool:
    """Whether ``spec`` names a server: ``"vllm+http://host:8000"`` and the like (any case).

    >>> is_remote("tgi+http://127.0.0.1:8080"), is_remote("VLLM+http://h:1"), is_remote("gpt2")
    (True, True, False)
    """
    if not isinstance(spec, str) or "+" not in spec or os.path.exists(os.path.expanduser(spec)):
        return False  # a local folder or file may have a "+" in its name
    return spec.split("+", 1)[0].lower() in FORMATS


def connect(spec: str, **options) -> RemoteModel:
    """A RemoteModel from ``"KIND+URL[,URL...][?model=NAME&tokenizer=PATH]"``.

    >>> connect("vllm+http://a:8000,http://b:8000?model=gpt2")
    RemoteModel('vllm', ['http://a:8000', 'http://b:8000'], model_name='gpt2')
    >>> connect("vllm+127.0.0.1:8000")
    Traceback (most recent call last):
    ValueError: the server URL after 'vllm+' needs http:// or https:// (e.g. vllm+http://127.0.0.1:8000)
    """
    kind, rest = spec.split("+", 1)
    kind = kind.lower()
    if not rest.lower().startswith(("http://", "https://")):
        raise ValueError(f"the server URL after '{kind}+' needs http:// or https:// "
                         f"(e.g. {kind}+http://127.0.0.1:8000)")
    parts = urlsplit(rest)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    unknown = set(query) - {"model", "tokenizer"}
    if unknown:
        raise ValueError(f"unknown option(s) {sorted(unknown)} in the server URL: only model= and tokenizer=")
    base = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    urls = [u if "://" in u else f"{parts.scheme}://{u}" for u in base.split(",")]
    options.setdefault("model_name", query.get("model"))
    options.setdefault("tokenizer", query.get("tokenizer"))
    return RemoteModel(kind, urls, **options)
