"""Truncations: steps that keep a set of tokens by a fixed rule and remove the rest (−inf).

Each rule is written in its docstring. Ties are kept together (a token tied with a kept one is
kept: the set never depends on sort order), and every truncation keeps at least the most
probable token(s) — except ``typical_p``, which keeps the most *typical* one (as Hugging Face
does; its set is never empty either). Probabilities are those of the step's input, renormalised.
Masses (cumulative sums) are added in float64, so ``top_p`` and ``typical_p`` agree with a
float64 reference except within ~1e-16 of the boundary.

>>> import torch
>>> lp = torch.tensor([[0.5, 0.3, 0.2]]).log()
>>> top_p(0.6)(lp).exp()
tensor([[0.5000, 0.3000, 0.0000]])
"""
from __future__ import annotations

import math

import torch

from lightlens.options import check_int

from .checks import check_number, short
from .step import NEG_INF, Step, entropy, restrict, tie_starts


def _mass_before(sorted_logp: torch.Tensor, sort_key: torch.Tensor) -> torch.Tensor:
    """Float64 probability mass of the tokens strictly before each one in a sorted row, where
    tokens with equal ``sort_key`` count as one position (tie-inclusive)."""
    cumulative = sorted_logp.double().exp().cumsum(-1)
    before = torch.nn.functional.pad(cumulative[..., :-1], (1, 0))
    return before.gather(-1, tie_starts(sort_key))


def _unsort(sorted_keep: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(sorted_keep).scatter_(-1, order, sorted_keep)


class Greedy(Step):
    label = "greedy()"
    is_greedy = True

    def __call__(self, logprobs: torch.Tensor, state=None) -> torch.Tensor:
        out = torch.full_like(logprobs, NEG_INF)
        return out.scatter_(-1, logprobs.argmax(-1, keepdim=True), 0.0)


def greedy() -> Step:
    """Keep only the most probable token (on ties the lowest id, as ``torch.argmax`` and Hugging
    Face's greedy search), with log-probability 0.

    >>> greedy()(torch.tensor([[-2.0, -0.5, -0.5]]))
    tensor([[-inf, 0., -inf]])
    """
    return Greedy()


class TopK(Step):
    def __init__(self, k: int):
        self.k = check_int("top_k", k, minimum=1)
        self.label = f"top_k({self.k})"

    def __call__(self, logprobs: torch.Tensor, state=None) -> torch.Tensor:
        if self.k >= logprobs.shape[-1]:
            return logprobs
        kth = logprobs.topk(self.k, -1).values[..., -1:]
        return logprobs.masked_fill(logprobs < kth, NEG_INF)


def top_k(k: int) -> Step:
    """Keep every token whose log-probability is >= the k-th largest: ties at the boundary are
    all kept (as Hugging Face's TopKLogitsWarper); k >= V keeps everything.

    Args:
        k: an int >= 1.

    >>> top_k(2)(torch.tensor([[-1.0, -2.0, -2.0, -3.0]]))
    tensor([[-1., -2., -2., -inf]])
    """
    return TopK(k)


class TopP(Step):
    def __init__(self, p: float):
        self.p = check_number("top_p", p, low=0, high=1, low_open=True, hint=" (1 keeps every token)")
        self.label = f"top_p({short(self.p)})"

    def __call__(self, logprobs: torch.Tensor, state=None) -> torch.Tensor:
        if self.p == 1.0:
            return logprobs
        logp = logprobs.log_softmax(-1)
        ordered, order = logp.sort(-1, descending=True)
        keep = _mass_before(ordered, ordered) < self.p
        return restrict(logprobs, _unsort(keep, order))


def top_p(p: float) -> Step:
    """Nucleus sampling: keep token v iff the probability mass of the tokens *strictly* more
    probable than v is < p. Tie-inclusive; equal to Hugging Face's TopPLogitsWarper up to the
    order of ties. p = 1 keeps every token (exactly).

    Args:
        p: in (0, 1].

    >>> top_p(0.5)(torch.tensor([[0.4, 0.3, 0.3]]).log()).exp()
    tensor([[0.4000, 0.3000, 0.3000]])
    """
    return TopP(p)


class MinP(Step):
    def __init__(self, p: float):
        self.p = check_number("min_p", p, low=0, high=1, hint=" (0 keeps every token)")
        self.label = f"min_p({short(self.p)})"

    def __call__(self, logprobs: torch.Tensor, state=None) -> torch.Tensor:
        if self.p == 0.0:
            return logprobs
        logp = logprobs.log_softmax(-1)
        floor = logp.amax(-1, keepdim=True) + math.log(self.p)
        return restrict(logprobs, logp >= floor)


def min_p(p: float) -> Step:
    """Keep tokens with probability >= p times the most probable token's (compared as
    log-probabilities: log p(v) >= log p_max + log p). p = 0 keeps every token.

    Args:
        p: in [0, 1].

    >>> min_p(0.5)(torch.tensor([[0.5, 0.3, 0.2]]).log()).exp()
    tensor([[0.5000, 0.3000, 0.0000]])
    """
    return MinP(p)


class TypicalP(Step):
    def __init__(self, p: float):
        self.p = check_number("typical_p", p, low=0, high=1, low_open=True, hint=" (1 keeps every token)")
        self.label = f"typical_p({short(self.p)})"

    def __call__(self, logprobs: torch.Tensor, state=None) -> torch.Tensor:
        if self.p == 1.0:
            return logprobs
        logp = logprobs.log_softmax(-1)
        key = (-logp.double() - entropy(logp)).abs()  # removed tokens: +inf, last
        sorted_key, order = key.sort(-1)
        keep = _mass_before(logp.gather(-1, order), sorted_key) < self.p
        return logprobs.masked_fill(~_unsort(keep, order), NEG_INF)


def typical_p(p: float) -> Step:
    """Locally typical sampling (Meister et al. 2023; Hugging Face's TypicalLogitsWarper): with
    H the entropy and key(v) = |−log p(v) − H|, keep v iff the mass of the tokens with a strictly
    smaller key is < p. The most typical token is always kept (not necessarily the most probable
    one, as in Hugging Face). p = 1 keeps every token.

    Args:
        p: in (0, 1].

    >>> typical_p(0.5)(torch.tensor([[0.4, 0.3, 0.3]]).log()).exp()  # H = 1.09 nats: 0.3 is typical
    tensor([[0.0000, 0.3000, 0.3000]])
    """
    return TypicalP(p)


class EpsilonCutoff(Step):
    def __init__(self, epsilon: float):
        self.epsilon = check_number("epsilon_cutoff", epsilon, low=0, high=1, high_open=True,
                                    hint=" (0 keeps every token)")
        self.label = f"epsilon_cutoff({short(self.epsilon)})"

    def __call__(self, logprobs: torch.Tensor, state=None) -> torch.Tensor:
        if self.epsilon == 0.0:
            return logprobs
        return restrict(logprobs, logprobs.log_softmax(-1).exp() >= self.epsilon)


def epsilon_cutoff(epsilon: float) -> Step:
    """Keep tokens with probability >= epsilon (Hewitt et al. 2022; Hugging Face's
    EpsilonLogitsWarper), and always the most probable.

    Args:
        epsilon: in [0, 1); 0 keeps every token.

    >>> epsilon_cutoff(0.25)(torch.tensor([[0.5, 0.3, 0.2]]).log()).exp()
    tensor([[0.5000, 0.3000, 0.0000]])
    """
    return EpsilonCutoff(epsilon)


class EtaCutoff(Step):
    def __init__(self, eta: float):
        self.eta = check_number("eta_cutoff", eta, low=0, high=1, high_open=True, hint=" (0 keeps every token)")
        self.label = f"eta_cutoff({short(self.eta)})"

    def __call__(self, logprobs: torch.Tensor, state=None) -> torch.Tensor:
        if self.eta == 0.0:
            return logprobs
        logp = logprobs.log_softmax(-1)
        cutoff = torch.clamp(math.sqrt(self.eta) * torch.exp(-entropy(logp)), max=self.eta)
        return restrict(logprobs, logp.double().exp() >= cutoff)


def eta_cutoff(eta: float) -> Step:
    """Keep tokens with probability >= min(eta, sqrt(eta)·exp(−H)), H the entropy in nats
    (Hewitt et al. 2022; Hugging Face's EtaLogitsWarper), and always the most probable.

    Args:
        eta: in [0, 1); 0 keeps every token.

    >>> eta_cutoff(0.5)(torch.tensor([[0.5, 0.3, 0.2]]).log()).exp()  # cutoff min(0.5, 0.25)
    tensor([[0.5000, 0.3000, 0.0000]])
    """
    return EtaCutoff(eta)
