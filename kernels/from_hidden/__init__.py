"""Token statistics from the last hidden state [T, D] and the unembedding [V, D], the [T, V]
logits never stored: the Triton kernel, its launcher and compile configurations (``kernel.py``)
and the chunked torch reference (``reference.py``), with the choice between them."""
from __future__ import annotations

import torch

from ..common import IGNORE_INDEX, TokenStats, implementation
from .reference import fused_token_stats_reference, head_logits


def fused_token_stats(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, top_k: int = 0, *,
                      bias: torch.Tensor | None = None, logit_scale: float | None = None,
                      softcap: float | None = None, ignore_index: int = IGNORE_INDEX) -> TokenStats:
    """Statistics of ``softcap·tanh((hidden @ weight.T + bias)·logit_scale / softcap)`` without
    materialising the [T, V] logits: Triton on CUDA, the torch reference elsewhere. Targets may
    be on the CPU whatever the hidden state's device (the Triton path checks them there and
    uploads them without a stall).

    >>> h, w = torch.eye(2), torch.tensor([[3.0, 0.0], [0.0, 3.0], [0.0, 0.0]])
    >>> fused_token_stats(h, w, torch.tensor([0, 2])).rank.tolist()
    [1, 2]
    """
    kw = dict(bias=bias, logit_scale=logit_scale, softcap=softcap, ignore_index=ignore_index)
    if implementation(hidden.device) == "triton":
        from .kernel import fused_token_stats_triton

        return fused_token_stats_triton(hidden, weight, targets, top_k, **kw)
    return fused_token_stats_reference(hidden, weight, targets.to(hidden.device), top_k, **kw)


__all__ = ["fused_token_stats", "fused_token_stats_reference", "head_logits"]
