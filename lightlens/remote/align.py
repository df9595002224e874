"""Character spans of a server's token strings in the text that was sent.

Servers give each token's text but disagree on how: vLLM decodes incrementally (a byte
piece of an unfinished character is ``""``), TGI decodes each token alone (SentencePiece
drops the leading space; a byte piece is ``"\\ufffd"``), and some OpenAI-compatible servers
compute ``text_offset`` from raw token strings (``Ġthe``), which is wrong for byte-level
BPE. So spans are found here by matching the strings against the text, by the same rules
as :func:`lightlens.text.tokens.partition_offsets`: spans partition the text, a character
split over byte pieces belongs to the piece that completes it, a leading special token
(BOS) covers nothing. A string that cannot be matched is an error, never a guess.

A first or last string that is not in the text counts as a special token (BOS, EOS) only
when it is one: it looks like ``<s>``, ``<|begin_of_text|>``, ``<bos>``, ``[CLS]`` (or is one of
the tokenizer's special tokens, when given), or it is empty where the text is already covered.
Anything else is another prompt's token, and an error.
"""
from __future__ import annotations

import re

import numpy as np

from ..errors import RemoteResponseError

REPLACEMENT = "\ufffd"


def _is_byte_piece(piece: str) -> bool:
    return bool(piece) and set(piece) == {REPLACEMENT}


def _mismatch(text: str, i: int, piece: str, at: int) -> RemoteResponseError:
    return RemoteResponseError(
        f"the server's token {i} ({piece!r}) does not match the text at character {at} "
        f"({text[at:at + 20]!r}): the server answered for a different prompt, or its token "
        "strings cannot be placed in the text. Pass tokenizer= (the served model's tokenizer) "
        "so that lightlens takes the spans from it."
    )


# <s> </s> <bos> <eos> <|eot_id|> <｜…｜> [CLS]; not markup such as <html> nor byte pieces <0x0A>
SPECIAL = re.compile(r"</?(?:s|bos|eos|pad|unk)>|<[|｜][^<>\s]{1,48}[|｜]>|\[[A-Z][A-Z_]{1,15}\]")


def is_special(piece: str, specials=()) -> bool:
    """Whether a token string is a special token: one of ``specials`` or shaped like one.

    >>> [is_special(p) for p in ("<s>", "<|begin_of_text|>", "[CLS]", "Hello", "<a b>")]
    [True, True, True, False, False]
    """
    return piece in specials or SPECIAL.fullmatch(piece) is not None


def align(text: str, pieces: list[str | None], specials=()) -> tuple[np.ndarray, slice]:
    """Spans ``[n, 2]`` of ``pieces`` in ``text``, and the slice of pieces that are the text's
    tokens (a leading BOS and a trailing EOS, special tokens, are outside it).

    ``pieces[0]`` may be None (vLLM gives no string for the first token): it then covers
    whatever precedes the rest, and when that is nothing it is taken for a BOS token (as is
    an empty first string). Without ids this cannot be told from a first token holding only
    the first bytes of a character; the numbers are the same either way. ``specials``: the
    tokenizer's special tokens, when known.

    >>> align("Hello world", ["Hello", " world"])[0].tolist()
    [[0, 5], [5, 11]]
    >>> align("Hello world", ["<s>", "Hello", "world", ""])
    (array([[ 0,  0],
           [ 0,  5],
           [ 5, 11],
           [11, 11]]), slice(1, 3, None))
    >>> align("world", ["Hello", "world"])
    Traceback (most recent call last):
    lightlens.errors.RemoteResponseError: the server's token 0 ('Hello') does not match the text ...
    """
    pieces = list(pieces)
    if pieces and pieces[0] is None:
        pieces[0] = _unnamed_first(text, pieces, specials)
    spans, cursor, start, stop = [], 0, 0, len(pieces)
    i = 0
    while i < len(pieces):
        piece = pieces[i]
        if not isinstance(piece, str):
            raise RemoteResponseError(f"the server's token {i} has no text ({piece!r})")
        if i == 0 and piece == "" and (not text or ord(text[0]) < 128):
            spans.append((0, 0))  # a special token decoded to nothing (or vLLM's unnamed BOS)
            start = 1
        elif 0 < i == len(pieces) - 1 and _is_eos(text, cursor, piece, specials):
            spans.append((len(text), len(text)))  # an EOS after the text (decoded empty, or "</s>")
            stop = i
        elif piece == "" and text.startswith(" ", cursor):
            spans.append((cursor, cursor + 1))  # SentencePiece's lone "▁" decoded alone
            cursor += 1
        elif text.startswith(piece, cursor):
            spans.append((cursor, cursor + len(piece)))
            cursor += len(piece)
        elif _is_byte_piece(piece):
            j = i
            while j + 1 < len(pieces) and isinstance(pieces[j + 1], str) and _is_byte_piece(pieces[j + 1]):
                j += 1
            following = pieces[j + 1] if j + 1 < len(pieces) else None
            if isinstance(following, str) and following.startswith(REPLACEMENT):
                end = cursor  # the next piece completes the character
            elif (end := _next_match(text, cursor, following)) is None or end == cursor:
                raise _mismatch(text, i, piece, cursor)
            spans += _byte_run_spans(text, cursor, end, j - i + 1) if end > cursor else [(cursor, cursor)] * (j - i + 1)
            cursor, i = end, j
        elif (end := _match_partial(text, cursor, piece)) is not None:
            spans.append((cursor, end))  # "…\ufffd" / "\ufffd…": a character split between tokens
            cursor = end
        elif (skip := _after_space(text, cursor)) > cursor and text.startswith(piece, skip):
            spans.append((cursor, skip + len(piece)))  # a decoder that drops the leading space
            cursor = skip + len(piece)
        elif i == 0 and is_special(piece, specials):
            spans.append((0, 0))  # BOS or another special token before the text
            start = 1
        else:
            raise _mismatch(text, i, piece, cursor)
        i += 1
    if cursor < len(text):
        if text[cursor:].strip() or stop <= start:
            raise RemoteResponseError(
                f"the server's tokens cover only the first {cursor} of {len(text)} characters: "
                "it answered for a different (shorter) prompt or truncated it"
            )
        spans[stop - 1] = (spans[stop - 1][0], len(text))  # trailing whitespace a decoder dropped
    return np.array(spans, dtype=np.int64).reshape(-1, 2), slice(start, stop)


def _is_eos(text: str, at: int, piece: str, specials) -> bool:
    """Whether the last piece, met at character ``at``, is a special token after the text: empty
    once the text is covered, or a special token with at most whitespace left."""
    if piece == "":
        return at == len(text)
    return is_special(piece, specials) and not text[at:].strip()


def _unnamed_first(text: str, pieces: list, specials) -> str:
    """What vLLM's unnamed first token covers: whatever precedes the other pieces (a trailing
    special token aside)."""
    tail = pieces[1:]
    if tail and isinstance(tail[-1], str) and is_special(tail[-1], specials) \
            and not text.endswith("".join(p or "" for p in tail)):
        tail = tail[:-1]
    rest = "".join(p or "" for p in tail)
    if not text.endswith(rest):
        raise _mismatch(text, 1, pieces[1] if len(pieces) > 1 else "", max(0, len(text) - len(rest)))
    return text[: len(text) - len(rest)]


def _byte_run_spans(text: str, start: int, end: int, n: int) -> list[tuple[int, int]]:
    """Spans of ``n`` byte pieces covering ``text[start:end]``: each character goes to the
    piece holding its last byte when there is one piece per byte, else all to the last piece."""
    sizes = [len(c.encode("utf-8")) for c in text[start:end]]
    if sum(sizes) != n:
        return [(start, start)] * (n - 1) + [(start, end)]
    spans, at = [], start
    for size in sizes:
        spans += [(at, at)] * (size - 1) + [(at, at + 1)]
        at += 1
    return spans


def _match_partial(text: str, at: int, piece: str) -> int | None:
    """End of a piece with U+FFFD at its ends: leading ones complete the character at ``at``,
    the text in between matches exactly, trailing ones start a character the next piece ends."""
    core = piece.strip(REPLACEMENT)
    if not core or core == piece:
        return None
    if piece.startswith(REPLACEMENT):
        if at >= len(text) or ord(text[at]) < 128:
            return None
        at += 1
    for start in (at, _after_space(text, at)):
        if text.startswith(core, start):
            return start + len(core)
    return None


def _after_space(text: str, at: int) -> int:
    while at < len(text) and text[at].isspace():
        at += 1
    return at


def _next_match(text: str, at: int, following: str | None) -> int | None:
    """Where the characters of a run of byte pieces end: at the next piece, or the text's end."""
    if following is None:
        return len(text)
    for end in range(at + 1, min(len(text), at + 16) + 1):
        if text.startswith(following, end) or (following and _is_byte_piece(following) and end < len(text)
                                                and ord(text[end]) > 127):
            return end
        if ord(text[end - 1]) < 128:
            return None
    return None
