"""Corpus perplexity: many texts (or a file), aggregated as ``exp(total nll / total tokens)``."""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from .result import LN2, ScoreResult

_PATH_SUFFIXES = (".txt", ".jsonl", ".json", ".md", ".raw", ".text")


class Aggregate:
    """Corpus numbers from four sums (subclasses give them): ``exp(total nll / total tokens)``,
    never a mean of per-text perplexities."""

    num_tokens: int  # scored tokens over all documents
    total_nll: float  # sum of -logprob over all scored tokens (nats)
    num_bytes: int  # UTF-8 bytes of the scored text
    num_words: int  # whitespace-separated words of the scored text

    @property
    def nll(self) -> float:
        """Mean nll per scored token."""
        return self.total_nll / self.num_tokens if self.num_tokens else math.nan

    @property
    def perplexity(self) -> float:
        """Token perplexity ``exp(total nll / total scored tokens)``."""
        return math.exp(self.nll) if self.num_tokens else math.nan

    @property
    def bits_per_byte(self) -> float:
        """``total nll / ln 2 / total UTF-8 bytes`` of the scored text."""
        b = self.num_bytes
        return self.total_nll / LN2 / b if b and self.num_tokens else math.nan

    @property
    def word_perplexity(self) -> float:
        """``exp(total nll / total words)``."""
        w = self.num_words
        return math.exp(self.total_nll / w) if w and self.num_tokens else math.nan


@dataclass(eq=False)
class CorpusResult(Aggregate):
    """Per-document results and their aggregate (never a mean of per-text perplexities).

    >>> c = lightlens.perplexity("wiki.test.raw")          # doctest: +SKIP
    >>> c.perplexity, c.num_tokens, c.bits_per_byte        # doctest: +SKIP
    """

    documents: list[ScoreResult]

    @property
    def num_tokens(self) -> int:
        """Scored tokens over all documents."""
        return sum(d.num_scored for d in self.documents)

    @property
    def total_nll(self) -> float:
        """Sum of -logprob over all scored tokens (nats)."""
        return -sum(d.total_logprob for d in self.documents)

    @property
    def num_bytes(self) -> int:
        """UTF-8 bytes of the scored text."""
        return sum(d.num_bytes for d in self.documents)

    @property
    def num_words(self) -> int:
        """Whitespace-separated words of the scored text."""
        return sum(d.num_words for d in self.documents)

    def summary(self) -> dict[str, Any]:
        """The aggregate as a JSON-ready dict.

        >>> lightlens.perplexity(["a text", "another"]).summary()["perplexity"]   # doctest: +SKIP
        """
        first = self.documents[0] if self.documents else None
        return {
            "perplexity": self.perplexity,
            "nll": self.nll,
            "bits_per_byte": self.bits_per_byte,
            "word_perplexity": self.word_perplexity,
            "num_tokens": self.num_tokens,
            "num_documents": len(self.documents),
            "model": first.model if first else {},
            "window": {k: first.window[k] for k in ("max_length", "stride")} if first else {},
        }

    def to_pandas(self):
        """One row per document: tokens scored, nll, perplexity, bits per byte.

        >>> corpus.to_pandas().sort_values("perplexity").tail()   # doctest: +SKIP
        """
        import pandas as pd

        return pd.DataFrame(
            [
                {"document": i, "num_tokens": d.num_scored, "nll": d.nll, "perplexity": d.perplexity,
                 "bits_per_byte": d.bits_per_byte, "windows": d.window.get("num_windows")}
                for i, d in enumerate(self.documents)
            ]
        )

    def __repr__(self) -> str:
        return (
            f"CorpusResult(documents={len(self.documents)}, tokens={self.num_tokens}, "
            f"perplexity={self.perplexity:.4f}, bits_per_byte={self.bits_per_byte:.4f}, "
            f"word_perplexity={self.word_perplexity:.4f})"
        )


def read_texts(source) -> list[str]:
    """Texts from a list of str, a text, or a path (.jsonl: one ``{"text": ...}`` a line; else one text).

    >>> read_texts(["a", "b"])
    ['a', 'b']
    """
    if isinstance(source, os.PathLike) or (isinstance(source, str) and _looks_like_path(source)):
        return _read_file(Path(source))
    if isinstance(source, str):
        return [source]
    texts = list(source)
    if not texts:
        raise ValueError("no texts given: pass a non-empty list of str or a file path")
    for t in texts:
        if not isinstance(t, str):
            raise TypeError(f"expected str texts, got {type(t).__name__}")
    return texts


def _looks_like_path(s: str) -> bool:
    if os.path.isfile(s):
        return True
    one_line = "\n" not in s and len(s) < 1024
    return one_line and (s.lower().endswith(_PATH_SUFFIXES) or s.startswith(("./", "/", "~/")))


def _read_file(path: Path) -> list[str]:
    path = path.expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"no file at {path}: check the path (to score a text itself, pass [text])")
    if path.suffix == ".jsonl":
        texts = []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                row = json.loads(line)
                if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                    raise ValueError(f"{path}:{n}: each line must be a JSON object with a 'text' string")
                texts.append(row["text"])
        return texts
    return [path.read_text(encoding="utf-8")]


def perplexity(
    texts_or_path: str | os.PathLike | Sequence[str],
    *,
    model=None,
    max_length: int | None = None,
    stride: int | None = None,
    bos: bool | None = None,
    batch_size: int = 8,
    progress: bool | None = True,
    max_tokens: int | None = None,
) -> CorpusResult:
    """Perplexity of a corpus with the sliding window; every token scored once.

    ``texts_or_path``: a list of texts, one text, or a file (``.jsonl`` with a ``text`` field
    per line, anything else read as one document). ``max_tokens`` keeps only each text's first
    that many tokens (for quick, comparable runs).

    >>> c = lightlens.perplexity("../shared/data/wikitext-2-raw-v1-test.txt",
    ...                          max_length=2048, stride=2048)    # doctest: +SKIP
    >>> round(c.perplexity, 2)                                   # doctest: +SKIP
    """
    from .api import get_model

    lm = get_model(model)
    texts = read_texts(texts_or_path)
    if max_tokens is not None:
        texts = [truncate_tokens(lm.tokenizer, t, max_tokens) for t in texts]
    results = lm.score(texts, top_k=0, max_length=max_length, stride=stride, bos=bos,
                       batch_size=batch_size, progress=progress)
    return CorpusResult(results)


def truncate_tokens(tokenizer, text: str, n: int) -> str:
    """The prefix of ``text`` covered by its first ``n`` tokens."""
    from .tokenize import encode

    enc = encode(tokenizer, text, bos=False)
    return text if len(enc.offsets) <= n else text[: enc.offsets[n - 1, 1]]
