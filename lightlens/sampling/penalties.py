"""Penalties on tokens already seen: the repetition penalty of CTRL / Hugging Face (prompt and
generated tokens, on the raw logits), and OpenAI's frequency and presence penalties (generated
tokens only). Each reads the context from the SamplerState; pads are never counted.

>>> import torch
>>> from lightlens.sampling.state import SamplerState
>>> state = SamplerState.from_lists([[0]], [[1, 1]], vocab_size=3)
>>> frequency_penalty(0.5)(torch.zeros(1, 3), state)
tensor([[ 0., -1.,  0.]])
"""
from __future__ import annotations

import math

import torch

from .checks import check_number, short
from .step import Step, needs_state


class RepetitionPenalty(Step):
    def __init__(self, theta: float):
        self.theta = check_number("repetition_penalty", theta, low=0, low_open=True, hint=" (1 means no penalty)")
        self.label = f"repetition_penalty({short(self.theta)})"

    def __call__(self, logprobs: torch.Tensor, state=None) -> torch.Tensor:
        needs_state(self, state)
        raw = logprobs + state.logsumexp.to(logprobs)
        penalised = torch.where(raw > 0, raw / self.theta, raw * self.theta)
        return torch.where(state.counts(prompt=True).to(raw.device) > 0, penalised, raw)


def repetition_penalty(theta: float) -> Step:
    """The CTRL / Hugging Face repetition penalty, on raw logits: for every token that occurs in
    the context (prompt and generated, pads excluded), logit / theta if logit > 0, else
    logit · theta. Raw logits are this step's input + ``state.logsumexp``, so the step equals
    Hugging Face's RepetitionPenaltyLogitsProcessor (given the attention mask, as ``generate``
    does) when it comes first in the chain, as Hugging Face applies it before any warper; later in
    a chain it acts on the earlier steps' log-probabilities shifted by the same logsumexp.

    Args:
        theta: > 0; above 1 discourages repetition, below 1 encourages it.

    >>> from lightlens.sampling.state import SamplerState
    >>> state = SamplerState.from_lists([[0, 1]], vocab_size=3)
    >>> repetition_penalty(2.0)(torch.tensor([[2.0, -1.0, 0.5]]), state)
    tensor([[ 1.0000, -2.0000,  0.5000]])
    """
    return RepetitionPenalty(theta)


class FrequencyPenalty(Step):
    def __init__(self, a: float, *, presence: bool = False):
        name = "presence_penalty" if presence else "frequency_penalty"
        self.a = check_number(name, a, low=-math.inf, hint=" (0 means none)")
        self.presence = presence
        self.label = f"{name}({short(self.a)})"

    def __call__(self, logprobs: torch.Tensor, state=None) -> torch.Tensor:
        needs_state(self, state)
        counts = state.counts(prompt=False).to(logprobs)
        return logprobs - self.a * (counts > 0).to(logprobs) if self.presence else logprobs - self.a * counts


def frequency_penalty(a: float) -> Step:
    """OpenAI's / vLLM's frequency penalty: subtract ``a`` times the number of times each token
    occurs in the generated part (not the prompt) from its log-probability.

    Args:
        a: any finite number (OpenAI allows [-2, 2]); negative encourages repetition.

    >>> frequency_penalty(float("nan"))
    Traceback (most recent call last):
    ValueError: frequency_penalty must be finite (0 means none), got nan
    """
    return FrequencyPenalty(a)


def presence_penalty(b: float) -> Step:
    """OpenAI's / vLLM's presence penalty: subtract ``b`` from the log-probability of every token
    that occurs at least once in the generated part (not the prompt).

    Args:
        b: any finite number (OpenAI allows [-2, 2]); negative encourages repetition.

    >>> from lightlens.sampling.state import SamplerState
    >>> state = SamplerState.from_lists([[2]], [[1, 1]], vocab_size=3)
    >>> presence_penalty(0.5)(torch.zeros(1, 3), state)
    tensor([[ 0.0000, -0.5000,  0.0000]])
    """
    return FrequencyPenalty(b, presence=True)
