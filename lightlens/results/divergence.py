"""`Divergence`: two models' predictions over the same tokens, compared token by token.

Plain numpy arrays over every token of every text in order (``doc`` says which text), so it
saves (JSON or Parquet), loads and renders without torch. Definitions (../shared/DESIGN.md,
"Two distributions over one text"): P is the base model, Q the other; ``kl`` = KL(P‖Q) (the
llama.cpp ``--kl-divergence`` direction), ``reverse_kl`` = KL(Q‖P), ``js`` Jensen-Shannon,
``delta_p`` = Q(token) − P(token). A token with no context (the first of a text without BOS) is
NaN everywhere, -1 in the id arrays and False in ``same_top1``, exactly as in ScoreResult.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .score_result import load_by_suffix, save_by_suffix

FORMAT = "lightlens.Divergence/1"
FLOATS = ("kl", "reverse_kl", "js", "logprob_base", "logprob", "delta_p", "entropy_base", "entropy",
          "top_k_overlap")
INTS = ("token_ids", "doc", "top1_base", "top1", "rank_base", "rank")
TOP_K = ("top_k_ids_base", "top_k_logprobs_base", "top_k_ids", "top_k_logprobs")
_META = ("texts", "base_model", "model", "window", "bos", "exactness")
PERCENTILES = (99.9, 99.0, 95.0, 90.0, 50.0, 10.0, 5.0, 1.0, 0.1)  # llama.cpp's KLD rows
DELTA_P_PERCENTILES = (99.9, 99.0, 95.0, 90.0, 75.0, 50.0, 25.0, 10.0, 5.0, 1.0, 0.1)


@dataclass(eq=False)
class Divergence:
    """Per-token comparison of a model with a base model over the same token ids.

    Arrays (one entry per token of every text, in order): ``kl``, ``reverse_kl``, ``js``,
    ``logprob_base``, ``logprob``, ``delta_p``, ``entropy_base``, ``entropy`` (float32, nats),
    ``top1_base``, ``top1`` (ids), ``same_top1`` (bool), ``top_k_overlap`` (the fraction of the
    base's top-k ids that are also in the model's), ``rank_base``, ``rank``, ``doc`` (which text),
    ``token_ids``, ``offsets`` [n, 2] into that text, and the top-k ids / logprobs / strings of both.

    Example:
        >>> d = lightlens.divergence("Hello world! Hello again.", base=tiny, model=tiny)
        >>> len(d) == len(d.kl), float(np.nanmax(d.kl)), d.stats()["same_top1"]
        (True, 0.0, 100.0)
    """

    texts: list[str]
    tokens: list[str]
    token_ids: np.ndarray
    offsets: np.ndarray
    doc: np.ndarray
    kl: np.ndarray
    reverse_kl: np.ndarray
    js: np.ndarray
    logprob_base: np.ndarray
    logprob: np.ndarray
    delta_p: np.ndarray
    entropy_base: np.ndarray
    entropy: np.ndarray
    top1_base: np.ndarray
    top1: np.ndarray
    rank_base: np.ndarray
    rank: np.ndarray
    top_k_overlap: np.ndarray
    top_k_ids_base: np.ndarray
    top_k_logprobs_base: np.ndarray
    top_k_tokens_base: list[list[str]]
    top_k_ids: np.ndarray
    top_k_logprobs: np.ndarray
    top_k_tokens: list[list[str]]
    base_model: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    window: dict[str, Any] = field(default_factory=dict)
    bos: list[bool] = field(default_factory=list)
    exactness: str = "exact: float32 from both models' full distributions"

    def __post_init__(self) -> None:
        n = len(self.tokens)
        for name in FLOATS:
            setattr(self, name, np.asarray(getattr(self, name), dtype=np.float32))
        for name in INTS:
            setattr(self, name, np.asarray(getattr(self, name), dtype=np.int64))
        self.offsets = np.asarray(self.offsets, dtype=np.int64).reshape(n, 2)
        for name in TOP_K:
            dtype = np.int64 if "ids" in name else np.float32
            arr = np.asarray(getattr(self, name), dtype=dtype)
            setattr(self, name, arr.reshape(n, -1) if n else arr.reshape(0, 0))
        for name in (*FLOATS, *INTS):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} entries for {n} tokens")

    # ---- derived ------------------------------------------------------------------------
    @property
    def same_top1(self) -> np.ndarray:
        """Whether both models' most likely next token is the same (False where unscored)."""
        return (self.top1_base == self.top1) & self.scored

    @property
    def scored(self) -> np.ndarray:
        """The tokens both models predicted (a context before them)."""
        return ~np.isnan(self.kl)

    @property
    def num_scored(self) -> int:
        """How many tokens were compared (the denominator of every mean)."""
        return int(self.scored.sum())

    @property
    def k(self) -> int:
        """How many alternatives each token keeps per model (``top_k``)."""
        return int(self.top_k_ids.shape[1])

    def __len__(self) -> int:
        return len(self.tokens)

    def text_slice(self, i: int) -> slice:
        """The tokens of text ``i``.

        >>> d = lightlens.divergence(["Hello world", "Hello"], base=tiny, model=tiny)
        >>> d.tokens[d.text_slice(1)]
        ['Hello']
        """
        idx = np.flatnonzero(self.doc == i)
        return slice(int(idx[0]), int(idx[-1]) + 1) if len(idx) else slice(0, 0)

    def stats(self) -> dict[str, float]:
        """llama.cpp's ``--kl-divergence`` aggregates over every compared token, in float64.

        Keys: ``num_tokens``, ``num_scored``; ``ppl_base``, ``ppl`` (± ``_err``), ``ln_ppl_ratio``
        (ln(PPL(Q)/PPL(base)) = mean(−logprob) − mean(−logprob_base)) ± ``ln_ppl_ratio_err``,
        ``ppl_ratio``, ``cor_logprob`` (Pearson correlation of the per-token logprobs);
        ``mean_kl`` ± ``mean_kl_err`` (standard error), ``max_kl``, ``kl_p99.9`` … ``kl_p0.1``
        (numpy's linear percentiles), ``median_kl``, ``min_kl``; ``mean_reverse_kl``, ``mean_js``;
        ``mean_delta_p`` ± err, ``rms_delta_p`` ± err, ``max_delta_p``, ``delta_p_p99.9`` …,
        ``min_delta_p`` (probabilities, not %); ``same_top1`` (%) ± ``same_top1_err``;
        ``mean_top_k_overlap``.

        >>> s = lightlens.divergence("Hello world! Hello again.", base=tiny, model=tiny).stats()
        >>> s["mean_kl"], s["ln_ppl_ratio"], s["cor_logprob"]
        (0.0, 0.0, 1.0)
        """
        ok = self.scored
        n = int(ok.sum())
        f = lambda a: a[ok].astype(np.float64)  # noqa: E731
        kl, dp = f(self.kl), f(self.delta_p)
        nll_b, nll_q = -f(self.logprob_base), -f(self.logprob)
        out: dict[str, float] = {"num_tokens": len(self), "num_scored": n}
        if not n:
            return out
        sem = lambda a: float(a.std(ddof=1) / math.sqrt(len(a))) if len(a) > 1 else math.nan  # noqa: E731
        ppl_b, ppl_q = math.exp(nll_b.mean()), math.exp(nll_q.mean())
        out.update(ppl_base=ppl_b, ppl_base_err=ppl_b * sem(nll_b), ppl=ppl_q, ppl_err=ppl_q * sem(nll_q))
        diff = nll_q - nll_b
        out.update(ln_ppl_ratio=float(diff.mean()), ln_ppl_ratio_err=sem(diff), ppl_ratio=ppl_q / ppl_b)
        out["cor_logprob"] = _correlation(nll_b, nll_q)
        out.update(mean_kl=float(kl.mean()), mean_kl_err=sem(kl), max_kl=float(kl.max()))
        for q in PERCENTILES:
            out[f"kl_p{q:g}"] = float(np.percentile(kl, q))
        out.update(median_kl=out["kl_p50"], min_kl=float(kl.min()),
                   mean_reverse_kl=float(f(self.reverse_kl).mean()), mean_js=float(f(self.js).mean()))
        out.update(mean_delta_p=float(dp.mean()), mean_delta_p_err=sem(dp))
        rms = math.sqrt(float((dp * dp).mean()))
        out.update(rms_delta_p=rms, rms_delta_p_err=sem(dp * dp) / (2 * rms) if rms > 0 else 0.0,
                   max_delta_p=float(dp.max()))
        for q in DELTA_P_PERCENTILES:
            out[f"delta_p_p{q:g}"] = float(np.percentile(dp, q))
        out["min_delta_p"] = float(dp.min())
        same = self.same_top1[ok].astype(np.float64)
        out.update(same_top1=100.0 * float(same.mean()),
                   same_top1_err=100.0 * math.sqrt(same.mean() * (1 - same.mean()) / max(n - 1, 1)))
        if self.k:
            out["mean_top_k_overlap"] = float(f(self.top_k_overlap).mean())
        return out

    # ---- tables ---------------------------------------------------------------------------
    def report(self) -> str:
        """The aggregates laid out like llama.cpp's ``llama-perplexity --kl-divergence`` output
        (what ``lightlens divergence`` prints).

        >>> print(lightlens.divergence("Hello world! Hello again.", base=tiny, model=tiny).report())
        ... # doctest: +ELLIPSIS
        ====== Perplexity statistics ======
        Mean PPL(Q)                   : ...
        Same top p: 100.000 ± 0.000 %
        """
        s = self.stats()
        if not s["num_scored"]:
            return "no token was compared (each text is one token with no context)"
        pct = lambda x: 100.0 * x  # noqa: E731
        lines = [
            "====== Perplexity statistics ======",
            f"Mean PPL(Q)                   : {s['ppl']:10.6f} ± {s['ppl_err']:10.6f}",
            f"Mean PPL(base)                : {s['ppl_base']:10.6f} ± {s['ppl_base_err']:10.6f}",
            f"Cor(ln(PPL(Q)), ln(PPL(base))): {pct(s['cor_logprob']):6.2f}%",
            f"Mean ln(PPL(Q)/PPL(base))     : {s['ln_ppl_ratio']:10.6f} ± {s['ln_ppl_ratio_err']:10.6f}",
            f"Mean PPL(Q)/PPL(base)         : {s['ppl_ratio']:10.6f}",
            "",
            "====== KL divergence statistics ======",
            f"Mean    KLD: {s['mean_kl']:10.6f} ± {s['mean_kl_err']:10.6f}",
            f"Maximum KLD: {s['max_kl']:10.6f}",
            *[f"{_pct_label(q)}   KLD: {s[f'kl_p{q:g}']:10.6f}" for q in PERCENTILES],
            f"Minimum KLD: {s['min_kl']:10.6f}",
            "",
            "====== Token probability statistics ======",
            f"Mean    Δp: {pct(s['mean_delta_p']):7.3f} ± {pct(s['mean_delta_p_err']):5.3f} %",
            f"Maximum Δp: {pct(s['max_delta_p']):7.3f}%",
            *[f"{_pct_label(q)}   Δp: {pct(s[f'delta_p_p{q:g}']):7.3f}%" for q in DELTA_P_PERCENTILES],
            f"Minimum Δp: {pct(s['min_delta_p']):7.3f}%",
            f"RMS Δp    : {pct(s['rms_delta_p']):7.3f} ± {pct(s['rms_delta_p_err']):5.3f} %",
            f"Same top p: {s['same_top1']:7.3f} ± {s['same_top1_err']:5.3f} %",
        ]
        return "\n".join(line.replace("50.0%   ", "Median  ") for line in lines)

    def to_pandas(self):
        """One row per token: text index, token, both logprobs, Δp, KL both ways, JS, entropies,
        top-1 ids and whether they agree.

        >>> df = lightlens.divergence("Hello world! Hello again.", base=tiny, model=tiny).to_pandas()
        >>> list(df.columns[:6]), bool(df["same_top1"].iloc[1:].all())
        (['doc', 'token', 'token_id', 'start', 'end', 'kl'], True)
        """
        import pandas as pd

        cols = {"doc": self.doc, "token": self.tokens, "token_id": self.token_ids,
                "start": self.offsets[:, 0], "end": self.offsets[:, 1]}
        for name in ("kl", "reverse_kl", "js", "logprob_base", "logprob", "delta_p", "entropy_base",
                     "entropy", "top1_base", "top1", "rank_base", "rank"):
            cols[name] = getattr(self, name)
        cols["same_top1"] = self.same_top1
        if self.k:
            cols["top_k_overlap"] = self.top_k_overlap
            cols["top_k_tokens_base"] = self.top_k_tokens_base
            cols["top_k_tokens"] = self.top_k_tokens
        return pd.DataFrame(cols)

    def __repr__(self) -> str:
        s = self.stats()
        if not s["num_scored"]:
            return f"Divergence(texts={len(self.texts)}, tokens={len(self)}, scored=0)"
        return (f"Divergence(base={self.base_model.get('name', '?')!r}, model={self.model.get('name', '?')!r}, "
                f"texts={len(self.texts)}, tokens={len(self)}, scored={s['num_scored']}, "
                f"mean_kl={s['mean_kl']:.4g}, same_top1={s['same_top1']:.2f}%, rms_delta_p={s['rms_delta_p']:.4g})")

    # ---- views ------------------------------------------------------------------------------
    def heatmap(self, metric: str = "kl", *, text: int | None = None, **options):
        """The texts coloured by ``metric`` ("kl", "abs_delta_p", "js", "reverse_kl"); hover a token
        for both probabilities and both top-k lists. See :func:`lightlens.viz.divergence_html`.

        >>> hm = lightlens.divergence("Hello world! Hello again.", base=tiny, model=tiny).heatmap("abs_delta_p")
        >>> hm._repr_html_().count("data-tip=") > 0
        True
        """
        from ..viz.divergence import divergence_html
        from ..viz.heatmap import Heatmap

        return Heatmap(divergence_html(self, metric=metric, text=text, **options))

    def _repr_html_(self) -> str:
        from ..viz.divergence import divergence_html

        return divergence_html(self)

    def plot(self, kind: str = "all", **options):
        """Matplotlib plots: "kl_cdf" (the KL distribution, log x), "delta_p" (histogram),
        "kl" (per token along the text) or "all" (the three side by side; returns the figure).

        >>> fig = lightlens.divergence("Hello world! Hello again.", base=tiny, model=tiny).plot()
        >>> len(fig.axes)
        3
        """
        from ..viz import divergence as views

        draw = {"kl_cdf": views.plot_kl_cdf, "delta_p": views.plot_delta_p, "kl": views.plot_kl_along,
                "all": views.plot_divergence}
        if kind not in draw:
            raise ValueError(f"unknown plot {kind!r}: choose one of {', '.join(draw)}")
        return draw[kind](self, **options)

    # ---- saving -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN becomes None, ±inf the strings "inf"/"-inf").

        >>> d = lightlens.divergence("Hello world", base=tiny, model=tiny).to_dict()
        >>> d["format"], d["kl"][0] is None
        ('lightlens.Divergence/1', True)
        """
        d: dict[str, Any] = {name: getattr(self, name) for name in _META}
        d["tokens"] = list(self.tokens)
        d["top_k_tokens_base"] = [list(t) for t in self.top_k_tokens_base]
        d["top_k_tokens"] = [list(t) for t in self.top_k_tokens]
        d["offsets"] = self.offsets.tolist()
        for name in (*FLOATS, *INTS, *TOP_K):
            arr = getattr(self, name)
            d[name] = _encode_floats(arr.tolist()) if arr.dtype.kind == "f" else arr.tolist()
        d["format"] = FORMAT
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Divergence":
        """Inverse of :meth:`to_dict`."""
        if d.get("format") != FORMAT:
            raise ValueError(f"not a lightlens Divergence (missing format {FORMAT!r})")
        kw = {name: d[name] for name in (*_META, "tokens", "top_k_tokens_base", "top_k_tokens", "offsets")}
        for name in (*FLOATS, *TOP_K):
            kw[name] = np.array(_decode_floats(d[name])) if "logprobs" in name or name in FLOATS else d[name]
        for name in INTS:
            kw[name] = d[name]
        n = len(d["tokens"])
        for name in TOP_K:
            kw[name] = np.array(kw[name], dtype=np.int64 if "ids" in name else np.float32).reshape(n, -1) \
                if n else np.zeros((0, 0))
        return cls(**kw)

    def save(self, path: str | Path) -> Path:
        """Save as ``.json`` or ``.parquet`` (chosen by the suffix); never pickle.

        >>> d = lightlens.divergence("Hello world! Hello again.", base=tiny, model=tiny, top_k=2)
        >>> Divergence.load(d.save(tmp / "d.parquet")).stats() == d.stats()
        True
        """
        return save_by_suffix(self, path, _write_parquet)

    @classmethod
    def load(cls, path: str | Path) -> "Divergence":
        """Load a result written by :meth:`save` (needs no torch)."""
        return load_by_suffix(cls, path, _read_parquet)


def _pct_label(q: float) -> str:
    return f"{q:4.1f}%" if q != 50.0 else "50.0%"


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation (1.0 for two identical constant series, NaN for one constant)."""
    if len(a) < 2:
        return math.nan
    if np.array_equal(a, b):
        return 1.0
    sa, sb = a.std(), b.std()
    if sa == 0 or sb == 0:
        return math.nan
    return float(((a - a.mean()) * (b - b.mean())).mean() / (sa * sb))


def _encode_floats(x):
    if isinstance(x, list):
        return [_encode_floats(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None if math.isnan(x) else ("inf" if x > 0 else "-inf")
    return x


def _decode_floats(x):
    if isinstance(x, list):
        return [_decode_floats(v) for v in x]
    return math.nan if x is None else float(x)


def _write_parquet(d: Divergence, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    meta = {name: getattr(d, name) for name in _META}
    meta.update(format=FORMAT, top_k=d.k)
    cols: dict[str, Any] = {"token": list(d.tokens), "start": d.offsets[:, 0], "end": d.offsets[:, 1]}
    for name in (*FLOATS, *INTS):
        cols[name] = getattr(d, name)
    for name in TOP_K:
        arr = getattr(d, name)
        cols[name] = pa.array(arr.tolist(), type=pa.list_(pa.int64() if "ids" in name else pa.float32()))
    cols["top_k_tokens_base"] = pa.array([list(t) for t in d.top_k_tokens_base], type=pa.list_(pa.string()))
    cols["top_k_tokens"] = pa.array([list(t) for t in d.top_k_tokens], type=pa.list_(pa.string()))
    table = pa.table(cols).replace_schema_metadata({"lightlens": json.dumps(meta, ensure_ascii=False)})
    pq.write_table(table, path)


def _read_parquet(cls, path: Path) -> Divergence:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    raw = (table.schema.metadata or {}).get(b"lightlens")
    meta = json.loads(raw) if raw else {}
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} is a Parquet file but not one written by Divergence.save")
    k, cols = meta.pop("top_k"), table.to_pydict()
    n = len(cols["token"])
    kw = {name: meta[name] for name in _META}
    for name in TOP_K:
        kw[name] = np.array(cols[name], dtype=np.int64 if "ids" in name else np.float32).reshape(n, k)
    return cls(**kw, tokens=cols["token"], offsets=np.stack([cols["start"], cols["end"]], -1) if n else np.zeros((0, 2)),
               top_k_tokens_base=cols["top_k_tokens_base"], top_k_tokens=cols["top_k_tokens"],
               **{name: np.array(cols[name], dtype=np.float32) for name in FLOATS},
               **{name: cols[name] for name in INTS})
