"""Views of a divergence (two models over the same tokens): the disagreement heatmap and plots.

They read only the result's arrays (``kl``, ``delta_p``, both logprobs and top-k lists), so
:class:`lightlens.Divergence` renders through them without an upward import. Static HTML with
inline styles and the CSS-only tooltips of :mod:`.heatmap`: no CDN, no JavaScript.
"""
from __future__ import annotations

import html
import math

import numpy as np

from .colors import to_hex
from .heatmap import CSS, MAX_TOKENS, SCROLL_AFTER, _escape_tip, _visible
from .plots import PLAIN, _axes

SCALES = {  # metric -> (label, vmin, vmax, log colour scale)
    "kl": ("KL(base‖model), nats", 1e-5, 1.0, True),
    "reverse_kl": ("KL(model‖base), nats", 1e-5, 1.0, True),
    "js": ("Jensen-Shannon, nats", 1e-6, 0.3, True),
    "abs_delta_p": ("|Δp| of the token", 0.0, 0.25, False),
}


def metric_values(d, metric: str) -> np.ndarray:
    """The per-token values a heatmap colours by (NaN where unscored).

    >>> metric_values(lightlens.divergence("Hello world", base=tiny, model=tiny), "abs_delta_p").tolist()
    [nan, 0.0]
    """
    if metric not in SCALES:
        raise ValueError(f"unknown metric {metric!r}: choose one of {', '.join(SCALES)}")
    if metric == "abs_delta_p":
        return np.abs(d.delta_p.astype(np.float64))
    return getattr(d, metric).astype(np.float64)


def _colors(values: np.ndarray, lo: float, hi: float, log: bool) -> list[str]:
    if log:
        floor = lo / 10
        v = np.log10(np.clip(np.nan_to_num(values, nan=floor, posinf=hi), floor, None))
        return to_hex(v, math.log10(lo), math.log10(hi), "YlOrRd")
    return to_hex(np.nan_to_num(values, nan=lo), lo, hi, "YlOrRd")


def _tip(d, i: int, top: int) -> str:
    """Both models' view of token i: probabilities, Δp, divergences and the two top-k lists."""
    lines = [f"token  {d.tokens[i]!r}   id {int(d.token_ids[i])}"]
    if not d.scored[i]:
        lines.append("not compared (no context before it)")
        return _escape_tip(lines)
    pb, pq = math.exp(float(d.logprob_base[i])), math.exp(float(d.logprob[i]))
    lines += [f"p base {pb:.4f}   p model {pq:.4f}   Δp {pq - pb:+.4f}",
              f"KL {float(d.kl[i]):.3g}   reverse {float(d.reverse_kl[i]):.3g}   JS {float(d.js[i]):.3g} nats",
              f"entropy {float(d.entropy_base[i]):.3f} → {float(d.entropy[i]):.3f} nats   "
              f"top-1 {'same' if d.same_top1[i] else 'differs'}"]
    k = min(top, d.k)
    if k:
        lines.append(f"{'base top-' + str(k):<26}{'model top-' + str(k)}")
        for j in range(k):
            a = f"{d.top_k_tokens_base[i][j]!r:<14}{math.exp(float(d.top_k_logprobs_base[i][j])):7.4f}"
            b = f"{d.top_k_tokens[i][j]!r:<14}{math.exp(float(d.top_k_logprobs[i][j])):7.4f}"
            lines.append(f"  {a}   {b}")
    return _escape_tip(lines)


def divergence_html(d, *, metric: str = "kl", text: int | None = None, vmin: float | None = None,
                    vmax: float | None = None, top: int = 5, max_tokens: int = MAX_TOKENS) -> str:
    """HTML of the texts with each token coloured by how much the two models disagree there
    (``metric``: "kl", "reverse_kl", "js" on a log scale, or "abs_delta_p"); ``text``: one text
    only. Hover a token for both probabilities and both top-k lists.

    >>> h = divergence_html(lightlens.divergence("Hello world", base=tiny, model=tiny), metric="js")
    >>> "<script" in h, h.count("data-tip=")
    (False, 2)
    """
    values = metric_values(d, metric)  # checks the name
    label, lo, hi, log = SCALES[metric]
    lo, hi = (lo if vmin is None else vmin), (hi if vmax is None else vmax)
    colors = _colors(values, lo, hi, log)
    idx = np.arange(len(d)) if text is None else np.flatnonzero(d.doc == text)
    shown = idx[:max_tokens]
    spans, last_doc = [], None
    for i in shown.tolist():
        if last_doc is not None and d.doc[i] != last_doc:
            spans.append("<hr style='border:0;border-top:1px dashed #d1d5db;margin:6px 0'>")
        last_doc = d.doc[i]
        if not d.tokens[i]:
            continue  # a byte-piece of a character that a later token completes (its own tooltip has it)
        scored = bool(d.scored[i])
        style = f" style='background:{colors[i]}'" if scored else ""
        cls = "ll-t" + ("" if scored else " ll-na") + ("" if not scored or d.same_top1[i] else " ll-hi")
        spans.append(f"<span class='{cls}'{style} data-tip='{_tip(d, i, top)}'>{_visible(d.tokens[i])}</span>")
    s = d.stats()
    more = (f"<div class='ll-head'>… {len(idx) - len(shown)} more tokens not shown (max_tokens={max_tokens})</div>"
            if len(shown) < len(idx) else "")
    scale = f"{lo:g} … {hi:g}" + (" (log)" if log else "")
    summary = (f"<span>mean KL <b>{s['mean_kl']:.4g}</b></span><span>same top-1 <b>{s['same_top1']:.2f}%</b></span>"
               f"<span>RMS Δp <b>{100 * s['rms_delta_p']:.3f}%</b></span>" if s["num_scored"] else "")
    head = (f"<div class='ll-head'><span><b>{html.escape(str(d.model.get('name', '?')))}</b> vs base "
            f"<b>{html.escape(str(d.base_model.get('name', '?')))}</b></span>{summary}"
            f"<span>{html.escape(label)} {scale}</span><span>outlined: top-1 differs</span></div>")
    box = "ll-text ll-scroll" if len(shown) > SCROLL_AFTER else "ll-text"
    return f"{CSS}<div class='ll-card'>{head}<div class='{box}'>{''.join(spans)}</div>{more}</div>"


def plot_kl_cdf(d, *, ax=None, metric: str = "kl"):
    """The distribution of per-token KL: the fraction of tokens at or below each value, log x.

    >>> plot_kl_cdf(lightlens.divergence("Hello world! Hello again.", base=tiny, model=tiny)).get_xscale()
    'log'
    """
    ax = _axes(ax, (5, 3))
    v = np.sort(metric_values(d, metric)[d.scored])
    v = np.clip(v, 1e-12, None)  # a log axis: exact zeros (identical predictions) at 1e-12
    ax.step(v, np.arange(1, len(v) + 1) / max(len(v), 1), where="post", color="#b91c1c")
    ax.set_xscale("log")
    ax.set_xlabel(f"{SCALES[metric][0]} (zeros at 1e-12)", **PLAIN)
    ax.set_ylabel("fraction of tokens ≤", **PLAIN)
    ax.set_ylim(0, 1.01)
    ax.grid(alpha=0.3)
    return ax


def plot_delta_p(d, *, ax=None, bins: int = 50):
    """Histogram of Δp = p_model − p_base of the actual tokens.

    >>> plot_delta_p(lightlens.divergence("Hello world! Hello again.", base=tiny, model=tiny)).get_xlabel()
    'Δp = p(model) − p(base) of the token'
    """
    ax = _axes(ax, (5, 3))
    ax.hist(d.delta_p[d.scored].astype(np.float64), bins=bins, color="#2563eb", alpha=0.8)
    ax.set_yscale("log")
    ax.set_xlabel("Δp = p(model) − p(base) of the token", **PLAIN)
    ax.set_ylabel("tokens")
    return ax


def plot_kl_along(d, *, ax=None, metric: str = "kl", text: int | None = None):
    """Per-token KL along the text(s), log y (unscored tokens left out).

    >>> plot_kl_along(lightlens.divergence("Hello world! Hello again.", base=tiny, model=tiny)).get_ylabel()
    'KL(base‖model), nats'
    """
    ax = _axes(ax)
    idx = np.arange(len(d)) if text is None else np.flatnonzero(d.doc == text)
    v = metric_values(d, metric)[idx]
    keep = ~np.isnan(v)
    ax.plot(np.arange(len(idx))[keep], np.clip(v[keep], 1e-12, None), lw=0.8, color="#b91c1c")
    ax.set_yscale("log")
    ax.set_xlabel("token index")
    ax.set_ylabel(SCALES[metric][0], **PLAIN)
    return ax


def plot_divergence(d):
    """The three plots side by side (KL CDF, Δp histogram, KL along the text); returns the figure.

    >>> len(plot_divergence(lightlens.divergence("Hello world! Hello again.", base=tiny, model=tiny)).axes)
    3
    """
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(13, 5.5), layout="constrained")
    grid = fig.add_gridspec(2, 2, height_ratios=[1.2, 1])
    plot_kl_cdf(d, ax=fig.add_subplot(grid[0, 0]))
    plot_delta_p(d, ax=fig.add_subplot(grid[0, 1]))
    plot_kl_along(d, ax=fig.add_subplot(grid[1, :]))
    fig.suptitle(f"{d.model.get('name', '?')} vs base {d.base_model.get('name', '?')}", fontsize=10, **PLAIN)
    return fig
