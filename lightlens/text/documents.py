"""Documents with ids from whatever holds a corpus: a list, a dict, a file, a folder,
a pandas Series or DataFrame, a Hugging Face ``datasets`` Dataset, or one text.

The one corpus reader: :func:`lightlens.perplexity` and :func:`lightlens.score_corpus` both
read their ``source`` here, so a source means the same thing to both. A str is a path when a
file or folder exists there; a str that looks like a path (one word holding a ``/`` or ending
in a corpus suffix) but names nothing is an error; any other str is one text. The command line
always reads a path. Files are read as their exact characters (:func:`read_text`): CRLF stays
CRLF, so offsets index the file and bits per byte count its bytes.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

Document = tuple[str, Any]  # (id, text); text is checked when it is scored
PATH_SUFFIXES = (".txt", ".jsonl", ".json", ".md", ".raw", ".text")


def read_documents(source, *, text_field: str = "text", id_field: str = "id") -> list[Document]:
    """``[(id, text), ...]`` with unique string ids.

    Ids come from ``id_field`` (JSONL lines, dicts, DataFrame/dataset columns), a Series' or
    DataFrame's index, a dict's keys, a folder's relative file names, else the position.

    >>> read_documents(["a text", "another"])
    [('0', 'a text'), ('1', 'another')]
    >>> read_documents([{"id": "x", "text": "hello"}])
    [('x', 'hello')]
    >>> read_documents("just one text, not a file")
    [('0', 'just one text, not a file')]
    """
    docs = _read(source, text_field, id_field)
    if not docs:
        raise ValueError("the corpus is empty: give at least one document")
    seen: set[str] = set()
    dupes = [i for i, _ in docs if i in seen or seen.add(i)]
    if dupes:
        raise ValueError(f"document ids must be unique; repeated: {dupes[:5]}: fix the '{id_field}' field")
    return docs


def looks_like_path(s: str) -> bool:
    """Whether a str names a file or folder, or was clearly meant to (then a missing one is an
    error, never scored as text): one line without spaces that holds a ``/``, or a corpus suffix.

    >>> looks_like_path("corpus.jsonl"), looks_like_path("data/corpus"), looks_like_path("and/or so")
    (True, True, False)
    """
    if os.path.exists(os.path.expanduser(s)):
        return True
    one_word = len(s) < 4096 and not any(c.isspace() for c in s)
    return one_word and ("/" in s or os.sep in s or s.lower().endswith(PATH_SUFFIXES))


def _read(source, text_field: str, id_field: str) -> list[Document]:
    if isinstance(source, str) and not looks_like_path(source):
        return [("0", source)]
    if isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
            return [(str(p.relative_to(path)), read_text(p)) for p in files]
        if not path.is_file():
            raise FileNotFoundError(f"no file or folder at {path}: check the path (to score a text itself, pass [text])")
        if path.suffix == ".jsonl":
            return _rows(_jsonl(path), text_field, id_field)
        return [(path.name, read_text(path))]
    if hasattr(source, "to_frame") and hasattr(source, "index"):  # pandas Series
        return [(str(i), t) for i, t in source.items()]
    if hasattr(source, "columns") and hasattr(source, "index"):  # pandas DataFrame
        ids = source[id_field] if id_field in source.columns else source.index
        return [(str(i), t) for i, t in zip(ids, source[_column(source.columns, text_field)])]
    if hasattr(source, "column_names") and hasattr(source, "select"):  # datasets.Dataset
        texts = source[_column(source.column_names, text_field)]
        ids = source[id_field] if id_field in source.column_names else range(len(texts))
        return [(str(i), t) for i, t in zip(ids, texts)]
    if isinstance(source, dict):
        return [(str(i), t) for i, t in source.items()]
    return _rows(list(source), text_field, id_field)


def _column(columns, name: str) -> str:
    if name not in columns:
        raise ValueError(f"no '{name}' column (columns: {list(columns)[:10]}): pass text_field=")
    return name


def _rows(rows: list, text_field: str, id_field: str) -> list[Document]:
    out = []
    for n, row in enumerate(rows):
        if isinstance(row, dict):
            if text_field not in row:
                raise ValueError(f"document {n} has no '{text_field}' field (fields: {list(row)[:10]}): pass text_field=")
            out.append((str(row.get(id_field, n)), row[text_field]))
        else:
            out.append((str(n), row))
    return out


def read_text(path: str | os.PathLike) -> str:
    """A file's exact characters: its bytes decoded as UTF-8, line ends untouched (no newline
    translation); bytes that are not UTF-8 are a ValueError naming the file and byte position.

    >>> _ = (tmp / "crlf.txt").write_bytes(b"one\\r\\ntwo\\r\\n")
    >>> read_text(tmp / "crlf.txt")
    'one\\r\\ntwo\\r\\n'
    >>> _ = (tmp / "latin1.txt").write_bytes("café".encode("latin-1"))
    >>> read_text(tmp / "latin1.txt")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: .../latin1.txt: not valid UTF-8 at byte 3 (...): save it as UTF-8 ...
    """
    path = Path(path).expanduser()
    if not path.is_file():
        what = "a folder, not a file" if path.is_dir() else "no file"
        raise FileNotFoundError(f"{what} at {path}: check the path (to score a text itself, pass it as the argument)")
    return decode_utf8(path.read_bytes(), str(path))


def decode_utf8(data: bytes, what: str) -> str:
    """``data`` as UTF-8, exactly (CRLF stays CRLF); invalid bytes are named by position.

    >>> decode_utf8(b"a\\r\\nb", "x")
    'a\\r\\nb'
    >>> decode_utf8(b"ab\\xff", "the text")
    Traceback (most recent call last):
    ValueError: the text: not valid UTF-8 at byte 2 (0xff, invalid start byte): save it as UTF-8 (e.g. iconv -f latin1 -t utf-8 FILE)
    """
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{what}: not valid UTF-8 at byte {err.start} (0x{data[err.start]:02x}, {err.reason}): "
                         "save it as UTF-8 (e.g. iconv -f latin1 -t utf-8 FILE)") from None


def _jsonl(path: Path) -> list:
    """One JSON value per line; lines end at "\\n" only (a text may hold U+2028 or U+0085 raw)."""
    rows = []
    for n, line in enumerate(read_text(path).split("\n"), 1):
        line = line.removesuffix("\r")
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError as err:
                raise ValueError(f"{path}:{n}: not valid JSON ({err})") from err
    return rows
