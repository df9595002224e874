"""lightlens: how surprised was a causal language model by each token of a text?

>>> import lightlens
>>> r = lightlens.score("The cat sat on the mat.")        # doctest: +SKIP
>>> r.perplexity                                           # doctest: +SKIP

Importing lightlens does not import torch: results load and print without it.
"""
from ._version import __version__
from .api import score
from .corpus import CorpusResult, perplexity
from .errors import LightlensError, ModelNotFoundError, NoScoredTokensWarning
from .result import ScoreResult


def load(name_or_path=None, **options):
    """Load a model (cached in-process); see :func:`lightlens.loading.load`.

    >>> lm = lightlens.load("path/to/folder-or.gguf")      # doctest: +SKIP
    """
    from .loading import load as _load

    return _load(name_or_path, **options)


__all__ = [
    "CorpusResult",
    "LightlensError",
    "ModelNotFoundError",
    "NoScoredTokensWarning",
    "ScoreResult",
    "__version__",
    "load",
    "perplexity",
    "score",
]
