"""What every server tells us about a prompt, checked, and turned into a ScoreResult.

Each server format is parsed into :class:`ServerTokens` (one entry per token the server
saw, BOS included); :func:`to_result` checks it against the text that was sent and builds
the same :class:`~lightlens.results.ScoreResult` that in-process scoring gives. Servers do
not report entropy (NaN here). Ranks: the server's where it reports them, else derived from
the top-k when the token is in it, else ``-1``, meaning "not reported by the backend" (shown
as unknown); ``0`` keeps its meaning everywhere, "unscored" (a token with no context).
Special tokens the server adds around the text (BOS before, EOS after) are not text tokens:
the result holds only the text's tokens.
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

    With ``tokenizer`` the spans come from it and the server's ids must equal its ids (a BOS
    and an EOS aside); without, the server's token strings are placed in the text.

    >>> to_result("a b", ServerTokens([None, -1.5], pieces=["a", " b"]), top_k=0, model={}).logprobs
    array([ nan, -1.5], dtype=float32)
    """
    st.check()
    offsets, kept = _spans(text, st, tokenizer)
    if kept.stop <= kept.start:
        raise RemoteResponseError("the server returned only special tokens for the text")
    n, special = kept.stop - kept.start, kept.start > 0
    logprobs = np.array([math.nan if v is None else v for v in st.logprobs[kept]], np.float32)
    if not special:
        logprobs[0] = math.nan  # nothing precedes the first token
    ids = np.array(st.ids[kept] if st.ids is not None else [-1] * n, np.int64)
    top_ids, top_lps, top_tokens = _top(st, kept, top_k, tokenizer)
    ranks = _ranks(st, kept, logprobs, top_lps)
    return ScoreResult(
        text=text, tokens=[text[a:b] for a, b in offsets[kept]], token_ids=ids, offsets=offsets[kept],
        logprobs=logprobs, entropy=np.full(n, np.nan, np.float32), ranks=ranks,
        top_k_ids=top_ids, top_k_logprobs=top_lps, top_k_tokens=top_tokens, model=model,
        window={"max_length": None, "stride": None, "num_windows": 1, "windowed": False}, bos=special,
    )


def _spans(text: str, st: ServerTokens, tokenizer) -> tuple[np.ndarray, slice]:
    """Character spans of every server token and the slice of them that are the text's tokens."""
    specials = set(tokenizer.all_special_tokens) if tokenizer is not None else ()
    if tokenizer is not None and st.ids is None and st.pieces is not None:
        try:
            return align(text, st.pieces, specials)
        except RemoteResponseError:
            st.ids = _vocab_ids(tokenizer, st.pieces)  # raw vocabulary strings such as "Ġthe"
    if tokenizer is not None and st.ids is not None:
        return _id_spans(text, st.ids, tokenizer)
    if st.pieces is not None:
        return align(text, st.pieces)
    raise RemoteResponseError(
        "this server returns token ids only; pass tokenizer= (the served model's tokenizer: a hub id, "
        "a folder, or a loaded tokenizer) so lightlens can place the tokens in the text"
    )


def _id_spans(text: str, ids: list[int], tokenizer) -> tuple[np.ndarray, slice]:
    """Spans from the tokenizer, whose ids for ``text`` must be the server's (special tokens
    the server added before or after the text aside)."""
    from ..text.tokens import encode

    enc = encode(tokenizer, text, bos=False)
    local, specials = enc.ids.tolist(), set(tokenizer.all_special_ids)
    for lead, trail in ((0, 0), (1, 0), (0, 1), (1, 1)):
        kept = slice(lead, len(ids) - trail)
        added = ids[:lead] + ids[kept.stop:]
        if ids[kept] == local and all(i in specials for i in added):
            end = len(text)
            return np.vstack([[[0, 0]]] * lead + [enc.offsets] + [[[end, end]]] * trail), kept
    raise RemoteResponseError(
        f"the server's {len(ids)} token ids differ from the {len(local)} ids the tokenizer gives "
        f"for this text (first difference at token {_first_difference(ids, local)}): the server "
        "answered for a different prompt, or it serves a model with another tokenizer"
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


def _top(st: ServerTokens, kept: slice, k: int, tokenizer):
    n = kept.stop - kept.start
    ids = np.full((n, k), -1, np.int64)
    lps = np.full((n, k), np.nan, np.float32)
    tokens = [[""] * k for _ in range(n)]
    if not k or st.top is None:
        return ids, lps, tokens
    for row, alts in enumerate(st.top[kept]):
        for col, (tid, piece, lp) in enumerate(sorted(alts or [], key=lambda a: -a[2])[:k]):
            ids[row, col] = -1 if tid is None else tid
            lps[row, col] = lp
            if piece is None and tid is not None and tokenizer is not None:
                piece = tokenizer.decode([tid])
            tokens[row][col] = piece or ""
    return ids, lps, tokens


def _ranks(st: ServerTokens, kept: slice, logprobs: np.ndarray, top_lps: np.ndarray) -> np.ndarray:
    """The server's rank where given, else from the top-k when the token is in it, else -1 (not
    reported); 0 where the token is not scored."""
    ranks = np.where(np.isnan(logprobs), 0, -1).astype(np.int64)
    for i, lp in enumerate(logprobs):
        if math.isnan(lp):
            continue
        given = st.ranks[kept.start + i] if st.ranks is not None else None
        if given is not None:
            ranks[i] = int(given)
        elif st.top is not None and top_lps.shape[1] and not np.isnan(top_lps[i, -1]) and lp >= top_lps[i, -1]:
            ranks[i] = 1 + int((top_lps[i] > lp).sum())
    return ranks
