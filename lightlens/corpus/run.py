"""`score_corpus`: a whole corpus, in length-sorted batches, resumable, on one or many workers."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..text.documents import read_documents
from ..results.corpus_result import CorpusResult
from .journal import Journal, error_row, result_row


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
) -> CorpusResult:
    """Score every document of ``source`` into ``out`` (Parquet, one row per document); resumable.

    ``source``: a list of texts (or dicts), a ``.jsonl`` file (``text`` and optional ``id`` per
    line), a text file (one document), a folder of text files, a pandas Series/DataFrame or a
    ``datasets`` Dataset. ``model``: as in :func:`lightlens.score` (a server spec too).
    Documents run longest first in batches; each finished batch is written at once, so running
    the same call again after a crash (or kill) scores only what is missing. A document that
    fails is recorded with its error (``.failed``) and retried by the next run. Under
    ``torchrun``/``accelerate launch`` each rank scores its share and rank 0 merges.

    >>> c = lightlens.score_corpus("corpus.jsonl", out="scores.parquet")   # doctest: +SKIP
    >>> c.perplexity, c.failed                                             # doctest: +SKIP
    """
    from ..models import get_model
    from ..remote import RemoteModel, is_remote
    from . import distributed

    docs = read_documents(source, text_field=text_field, id_field=id_field)
    journal = Journal(out)
    rank, world = distributed.rank_and_world()
    done = journal.done_ids()
    todo = sorted((d for d in docs if d[0] not in done), key=lambda d: -len(d[1]) if isinstance(d[1], str) else 0)
    mine = todo[rank::world]
    if mine:
        remote = isinstance(model, RemoteModel) or is_remote(model)
        lm = get_model(model, device=None if remote else distributed.local_device())
        options = {"top_k": top_k, "max_length": max_length, "stride": stride, "bos": bos}
        if not isinstance(lm, RemoteModel):
            options["batch_size"] = batch_size
        per_part = docs_per_part or (8 * lm.concurrency if isinstance(lm, RemoteModel) else 64)
        _run(lm, mine, journal, options, per_part, rank, progress)
    if world > 1:
        distributed.barrier()
    if rank == 0:
        table = journal.merge([d[0] for d in docs])
    if world > 1:
        distributed.barrier()
        distributed.shutdown()
    return CorpusResult.load(journal.out) if rank != 0 else CorpusResult(table.to_pandas(), path=journal.out)


def _run(lm, docs, journal: Journal, options: dict, per_part: int, rank: int, progress) -> None:
    """Score ``docs``, writing a part every ``per_part`` finished documents (or 30 s)."""
    tokens, t0, last = 0, time.perf_counter(), time.perf_counter()
    rows: list[dict] = []
    desc = "scoring" if os.environ.get("WORLD_SIZE", "1") == "1" else f"rank {rank}"
    with tqdm(total=len(docs), unit="doc", desc=desc, disable=not progress, smoothing=0.1) as bar:
        try:
            for i, r in _results(lm, [t for _, t in docs], options, per_part):
                failed = isinstance(r, Exception)
                rows.append(error_row(docs[i][0], r) if failed else result_row(docs[i][0], r))
                tokens += 0 if failed else len(r.tokens)
                bar.update(1)
                if len(rows) >= per_part or time.perf_counter() - last > 30:
                    journal.append(rows, rank=rank)
                    rows, last = [], time.perf_counter()
                    bar.set_postfix_str(f"{tokens / max(last - t0, 1e-9):,.0f} tok/s", refresh=False)
        finally:  # also on Ctrl-C: what finished is kept
            if rows:
                journal.append(rows, rank=rank)
        bar.set_postfix_str(f"{tokens / max(time.perf_counter() - t0, 1e-9):,.0f} tok/s")


def _results(lm, texts: list, options: dict, per_batch: int):
    """``(index, result or error)`` for every text: a server's as they arrive, a local model's
    batch by batch (a batch that fails is retried one text at a time to find the culprit)."""
    from ..remote import RemoteModel

    opts = {k: v for k, v in options.items() if v is not None or k == "top_k"}
    if isinstance(lm, RemoteModel):
        if set(opts) - {"top_k"}:
            raise ValueError("max_length, stride and bos are not available with a server")
        yield from lm.score_each(texts, top_k=options["top_k"])
        return
    for start in range(0, len(texts), per_batch):
        chunk = texts[start : start + per_batch]
        try:
            out = lm.score(chunk, progress=False, **opts)
        except Exception:  # noqa: BLE001 - find which document fails, keep the others
            out = [_one(lm, t, opts) for t in chunk]
        yield from enumerate(out, start)


def _one(lm, text, opts):
    try:
        return lm.score(text, progress=False, **opts)
    except Exception as err:  # noqa: BLE001 - recorded with the document
        return err


__all__ = ["score_corpus"]
