"""lightlens: how surprised was a causal language model by each token of a text?

>>> r = lightlens.score("Hello world! Hello again, world.", model=tiny)
>>> r.tokens[:3], r.perplexity > 1
(['Hello', ' world', '!'], True)

Importing lightlens does not import torch: results load and print without it. The entry
points live in :mod:`lightlens.api`; this module only re-exports them.
"""
from ._version import __version__
from .api import compare, divergence, explore, generate, load, perplexity, score, score_corpus
from .errors import LightlensError, ModelNotFoundError, NoScoredTokensWarning, RemoteError, RemoteResponseError
from .results import CorpusResult, CorpusScores, Divergence, GeneratedToken, Generation, ScoreResult


def __getattr__(name: str):
    if name in ("remote", "sampling", "testing"):  # subpackages, imported when first asked for
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'lightlens' has no attribute {name!r}")


__all__ = [
    "CorpusResult",
    "CorpusScores",
    "Divergence",
    "GeneratedToken",
    "Generation",
    "LightlensError",
    "ModelNotFoundError",
    "NoScoredTokensWarning",
    "RemoteError",
    "RemoteResponseError",
    "ScoreResult",
    "__version__",
    "compare",
    "divergence",
    "explore",
    "generate",
    "load",
    "perplexity",
    "remote",
    "sampling",
    "score",
    "score_corpus",
    "testing",
]
