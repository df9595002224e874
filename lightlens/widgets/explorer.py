"""The explorer (:func:`lightlens.explore`): an ipywidgets app to score a text and look at it from every side.

Text box, model, metric, colour map, a threshold that outlines surprising tokens, a Score
button with progress, the heatmap, plots, the perplexity summary and a detail panel with a
chosen token's top-k table. Errors (unknown model, empty text) appear in the app as a
message; the app keeps working.
"""
from __future__ import annotations

import html
import math

import numpy as np

from ..viz.colors import METRICS, entropy_text, rank_text
from ..viz.heatmap import heatmap_html

SAMPLE = ("The quick brown fox jumps over the lazy dog. Researchers measure how surprised a "
          "language model is by every token of a text.")
CMAPS = ("default", "RdYlGn", "viridis", "magma", "coolwarm", "Greys")


class Explorer:
    """The widget app; ``display(Explorer())`` or just leave it last in a cell.

    >>> app = Explorer("Hello world", model=tiny)
    >>> app.result.tokens, "perplexity" in app.summary.value
    (['Hello', ' world'], True)
    """

    def __init__(self, text: str | None = None, model=None, *, top_k: int = 10):
        import ipywidgets as w

        self.top_k = top_k
        self.result = None
        self._model_obj = model if model is not None and not isinstance(model, str) else None
        self.text = w.Textarea(value=text or SAMPLE, layout=w.Layout(width="100%", height="90px"))
        self.model = w.Text(value=model if isinstance(model, str) else "",
                            placeholder="default model (or a hub id, folder, .gguf)",
                            description="model", layout=w.Layout(width="380px"))
        self.metric = w.Dropdown(options=list(METRICS), value="logprob", description="metric",
                                 layout=w.Layout(width="200px"))
        self.cmap = w.Dropdown(options=CMAPS, value="default", description="colours",
                               layout=w.Layout(width="200px"))
        self.threshold = w.FloatSlider(value=12.0, min=0.0, max=25.0, step=0.5, description="outline ≥ bits",
                                       style={"description_width": "initial"}, layout=w.Layout(width="300px"))
        self.button = w.Button(description="Score", button_style="primary", icon="play")
        self.progress = w.IntProgress(value=0, min=0, max=1, layout=w.Layout(width="160px"))
        self.message = w.HTML()
        self.summary = w.HTML()
        self.heatmap = w.HTML()
        self.token = w.BoundedIntText(value=0, min=0, max=0, description="token #",
                                      layout=w.Layout(width="180px"))
        self.detail = w.HTML()
        self.plots = w.HTML()
        self.button.on_click(lambda _: self.score())
        for control in (self.metric, self.cmap, self.threshold):
            control.observe(lambda _: self.render(), names="value")
        self.token.observe(lambda _: self.show_token(), names="value")
        self.widget = w.VBox([
            self.text,
            w.HBox([self.model, self.button, self.progress]),
            w.HBox([self.metric, self.cmap, self.threshold]),
            self.message, self.summary, self.heatmap,
            w.HBox([self.token, self.detail]),
            self.plots,
        ])
        if text is not None:
            self.score()

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)

    def score(self) -> None:
        """Score the text box with the chosen model; errors become a message in the app."""
        from ..models.scorer import get_model

        self.message.value = ""
        self.button.disabled, self.progress.value, self.progress.bar_style = True, 0, "info"
        self.button.description = "Scoring…"
        try:
            model = self._model_obj if self._model_obj is not None and not self.model.value else (self.model.value or None)
            self.result = get_model(model).score(self.text.value, top_k=self.top_k, progress=False)
            self.progress.value, self.progress.bar_style = 1, "success"
            self.render()
        except Exception as err:  # noqa: BLE001 - shown to the user, the app stays alive
            self.progress.bar_style = "danger"
            self.message.value = (f"<div style='color:#b91c1c;background:#fef2f2;border:1px solid #fecaca;"
                                  f"padding:6px 10px;border-radius:6px'><b>{type(err).__name__}</b>: "
                                  f"{html.escape(str(err))}</div>")
        finally:
            self.button.disabled, self.button.description = False, "Score"

    def render(self) -> None:
        """Redraw the heatmap, summary and plots for the current controls."""
        r = self.result
        if r is None:
            return
        cmap = None if self.cmap.value == "default" else self.cmap.value
        self.heatmap.value = heatmap_html(r, metric=self.metric.value, cmap=cmap, threshold=self.threshold.value)
        self.summary.value = (f"<b>perplexity</b> {r.perplexity:.3f} &nbsp; <b>bits/byte</b> "
                              f"{r.bits_per_byte:.4f} &nbsp; <b>nll</b> {r.nll:.4f} &nbsp; "
                              f"{r.num_scored}/{len(r)} tokens scored")
        self.token.max = len(r) - 1
        if r.num_scored:
            self.token.value = int(np.nanargmin(r.logprobs))  # the most surprising token first
        self.show_token()
        self._draw_plots()

    def show_token(self) -> None:
        """The detail panel: the chosen token's numbers and its top-k alternatives."""
        r, i = self.result, self.token.value
        if r is None or not 0 <= i < len(r):
            return
        lp = float(r.logprobs[i])
        if math.isnan(lp):
            self.detail.value = f"<code>{html.escape(repr(r.tokens[i]))}</code>: not scored (no context)"
            return
        rows = "".join(
            f"<tr><td><code>{html.escape(repr(t))}</code></td><td>{math.exp(float(p)):.4f}</td>"
            f"<td>{float(p):.3f}</td></tr>"
            for t, p in zip(r.top_k_tokens[i], r.top_k_logprobs[i]))
        self.detail.value = (
            f"<div style='font-size:12px'><code>{html.escape(repr(r.tokens[i]))}</code> logprob {lp:.3f}, "
            f"p {math.exp(lp):.4f}, rank {rank_text(r.ranks[i])}, entropy {entropy_text(r.entropy[i])}"
            f"<table style='margin-top:4px'><tr><th align=left>alternative</th><th>p</th><th>logprob</th></tr>"
            f"{rows}</table></div>")

    def _draw_plots(self) -> None:
        """The plots as an inline PNG (an HTML widget: no output capture, nothing leaks out)."""
        import base64
        import io

        from matplotlib.figure import Figure

        from ..viz.plots import plot_entropy, plot_logprobs

        fig = Figure(figsize=(10, 4.5), layout="constrained")
        ax1, ax2 = fig.subplots(2, 1, sharex=True)
        plot_logprobs(self.result, ax=ax1)
        plot_entropy(self.result, ax=ax2)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=80)
        data = base64.b64encode(buf.getvalue()).decode()
        self.plots.value = f"<img alt='logprob and entropy plots' src='data:image/png;base64,{data}'/>"
