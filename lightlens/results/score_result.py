"""`ScoreResult`: per-token scores of one text, as plain numpy arrays and strings.

A result never holds torch objects, so it pickles, saves (JSON or Parquet), loads and
prints on a machine without torch. Every derived number follows ../shared/DESIGN.md.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..metrics import LN2, Totals, count_words
from ..viz.colors import entropy_text, rank_text
_ARRAYS = {  # field -> numpy dtype of the stored array
    "token_ids": np.int64,
    "offsets": np.int64,
    "logprobs": np.float32,
    "entropy": np.float32,
    "ranks": np.int64,
    "top_k_ids": np.int64,
    "top_k_logprobs": np.float32,
    "logsumexp": np.float32,
}
_META = ("text", "model", "window", "bos")


@dataclass(eq=False)
class ScoreResult(Totals):
    """Per-token log-probabilities of one text under one causal LM.

    Token ``i`` covers ``text[offsets[i, 0]:offsets[i, 1]]`` (``tokens[i]`` is that slice,
    so ``"".join(tokens) == text``; a token that only continues a multi-byte character
    covers no characters). ``logprobs[i]`` is NaN where the model had no context to
    predict token ``i`` (the first token when no BOS was prepended); ``ranks[i]`` is 0
    there, and -1 where a server did not report a scored token's rank. Natural logs throughout.
    ``logsumexp[i]`` is the log-sum-exp of the logits that predicted token ``i`` (NaN where
    unscored, and from servers, which do not report it), so raw logits are recoverable:
    ``logit = logprob + logsumexp`` (:attr:`target_logits`, :attr:`top_k_logits`).

    Example:
        >>> r = lightlens.score("Hello world! Hello again, world.", model=tiny)
        >>> r.tokens[:3], r.num_scored == len(r) - 1, bool(np.isnan(r.logprobs[0]))
        (['Hello', ' world', '!'], True, True)
        >>> "".join(r.tokens) == r.text and r.text[r.offsets[1, 0]:r.offsets[1, 1]] == " world"
        True
    """

    text: str
    tokens: list[str]
    token_ids: np.ndarray
    offsets: np.ndarray
    logprobs: np.ndarray
    entropy: np.ndarray
    ranks: np.ndarray
    top_k_ids: np.ndarray
    top_k_logprobs: np.ndarray
    top_k_tokens: list[list[str]]
    model: dict[str, Any] = field(default_factory=dict)
    window: dict[str, Any] = field(default_factory=dict)
    bos: bool = False
    logsumexp: np.ndarray | None = None

    FORMAT: ClassVar[str] = "lightlens.ScoreResult/1"
    ARRAYS: ClassVar[dict[str, type]] = _ARRAYS  # a subclass adds its per-token arrays here
    META: ClassVar[tuple[str, ...]] = _META  # and its other saved fields here
    SUBCLASSES: ClassVar[dict[str, type]] = {}  # FORMAT -> subclass, so ScoreResult.load reads them all

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        ScoreResult.SUBCLASSES[cls.FORMAT] = cls

    def __post_init__(self) -> None:
        n = len(self.tokens)
        if self.logsumexp is None:  # a backend that does not know it (servers)
            self.logsumexp = np.full(n, np.nan, np.float32)
        for name, dtype in self.ARRAYS.items():
            setattr(self, name, np.asarray(getattr(self, name), dtype=dtype))
        self.offsets = self.offsets.reshape(n, 2)
        self.top_k_ids = self.top_k_ids.reshape(n, -1) if n else self.top_k_ids.reshape(0, 0)
        self.top_k_logprobs = self.top_k_logprobs.reshape(self.top_k_ids.shape)
        for name in self.ARRAYS:
            if name not in ("offsets", "top_k_ids", "top_k_logprobs") and len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} entries for {n} tokens")

    # ---- derived numbers -------------------------------------------------------------
    @property
    def scored(self) -> np.ndarray:
        """Boolean mask of the tokens that have a log-probability."""
        return ~np.isnan(self.logprobs)

    @property
    def num_scored(self) -> int:
        """How many tokens were predicted (the denominator of nll)."""
        return int(self.scored.sum())

    @property
    def total_logprob(self) -> float:
        """Sum of the scored tokens' log-probabilities (nats), in float64."""
        return float(self.logprobs[self.scored].astype(np.float64).sum())

    @property
    def total_nll(self) -> float:
        """Sum of the scored tokens' negative log-probabilities (nats)."""
        return -self.total_logprob

    @property
    def scored_text(self) -> str:
        """The characters covered by scored tokens (the text after an unscored prefix)."""
        idx = np.flatnonzero(self.scored)
        return self.text[self.offsets[idx[0], 0]:] if len(idx) else ""

    @property
    def num_bytes(self) -> int:
        """UTF-8 bytes of the scored text."""
        return len(self.scored_text.encode("utf-8"))

    @property
    def num_words(self) -> int:
        """Whitespace-separated words of the scored text."""
        return count_words(self.scored_text)

    @property
    def probs(self) -> np.ndarray:
        """Probability of each token (``exp(logprob)``; NaN where unscored)."""
        return np.exp(self.logprobs)

    @property
    def target_logits(self) -> np.ndarray:
        """The raw logit of each token: ``logprob + logsumexp`` (NaN where unscored or unknown).

        >>> bool(np.allclose(result.target_logits[1:], result.logprobs[1:] + result.logsumexp[1:]))
        True
        """
        return self.logprobs + self.logsumexp

    @property
    def top_k_logits(self) -> np.ndarray:
        """The raw logits of the top-k alternatives [n, k]: ``top_k_logprobs + logsumexp``."""
        return self.top_k_logprobs + self.logsumexp[:, None]

    @property
    def surprisal_bits(self) -> np.ndarray:
        """Surprisal of each token in bits (``-logprob / ln 2``)."""
        return -self.logprobs / LN2

    def __len__(self) -> int:
        return len(self.tokens)

    # ---- tables ----------------------------------------------------------------------
    def to_pandas(self):
        """One row per token: token, id, character span, logprob, prob, bits, entropy, rank, top-k.

        >>> df = result.to_pandas()
        >>> surprising = df.sort_values("logprob").head(3)  # the most surprising tokens
        >>> list(df.columns[:5]), len(df) == len(result)
        (['token', 'token_id', 'start', 'end', 'logprob'], True)
        """
        import pandas as pd

        return pd.DataFrame(
            {
                "token": self.tokens,
                "token_id": self.token_ids,
                "start": self.offsets[:, 0],
                "end": self.offsets[:, 1],
                "logprob": self.logprobs,
                "prob": self.probs,
                "surprisal_bits": self.surprisal_bits,
                "entropy": self.entropy,
                "rank": self.ranks,
                "logsumexp": self.logsumexp,
                "top_k_tokens": self.top_k_tokens,
                "top_k_logprobs": [list(map(float, row)) for row in self.top_k_logprobs],
            }
        )

    def table(self, *, max_rows: int | None = None) -> str:
        """The per-token table as aligned text (what the CLI prints).

        >>> print(result.table(max_rows=2))  # doctest: +ELLIPSIS
            #  token                logprob    prob   rank  entropy  top-k
            0  Hello                      —       —      —        —
            1   world                ...
          … 6 more tokens
        """
        k = self.top_k_ids.shape[1]
        head = f"{'#':>5}  {'token':<18} {'logprob':>9} {'prob':>7} {'rank':>6} {'entropy':>8}"
        lines = [head + ("  top-k" if k else "")]
        rows = range(len(self)) if max_rows is None else range(min(max_rows, len(self)))
        for i in rows:
            lp = self.logprobs[i]
            scored = not math.isnan(lp)
            tok = _printable(self.tokens[i])[:18]
            line = (
                f"{i:>5}  {tok:<18} {lp:>9.3f} {math.exp(lp):>7.3f} {rank_text(self.ranks[i]):>6} "
                f"{entropy_text(self.entropy[i]):>8}"
                if scored
                else f"{i:>5}  {tok:<18} {'—':>9} {'—':>7} {'—':>6} {'—':>8}"
            )
            if k and scored:
                line += "  " + " ".join(_printable(t) for t in self.top_k_tokens[i][: min(k, 3)])
            lines.append(line)
        if max_rows is not None and len(self) > max_rows:
            lines.append(f"  … {len(self) - max_rows} more tokens")
        return "\n".join(lines)

    def summary(self) -> str:
        """One line: perplexity, nll, bits per byte and counts.

        >>> print(result.summary())  # doctest: +ELLIPSIS
        perplexity ...  nll ...  bits/byte ...  scored tokens 7/8
        """
        return (
            f"perplexity {self.perplexity:.4f}  nll {self.nll:.4f}  bits/byte "
            f"{self.bits_per_byte:.4f}  scored tokens {self.num_scored}/{len(self)}"
        )

    def __repr__(self) -> str:
        name = self.model.get("name", "?")
        extra = ", windowed" if self.window.get("windowed") else ""
        return (
            f"ScoreResult(model={name!r}, tokens={len(self)}, scored={self.num_scored}, "
            f"perplexity={self.perplexity:.4g}, bits_per_byte={self.bits_per_byte:.4g}{extra})"
        )

    # ---- views -----------------------------------------------------------------------
    def heatmap(self, **options):
        """The text coloured by a metric (logprob, prob, surprisal, entropy, rank); see
        :func:`lightlens.viz.heatmap_html` for the options.

        >>> hm = result.heatmap(metric="rank", threshold=12)
        >>> hm._repr_html_().count("data-tip=") == len(result)   # one hover tip per token
        True
        """
        from ..viz.heatmap import Heatmap, heatmap_html

        return Heatmap(heatmap_html(self, **options))

    def _repr_html_(self) -> str:
        from ..viz.heatmap import heatmap_html

        return heatmap_html(self)

    def plot(self, kind: str = "logprob", **options):
        """A matplotlib plot: "logprob", "surprisal", "entropy", "perplexity" (windowed) or "rank".

        >>> ax = result.plot("entropy")
        >>> ax.get_ylabel()
        'bits'
        """
        from ..viz import plots

        draw = {"logprob": plots.plot_logprobs, "entropy": plots.plot_entropy,
                "perplexity": plots.plot_windowed_perplexity, "rank": plots.plot_rank_histogram,
                "surprisal": lambda r, **kw: plots.plot_logprobs(r, surprisal=True, **kw)}
        if kind not in draw:
            raise ValueError(f"unknown plot {kind!r}: choose one of {', '.join(draw)}")
        return draw[kind](self, **options)

    # ---- saving ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN becomes None).

        >>> d = json.loads(json.dumps(result.to_dict()))
        >>> d["format"], d["logprobs"][0] is None
        ('lightlens.ScoreResult/1', True)
        """
        d: dict[str, Any] = {name: getattr(self, name) for name in self.META}
        d["tokens"] = list(self.tokens)
        d["top_k_tokens"] = [list(t) for t in self.top_k_tokens]
        for name in self.ARRAYS:
            arr = getattr(self, name)
            d[name] = _nan_to_none(arr.tolist()) if arr.dtype.kind == "f" else arr.tolist()
        d["format"] = self.FORMAT
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ScoreResult":
        """Inverse of :meth:`to_dict`.

        >>> ScoreResult.from_dict(result.to_dict()).tokens == result.tokens
        True
        """
        if cls is ScoreResult and d.get("format") in ScoreResult.SUBCLASSES:  # e.g. a Generation
            return ScoreResult.SUBCLASSES[d["format"]].from_dict(d)
        if d.get("format") != cls.FORMAT:
            raise ValueError(f"not a lightlens {cls.__name__} (missing format {cls.FORMAT!r})")
        kw = {name: d[name] for name in (*cls.META, "tokens", "top_k_tokens")}
        for name, dtype in cls.ARRAYS.items():
            if name in d:  # results saved before logsumexp was kept have none: NaN
                kw[name] = np.array(_none_to_nan(d[name]), dtype=dtype)
        return cls(**kw)

    def save(self, path: str | Path) -> Path:
        """Save as ``.json`` (UTF-8, whatever the locale) or ``.parquet`` (chosen by the suffix); never pickle.

        >>> result.save(tmp / "scores.parquet").name
        'scores.parquet'
        """
        return save_by_suffix(self, path, _write_parquet)

    @classmethod
    def load(cls, path: str | Path) -> "ScoreResult":
        """Load a result written by :meth:`save` (needs no torch).

        >>> _ = result.save(tmp / "r.json")
        >>> ScoreResult.load(tmp / "r.json").perplexity == result.perplexity
        True
        """
        return load_by_suffix(cls, path, _read_parquet)


def save_by_suffix(result, path: str | Path, write_parquet) -> Path:
    """Write ``result.to_dict()`` as ``.json`` (UTF-8) or call ``write_parquet(result, path)`` for
    ``.parquet``: the one place results choose their file format (never pickle)."""
    path = Path(path)
    if path.suffix == ".json":
        path.write_text(json.dumps(result.to_dict(), ensure_ascii=False), encoding="utf-8")
    elif path.suffix == ".parquet":
        write_parquet(result, path)
    else:
        raise ValueError(f"cannot save to {path.name!r}: use a .json or .parquet file name")
    return path


def load_by_suffix(cls, path: str | Path, read_parquet):
    """The inverse of :func:`save_by_suffix`: ``cls.from_dict`` of a ``.json`` file, or
    ``read_parquet(cls, path)``."""
    path = Path(path)
    if path.suffix == ".json":
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
    if path.suffix == ".parquet":
        return read_parquet(cls, path)
    raise ValueError(f"cannot load {path.name!r}: expected a .json or .parquet file")


def _printable(s: str) -> str:
    """Escape what a terminal would not show as one cell (newlines, tabs, controls)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in s)


def _nan_to_none(x):
    if isinstance(x, list):
        return [_nan_to_none(v) for v in x]
    return None if isinstance(x, float) and math.isnan(x) else x


def _none_to_nan(x):
    if isinstance(x, list):
        return [_none_to_nan(v) for v in x]
    return math.nan if x is None else x


def _write_parquet(r: ScoreResult, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    d = r.to_dict()
    meta = {name: d[name] for name in (*r.META, "format")}
    meta["top_k"] = int(r.top_k_ids.shape[1])
    extra = {name: getattr(r, name) for name in r.ARRAYS if name not in _ARRAYS}  # a subclass's arrays
    table = pa.table(
        {
            "token": d["tokens"],
            "token_id": r.token_ids,
            "start": r.offsets[:, 0],
            "end": r.offsets[:, 1],
            "logprob": r.logprobs,
            "entropy": r.entropy,
            "rank": r.ranks,
            "logsumexp": r.logsumexp,
            "top_k_ids": pa.array(r.top_k_ids.tolist(), type=pa.list_(pa.int64())),
            "top_k_logprobs": pa.array(r.top_k_logprobs.tolist(), type=pa.list_(pa.float32())),
            "top_k_tokens": pa.array(d["top_k_tokens"], type=pa.list_(pa.string())),
            **extra,
        }
    ).replace_schema_metadata({"lightlens": json.dumps(meta, ensure_ascii=False)})
    pq.write_table(table, path)


def _read_parquet(cls, path: Path) -> ScoreResult:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    raw = (table.schema.metadata or {}).get(b"lightlens")
    meta = json.loads(raw) if raw is not None else {}
    if cls is ScoreResult and meta.get("format") in ScoreResult.SUBCLASSES:  # e.g. a Generation
        return _read_parquet(ScoreResult.SUBCLASSES[meta["format"]], path)
    if meta.get("format", cls.FORMAT) != cls.FORMAT or raw is None:
        raise ValueError(f"{path} is a Parquet file but not one written by {cls.__name__}.save")
    cols = table.to_pydict()
    k = meta.pop("top_k")
    n = len(cols["token"])
    extra = {name: np.array(cols[name], dtype=dtype) for name, dtype in cls.ARRAYS.items() if name not in _ARRAYS}
    return cls(
        **{name: meta[name] for name in cls.META},
        **extra,
        tokens=cols["token"],
        token_ids=cols["token_id"],
        offsets=np.stack([cols["start"], cols["end"]], axis=-1) if n else np.zeros((0, 2)),
        logprobs=np.array(cols["logprob"], dtype=np.float32),
        entropy=np.array(cols["entropy"], dtype=np.float32),
        ranks=cols["rank"],
        logsumexp=np.array(cols["logsumexp"], dtype=np.float32) if "logsumexp" in cols else None,
        top_k_ids=np.array(cols["top_k_ids"], dtype=np.int64).reshape(n, k),
        top_k_logprobs=np.array(cols["top_k_logprobs"], dtype=np.float32).reshape(n, k),
        top_k_tokens=cols["top_k_tokens"],
    )

