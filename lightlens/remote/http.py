"""A small JSON-over-HTTP client: a pool of servers, bounded concurrency, timeouts, retries.

Retries (with exponential backoff, honouring ``Retry-After``) happen on connection errors,
time-outs, 429, 5xx and bodies that are not JSON (a truncated answer); other 4xx answers
fail at once with the server's message. Nothing is retried forever: ``retries`` bounds the
attempts and ``max_wait`` any single pause. The API key lives in one header and never
appears in a repr, a log line or an error.
"""
from __future__ import annotations

import email.utils
import http.client
import json
import random
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence
from urllib.parse import urlsplit, urlunsplit

from ..errors import RemoteError

RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}


def redact(url: str) -> str:
    """The URL without user:password or query string (where keys sometimes hide).

    >>> redact("http://user:secret@host:8000/v1?key=abc")
    'http://host:8000/v1'
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


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
            if urlsplit(u).scheme not in ("http", "https") or not urlsplit(u).hostname:
                raise ValueError(f"not an http(s) URL: {redact(u)!r}; write it like http://host:8000")
        self.timeout, self.retry = timeout, retry
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if api_key:
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
            f"gave up after {len(reasons)} attempts; last: {reasons[-1]}. "
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
        if status in RETRY_STATUS or status >= 500:
            raise _Retry(f"HTTP {status}: {data[:200].decode('utf-8', 'replace')}", _seconds(retry_after))
        if status >= 400:
            raise RemoteError(f"the server refused the request (HTTP {status}): "
                              f"{data[:500].decode('utf-8', 'replace')}")
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

        >>> dict(pool.map(len, ["a", "bb"], concurrency=2))
        {0: 1, 1: 2}
        """
        from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

        def guarded(item):
            try:
                return fn(item)
            except Exception as err:  # noqa: BLE001 - handed back to the caller per item
                return err

        with ThreadPoolExecutor(max_workers=max(1, concurrency)) as ex:
            pending, it = {}, iter(enumerate(items))
            for i, item in it:
                pending[ex.submit(guarded, item)] = i
                if len(pending) >= 2 * concurrency:
                    break
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    yield pending.pop(fut), fut.result()
                for i, item in it:
                    pending[ex.submit(guarded, item)] = i
                    if len(pending) >= 2 * concurrency:
                        break


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
