"""`score_corpus`: a whole corpus, in length-sorted batches, resumable, on one or many workers."""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..options import check_bos, check_int, check_top_k, check_window_options
from ..text.documents import read_documents
from ..text.tokens import check_text
from ..text.windows import check_window
from ..results.corpus_result import CorpusResult
from .journal import Journal, error_row, result_row, text_sha256

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")


def score_corpus(
    source,
    *,
    model=None,
    out: str | os.PathLike = "scores.parquet",
    top_k: int = 0,
    max_length: int | None = None,
    stride: int | None = None,
    bos: bool | None = None,
    batch_size: int | None = None,
    docs_per_part: int | None = None,
    text_field: str = "text",
    id_field: str = "id",
    progress: bool | None = True,
    overwrite: bool = False,
) -> CorpusResult:
    """Score every document of ``source`` into ``out`` (Parquet, one row per document), resumably.

    Documents run longest first in batches; each finished batch is written at once, so the same
    call after a crash (or kill) scores only what is missing. A rerun must be the same job (same
    model, options and texts); a different one raises an error unless ``overwrite=True``. A
    document that fails is recorded with its error (``.failed``) and retried by the next run.
    The options and ``out`` are checked before any work; when the first documents all fail with
    the same error (a dead server, a broken model) the run stops with that error instead.
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
        batch_size: as in :func:`score` (not with a server).
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
    from ..models.scorer import get_model
    from ..remote import RemoteModel, is_remote
    from . import distributed

    options = check_options(top_k=top_k, max_length=max_length, stride=stride, bos=bos)
    batch_size = check_int("batch_size", batch_size, minimum=1, none=True)
    docs_per_part = check_int("docs_per_part", docs_per_part, minimum=1, none=True)
    journal = Journal(out)
    journal.check_destination()
    docs = read_documents(source, text_field=text_field, id_field=id_field)
    hashes = {i: text_sha256(t) for i, t in docs}
    rank, world = distributed.rank_and_world()
    device = None if isinstance(model, RemoteModel) or is_remote(model) else distributed.local_device()
    lm = None

    def plan() -> tuple[dict, list[str]]:  # on rank 0: the job, checked against what is there, and the ids to do
        nonlocal lm
        lm = get_model(model, device=device)
        if isinstance(lm, RemoteModel):
            lm.check_options(max_length=max_length, stride=stride, bos=bos)
        job = job_record(lm, options)
        journal.begin(job, hashes, overwrite=overwrite)
        done = journal.done_ids()
        return job, [i for i, t in sorted(docs, key=_longest_first) if i not in done]

    try:
        job, todo = distributed.from_rank0(plan)
        mine = todo[rank::world]
        if mine:
            lm = lm if lm is not None else get_model(model, device=device)
            texts = dict(docs)
            if not isinstance(lm, RemoteModel):
                options["batch_size"] = batch_size
            per_part = docs_per_part or (8 * lm.concurrency if isinstance(lm, RemoteModel) else 64)
            _run(lm, [(i, texts[i], hashes[i]) for i in mine], journal, options, per_part, rank, progress)
        if world > 1:
            distributed.barrier()
        distributed.from_rank0(lambda: journal.merge(job, hashes).num_rows)
    finally:
        if world > 1:
            distributed.shutdown()
    return CorpusResult.load(journal.out)


def check_options(*, top_k, max_length, stride, bos) -> dict[str, Any]:
    """The scoring options of a corpus job, checked (the same checks as every other path).

    >>> check_options(top_k=0, max_length=16, stride=8, bos=None)
    {'top_k': 0, 'max_length': 16, 'stride': 8, 'bos': None}
    >>> check_options(top_k=0, max_length=1, stride=None, bos=None)
    Traceback (most recent call last):
    ValueError: max_length must be an int >= 2, got 1
    """
    max_length, stride = check_window_options(max_length, stride)
    if max_length is not None and stride is not None:
        check_window(max_length, stride)
    return {"top_k": check_top_k(top_k), "max_length": max_length, "stride": stride, "bos": check_bos(bos)}


def job_record(lm, options: dict) -> dict[str, Any]:
    """What makes two corpus runs the same job: the model (and its weights), the tokenizer and
    the scoring options. Stored with the output; a rerun resumes only when it is equal.

    >>> job = job_record(tiny, {"top_k": 0, "max_length": None, "stride": None, "bos": None})
    >>> job["model"]["name"] == tiny.name, job["tokenizer"]["vocab_size"] == len(tiny.tokenizer)
    (True, True)
    """
    return {"format": 1, "model": model_identity(lm), "tokenizer": tokenizer_identity(getattr(lm, "tokenizer", None)),
            "options": {k: options.get(k) for k in ("top_k", "max_length", "stride", "bos")}}


def model_identity(lm) -> dict[str, Any]:
    """The model as a job record names it: its info (the device aside; a server's URLs without
    credentials) and, for a local model, a hash of its weight files (a hub model: the commit
    its files came from, else its id).

    >>> sorted(model_identity(tiny))
    ['backend', 'dtype', 'name', 'revision', 'weights']
    """
    ident = {k: v for k, v in lm.info().items() if k != "device"}
    source = getattr(lm, "source", None)
    if source is not None:
        commit = getattr(getattr(getattr(lm, "model", None), "config", None), "_commit_hash", None)
        ident["weights"] = weights_sha256(source) or commit or source
    return ident


def weights_sha256(folder) -> str | None:
    """A hash of a model folder's weight files (None when there are none, e.g. a hub id): each
    file is hashed once per process while its size and mtime hold.

    >>> len(weights_sha256(tiny_dir)), weights_sha256(tmp)
    (16, None)
    """
    from ..models.cache import sha256_file

    path = Path(folder)
    files = sorted(p for p in path.glob("*") if p.suffix in WEIGHT_SUFFIXES) if path.is_dir() else []
    if not files:
        return None
    lines = "".join(f"{p.name} {sha256_file(p)}\n" for p in files)
    return hashlib.sha256(lines.encode()).hexdigest()[:16]


def tokenizer_identity(tokenizer) -> dict[str, Any] | None:
    """The tokenizer as a job record names it: its vocabulary's size and hash (None: no tokenizer).

    >>> tokenizer_identity(tiny.tokenizer)["vocab_size"] == len(tiny.tokenizer)
    True
    """
    if tokenizer is None:
        return None
    vocab = tokenizer.get_vocab()
    digest = hashlib.sha256(json.dumps(sorted(vocab.items())).encode()).hexdigest()[:16]
    return {"vocab_size": len(vocab), "vocab_sha256": digest}


def _longest_first(doc) -> int:
    return -len(doc[1]) if isinstance(doc[1], str) else 0


def _run(lm, docs, journal: Journal, options: dict, per_part: int, rank: int, progress) -> None:
    """Score ``docs`` (``(id, text, text_sha256)``), writing a part every ``per_part`` finished
    documents (or 30 s)."""
    tokens, t0, last = 0, time.perf_counter(), time.perf_counter()
    rows: list[dict] = []
    desc = "scoring" if os.environ.get("WORLD_SIZE", "1") == "1" else f"rank {rank}"
    bar = None  # opened with the first outcome: a run stopped at once prints its error alone
    try:
        for n, r in _outcomes(lm, [t for _, t, _ in docs], options, per_part):
            if bar is None:
                bar = tqdm(total=len(docs), unit="doc", desc=desc, disable=not progress, smoothing=0.1)
            failed = isinstance(r, Exception)
            doc_id, _, sha = docs[n]
            rows.append({**(error_row(doc_id, r) if failed else result_row(doc_id, r)), "text_sha256": sha})
            tokens += 0 if failed else len(r.tokens)
            bar.update(1)
            if len(rows) >= per_part or time.perf_counter() - last > 30:
                journal.append(rows, rank=rank)
                rows, last = [], time.perf_counter()
                bar.set_postfix_str(f"{tokens / max(last - t0, 1e-9):,.0f} tok/s", refresh=False)
        if bar is not None:
            bar.set_postfix_str(f"{tokens / max(time.perf_counter() - t0, 1e-9):,.0f} tok/s")
    finally:  # also on Ctrl-C or a failure of the whole run: what finished is kept
        if rows:
            journal.append(rows, rank=rank)
        if bar is not None:
            bar.close()


def document_error(text) -> Exception | None:
    """Why ``text`` cannot be a document's text (None: it can), recorded as that document's error.

    >>> document_error("fine"), document_error(["x y", "z w"])
    (None, TypeError("a document's text must be a str, got list: join its pieces into one string"))
    """
    if not isinstance(text, str):
        return TypeError(f"a document's text must be a str, got {type(text).__name__}: join its pieces into one string")
    try:
        check_text(text)
    except (TypeError, ValueError) as err:
        return err
    return None


def _outcomes(lm, texts: list, options: dict, per_batch: int):
    """``(index, result or error)`` for every text: one that cannot be a document's fails at once,
    the others are scored; the run stops if the first scored ones all fail alike."""
    from ..remote import RemoteModel

    bad = {n: err for n, t in enumerate(texts) if (err := document_error(t)) is not None}
    yield from bad.items()
    good = [n for n in range(len(texts)) if n not in bad]
    first = max(2, lm.concurrency) if isinstance(lm, RemoteModel) else 2  # a server: its first round of requests
    results = _results(lm, [texts[n] for n in good], options, per_batch)
    for m, r in stop_if_systemic(results, min(first, len(good))):
        yield good[m], r


def stop_if_systemic(outcomes, first: int):
    """``outcomes`` (``(index, result or error)``) as they come, unless the ``first`` of them all
    failed with the same error (type and message), two or more of them, or one that a server's
    transport gave (it cannot be the document's): most likely no document's fault (a dead server,
    a broken model), so it is raised as a RuntimeError, none of them recorded.

    >>> list(stop_if_systemic(iter([(0, "ok"), (1, ValueError("bad"))]), 2))
    [(0, 'ok'), (1, ValueError('bad'))]
    >>> try:
    ...     list(stop_if_systemic(iter([(0, OSError("refused")), (1, OSError("refused"))]), 2))
    ... except RuntimeError as err:
    ...     print(err)
    stopped: the first 2 documents all failed with the same error, ... OSError: refused. Fix that and run again ...
    """
    head = [o for _, o in zip(range(first), outcomes)]
    same = head and all(isinstance(r, Exception) for _, r in head) and len({(type(r), str(r)) for _, r in head}) == 1
    if same and (len(head) > 1 or _not_the_documents(head[0][1])):
        err = head[0][1]
        what = "the first document failed" if len(head) == 1 else \
            f"the first {len(head)} documents all failed with the same error"
        raise RuntimeError(f"stopped: {what}, most likely not the documents' fault: {type(err).__name__}: "
                           f"{str(err).rstrip('.')}. Fix that and run again (what finished earlier is kept)") from err
    yield from head
    yield from outcomes


def _not_the_documents(err: Exception) -> bool:
    """A server that could not be reached or refused the request (not one that answered)."""
    from ..errors import RemoteError, RemoteResponseError

    return isinstance(err, RemoteError) and not isinstance(err, RemoteResponseError)


def _results(lm, texts: list, options: dict, per_batch: int):
    """``(index, result or error)`` for every text: a server's as they arrive, a local model's
    batch by batch (a batch that fails is retried one text at a time, lazily, to find the culprit)."""
    from ..remote import RemoteModel

    opts = {k: v for k, v in options.items() if v is not None or k == "top_k"}
    if isinstance(lm, RemoteModel):  # its options were checked before the job began
        yield from lm.score_each(texts, top_k=options["top_k"])
        return
    for start in range(0, len(texts), per_batch):
        chunk = texts[start : start + per_batch]
        try:
            out = lm.score(chunk, progress=False, **opts)
        except Exception:  # noqa: BLE001 - find which document fails, keep the others
            out = (_one(lm, t, opts) for t in chunk)
        yield from enumerate(out, start)


def _one(lm, text, opts):
    try:
        return lm.score(text, progress=False, **opts)
    except Exception as err:  # noqa: BLE001 - recorded with the document
        return err


__all__ = ["score_corpus"]
