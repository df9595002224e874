"""`CorpusResult`: many documents' scores, one row per document, and their aggregate.

One type for every corpus: :func:`lightlens.perplexity` keeps each document's full
:class:`ScoreResult` in memory (``documents``); :func:`lightlens.score_corpus` writes the rows
to Parquet (``path``) and reads them back. Either way ``table`` holds one row per document
and the aggregate follows :class:`lightlens.metrics.Totals` (``exp(total nll / total scored
tokens)``, never a mean of per-text perplexities). Documents that failed keep their error and
count for nothing.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..metrics import Totals
from .score_result import ScoreResult

# every corpus table's columns (one row per document) and their Arrow types
COLUMNS = {"id": "string", "error": "string", "num_tokens": "int64", "num_scored": "int64",
           "total_logprob": "float64", "num_bytes": "int64", "num_words": "int64", "nll": "float64",
           "perplexity": "float64", "bits_per_byte": "float64", "model": "string"}


def document_row(doc_id: str, r: ScoreResult) -> dict[str, Any]:
    """One document's summary row (the columns every corpus table has).

    >>> row = document_row("doc-1", result)
    >>> row["id"], row["num_tokens"] == len(result), row["error"] is None
    ('doc-1', True, True)
    """
    return {"id": doc_id, "error": None, "num_tokens": len(r.tokens), "num_scored": r.num_scored,
            "total_logprob": r.total_logprob, "num_bytes": r.num_bytes, "num_words": r.num_words,
            "nll": r.nll, "perplexity": r.perplexity, "bits_per_byte": r.bits_per_byte,
            "model": json.dumps(r.model)}


@dataclass(eq=False, repr=False)
class CorpusResult(Totals):
    """Per-document scores of a corpus and their aggregate; renders as a table in a notebook.

    ``num_tokens`` counts every token and ``num_scored`` the tokens with a log-probability
    (as on :class:`ScoreResult`), over the documents scored without error.

    Example:
        >>> c = CorpusResult.from_results([result, result], ids=["a", "b"])
        >>> c.num_scored == 2 * result.num_scored, abs(c.perplexity - result.perplexity) < 1e-9
        (True, True)
        >>> list(c.to_pandas().columns)
        ['id', 'num_tokens', 'num_scored', 'nll', 'perplexity', 'bits_per_byte', 'error']
    """

    table: Any  # pandas DataFrame, one row per document (COLUMNS, and more from a corpus run)
    documents: list[ScoreResult] | None = None  # full results, when scored in memory
    path: Path | None = None  # the Parquet file, when written by score_corpus
    window: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.table, (list, tuple)):
            raise TypeError("CorpusResult(table) takes a per-document table: for a list of ScoreResults "
                            "use CorpusResult.from_results(results, ids)")

    @classmethod
    def from_results(cls, results: Sequence[ScoreResult], ids: Sequence[str] | None = None) -> "CorpusResult":
        """A corpus result from per-document results (ids default to positions).

        >>> CorpusResult.from_results([result]).table["id"].tolist()
        ['0']
        """
        import pandas as pd

        ids = [str(i) for i in range(len(results))] if ids is None else list(ids)
        table = pd.DataFrame([document_row(i, r) for i, r in zip(ids, results)], columns=list(COLUMNS))
        first = results[0].window if results else {}
        window = {k: first[k] for k in ("max_length", "stride") if k in first}
        return cls(table, documents=list(results), window=window)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "CorpusResult":
        """Read the Parquet file a :func:`lightlens.score_corpus` run wrote.

        >>> _ = lightlens.score_corpus(["Hello world", "Hello again"], model=tiny, out=tmp / "s.parquet",
        ...                            progress=False)
        >>> CorpusResult.load(tmp / "s.parquet").num_documents
        2
        """
        import pandas as pd

        path = Path(path)
        table = pd.read_parquet(path)
        missing = [c for c in COLUMNS if c not in table.columns]
        if missing:
            raise ValueError(f"{path} is not a lightlens corpus file (no {missing} columns)")
        return cls(table, path=path)

    read = load  # the name CorpusScores used

    # ---- the four sums (documents scored without error) -------------------------------
    def _ok(self):
        return self.table[self.table["error"].isna()]

    @property
    def num_documents(self) -> int:
        """Documents in the table (failed ones included)."""
        return len(self.table)

    @property
    def num_tokens(self) -> int:
        """Tokens of the documents scored without error."""
        return int(self._ok()["num_tokens"].sum())

    @property
    def num_scored(self) -> int:
        """Scored tokens (with a log-probability) over the documents scored without error."""
        return int(self._ok()["num_scored"].sum())

    @property
    def total_nll(self) -> float:
        """Sum of -logprob over all scored tokens (nats)."""
        return -float(self._ok()["total_logprob"].sum())

    @property
    def num_bytes(self) -> int:
        """UTF-8 bytes of the scored text."""
        return int(self._ok()["num_bytes"].sum())

    @property
    def num_words(self) -> int:
        """Whitespace-separated words of the scored text."""
        return int(self._ok()["num_words"].sum())

    @property
    def failed(self):
        """The documents that could not be scored, with their errors (a DataFrame)."""
        return self.table.loc[self.table["error"].notna(), ["id", "error"]]

    @property
    def model(self) -> dict[str, Any]:
        """The model that scored the documents (name, revision, dtype, device, backend)."""
        models = self._ok()["model"].dropna()
        return json.loads(models.iloc[0]) if len(models) else {}

    # ---- tables and views ---------------------------------------------------------------
    def to_pandas(self):
        """One row per document: id, tokens, scored tokens, nll, perplexity, bits per byte, error.

        >>> CorpusResult.from_results([result]).to_pandas().shape
        (1, 7)
        """
        cols = ["id", "num_tokens", "num_scored", "nll", "perplexity", "bits_per_byte", "error"]
        return self.table[cols].reset_index(drop=True)

    def to_dict(self) -> dict[str, Any]:
        """The aggregate as a JSON-ready dict (what ``lightlens perplexity --json`` prints).

        >>> sorted(CorpusResult.from_results([result]).to_dict())[:3]
        ['bits_per_byte', 'model', 'nll']
        """
        d = {"perplexity": self.perplexity, "nll": self.nll, "bits_per_byte": self.bits_per_byte,
             "word_perplexity": self.word_perplexity, "num_tokens": self.num_tokens,
             "num_scored": self.num_scored, "num_documents": self.num_documents,
             "num_failed": len(self.failed), "model": self.model, "window": self.window}
        if self.path is not None:
            d["path"] = str(self.path)
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in d.items()}

    def summary(self) -> str:
        """One line, as :meth:`ScoreResult.summary` gives for one text.

        >>> CorpusResult.from_results([result]).summary().split()[0]
        'perplexity'
        """
        return (f"perplexity {self.perplexity:.4f}  nll {self.nll:.4f}  bits/byte {self.bits_per_byte:.4f}  "
                f"word perplexity {self.word_perplexity:.4f}  scored tokens {self.num_scored}/{self.num_tokens}  "
                f"documents {self.num_documents} ({len(self.failed)} failed)")

    def __repr__(self) -> str:
        where = f"{str(self.path)!r}, " if self.path is not None else ""
        return (f"CorpusResult({where}documents={self.num_documents}, failed={len(self.failed)}, "
                f"tokens={self.num_tokens}, scored={self.num_scored}, perplexity={self.perplexity:.4f}, "
                f"bits_per_byte={self.bits_per_byte:.4f})")

    def _repr_html_(self) -> str:
        from ..viz.corpus import corpus_html

        return corpus_html(self)


CorpusScores = CorpusResult  # the name score_corpus's result had before one type served both
