"""lightlens: how surprised was a causal language model by each token of a text?

>>> import lightlens
>>> r = lightlens.score("The cat sat on the mat.")        # doctest: +SKIP
>>> r.perplexity                                           # doctest: +SKIP

Importing lightlens does not import torch: results load and print without it.
"""
from ._version import __version__
from .api import score
from .corpus import CorpusResult, perplexity
from .corpus_run import CorpusScores, score_corpus
from .errors import LightlensError, ModelNotFoundError, NoScoredTokensWarning, RemoteError, RemoteResponseError
from .result import ScoreResult


def __getattr__(name: str):
    if name == "remote":  # lightlens.remote without importing it (and tqdm) at import time
        import importlib

        return importlib.import_module(".remote", __name__)
    raise AttributeError(f"module 'lightlens' has no attribute {name!r}")


def explore(text=None, model=None, **options):
    """The interactive explorer (ipywidgets); see :func:`lightlens.viz.explorer.explore`.

    >>> lightlens.explore("The cat sat on the mat.")       # doctest: +SKIP
    """
    from .viz.explorer import explore as _explore

    return _explore(text, model, **options)


def compare(a, b, *, metric="surprisal"):
    """Two results of one text side by side with their difference; renders in a notebook.

    >>> lightlens.compare(lightlens.score(t, model=m1), lightlens.score(t, model=m2))  # doctest: +SKIP
    """
    from .viz.compare import Comparison

    return Comparison(a, b, metric=metric)


def load(name_or_path=None, **options):
    """Load a model (cached in-process); see :func:`lightlens.loading.load`.

    >>> lm = lightlens.load("path/to/folder-or.gguf")      # doctest: +SKIP
    """
    from .loading import load as _load

    return _load(name_or_path, **options)


__all__ = [
    "CorpusResult",
    "CorpusScores",
    "LightlensError",
    "ModelNotFoundError",
    "NoScoredTokensWarning",
    "RemoteError",
    "RemoteResponseError",
    "ScoreResult",
    "__version__",
    "compare",
    "explore",
    "load",
    "perplexity",
    "remote",
    "score",
    "score_corpus",
]
