"""The LM head as data (weight, bias, logit scale, softcap), so logits need not exist.

``find_head`` reads the head off a transformers causal LM and then *checks* it: the logits
it implies on a short probe must equal the model's own. A model whose head does something
we do not model fails the check and is scored from its logits instead.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..kernels import TokenStats, fused_token_stats, head_logits


@dataclass(frozen=True)
class Head:
    """``logits = softcap·tanh((hidden @ weight.T + bias)·logit_scale / softcap)``."""

    weight: torch.Tensor
    bias: torch.Tensor | None = None
    logit_scale: float | None = None
    softcap: float | None = None

    def logits(self, hidden: torch.Tensor, *, out: torch.Tensor | None = None) -> torch.Tensor:
        """Float32 logits [N, V] of hidden states [N, D] (for checks and blocks of rows; scoring
        never calls this on all rows), into the float32 buffer ``out`` when given."""
        return head_logits(hidden, self.weight, self.bias, self.logit_scale, self.softcap, out=out)

    def stats(self, hidden: torch.Tensor, targets: torch.Tensor, top_k: int) -> TokenStats:
        """Token statistics of ``self.logits(hidden)`` [N, V] without materialising them."""
        return fused_token_stats(hidden, self.weight, targets, top_k, bias=self.bias,
                                 logit_scale=self.logit_scale, softcap=self.softcap)


def read_head(model) -> Head | None:
    """The head's parts, or None if it is not a plain linear layer."""
    lin = model.get_output_embeddings()
    if not isinstance(lin, torch.nn.Linear):
        return None
    cfg = model.config
    cfg = getattr(cfg, "text_config", None) or cfg
    scale = getattr(cfg, "logit_scale", None)  # Cohere multiplies
    if getattr(cfg, "logits_scaling", None):  # Granite divides
        scale = 1.0 / cfg.logits_scaling
    return Head(lin.weight, lin.bias, scale, getattr(cfg, "final_logit_softcapping", None))


def last_hidden(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The final (normed) hidden state [B, T, D] that the head turns into logits."""
    out = model.base_model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    return out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]


@torch.inference_mode()
def find_head(model, probe_ids: torch.Tensor) -> Head | None:
    """The model's head if hidden-state scoring reproduces its logits on ``probe_ids`` [1, T]."""
    head = read_head(model)
    if head is None:
        return None
    mask = torch.ones_like(probe_ids)
    try:
        hidden = last_hidden(model, probe_ids, mask)[0]
    except (TypeError, ValueError, AttributeError, KeyError, IndexError, NotImplementedError):
        return None  # a base model that does not take these inputs: score from its logits

    want = model(input_ids=probe_ids, attention_mask=mask, use_cache=False).logits[0].float()
    got = head.logits(hidden)
    if got.shape != want.shape:
        return None
    tol = 1e-4 if want.dtype == torch.float32 and model.dtype == torch.float32 else 3e-2
    ok = torch.allclose(got, want, rtol=tol, atol=tol * max(1.0, float(want.abs().max())))
    return head if ok else None
