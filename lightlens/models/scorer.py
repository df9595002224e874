"""`get_model`: whatever a user passed as ``model=`` turned into a scorer (local or remote)."""
from __future__ import annotations

from ..remote import RemoteModel, connect, is_remote
from .loading import load
from .local import LanguageModel


def get_model(model=None, *, device: str | None = None, dtype=None):
    """A scorer from what a user passed as ``model=``.

    ``None`` gives the default model, a name or path a loaded :class:`LanguageModel`, a server
    spec such as ``"vllm+http://host:8000"`` a :class:`~lightlens.remote.RemoteModel`; a loaded
    model of either kind is returned as it is.

    >>> get_model(tiny) is tiny
    True
    >>> get_model(str(tiny_dir)) is get_model(str(tiny_dir))   # loaded once per process
    True
    """
    if isinstance(model, (LanguageModel, RemoteModel)):
        return model
    if is_remote(model):
        return connect(model)
    if model is not None and not isinstance(model, str) and not hasattr(model, "__fspath__"):
        raise TypeError(
            f"model must be a name, a path or a loaded lightlens model, got {type(model).__name__}"
        )
    return load(model, device=device, dtype=dtype)
