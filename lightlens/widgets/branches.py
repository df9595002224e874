"""The branch explorer: what if the model had chosen another token? Pick a generated token, pick
one of the model's alternatives there, continue from it (``lm.branch``); every branch is kept and
compared with the original side by side: its text and heatmap, the log-probability of each token
after the branch point, and their total.

Everything the controls do is a method (:meth:`BranchExplorer.select`, :meth:`BranchExplorer.branch`),
so a script or a test drives it without a browser.
"""
from __future__ import annotations

import html
import math
from dataclasses import dataclass

import numpy as np

from ..viz.generation import generation_html

CONTEXT = 12  # tokens shown before the branch point in a branch's card
HEAD_STYLE = "font:12px/1.5 system-ui,-apple-system,sans-serif;color:#1f2937;margin:2px 0 4px"


@dataclass
class Branch:
    """A continuation of the explorer's generation from another token: it leaves the original at
    token ``position`` with ``token_id``; ``generation`` holds the text up to there, that token
    (the end of its prompt) and what followed.

    >>> g = tiny.generate("Hello", max_new_tokens=4)
    >>> at = g.num_prompt_tokens + 1
    >>> b = Branch(at, int(g.top_k_ids[at, 1]), tiny.branch(g, at, int(g.top_k_ids[at, 1]), max_new_tokens=2))
    >>> b.num_after, bool(np.isclose(b.total_logprob, b.logprobs_after.sum()))
    (3, True)
    """

    position: int
    token_id: int
    generation: object

    @property
    def logprobs_after(self) -> np.ndarray:
        """The log-probability of each token from the branch point on (its chosen token first)."""
        return self.generation.logprobs[self.position:].astype(np.float64)

    @property
    def num_after(self) -> int:
        """How many tokens from the branch point on."""
        return len(self.generation) - self.position

    @property
    def total_logprob(self) -> float:
        """The log-probability of the text from the branch point on, given what came before."""
        return float(self.logprobs_after.sum())


class BranchExplorer:
    """Explore alternatives of a generation: pick a generated token (``position``), one of the
    model's top-k alternatives there (``alternative``), press **Branch** (or call
    :meth:`branch`); the continuation from that token is generated with ``lm.branch`` and shown
    beside the original, with the per-token and total log-probability of what follows the
    branch point, and a table of all branches (:meth:`table`).

    Args:
        lm: the local model that generated ``root`` (``lightlens.load()``).
        root: a :class:`~lightlens.Generation`, or a prompt to generate from first (with
            ``sampler``, ``seed``, ``stop``, ``top_k`` and ``max_new_tokens``, default 32).
        max_new_tokens: new tokens of a root generated from a prompt (default 32).
        branch_tokens: new tokens after a branch's chosen token (default: as many as the root has
            after that position, so both parts have the same length unless one ends first).
        sampler: how branches (and a prompt's root) continue (None: greedy).
        seed: their seed (default: the root's).
        stop: stop string(s).
        top_k: alternatives listed per token (of those the root kept).

    >>> app = BranchExplorer(tiny, "Hello", max_new_tokens=5)
    >>> at = app.root.num_prompt_tokens + 1
    >>> app.select(at)
    >>> b = app.branch(at, app.alternative.options[0][1])
    >>> b.num_after == app.root_after(at).size, len(app.branches), app.cards.value.count("class='ll-card'")
    (True, 1, 2)
    """

    def __init__(self, lm, root, *, max_new_tokens: int = 32, branch_tokens: int | None = None, sampler=None,
                 seed: int | None = None, stop=None, top_k: int = 5):
        import ipywidgets as w

        if isinstance(root, str):
            root = lm.generate(root, max_new_tokens=max_new_tokens, sampler=sampler, seed=seed, stop=stop, top_k=top_k)
        if not root.num_generated:
            raise ValueError("the generation has no generated token to branch from")
        self.lm, self.root, self.branches = lm, root, []
        self.options = dict(sampler=sampler, seed=root.seed if seed is None else seed, stop=stop, top_k=top_k)
        self.branch_tokens, self.top_k = branch_tokens, top_k
        m = root.num_prompt_tokens
        self.position = w.Dropdown(options=[(self._label(i), i) for i in range(m, len(root))], value=m,
                                   description="token", layout=w.Layout(width="320px"))
        self.alternative = w.Dropdown(options=[], description="instead", layout=w.Layout(width="300px"))
        self.button = w.Button(description="Branch", button_style="primary", icon="code-fork")
        self.message = w.HTML()
        self.original = w.HTML(generation_html(root))
        self.summary = w.HTML()
        self.cards = w.HTML()
        self.button.on_click(lambda _: self._branch_clicked())
        self.position.observe(lambda change: self.select(change["new"]), names="value")
        self.widget = w.VBox([self.original, w.HBox([self.position, self.alternative, self.button]), self.message,
                              self.summary, self.cards])
        self.select(m)

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)

    def _label(self, i: int) -> str:
        g = self.root
        return f"#{i - g.num_prompt_tokens} {g.tokens[i]!r}  p {math.exp(float(g.logprobs[i])):.3f}"

    def select(self, position: int) -> None:
        """Show the alternatives at ``position`` (a token index of a generated token): the root's
        top-k there, without the token it chose."""
        g = self.root
        if not g.num_prompt_tokens <= position < len(g):
            raise ValueError(f"position {position} is not a generated token: pick one of "
                             f"{g.num_prompt_tokens}..{len(g) - 1}")
        if self.position.value != position:
            self.position.value = position  # observed: calls select again
            return
        pairs = zip(g.top_k_ids[position][:self.top_k], g.top_k_logprobs[position][:self.top_k],
                    g.top_k_tokens[position][:self.top_k])
        self.alternative.options = [(f"{tok!r}  p {math.exp(float(lp)):.3f}", int(tid)) for tid, lp, tok in pairs
                                    if tid >= 0 and tid != g.token_ids[position]]
        self.alternative.value = self.alternative.options[0][1] if self.alternative.options else None
        self.button.disabled = not self.alternative.options

    def root_after(self, position: int) -> np.ndarray:
        """The root's log-probabilities from ``position`` on (what a branch there is compared with)."""
        return self.root.logprobs[position:].astype(np.float64)

    def branch(self, position: int | None = None, token_id: int | None = None) -> Branch:
        """Continue the root from ``token_id`` at ``position`` (default: the chosen ones in the
        controls); the new :class:`Branch` is kept in ``branches`` and shown."""
        position = self.position.value if position is None else position
        token_id = self.alternative.value if token_id is None else token_id
        if token_id is None:
            raise ValueError("pick an alternative token (the root lists no other token there)")
        new = len(self.root) - position - 1 if self.branch_tokens is None else self.branch_tokens
        g = self.lm.branch(self.root, position, int(token_id), max_new_tokens=new, **self.options)
        b = Branch(position, int(token_id), g)
        self.branches.append(b)
        self.render()
        return b

    def _branch_clicked(self) -> None:
        self.message.value = ""
        self.button.disabled, self.button.description = True, "Generating…"
        try:
            self.branch()
        except Exception as err:  # noqa: BLE001 - shown to the user, the app stays alive
            self.message.value = (f"<div style='color:#b91c1c'><b>{type(err).__name__}</b>: "
                                  f"{html.escape(str(err))}</div>")
        finally:
            self.button.disabled, self.button.description = not self.alternative.options, "Branch"

    def table(self):
        """One row per branch: where it leaves the root, the tokens there, and the total and
        mean log-probability of its part after the branch point beside the root's.

        >>> app = BranchExplorer(tiny, tiny.generate("Hello", max_new_tokens=4))
        >>> _ = app.branch(app.root.num_prompt_tokens, app.alternative.options[0][1])
        >>> list(app.table().columns[-4:])
        ['total logprob', 'mean logprob', 'root total logprob', 'root mean logprob']
        """
        import pandas as pd

        g = self.root
        columns = ["branch", "step", "root token", "token", "tokens after", "finish", "total logprob",
                   "mean logprob", "root total logprob", "root mean logprob"]
        rows = []
        for n, b in enumerate(self.branches, 1):
            mine, root = b.logprobs_after, self.root_after(b.position)
            rows.append([n, b.position - g.num_prompt_tokens, repr(g.tokens[b.position]),
                         repr(b.generation.tokens[b.position]), b.num_after, b.generation.finish_reason,
                         mine.sum(), mine.mean(), root.sum(), root.mean()])
        return pd.DataFrame(rows, columns=columns)

    def render(self) -> None:
        """Redraw the comparison: the table and a card for the root and each branch."""
        if not self.branches:
            self.summary.value = self.cards.value = ""
            return
        self.summary.value = self.table().to_html(index=False, float_format=lambda x: f"{x:.3f}", border=0)
        first = min(b.position for b in self.branches)
        cards = [self._card("original", self.root, first, self.root_after(first))]
        for n, b in enumerate(self.branches, 1):
            cards.append(self._card(f"branch {n}: {b.generation.tokens[b.position]!r} at step "
                                    f"{b.position - self.root.num_prompt_tokens}", b.generation, b.position,
                                    b.logprobs_after))
        self.cards.value = f"<div style='display:flex;gap:12px;flex-wrap:wrap'>{''.join(cards)}</div>"

    def _card(self, title: str, g, position: int, after: np.ndarray) -> str:
        """One line of the comparison: title, totals, per-token logprobs after ``position``, heatmap."""
        per_token = " ".join(f"{x:.2f}" for x in after[:24]) + (" …" if len(after) > 24 else "")
        head = (f"<div style='{HEAD_STYLE}'><b>{html.escape(title)}</b><br>after the branch "
                f"point: {len(after)} tokens, total logprob <b>{after.sum():.3f}</b>, mean {after.mean():.3f}"
                f"<br><span style='color:#4b5563'>per token: {per_token}</span></div>")
        heat = generation_html(g, start=max(0, position - CONTEXT), mark=position, label="branch ▸")
        return f"<div style='flex:1;min-width:340px'>{head}{heat}</div>"
