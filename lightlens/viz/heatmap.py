"""The confidence heatmap: a result's text with each token coloured by a metric.

Static HTML with inline styles only: no CDN, no JavaScript, no requirejs, so it renders
in JupyterLab, classic Notebook, VS Code, Colab, nbviewer and GitHub. Colours are inline
``style`` attributes (they survive sanitisers); hovering a token shows its details through
a CSS-only tooltip. Notebook output areas clip what overflows them, so while the pointer
is over the text its box grows at the bottom to make room for the tooltip. All text is
escaped: a text containing ``<script>`` is shown, not run. A character split over several
byte-pieces (emoji, CJK) is one token on screen, coloured by all its pieces (see
:func:`~lightlens.viz.colors.character_values`), its tooltip listing every piece.
"""
from __future__ import annotations

import html
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .colors import (
    GLTR_BUCKETS, Metric, character_values, entropy_text, get_metric, gradient_css, piece_starts, rank_colors,
    rank_text, to_hex,
)

MAX_TOKENS = 20_000
SCROLL_AFTER = 600
CSS = """<style>
.ll-card{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1f2937;max-width:100%}
.ll-head{font-size:12px;color:#4b5563;margin:0 0 6px 0;display:flex;flex-wrap:wrap;gap:14px;align-items:center}
.ll-head b{color:#111827}
.ll-bar{display:inline-block;width:120px;height:10px;border-radius:3px;vertical-align:middle;margin:0 4px}
.ll-sw{display:inline-block;width:10px;height:10px;border-radius:2px;vertical-align:middle;margin:0 3px 0 8px}
.ll-text{white-space:pre-wrap;word-break:break-word;font-size:14px;line-height:1.85;padding:8px 10px;
  border:1px solid #e5e7eb;border-radius:8px;background:#fff}
.ll-scroll{max-height:32em;overflow-y:auto}
.ll-text:hover{padding-bottom:15em}
.ll-t{position:relative;border-radius:3px;padding:1px 0;color:#111827}
.ll-t:hover{outline:2px solid #111827;z-index:3}
.ll-t:hover::after{content:attr(data-tip);position:absolute;left:0;top:1.9em;z-index:10;white-space:pre;
  background:#111827;color:#f9fafb;font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;
  padding:7px 9px;border-radius:6px;box-shadow:0 6px 18px rgba(0,0,0,.28);pointer-events:none}
.ll-na{background:#e5e7eb}
.ll-hi{outline:2px solid #dc2626;outline-offset:-1px}
.ll-ws{color:#9ca3af}
.ll-pe::before{content:attr(data-label);font:10px/1.3 system-ui,sans-serif;font-style:normal;color:#f9fafb;
  background:#111827;padding:1px 5px;border-radius:0 3px 3px 0;vertical-align:1px;white-space:nowrap}
</style>"""


@dataclass(frozen=True)
class Heatmap:
    """Rendered heatmap HTML; displays itself in a notebook and saves to a file.

    >>> hm = result.heatmap(metric="surprisal")
    >>> "<style>" in hm.save(tmp / "heatmap.html").read_text()
    True
    """

    html: str

    def _repr_html_(self) -> str:
        return self.html

    def save(self, path: str | Path) -> Path:
        """Write a standalone HTML page.

        >>> result.heatmap().save(tmp / "tokens.html").suffix
        '.html'
        """
        path = Path(path)
        path.write_text(f"<!doctype html><meta charset='utf-8'><body>{self.html}</body>", encoding="utf-8")
        return path


def _visible(text: str) -> str:
    """Escaped token text, with newlines and tabs marked so they can be seen and hovered."""
    out = html.escape(text)
    out = out.replace("\t", "<span class='ll-ws'>→</span>\t")
    return out.replace("\n", "<span class='ll-ws'>↵</span>\n")


def _tip(r, first: int, i: int, top: int, extra: tuple[str, ...] = ()) -> str:
    """Tooltip text of token i (with ``first..i-1``, the byte-pieces of a character it completes):
    the token, its numbers, every piece, ``extra`` lines, and the top alternatives where the
    token starts."""
    pieces = range(first, i + 1)
    scored = [j for j in pieces if r.scored[j]]
    ids = f"id {int(r.token_ids[i])}" if first == i else f"{len(pieces)} byte-pieces"
    if not r.scored[i]:
        return _escape_tip([f"token  {r.tokens[i]!r}   {ids}", "not scored (no context before it)", *extra])
    lp = float(np.sum(r.logprobs[scored], dtype=np.float64))
    detail = [rank_entropy(r.ranks[i], r.entropy[i])] if first == i else [_piece(r, j) for j in pieces]
    k = min(top, r.top_k_ids.shape[1])
    alternatives = zip(r.top_k_tokens[scored[0]][:k], r.top_k_logprobs[scored[0]][:k])
    return token_tip(r.tokens[i], ids, lp, detail + list(extra), alternatives)


def token_tip(token: str, ident: str, logprob: float, detail: list[str], alternatives) -> str:
    """A scored token's tooltip (escaped for an attribute): the token, its log-probability,
    probability and bits, the ``detail`` lines, then the (token, logprob) ``alternatives``.

    >>> print(html.unescape(token_tip(" cat", "id 7", -1.0, ["rank 2"], [(" dog", -0.5)])))
    token  ' cat'   id 7
    logprob -1.000   p 0.3679   1.44 bits
    rank 2
    top alternatives:
      ' dog'            0.6065
    """
    lines = [f"token  {token!r}   {ident}", f"logprob {logprob:.3f}   p {math.exp(logprob):.4f}   "
             f"{-logprob / math.log(2):.2f} bits", *detail]
    alternatives = list(alternatives)
    if alternatives:
        lines.append("top alternatives:")
        lines += [f"  {tok!r:<16} {math.exp(float(alp)):7.4f}" for tok, alp in alternatives]
    return _escape_tip(lines)


def rank_entropy(rank, entropy) -> str:
    """The tooltip line with a token's rank and the entropy of its prediction.

    >>> rank_entropy(3, 1.5)
    'rank 3   entropy 1.500 nats'
    """
    return f"rank {rank_text(rank)}   entropy {entropy_text(entropy, ' nats')}"


def _piece(r, j: int) -> str:
    """One byte-piece's line in its character's tooltip."""
    if not r.scored[j]:
        return f"  id {int(r.token_ids[j])}  not scored"
    return (f"  id {int(r.token_ids[j])}  logprob {r.logprobs[j]:.3f}  rank {rank_text(r.ranks[j])}  "
            f"entropy {entropy_text(r.entropy[j], ' nats')}")


def _escape_tip(lines: list[str]) -> str:
    return html.escape("\n".join(lines), quote=True).replace("\n", "&#10;")


@dataclass(frozen=True)
class Colouring:
    """A metric's value and colour for every token of a result ("" where unknown), and its scale.

    >>> c = colouring(result, "prob")
    >>> len(c.colors) == len(result), c.lo, c.hi
    (True, 0.0, 1.0)
    """

    metric: Metric
    cmap: str
    lo: float
    hi: float
    values: np.ndarray
    colors: list[str]

    def legend(self) -> str:
        """The scale as HTML: a gradient bar between its ends, or GLTR's rank buckets."""
        if self.metric.name == "rank":
            return "rank " + "".join(f"<span class='ll-sw' style='background:{c}'></span>{label}"
                                     for _, label, c in GLTR_BUCKETS)
        return (f"{html.escape(self.metric.label)} <span>{self.lo:g}</span>"
                f"<span class='ll-bar' style='background:{gradient_css(self.lo, self.hi, self.cmap)}'></span>"
                f"<span>{self.hi:g}</span>")


def colouring(r, metric: str | Metric = "logprob", cmap: str | None = None, vmin: float | None = None,
              vmax: float | None = None) -> Colouring:
    """Colour every token of ``r`` by ``metric`` (a name from :data:`METRICS` or a :class:`Metric`)
    on the scale [vmin, vmax] (default: the metric's) with ``cmap`` (default: the metric's).

    >>> c = colouring(result, "rank")
    >>> c.colors[0], c.colors[1] in ("#b7e4a7", "#ffe680", "#ffb3a7", "#d7b8f3")   # unscored, a GLTR bucket
    ('', True)
    """
    m = metric if isinstance(metric, Metric) else get_metric(metric)
    cmap = cmap or m.cmap
    lo, hi = (m.vmin if vmin is None else vmin), (m.vmax if vmax is None else vmax)
    values = character_values(m, r)
    colors = rank_colors(values) if m.name == "rank" else to_hex(values, lo, hi, cmap)
    known = r.scored & ~np.isnan(values)  # a server may not report entropy or rank
    return Colouring(m, cmap, lo, hi, values, [c if k else "" for c, k in zip(colors, known)])


def span_html(text: str, tip: str, *, cls: str = "ll-t", background: str = "", style: str = "") -> str:
    """One token on screen: its escaped text, its background and its tooltip (already escaped).

    >>> span_html("<b>", "p 0.5", background="#ffffff")
    "<span class='ll-t' style='background:#ffffff' data-tip='p 0.5'>&lt;b&gt;</span>"
    """
    css = (f"background:{background};" if background else "") + style
    css = f" style='{css.rstrip(';')}'" if css else ""
    return f"<span class='{cls}'{css} data-tip='{tip}'>{_visible(text)}</span>"


def token_spans(r, colours: Colouring, *, threshold: float | None = None, top: int = 5, start: int = 0,
                max_tokens: int = MAX_TOKENS, tip=None, look=None) -> list[tuple[int, str]]:
    """``(index, span)`` of each token shown, from ``start`` for at most ``max_tokens`` tokens; a
    byte-piece of a character that a later token completes has no span of its own (the token that
    completes it shows the character).

    Args:
        r: the result.
        colours: from :func:`colouring`.
        threshold: outline tokens more surprising than this many bits.
        top: alternatives listed in a tooltip.
        start: the first token shown.
        max_tokens: at most this many tokens.
        tip: ``tip(first, i) -> str``, the escaped tooltip of token ``i`` whose character starts
            at piece ``first`` (default: the scored token's numbers and alternatives).
        look: ``look(i) -> (extra classes, extra inline CSS)`` of token ``i``.

    >>> [i for i, _ in token_spans(result, colouring(result), start=2, max_tokens=2)]
    [2, 3]
    """
    tip = tip or (lambda first, i: _tip(r, first, i, top))
    bits = character_values(get_metric("surprisal"), r)
    surprising = bits >= threshold if threshold is not None else np.zeros(len(r), bool)
    out = []
    for i, first in zip(range(start, min(len(r), start + max_tokens)), piece_starts(r.tokens)[start:]):
        if not r.tokens[i]:
            continue
        cls, style = look(i) if look else ("", "")
        cls = "ll-t" + ("" if r.scored[i] else " ll-na") + (" ll-hi" if r.scored[i] and surprising[i] else "") + cls
        out.append((i, span_html(r.tokens[i], tip(first, i), cls=cls, background=colours.colors[i], style=style)))
    return out


def card_html(head: list[str], body: str, *, shown: int, total: int, max_tokens: int) -> str:
    """The heatmap's card: a header of ``head`` items, then the text box with ``body`` (it scrolls
    when more than :data:`SCROLL_AFTER` tokens are shown), then a note of the tokens left out.

    >>> card = card_html(["<b>title</b>"], span_html("hi", "a tip"), shown=1, total=3, max_tokens=1)
    >>> card.count("data-tip="), "2 more tokens not shown" in card
    (1, True)
    """
    more = (f"<div class='ll-head'>… {total - shown} more tokens not shown (max_tokens={max_tokens})</div>"
            if shown < total else "")
    items = "".join(f"<span>{item}</span>" for item in head)
    # Only long texts scroll: a scroll box would clip the hover details of short ones.
    box = "ll-text ll-scroll" if shown > SCROLL_AFTER else "ll-text"
    return f"{CSS}<div class='ll-card'><div class='ll-head'>{items}</div><div class='{box}'>{body}</div>{more}</div>"


def heatmap_html(
    r,
    *,
    metric: str = "logprob",
    cmap: str | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
    threshold: float | None = None,
    top: int = 5,
    max_tokens: int = MAX_TOKENS,
) -> str:
    """HTML of the text with each token's background coloured by ``metric``.

    ``metric``: logprob, prob, surprisal (bits), entropy (nats) or rank (GLTR buckets).
    ``threshold``: outline tokens more surprising than this many bits.

    >>> html = heatmap_html(result, metric="rank", threshold=10)
    >>> "<script" in html, "Hello" in html
    (False, True)
    """
    c = colouring(r, metric, cmap, vmin, vmax)
    spans = token_spans(r, c, threshold=threshold, top=top, max_tokens=max_tokens)
    head = [f"<b>{html.escape(str(r.model.get('name', '?')))}</b>", f"perplexity <b>{r.perplexity:.3f}</b>",
            f"bits/byte <b>{r.bits_per_byte:.3f}</b>", f"{r.num_scored}/{len(r)} tokens scored", c.legend()]
    if r.num_scored and np.isnan(c.values).all():
        head.append(f"({c.metric.name} not reported by this backend)")
    return card_html(head, "".join(s for _, s in spans), shown=min(len(r), max_tokens), total=len(r),
                     max_tokens=max_tokens)
