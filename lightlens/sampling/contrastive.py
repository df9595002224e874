"""Contrastive decoding (Li et al. 2023): prefer what a large "expert" model believes and a small
"amateur" does not, among the tokens the expert finds plausible.

The expert's log-probabilities are the step's input; the amateur's come from
``state.forward(amateur)``, which the generation loop provides (the amateur run on the same
contexts). The two must share a vocabulary.

>>> import torch
>>> from lightlens.sampling.state import SamplerState
>>> amateur_lp = torch.tensor([[0.8, 0.1, 0.1]]).log()
>>> state = SamplerState.from_lists([[0]], vocab_size=3, forward=lambda model: amateur_lp)
>>> contrastive("amateur", plausibility=0.3)(torch.tensor([[0.6, 0.3, 0.1]]).log(), state).softmax(-1)
tensor([[0.2000, 0.8000, 0.0000]])
"""
from __future__ import annotations

import math

import torch

from .checks import check_number, short
from .step import NEG_INF, Step, needs_state

AMATEUR_FLOOR = -1e4  # an amateur log-probability of -inf counts as e^-10000 (a finite score)


class Contrastive(Step):
    def __init__(self, amateur, *, alpha: float = 1.0, plausibility: float = 0.1):
        self.amateur = amateur
        self.alpha = check_number("contrastive alpha", alpha, low=0)
        self.plausibility = check_number("contrastive plausibility", plausibility, low=0, high=1)
        size = getattr(amateur, "vocab_size", None)
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise ValueError(f"the amateur model's vocab_size must be a positive int, got {size!r}")
        self.vocab_size = size
        self.name = getattr(amateur, "name", None) or (amateur if isinstance(amateur, str) else type(amateur).__name__)
        self.label = f"contrastive({self.name!r}, alpha={short(self.alpha)}, plausibility={short(self.plausibility)})"

    def _check_vocabulary(self, amateur_size: int, expert_size: int) -> None:
        if amateur_size != expert_size:
            raise ValueError(f"contrastive decoding: the amateur and the expert must share a vocabulary, but the "
                             f"amateur {self.name!r} has {amateur_size} token ids and the expert {expert_size}; "
                             f"pick an amateur from the expert's model family (same tokenizer)")

    def __call__(self, logprobs: torch.Tensor, state=None) -> torch.Tensor:
        needs_state(self, state)
        expert_size = logprobs.shape[-1]
        if self.vocab_size is not None:  # before running the amateur at all
            self._check_vocabulary(self.vocab_size, state.vocab_size)
        if state.forward is None:
            raise ValueError(f"{self!r} needs state.forward (the generation loop runs the amateur through it)")
        amateur = state.forward(self.amateur)
        if not isinstance(amateur, torch.Tensor) or amateur.dim() != 2 or amateur.shape[0] != logprobs.shape[0]:
            raise ValueError(f"state.forward(amateur) must return log-probabilities [B, V] with B = "
                             f"{logprobs.shape[0]}, got {getattr(amateur, 'shape', type(amateur))}")
        self._check_vocabulary(amateur.shape[-1], expert_size)
        logp = logprobs.log_softmax(-1)
        cutoff = math.log(self.plausibility) if self.plausibility else NEG_INF
        plausible = logp >= logp.amax(-1, keepdim=True) + cutoff
        score = logp - self.alpha * amateur.to(logp).clamp(min=AMATEUR_FLOOR)
        return score.masked_fill(~plausible, NEG_INF)


def contrastive(amateur, *, alpha: float = 1.0, plausibility: float = 0.1) -> Step:
    """Contrastive decoding: keep the tokens v with p_expert(v) >= plausibility · max p_expert
    (the plausibility cutoff of Li et al. 2023), scored log p_expert(v) − alpha · log p_amateur(v).
    The expert's log-probabilities are this step's input; the amateur's are
    ``state.forward(amateur)``, clamped below at −1e4 (a token the amateur rules out scores high,
    not +inf). The expert's top token always passes the cutoff.

    A vocabulary mismatch is a ValueError: checked against ``amateur.vocab_size`` (when the model
    has one) before the amateur is run, and against the width of what it returns.

    Args:
        amateur: the amateur model (anything ``state.forward`` accepts; a lightlens model's
            ``vocab_size`` and ``name`` are used in checks and messages).
        alpha: weight of the amateur, >= 0 (0: plain sampling within the plausible set).
        plausibility: the cutoff, in [0, 1] (0 keeps every token).

    >>> from types import SimpleNamespace
    >>> step = contrastive(SimpleNamespace(vocab_size=5, name="tiny"))
    >>> step
    contrastive('tiny', alpha=1, plausibility=0.1)
    >>> from lightlens.sampling.state import SamplerState
    >>> step(torch.zeros(1, 3), SamplerState.from_lists([[0]], vocab_size=3))
    Traceback (most recent call last):
    ValueError: contrastive decoding: the amateur and the expert must share a vocabulary, but the amateur 'tiny' has 5 token ids and the expert 3; pick an amateur from the expert's model family (same tokenizer)
    """
    return Contrastive(amateur, alpha=alpha, plausibility=plausibility)
