"""A model run step by step over a growing, left-padded batch (the forward half of generation).

Rows are left-padded so that every row's next token is the last column; positions count real
tokens only (``cumsum(mask) - 1``, as Hugging Face ``generate`` does), so a padded row computes
what it would alone. With ``use_cache`` the keys and values of earlier tokens are kept and each
step feeds one column; without, each step runs the whole sequence again (a check of the cache).
Logits come from the verified LM head in float32 (:mod:`.head`), the same numbers scoring uses,
or from the model's own logits for heads lightlens does not model.
"""
from __future__ import annotations

import inspect

import torch

from ..kernels import TokenStats, token_stats


class IncrementalModel:
    """``lm`` (a :class:`LanguageModel`) fed a left-padded batch, then one token per row per step.

    >>> m = IncrementalModel(tiny)
    >>> ids = torch.tensor([[5, 6, 7]]); mask = torch.ones_like(ids, dtype=torch.bool)
    >>> m.start(ids, mask).shape, m.extend(torch.tensor([8]), torch.ones(1, 4, dtype=torch.bool)).shape
    (torch.Size([1, 400]), torch.Size([1, 400]))
    """

    def __init__(self, lm, *, use_cache: bool = True):
        self.lm, self.use_cache = lm, use_cache
        self.head = lm.head
        self.cache = None
        self.ids: torch.Tensor | None = None  # the whole batch so far (used without a cache)
        self.prompt_out: torch.Tensor | None = None  # hidden states or logits of the prompt

    @torch.inference_mode()
    def start(self, ids: torch.Tensor, mask: torch.Tensor, *, keep_prompt: bool = False,
              max_length: int | None = None) -> torch.Tensor:
        """Run the prompts ``ids`` [B, L] (``mask`` [B, L] bool, left padding); float32 logits
        [B, V] of each row's next token. ``keep_prompt`` keeps every position's output for
        :meth:`prompt_stats`. ``max_length``: the longest the batch will grow (prompt + new
        tokens); the cache is then allocated once at that size (:func:`static_cache`)."""
        self.ids = ids
        if self.use_cache and max_length is not None:
            self.cache = static_cache(self.lm.model, max_length)
        out = self._forward(ids, mask, positions(mask), everything=keep_prompt)
        if keep_prompt:
            self.prompt_out = out
        return self._logits(out[:, -1])

    @torch.inference_mode()
    def extend(self, new: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Append ``new`` [B] (one token per row); ``mask`` [B, L + 1] covers the whole batch
        now. Float32 logits [B, V] of each row's next token."""
        self.ids = torch.cat([self.ids, new[:, None]], 1)
        if self.use_cache:
            out = self._forward(new[:, None], mask, positions(mask)[:, -1:])
        else:
            self.cache = None
            out = self._forward(self.ids, mask, positions(mask))
        return self._logits(out[:, -1])

    @torch.inference_mode()
    def prompt_stats(self, rows_b: torch.Tensor, rows_t: torch.Tensor, targets: torch.Tensor,
                     top_k: int) -> TokenStats:
        """Token statistics of the prompt positions ``(rows_b, rows_t)`` predicting ``targets``,
        from the outputs :meth:`start` kept (then released)."""
        out, self.prompt_out = self.prompt_out[rows_b, rows_t], None
        if self.head is not None:
            return self.head.stats(out, targets.to(out.device), top_k)
        return token_stats(out, targets.to(out.device), top_k)

    def _forward(self, ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, *,
                 everything: bool = False) -> torch.Tensor:
        """Hidden states [B, l, D] (with a head) or logits [B, l, V] of the fed columns; only the
        last column's logits unless ``everything``."""
        module = self.lm.model.base_model if self.head is not None else self.lm.model
        common = {"input_ids": ids, "attention_mask": mask.long(), "position_ids": pos,
                  cache_argument(module): self.cache, "use_cache": self.use_cache}
        if self.head is not None:
            out = module(**common)
            hidden = out.last_hidden_state
        else:
            out = module(**common, logits_to_keep=0 if everything else 1)
            hidden = out.logits
        if self.use_cache:
            self.cache = out.cache if getattr(out, "cache", None) is not None else out.past_key_values
        return hidden

    def _logits(self, last: torch.Tensor) -> torch.Tensor:
        if self.head is not None:
            return self.head.logits(last)
        return last.float()


def static_cache(model, max_length: int):
    """A key/value cache of ``max_length`` positions allocated once (transformers' StaticCache),
    or None (the model grows its own) where the model or transformers version does not take one.

    A growing cache concatenates a slightly longer tensor per layer at every step; glibc's
    allocator then keeps hundreds of MB of freed fragments resident (measured: +250 MB at batch
    8 over 128 steps of SmolLM2), which a cache allocated once never does.
    """
    try:
        from transformers.cache_utils import StaticCache

        return StaticCache(config=model.config, max_cache_len=max_length)
    except (ImportError, TypeError, ValueError, AttributeError, NotImplementedError):
        return None


def cache_argument(module) -> str:
    """What ``module.forward`` calls the key/value cache: ``cache`` (transformers >= 5.2x) or
    ``past_key_values`` (earlier)."""
    return "cache" if "cache" in inspect.signature(module.forward).parameters else "past_key_values"


def positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids of a left-padded batch: real tokens count from 0, pads get 0.

    >>> positions(torch.tensor([[False, True, True], [True, True, True]])).tolist()
    [[0, 0, 1], [0, 1, 2]]
    """
    return (mask.long().cumsum(-1) - 1).clamp(min=0)
