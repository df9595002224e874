"""Results written as they finish, so a killed run resumes without losing or repeating work.

Each finished batch of documents becomes one Parquet part in ``<out>.parts/`` (written to a
temporary name, then renamed, so a part is whole or absent). The job the rows belong to (model,
tokenizer, options: see :func:`lightlens.corpus.run.job_record`) is kept in ``<out>.parts/job.json``
and in ``out``'s schema metadata (``lightlens.job``), and every row carries the sha256 of its
document's text, so a run resumes only the same job over the same texts and otherwise says what
differs. A new run skips every id already scored without error; the merge keeps one row per id
(a success over an error, the newest otherwise), checks that every document has its row, writes
``out`` the same way, and only then removes the parts.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from ..results.corpus_result import COLUMNS, document_row

PART_GLOB = "part-*.parquet"
JOB_KEY = b"lightlens.job"  # the Parquet schema metadata key of the job record
DONE_COLUMNS = ["id", "error", "text_sha256"]
START_OVER = "To start over, pass overwrite=True (CLI: --overwrite), or write to another out path."


def schema():
    """The Parquet schema of one document's row: every corpus table's columns, then the
    per-token arrays and the text hash.

    >>> schema().names[:3], schema().names[-1]
    (['id', 'error', 'num_tokens'], 'text_sha256')
    """
    import pyarrow as pa

    return pa.schema([
        *((name, getattr(pa, kind)()) for name, kind in COLUMNS.items()),
        ("token_ids", pa.list_(pa.int64())), ("token_starts", pa.list_(pa.int64())),
        ("logprobs", pa.list_(pa.float32())), ("text_sha256", pa.string()),
    ])


def text_sha256(text) -> str:
    """A document's text hash as stored with its row (16 hex digits of sha256 of the UTF-8).

    >>> text_sha256("The cat sat.")
    '84549cfaa5640d83'
    """
    data = text if isinstance(text, str) else repr(text)  # a non-text fails when scored; still hashed
    return hashlib.sha256(data.encode("utf-8", "surrogatepass")).hexdigest()[:16]


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


def differences(earlier: dict, now: dict, prefix: str = "") -> list[str]:
    """What differs between two job records, one phrase per differing field.

    >>> differences({"model": {"name": "a", "dtype": "float32"}}, {"model": {"name": "b", "dtype": "float32"}})
    ["model.name differs: 'a' (earlier run) vs 'b' (this run)"]
    """
    out = []
    for key in [*now, *(k for k in earlier if k not in now)]:
        a, b = earlier.get(key), now.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key} differs: {a!r} (earlier run) vs {b!r} (this run)")
    return out


def changed_texts(done: dict[str, str], hashes: dict[str, str]) -> list[str]:
    """The problem of done ids whose text is no longer the one scored (none: ``[]``).

    >>> changed_texts({"a": "1", "b": "2"}, {"a": "1", "b": "3"})
    ['1 document changed text since the earlier run: ids b']
    """
    ids = [i for i, h in done.items() if i in hashes and hashes[i] != h]
    if not ids:
        return []
    return [f"{len(ids)} document{'s' * (len(ids) > 1)} changed text since the earlier run: ids {_some(ids)}"]


class Journal:
    """The parts of one output file, and the job they belong to.

    >>> j = Journal(tmp / "j.parquet"); j.begin({"top_k": 0}, {}, overwrite=False)
    >>> _ = j.append([{**result_row("d", result), "text_sha256": text_sha256(result.text)}])
    >>> j.done_ids() == {"d": text_sha256(result.text)}
    True
    >>> j.check({"top_k": 5}, {"d": text_sha256(result.text)})
    Traceback (most recent call last):
    ...
    ValueError: cannot resume ... top_k differs: 0 (earlier run) vs 5 (this run). To start over, ...
    """

    def __init__(self, out: str | os.PathLike):
        self.out = Path(out).expanduser()
        if self.out.suffix != ".parquet":
            raise ValueError(f"out must be a .parquet file name (e.g. scores.parquet), got {self.out.name!r}")
        self.parts = self.out.with_name(self.out.name + ".parts")
        self.job_file = self.parts / "job.json"

    def check_destination(self) -> None:
        """Raise an OSError saying what to do unless ``out`` and its parts can be written: ``out``
        is not a folder and the nearest existing folder above it takes new files.

        >>> Journal(tmp / "new" / "s.parquet").check_destination()
        >>> (tmp / "d.parquet").mkdir(); Journal(tmp / "d.parquet").check_destination()
        Traceback (most recent call last):
        IsADirectoryError: out ... is a folder: give a .parquet file name, e.g. .../d.parquet/scores.parquet
        """
        if self.out.is_dir():
            raise IsADirectoryError(f"out {self.out} is a folder: give a .parquet file name, "
                                    f"e.g. {self.out / 'scores.parquet'}")
        if self.parts.exists() and not self.parts.is_dir():
            raise NotADirectoryError(f"{self.parts} is a file where the parts folder goes: "
                                     "move it away or choose another out path")
        if self.parts.is_dir():
            _check_writable(self.parts)
        _check_writable(next(p for p in self.out.absolute().parents if p.exists()))

    def _files(self) -> list[Path]:
        """``out`` (if there) and then the parts, oldest first."""
        return ([self.out] if self.out.is_file() else []) + sorted(self.parts.glob(PART_GLOB), key=_mtime)

    def _tables(self):
        import pyarrow.parquet as pq

        return [pq.read_table(f, schema=schema()).replace_schema_metadata(None) for f in self._files()]

    def earlier_jobs(self) -> list[tuple[str, dict | None]]:
        """``(where, job record)`` of the rows already here; the record is None where there is
        none (not a lightlens corpus file, or parts without ``job.json``).

        >>> Journal(tmp / "nothing-yet.parquet").earlier_jobs()
        []
        """
        import pyarrow.parquet as pq

        jobs = []
        if self.out.exists():
            try:
                meta = pq.read_schema(self.out).metadata or {}
            except Exception:  # noqa: BLE001 - not Parquet at all: no job either
                meta = {}
            jobs.append((str(self.out), json.loads(meta[JOB_KEY]) if JOB_KEY in meta else None))
        if any(self.parts.glob(PART_GLOB)):
            record = json.loads(self.job_file.read_text(encoding="utf-8")) if self.job_file.is_file() else None
            jobs.append((str(self.parts), record))
        return jobs

    def check(self, job: dict, hashes: dict[str, str]) -> None:
        """Raise a ValueError naming what differs unless the rows here are of ``job`` and each
        done id's text hash is the one in ``hashes`` (``{id: text_sha256}``)."""
        problems = []
        for where, earlier in self.earlier_jobs():
            if earlier is None:
                problems.append(f"{where} is not a lightlens corpus run (no lightlens job record)")
            else:
                problems += differences(earlier, job)
        problems = problems or changed_texts(self.done_ids(), hashes)
        if problems:
            raise ValueError(f"cannot resume into {self.out}: it holds another job's rows: "
                             + "; ".join(problems) + ". " + START_OVER)

    def begin(self, job: dict, hashes: dict[str, str], *, overwrite: bool) -> None:
        """Start (or resume) ``job``: check it against what is here (with ``overwrite``, remove
        what differs instead), then record it in ``job.json`` before any part is written."""
        try:
            self.check(job, hashes)
        except ValueError:
            if not overwrite:
                raise
            self.clear()
        self.parts.mkdir(parents=True, exist_ok=True)
        _write_atomically(self.job_file, lambda tmp: tmp.write_text(json.dumps(job, indent=1), encoding="utf-8"))

    def clear(self) -> None:
        """Remove ``out`` and its parts."""
        self.out.unlink(missing_ok=True)
        shutil.rmtree(self.parts, ignore_errors=True)

    def done_ids(self) -> dict[str, str]:
        """``{id: text_sha256}`` of the ids already scored without error (by any earlier run or
        rank); reads only the id, error and hash columns.

        >>> Journal(tmp / "none.parquet").done_ids()
        {}
        """
        import pyarrow.parquet as pq

        done: dict[str, str] = {}
        for f in self._files():
            t = pq.read_table(f, columns=DONE_COLUMNS).to_pydict()
            done.update((i, h) for i, e, h in zip(t["id"], t["error"], t["text_sha256"]) if e is None)
        return done

    def append(self, rows: list[dict[str, Any]], *, rank: int = 0) -> Path:
        """Write ``rows`` as a new part, atomically.

        >>> Journal(tmp / "a.parquet").append([error_row("d", ValueError("x"))]).parent.name
        'a.parquet.parts'
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.parts.mkdir(parents=True, exist_ok=True)
        final = self.parts / f"part-{rank:05d}-{uuid.uuid4().hex}.parquet"
        return _write_atomically(final, lambda tmp: pq.write_table(pa.Table.from_pylist(rows, schema=schema()), tmp))

    def merge(self, job: dict, hashes: dict[str, str]):
        """One row per id of ``hashes`` (in its order), written to ``out`` with ``job`` in its
        metadata; then the parts are removed. An id without a row, or whose row is of another
        text, is an error (the parts are kept).

        >>> j = Journal(tmp / "m.parquet")
        >>> _ = j.append([{**error_row("d", ValueError("x")), "text_sha256": text_sha256("x")}])
        >>> j.merge({"top_k": 0}, {"d": text_sha256("x")}).num_rows, j.parts.exists()
        (1, False)
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
        missing = [i for i in hashes if i not in best]
        if missing:
            raise RuntimeError(f"{len(missing)} documents have no row after the run (ids {_some(missing)}); "
                               f"the parts in {self.parts} are kept: run the same job again to score them")
        merged = table.take(pa.array([best[i] for i in hashes], pa.int64()))
        stale = [i for i, h in zip(hashes, merged.column("text_sha256").to_pylist()) if h != hashes[i]]
        if stale:
            raise RuntimeError(f"rows of another text for ids {_some(stale)}: the source changed during the run")
        merged = merged.replace_schema_metadata({JOB_KEY: json.dumps(job)})
        _write_atomically(self.out, lambda tmp: pq.write_table(merged, tmp))
        shutil.rmtree(self.parts, ignore_errors=True)
        return merged


def _check_writable(folder: Path) -> None:
    """Raise an OSError unless ``folder`` is a folder that takes new files (tried, not guessed)."""
    if not folder.is_dir():
        raise NotADirectoryError(f"cannot write there: {folder} is a file, not a folder; choose another out path")
    try:
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as err:
        raise PermissionError(f"cannot write in {folder} ({err.strerror or err}): "
                              "choose another out path, or make the folder writable") from None


def _write_atomically(path: Path, write) -> Path:
    """``write(tmp)`` then rename ``tmp`` to ``path``, so ``path`` is whole or absent (and no
    ``tmp`` is left behind when either step fails)."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _some(ids: list[str], n: int = 5) -> str:
    return ", ".join(ids[:n]) + (f" and {len(ids) - n} more" if len(ids) > n else "")


def _mtime(p: Path) -> float:
    return p.stat().st_mtime_ns
