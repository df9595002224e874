"""Two models over the same token ids, window by window: per-token divergence and full distributions.

Both models see the same ids and the same windows (the Hugging Face sliding-window layout of
:mod:`..text.windows`, every token compared once). For each batch of windows each model gives
the predicting rows' float32 logits a block of rows at a time (from the last hidden state and
the verified LM head, or from the model's logits for other heads), and the two blocks go
through :func:`..kernels.divergence_stats` (Triton on CUDA, chunked torch elsewhere). Memory is
O(window + block · V): no [T, V] float32 array exists for a whole text, whatever its length.

A base can also be a file of saved distributions (:func:`save_distributions`), read a block of
rows at a time from a memory map.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..kernels.divergence import divergence_stats
from ..kernels.workspace import release, workspace
from ..options import check_bos, check_top_k, check_window_options
from ..results.divergence import Divergence
from ..text.tokens import Encoding, encode_many
from ..text.windows import Window, plan_windows
from .allocator import keep_freed_blocks
from .scoring import batch_inputs, gc_paused, make_batches, picked_hidden, picked_logits, window_sizes

BLOCK_BYTES = 32 * 2**20  # float32 logits of one block of rows, per model (CPU); GPUs take 32x more
FILE_FORMAT = "lightlens.distributions/1"
BF16_NOTE = ("bfloat16 base file: each stored log-probability is rounded by at most 2^-9 of its size, "
             "so to first order each token's KL is off by at most 2^-9·E_P[|log P|·|log P − log Q − KL|] "
             "(about 1e-3 of the entropy-weighted log-ratio; save with dtype='float32' for exact values)")


class _Text:
    """One text being compared: its encoding, windows, and the arrays its windows fill in."""

    def __init__(self, enc: Encoding, windows: list[Window], k: int):
        n = len(enc.offsets)
        self.enc, self.windows, self.shift = enc, windows, int(enc.bos)
        self.f = {name: np.full(n, np.nan, np.float32) for name in
                  ("kl", "reverse_kl", "js", "logprob_base", "logprob", "entropy_base", "entropy")}
        self.i = {name: np.full(n, -1, np.int64) for name in ("top1_base", "top1")}
        self.i.update(rank_base=np.zeros(n, np.int64), rank=np.zeros(n, np.int64))
        self.top = {"ids_base": np.full((n, k), -1, np.int64), "ids": np.full((n, k), -1, np.int64),
                    "lp_base": np.full((n, k), np.nan, np.float32), "lp": np.full((n, k), np.nan, np.float32)}

    def fill(self, w: Window, s, rows: slice) -> None:
        j = slice(w.first - self.shift, w.last - self.shift)
        for name, src in (("kl", s.kl), ("reverse_kl", s.reverse_kl), ("js", s.js), ("logprob_base", s.logprob_p),
                          ("logprob", s.logprob_q), ("entropy_base", s.entropy_p), ("entropy", s.entropy_q)):
            self.f[name][j] = src[rows].numpy()
        for name, src in (("top1_base", s.top1_p), ("top1", s.top1_q), ("rank_base", s.rank_p), ("rank", s.rank_q)):
            self.i[name][j] = src[rows].numpy()
        for name, src in (("ids_base", s.top_k_ids_p), ("ids", s.top_k_ids_q), ("lp_base", s.top_k_logprobs_p),
                          ("lp", s.top_k_logprobs_q)):
            self.top[name][j] = src[rows].numpy()


def check_same_tokens(base, model) -> None:
    """Refuse two models whose token ids do not mean the same tokens (the comparison is per token)."""
    a, b = base.tokenizer, model.tokenizer
    if a is not b and a.get_vocab() != b.get_vocab():
        raise ValueError(
            f"{base.name!r} and {model.name!r} have different vocabularies, so their per-token "
            "distributions cannot be compared: use lightlens.compare(lightlens.score(text, model=a), "
            "lightlens.score(text, model=b)), which compares per character (bits per byte)")
    if base.vocab_size != model.vocab_size:
        raise ValueError(
            f"{base.name!r} predicts {base.vocab_size} ids and {model.name!r} {model.vocab_size}: the "
            "distributions are over different vocabularies; use lightlens.compare (per character) instead")


def _blocks(lm) -> int:
    """Rows of float32 logits per block: :data:`BLOCK_BYTES` of them (32x on a GPU)."""
    budget = BLOCK_BYTES * (1 if lm.device.type == "cpu" else 32)
    return max(1, budget // (4 * lm.vocab_size))


@torch.inference_mode()
def row_logits(lm, batch, *, method: str = "auto", buffer: str | None = None) -> Callable[[int, int], torch.Tensor]:
    """The logits of a batch's predicting rows, as a function of a row range ``(a, b)`` → [b - a, V]:
    from the last hidden state through the verified head (float32), or from the model's logits
    (its dtype) when the head is of another kind or ``method="logits"``. With ``buffer``, each
    block is written into that reused :func:`~lightlens.kernels.workspace.workspace` (so it is
    valid only until the next call: for a caller that is done with a block before the next)."""
    head = lm.head if method != "logits" else None
    if head is not None:
        hidden = picked_hidden(lm, batch, head)
        if buffer is None:
            return lambda a, b: head.logits(hidden[a:b])
        v = head.weight.shape[0]
        return lambda a, b: head.logits(hidden[a:b], out=workspace(buffer, (b - a) * v, device=hidden.device)
                                        .view(b - a, v))
    logits = picked_logits(lm, batch)
    return lambda a, b: logits[a:b]


@gc_paused()
@torch.inference_mode()
def divergence_texts(
    base,
    model,
    texts: Sequence[str],
    *,
    top_k: int = 5,
    max_length: int | None = None,
    stride: int | None = None,
    bos: bool | None = None,
    batch_tokens: int | None = None,
    progress: bool | None = None,
    method: str = "auto",
) -> Divergence:
    """Compare ``model`` with ``base`` (two :class:`LanguageModel`, or a base
    :class:`DistributionFile`) on every token of ``texts``.

    >>> d = divergence_texts(tiny, tiny, ["Hello world", "Hello again, world."], top_k=2)
    >>> len(d), float(np.nanmax(np.abs(d.kl)))
    (7, 0.0)
    """
    if isinstance(texts, str) or not len(texts):
        raise ValueError("give a non-empty list of texts")
    top_k = check_top_k(top_k)
    max_length, stride = check_window_options(max_length, stride)
    bos = check_bos(bos)
    from_file = isinstance(base, DistributionFile)
    if from_file:
        texts, (length, step), bos = base.check_against(model, texts, max_length, stride, bos)
    else:
        check_same_tokens(base, model)
        length, step = window_sizes(min(base.context_length, model.context_length), max_length, stride)
    encs = encode_many(model.tokenizer, list(texts), bos=bos)
    if not from_file:
        base_encs = encode_many(base.tokenizer, list(texts), bos=bos)
        for i, (a, b) in enumerate(zip(base_encs, encs)):
            if not np.array_equal(a.ids, b.ids):
                raise ValueError(f"the two tokenizers give text {i} different token ids: use lightlens.compare "
                                 "(per character) for models whose tokenizers differ")
    docs = [_Text(enc, plan_windows(len(enc.ids), max_length=length, stride=step), top_k) for enc in encs]
    jobs = sorted(((d, w) for d in docs for w in d.windows), key=lambda j: j[1].begin - j[1].end)
    if model.device.type == "cpu":
        keep_freed_blocks()  # two forward passes a window: reuse their freed blocks (:mod:`.allocator`)
    if batch_tokens is None:
        batch_tokens = 2048 if model.device.type == "cpu" else 32768
    batches = make_batches(jobs, len(jobs), batch_tokens)
    total = sum(w.last - w.first for _, w in jobs)
    rows = _blocks(model)
    try:
        show = len(batches) > 1 if progress is None else progress
        with tqdm(total=total, unit="tok", desc="comparing", disable=not show) as bar:
            for batch in batches:
                q_batch = batch_inputs(model, batch)
                p_rows = (base.rows(batch) if from_file else
                          row_logits(base, batch_inputs(base, batch), method=method, buffer="divergence.logits_p"))
                q_rows = row_logits(model, q_batch, method=method, buffer="divergence.logits_q")
                targets = q_batch.targets
                n = len(targets)
                parts = [divergence_stats(p_rows(a, min(a + rows, n)).to(targets.device), q_rows(a, min(a + rows, n)),
                                          targets[a : a + rows], top_k) for a in range(0, n, rows)]
                stats = type(parts[0])(*(torch.cat(c).cpu() for c in zip(*parts)))
                start = 0
                for doc, w in batch:
                    doc.fill(w, stats, slice(start, start + w.last - w.first))
                    start += w.last - w.first
                bar.update(n)
    finally:  # the blocks' work buffers (~100 MB at V = 49,152) are not kept after the call
        release("divergence.")
    window = {"max_length": length, "stride": step,
              "num_windows": [len(d.windows) for d in docs], "windowed": any(len(d.windows) > 1 for d in docs)}
    info_p = base.info() if not from_file else base.info
    return _result(model, docs, info_p, model.info(), window,
                   base.exactness if from_file else "exact: float32 from both models' full distributions")


def _result(model, docs: list[_Text], info_p: dict, info_q: dict, window: dict, exactness: str) -> Divergence:
    cat = lambda get: np.concatenate([get(d) for d in docs])  # noqa: E731
    ids_p, ids_q = cat(lambda d: d.top["ids_base"]), cat(lambda d: d.top["ids"])
    k = ids_p.shape[1]
    overlap = ((ids_p[:, :, None] == ids_q[:, None, :]) & (ids_p[:, :, None] >= 0)).any(2).sum(1) / k if k \
        else np.full(len(ids_p), np.nan)
    logprob_p, logprob_q = cat(lambda d: d.f["logprob_base"]), cat(lambda d: d.f["logprob"])
    scored = ~np.isnan(cat(lambda d: d.f["kl"]))
    overlap = np.where(scored, overlap, np.nan)
    strings = model.token_strings(np.concatenate([ids_p, ids_q])).tolist()
    return Divergence(
        texts=[d.enc.text for d in docs], tokens=[t for d in docs for t in d.enc.tokens],
        token_ids=cat(lambda d: d.enc.text_ids), offsets=cat(lambda d: d.enc.offsets),
        doc=np.concatenate([np.full(len(d.enc.offsets), i) for i, d in enumerate(docs)]),
        **{name: cat(lambda d, n=name: d.f[n]) for name in ("kl", "reverse_kl", "js", "entropy_base", "entropy")},
        logprob_base=logprob_p, logprob=logprob_q,
        delta_p=(np.exp(logprob_q.astype(np.float64)) - np.exp(logprob_p.astype(np.float64))).astype(np.float32),
        **{name: cat(lambda d, n=name: d.i[n]) for name in ("top1_base", "top1", "rank_base", "rank")},
        top_k_overlap=overlap, top_k_ids_base=ids_p, top_k_logprobs_base=cat(lambda d: d.top["lp_base"]),
        top_k_tokens_base=strings[: len(ids_p)], top_k_ids=ids_q, top_k_logprobs=cat(lambda d: d.top["lp"]),
        top_k_tokens=strings[len(ids_p):], base_model=dict(info_p), model=dict(info_q), window=window,
        bos=[bool(d.enc.bos) for d in docs], exactness=exactness,
    )


# ---- full distributions ---------------------------------------------------------------------
@torch.inference_mode()
def distributions(
    lm,
    text: str,
    *,
    positions: Sequence[int] | None = None,
    max_length: int | None = None,
    stride: int | None = None,
    bos: bool | None = None,
    method: str = "auto",
) -> Iterator[torch.Tensor]:
    """The float32 log-probability rows [n, V] that predict the tokens at ``positions`` of
    ``text`` (as in ScoreResult: row ``i`` is the distribution token ``i`` was drawn from, so
    ``row[token_ids[i]] == logprobs[i]``), in increasing position order, a block at a time.
    ``positions=None``: every scored token (all but the first without BOS).

    >>> rows = list(distributions(tiny, "Hello world! Hello again.", positions=[1, 3]))
    >>> torch.cat(rows).shape[0], bool(torch.allclose(torch.cat(rows).exp().sum(1), torch.ones(2)))
    (2, True)
    """
    max_length, stride = check_window_options(max_length, stride)
    enc = encode_many(lm.tokenizer, [text], bos=check_bos(bos))[0]
    length, step = window_sizes(lm.context_length, max_length, stride)
    windows = plan_windows(len(enc.ids), max_length=length, stride=step)
    first = 1 - int(enc.bos)  # the first text token with a context
    n = len(enc.offsets)
    want = np.arange(first, n) if positions is None else np.unique(np.asarray(list(positions), dtype=np.int64))
    if len(want) and (want.min() < first or want.max() >= n):
        bad = int(want[(want < first) | (want >= n)][0])
        raise ValueError(f"position {bad} has no distribution: the text has {n} tokens"
                         + (" and token 0 has no context (no BOS)" if first else "")
                         + f"; give positions in [{first}, {n})")
    rows = _blocks(lm)
    doc = _Text(enc, windows, 0)
    for w in windows:
        lo, hi = w.first - doc.shift, w.last - doc.shift  # text positions this window predicts
        pick = want[(want >= lo) & (want < hi)] - lo
        if not len(pick):
            continue
        get = row_logits(lm, batch_inputs(lm, [(doc, w)]), method=method)
        for a in range(0, len(pick), rows):
            sel = pick[a : a + rows]
            block = get(int(sel[0]), int(sel[-1]) + 1)[torch.from_numpy(sel - sel[0]).to(lm.device)]
            yield block.float().log_softmax(-1).cpu()


def save_distributions(lm, text: str, path, *, dtype: str = "float32", max_length: int | None = None,
                       stride: int | None = None, bos: bool | None = None, method: str = "auto") -> Path:
    """Write every scored token's float32 (or bfloat16) log-probability row of ``text`` to a
    safetensors file (memory-mappable: ``safetensors.safe_open``), with what identifies it: the
    token ids, the model, the windows. ``divergence(text, base=path, model=...)`` reads it.

    >>> p = save_distributions(tiny, "Hello world! Hello again.", tmp / "base.safetensors")
    >>> from safetensors import safe_open
    >>> with safe_open(p, "pt") as f: f.get_slice("logprobs").get_shape()
    [5, 400]
    """
    if dtype not in ("float32", "bfloat16"):
        raise ValueError(f"dtype must be 'float32' or 'bfloat16', got {dtype!r}")
    from safetensors.torch import save_file

    max_length, stride = check_window_options(max_length, stride)
    length, step = window_sizes(lm.context_length, max_length, stride)
    enc = encode_many(lm.tokenizer, [text], bos=check_bos(bos))[0]
    rows = torch.cat(list(distributions(lm, text, max_length=length, stride=step, bos=enc.bos, method=method)))
    meta = {"format": FILE_FORMAT, "model": json.dumps(lm.info()), "dtype": dtype, "vocab_size": str(lm.vocab_size),
            "text_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(), "bos": str(bool(enc.bos)),
            "max_length": str(length), "stride": str(step), "first": str(1 - int(enc.bos))}
    path = Path(path)
    save_file({"logprobs": rows.to(getattr(torch, dtype)).contiguous(), "ids": torch.from_numpy(enc.ids)},
              str(path), metadata=meta)
    return path


class DistributionFile:
    """A file written by :func:`save_distributions`, used as the base of a comparison: rows are
    read a block at a time from the memory-mapped file (bfloat16 rows converted to float32)."""

    def __init__(self, path):
        from safetensors import safe_open

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"no distributions file at {self.path}: write one with "
                                    "lm.save_distributions(text, path)")
        try:
            self._file = safe_open(str(self.path), "pt")
            meta = self._file.metadata() or {}
        except Exception as e:  # noqa: BLE001 - anything that is not a safetensors file
            raise ValueError(f"{self.path} is not a safetensors file of distributions ({e})") from None
        if meta.get("format") != FILE_FORMAT:
            raise ValueError(f"{self.path} was not written by save_distributions (format {meta.get('format')!r})")
        self.meta = meta
        self.info = {**json.loads(meta["model"]), "file": self.path.name, "file_dtype": meta["dtype"]}
        self.ids = self._file.get_tensor("ids").numpy()
        self._rows = self._file.get_slice("logprobs")
        self.first = int(meta["first"])
        self.exactness = (BF16_NOTE if meta["dtype"] == "bfloat16"
                          else "exact: float32 distributions of the base (saved) and of the model")

    def check_against(self, model, texts, max_length, stride, bos):
        """(texts, (window, stride), bos) after checking that this file holds ``texts`` (one text)
        under ``model``'s tokenizer and vocabulary, with the windows it was saved with."""
        texts = list(texts)
        if len(texts) != 1:
            raise ValueError(f"a distributions file holds one text; got {len(texts)} texts: compare them one at a time")
        text = texts[0]
        if hashlib.sha256(text.encode("utf-8")).hexdigest() != self.meta["text_sha256"]:
            raise ValueError(f"{self.path.name} holds the distributions of another text: save the base's "
                             "distributions of this text (lm.save_distributions(text, path))")
        if int(self.meta["vocab_size"]) != model.vocab_size:
            raise ValueError(f"{self.path.name} was saved from a model with {self.meta['vocab_size']} ids; "
                             f"{model.name!r} has {model.vocab_size}: the vocabularies differ (use lightlens.compare)")
        saved_bos = self.meta["bos"] == "True"
        if bos is not None and bool(bos) != saved_bos:
            raise ValueError(f"{self.path.name} was saved with bos={saved_bos}; pass bos={saved_bos} or None")
        ids = encode_many(model.tokenizer, [text], bos=saved_bos)[0].ids
        if not np.array_equal(ids, self.ids):
            raise ValueError(f"{model.name!r} tokenizes the text differently from the model that saved "
                             f"{self.path.name}: the file is for another model's tokenizer (use lightlens.compare)")
        window = (int(self.meta["max_length"]), int(self.meta["stride"]))
        if (max_length is not None and max_length != window[0]) or (stride is not None and stride != window[1]):
            raise ValueError(f"{self.path.name} was saved with max_length={window[0]}, stride={window[1]}: "
                             "compare with the same windows (leave max_length and stride unset)")
        if model.context_length < window[0]:
            raise ValueError(f"{self.path.name} used windows of {window[0]} tokens, longer than "
                             f"{model.name!r}'s context of {model.context_length}")
        return texts, window, saved_bos

    def rows(self, batch) -> Callable[[int, int], torch.Tensor]:
        """The saved rows of a batch's targets, as a function of a row range (float32)."""
        shift = int(self.meta["bos"] == "True")  # ids hold the BOS, rows start at text position `first`
        index = np.concatenate([np.arange(w.first, w.last) for _, w in batch]) - shift - self.first

        def get(a: int, b: int) -> torch.Tensor:
            sel = index[a:b]
            block = self._rows[int(sel[0]) : int(sel[-1]) + 1]
            return block[torch.from_numpy(sel - sel[0])].float()

        return get
