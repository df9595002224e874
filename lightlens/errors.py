"""Errors and warnings that say what happened and what to do."""
from __future__ import annotations


class LightlensError(Exception):
    """Base class of lightlens's own errors."""


class ModelNotFoundError(LightlensError, LookupError):
    """No model could be loaded from what was given; the message lists what was tried."""


class NoScoredTokensWarning(UserWarning):
    """A text had no token with context to score (one token and no BOS): perplexity is NaN."""


class RemoteError(LightlensError):
    """A server could not be reached or refused the request; the message says which and why."""


class RemoteResponseError(RemoteError, ValueError):
    """A server answered, but the answer cannot be a correct score of the text sent."""
