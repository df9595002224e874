"""Two predictive distributions over one vocabulary, compared row by row: KL both ways,
Jensen-Shannon, entropies, target logprobs and ranks, top-1 (and top-k) of both. The Triton
kernel, its launcher and compile configuration (``kernel.py``) and the chunked torch reference
(``reference.py``: the CPU path and the kernel's twin), with the choice between them."""
from __future__ import annotations

import torch

from ..common import IGNORE_INDEX, implementation
from .reference import DivergenceStats, divergence_stats_reference


def divergence_stats(logits_p: torch.Tensor, logits_q: torch.Tensor, targets: torch.Tensor,
                     top_k: int = 0, *, ignore_index: int = IGNORE_INDEX) -> DivergenceStats:
    """Compare the rows of ``logits_p`` (the base P) and ``logits_q`` [T, V] (any float dtype) in
    float32: Triton on CUDA, the torch reference elsewhere.

    >>> s = divergence_stats(torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0]]), torch.tensor([0]))
    >>> s.kl.tolist(), s.top1_p.tolist() == s.top1_q.tolist()
    ([0.0], True)
    """
    if implementation(logits_p.device) == "triton":
        from .kernel import divergence_stats_triton

        return divergence_stats_triton(logits_p, logits_q, targets, top_k, ignore_index=ignore_index)
    return divergence_stats_reference(logits_p, logits_q, targets, top_k, ignore_index=ignore_index)


__all__ = ["DivergenceStats", "divergence_stats", "divergence_stats_reference"]
