"""`Generation`: a generated text scored token by token, with what the sampler did at each step.

A Generation *is* a :class:`ScoreResult` over prompt + completion: ``token_ids`` are the ids
exactly as generated (never re-tokenised) and ``logprobs`` what ``score()`` of those ids gives
(../shared/DESIGN.md, "Generation"). Besides, every generated token carries its log-probability
under the sampler's final distribution (``sampled_logprobs``), that distribution's support size
(``kept``) and entropy (``sampled_entropy``); these are NaN (0 for ``kept``) on prompt tokens.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..metrics import LN2
from .score_result import _ARRAYS, _META, ScoreResult, _printable

FINISH_REASONS = ("length", "eos", "stop", "context", "interrupted")


def extend_offsets(offsets: np.ndarray, start: int, pieces: list[str]) -> np.ndarray:
    """``offsets`` [m, 2] followed by the spans of ``pieces`` laid end to end from character
    ``start`` (a completion after its prompt).

    >>> extend_offsets(np.array([[0, 5]]), 5, [" a", "", "b"]).tolist()
    [[0, 5], [5, 7], [7, 7], [7, 8]]
    """
    ends = np.cumsum([0, *map(len, pieces)]) + start
    return np.concatenate([np.asarray(offsets, np.int64).reshape(-1, 2), np.stack([ends[:-1], ends[1:]], 1)])


@dataclass
class GeneratedToken:
    """One generated token as it is chosen (what ``lm.stream`` yields): which sequence
    (``index``) and step, its id and the text it adds, its raw statistics (``logprob``,
    ``logsumexp``, ``entropy``, ``rank``, top-k) and the sampler's (``sampled_logprob``,
    ``sampled_entropy``, ``kept``); ``finish_reason`` is set on a sequence's last token.

    >>> t = next(tiny.stream("Hello", max_new_tokens=2))
    >>> t.step, t.rank, t.kept, t.prob == math.exp(t.logprob)   # greedy: the argmax, kept alone
    (0, 1, 1, True)
    """

    index: int
    step: int
    token_id: int
    text: str
    logprob: float
    logsumexp: float
    entropy: float
    rank: int
    top_k_ids: np.ndarray
    top_k_logprobs: np.ndarray
    sampled_logprob: float
    sampled_entropy: float
    kept: int
    finish_reason: str | None = None
    top_k_tokens: list[str] | None = None

    @property
    def prob(self) -> float:
        """The token's probability under the model."""
        return math.exp(self.logprob)

    @property
    def sampled_prob(self) -> float:
        """The token's probability under the sampler's final distribution."""
        return math.exp(self.sampled_logprob)


@dataclass(eq=False)
class Generation(ScoreResult):
    """A prompt and its completion, scored; plus, for each generated token, the sampler's view.

    ``text`` is prompt + completion, ``num_prompt_tokens`` how many of ``tokens`` are the
    prompt's, ``completion`` the generated text. ``finish_reason``: "length" (``max_new_tokens``
    reached), "eos" (the model's end-of-sequence token, kept as the last token: it covers no
    characters), "stop" (a stop string appeared; the text keeps it), "context" (the model's
    context is full) or "interrupted" (a stream closed before the end). ``sampler`` describes
    the sampler ("greedy" when none was given) and ``seed`` is the seed that reproduces the draws.

    Example:
        >>> g = lightlens.generate("Hello", model=tiny, max_new_tokens=4)
        >>> g.completion == g.text[len("Hello"):], len(g) == g.num_prompt_tokens + 4
        (True, True)
        >>> g.sampler, bool((g.kept[g.generated] == 1).all())   # greedy keeps one token
        ('greedy', True)
    """

    num_prompt_tokens: int = 0
    sampled_logprobs: np.ndarray | None = None
    sampled_entropy: np.ndarray | None = None
    kept: np.ndarray | None = None
    finish_reason: str = "length"
    sampler: str = "greedy"
    seed: int | None = None

    FORMAT: ClassVar[str] = "lightlens.Generation/1"
    ARRAYS: ClassVar[dict[str, type]] = {**_ARRAYS, "sampled_logprobs": np.float32,
                                         "sampled_entropy": np.float32, "kept": np.int64}
    META: ClassVar[tuple[str, ...]] = (*_META, "num_prompt_tokens", "finish_reason", "sampler", "seed")

    def __post_init__(self) -> None:
        n = len(self.tokens)
        for name in ("sampled_logprobs", "sampled_entropy"):
            if getattr(self, name) is None:
                setattr(self, name, np.full(n, np.nan, np.float32))
        if self.kept is None:
            self.kept = np.zeros(n, np.int64)
        super().__post_init__()
        if not 0 <= self.num_prompt_tokens <= n:
            raise ValueError(f"num_prompt_tokens={self.num_prompt_tokens} for {n} tokens")
        if self.finish_reason not in FINISH_REASONS:
            raise ValueError(f"finish_reason must be one of {FINISH_REASONS}, got {self.finish_reason!r}")

    # ---- the two parts ---------------------------------------------------------------
    @property
    def generated(self) -> np.ndarray:
        """Boolean mask of the generated tokens (False on the prompt's)."""
        mask = np.zeros(len(self), bool)
        mask[self.num_prompt_tokens:] = True
        return mask

    @property
    def num_generated(self) -> int:
        """How many tokens were generated."""
        return len(self) - self.num_prompt_tokens

    @property
    def prompt_end(self) -> int:
        """The character where the completion starts."""
        return int(self.offsets[self.num_prompt_tokens - 1, 1]) if self.num_prompt_tokens else 0

    @property
    def prompt(self) -> str:
        """The prompt's text."""
        return self.text[: self.prompt_end]

    @property
    def completion(self) -> str:
        """The generated text."""
        return self.text[self.prompt_end:]

    @property
    def completion_ids(self) -> np.ndarray:
        """The generated token ids, in order."""
        return self.token_ids[self.num_prompt_tokens:]

    @property
    def surprise_bits(self) -> np.ndarray:
        """Each generated token's surprise under the sampler's distribution, in bits
        (``-sampled_logprob / ln 2``; what mirostat steers towards its target τ)."""
        return -self.sampled_logprobs[self.num_prompt_tokens:] / LN2

    # ---- tables and views ------------------------------------------------------------
    def to_pandas(self):
        """One row per token, ScoreResult's columns plus ``generated``, ``sampled_logprob``,
        ``sampled_prob``, ``kept`` and ``sampled_entropy``.

        >>> df = lightlens.generate("Hello", model=tiny, max_new_tokens=3).to_pandas()
        >>> int(df["generated"].sum()), list(df.columns[-4:])
        (3, ['sampled_logprob', 'sampled_prob', 'kept', 'sampled_entropy'])
        """
        df = super().to_pandas()
        df["generated"] = self.generated
        df["sampled_logprob"] = self.sampled_logprobs
        df["sampled_prob"] = np.exp(self.sampled_logprobs)
        df["kept"] = self.kept
        df["sampled_entropy"] = self.sampled_entropy
        return df

    def generation_table(self, *, max_rows: int | None = None) -> str:
        """The generated tokens as aligned text (what ``lightlens generate`` prints): each
        token's probability under the model and under the sampler, the sampler's kept-set
        size, the raw rank and the top alternatives.

        >>> print(lightlens.generate("Hello", model=tiny, max_new_tokens=2).generation_table())  # doctest: +ELLIPSIS
            #  token                 prob  sampled    kept   rank  alternatives
            0  ...
        """
        lines = [f"{'#':>5}  {'token':<18} {'prob':>7} {'sampled':>8} {'kept':>7} {'rank':>6}  alternatives"]
        rows = range(self.num_prompt_tokens, len(self))
        for step, i in enumerate(rows):
            if max_rows is not None and step >= max_rows:
                lines.append(f"  … {len(rows) - max_rows} more tokens")
                break
            alternatives = " ".join(_printable(t) for t in self.top_k_tokens[i][:3])
            lines.append(f"{step:>5}  {_printable(self.tokens[i])[:18]:<18} {math.exp(self.logprobs[i]):>7.3f} "
                         f"{math.exp(self.sampled_logprobs[i]):>8.3f} {self.kept[i]:>7} {self.ranks[i]:>6}  "
                         f"{alternatives}")
        return "\n".join(lines)

    def heatmap(self, **options):
        """The prompt and completion coloured by a metric, with the prompt's end marked; hover a
        generated token for its probability under the model and the sampler, the kept-set size,
        rank, entropy and alternatives. See :func:`lightlens.viz.generation.generation_html` for
        the options.

        >>> hm = lightlens.generate("Hello", model=tiny, max_new_tokens=3).heatmap(metric="kept")
        >>> hm._repr_html_().count("data-tip="), hm._repr_html_().count("class='ll-pe'")
        (4, 1)
        """
        from ..viz.generation import generation_html
        from ..viz.heatmap import Heatmap

        return Heatmap(generation_html(self, **options))

    def _repr_html_(self) -> str:
        from ..viz.generation import generation_html

        return generation_html(self)

    def plot(self, kind: str = "generation", **options):
        """Matplotlib plots of the steps: "generation" (the figure: entropy of the model's and
        the sampler's distributions, the chosen token's probability under both and, for mirostat
        or with ``target=``, the surprise against its target τ), or one of its panels
        ("step_entropy", "step_prob", "surprise"); ScoreResult's kinds ("logprob", "surprisal",
        "entropy", "perplexity", "rank") draw along the whole text.

        >>> g = lightlens.generate("Hello", model=tiny, max_new_tokens=4)
        >>> len(g.plot().axes), g.plot("logprob").get_ylabel()
        (2, 'log-probability (nats)')
        """
        from ..viz import generation as views

        draw = {"generation": views.plot_generation, "step_entropy": views.plot_step_entropy,
                "step_prob": views.plot_step_prob, "surprise": views.plot_surprise}
        if kind in draw:
            return draw[kind](self, **options)
        try:
            return super().plot(kind, **options)
        except ValueError as err:
            if str(err).startswith("unknown plot"):
                raise ValueError(f"{err}, {', '.join(draw)}") from None
            raise

    def summary(self) -> str:
        """One line: tokens generated, finish reason, sampler, the completion's perplexity.

        >>> print(lightlens.generate("Hello", model=tiny, max_new_tokens=3).summary())  # doctest: +ELLIPSIS
        3 tokens generated (length) by greedy; completion perplexity ...
        """
        lp = self.logprobs[self.num_prompt_tokens:].astype(np.float64)
        ppl = float(np.exp(-lp.mean())) if len(lp) else float("nan")
        return (f"{self.num_generated} tokens generated ({self.finish_reason}) by {self.sampler}; "
                f"completion perplexity {ppl:.4g}")

    def __repr__(self) -> str:
        name = self.model.get("name", "?")
        return (f"Generation(model={name!r}, prompt_tokens={self.num_prompt_tokens}, "
                f"generated={self.num_generated}, finish_reason={self.finish_reason!r}, "
                f"sampler={self.sampler!r}, completion={self.completion[:40]!r})")
