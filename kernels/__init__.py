"""Token-statistics ops (installed as ``lightlens.kernels``): Triton on CUDA, torch elsewhere.

One folder per op, holding its Triton kernel, launcher and compile configurations
(``kernel.py``), its chunked pure-torch reference (``reference.py``, the CPU path and the test
oracle) and the choice between them (``__init__.py``):

- ``from_logits``: ``token_stats(logits [T, V], targets)`` in one read of the logits;
- ``from_hidden``: ``fused_token_stats(hidden [T, D], weight [V, D], targets)``, the same
  statistics without the T×V logits.

``common.py`` holds what both share in torch (``TokenStats``, targets, which implementation
runs), ``online.py`` the references' tile-by-tile statistics, ``_triton_utils.py`` the shared
``@triton.jit`` pieces, ``split_v.py`` the kernel that merges vocabulary splits, ``aot.py`` the
ahead-of-time compile of every configuration and its resource report. Importing this package imports only torch;
``LIGHTLENS_KERNELS=torch|triton`` forces an implementation (``triton`` on CPU needs
``TRITON_INTERPRET=1`` and is slow: tests only).

>>> logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 0.0, 5.0]])
>>> s = token_stats(logits, torch.tensor([1, 2]), top_k=1)
>>> [round(x, 4) for x in s.logprob.tolist()], s.rank.tolist(), s.top_k_ids.tolist()
([-1.4076, -0.0134], [2, 1], [[0], [2]])
"""
from .common import IGNORE_INDEX, TokenStats, implementation
from .from_hidden import fused_token_stats, fused_token_stats_reference, head_logits
from .from_logits import token_stats, token_stats_reference
from .divergence import DivergenceStats, divergence_stats, divergence_stats_reference  # noqa: F401  (two distributions compared)

__all__ = [
    "DivergenceStats",
    "IGNORE_INDEX",
    "TokenStats",
    "divergence_stats",
    "divergence_stats_reference",
    "fused_token_stats",
    "fused_token_stats_reference",
    "head_logits",
    "implementation",
    "token_stats",
    "token_stats_reference",
]
