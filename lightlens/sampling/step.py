"""What a sampler step is: ``step(logprobs, state) -> logprobs`` on float32 [B, V] (−inf =
removed), an optional ``observe`` after each draw, and a short repr. Any plain function
``f(logprobs, state) -> logprobs`` is a step too (``custom``).

Steps never modify their input in place, and return scores that need not be normalised: the
Sampler renormalises (log_softmax) after every step. A step that removes tokens never removes
every one: truncations keep at least the most probable token(s) (``restrict``).
"""
from __future__ import annotations

import math
from typing import Callable

import torch

NEG_INF = -math.inf


class Step:
    """Base class of the built-in steps: subclasses define ``__call__`` and set ``label`` (their
    repr, written like the call that builds them).

    >>> class Halve(Step):
    ...     label = "halve()"
    ...     def __call__(self, logprobs, state=None):
    ...         return logprobs / 2
    >>> Halve(), Halve()(torch.tensor([[-2.0, -4.0]]))
    (halve(), tensor([[-1., -2.]]))
    """

    label = "step()"
    is_greedy = False  # True when the step leaves exactly one token per row

    def __call__(self, logprobs: torch.Tensor, state=None) -> torch.Tensor:
        raise NotImplementedError

    def observe(self, state, chosen: torch.Tensor, final_logprobs: torch.Tensor) -> None:
        """Called once a token is drawn (``chosen`` [B] int64, under ``final_logprobs`` [B, V], the
        chain's renormalised output); the default does nothing.

        Args:
            state: this step's SamplerState.
            chosen: the drawn ids.
            final_logprobs: the distribution they were drawn from.

        >>> Step().observe(None, torch.tensor([0]), torch.zeros(1, 1)) is None
        True
        """
        return None

    def __repr__(self) -> str:
        return self.label


def needs_state(step: Step, state) -> None:
    """Raise a clear error when a step that reads the generation state is called without one.

    Args:
        step: the step (named in the message).
        state: what it was given.

    >>> needs_state(Step(), None)
    Traceback (most recent call last):
    ValueError: step() needs the generation state: call it with a lightlens.sampling.SamplerState
    """
    if state is None:
        raise ValueError(f"{step!r} needs the generation state: call it with a lightlens.sampling.SamplerState")


def restrict(logprobs: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """``logprobs`` with every token outside ``keep`` set to −inf, always keeping the row's most
    probable token and every token tied with it (so no row is emptied).

    Args:
        logprobs: [B, V] log-probabilities (or logits).
        keep: [B, V] bool, the tokens the rule keeps.

    >>> restrict(torch.tensor([[-1.0, -1.0, -3.0]]), torch.tensor([[False, False, True]]))
    tensor([[-1., -1., -3.]])
    >>> restrict(torch.tensor([[-1.0, -2.0, -3.0]]), torch.tensor([[False, True, False]]))
    tensor([[-1., -2., -inf]])
    """
    top = logprobs == logprobs.amax(-1, keepdim=True)
    return logprobs.masked_fill(~(keep | top), NEG_INF)


def entropy(logp: torch.Tensor) -> torch.Tensor:
    """[B, 1] float64 entropy in nats of normalised log-probabilities [B, V] (−inf entries add 0).

    Args:
        logp: [B, V] normalised log-probabilities.

    >>> round(float(entropy(torch.tensor([[0.5, 0.5, 0.0]]).log())), 6)
    0.693147
    """
    x = logp.double()
    p = x.exp()
    return -torch.where(p > 0, p * x, 0.0).sum(-1, keepdim=True)


def tie_starts(sorted_values: torch.Tensor) -> torch.Tensor:
    """For values sorted along the last dim, the index of the first element equal to each one
    (so a sum over "strictly before" can be read at the start of each run of ties).

    Args:
        sorted_values: [B, V], sorted (either direction) along the last dim.

    >>> tie_starts(torch.tensor([[3.0, 2.0, 2.0, 1.0, 1.0, 1.0]])).tolist()
    [[0, 1, 1, 3, 3, 3]]
    """
    index = torch.arange(sorted_values.shape[-1], device=sorted_values.device).expand_as(sorted_values)
    new = torch.ones_like(sorted_values, dtype=torch.bool)
    new[..., 1:] = sorted_values[..., 1:] != sorted_values[..., :-1]
    return torch.where(new, index, 0).cummax(-1).values


class Custom(Step):
    """A user function ``fn(logprobs, state) -> logprobs`` as a step (see ``custom``)."""

    def __init__(self, fn: Callable, name: str | None = None):
        if not callable(fn):
            raise TypeError(f"a sampler step must be callable as f(logprobs, state) -> logprobs, got {fn!r}")
        self.fn = fn
        self.label = name or getattr(fn, "__name__", type(fn).__name__)

    def __call__(self, logprobs: torch.Tensor, state=None) -> torch.Tensor:
        return self.fn(logprobs.clone(), state)  # a copy: the function may write into it


def custom(fn: Callable, name: str | None = None) -> Step:
    """Any function ``fn(logprobs, state) -> logprobs`` as a named step. The function gets a copy
    of the [B, V] log-probabilities (it may modify it), and may return unnormalised scores: the
    Sampler renormalises. A plain function passed to ``Sampler`` is wrapped this way.

    Args:
        fn: the function.
        name: its repr (default: the function's ``__name__``).

    >>> ban_zero = custom(lambda lp, state: lp.index_fill(1, torch.tensor([0]), float("-inf")), "ban_zero")
    >>> ban_zero, ban_zero(torch.zeros(1, 3))
    (ban_zero, tensor([[-inf, 0., 0.]]))
    """
    return fn if isinstance(fn, Step) else Custom(fn, name)
