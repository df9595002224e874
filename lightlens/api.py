"""The functions at the package root: `score` and the model lookup they share."""
from __future__ import annotations

from typing import Sequence

from .result import ScoreResult


def get_model(model=None, *, device: str | None = None, dtype=None):
    """A :class:`LanguageModel` from ``None`` (the default), a name/path, or a loaded model;
    a :class:`~lightlens.remote.RemoteModel` from a server spec such as ``"vllm+http://host:8000"``.

    >>> get_model("path/to/model") is get_model("path/to/model")   # doctest: +SKIP
    True
    """
    from .loading import load
    from .model import LanguageModel
    from .remote import RemoteModel, connect, is_remote

    if isinstance(model, (LanguageModel, RemoteModel)):
        return model
    if is_remote(model):
        return connect(model)
    if model is not None and not isinstance(model, str) and not hasattr(model, "__fspath__"):
        raise TypeError(
            f"model must be a name, a path or a loaded lightlens model, got {type(model).__name__}"
        )
    return load(model, device=device, dtype=dtype)


def score(
    text: str | Sequence[str],
    *,
    model=None,
    top_k: int = 5,
    max_length: int | None = None,
    stride: int | None = None,
    bos: bool | None = None,
    batch_size: int = 8,
    progress: bool | None = None,
    device: str | None = None,
    dtype=None,
    method: str = "auto",
) -> ScoreResult | list[ScoreResult]:
    """Per-token log-probabilities of ``text`` (a str gives a ScoreResult, a list a list).

    ``model``: a hub id, a folder, a ``.gguf`` file or a loaded model; the default model when
    None; or a server: ``"lightllm+http://host:8000"`` (also ``vllm+``, ``openai+``, ``tgi+``;
    several URLs separated by commas) or a :class:`lightlens.remote.RemoteModel`. A text
    longer than ``max_length`` (default: the model's context) is scored with a sliding window
    of that length moving by ``stride`` (default: half of it): every token is scored once. ``bos``: None follows the tokenizer, True/False force a BOS token.
    ``method``: "auto", "fused" (statistics from the hidden state, no logits) or "logits".

    >>> r = lightlens.score("The cat sat on the mat.")    # doctest: +SKIP
    >>> r.perplexity, r.tokens[:3]                         # doctest: +SKIP
    >>> r.to_pandas().head()                               # doctest: +SKIP
    """
    lm = get_model(model, device=device, dtype=dtype)
    return lm.score(text, top_k=top_k, max_length=max_length, stride=stride, bos=bos,
                    batch_size=batch_size, progress=progress, method=method)
