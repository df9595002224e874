"""Which token-statistics implementation runs: one place that picks it.

Path (``method``): ``"fused"`` computes the statistics from the last hidden state and the LM
head (the [T, V] logits never exist), ``"logits"`` from the model's logits; ``"auto"`` takes
the fused path whenever the model's head was verified (see :mod:`lightlens.head`).

Implementation: Triton kernels on CUDA, the chunked torch reference elsewhere. The
environment variable ``LIGHTLENS_KERNELS=torch|triton`` forces one (``triton`` on CPU needs
``TRITON_INTERPRET=1`` and is for testing only: it is slow).

Both entry points return :class:`lightlens.kernels.TokenStats` in float32 / int64.
"""
from __future__ import annotations

import importlib.util
import os

import torch

from .head import Head
from .kernels import TokenStats, fused_token_stats_reference, token_stats_reference

METHODS = ("auto", "fused", "logits")


def check_method(method: str) -> str:
    """Validate the ``method`` option."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    return method


def implementation(device: torch.device) -> str:
    """``"triton"`` or ``"torch"`` for tensors on ``device``.

    >>> implementation(torch.device("cpu"))                # doctest: +SKIP
    'torch'
    """
    forced = os.environ.get("LIGHTLENS_KERNELS", "").strip().lower()
    if forced in ("torch", "triton"):
        return forced
    if forced:
        raise ValueError(f"LIGHTLENS_KERNELS must be 'torch' or 'triton', got {forced!r}")
    cuda = device.type == "cuda"
    return "triton" if cuda and importlib.util.find_spec("triton") is not None else "torch"


def stats_from_hidden(head: Head, hidden: torch.Tensor, targets: torch.Tensor, top_k: int) -> TokenStats:
    """Statistics of ``head(hidden)`` [N, D] → [N, V] without materialising all logits."""
    kw = dict(bias=head.bias, logit_scale=head.logit_scale, softcap=head.softcap)
    if implementation(hidden.device) == "triton":
        from .kernels.triton_fused_token_stats import fused_token_stats

        return fused_token_stats(hidden, head.weight, targets, top_k, **kw)
    return fused_token_stats_reference(hidden, head.weight, targets, top_k, **kw)


def stats_from_logits(logits: torch.Tensor, targets: torch.Tensor, top_k: int) -> TokenStats:
    """Statistics of logits [N, V], read once (Triton) or in chunks (torch)."""
    if implementation(logits.device) == "triton":
        from .kernels.triton_token_stats import token_stats

        return token_stats(logits, targets, top_k)
    return token_stats_reference(logits, targets, top_k)
