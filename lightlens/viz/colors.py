"""Metrics a token can be coloured by, their value ranges, and colour maps as hex strings."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GLTR_BUCKETS = ((10, "top 10", "#b7e4a7"), (100, "top 100", "#ffe680"),
                (1000, "top 1000", "#ffb3a7"), (None, "rest", "#d7b8f3"))


@dataclass(frozen=True)
class Metric:
    """How to read one metric off a result and scale it to [0, 1] for a colour map."""

    name: str
    label: str
    vmin: float
    vmax: float
    cmap: str

    def values(self, r) -> np.ndarray:
        """The metric's value per token (NaN where the token was not scored)."""
        if self.name == "logprob":
            return r.logprobs.astype(np.float64)
        if self.name == "prob":
            return r.probs.astype(np.float64)
        if self.name == "surprisal":
            return r.surprisal_bits.astype(np.float64)
        if self.name == "entropy":
            return np.where(r.scored, r.entropy, np.nan).astype(np.float64)
        return np.where(r.scored & (r.ranks > 0), r.ranks, np.nan).astype(np.float64)  # rank; 0: unknown


METRICS = {
    "logprob": Metric("logprob", "log-probability (nats)", -10.0, 0.0, "RdYlGn"),
    "prob": Metric("prob", "probability", 0.0, 1.0, "RdYlGn"),
    "surprisal": Metric("surprisal", "surprisal (bits)", 0.0, 15.0, "YlOrRd"),
    "entropy": Metric("entropy", "entropy of the prediction (nats)", 0.0, 6.0, "PuBu"),
    "rank": Metric("rank", "rank of the token (GLTR buckets)", 1.0, 1000.0, "gltr"),
}


def get_metric(name: str) -> Metric:
    """The metric called ``name``, or a ValueError listing the choices."""
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}: choose one of {', '.join(METRICS)}")
    return METRICS[name]


def rank_colors(ranks: np.ndarray) -> list[str]:
    """GLTR's four buckets: top 10, top 100, top 1000, rest."""
    out = []
    for r in ranks:
        for limit, _, color in GLTR_BUCKETS:
            if limit is None or r <= limit:
                out.append(color)
                break
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
