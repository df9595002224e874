"""The live view: a generation's tokens coloured as the model chooses them, then the finished
:class:`~lightlens.Generation` (its heatmap replaces the stream in the view).

In JupyterLab the view is an ipywidgets HTML output that grows while ``lm.stream`` runs (redrawn
at most every ``every`` seconds); outside a notebook nothing is displayed and the stream is just
consumed. Tokens are coloured on the heatmap's scale and carry the heatmap's tooltips.
"""
from __future__ import annotations

import time

from ..engine.generation import row_seeds
from ..viz.generation import generation_html, stream_html, token_span

def in_notebook() -> bool:
    """Whether this runs in a Jupyter kernel (where a widget can be displayed).

    >>> in_notebook()
    False
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    return getattr(get_ipython(), "kernel", None) is not None


class LiveGeneration:
    """Generate from ``prompt`` with ``lm`` and watch it happen: each token appears coloured by
    ``metric`` as it is chosen (hover it for its probability under the model and the sampler,
    the kept-set size, rank and alternatives); when the generation ends, the view becomes the
    generation's heatmap and :meth:`run` returns the :class:`~lightlens.Generation`, the same
    tokens as ``lm.generate(prompt, ...)`` with the same options.

    Leave it last in a cell (or ``display`` it) and call :meth:`run`, or call :func:`live`,
    which does both. Outside a notebook :meth:`run` just generates.

    Args:
        lm: a local model (``lightlens.load()``).
        prompt: the prompt.
        max_new_tokens: at most this many new tokens.
        sampler: as in :func:`lightlens.generate` (None: greedy).
        seed: the random seed (default: a fresh one, recorded in the Generation).
        stop: stop string(s).
        top_k: raw alternatives kept per token.
        bos: None follows the tokenizer.
        metric: the colour of the tokens (a heatmap metric).
        every: seconds between two redraws while tokens arrive.

    >>> view = LiveGeneration(tiny, "Hello", max_new_tokens=4, seed=0)
    >>> g = view.run()            # not in a notebook: nothing displayed, the stream consumed
    >>> g.token_ids.tolist() == tiny.generate("Hello", max_new_tokens=4).token_ids.tolist()
    True
    >>> view.widget.value.count("data-tip=") == len(g), len(view.tokens)
    (True, 4)
    """

    def __init__(self, lm, prompt: str, *, max_new_tokens: int = 64, sampler=None, seed: int | None = None,
                 stop=None, top_k: int = 5, bos: bool | None = None, metric: str = "logprob", every: float = 0.1):
        import ipywidgets as w

        if not isinstance(prompt, str):
            raise TypeError(f"the live view shows one prompt (a str), got {type(prompt).__name__}")
        self.lm, self.prompt, self.metric, self.every = lm, prompt, metric, every
        self.options = dict(max_new_tokens=max_new_tokens, sampler=sampler, seed=row_seeds(seed, 1, 1)[0],
                            stop=stop, top_k=top_k, bos=bos)
        self.tokens: list = []
        self.generation = None
        self.widget = w.HTML(stream_html(prompt, [], status="ready: run() starts the generation", metric=metric))
        self._shown = False

    def _ipython_display_(self):
        from IPython.display import display

        self._shown = True
        display(self.widget)

    def run(self, *, display: bool | None = None):
        """Generate, showing each token as it comes; returns the :class:`~lightlens.Generation`
        (also kept as ``self.generation``).

        Args:
            display: show the view first (default: in a notebook, unless it is shown already).
        """
        if display or (display is None and not self._shown and in_notebook()):
            self._ipython_display_()
        self.tokens, spans, last = [], [], 0.0
        stream = self.lm.stream(self.prompt, **self.options)
        for t in stream:
            self.tokens.append(t)
            spans.append(token_span(t, metric=self.metric))
            if self._shown and time.monotonic() - last >= self.every:
                status = f"generating… {len(self.tokens)}/{self.options['max_new_tokens']} tokens"
                self.widget.value = stream_html(self.prompt, spans, status=status, metric=self.metric)
                last = time.monotonic()
        self.generation = stream.generations[0]
        self.widget.value = generation_html(self.generation, metric=self.metric)
        return self.generation


def live(lm, prompt: str, **options):
    """Show a :class:`LiveGeneration` (in a notebook) and run it; returns the Generation. The
    options are :class:`LiveGeneration`'s.

    >>> live(tiny, "Hello", max_new_tokens=2).num_generated
    2
    """
    return LiveGeneration(lm, prompt, **options).run()
