"""Results written as they finish, so a killed run resumes without losing or repeating work.

Each finished batch of documents becomes one Parquet part in ``<out>.parts/`` (written to a
temporary name, then renamed, so a part is whole or absent). A new run skips every id
already scored without error; the merge keeps one row per id (a success over an error, the
newest otherwise), writes ``out`` the same way, and only then removes the parts.
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from ..results.corpus_result import document_row

PART_GLOB = "part-*.parquet"


def schema():
    """The Parquet schema of one document's row.

    >>> schema().names[:3]
    ['id', 'error', 'num_tokens']
    """
    import pyarrow as pa

    return pa.schema([
        ("id", pa.string()), ("error", pa.string()), ("num_tokens", pa.int64()), ("num_scored", pa.int64()),
        ("total_logprob", pa.float64()), ("num_bytes", pa.int64()), ("num_words", pa.int64()),
        ("nll", pa.float64()), ("perplexity", pa.float64()), ("bits_per_byte", pa.float64()),
        ("token_ids", pa.list_(pa.int64())), ("token_starts", pa.list_(pa.int64())),
        ("logprobs", pa.list_(pa.float32())), ("model", pa.string()),
    ])


def result_row(doc_id: str, r) -> dict[str, Any]:
    """One document's row from its ScoreResult: the summary columns plus its per-token arrays.

    >>> row = result_row("doc-1", result)
    >>> row["id"], len(row["logprobs"]) == len(result)
    ('doc-1', True)
    """
    return {**document_row(doc_id, r), "token_ids": r.token_ids.tolist(),
            "token_starts": r.offsets[:, 0].tolist(),
            "logprobs": [None if np.isnan(v) else float(v) for v in r.logprobs.tolist()]}


def error_row(doc_id: str, err: BaseException) -> dict[str, Any]:
    """One failed document's row: its error, no numbers.

    >>> error_row("doc-2", ValueError("empty"))
    {'id': 'doc-2', 'error': 'ValueError: empty'}
    """
    return {"id": doc_id, "error": f"{type(err).__name__}: {err}"[:2000]}


class Journal:
    """The parts of one output file.

    >>> j = Journal("scores.parquet"); j.append([result_row("doc-1", r)])   # doctest: +SKIP
    """

    def __init__(self, out: str | os.PathLike):
        self.out = Path(out).expanduser()
        if self.out.suffix != ".parquet":
            raise ValueError(f"out must be a .parquet file name, got {self.out.name!r}")
        self.parts = self.out.with_name(self.out.name + ".parts")

    def _tables(self):
        import pyarrow.parquet as pq

        files = ([self.out] if self.out.is_file() else []) + sorted(self.parts.glob(PART_GLOB), key=_mtime)
        return [pq.read_table(f, schema=schema()) for f in files]

    def done_ids(self) -> set[str]:
        """Ids already scored without error (by any earlier run or rank).

        >>> Journal("scores.parquet").done_ids()             # doctest: +SKIP
        {'doc-1', 'doc-7'}
        """
        done: set[str] = set()
        for t in self._tables():
            errors = t.column("error").to_pylist()
            done.update(i for i, e in zip(t.column("id").to_pylist(), errors) if e is None)
        return done

    def append(self, rows: list[dict[str, Any]], *, rank: int = 0) -> Path:
        """Write ``rows`` as a new part, atomically.

        >>> Journal("scores.parquet").append([error_row("d", ValueError("x"))])   # doctest: +SKIP
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.parts.mkdir(parents=True, exist_ok=True)
        final = self.parts / f"part-{rank:05d}-{uuid.uuid4().hex}.parquet"
        tmp = final.with_name(final.name + ".tmp")
        pq.write_table(pa.Table.from_pylist(rows, schema=schema()), tmp)
        os.replace(tmp, final)
        return final

    def merge(self, order: list[str]):
        """One row per id in ``order`` (ids never scored are left out), written to ``out``.

        >>> Journal("scores.parquet").merge(["doc-1", "doc-2"]).num_rows   # doctest: +SKIP
        2
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        tables = self._tables()
        table = pa.concat_tables(tables) if tables else schema().empty_table()
        best: dict[str, int] = {}
        errors = table.column("error").to_pylist()
        for n, i in enumerate(table.column("id").to_pylist()):
            if i not in best or errors[n] is None or errors[best[i]] is not None:
                best[i] = n
        rows = [best[i] for i in order if i in best]
        merged = table.take(pa.array(rows, pa.int64()))
        tmp = self.out.with_name(self.out.name + ".tmp")
        pq.write_table(merged, tmp)
        os.replace(tmp, self.out)
        shutil.rmtree(self.parts, ignore_errors=True)
        return merged


def _mtime(p: Path) -> float:
    return p.stat().st_mtime_ns
