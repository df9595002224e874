"""Mirostat v2 (Basu et al. 2021, as llama.cpp implements it): hold the surprise of the drawn
tokens near a target τ bits by truncating at a threshold mu that feedback moves after each draw.

Per row, mu starts at 2τ (kept in ``state.memory`` under the step). A step keeps the tokens whose
surprise −log2 p(v) is <= mu (at least the most probable); after the draw, with s the surprise of
the chosen token under the final renormalised distribution, mu ← mu − η·(s − τ).

>>> import torch
>>> from lightlens.sampling.state import SamplerState
>>> step, state = mirostat_v2(1.0, 0.5), SamplerState.from_lists([[0]], vocab_size=3)
>>> step(torch.tensor([[0.5, 0.3, 0.2]]).log(), state).exp()  # mu = 2 bits: p >= 1/4
tensor([[0.5000, 0.3000, 0.0000]])
"""
from __future__ import annotations

import math

import torch

from .checks import check_number, short
from .step import Step, needs_state, restrict

LN2 = math.log(2.0)


class MirostatV2(Step):
    def __init__(self, tau: float, eta: float):
        self.tau = check_number("mirostat tau", tau, low=0, hint=" (target surprise in bits)")
        self.eta = check_number("mirostat eta", eta, low=0, hint=" (learning rate)")
        self.label = f"mirostat_v2({short(self.tau)}, {short(self.eta)})"

    def mu(self, state) -> torch.Tensor:
        """[B] float64: each row's current threshold in bits (2τ before the first draw).

        Args:
            state: the SamplerState whose memory holds it.

        >>> from lightlens.sampling.state import SamplerState
        >>> mirostat_v2(3.0, 0.1).mu(SamplerState.from_lists([[0], [1]], vocab_size=2)).tolist()
        [6.0, 6.0]
        """
        needs_state(self, state)
        if self not in state.memory:
            state.memory[self] = torch.full((state.ids.shape[0],), 2 * self.tau, dtype=torch.float64,
                                            device=state.ids.device)
        return state.memory[self]

    def __call__(self, logprobs: torch.Tensor, state=None) -> torch.Tensor:
        logp = logprobs.log_softmax(-1)
        floor = -self.mu(state).to(logp.device)[:, None] * LN2  # surprise <= mu  <=>  log p >= -mu ln 2
        return restrict(logprobs, logp.double() >= floor)

    def observe(self, state, chosen: torch.Tensor, final_logprobs: torch.Tensor) -> None:
        surprise = -final_logprobs.gather(-1, chosen.reshape(-1, 1))[:, 0].double() / LN2
        state.memory[self] = self.mu(state) - self.eta * (surprise.to(self.mu(state).device) - self.tau)


def mirostat_v2(tau: float, eta: float) -> Step:
    """Mirostat v2 with target surprise ``tau`` bits and learning rate ``eta`` (llama.cpp's
    defaults: 5.0 and 0.1). See the module for the rule. Needs the generation loop to call
    ``Sampler.observe`` after each draw and to pass the same ``state.memory`` at every step.

    Args:
        tau: target surprise in bits, >= 0.
        eta: learning rate, >= 0.

    >>> from lightlens.sampling.state import SamplerState
    >>> step, state = mirostat_v2(1.0, 0.5), SamplerState.from_lists([[0]], vocab_size=2)
    >>> final = torch.tensor([[0.75, 0.25]]).log()
    >>> step.observe(state, torch.tensor([1]), final)  # s = 2 bits: mu = 2 - 0.5 * (2 - 1)
    >>> round(step.mu(state).item(), 6)
    1.5
    """
    return MirostatV2(tau, eta)
