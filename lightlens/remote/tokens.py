"""What every server tells us about a prompt, checked, and turned into a ScoreResult.

Each server format is parsed into :class:`ServerTokens` (one entry per token the server
saw, BOS included); :func:`to_result` checks it against the text that was sent and builds
the same :class:`~lightlens.results.ScoreResult` that in-process scoring gives. Servers do
not report entropy (NaN here); a rank they do not report is 0 unless the top-k shows it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import RemoteResponseError
from ..results.score_result import ScoreResult
from .align import align

# One alternative: (token id or None, token string or None, logprob)
Alternative = tuple[int | None, str | None, float]


@dataclass
class ServerTokens:
    """The prompt as a server scored it; lists have one entry per token.

    ``logprobs[0]`` is None (nothing precedes the first token). ``ids`` or ``pieces`` (each
    token's text) must be given; ``ranks`` and ``top`` where the server reports them.

    >>> ServerTokens([None, -0.7], ids=[15496, 995], pieces=["Hello", " world"]).check()
    """

    logprobs: list[float | None]
    ids: list[int] | None = None
    pieces: list[str | None] | None = None
    ranks: list[int | None] | None = None
    top: list[list[Alternative]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        """Raise :class:`RemoteResponseError` unless the lists are complete and consistent.

        >>> ServerTokens([None, -0.7], ids=[1]).check()
        Traceback (most recent call last):
        lightlens.errors.RemoteResponseError: the server returned 1 ids for 2 prompt logprobs: ...
        """
        n = len(self.logprobs)
        if n == 0:
            raise RemoteResponseError("the server returned no prompt tokens")
        for name in ("ids", "pieces", "ranks", "top"):
            values = getattr(self, name)
            if values is not None and len(values) != n:
                raise RemoteResponseError(
                    f"the server returned {len(values)} {name} for {n} prompt logprobs: "
                    "the answer is inconsistent (a server bug or a truncated answer)"
                )
        for i, lp in enumerate(self.logprobs[1:], 1):
            if lp is None or not isinstance(lp, (int, float)) or math.isnan(lp) or lp > 1e-3:
                raise RemoteResponseError(f"the server's logprob of prompt token {i} is {lp!r}, not a log-probability")
        if self.ids is None and self.pieces is None:
            raise RemoteResponseError("the server returned neither token ids nor token strings")


def to_result(text: str, st: ServerTokens, *, top_k: int, tokenizer=None, model: dict) -> ScoreResult:
    """A ScoreResult of ``text`` from what the server returned (checked first).

    With ``tokenizer`` the spans come from it and the server's ids must equal its ids (BOS
    aside); without, the server's token strings are placed in the text.

    >>> to_result("a b", ServerTokens([None, -1.5], pieces=["a", " b"]), top_k=0, model={}).logprobs
    array([ nan, -1.5], dtype=float32)
    """
    st.check()
    offsets, special = _spans(text, st, tokenizer)
    start = 1 if special else 0
    if special and len(st.logprobs) < 2:
        raise RemoteResponseError("the server returned only a special token for the text")
    n = len(st.logprobs) - start
    logprobs = np.array([math.nan if v is None else v for v in st.logprobs[start:]], np.float32)
    if not special:
        logprobs[0] = math.nan  # nothing precedes the first token
    ids = np.array(st.ids[start:] if st.ids is not None else [-1] * n, np.int64)
    top_ids, top_lps, top_tokens = _top(st, start, top_k, tokenizer)
    ranks = _ranks(st, start, logprobs, top_lps)
    return ScoreResult(
        text=text, tokens=[text[a:b] for a, b in offsets[start:]], token_ids=ids, offsets=offsets[start:],
        logprobs=logprobs, entropy=np.full(n, np.nan, np.float32), ranks=ranks,
        top_k_ids=top_ids, top_k_logprobs=top_lps, top_k_tokens=top_tokens, model=model,
        window={"max_length": None, "stride": None, "num_windows": 1, "windowed": False}, bos=special,
    )


def _spans(text: str, st: ServerTokens, tokenizer) -> tuple[np.ndarray, bool]:
    if tokenizer is not None and st.ids is None and st.pieces is not None:
        try:
            return align(text, st.pieces)
        except RemoteResponseError:
            st.ids = _vocab_ids(tokenizer, st.pieces)  # raw vocabulary strings such as "Ġthe"
    if tokenizer is not None and st.ids is not None:
        from ..text.tokens import encode

        enc = encode(tokenizer, text, bos=False)
        local = enc.ids.tolist()
        if st.ids == local:
            return enc.offsets, False
        if st.ids[1:] == local and st.ids[0] in set(tokenizer.all_special_ids):
            return np.vstack([[[0, 0]], enc.offsets]), True
        raise RemoteResponseError(
            f"the server's {len(st.ids)} token ids differ from the {len(local)} ids the tokenizer gives "
            f"for this text (first difference at token {_first_difference(st.ids, local)}): the server "
            "answered for a different prompt, or it serves a model with another tokenizer"
        )
    if st.pieces is not None:
        return align(text, st.pieces)
    raise RemoteResponseError(
        "this server returns token ids only; pass tokenizer= (the served model's tokenizer: a hub id, "
        "a folder, or a loaded tokenizer) so lightlens can place the tokens in the text"
    )


def _vocab_ids(tokenizer, pieces: list) -> list[int]:
    ids = tokenizer.convert_tokens_to_ids(list(pieces))
    unk = tokenizer.unk_token_id
    if any(i is None or (unk is not None and i == unk and p != tokenizer.unk_token) for i, p in zip(ids, pieces)):
        raise RemoteResponseError(
            "the server's token strings are neither pieces of the text nor tokens of the given "
            "tokenizer: the server answered for a different prompt or serves another model"
        )
    return list(ids)


def _first_difference(a: list[int], b: list[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def _top(st: ServerTokens, start: int, k: int, tokenizer):
    n = len(st.logprobs) - start
    ids = np.full((n, k), -1, np.int64)
    lps = np.full((n, k), np.nan, np.float32)
    tokens = [[""] * k for _ in range(n)]
    if not k or st.top is None:
        return ids, lps, tokens
    for row, alts in enumerate(st.top[start:]):
        for col, (tid, piece, lp) in enumerate(sorted(alts or [], key=lambda a: -a[2])[:k]):
            ids[row, col] = -1 if tid is None else tid
            lps[row, col] = lp
            if piece is None and tid is not None and tokenizer is not None:
                piece = tokenizer.decode([tid])
            tokens[row][col] = piece or ""
    return ids, lps, tokens


def _ranks(st: ServerTokens, start: int, logprobs: np.ndarray, top_lps: np.ndarray) -> np.ndarray:
    """The server's rank where given, else from the top-k when the token is in it, else 0."""
    ranks = np.zeros(len(logprobs), np.int64)
    for i, lp in enumerate(logprobs):
        if math.isnan(lp):
            continue
        given = st.ranks[start + i] if st.ranks is not None else None
        if given is not None:
            ranks[i] = int(given)
        elif st.top is not None and top_lps.shape[1] and not np.isnan(top_lps[i, -1]) and lp >= top_lps[i, -1]:
            ranks[i] = 1 + int((top_lps[i] > lp).sum())
    return ranks
