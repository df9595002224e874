"""Text → token ids with character spans that partition the text, and the BOS policy.

BOS policy (``bos=None``, the default): prepend the tokenizer's BOS exactly when the
tokenizer would add one by itself (Llama, Gemma do; GPT-2, SmolLM2 do not). ``bos=True``
always prepends it (an error if the tokenizer has none), ``bos=False`` never does. The
text is always tokenized without special tokens and BOS is added here at most once, so
there is never a double BOS. With a BOS every text token is scored; without one the first
text token has no context and gets NaN.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from ..options import check_bos, check_max_tokens

_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class Encoding:
    """One tokenized text.

    ``ids`` are the model's input (BOS first when ``bos``); ``offsets`` [n, 2] give the
    character span of each *text* token, contiguous, covering ``text`` exactly.
    """

    text: str
    ids: np.ndarray
    offsets: np.ndarray
    bos: bool

    @property
    def text_ids(self) -> np.ndarray:
        """The ids of the text tokens (without BOS)."""
        return self.ids[1:] if self.bos else self.ids

    @property
    def tokens(self) -> list[str]:
        """The exact characters each text token covers."""
        text = self.text
        return [text[a:b] for a, b in self.offsets.tolist()]


def adds_bos(tokenizer) -> bool:
    """Whether the tokenizer prepends its BOS token by itself when encoding a text.

    >>> adds_bos(tiny.tokenizer), adds_bos(tiny_llama.tokenizer)   # GPT-2 style, Llama style
    (False, True)
    """
    bos = tokenizer.bos_token_id
    if bos is None:
        return False
    with_special = tokenizer("a", add_special_tokens=True)["input_ids"]
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    return len(with_special) > len(plain) and with_special[0] == bos


def resolve_bos(tokenizer, bos: bool | None) -> bool:
    """Apply the BOS policy: ``None`` follows the tokenizer, ``True``/``False`` force it."""
    bos = check_bos(bos)
    if bos is None:
        return adds_bos(tokenizer)
    if bos and tokenizer.bos_token_id is None:
        raise ValueError("bos=True, but this tokenizer has no BOS token: pass bos=False or None")
    return bool(bos)


def partition_offsets(spans, n_chars: int) -> np.ndarray:
    """Turn a tokenizer's (possibly overlapping or trimmed) spans into a partition.

    The boundary before token i is ``min(its start, the end of the text so far)``, never
    moving backwards: a leading space the tokenizer trimmed goes to the token it precedes;
    when several tokens claim one character (the byte pieces of an emoji, a prefix ``▁``
    the tokenizer invented) the character goes to the last of them, the one that completes
    it, and the others cover nothing. The last token runs to the end of the text.

    >>> partition_offsets([(0, 5), (6, 11)], 11).tolist()
    [[0, 5], [5, 11]]
    >>> partition_offsets([(0, 1), (0, 1)], 1).tolist()
    [[0, 0], [0, 1]]
    """
    return partition_many([spans], [n_chars])[0]


def encode(tokenizer, text: str, *, bos: bool | None = None) -> Encoding:
    """Tokenize ``text`` with character offsets and the BOS policy applied.

    >>> enc = encode(tiny.tokenizer, "Hello world")
    >>> enc.tokens, enc.bos
    (['Hello', ' world'], False)
    >>> encode(tiny_llama.tokenizer, "Hello world").bos     # BOS prepended: the first token is scored
    True
    """
    return encode_many(tokenizer, [text], bos=bos)[0]


def encode_many(tokenizer, texts: list[str], *, bos: bool | None = None) -> list[Encoding]:
    """:func:`encode` of each text, in one call of the tokenizer (a fast tokenizer encodes the
    batch in Rust) and with the BOS policy resolved once.

    >>> [e.tokens for e in encode_many(tiny.tokenizer, ["Hello world", "Hello"])]
    [['Hello', ' world'], ['Hello']]
    """
    for text in texts:
        check_text(text)
    add_bos = resolve_bos(tokenizer, bos)
    out = tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=True,
                    return_attention_mask=False, return_token_type_ids=False)
    if not all(out["input_ids"]):
        raise ValueError("the text produced no tokens: give a non-empty text")
    offsets = partition_many(out["offset_mapping"], [len(t) for t in texts])
    encodings = []
    for text, ids, spans in zip(texts, out["input_ids"], offsets):
        # A text that itself starts with the BOS token already has its context: never add a second.
        prepend = add_bos and ids[0] != tokenizer.bos_token_id
        ids = [tokenizer.bos_token_id, *ids] if prepend else ids
        encodings.append(Encoding(text, np.array(ids, dtype=np.int64), spans, prepend))
    return encodings


def partition_many(spans: list, lengths: list[int]) -> list[np.ndarray]:
    """:func:`partition_offsets` of many texts in one vectorised pass: each text's spans are
    shifted past the previous texts' characters, so one running maximum serves them all.

    >>> [o.tolist() for o in partition_many([[(0, 5), (6, 11)], [(0, 1), (0, 1)]], [11, 1])]
    [[[0, 5], [5, 11]], [[0, 0], [0, 1]]]
    """
    counts = np.array([len(s) for s in spans])
    flat = np.array([pair for s in spans for pair in s], dtype=np.int64).reshape(-1, 2)
    base = np.repeat(np.cumsum([0, *lengths[:-1]]) + np.arange(len(lengths)), counts)  # one gap per text
    starts, ends = flat[:, 0] + base, np.maximum.accumulate(flat[:, 1] + base)
    firsts = np.cumsum(counts) - counts
    bounds = np.empty_like(starts)
    bounds[1:] = np.minimum(starts[1:], ends[:-1])
    bounds[firsts] = base[firsts]  # each text starts at its own character 0
    bounds = np.maximum.accumulate(bounds) - base
    nexts = np.append(bounds[1:], 0)
    nexts[np.cumsum(counts) - 1] = lengths  # the last token runs to the end of its text
    return np.split(np.stack([bounds, nexts], axis=-1), np.cumsum(counts)[:-1])


def check_text(text) -> None:
    """Reject what cannot be scored with a message that says what to pass instead.

    >>> check_text("bad " + chr(0xD800) + " text")
    Traceback (most recent call last):
    ValueError: the text has a lone surrogate U+D800 at character 4, which is not Unicode text: decode its bytes with errors="replace" (or fix the source)
    """
    if not isinstance(text, str):
        raise TypeError(
            f"expected a str (or a list of str), got {type(text).__name__}: "
            "decode bytes with .decode('utf-8') and join token lists into a string first"
        )
    if not text:
        raise ValueError("cannot score an empty text: give at least one character")
    match = _SURROGATE.search(text)
    if match:
        raise ValueError(
            f"the text has a lone surrogate U+{ord(match.group()):04X} at character {match.start()}, which is "
            'not Unicode text: decode its bytes with errors="replace" (or fix the source)'
        )


def check_texts(texts) -> list[str]:
    """A list of texts from a list, tuple, pandas Series or other iterable of str; a DataFrame or
    a dict is refused (iterating them gives column names or keys, not texts).

    >>> check_texts(("a", "b"))
    ['a', 'b']
    >>> check_texts({"d1": "some text"})
    Traceback (most recent call last):
    TypeError: score() takes a str or a list of str, not a dict (iterating it gives its keys): for documents with ids use lightlens.score_corpus(...), or pass list(d.values())
    """
    kind = type(texts).__name__
    if isinstance(texts, dict) or (hasattr(texts, "columns") and hasattr(texts, "index")):
        what = "its keys" if isinstance(texts, dict) else "its column names"
        hint = "list(d.values())" if isinstance(texts, dict) else 'df["text"].tolist()'
        raise TypeError(f"score() takes a str or a list of str, not a {kind} (iterating it gives {what}): "
                        f"for documents with ids use lightlens.score_corpus(...), or pass {hint}")
    if isinstance(texts, (bytes, bytearray)) or not isinstance(texts, Iterable):
        check_text(texts)  # raises a TypeError that says what to pass
    out = list(texts.tolist() if hasattr(texts, "tolist") else texts)
    if not out:
        raise ValueError("give a non-empty list of texts (or one str)")
    return out


def truncate_tokens(tokenizer, text: str, n: int) -> str:
    """The prefix of ``text`` covered by its first ``n`` tokens (for quick, comparable runs).

    >>> head = truncate_tokens(tiny.tokenizer, "The quick brown fox jumps over the lazy dog.", 3)
    >>> len(encode(tiny.tokenizer, head, bos=False).ids)
    3
    """
    n = check_max_tokens(n)
    enc = encode(tokenizer, text, bos=False)
    return text if len(enc.offsets) <= n else text[: enc.offsets[n - 1, 1]]
