"""Views of a generation: the heatmap with the prompt's end marked and the sampler's view in every
tooltip, one token's span as it arrives (the live view), and the per-step plots.

They read only a :class:`~lightlens.Generation`'s arrays (``num_prompt_tokens``,
``sampled_logprobs``, ``kept``, ``sampled_entropy``, ``sampler``...) or a
:class:`~lightlens.GeneratedToken`'s fields, and draw through :mod:`.heatmap` and :mod:`.plots`:
the same colours, tooltips and static HTML (no CDN, no JavaScript).
"""
from __future__ import annotations

import html
import math
import re
from types import SimpleNamespace

import numpy as np

from .colors import METRICS, Metric
from .heatmap import (
    MAX_TOKENS, Colouring, _tip, card_html, colouring, rank_entropy, span_html, token_spans, token_tip,
)
from .plots import MAX_LABELS, PLAIN, _axes, _label_tokens

LN2 = math.log(2.0)
GENERATION_METRICS = {
    **METRICS,
    "sampled_logprob": Metric("sampled_logprob", "log-probability under the sampler (nats)", -10.0, 0.0, "RdYlGn",
                              read=lambda g: g.sampled_logprobs),
    "kept": Metric("kept", "tokens the sampler kept (log10)", 0.0, 4.0, "PuBu", np.max,
                   read=lambda g: np.log10(np.where(g.kept > 0, g.kept, np.nan))),
}
PROMPT_STYLE = "font-style:italic;color:#4b5563"  # prompt tokens: the model's statistics, no sampler
MARKER_STYLE = "border-left:3px solid #111827;margin:0 3px 0 4px"


def _metric(name: str) -> Metric:
    if name not in GENERATION_METRICS:
        raise ValueError(f"unknown metric {name!r}: choose one of {', '.join(GENERATION_METRICS)}")
    return GENERATION_METRICS[name]


def sampled_lines(step: int, sampled_logprob: float, kept, sampled_entropy: float) -> list[str]:
    """A generated token's tooltip lines about the sampler: its probability under the sampler's
    final distribution, that distribution's support size and entropy, and the step.

    >>> sampled_lines(0, 0.0, 1, -0.0)
    ['sampled p 1.0000   logprob 0.000   kept 1', 'sampled entropy 0.000 nats   step 0']
    >>> sampled_lines(3, float("nan"), 0, float("nan"))
    ["the sampler's view is not known (a server's generation)   step 3"]
    """
    if math.isnan(sampled_logprob):
        return [f"the sampler's view is not known (a server's generation)   step {step}"]
    return [f"sampled p {math.exp(sampled_logprob):.4f}   logprob {sampled_logprob:.3f}   kept {kept}",
            f"sampled entropy {max(0.0, sampled_entropy):.3f} nats   step {step}"]  # not -0.000


def marker_html(label: str, title: str) -> str:
    """The marker between two tokens: a bar, and ``label`` in a tag beside it (CSS), so the
    text itself is unchanged.

    >>> marker_html("generated", "the prompt ends here").startswith("<span class='ll-pe'")
    True
    """
    return (f"<span class='ll-pe' style='{MARKER_STYLE}' data-label='{html.escape(label, quote=True)}' "
            f"title='{html.escape(title, quote=True)}'></span>")


def generation_html(g, *, metric: str = "logprob", cmap: str | None = None, vmin: float | None = None,
                    vmax: float | None = None, threshold: float | None = None, top: int = 5, start: int = 0,
                    max_tokens: int = MAX_TOKENS, mark: int | None = None, label: str = "generated ▸") -> str:
    """HTML of a generation: the prompt (grey italics) and the completion, each token coloured
    by ``metric``, a marker where the prompt ends, and a header with the sampler, seed, finish
    reason and counts. Hover a generated token for its probability under the model and under the
    sampler, the kept-set size, rank, entropy and the model's top alternatives; a prompt token
    shows what a ScoreResult shows.

    Args:
        g: the Generation.
        metric: as for a ScoreResult's heatmap, or "sampled_logprob" or "kept" (log10), which
            colour only the generated tokens.
        cmap: colour map (default: the metric's).
        vmin: low end of the scale (default: the metric's).
        vmax: high end of the scale (default: the metric's).
        threshold: outline tokens more surprising than this many bits (under the model).
        top: alternatives in a tooltip.
        start: the first token shown (the text before it is left out, with a "…").
        max_tokens: at most this many tokens shown.
        mark: the token the marker stands before (default: the first generated one).
        label: the marker's label.

    >>> g = tiny.generate("Hello", max_new_tokens=3)
    >>> h = generation_html(g)
    >>> h.count("data-tip="), h.count("class='ll-pe'"), h.count("sampled p ")
    (4, 1, 3)
    """
    c = colouring(g, _metric(metric), cmap, vmin, vmax)
    m = g.num_prompt_tokens
    mark = m if mark is None else mark

    def tip(first: int, i: int) -> str:
        if i < m:
            return _tip(g, first, i, top)
        steps = range(max(first, m), i + 1)
        kept = "/".join(str(int(g.kept[j])) for j in steps)
        extra = sampled_lines(steps[0] - m, float(np.sum(g.sampled_logprobs[steps], dtype=np.float64)), kept,
                              float(g.sampled_entropy[i]))
        return _tip(g, first, i, top, tuple(extra))

    spans = token_spans(g, c, threshold=threshold, top=top, start=start, max_tokens=max_tokens, tip=tip,
                        look=lambda i: (" ll-pr", PROMPT_STYLE) if i < m else ("", ""))
    shown = min(len(g), start + max_tokens) - start
    body = ["<span class='ll-ws'>… </span>"] if start else []
    marker, placed = marker_html(label, "the prompt ends here" if mark == m else "from here on"), False
    for i, span in spans:
        if not placed and i >= mark:
            body.append(marker)
            placed = True
        body.append(span)
    if not placed and start <= mark <= start + shown:
        body.append(marker)  # nothing generated after it
    lp = g.logprobs[m:].astype(np.float64)
    ppl = f"{math.exp(-lp.mean()):.3f}" if len(lp) else "–"
    seed = "" if g.seed is None else f"seed <b>{g.seed}</b>"
    head = [f"<b>{html.escape(str(g.model.get('name', '?')))}</b>", f"sampler <b>{html.escape(g.sampler)}</b>",
            *([seed] if seed else []), f"finish <b>{html.escape(g.finish_reason)}</b>",
            f"{m} prompt + {g.num_generated} generated tokens", f"completion perplexity <b>{ppl}</b>",
            c.legend(), "<i>prompt</i> · generated: hover for the sampler's view"]
    return card_html(head, "".join(body), shown=shown, total=len(g) - start, max_tokens=max_tokens)


def token_span(t, *, metric: str = "logprob", top: int = 5) -> str:
    """One :class:`~lightlens.GeneratedToken` as the heatmap shows a generated token: coloured on
    the heatmap's scale, with the same tooltip ("" for a byte-piece that shows no character yet).

    >>> t = next(tiny.stream("Hello", max_new_tokens=1))
    >>> span = token_span(t)
    >>> span.count("data-tip="), "sampled p 1.0000" in span
    (1, True)
    """
    if not t.text:
        return ""
    row = SimpleNamespace(  # the token as a one-token result, so that it is coloured as the heatmap colours
        tokens=[t.text], scored=np.array([True]), logprobs=np.array([t.logprob]), probs=np.exp([t.logprob]),
        surprisal_bits=np.array([-t.logprob / LN2]), entropy=np.array([t.entropy]), ranks=np.array([t.rank]),
        sampled_logprobs=np.array([t.sampled_logprob]), kept=np.array([t.kept]))
    colour = colouring(row, _metric(metric)).colors[0]
    alternatives = list(zip(t.top_k_tokens or [str(i) for i in t.top_k_ids], t.top_k_logprobs))[:top]
    tip = token_tip(t.text, f"id {t.token_id}", t.logprob,
                    [rank_entropy(t.rank, t.entropy), *sampled_lines(t.step, t.sampled_logprob, t.kept,
                                                                     t.sampled_entropy)], alternatives)
    return span_html(t.text, tip, background=colour)


def stream_html(prompt: str, spans: list[str], *, status: str, metric: str = "logprob") -> str:
    """The live view's HTML while tokens arrive: the prompt, the marker, the tokens' spans so far
    (from :func:`token_span`) and a ``status`` line.

    >>> "ll-pe" in stream_html("Hello", [], status="starting")
    True
    """
    m = _metric(metric)
    scale = Colouring(m, m.cmap, m.vmin, m.vmax, np.zeros(0), [])  # the heatmap's scale, for its legend
    body = (span_html(prompt, html.escape("the prompt (scored when the generation ends)", quote=True),
                      cls="ll-t ll-pr", style=PROMPT_STYLE)
            + marker_html("generated ▸", "the prompt ends here") + "".join(spans))
    return card_html([html.escape(status), scale.legend()], body, shown=0, total=0, max_tokens=MAX_TOKENS)


# ---- plots ----------------------------------------------------------------------------------
def mirostat_target(sampler: str) -> float | None:
    """The target surprise τ (bits) of a mirostat sampler from its description, else None.

    >>> mirostat_target("no_eos → mirostat_v2(5, 0.1), renormalised after each step"), mirostat_target("greedy")
    (5.0, None)
    """
    found = re.search(r"mirostat_v2\(([^,()]+),", sampler)
    return float(found.group(1)) if found else None


def _steps(g) -> tuple[np.ndarray, slice]:
    return np.arange(g.num_generated), slice(g.num_prompt_tokens, len(g))


def _marker(g) -> str | None:
    return "." if g.num_generated <= MAX_LABELS else None  # a dot per step while they can be told apart


def _finish_axes(ax, g, label: bool) -> None:
    ax.grid(alpha=0.3)
    if label and g.num_generated <= MAX_LABELS:
        _label_tokens(ax, g.tokens[g.num_prompt_tokens:])
    elif label:
        ax.set_xlabel("generated token (step)")


def plot_step_entropy(g, *, ax=None, unit: str = "bits", label: bool = True):
    """The entropy of each step's distribution: the model's (raw) and the sampler's final one.

    Args:
        g: the Generation.
        ax: draw here (default: a new figure).
        unit: "bits" or "nats".
        label: the generated tokens (or "generated token (step)") on the x axis.

    >>> plot_step_entropy(tiny.generate("Hello", max_new_tokens=4)).get_ylabel()
    'entropy (bits)'
    """
    if unit not in ("bits", "nats"):
        raise ValueError(f"unit must be 'bits' or 'nats', got {unit!r}")
    scale = LN2 if unit == "bits" else 1.0
    ax = _axes(ax)
    x, gen = _steps(g)
    ax.plot(x, g.entropy[gen] / scale, lw=1, marker=_marker(g), color="#059669", label="model (raw)")
    ax.plot(x, g.sampled_entropy[gen] / scale, lw=1, marker=_marker(g), color="#7c3aed", label="sampler (final)")
    ax.set_ylabel(f"entropy ({unit})")
    ax.legend(fontsize=8, loc="upper right")
    _finish_axes(ax, g, label)
    return ax


def plot_step_prob(g, *, ax=None, label: bool = True):
    """The chosen token's probability at each step, under the model and under the sampler.

    >>> [line.get_label() for line in plot_step_prob(tiny.generate("Hello", max_new_tokens=4)).lines]
    ['model (raw)', 'sampler (final)']
    """
    ax = _axes(ax)
    x, gen = _steps(g)
    ax.plot(x, np.exp(g.logprobs[gen]), lw=1, marker=_marker(g), color="#2563eb", label="model (raw)")
    ax.plot(x, np.exp(g.sampled_logprobs[gen]), lw=1, marker=_marker(g), color="#dc2626", label="sampler (final)")
    ax.set_ylabel("p of the chosen token")
    ax.set_ylim(0.0, 1.05)
    ax.legend(fontsize=8, loc="lower right")
    _finish_axes(ax, g, label)
    return ax


def plot_surprise(g, *, target: float | None = None, ax=None, label: bool = True):
    """Each generated token's surprise under the sampler (``g.surprise_bits``) against the target
    τ (default: read from a mirostat sampler's description), with the running mean.

    >>> g = tiny.generate("Hello", max_new_tokens=6, sampler=lightlens.sampling.mirostat_v2(3.0, 0.5), seed=0)
    >>> ax = plot_surprise(g)
    >>> [line.get_label() for line in ax.lines]
    ['surprise', 'running mean', 'target τ = 3 bits']
    """
    target = mirostat_target(g.sampler) if target is None else target
    ax = _axes(ax)
    x, _ = _steps(g)
    s = g.surprise_bits.astype(np.float64)
    ax.plot(x, s, lw=0.8, marker=_marker(g), color="#9ca3af", label="surprise")
    ax.plot(x, np.cumsum(s) / np.arange(1, len(s) + 1), lw=1.6, color="#2563eb", label="running mean")
    if target is not None:
        ax.axhline(target, color="#dc2626", ls="--", lw=1.2, label=f"target τ = {target:g} bits")
    ax.set_ylabel("surprise (bits)")
    ax.legend(fontsize=8, loc="upper right")
    _finish_axes(ax, g, label)
    return ax


def plot_generation(g, *, target: float | None = None, unit: str = "bits"):
    """The steps of a generation, one panel each, sharing the x axis: the entropy of the model's
    and the sampler's distributions, the chosen token's probability under both, and, for a
    mirostat sampler (or with ``target``), the surprise against its target τ. Returns the figure.

    >>> fig = plot_generation(tiny.generate("Hello", max_new_tokens=4))
    >>> [ax.get_ylabel() for ax in fig.axes]
    ['entropy (bits)', 'p of the chosen token']
    """
    import matplotlib.pyplot as plt

    target = mirostat_target(g.sampler) if target is None else target
    rows = 3 if target is not None else 2
    fig, axes = plt.subplots(rows, 1, figsize=(9, 1.9 * rows + 0.7), sharex=True, layout="constrained")
    plot_step_entropy(g, ax=axes[0], unit=unit, label=False)
    plot_step_prob(g, ax=axes[1], label=rows == 2)
    if target is not None:
        plot_surprise(g, target=target, ax=axes[2])
    fig.suptitle(f"{g.model.get('name', '?')}: {g.num_generated} tokens by {g.sampler}", fontsize=10, **PLAIN)
    return fig
