"""The corpus-level numbers, defined once: nll, perplexity, bits per byte, word perplexity.

Every result type (one text, a corpus) supplies four sums and inherits these definitions
from :class:`Totals`, so a per-text and a corpus perplexity can never disagree on what
perplexity means (``../shared/DESIGN.md``): ``exp(total nll / total scored tokens)``, never a
mean of per-text perplexities.
"""
from __future__ import annotations

import math

LN2 = math.log(2.0)


def count_words(text: str) -> int:
    """Number of whitespace-separated words (lm-evaluation-harness's word count).

    >>> count_words("  the cat\\n sat ")
    3
    """
    return len(text.split())


class Totals:
    """Derived numbers from four sums that a subclass provides as attributes or properties.

    ``num_scored`` (tokens with a log-probability), ``total_nll`` (their summed negative
    log-probability, nats), ``num_bytes`` and ``num_words`` (UTF-8 bytes and words of the
    scored text).

    >>> class Two(Totals):
    ...     num_scored, total_nll, num_bytes, num_words = 2, 2 * math.log(4), 8, 2
    >>> t = Two()
    >>> round(t.perplexity, 6), round(t.bits_per_byte, 6), round(t.word_perplexity, 6)
    (4.0, 0.5, 4.0)
    """

    num_scored: int
    total_nll: float
    num_bytes: int
    num_words: int

    @property
    def nll(self) -> float:
        """Mean negative log-likelihood per scored token (nats); NaN if none was scored."""
        n = self.num_scored
        return self.total_nll / n if n else math.nan

    @property
    def perplexity(self) -> float:
        """``exp(nll)``: token perplexity over the scored tokens."""
        return math.exp(self.nll) if self.num_scored else math.nan

    @property
    def bits_per_byte(self) -> float:
        """``total nll / ln 2 / UTF-8 bytes`` of the scored text: comparable across tokenizers."""
        b = self.num_bytes
        return self.total_nll / LN2 / b if b and self.num_scored else math.nan

    @property
    def word_perplexity(self) -> float:
        """``exp(total nll / words)`` of the scored text (lm-evaluation-harness)."""
        w = self.num_words
        return math.exp(self.total_nll / w) if w and self.num_scored else math.nan
