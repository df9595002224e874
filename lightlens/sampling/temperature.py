"""Temperatures: divide the log-probabilities by T (T < 1 sharpens, T > 1 flattens), either a
fixed T or, per row, the T that gives the distribution a target entropy.

>>> import torch
>>> temperature(0.5)(torch.tensor([[0.6, 0.4]]).log()).softmax(-1)
tensor([[0.6923, 0.3077]])
"""
from __future__ import annotations

import math

import torch

from .checks import check_number, short
from .step import Step, entropy
from .truncation import greedy

T_MIN, T_MAX, BISECTIONS = 1e-2, 1e2, 40  # entropy_temperature's search: log T halved 40 times


class Temperature(Step):
    def __init__(self, t: float):
        self.t = check_number("temperature", t, low=0, hint=" (0 means greedy)")
        self.label = f"temperature({short(self.t)})"
        self.is_greedy = self.t == 0.0
        self._greedy = greedy()

    def __call__(self, logprobs: torch.Tensor, state=None) -> torch.Tensor:
        return self._greedy(logprobs) if self.is_greedy else logprobs / self.t


def temperature(t: float) -> Step:
    """Divide log-probabilities by ``t`` (Hugging Face's TemperatureLogitsWarper: the same after
    renormalising); ``t == 0`` is greedy (the most probable token, lowest id on ties).

    Args:
        t: >= 0.

    >>> temperature(0)(torch.tensor([[-1.0, -0.5]]))
    tensor([[-inf, 0.]])
    >>> temperature(-1)
    Traceback (most recent call last):
    ValueError: temperature must be >= 0 (0 means greedy), got -1.0
    """
    return Temperature(t)


class EntropyTemperature(Step):
    def __init__(self, target: float):
        self.target = check_number("entropy_temperature's target", target, low=0, hint=" nats")
        self.label = f"entropy_temperature({short(self.target)})"

    def temperatures(self, logprobs: torch.Tensor) -> torch.Tensor:
        """[B, 1]: each row's temperature (see ``entropy_temperature``).

        Args:
            logprobs: [B, V] log-probabilities.

        >>> entropy_temperature(0.0).temperatures(torch.tensor([[0.5, 0.3, 0.2]]).log())
        tensor([[0.0100]])
        """
        logp = logprobs.log_softmax(-1)
        low = torch.full((logp.shape[0], 1), math.log(T_MIN), dtype=torch.float64, device=logp.device)
        high = torch.full_like(low, math.log(T_MAX))
        for _ in range(BISECTIONS):  # the entropy rises with T
            mid = (low + high) / 2
            hot = entropy((logp / mid.exp().to(logp.dtype)).log_softmax(-1)) > self.target
            high, low = torch.where(hot, mid, high), torch.where(hot, low, mid)
        return ((low + high) / 2).exp().to(logp.dtype)

    def __call__(self, logprobs: torch.Tensor, state=None) -> torch.Tensor:
        return logprobs / self.temperatures(logprobs)


def entropy_temperature(target: float) -> Step:
    """Per row, the temperature T whose distribution softmax(logprobs / T) has entropy
    ``target`` nats. T is found by bisection over log T in [1e-2, 1e2] (40 halvings, all rows at
    once; the entropy rises with T); a target out of a row's reach gets the nearest end (1e-2 or
    1e2). A row with one token left has entropy 0 at every T.

    Args:
        target: the entropy to reach, in nats (>= 0; at most log V is reachable).

    >>> lp = entropy_temperature(0.5)(torch.tensor([[0.5, 0.3, 0.2]]).log())
    >>> round(float(entropy(lp.log_softmax(-1))), 4)
    0.5
    """
    return EntropyTemperature(target)
