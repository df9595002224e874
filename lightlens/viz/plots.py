"""Matplotlib plots of a result; each returns the Axes it drew on.

Tokens and model names are drawn as text, never as mathtext or TeX: ``$x$`` shows as ``$x$``.
"""
from __future__ import annotations

import math

import numpy as np

from .colors import GLTR_BUCKETS, known_ranks

MAX_LABELS = 60
PLAIN = {"parse_math": False, "usetex": False}  # Text properties: shown as written


def _axes(ax, figsize=(10, 3)):
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=figsize, layout="constrained")[1]


def _label_tokens(ax, tokens: list[str]) -> None:
    """Token labels on the x axis when they fit."""
    if len(tokens) <= MAX_LABELS:
        ax.set_xticks(range(len(tokens)))
        ax.set_xticklabels([t.replace("\n", "↵") or "·" for t in tokens], rotation=70, fontsize=8, **PLAIN)
    else:
        ax.set_xlabel("token index")


def _legend(ax) -> None:
    """The legend, its labels (model names) as plain text."""
    for text in ax.legend(fontsize=8).get_texts():
        text.set(**PLAIN)


def plot_logprobs(r, *, ax=None, surprisal: bool = False):
    """Per-token log-probability (or surprisal in bits) along the text.

    >>> ax = plot_logprobs(result)
    >>> len(ax.lines) >= 1
    True
    """
    ax = _axes(ax)
    y = r.surprisal_bits if surprisal else r.logprobs
    ax.plot(np.arange(len(r)), y, marker="o" if len(r) <= 200 else None, ms=3, lw=1, color="#2563eb")
    ax.set_ylabel("surprisal (bits)" if surprisal else "log-probability (nats)")
    ax.set_title(f"{r.model.get('name', '')}: perplexity {r.perplexity:.2f}", fontsize=10, **PLAIN)
    ax.grid(alpha=0.3)
    _label_tokens(ax, r.tokens)
    return ax


def plot_entropy(r, *, ax=None):
    """Surprisal of each token beside the entropy of the prediction, both in bits.

    Tokens far above the entropy line surprised a confident model.

    >>> ax = plot_entropy(result)
    >>> ax.get_ylabel()
    'bits'
    """
    ax = _axes(ax)
    x = np.arange(len(r))
    ax.plot(x, r.surprisal_bits, lw=1, color="#dc2626", label="surprisal of the token")
    ax.plot(x, np.where(r.scored, r.entropy, np.nan) / math.log(2), lw=1, color="#059669",
            label="entropy of the prediction")
    ax.set_ylabel("bits")
    ax.legend(fontsize=8, loc="upper right")
    ax.grid(alpha=0.3)
    _label_tokens(ax, r.tokens)
    return ax


def windowed_perplexity(r, window: int = 256) -> np.ndarray:
    """exp(mean nll) over the last ``window`` scored tokens, at every token (NaN before any).

    >>> w = windowed_perplexity(result, window=4)
    >>> len(w) == len(result), bool(w[-1] > 1)
    (True, True)
    """
    nll = np.where(r.scored, -r.logprobs.astype(np.float64), 0.0)
    cnt = r.scored.astype(np.float64)
    cs_nll, cs_cnt = np.concatenate([[0], np.cumsum(nll)]), np.concatenate([[0], np.cumsum(cnt)])
    idx = np.arange(1, len(r) + 1)
    lo = np.maximum(0, idx - window)
    n = cs_cnt[idx] - cs_cnt[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, np.exp((cs_nll[idx] - cs_nll[lo]) / n), np.nan)


def plot_windowed_perplexity(r, *, window: int = 256, ax=None):
    """Running perplexity over the last ``window`` tokens along a long document.

    >>> ax = plot_windowed_perplexity(result, window=4)
    >>> len(ax.lines) >= 1
    True
    """
    ax = _axes(ax)
    ax.plot(windowed_perplexity(r, window), lw=1, color="#7c3aed")
    ax.axhline(r.perplexity, color="#6b7280", ls="--", lw=1, label=f"whole text {r.perplexity:.2f}")
    ax.set_xlabel("token index")
    ax.set_ylabel(f"perplexity (last {window} tokens)")
    ax.set_yscale("log")
    _legend(ax)
    ax.grid(alpha=0.3)
    return ax


def rank_buckets(r) -> dict[str, int]:
    """How many scored tokens fall in each GLTR bucket (top 10 / 100 / 1000 / rest); a rank the
    backend did not report (-1) is in none.

    >>> sum(rank_buckets(result).values()) == result.num_scored
    True
    >>> list(rank_buckets(result))
    ['top 10', 'top 100', 'top 1000', 'rest']
    """
    ranks = r.ranks[r.scored & known_ranks(r.ranks)]
    counts, lower = {}, 0
    for limit, label, _ in GLTR_BUCKETS:
        upper = np.inf if limit is None else limit
        counts[label] = int(((ranks > lower) & (ranks <= upper)).sum())
        lower = upper
    return counts


def plot_rank_histogram(r, *, ax=None):
    """GLTR histogram: the share of tokens in the model's top 10, 100, 1000, and the rest.

    >>> ax = plot_rank_histogram(result)
    >>> len(ax.patches) >= 1
    True
    """
    ax = _axes(ax, figsize=(5, 3))
    counts = rank_buckets(r)
    total = max(1, sum(counts.values()))
    bars = ax.bar(list(counts), [c / total for c in counts.values()], color=[c for *_, c in GLTR_BUCKETS],
                  edgecolor="#374151")
    ax.bar_label(bars, labels=[str(c) for c in counts.values()], fontsize=8)
    ax.set_ylabel("share of scored tokens")
    ax.set_ylim(0, 1.1)
    unknown = int((r.scored & ~known_ranks(r.ranks)).sum())
    if unknown:
        ax.set_xlabel(f"{unknown} scored tokens with unknown rank (not reported) are not counted")
    return ax


def plot_comparison(a, b, *, ax=None):
    """Two results on the same text: each one's log-probabilities and their difference.

    Needs the same tokens (one tokenizer); for different tokenizers compare ``bits_per_byte``.

    >>> ax = plot_comparison(result, lightlens.score(result.text, model=tiny, max_length=4))
    >>> len(ax.lines) >= 1
    True
    """
    if a.text != b.text or a.tokens != b.tokens:
        raise ValueError("plot_comparison needs two results of the same text and tokenizer; "
                         "for different tokenizers compare bits_per_byte")
    ax = _axes(ax)
    x = np.arange(len(a))
    name_a, name_b = a.model.get("name", "a"), b.model.get("name", "b")
    ax.plot(x, a.logprobs, lw=1, label=name_a)
    ax.plot(x, b.logprobs, lw=1, label=name_b)
    ax.bar(x, b.logprobs - a.logprobs, color="#9ca3af", alpha=0.6, label=f"{name_b} − {name_a}")
    ax.set_ylabel("log-probability (nats)")
    _legend(ax)
    ax.grid(alpha=0.3)
    _label_tokens(ax, a.tokens)
    return ax
