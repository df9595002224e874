"""Token-statistics ops (installed as ``lightlens.kernels``).

``token_stats`` reads logits once; ``fused_token_stats`` computes the same statistics
from the last hidden state and the unembedding without the T×V logits. Each has a
pure-torch reference in :mod:`lightlens.kernels.reference`, used on CPU and as the
test oracle.
"""
from .reference import (
    IGNORE_INDEX,
    TokenStats,
    fused_token_stats_reference,
    head_logits,
    token_stats_reference,
)

__all__ = [
    "IGNORE_INDEX",
    "TokenStats",
    "fused_token_stats",
    "fused_token_stats_reference",
    "head_logits",
    "token_stats",
    "token_stats_reference",
]


def __getattr__(name):  # the Triton kernels import triton only when asked for
    if name == "token_stats":
        from .triton_token_stats import token_stats

        return token_stats
    if name == "fused_token_stats":
        from .triton_fused_token_stats import fused_token_stats

        return fused_token_stats
    raise AttributeError(name)
