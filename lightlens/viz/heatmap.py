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
    GLTR_BUCKETS, character_values, entropy_text, get_metric, gradient_css, piece_starts, rank_colors, rank_text, to_hex,
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


def _tip(r, first: int, i: int, top: int) -> str:
    """Tooltip text of token i (with ``first..i-1``, the byte-pieces of a character it completes):
    the token, its numbers, every piece, and the top alternatives where the token starts."""
    pieces = range(first, i + 1)
    scored = [j for j in pieces if r.scored[j]]
    ids = f"id {int(r.token_ids[i])}" if first == i else f"{len(pieces)} byte-pieces"
    lines = [f"token  {r.tokens[i]!r}   {ids}"]
    if not r.scored[i]:
        lines.append("not scored (no context before it)")
        return _escape_tip(lines)
    lp = float(np.sum(r.logprobs[scored], dtype=np.float64))
    lines.append(f"logprob {lp:.3f}   p {math.exp(lp):.4f}   {-lp / math.log(2):.2f} bits")
    if first == i:
        lines.append(f"rank {rank_text(r.ranks[i])}   entropy {entropy_text(r.entropy[i], ' nats')}")
    else:
        lines += [_piece(r, j) for j in pieces]
    k = min(top, r.top_k_ids.shape[1])
    if k:
        lines.append("top alternatives:")
        for tok, alp in zip(r.top_k_tokens[scored[0]][:k], r.top_k_logprobs[scored[0]][:k]):
            lines.append(f"  {tok!r:<16} {math.exp(float(alp)):7.4f}")
    return _escape_tip(lines)


def _piece(r, j: int) -> str:
    """One byte-piece's line in its character's tooltip."""
    if not r.scored[j]:
        return f"  id {int(r.token_ids[j])}  not scored"
    return (f"  id {int(r.token_ids[j])}  logprob {r.logprobs[j]:.3f}  rank {rank_text(r.ranks[j])}  "
            f"entropy {entropy_text(r.entropy[j], ' nats')}")


def _escape_tip(lines: list[str]) -> str:
    return html.escape("\n".join(lines), quote=True).replace("\n", "&#10;")


def _legend(metric, vmin: float, vmax: float, cmap: str) -> str:
    if metric.name == "rank":
        return "rank " + "".join(f"<span class='ll-sw' style='background:{c}'></span>{label}"
                                 for _, label, c in GLTR_BUCKETS)
    return (f"{html.escape(metric.label)} <span>{vmin:g}</span>"
            f"<span class='ll-bar' style='background:{gradient_css(vmin, vmax, cmap)}'></span>"
            f"<span>{vmax:g}</span>")


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
    m = get_metric(metric)
    cmap = cmap or m.cmap
    lo, hi = (m.vmin if vmin is None else vmin), (m.vmax if vmax is None else vmax)
    values = character_values(m, r)
    colors = rank_colors(values) if m.name == "rank" else to_hex(values, lo, hi, cmap)
    bits = character_values(get_metric("surprisal"), r)
    surprising = bits >= threshold if threshold is not None else np.zeros(len(r), bool)
    n = min(len(r), max_tokens)
    spans = []
    for i, first in zip(range(n), piece_starts(r.tokens)):
        if not r.tokens[i]:
            continue  # a byte-piece of a character that a later token completes
        scored = not math.isnan(r.logprobs[i])
        cls = "ll-t" + ("" if scored else " ll-na") + (" ll-hi" if scored and surprising[i] else "")
        known = scored and not math.isnan(values[i])  # a server may not report entropy or rank
        style = f" style='background:{colors[i]}'" if known else ""
        spans.append(f"<span class='{cls}'{style} data-tip='{_tip(r, first, i, top)}'>{_visible(r.tokens[i])}</span>")
    more = f"<div class='ll-head'>… {len(r) - n} more tokens not shown (max_tokens={max_tokens})</div>" if n < len(r) else ""
    head = (
        f"<div class='ll-head'><span><b>{html.escape(str(r.model.get('name', '?')))}</b></span>"
        f"<span>perplexity <b>{r.perplexity:.3f}</b></span><span>bits/byte <b>{r.bits_per_byte:.3f}</b></span>"
        f"<span>{r.num_scored}/{len(r)} tokens scored</span><span>{_legend(m, lo, hi, cmap)}</span>"
        + (f"<span>({m.name} not reported by this backend)</span>" if r.num_scored and np.isnan(values).all() else "")
        + "</div>"
    )
    # Only long texts scroll: a scroll box would clip the hover details of short ones.
    box = "ll-text ll-scroll" if n > SCROLL_AFTER else "ll-text"
    return f"{CSS}<div class='ll-card'>{head}<div class='{box}'>{''.join(spans)}</div>{more}</div>"
