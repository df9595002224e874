"""A small JSON-over-HTTP client: a pool of servers, bounded concurrency, timeouts, retries.

Retries (with exponential backoff, honouring ``Retry-After``) happen on connection errors,
time-outs, 408, 429, 5xx (but not 501 Not Implemented or 505) and bodies that are not JSON (a
truncated answer); other answers fail at once with the server's message. Nothing is retried
forever: ``retries`` bounds the attempts and ``max_wait`` any single pause. The API key is
checked up front, lives in one header and never appears in a repr, a log line or an error
(even when a server echoes it back). Interrupting :meth:`HttpPool.map` (Ctrl-C) returns at
once: queued requests are dropped and those in flight finish in the background.
"""
from __future__ import annotations

import email.utils
import http.client
import json
import random
import socket
import queue
import threading
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence
from urllib.parse import urlsplit, urlunsplit

from ..errors import RemoteError, add_secret, redact_secrets

NOT_THIS_API = {405, 501}  # the server does not do this request at all: retrying cannot help


def retried(status: int) -> bool:
    """Whether an answer with HTTP ``status`` is worth another try (408, 429, 5xx but 501/505).

    >>> [s for s in (400, 404, 408, 429, 500, 501, 503, 505) if retried(s)]
    [408, 429, 500, 503]
    """
    return status in (408, 429) or (500 <= status < 600 and status not in (501, 505))


def check_api_key(key: str | None) -> str | None:
    """The key without surrounding whitespace (``open("key").read()`` keeps the file's newline),
    or None when empty; a key with a control or non-ASCII character is refused without showing it.

    >>> check_api_key("sk-abc\\n")
    'sk-abc'
    >>> check_api_key("sk-a\\x00bc")
    Traceback (most recent call last):
    ValueError: the API key has a character that cannot be sent in an HTTP header ('\\x00' at position 5): check ...
    """
    if key is None:
        return None
    if not isinstance(key, str):
        raise TypeError(f"api_key must be a str, got {type(key).__name__}")
    key = key.strip()
    bad = next((i for i, c in enumerate(key) if not 32 <= ord(c) < 127), None)
    if bad is not None:
        raise ValueError(
            f"the API key has a character that cannot be sent in an HTTP header ({key[bad]!r} at "
            f"position {bad + 1}): check api_key= or $LIGHTLENS_API_KEY (the key is not shown)"
        )
    return key or None


def redact(url: str) -> str:
    """The URL without user:password or query string (where keys sometimes hide).

    >>> redact("http://user:secret@host:8000/v1?key=abc")
    'http://host:8000/v1'
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def _check_url(url: str) -> None:
    """Refuse what is not an http(s) URL; warn that a ``user:password@`` in it is not sent."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {redact(url)!r}; write it like http://host:8000")
    if parts.username is not None or parts.password is not None:
        warnings.warn(f"the credentials (user:password@) in the server URL {redact(url)} are not sent: "
                      "pass the key as api_key= or set LIGHTLENS_API_KEY", UserWarning, stacklevel=4)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry.

    >>> RetryPolicy(retries=2, max_wait=5).delay(1, 30.0)
    5.0
    """

    retries: int = 5
    backoff: float = 0.5
    max_wait: float = 30.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (jittered; Retry-After wins, capped).

        >>> 0.25 <= RetryPolicy(backoff=0.5).delay(1, None) <= 0.5
        True
        """
        if retry_after is not None:
            return float(min(max(retry_after, 0.0), self.max_wait))
        return min(self.backoff * 2 ** (attempt - 1), self.max_wait) * random.uniform(0.5, 1.0)


class _Retry(Exception):
    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.retry_after = retry_after


class HttpPool:
    """POST JSON to one or more base URLs, round-robin, from any number of threads.

    >>> pool = HttpPool([server.url], timeout=30)   # server: a lightlens.testing.MockServer
    >>> len(pool.post("/v1/completions", {"model": "mock", "prompt": "hi"})["choices"])
    1
    """

    def __init__(self, urls: Sequence[str], *, api_key: str | None = None, timeout: float = 120.0,
                 retry: RetryPolicy = RetryPolicy()):
        if not urls:
            raise ValueError("give at least one server URL, e.g. http://127.0.0.1:8000")
        self.urls = [u.rstrip("/") for u in urls]
        for u in self.urls:
            _check_url(u)
        self.timeout, self.retry = timeout, retry
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        api_key = check_api_key(api_key)
        if api_key:
            add_secret(api_key)
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._local = threading.local()
        self._next = 0
        self._lock = threading.Lock()

    @property
    def has_key(self) -> bool:
        """Whether requests carry an API key (the key itself is never shown)."""
        return "Authorization" in self._headers

    def __repr__(self) -> str:
        key = ", api_key='***'" if self.has_key else ""
        return f"HttpPool({[redact(u) for u in self.urls]}{key}, timeout={self.timeout})"

    # ---- one request -------------------------------------------------------------------
    def post(self, path: str, payload: dict[str, Any]) -> Any:
        """POST ``payload`` to ``path`` and return the decoded JSON, retrying as above.

        >>> HttpPool([server.url]).post("/v1/completions", {"model": "mock", "prompt": "hi"})["object"]
        'text_completion'
        """
        return self._request("POST", path, json.dumps(payload).encode("utf-8"))

    def get(self, path: str) -> Any:
        """GET ``path`` and return the decoded JSON, retrying as above.

        >>> HttpPool([server.url]).get("/v1/models")["data"][0]["id"]
        'mock'
        """
        return self._request("GET", path, None)

    def _request(self, method: str, path: str, body: bytes | None) -> Any:
        with self._lock:
            first = self._next
            self._next += 1
        reasons = []
        for attempt in range(1, self.retry.retries + 2):
            base = self.urls[(first + attempt - 1) % len(self.urls)]
            try:
                return self._once(base, method, path, body)
            except _Retry as why:
                reasons.append(f"{redact(base)}{path}: {why}")
                if attempt > self.retry.retries:
                    break
                time.sleep(self.retry.delay(attempt, why.retry_after))
        raise RemoteError(
            f"gave up after {len(reasons)} attempt{'s' if len(reasons) > 1 else ''}; last: {reasons[-1]}. "
            "Check that the server is up and not overloaded (or raise retries=/timeout=)."
        )

    def _once(self, base: str, method: str, path: str, body: bytes | None) -> Any:
        for fresh in (False, True):  # a kept-alive connection the server closed: reconnect once
            conn, reused = self._connection(base, fresh)
            try:
                conn.request(method, urlsplit(base).path + path, body=body, headers=self._headers)
                resp = conn.getresponse()
                data = resp.read()
            except (socket.timeout, TimeoutError) as err:
                self._drop(base)
                raise _Retry(f"no answer within {self.timeout:g} s") from err
            except (http.client.HTTPException, OSError) as err:
                self._drop(base)
                if reused and not fresh:
                    continue
                raise _Retry(f"connection failed ({type(err).__name__}: {err})") from err
            if resp.getheader("Connection", "").lower() == "close":
                self._drop(base)
            return self._decode(resp.status, resp.getheader("Retry-After"), data)
        raise AssertionError("unreachable")

    @staticmethod
    def _decode(status: int, retry_after: str | None, data: bytes) -> Any:
        said = redact_secrets(data.decode("utf-8", "replace"))  # before cutting: no half key left
        if retried(status):
            raise _Retry(f"HTTP {status}: {said[:200]}", _seconds(retry_after))
        if status in NOT_THIS_API:
            raise RemoteError(f"the server does not speak this API (HTTP {status}: {said[:200]}): check "
                              "the server kind (lightllm+, vllm+, openai+, tgi+, llamacpp+) and the URL")
        if status >= 400:
            raise RemoteError(f"the server refused the request (HTTP {status}): {said[:500]}")
        try:
            return json.loads(data)
        except ValueError as err:
            raise _Retry(f"the answer is not valid JSON ({err}; {len(data)} bytes)") from err

    def _connection(self, base: str, fresh: bool):
        conns = self._local.__dict__.setdefault("conns", {})
        if fresh or base not in conns:
            self._drop(base)
            parts = urlsplit(base)
            cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
            conns[base] = cls(parts.hostname, parts.port, timeout=self.timeout)
            return conns[base], False
        return conns[base], True

    def _drop(self, base: str) -> None:
        conn = self._local.__dict__.get("conns", {}).pop(base, None)
        if conn is not None:
            conn.close()

    # ---- many requests -----------------------------------------------------------------
    def map(self, fn: Callable[[Any], Any], items: Sequence[Any], *, concurrency: int) -> Iterator[tuple[int, Any]]:
        """``(index, fn(item) or the exception it raised)`` as they finish, ``concurrency`` at a time.

        At most ``2 * concurrency`` items are started ahead of the consumer. When the consumer
        stops (an exception such as Ctrl-C, or ``break``), no further item is started and the
        call returns at once; requests in flight finish in daemon threads, unseen.

        >>> dict(pool.map(len, ["a", "bb"], concurrency=2))
        {0: 1, 1: 2}
        """
        items = list(items)
        todo, done = iter(enumerate(items)), queue.Queue()
        lock, stop, slots = threading.Lock(), threading.Event(), threading.Semaphore(2 * max(1, concurrency))

        def work() -> None:
            while _acquire(slots, stop):
                with lock:
                    nxt = next(todo, None)
                if nxt is None:
                    return
                done.put((nxt[0], _call(fn, nxt[1])))

        for _ in range(max(1, min(concurrency, len(items)))):
            threading.Thread(target=work, daemon=True, name="lightlens-http").start()
        try:
            for _ in range(len(items)):
                i, result = done.get()
                if isinstance(result, BaseException) and not isinstance(result, Exception):
                    raise result
                yield i, result
                slots.release()
        finally:
            stop.set()


def _acquire(slots: threading.Semaphore, stop: threading.Event) -> bool:
    """Wait for a free slot; False once ``stop`` is set."""
    while not slots.acquire(timeout=0.1):
        if stop.is_set():
            return False
    return not stop.is_set()


def _call(fn: Callable[[Any], Any], item: Any) -> Any:
    """``fn(item)``, or the exception it raised (handed back to the consumer per item)."""
    try:
        return fn(item)
    except BaseException as err:  # noqa: BLE001 - even SystemExit must reach the consumer, not hang it
        return err


def _seconds(retry_after: str | None) -> float | None:
    """``Retry-After`` as seconds: a number, or an HTTP date."""
    if not retry_after:
        return None
    try:
        return float(retry_after)
    except ValueError:
        try:
            return email.utils.parsedate_to_datetime(retry_after).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
