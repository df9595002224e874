"""Generation: prompts → prefill → one token per step (sample, score, check stops) → Generations.

Every step computes, from the same float32 logits: the raw statistics of the chosen token (what
``score()`` of the final ids gives: logprob, entropy, rank, top-k, log-sum-exp), the sampler's
final distribution and the draw from it, and the sampled token's logprob, entropy and support
size there. Only these O(k) numbers are kept per step; no [steps, V] array exists. The prompt's
tokens are scored from the prefill, as :func:`score_texts` would.

Draws are reproducible: each row has its own random stream seeded by its ``seed``, so a prompt
gives the same text alone or in a batch (up to the float rounding of batched matmuls).
"""
from __future__ import annotations

import inspect
import secrets
import warnings
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..kernels import TokenStats, token_stats
from ..options import check_int, check_stop, check_top_k
from ..results.generation import Generation, GeneratedToken, extend_offsets
from ..sampling import Sampler, SamplerState, Step
from ..text.tokens import Encoding, encode_many
from .allocator import release_freed_memory
from .decoding import IncrementalModel
from .scoring import encoding_of, gc_paused


def check_generation_options(*, max_new_tokens, top_k, n, seed, stop, sampler) -> tuple:
    """Validate generation options; returns ``(stop strings, sampler or None)``."""
    check_int("max_new_tokens", max_new_tokens, minimum=0)
    check_top_k(top_k)
    check_int("n", n, minimum=1)
    check_int("seed", seed, minimum=0, none=True)
    stops = check_stop(stop)
    if sampler is not None and not isinstance(sampler, Sampler):
        if not callable(sampler):
            raise TypeError(f"sampler must be a lightlens Sampler, a function f(logprobs, state) or None (greedy), "
                            f"got {type(sampler).__name__}")
        if not isinstance(sampler, Step):
            try:
                inspect.signature(sampler).bind(None, None)
            except TypeError:
                raise TypeError(f"sampler {getattr(sampler, '__name__', sampler)!r} cannot be called as "
                                "f(logprobs, state); a step such as lightlens.sampling.top_p must be called with its "
                                "setting first: sampler=sampling.top_p(0.9)") from None
            except ValueError:  # no signature to read (a builtin): take it as it is
                pass
        sampler = Sampler(sampler)
    return stops, sampler


class TextPieces:
    """The text each generated token adds, decoded in the context of the prompt's last tokens
    (so a leading space survives), holding back a token that ends inside a character.

    >>> p = TextPieces(tiny.tokenizer, tiny.tokenizer.encode("Hello"))
    >>> p.push(tiny.tokenizer.encode(" world")[0]) + p.flush()
    ' world'
    """

    def __init__(self, tokenizer, prompt_ids: Sequence[int]):
        self.tokenizer = tokenizer
        self.context = [int(i) for i in prompt_ids[-4:]]
        self.ids: list[int] = []
        self.start = len(self._decode(self.context))
        self.text = ""  # what has been handed out so far

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def push(self, token: int) -> str:
        """Add ``token``; returns the characters it completes ("" while a character is incomplete)."""
        self.ids.append(int(token))
        full = self._decode(self.context + self.ids)[self.start:]
        if full.endswith("\ufffd") or not full.startswith(self.text):
            return ""
        piece, self.text = full[len(self.text):], full
        return piece

    def flush(self) -> str:
        """Whatever is still held back (an unfinished character, as the tokenizer decodes it)."""
        full = self._decode(self.context + self.ids)[self.start:]
        piece = full[len(self.text):] if full.startswith(self.text) else ""
        self.text += piece
        return piece


@dataclass
class _Row:
    """One sequence being generated: its prompt, random stream and what each step gave."""

    enc: Encoding
    seed: int
    pieces: TextPieces
    generator: torch.Generator
    steps: list[GeneratedToken] = field(default_factory=list)
    finish_reason: str | None = None
    prompt_stats: TokenStats | None = None  # numpy arrays, one row per scored prompt token


def row_seeds(seed: int | None, prompts: int, n: int) -> list[int]:
    """Each row's seed: sample ``j`` of a prompt uses ``seed + j`` (a fresh random seed when None),
    so ``generate(p, seed=s + j)`` alone reproduces it.

    >>> row_seeds(7, prompts=2, n=2)
    [7, 8, 7, 8]
    """
    base = secrets.randbits(62) if seed is None else seed
    return [base + j for _ in range(prompts) for j in range(n)]


def eos_ids(lm) -> set[int]:
    """The ids that end a sequence: the generation config's ``eos_token_id`` (int or list),
    else the tokenizer's."""
    cfg = getattr(lm.model, "generation_config", None)
    eos = getattr(cfg, "eos_token_id", None) if cfg is not None else None
    if eos is None:
        eos = lm.tokenizer.eos_token_id
    if eos is None:
        return set()
    return {int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos])}


@gc_paused()
def generate_texts(lm, prompts: Sequence[str | Encoding], *, max_new_tokens: int = 64, sampler=None, seed=None,
                   stop=None, top_k: int = 5, n: int = 1, bos: bool | None = None, use_cache: bool = True,
                   batch_size: int = 32, progress: bool | None = None) -> list[Generation]:
    """Generate from each prompt (``n`` samples each, prompt-major); one :class:`Generation` per
    sample. Options as in :func:`lightlens.generate`.

    >>> gs = generate_texts(tiny, ["Hello", "The cat"], max_new_tokens=3, n=2, seed=1)
    >>> len(gs), [g.num_generated for g in gs]
    (4, [3, 3, 3, 3])
    """
    stream = GenerationStream(lm, prompts, max_new_tokens=max_new_tokens, sampler=sampler, seed=seed, stop=stop,
                              top_k=top_k, n=n, bos=bos, use_cache=use_cache, batch_size=batch_size,
                              progress=progress, strings=False)
    for _ in stream:
        pass
    return stream.generations


class GenerationStream:
    """The generation loop as an iterator: each :class:`GeneratedToken` as it is chosen (with its
    top-k strings), then, once exhausted, every sequence's :class:`Generation` in
    ``generations`` (prompt-major, as :func:`generate_texts` returns them).

    >>> s = GenerationStream(tiny, ["Hello"], max_new_tokens=2)
    >>> [t.step for t in s], s.generations[0].num_generated
    ([0, 1], 2)
    """

    def __init__(self, lm, prompts: Sequence[str | Encoding], *, max_new_tokens: int = 64, sampler=None, seed=None,
                 stop=None, top_k: int = 5, n: int = 1, bos: bool | None = None, use_cache: bool = True,
                 batch_size: int = 32, progress: bool | None = None, strings: bool = True):
        self.stops, self.sampler = check_generation_options(max_new_tokens=max_new_tokens, top_k=top_k, n=n,
                                                            seed=seed, stop=stop, sampler=sampler)
        check_int("batch_size", batch_size, minimum=1)
        self.lm, self.max_new_tokens, self.top_k, self.use_cache = lm, max_new_tokens, top_k, use_cache
        self.batch_size, self.progress, self.strings = batch_size, progress, strings
        texts = [p for p in prompts if not isinstance(p, Encoding)]
        encoded = iter(encode_many(lm.tokenizer, texts, bos=bos) if texts else [])
        self.encodings = [e for e in (p if isinstance(p, Encoding) else next(encoded) for p in prompts)
                          for _ in range(n)]
        for e in self.encodings:
            if len(e.ids) >= lm.context_length + (max_new_tokens == 0):
                raise ValueError(f"the prompt has {len(e.ids)} tokens and the model's context is "
                                 f"{lm.context_length}: shorten the prompt so that tokens can be generated after it")
        self.seeds = row_seeds(seed, len(prompts), n)
        self.generations: list[Generation] = []
        self._tokens: Iterator[GeneratedToken] | None = None

    def __iter__(self) -> "GenerationStream":
        return self

    def __next__(self) -> GeneratedToken:
        if self._tokens is None:
            self._tokens = self._loop()
        return next(self._tokens)

    def close(self) -> None:
        """Stop generating; ``generations`` then holds what was generated so far (the unfinished
        sequences with finish_reason "interrupted")."""
        if self._tokens is not None:
            self._tokens.close()

    def _loop(self) -> Iterator[GeneratedToken]:
        lm, size = self.lm, self.batch_size
        batches = range(0, len(self.encodings), size)
        show = len(batches) > 1 if self.progress is None else self.progress
        rows: list[_Row] = []
        batch: list[_Row] = []
        try:
            with tqdm(total=len(self.encodings) * self.max_new_tokens, unit="tok", desc="generating",
                      disable=not show) as bar:
                for a in batches:
                    batch = [_Row(e, s, TextPieces(lm.tokenizer, e.ids), torch.Generator().manual_seed(s))
                             for e, s in zip(self.encodings[a:a + size], self.seeds[a:a + size])]
                    for token in _run(lm, batch, self.sampler, self.max_new_tokens, self.stops, self.top_k,
                                      self.use_cache):
                        token.index += a  # the sequence's number in the whole call, prompt-major
                        bar.update(1)
                        if self.strings:
                            token.top_k_tokens = lm.token_strings(token.top_k_ids).tolist()
                        yield token
                    rows, batch = rows + batch, []
        finally:  # a stream closed early (or interrupted) keeps what it generated
            for r in batch:
                r.finish_reason = r.finish_reason or "interrupted"
            self.generations = assemble(lm, [r for r in rows + batch if r.prompt_stats is not None], self.sampler)


def assemble(lm, rows: list[_Row], sampler: Sampler | None) -> list[Generation]:
    """Each finished row's :class:`Generation`, the top-k strings of all decoded in one lookup."""
    description = "greedy" if sampler is None else sampler.describe()
    info = lm.info()
    strings = lm.token_strings(np.concatenate([_top_ids(r) for r in rows])) if rows else []
    out, start = [], 0
    for r in rows:
        size = len(r.enc.offsets) + len(r.steps)
        out.append(_generation(r, info, description, strings[start:start + size].tolist()))
        start += size
    return out


@torch.inference_mode()
def _run(lm, rows: list[_Row], sampler: Sampler | None, max_new_tokens: int, stops: tuple[str, ...],
         top_k: int, use_cache: bool) -> Iterator[GeneratedToken]:
    device, context, ends = lm.device, lm.context_length, eos_ids(lm)
    lengths = torch.tensor([len(r.enc.ids) for r in rows])
    width = int(lengths.max())
    pad = lm.tokenizer.pad_token_id or 0
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    for b, r in enumerate(rows):
        ids[b, width - len(r.enc.ids):] = torch.from_numpy(r.enc.ids)
    mask = torch.arange(width)[None, :] >= (width - lengths)[:, None]
    ids, mask = ids.to(device), mask.to(device)
    model = IncrementalModel(lm, use_cache=use_cache)
    # the batch grows one column a step whoever finished; a finished row's new columns are padding
    logits = model.start(ids, mask, keep_prompt=True, max_length=width + max_new_tokens)
    _score_prompts(model, rows, width, top_k, device)
    if max_new_tokens == 0:
        for r in rows:
            r.finish_reason = "length"
        return
    memory: dict = {}
    companions = _Companions(lm, ids, mask, use_cache, width + max_new_tokens)
    live = list(range(len(rows)))
    for step in range(max_new_tokens):
        chosen, final = _choose(logits, sampler, rows, ids, mask, lengths, step, memory, companions)
        if device.type == "cpu" and step % TRIM_EVERY == TRIM_EVERY - 1:
            release_freed_memory()
        raw = token_stats(logits, chosen, top_k)
        sampled = _sampled_stats(final, chosen)
        host = to_host([chosen, *raw, *sampled])
        for b in list(live):
            r = rows[b]
            token = _token_event(r, b, step, host)
            r.steps.append(token)
            reason = _finish(r, token, ends, stops, step, max_new_tokens, context)
            if reason:
                r.finish_reason = token.finish_reason = reason
                live.remove(b)
            yield token
        if not live:
            return
        going = torch.zeros(len(rows), dtype=torch.bool)
        going[live] = True
        going = going.to(device)
        chosen = torch.where(going, chosen, torch.full_like(chosen, pad))  # finished rows: padding
        ids = torch.cat([ids, chosen[:, None]], 1)
        mask = torch.cat([mask, going[:, None]], 1)  # so their positions stop growing too
        logits = model.extend(chosen, mask)
        companions.extend(chosen, mask)


TRIM_EVERY = 8  # steps between two release_freed_memory() calls on CPU


def _choose(logits, sampler, rows, ids, mask, lengths, step, memory, companions):
    """The chosen token of every row and the sampler's final log-probabilities (None: greedy)."""
    if sampler is None:
        return logits.argmax(-1), None
    lse = torch.logsumexp(logits, -1, keepdim=True)
    state = SamplerState(ids=ids, mask=mask, prompt_lengths=lengths, step=step, logsumexp=lse,
                         vocab_size=logits.shape[-1], memory=memory, forward=companions.logprobs)
    final = sampler(logits - lse, state)
    uniforms = torch.cat([torch.rand(1, generator=r.generator, dtype=torch.float64) for r in rows])
    chosen = sampler.draw(final, uniforms.to(final.device))
    sampler.observe(state, chosen, final)
    return chosen, final


def _sampled_stats(final: torch.Tensor | None, chosen: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Log-probability of the chosen token under the sampler's final distribution, that
    distribution's entropy (nats) and support size; greedy: 0, 0, 1."""
    if final is None:
        zero = torch.zeros(len(chosen), device=chosen.device)
        return zero, zero, torch.ones(len(chosen), dtype=torch.long, device=chosen.device)
    kept = torch.isfinite(final)
    p = final.exp()
    entropy = -(p * torch.where(kept, final, torch.zeros_like(final))).sum(-1)
    return final.gather(1, chosen[:, None])[:, 0], entropy, kept.sum(-1)


def to_host(columns: list[torch.Tensor]) -> list[np.ndarray]:
    """Per-row tensors ([B] or [B, k], any dtype) as numpy arrays, in one device-to-host copy:
    stacked as float64 (exact for float32 values and for ids below 2**53) and split again.

    >>> [a.tolist() for a in to_host([torch.tensor([3, 4]), torch.tensor([[0.5], [1.5]])])]
    [[3, 4], [[0.5], [1.5]]]
    """
    widths = [1 if c.dim() == 1 else c.shape[1] for c in columns]
    packed = torch.cat([c.reshape(len(c), -1).double() for c in columns], 1).cpu().numpy()
    out, start = [], 0
    for c, w in zip(columns, widths):
        part = packed[:, start:start + w].astype(str(c.dtype).replace("torch.", ""))
        out.append(part[:, 0] if c.dim() == 1 else part)
        start += w
    return out


def _token_event(r: _Row, b: int, step: int, host: list) -> GeneratedToken:
    chosen, logprob, lse, entropy, rank, top_ids, top_lps, sampled_lp, sampled_h, kept = host
    token = int(chosen[b])
    return GeneratedToken(
        index=b, step=step, token_id=token, text=r.pieces.push(token), logprob=float(logprob[b]),
        logsumexp=float(lse[b]), entropy=float(entropy[b]), rank=int(rank[b]), top_k_ids=top_ids[b].copy(),
        top_k_logprobs=top_lps[b].copy(), sampled_logprob=float(sampled_lp[b]),
        sampled_entropy=float(sampled_h[b]), kept=int(kept[b]))


def _finish(r: _Row, token: GeneratedToken, ends: set[int], stops: tuple[str, ...], step: int,
            max_new_tokens: int, context: int) -> str | None:
    """Why row ``r`` stops after ``token``, or None."""
    if token.token_id in ends:
        return "eos"
    if stops:
        tail = r.pieces.text[-(max(map(len, stops)) + len(token.text)):]
        if any(s in tail for s in stops):
            return "stop"
    if step + 1 == max_new_tokens:
        return "length"
    if len(r.enc.ids) + step + 1 >= context:
        warnings.warn(f"generation stopped after {step + 1} new token{'s' if step else ''}: the model's context of "
                      f"{context} tokens is full (finish_reason 'context')", stacklevel=2)
        return "context"
    return None


def _score_prompts(model: IncrementalModel, rows: list[_Row], width: int, top_k: int, device) -> None:
    """Each prompt's token statistics from the prefill, as scoring gives them."""
    rows_b, rows_t, targets = [], [], []
    for b, r in enumerate(rows):
        m = len(r.enc.ids)
        rows_b += [b] * (m - 1)
        rows_t += range(width - m, width - 1)
        targets.append(r.enc.ids[1:])
    stats = model.prompt_stats(torch.tensor(rows_b, device=device, dtype=torch.long),
                               torch.tensor(rows_t, device=device, dtype=torch.long),
                               torch.from_numpy(np.concatenate(targets)).to(device), top_k)
    stats = [t.cpu().numpy() for t in stats]
    start = 0
    for r in rows:
        m = len(r.enc.ids) - 1
        r.prompt_stats = TokenStats(*(s[start:start + m] for s in stats))
        start += m


def check_same_vocabulary(lm, other) -> None:
    """Refuse a companion model (contrastive decoding's amateur) whose tokenizer maps tokens to
    other ids than ``lm``'s: its log-probabilities would be compared id by id with the wrong tokens."""
    mine, theirs = lm.tokenizer, getattr(other, "tokenizer", None)
    if theirs is None or mine is theirs:
        return
    if len(mine) != len(theirs) or mine.get_vocab() != theirs.get_vocab():
        raise ValueError(f"contrastive decoding: the amateur {getattr(other, 'name', '?')!r} has another vocabulary "
                         f"than the expert {lm.name!r} (different tokenizers): the two must share a vocabulary; "
                         "pick an amateur from the expert's model family (same tokenizer)")


class _Companions:
    """Other models a sampler asks for (contrastive decoding's amateur), each run incrementally
    over the same batch with its own cache."""

    def __init__(self, lm, ids: torch.Tensor, mask: torch.Tensor, use_cache: bool, max_length: int):
        self.lm, self.ids, self.mask, self.use_cache, self.max_length = lm, ids, mask, use_cache, max_length
        self.models: dict[int, IncrementalModel] = {}
        self.current: dict[int, torch.Tensor] = {}

    def logprobs(self, other) -> torch.Tensor:
        """``other``'s float32 log-probabilities [B, V] of the next token of every row."""
        key = id(other)
        if key not in self.models:
            check_same_vocabulary(self.lm, other)
            model = IncrementalModel(other, use_cache=self.use_cache)
            self.models[key] = model
            self.current[key] = model.start(self.ids.to(other.device), self.mask.to(other.device),
                                            max_length=self.max_length)
        return torch.log_softmax(self.current[key], -1).to(self.ids.device)

    def extend(self, chosen: torch.Tensor, mask: torch.Tensor) -> None:
        self.ids, self.mask = torch.cat([self.ids, chosen[:, None]], 1), mask
        for key, model in self.models.items():
            dev = model.lm.device
            self.current[key] = model.extend(chosen.to(dev), mask.to(dev))


def _top_ids(r: _Row) -> np.ndarray:
    prompt_top = r.prompt_stats.top_k_ids
    gen_top = np.stack([t.top_k_ids for t in r.steps]) if r.steps else np.zeros((0, prompt_top.shape[1]), np.int64)
    lead = np.full((len(r.enc.offsets) - len(prompt_top), prompt_top.shape[1]), -1, np.int64)
    return np.concatenate([lead, prompt_top, gen_top])


def _generation(r: _Row, info: dict, sampler: str, top_strings: list) -> Generation:
    """Assemble one row's :class:`Generation`: the prompt's statistics then each step's."""
    enc, steps = r.enc, r.steps
    last = r.pieces.flush()
    pieces = [t.text for t in steps]
    if pieces:
        pieces[-1] += last
    logprob, lse, entropy, rank, top_ids, top_lps = r.prompt_stats
    m, k = len(enc.offsets), top_ids.shape[1]
    lead = m - len(logprob)  # the unscored first token (no BOS)

    def column(prompt_part, fill, of_step, dtype):
        head = np.full((lead, *prompt_part.shape[1:]), fill, dtype)
        tail = np.array([of_step(t) for t in steps], dtype).reshape(len(steps), *prompt_part.shape[1:])
        return np.concatenate([head, prompt_part.astype(dtype), tail])

    n = m + len(steps)
    gen_nan = lambda of_step: np.concatenate([np.full(m, np.nan, np.float32),  # noqa: E731
                                              np.array([of_step(t) for t in steps], np.float32)])
    return Generation(
        text=enc.text + "".join(pieces), tokens=enc.tokens + pieces,
        token_ids=np.concatenate([enc.text_ids, [t.token_id for t in steps]]).astype(np.int64),
        offsets=extend_offsets(enc.offsets, len(enc.text), pieces),
        logprobs=column(logprob, np.nan, lambda t: t.logprob, np.float32),
        logsumexp=column(lse, np.nan, lambda t: t.logsumexp, np.float32),
        entropy=column(entropy, np.nan, lambda t: t.entropy, np.float32),
        ranks=column(rank, 0, lambda t: t.rank, np.int64),
        top_k_ids=column(top_ids, -1, lambda t: t.top_k_ids, np.int64).reshape(n, k),
        top_k_logprobs=column(top_lps, np.nan, lambda t: t.top_k_logprobs, np.float32).reshape(n, k),
        top_k_tokens=top_strings, model=dict(info), bos=enc.bos,
        window={"max_length": None, "stride": None, "num_windows": 1, "windowed": False},
        num_prompt_tokens=m, sampled_logprobs=gen_nan(lambda t: t.sampled_logprob),
        sampled_entropy=gen_nan(lambda t: t.sampled_entropy),
        kept=np.concatenate([np.zeros(m, np.int64), [t.kept for t in steps]]).astype(np.int64),
        finish_reason=r.finish_reason or "length", sampler=sampler, seed=r.seed,
    )


def branch_prompt(lm, g: Generation, position: int, token_id: int) -> Encoding:
    """The prompt that continues ``g`` with ``token_id`` in place of its token at ``position``:
    ``g``'s ids before it exactly (never re-tokenised), then that token.

    >>> g = tiny.generate("Hello", max_new_tokens=3)
    >>> e = branch_prompt(tiny, g, len(g) - 1, 7)
    >>> e.text_ids.tolist() == [*g.token_ids[:-1].tolist(), 7]
    True
    """
    check_int("position", position, minimum=1 - int(g.bos))
    if position >= len(g):
        raise ValueError(f"position {position} is past the end of the {len(g)} tokens: pick a token of the text")
    check_int("token_id", token_id, minimum=0)
    if token_id >= lm.vocab_size:
        raise ValueError(f"token_id {token_id} is outside the model's vocabulary of {lm.vocab_size}")
    piece = str(lm.token_strings(np.array([token_id]))[0])
    start = int(g.offsets[position, 0])
    before = encoding_of(lm, g).ids[: position + int(g.bos)]
    offsets = np.concatenate([g.offsets[:position], [[start, start + len(piece)]]]).astype(np.int64)
    return Encoding(g.text[:start] + piece, np.append(before, token_id), offsets, g.bos)
