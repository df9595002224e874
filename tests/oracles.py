"""The oracles every numeric test compares against, defined once: float64 statistics written
independently of lightlens, the model's own logits in float64, and float32 tolerances derived
from the arithmetic (not from one machine's output)."""
from __future__ import annotations

import math

import torch

EPS32 = 2.0**-24  # float32 unit roundoff: the relative error of one rounding


def f32_tol(terms: int, scale: float | torch.Tensor) -> float:
    """Absolute tolerance for float32 statistics against float64, from the arithmetic alone.

    Float32 accumulations over V entries: logsumexp sums V exponentials, entropy (lse - sum p*x)
    V products. torch sums in blocks whose order follows the CPU's vector width (AVX2, AVX-512,
    none), so the rounding differs between CPUs, but it is bounded: a blocked sum of n terms
    (ATen's cascade sum, numpy's pairwise sum, a BLAS dot) is off by about log2(n)*eps*sum|term|,
    and sum|p*x| <= max|x|. Each p = exp(x - lse) also carries eps*|x - lse| of relative error,
    which weighted by p gives eps*max|x|*H, with H <= ln V < log2 V. So the error is below about
    2*log2(n)*eps*max|x|, and we allow 4 times that (about 1e-4 for logits of size 10-20; a
    wrong formula, row or token is off by far more).

    ``terms``: V, or V*D where the logits are themselves D-term float32 dot products (the two
    errors add: log2 V + log2 D). ``scale``: the largest finite |logit| (or the logits), at least 1.
    """
    if isinstance(scale, torch.Tensor):
        scale = scale.double().abs().nan_to_num(posinf=0.0, neginf=0.0).max()  # masked -inf: no term
    return 8 * math.log2(terms) * EPS32 * max(float(scale), 1.0)


def model_tol(lm) -> float:
    """Tolerance for float32 statistics of ``lm``'s logits against float64, or against another
    float32 path (the fused head, another batch or window shape: a different summation order).

    The logits are D-term float32 dot products of the final hidden state h and the head's rows w,
    then V-term sums (see ``f32_tol``). The scale is a bound on sum|h_i*w_i| for any text: after
    the final RMSNorm/LayerNorm, ||h|| <= sqrt(D)*max|gamma| + ||beta||, so by Cauchy-Schwarz
    sum|h_i*w_i| <= ||h||*max||w||. About 1e-4 for the tiny models.
    """
    with torch.no_grad():
        weight = lm.model.get_output_embeddings().weight.double()
        norm = getattr(lm.model.base_model, "norm", None) or lm.model.base_model.ln_f
        beta = 0 if getattr(norm, "bias", None) is None else norm.bias.double().norm()
        h = math.sqrt(weight.shape[1]) * norm.weight.double().abs().max() + beta
        return f32_tol(weight.shape[0] * weight.shape[1], h * weight.norm(dim=1).max())


def float64_stats(logits: torch.Tensor, targets: torch.Tensor, k: int) -> dict:
    """Float64 statistics of logits [T, V] for targets [T] (-100: none), written independently of
    lightlens: logprob, logsumexp, entropy, rank, top-k logprobs and ids, and the float64 logits."""
    x = logits.double()
    lse = torch.logsumexp(x, -1)
    logp = x - lse[:, None]
    ent = -torch.where(logp.exp() > 0, logp.exp() * logp, torch.zeros_like(logp)).sum(-1)
    safe = targets.clamp(min=0)
    t = x.gather(1, safe[:, None])
    lp = torch.where(targets < 0, torch.nan, (t[:, 0] - lse).double())
    rank = torch.where(targets < 0, 0, (x > t).sum(-1) + 1)
    top = x.topk(min(k, x.shape[-1]), -1)
    return dict(logprob=lp, logsumexp=lse, entropy=ent, rank=rank, top_vals=top.values - lse[:, None],
                top_ids=top.indices, x=x)


def model_oracle(lm, ids):
    """Float64 log_softmax of the model's own logits: logprob, entropy, rank, top-k per target."""
    with torch.no_grad():
        logits = lm.model(torch.tensor([ids])).logits[0, :-1].double()
    logp = logits.log_softmax(-1)
    tgt = torch.tensor(ids[1:])
    lp = logp.gather(1, tgt[:, None])[:, 0]
    ent = -(logp.exp() * logp).sum(-1)
    rank = (logits > logits.gather(1, tgt[:, None])).sum(-1) + 1
    top = logits.topk(5, dim=-1)
    return lp.numpy(), ent.numpy(), rank.numpy(), top.indices.numpy(), (top.values - logits.logsumexp(-1, keepdim=True)).numpy()


def float64_divergence(logits_p: torch.Tensor, logits_q: torch.Tensor, targets: torch.Tensor) -> dict:
    """Float64 comparison of two rows sets of logits [T, V] (P the base), written independently
    of lightlens straight from the definitions (DESIGN, "Two distributions over one text"):
    KL(P‖Q), KL(Q‖P), JS with M = (P+Q)/2 (0·log 0 = 0), entropies, target logprobs, ranks, argmax."""
    xp, xq = logits_p.double(), logits_q.double()
    lp, lq = xp.log_softmax(-1), xq.log_softmax(-1)
    p, q = lp.exp(), lq.exp()
    lm = ((p + q) / 2).log()

    def kl(a, la, lb):
        return torch.where(a > 0, a * (la - lb), torch.zeros_like(a)).sum(-1)

    safe = targets.clamp(min=0)[:, None]
    none = targets < 0
    return dict(
        lse_p=xp.logsumexp(-1), lse_q=xq.logsumexp(-1),
        kl=kl(p, lp, lq), reverse_kl=kl(q, lq, lp), js=0.5 * kl(p, lp, lm) + 0.5 * kl(q, lq, lm),
        entropy_p=-torch.where(p > 0, p * lp, torch.zeros_like(p)).sum(-1),
        entropy_q=-torch.where(q > 0, q * lq, torch.zeros_like(q)).sum(-1),
        logprob_p=torch.where(none, torch.nan, lp.gather(1, safe)[:, 0]),
        logprob_q=torch.where(none, torch.nan, lq.gather(1, safe)[:, 0]),
        rank_p=torch.where(none, 0, (xp > xp.gather(1, safe)).sum(-1) + 1),
        rank_q=torch.where(none, 0, (xq > xq.gather(1, safe)).sum(-1) + 1),
        top1_p=xp.argmax(-1), top1_q=xq.argmax(-1),
        mean_abs_d=torch.where((p > 0) & (q > 0), (p + q) * (lp - lq).abs(), torch.zeros_like(p)).sum(-1),
    )


def kl_tol(kl_ref: torch.Tensor) -> torch.Tensor:
    """The issue's tolerance for float32 KL against float64: 1e-5 relative where KL > 1e-4,
    1e-7 absolute below."""
    return torch.where(kl_ref > 1e-4, 1e-5 * kl_ref.abs(), torch.full_like(kl_ref, 1e-7))


def js_tol(want: dict, v: int) -> torch.Tensor:
    """Tolerance for float32 JS: ``kl_tol`` plus the rounding of its terms, which are of the
    order of p·|log p − log q| (not of its square, as KL's are): a V-term float32 sum is off by
    about log2(V)·eps·Σ|term|, and we allow twice that."""
    return kl_tol(want["js"]) + 2 * math.log2(v) * EPS32 * want["mean_abs_d"]
