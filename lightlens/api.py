"""Every entry point of lightlens, with its full signature: score, load, perplexity,
score_corpus, compare, divergence, generate and explore. ``lightlens/__init__.py`` re-exports them.

``load`` and ``score_corpus`` are their layers' own functions, re-exported; the others import
the layer they need when called, so ``import lightlens`` stays light (no torch until a model
is needed).
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Sequence

from .corpus.run import score_corpus
from .models.loading import load

if TYPE_CHECKING:  # pragma: no cover - for signatures only
    from .results.corpus_result import CorpusResult
    from .results.divergence import Divergence
    from .results.generation import Generation
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
        text: one text (returns a :class:`ScoreResult`) or a list of texts (returns a list); or a
            result of a local model (e.g. a :class:`Generation`), scored as its exact token ids.
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
        batch_size: at most this many windows per forward pass (default: no limit;
            a batch holds at most 2,048 padded tokens on CPU and 32,768 on GPU).
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
    from .models.scorer import get_model

    lm = get_model(model, device=device, dtype=dtype)
    return lm.score(text, top_k=top_k, max_length=max_length, stride=stride, bos=bos,
                    batch_size=batch_size, progress=progress, method=method)


def perplexity(
    source,
    *,
    model=None,
    max_length: int | None = None,
    stride: int | None = None,
    bos: bool | None = None,
    batch_size: int | None = None,
    progress: bool | None = True,
    max_tokens: int | None = None,
    text_field: str = "text",
    id_field: str = "id",
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
        batch_size: as in :func:`score` (not with a server).
        progress: show a progress bar.
        max_tokens: keep only each document's first that many tokens (quick, comparable runs).
        text_field: the field or column holding the text (JSONL, dicts, DataFrames, datasets).
        id_field: the field or column holding the document id (default: the position).

    Returns:
        A :class:`CorpusResult` holding every document's :class:`ScoreResult` (``documents``).

    Example:
        >>> c = lightlens.perplexity(["The cat sat.", "A dog ran far."], model=tiny, progress=False)
        >>> c.num_documents, c.num_scored == sum(d.num_scored for d in c.documents)
        (2, True)
    """
    from .models.scorer import get_model
    from .models.perplexity import corpus_perplexity

    return corpus_perplexity(get_model(model), source, max_length=max_length, stride=stride, bos=bos,
                             batch_size=batch_size, progress=progress, max_tokens=max_tokens,
                             text_field=text_field, id_field=id_field)


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


def divergence(
    texts: str | Sequence[str],
    *,
    base=None,
    model=None,
    top_k: int = 5,
    max_length: int | None = None,
    stride: int | None = None,
    bos: bool | None = None,
    progress: bool | None = None,
    device: str | None = None,
    method: str = "auto",
) -> "Divergence":
    """How much ``model`` changes what ``base`` predicts, token by token: KL(P_base‖P_model),
    reverse KL, Jensen-Shannon, both logprobs, Δp, both entropies, top-1 agreement, top-k overlap.

    Both models run window by window in this process on the same token ids (they need the same
    tokenizer: for different ones use :func:`compare`, per character). Exact: float32 from both
    full distributions, memory O(window) for any text length. ``result.stats()`` gives llama.cpp's
    ``--kl-divergence`` aggregates, ``result.report()`` its table.

    Args:
        texts: one text or a list of texts (every token of every text, in order, in one result).
        base: the reference model P (as ``model`` in :func:`score`: a loaded model, a name, a
            folder, a ``.gguf``), or a ``.safetensors`` file written by
            ``lm.save_distributions(text, path)`` (then ``texts`` is that one text).
        model: the model Q compared with it (default: the default model), e.g. the same weights
            loaded in another dtype: ``lightlens.load(m, dtype=torch.bfloat16)``.
        top_k: alternatives kept per token and model (for the heatmap and ``top_k_overlap``).
        max_length: window length in tokens (default: the shorter context of the two).
        stride: how far the window moves (default: half of ``max_length``).
        bos: None follows the tokenizer; True/False force a BOS token before each text.
        progress: show a progress bar (default: when there is more than one batch).
        device: where models named by a string are loaded (default: CUDA when present).
        method: "auto", "fused" (logits from the last hidden state through the head, a block of
            rows at a time) or "logits" (from the models' own logits).

    Returns:
        A :class:`lightlens.Divergence` (float32 numpy arrays over every token; NaN where a token
        has no context).

    Example:
        >>> d = lightlens.divergence("Hello world! Hello again, world.", base=tiny, model=tiny)
        >>> float(np.nanmax(d.kl)), d.stats()["same_top1"], len(d) == len(d.tokens)
        (0.0, 100.0, True)
        >>> lightlens.divergence("Hello world", base=tiny, model=tiny_llama)
        Traceback (most recent call last):
        ValueError: ... use lightlens.compare(...), which compares per character (bits per byte)
    """
    from pathlib import Path

    from .engine.divergence import DistributionFile, divergence_texts
    from .engine.scoring import check_method
    from .models.scorer import get_model
    from .text.tokens import check_texts

    check_method(method)
    texts = [texts] if isinstance(texts, str) else check_texts(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str) or not t:
            raise ValueError(f"text {i} is empty: give every text at least one character")
    if base is None:
        raise ValueError("give base= (the reference model, or a file from lm.save_distributions) "
                         "and model= (the model compared with it)")
    if isinstance(base, (str, Path)) and str(base).endswith(".safetensors"):
        p = DistributionFile(base)
    else:
        p = get_model(base, device=device)
    q = get_model(model, device=device)
    from .remote import RemoteModel

    for name, lm in (("base", p), ("model", q)):
        if isinstance(lm, RemoteModel):
            raise ValueError(f"{name} must be a model that runs in this process (not a server): "
                             "divergence needs full distributions, which servers do not return")
    return divergence_texts(p, q, texts, top_k=top_k, max_length=max_length, stride=stride, bos=bos,
                            progress=progress, method=method)


def generate(
    prompt: str | Sequence[str],
    *,
    model=None,
    max_new_tokens: int = 64,
    sampler=None,
    seed: int | None = None,
    stop: str | Sequence[str] | None = None,
    top_k: int = 5,
    n: int = 1,
    bos: bool | None = None,
    use_cache: bool = True,
    batch_size: int = 32,
    progress: bool | None = None,
    device: str | None = None,
    dtype=None,
) -> "Generation | list[Generation]":
    """Generate a completion and see, token by token, what the model believed and what the
    sampler did with it.

    The result is a :class:`Generation`: a :class:`ScoreResult` over prompt + completion (the
    prompt scored as :func:`score` would, the completion's ``token_ids`` exactly as generated and
    ``logprobs`` what scoring those ids gives), plus each generated token's logprob under the
    sampler's final distribution (``sampled_logprobs``), that distribution's support size
    (``kept``) and entropy, and the ``finish_reason``.

    Args:
        prompt: one prompt, or a list of prompts (run in batches, with a KV cache).
        model: as in :func:`score` (a server model gives raw logprobs only, greedy).
        max_new_tokens: at most this many tokens per completion (0: score the prompt only).
        sampler: a :class:`lightlens.sampling.Sampler` (e.g.
            ``Sampler.from_options(temperature=0.8, top_p=0.9)``), a step such as
            ``sampling.top_p(0.9)``, or any function ``f(logprobs, state) -> logprobs``;
            None means greedy (the most probable token every step).
        seed: the random seed (sample ``j`` of a prompt uses ``seed + j``; default: a fresh one,
            recorded in ``Generation.seed``). The same seed gives the same text, alone or batched.
        stop: a string or strings that end a completion when they appear (the text keeps them).
        top_k: raw alternatives kept per token.
        n: completions per prompt.
        bos: None follows the tokenizer; True/False force a BOS token before the prompt.
        use_cache: keep keys and values between steps (False recomputes every step: a check).
        batch_size: sequences per batch.
        progress: show a progress bar (default: when there is more than one batch).
        device: as in :func:`score`.
        dtype: as in :func:`score`.

    Returns:
        A :class:`Generation` for one prompt with ``n=1``, else a list (prompt-major).

    Example:
        >>> g = lightlens.generate("Hello", model=tiny, max_new_tokens=5)
        >>> g.num_generated, g.finish_reason, g.sampler
        (5, 'length', 'greedy')
        >>> r = tiny.score(g.text)  # what you generate is what you score
        >>> bool(np.allclose(r.logprobs[1:], g.logprobs[1:], atol=1e-4)) if r.tokens == g.tokens else True
        True
    """
    from .models.scorer import get_model

    lm = get_model(model, device=device, dtype=dtype)
    return lm.generate(prompt, max_new_tokens=max_new_tokens, sampler=sampler, seed=seed, stop=stop,
                       top_k=top_k, n=n, bos=bos, use_cache=use_cache, batch_size=batch_size,
                       progress=progress)


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


__all__ = ["compare", "divergence", "explore", "generate", "load", "perplexity", "score", "score_corpus"]
