"""The scoring engine: texts → windows → padded batches → model → token statistics.

Windows of all texts are sorted by length and run in padded batches (right padding,
so a pad never precedes a real token and never reaches a result). Only the rows that
predict a target are turned into statistics, from the last hidden state through the
LM head chunk by chunk (or from the logits for heads we do not model); the float32
log-softmax of a whole sequence never exists.
"""
from __future__ import annotations

import gc
import inspect
from contextlib import contextmanager
import warnings
from typing import NamedTuple, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import NoScoredTokensWarning
from ..kernels import TokenStats, token_stats
from ..options import check_bos, check_int, check_top_k, check_window_options
from .head import last_hidden
from ..results.score_result import ScoreResult
from ..text.tokens import Encoding, encode_many
from ..text.windows import Window, check_window, plan_windows


METHODS = ("auto", "fused", "logits")


def check_method(method: str) -> str:
    """Validate the ``method`` option: "fused" computes the statistics from the last hidden
    state and the LM head (the [T, V] logits never exist), "logits" from the model's logits,
    "auto" takes the fused path whenever the model's head was verified (:mod:`.head`)."""
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    return method


class _Doc:
    """One text being scored: its encoding, windows, and the arrays windows fill in (its slices
    of arrays made once for all texts: see :meth:`many`)."""

    def __init__(self, enc: Encoding, windows: list[Window], arrays: dict[str, np.ndarray]):
        self.enc, self.windows, self.shift = enc, windows, int(enc.bos)
        self.logprobs, self.entropy, self.logsumexp = arrays["logprobs"], arrays["entropy"], arrays["logsumexp"]
        self.ranks, self.top_ids, self.top_logprobs = arrays["ranks"], arrays["top_ids"], arrays["top_logprobs"]

    @classmethod
    def many(cls, encodings: Sequence[Encoding], windows: list[list[Window]], top_k: int) -> list["_Doc"]:
        """One :class:`_Doc` per encoding, their arrays slices of six allocated once (NaN / 0 / -1
        until filled). The results' arrays are these slices: one result kept alive keeps the
        arrays of every text of its call (~100 bytes a token at k = 5)."""
        ends = np.cumsum([len(enc.offsets) for enc in encodings]).tolist()
        n = ends[-1] if ends else 0
        whole = {"logprobs": np.full(n, np.nan, np.float32), "entropy": np.full(n, np.nan, np.float32),
                 "logsumexp": np.full(n, np.nan, np.float32), "ranks": np.zeros(n, np.int64),
                 "top_ids": np.full((n, top_k), -1, np.int64), "top_logprobs": np.full((n, top_k), np.nan, np.float32)}
        return [cls(enc, w, {name: a[start:end] for name, a in whole.items()})
                for enc, w, start, end in zip(encodings, windows, [0, *ends], ends)]

    def fill(self, w: Window, stats, rows: slice) -> None:
        j = slice(w.first - self.shift, w.last - self.shift)
        self.logprobs[j] = stats.logprob[rows]
        self.entropy[j] = stats.entropy[rows]
        self.logsumexp[j] = stats.logsumexp[rows]
        self.ranks[j] = stats.rank[rows]
        self.top_ids[j] = stats.top_k_ids[rows]
        self.top_logprobs[j] = stats.top_k_logprobs[rows]

    def result(self, info: dict, window: dict, top_tokens: list[list[str]]) -> ScoreResult:
        enc = self.enc
        if not (~np.isnan(self.logprobs)).any():
            warnings.warn(
                f"no token of {enc.text[:40]!r} could be scored (one token and no BOS): "
                "perplexity is NaN. Give a longer text, or pass bos=True if the model has a BOS token.",
                NoScoredTokensWarning,
                stacklevel=5,
            )
        return ScoreResult(
            text=enc.text, tokens=enc.tokens, token_ids=enc.text_ids, offsets=enc.offsets,
            logprobs=self.logprobs, entropy=self.entropy, ranks=self.ranks, logsumexp=self.logsumexp,
            top_k_ids=self.top_ids, top_k_logprobs=self.top_logprobs, top_k_tokens=top_tokens,
            model=dict(info), bos=enc.bos,
            window={**window, "num_windows": len(self.windows), "windowed": len(self.windows) > 1},
        )


def window_sizes(context: int, max_length: int | None, stride: int | None) -> tuple[int, int]:
    """The window (``max_length``, default: the model's context) and stride (default: half)."""
    length = context if max_length is None else max_length
    check_window(length, length if stride is None else stride)
    if length > context:
        raise ValueError(
            f"max_length={length} is longer than the model's context of {context} tokens: "
            f"pass max_length <= {context} (longer texts are windowed automatically)"
        )
    return length, stride if stride is not None else max(1, length // 2)


@contextmanager
def gc_paused():
    """No cyclic garbage collection inside: scoring many texts makes many small objects (arrays,
    strings) and no cycles, and each collection would walk them all, the model's too (10-15%
    of the time on many short texts)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def score_texts(
    lm,
    texts: Sequence[str],
    *,
    top_k: int = 5,
    max_length: int | None = None,
    stride: int | None = None,
    bos: bool | None = None,
    batch_size: int | None = None,
    batch_tokens: int | None = None,
    progress: bool | None = None,
    method: str = "auto",
) -> list[ScoreResult]:
    """Score each text with ``lm`` (a :class:`LanguageModel`); one result per text.

    A batch holds at most ``batch_tokens`` padded tokens (default 2,048 on CPU, where bigger
    batches only cost memory, and 32,768 on GPU) and, if given, at most ``batch_size`` windows.
    ``method``:
    ``"auto"``, ``"fused"`` (from hidden states) or ``"logits"``; see :func:`check_method`.

    >>> rs = score_texts(tiny, ["Hello world", "Hello again, world."], top_k=2)
    >>> [len(r) for r in rs], rs[0].top_k_ids.shape
    ([2, 5], (2, 2))
    """
    if isinstance(texts, str) or not len(texts):
        raise ValueError("give a non-empty list of texts (or one str to lightlens.score)")
    return score_encodings(lm, encode_many(lm.tokenizer, texts, bos=check_bos(bos)), top_k=top_k,
                           max_length=max_length, stride=stride, batch_size=batch_size,
                           batch_tokens=batch_tokens, progress=progress, method=method)


def encoding_of(lm, result: ScoreResult) -> Encoding:
    """A result's tokens as an :class:`Encoding` of exactly its ids (a generation's, never
    re-tokenised), BOS first when it had one.

    >>> e = encoding_of(tiny, tiny.score("Hello world"))
    >>> e.text_ids.tolist() == tiny.score("Hello world").token_ids.tolist()
    True
    """
    if len(result) == 0:
        raise ValueError("the result has no tokens to score")
    if (result.token_ids < 0).any():
        raise ValueError("the result has tokens without ids (a server that reports none): score its text instead")
    ids = np.concatenate([[lm.tokenizer.bos_token_id] if result.bos else [], result.token_ids]).astype(np.int64)
    return Encoding(result.text, ids, result.offsets, bool(result.bos))


@gc_paused()
def score_encodings(lm, encodings: Sequence[Encoding], *, top_k: int = 5, max_length: int | None = None,
                    stride: int | None = None, batch_size: int | None = None, batch_tokens: int | None = None,
                    progress: bool | None = None, method: str = "auto") -> list[ScoreResult]:
    """:func:`score_texts` of texts already turned into ids (each :class:`Encoding`'s ``ids``
    exactly, e.g. a generation's, never re-tokenised).

    >>> enc = Encoding("Hi!", np.array([5, 6]), np.array([[0, 2], [2, 3]]), bos=False)
    >>> score_encodings(tiny, [enc])[0].token_ids.tolist()
    [5, 6]
    """
    top_k = check_top_k(top_k)
    batch_size = check_int("batch_size", batch_size, minimum=1, none=True)
    max_length, stride = check_window_options(max_length, stride)
    check_method(method)
    if method == "fused" and lm.head is None:
        raise ValueError(
            f"method='fused' needs an LM head lightlens understands; {lm.name!r} has another kind: "
            "use method='logits' or 'auto'"
        )
    length, step = window_sizes(lm.context_length, max_length, stride)
    docs = _Doc.many(encodings, [plan_windows(len(enc.ids), max_length=length, stride=step) for enc in encodings],
                     top_k)
    jobs = sorted(((d, w) for d in docs for w in d.windows), key=lambda j: j[1].begin - j[1].end)
    if batch_tokens is None:
        batch_tokens = 2048 if lm.device.type == "cpu" else 32768
    batches = make_batches(jobs, batch_size or len(jobs), batch_tokens)
    total = sum(w.last - w.first for _, w in jobs)
    show = len(batches) > 1 if progress is None else progress
    with tqdm(total=total, unit="tok", desc="scoring", disable=not show) as bar:
        for batch in batches:
            _run_batch(lm, batch, top_k, method)
            bar.update(sum(w.last - w.first for _, w in batch))
    info, window = lm.info(), {"max_length": length, "stride": step}
    # every distinct top-k id decoded once, for all texts in one lookup
    strings = lm.token_strings(np.concatenate([d.top_ids for d in docs])).tolist()
    ends = np.cumsum([len(d.top_ids) for d in docs]).tolist()
    return [d.result(info, window, strings[a:b]) for d, a, b in zip(docs, [0, *ends], ends)]


def make_batches(jobs: list, batch_size: int, batch_tokens: int) -> list[list]:
    """Greedy batches of length-sorted (longest first) jobs within both limits."""
    batches: list[list] = []
    for job in jobs:
        if batches and len(batches[-1]) < batch_size:
            width = batches[-1][0][1].end - batches[-1][0][1].begin
            if (len(batches[-1]) + 1) * width <= batch_tokens:
                batches[-1].append(job)
                continue
        batches.append([job])
    return batches


def _run_batch(lm, batch: list[tuple[_Doc, Window]], top_k: int, method: str) -> None:
    stats = host_stats(forward_stats(lm, batch_inputs(lm, batch), top_k=top_k, method=method))
    stats = TokenStats(*(t.numpy() for t in stats))  # once per batch, then numpy slices per window
    start = 0
    for doc, w in batch:
        n = w.last - w.first
        doc.fill(w, stats, slice(start, start + n))
        start += n


class Batch(NamedTuple):
    """A padded batch on the model's device: ids [B, L], mask [B, L] (None: nothing padded),
    and for each target in order its row, position and id; ``first``: the smallest position
    (a host int, so that asking for fewer logits needs no device sync)."""

    ids: torch.Tensor
    mask: torch.Tensor | None
    rows_b: torch.Tensor
    rows_t: torch.Tensor
    targets: torch.Tensor
    first: int


def batch_inputs(lm, batch: list[tuple[_Doc, Window]]) -> Batch:
    """A batch's model input on ``lm.device``: right-padded ids [B, L], the attention mask (None
    when nothing is padded), and for each target in order its (row, position) and id.

    Built with numpy on the host (no per-token Python), the targets checked against the
    vocabulary there, and copied to a GPU from pinned memory without blocking.
    """
    lengths = np.array([w.end - w.begin for _, w in batch])
    counts = np.array([w.last - w.first for _, w in batch])
    first_pos = np.array([w.first - 1 - w.begin for _, w in batch])
    pad = lm.tokenizer.pad_token_id
    ids = np.full((len(batch), lengths.max()), 0 if pad is None else pad, dtype=np.int64)
    for b, (doc, w) in enumerate(batch):
        ids[b, : lengths[b]] = doc.enc.ids[w.begin : w.end]
    rows_b = np.repeat(np.arange(len(batch)), counts)
    rows_t = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts - first_pos, counts)
    targets = np.concatenate([doc.enc.ids[w.first : w.last] for doc, w in batch])
    vocab = lm.vocab_size
    if len(targets) and (targets.min() < 0 or targets.max() >= vocab):
        bad = int(targets[(targets < 0) | (targets >= vocab)][0])
        raise ValueError(f"the tokenizer produced id {bad}, outside the model's vocabulary of {vocab}: "
                         "the tokenizer does not belong to this model")
    mask = None if (lengths == lengths.max()).all() else np.arange(ids.shape[1])[None, :] < lengths[:, None]
    host = [ids, mask, rows_b, rows_t, targets]
    on_device = [None if a is None else to_device(torch.from_numpy(np.ascontiguousarray(a)).long(), lm.device)
                 for a in host]
    return Batch(*on_device, first=int(first_pos.min()))


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``t`` on ``device``; to a GPU through pinned memory with a non-blocking copy."""
    if device.type == "cpu":
        return t
    return t.pin_memory().to(device, non_blocking=True)


def host_stats(stats: TokenStats) -> TokenStats:
    """The statistics on the host: from a GPU in one packed transfer (:func:`pack_stats`) into
    pinned memory instead of one copy per statistic."""
    if stats.logprob.device.type == "cpu":
        return stats
    packed = pack_stats(stats)
    host = torch.empty(packed.shape, dtype=packed.dtype, pin_memory=True)
    host.copy_(packed)  # the batch's one device-to-host copy
    return unpack_stats(host, stats.top_k_ids.shape[1])


def pack_stats(stats: TokenStats) -> torch.Tensor:
    """Every statistic as one float32 [N, 4 + 2k] tensor: logprob, logsumexp, entropy, then rank
    and the top-k ids bit-cast from int32 (exact), then the top-k logprobs.

    >>> s = token_stats(torch.tensor([[0.0, 1.0, 2.0]]), torch.tensor([1]), top_k=2)
    >>> u = unpack_stats(pack_stats(s), 2)
    >>> u.rank.tolist(), u.top_k_ids.tolist(), u.logprob.tolist() == s.logprob.tolist()
    ([2], [[2, 1]], True)
    """
    bits = lambda t: t.to(torch.int32).view(torch.float32)  # noqa: E731
    return torch.cat([stats.logprob[:, None], stats.logsumexp[:, None], stats.entropy[:, None],
                      bits(stats.rank)[:, None], bits(stats.top_k_ids), stats.top_k_logprobs], 1)


def unpack_stats(packed: torch.Tensor, k: int) -> TokenStats:
    """The :class:`TokenStats` that :func:`pack_stats` packed (k alternatives per row)."""
    ints = lambda t: t.contiguous().view(torch.int32).long()  # noqa: E731
    return TokenStats(packed[:, 0], packed[:, 1], packed[:, 2], ints(packed[:, 3]),
                      ints(packed[:, 4 : 4 + k]), packed[:, 4 + k :])


@torch.inference_mode()
def forward_stats(lm, batch: Batch, *, top_k: int, method: str = "auto") -> TokenStats:
    """Statistics of the predictions at ``(rows_b, rows_t)`` of a padded :class:`Batch`.

    The fused path runs the model's body and turns only the picked rows' hidden states into
    statistics; the logits path asks the model for the logits of the last positions it needs
    only (``logits_to_keep``) when the model takes that argument.
    """
    head = lm.head if method != "logits" else None
    if head is not None:
        return head.stats(picked_hidden(lm, batch, head), batch.targets.to(head.weight.device), top_k)
    logits = picked_logits(lm, batch)
    return token_stats(logits, batch.targets.to(logits.device), top_k)


def picked_hidden(lm, batch: Batch, head) -> torch.Tensor:
    """The final hidden states [N, D] of the batch's predicting rows, on the head's device."""
    hidden = last_hidden(lm.model, batch.ids, batch.mask)  # on the last GPU when spread by device_map
    rows_b, rows_t = batch.rows_b.to(hidden.device), batch.rows_t.to(hidden.device)
    return hidden[rows_b, rows_t].to(head.weight.device)


def picked_logits(lm, batch: Batch) -> torch.Tensor:
    """The model's own logits [N, V] at the batch's predicting rows; only the last positions
    are asked for (``logits_to_keep``) when the model takes that argument."""
    keep, rows_t = {}, batch.rows_t
    if "logits_to_keep" in inspect.signature(lm.model.forward).parameters:
        keep, rows_t = {"logits_to_keep": batch.ids.shape[1] - batch.first}, rows_t - batch.first
    logits = lm.model(input_ids=batch.ids, attention_mask=batch.mask, use_cache=False, **keep).logits
    return logits[batch.rows_b.to(logits.device), rows_t.to(logits.device)]
