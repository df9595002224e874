"""What a sampler may look at besides the log-probabilities: the context so far, the step, the
model's raw logit scale, per-step memory and, for contrastive decoding, another model's forward.

The context is LEFT-padded: row b of ``ids`` is pads (``mask`` False), then the prompt's
``prompt_lengths[b]`` real tokens (BOS included), then the tokens generated so far, one column
per generation step. A token is *generated* when it is real and comes after the row's prompt.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch


@dataclass
class SamplerState:
    """The generation loop's view of one step, handed to every sampler step.

    Args:
        ids: [B, L] int64, the context so far (prompt + generated), left-padded.
        mask: [B, L] bool, True on real tokens (pads are never counted).
        prompt_lengths: [B] int64, real prompt tokens of each row, BOS included.
        step: 0 for the first generated token.
        logsumexp: [B, 1] float32, log-sum-exp of the model's raw logits at this step, so that
            raw logits = raw log-probabilities + logsumexp (the repetition penalty needs them).
        vocab_size: the model's number of token ids (the width V of the log-probabilities).
        memory: storage that persists across steps, keyed by the step object (mirostat keeps its
            ``mu`` here, one per row). The generation loop passes the SAME dict at every step of
            one generation (rows keeping their positions), and a fresh one for the next.
        forward: set by the generation loop: ``forward(other_model)`` returns that model's float32
            log-probabilities [B, V] for the same contexts at this step (contrastive decoding).

    >>> s = SamplerState.from_lists([[5, 6, 7], [8]], [[1, 2], [3, 3]], vocab_size=10)
    >>> s.ids.tolist(), s.step
    ([[5, 6, 7, 1, 2], [0, 0, 8, 3, 3]], 2)
    """

    ids: torch.Tensor
    mask: torch.Tensor
    prompt_lengths: torch.Tensor
    step: int
    logsumexp: torch.Tensor
    vocab_size: int
    memory: dict = field(default_factory=dict)
    forward: Callable | None = None

    def __post_init__(self):
        rows = self.ids.shape[0] if self.ids.dim() == 2 else -1
        if rows < 0 or self.mask.shape != self.ids.shape or self.mask.dtype != torch.bool:
            raise ValueError(f"ids must be [B, L] and mask a bool tensor of the same shape, got ids "
                             f"{tuple(self.ids.shape)} and mask {tuple(self.mask.shape)} {self.mask.dtype}")
        if tuple(self.prompt_lengths.shape) != (rows,) or tuple(self.logsumexp.shape) != (rows, 1):
            raise ValueError(f"prompt_lengths must be [B] and logsumexp [B, 1] with B = {rows}, got "
                             f"{tuple(self.prompt_lengths.shape)} and {tuple(self.logsumexp.shape)}")

    @classmethod
    def from_lists(cls, prompts: Sequence[Sequence[int]], generated: Sequence[Sequence[int]] | None = None, *,
                   vocab_size: int, logsumexp: torch.Tensor | None = None, memory: dict | None = None,
                   forward: Callable | None = None, pad_id: int = 0) -> "SamplerState":
        """A state from plain lists (for tests and examples): each row's prompt and generated ids,
        left-padded with ``pad_id``; every row must have generated the same number of tokens.

        Args:
            prompts: one list of ids per row (BOS included if the model uses one).
            generated: one list per row of the ids generated so far (None: step 0).
            vocab_size: the model's number of token ids.
            logsumexp: [B, 1] raw-logit log-sum-exp (None: zeros, i.e. logits = log-probabilities).
            memory: the dict that persists across steps (None: a new one).
            forward: see the class.
            pad_id: the id written in pad positions (never counted).

        >>> SamplerState.from_lists([[4, 4]], vocab_size=5).counts(prompt=True).tolist()
        [[0.0, 0.0, 0.0, 0.0, 2.0]]
        """
        generated = [list(g) for g in generated] if generated is not None else [[] for _ in prompts]
        if len(generated) != len(prompts) or len({len(g) for g in generated}) > 1:
            raise ValueError("generated must give one list per prompt, all of the same length (one id per step)")
        rows = [list(p) + g for p, g in zip(prompts, generated)]
        width = max(len(r) for r in rows)
        ids = torch.tensor([[pad_id] * (width - len(r)) + r for r in rows], dtype=torch.int64)
        mask = torch.tensor([[False] * (width - len(r)) + [True] * len(r) for r in rows])
        lse = torch.zeros(len(rows), 1) if logsumexp is None else logsumexp
        return cls(ids=ids, mask=mask, prompt_lengths=torch.tensor([len(p) for p in prompts], dtype=torch.int64),
                   step=len(generated[0]) if generated else 0, logsumexp=lse, vocab_size=vocab_size,
                   memory={} if memory is None else memory, forward=forward)

    def generated_ids(self) -> torch.Tensor:
        """[B, step] int64: the last ``step`` columns of ``ids``, one per generation step.

        >>> SamplerState.from_lists([[5, 6], [7]], [[1], [2]], vocab_size=10).generated_ids().tolist()
        [[1], [2]]
        """
        return self.ids[:, self.ids.shape[1] - self.step:]

    def generated_mask(self) -> torch.Tensor:
        """[B, L] bool: True on real tokens that come after the row's prompt.

        >>> SamplerState.from_lists([[5, 6], [7]], [[1], [2]], vocab_size=10).generated_mask().tolist()
        [[False, False, True], [False, False, True]]
        """
        rank = self.mask.cumsum(1) - 1  # index of each real token among its row's real tokens
        return self.mask & (rank >= self.prompt_lengths.to(rank.device)[:, None])

    def counts(self, *, prompt: bool) -> torch.Tensor:
        """[B, V] float32: how often each id occurs in the generated part (``prompt=False``) or in
        the whole real context (``prompt=True``); pads are never counted.

        Args:
            prompt: count the prompt's tokens too.

        >>> s = SamplerState.from_lists([[1, 2]], [[2, 3]], vocab_size=4)
        >>> s.counts(prompt=False).tolist(), s.counts(prompt=True).tolist()
        ([[0.0, 0.0, 1.0, 1.0]], [[0.0, 1.0, 2.0, 1.0]])
        """
        where = self.mask if prompt else self.generated_mask()
        ids = torch.where(where, self.ids, 0)
        out = torch.zeros(self.ids.shape[0], self.vocab_size, dtype=torch.float32, device=self.ids.device)
        return out.scatter_add_(1, ids, where.to(torch.float32))
