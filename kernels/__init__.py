"""Token-statistics ops (installed as ``lightlens.kernels``): Triton on CUDA, torch elsewhere.

``token_stats`` reads logits [T, V] once; ``fused_token_stats`` computes the same statistics
from the last hidden state [T, D] and the unembedding [V, D] without the T×V logits. Each op
keeps its Triton kernel, launcher and compile configurations in one file
(``token_stats_kernel.py``, ``fused_token_stats_kernel.py``); :mod:`.reference` holds the
chunked pure-torch versions, used on CPU and as the test oracle. This module imports only
torch (triton when a kernel is launched). ``LIGHTLENS_KERNELS=torch|triton`` forces one
implementation (``triton`` on CPU needs ``TRITON_INTERPRET=1`` and is slow: tests only).

>>> logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 0.0, 5.0]])
>>> s = token_stats(logits, torch.tensor([1, 2]), top_k=1)
>>> [round(x, 4) for x in s.logprob.tolist()], s.rank.tolist(), s.top_k_ids.tolist()
([-1.4076, -0.0134], [2, 1], [[0], [2]])
"""
from __future__ import annotations

import importlib.util
import os

import torch

from .reference import (
    IGNORE_INDEX,
    TokenStats,
    fused_token_stats_reference,
    head_logits,
    token_stats_reference,
)


def implementation(device: torch.device) -> str:
    """``"triton"`` or ``"torch"``: which implementation runs for tensors on ``device``.

    >>> implementation(torch.device("cpu"))
    'torch'
    """
    forced = os.environ.get("LIGHTLENS_KERNELS", "").strip().lower()
    if forced in ("torch", "triton"):
        return forced
    if forced:
        raise ValueError(f"LIGHTLENS_KERNELS must be 'torch' or 'triton', got {forced!r}")
    cuda = device.type == "cuda"
    return "triton" if cuda and importlib.util.find_spec("triton") is not None else "torch"


def token_stats(logits: torch.Tensor, targets: torch.Tensor, top_k: int = 0, *,
                ignore_index: int = IGNORE_INDEX) -> TokenStats:
    """Statistics of logits [T, V] (any float dtype) for targets [T] int64, in float32 / int64.

    >>> token_stats(torch.zeros(2, 4), torch.tensor([0, -100])).rank.tolist()
    [1, 0]
    """
    if implementation(logits.device) == "triton":
        from .token_stats_kernel import token_stats_triton

        return token_stats_triton(logits, targets, top_k, ignore_index=ignore_index)
    return token_stats_reference(logits, targets, top_k, ignore_index=ignore_index)


def fused_token_stats(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, top_k: int = 0, *,
                      bias: torch.Tensor | None = None, logit_scale: float | None = None,
                      softcap: float | None = None, ignore_index: int = IGNORE_INDEX) -> TokenStats:
    """Statistics of ``softcap·tanh((hidden @ weight.T + bias)·logit_scale / softcap)`` without
    materialising the [T, V] logits; hidden [T, D], weight [V, D].

    >>> h, w = torch.eye(2), torch.tensor([[3.0, 0.0], [0.0, 3.0], [0.0, 0.0]])
    >>> fused_token_stats(h, w, torch.tensor([0, 2])).rank.tolist()
    [1, 2]
    """
    kw = dict(bias=bias, logit_scale=logit_scale, softcap=softcap, ignore_index=ignore_index)
    if implementation(hidden.device) == "triton":
        from .fused_token_stats_kernel import fused_token_stats_triton

        return fused_token_stats_triton(hidden, weight, targets, top_k, **kw)
    return fused_token_stats_reference(hidden, weight, targets, top_k, **kw)


__all__ = [
    "IGNORE_INDEX",
    "TokenStats",
    "fused_token_stats",
    "fused_token_stats_reference",
    "head_logits",
    "implementation",
    "token_stats",
    "token_stats_reference",
]
