"""Errors and warnings that say what happened and what to do.

Secrets (API keys) registered with :func:`add_secret` never appear in a lightlens error:
every message is passed through :func:`redact_secrets` when the error is made, so neither
``str``, ``repr``, a traceback nor an error column stored on disk can show them.

>>> add_secret("sk-test-0000")
>>> RemoteError("the server said: Bearer sk-test-0000 is invalid")
RemoteError('the server said: Bearer *** is invalid')
"""
from __future__ import annotations

_SECRETS: set[str] = set()


MIN_SECRET = 8  # shorter "keys" (vLLM's placeholder "EMPTY") are scrubbed only after "Bearer "


def add_secret(secret: str) -> None:
    """Remember ``secret`` so that it is scrubbed from every lightlens error from now on; a
    short one only where it follows ``Bearer `` (replacing every "e" of a message is no help)."""
    if secret:
        _SECRETS.add(secret if len(secret) >= MIN_SECRET else f"Bearer {secret}")


def redact_secrets(text: str) -> str:
    """``text`` with every registered secret replaced by ``***`` (longest first).

    >>> add_secret("hunter2-key")
    >>> redact_secrets("key=hunter2-key")
    'key=***'
    """
    for secret in sorted(_SECRETS, key=len, reverse=True):
        text = text.replace(secret, "Bearer ***" if secret.startswith("Bearer ") else "***")
    return text


class LightlensError(Exception):
    """Base class of lightlens's own errors; registered secrets are scrubbed from the message."""

    def __init__(self, *args):
        super().__init__(*(redact_secrets(a) if isinstance(a, str) else a for a in args))


class ModelNotFoundError(LightlensError, LookupError):
    """No model could be loaded from what was given; the message lists what was tried."""


class NoScoredTokensWarning(UserWarning):
    """A text had no token with context to score (one token and no BOS): perplexity is NaN."""


class RemoteError(LightlensError):
    """A server could not be reached or refused the request; the message says which and why."""


class RemoteResponseError(RemoteError, ValueError):
    """A server answered, but the answer cannot be a correct score of the text sent."""
