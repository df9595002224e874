"""Metrics a token can be coloured by, their value ranges, and colour maps as hex strings."""
from __future__ import annotations

import math

from dataclasses import dataclass
from typing import Callable

import numpy as np

GLTR_BUCKETS = ((10, "top 10", "#b7e4a7"), (100, "top 100", "#ffe680"),
                (1000, "top 1000", "#ffb3a7"), (None, "rest", "#d7b8f3"))


@dataclass(frozen=True)
class Metric:
    """How to read one metric off a result and scale it to [0, 1] for a colour map.

    ``merge`` combines the values of a split character's byte-pieces (see :func:`character_values`);
    ``read``, when given, reads the values off a result (a metric only some results have).
    """

    name: str
    label: str
    vmin: float
    vmax: float
    cmap: str
    merge: Callable[[np.ndarray], float] = np.sum
    read: Callable[[object], np.ndarray] | None = None

    def values(self, r) -> np.ndarray:
        """The metric's value per token (NaN where the token was not scored)."""
        if self.read is not None:
            return np.asarray(self.read(r), np.float64)
        if self.name == "logprob":
            return r.logprobs.astype(np.float64)
        if self.name == "prob":
            return r.probs.astype(np.float64)
        if self.name == "surprisal":
            return r.surprisal_bits.astype(np.float64)
        if self.name == "entropy":
            return np.where(r.scored, r.entropy, np.nan).astype(np.float64)
        return np.where(r.scored & known_ranks(r.ranks), r.ranks, np.nan).astype(np.float64)  # rank


METRICS = {  # a split character: its pieces' joint probability, summed entropy, worst rank
    "logprob": Metric("logprob", "log-probability (nats)", -10.0, 0.0, "RdYlGn"),
    "prob": Metric("prob", "probability", 0.0, 1.0, "RdYlGn", np.prod),
    "surprisal": Metric("surprisal", "surprisal (bits)", 0.0, 15.0, "YlOrRd"),
    "entropy": Metric("entropy", "entropy of the prediction (nats)", 0.0, 6.0, "PuBu"),
    "rank": Metric("rank", "rank of the token (GLTR buckets)", 1.0, 1000.0, "gltr", np.max),
}


def known_ranks(ranks: np.ndarray) -> np.ndarray:
    """Where a rank is known: ranks start at 1; 0 is an unscored token, -1 a rank the backend
    did not report.

    >>> known_ranks(np.array([0, 1, -1, 7])).tolist()
    [False, True, False, True]
    """
    return np.asarray(ranks) >= 1


def rank_text(rank) -> str:
    """A rank as views print it: "?" where it is not known (0 unscored, -1 not reported).

    >>> rank_text(np.int64(3)), rank_text(-1)
    ('3', '?')
    """
    return str(int(rank)) if rank >= 1 else "?"


def entropy_text(entropy, unit: str = "") -> str:
    """An entropy as views print it (3 decimals, then ``unit``): "?" where the backend did not
    report it (NaN).

    >>> entropy_text(1.23456, " nats"), entropy_text(float("nan"))
    ('1.235 nats', '?')
    """
    return "?" if math.isnan(entropy) else f"{float(entropy):.3f}{unit}"


def piece_starts(tokens: list[str]) -> list[int]:
    """For each token, the first of the tokens it completes: itself, or the first of the byte-pieces
    before it that cover no characters (a character such as an emoji split over several tokens).

    >>> piece_starts(["a", "", "", "😀", "b"])
    [0, 1, 1, 1, 4]
    """
    starts, start = [], 0
    for i, token in enumerate(tokens):
        starts.append(start)
        if token:
            start = i + 1
    return starts


def character_values(metric: Metric, r) -> np.ndarray:
    """The metric per token, where a token completing a split character takes the value of the
    whole character: ``metric.merge`` of its scored pieces (summed surprisal, as ``compare`` counts).

    >>> r = lightlens.score("🎉", model=tiny)   # four byte-pieces: three cover no characters
    >>> bits = character_values(get_metric("surprisal"), r)
    >>> r.tokens, bool(np.isclose(bits[-1], np.nansum(r.surprisal_bits)))
    (['', '', '', '🎉'], True)
    """
    values = metric.values(r)
    out = values.copy()
    for i, start in enumerate(piece_starts(r.tokens)):
        if start < i and r.scored[i]:
            out[i] = metric.merge(values[start:i + 1][r.scored[start:i + 1]])
    return out


def get_metric(name: str) -> Metric:
    """The metric called ``name``, or a ValueError listing the choices."""
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}: choose one of {', '.join(METRICS)}")
    return METRICS[name]


def rank_colors(ranks: np.ndarray) -> list[str]:
    """GLTR's four buckets: top 10, top 100, top 1000, rest; "" where the rank is unknown (NaN, 0, -1).

    >>> rank_colors(np.array([1, 50, -1, np.nan]))
    ['#b7e4a7', '#ffe680', '', '']
    """
    out = []
    for r in ranks:
        bucket = (color for limit, _, color in GLTR_BUCKETS if limit is None or r <= limit)
        out.append(next(bucket) if r >= 1 else "")
    return out


def to_hex(values: np.ndarray, vmin: float, vmax: float, cmap: str, *, lighten: float = 0.25) -> list[str]:
    """Hex colours of ``values`` scaled to [vmin, vmax], mixed with white so text stays readable."""
    from matplotlib import colormaps

    x = np.clip((values - vmin) / (vmax - vmin), 0.0, 1.0)
    rgb = colormaps[cmap](np.nan_to_num(x, nan=0.5))[:, :3]
    rgb = 1.0 - (1.0 - rgb) * (1.0 - lighten)
    codes = np.round(rgb * 255).astype(int)
    return [f"#{r:02x}{g:02x}{b:02x}" for r, g, b in codes]


def gradient_css(vmin: float, vmax: float, cmap: str, steps: int = 9) -> str:
    """A CSS linear-gradient of the colour map (for the legend)."""
    colors = to_hex(np.linspace(vmin, vmax, steps), vmin, vmax, cmap)
    return f"linear-gradient(to right, {', '.join(colors)})"
