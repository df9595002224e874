"""Token statistics from logits [T, V] in one read: the Triton kernel, its launcher and compile
configurations (``kernel.py``) and the chunked torch reference (``reference.py``), with the
choice between them."""
from __future__ import annotations

import torch

from ..common import IGNORE_INDEX, TokenStats, implementation
from .reference import token_stats_reference


def token_stats(logits: torch.Tensor, targets: torch.Tensor, top_k: int = 0, *,
                ignore_index: int = IGNORE_INDEX) -> TokenStats:
    """Statistics of logits [T, V] (any float dtype) for targets [T] int64, in float32 / int64:
    Triton on CUDA, the torch reference elsewhere. Targets may be on the CPU whatever the
    logits' device: the Triton path checks them there and uploads them without a stall.

    >>> token_stats(torch.zeros(2, 4), torch.tensor([0, -100])).rank.tolist()
    [1, 0]
    """
    if implementation(logits.device) == "triton":
        from .kernel import token_stats_triton

        return token_stats_triton(logits, targets, top_k, ignore_index=ignore_index)
    return token_stats_reference(logits, targets.to(logits.device), top_k, ignore_index=ignore_index)
