"""Two results on the same text, side by side, with a heatmap of their difference.

Same tokens (one tokenizer): the difference is per token, ``b.logprob - a.logprob``.
Different tokenizers: tokens do not line up, so both are spread over characters (each
token's surprisal shared among the UTF-8 bytes it covers) and compared in bits per byte.
"""
from __future__ import annotations

import html
from dataclasses import dataclass

import numpy as np

from .colors import to_hex
from .heatmap import CSS, heatmap_html


def bits_per_char(r) -> np.ndarray:
    """Each character's share of surprisal in bits per UTF-8 byte (NaN where unscored).

    >>> bpc = bits_per_char(result)
    >>> len(bpc) == len(result.text), bool(np.isnan(bpc[:5]).all())  # "Hello" has no context
    (True, True)

    A token covering no characters (a byte piece of a character) passes its bits on to the
    token that completes the character, so the shares add up to the text's total.
    """
    out = np.full(len(r.text), np.nan)
    pending = 0.0
    for i, (a, b) in enumerate(r.offsets):
        if not r.scored[i]:
            continue
        if b == a:
            pending += float(r.surprisal_bits[i])
            continue
        out[a:b] = (float(r.surprisal_bits[i]) + pending) / len(r.text[a:b].encode("utf-8"))
        pending = 0.0
    return out


def _diff_html(pieces: list[str], diffs: np.ndarray, unit: str, names: tuple[str, str]) -> str:
    """Pieces coloured by ``diffs`` = surprisal of b minus a (red: b more surprised)."""
    lim = float(np.nanmax(np.abs(diffs))) if np.isfinite(diffs).any() else 1.0
    lim = lim or 1.0
    colors = to_hex(diffs, -lim, lim, "RdBu_r", lighten=0.15)
    spans = []
    for piece, d, c in zip(pieces, diffs, colors):
        if not piece:
            continue
        tip = f"surprisal {names[1]} − {names[0]}: {d:+.3f} {unit}" if np.isfinite(d) else "not scored by both"
        style = f" style='background:{c}'" if np.isfinite(d) else ""
        text = html.escape(piece).replace("\n", "<span class='ll-ws'>↵</span>\n")
        spans.append(f"<span class='ll-t'{style} data-tip='{html.escape(tip, quote=True)}'>{text}</span>")
    legend = (f"<span>red: {html.escape(names[1])} more surprised · blue: {html.escape(names[0])} "
              f"more surprised (±{lim:.2f} {unit})</span>")
    return f"<div class='ll-head'>{legend}</div><div class='ll-text'>{''.join(spans)}</div>"


@dataclass(eq=False)
class Comparison:
    """Two results of one text; renders as two heatmaps and a difference heatmap.

    >>> c = Comparison(result, lightlens.score(result.text, model=tiny_llama))
    >>> c.same_tokens, len(c.difference()) == len(result.text)
    (False, True)
    """

    a: object
    b: object
    metric: str = "surprisal"

    def __post_init__(self):
        if self.a.text != self.b.text:
            raise ValueError("compare needs two results of the same text")

    @property
    def same_tokens(self) -> bool:
        """Whether both results have the same tokens (so they align token by token)."""
        return list(self.a.token_ids) == list(self.b.token_ids) and self.a.tokens == self.b.tokens

    def difference(self) -> np.ndarray:
        """Per token ``b.logprob - a.logprob`` (same tokens) or per character bits/byte ``a - b``."""
        if self.same_tokens:
            return (self.b.logprobs - self.a.logprobs).astype(np.float64)
        return bits_per_char(self.a) - bits_per_char(self.b)

    def _names(self) -> tuple[str, str]:
        na, nb = (str(r.model.get("name", "?")) for r in (self.a, self.b))
        if na == nb:
            na, nb = f"{na} ({self.a.model.get('dtype', 'a')})", f"{nb} ({self.b.model.get('dtype', 'b')})"
        return na, nb

    def _repr_html_(self) -> str:
        names = self._names()
        if self.same_tokens:
            diff = _diff_html(self.a.tokens, -self.difference(), "nats", names)
            how = "token by token (same tokenizer)"
        else:
            diff = _diff_html(list(self.a.text), -self.difference(), "bits/byte", names)
            how = "character by character (different tokenizers), surprisal spread over bytes"
        rows = "".join(
            f"<tr><td>{html.escape(n)}</td><td>{r.perplexity:.3f}</td><td>{r.bits_per_byte:.4f}</td>"
            f"<td>{r.num_scored}</td></tr>" for n, r in zip(names, (self.a, self.b)))
        table = ("<table style='font-size:12px;border-collapse:collapse;margin:4px 0'>"
                 "<tr><th align=left>model</th><th>perplexity</th><th>bits/byte</th><th>tokens</th></tr>"
                 f"{rows}</table>")
        side = "".join(f"<div style='flex:1;min-width:320px'>{heatmap_html(r, metric=self.metric)}</div>"
                       for r in (self.a, self.b))
        return (f"{CSS}<div class='ll-card'>{table}<div style='display:flex;gap:12px;flex-wrap:wrap'>{side}</div>"
                f"<div class='ll-head' style='margin-top:8px'><b>difference, {how}</b></div>{diff}</div>")
