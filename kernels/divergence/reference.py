"""`divergence_stats_reference`: two predictive distributions over one vocabulary compared row by
row in pure torch, a block of rows at a time (float32, extra memory O(rows · V), never [T, V]: the
[rows, V] temporaries are work buffers kept between calls, :mod:`..workspace`). The CPU path,
and the Triton kernel's twin.

For a row with logits ``x_p`` (the base P) and ``x_q`` (the other model Q), with
``D = (x_p − x_q) − (lse_p − lse_q) = log P − log Q`` computed in float32:

    KL(P‖Q)  = Σ_{p>0} p·g(D) + Σ_{p=0} q,     g(D) = D + expm1(−D)   (Σ_{p>0} p·e^−D + Σ_{p=0} q = 1)
    KL(Q‖P)  = Σ_{q>0} q·g(−D) + Σ_{q=0} p
    JS       = ½ Σ p·f(−D) + ½ Σ q·f(D),   f(u) = log(2 / (1 + e^u)) = −log1p(expm1(u) / 2)

Every term of the KL sums is ≥ 0 and of the order of D² (the KL itself), where
``Σ p·(log p − log q)`` adds terms of the order of D whose rounding (~1e-6 for logits of size
10) swamps a small KL (float32 vs bfloat16): float32 accumulation stays accurate relative to
the KL. Both KL sums and JS are also insensitive, to first order, to the rounding of
``lse_p − lse_q``, which shifts every D of a row by one constant. ``D − x_p + x_q`` is exact
where the logits are close (Sterbenz). Entries with P(v) = 0 contribute nothing to the
P-weighted sums (Q likewise); where D < −30 the KL term is ``p·D + q − p`` (no overflow). NaN
logits make every float statistic of their row NaN.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from ..common import IGNORE_INDEX, split_targets, top_k_rows
from ..workspace import workspace

# one float32 [rows, V] block per model and temporary (10 rows at V = 49,152): the ~9 of them a
# block uses then stay in a 32 MB last-level cache; 8 MB blocks measured 12-15% slower here
DIVERGENCE_BYTES = 2 * 2**20


class DivergenceStats(NamedTuple):
    """Per-row comparison of two distributions P (base) and Q over one vocabulary (float32 / int64).

    lse_p, lse_q [T]                 log sum exp of each row of logits
    kl [T]                           KL(P‖Q), nats;   reverse_kl [T]  KL(Q‖P);   js [T]  Jensen-Shannon
    entropy_p, entropy_q [T]         -Σ p log p, nats
    logprob_p, logprob_q [T]         log P(target), log Q(target); NaN where target == ignore_index
    rank_p, rank_q [T] i64           1 + #{v : x[v] > x[target]}; 0 where ignored
    top1_p, top1_q [T] i64           argmax (the lowest id among equal logits)
    top_k_ids_p/q [T, k] i64, top_k_logprobs_p/q [T, k] f32  (k may be 0)
    """

    lse_p: torch.Tensor
    lse_q: torch.Tensor
    kl: torch.Tensor
    reverse_kl: torch.Tensor
    js: torch.Tensor
    entropy_p: torch.Tensor
    entropy_q: torch.Tensor
    logprob_p: torch.Tensor
    logprob_q: torch.Tensor
    rank_p: torch.Tensor
    rank_q: torch.Tensor
    top1_p: torch.Tensor
    top1_q: torch.Tensor
    top_k_ids_p: torch.Tensor
    top_k_logprobs_p: torch.Tensor
    top_k_ids_q: torch.Tensor
    top_k_logprobs_q: torch.Tensor


def check_pair(logits_p: torch.Tensor, logits_q: torch.Tensor, targets: torch.Tensor) -> None:
    """Both rows sets [T, V] of one shape, targets [T]."""
    if logits_p.dim() != 2 or logits_p.shape != logits_q.shape:
        raise ValueError(f"logits_p and logits_q must both be [T, V] of one shape, got "
                         f"{tuple(logits_p.shape)} and {tuple(logits_q.shape)}")
    if targets.shape != (logits_p.shape[0],):
        raise ValueError(f"targets must have shape ({logits_p.shape[0]},), got {tuple(targets.shape)}")


def block_rows(v: int, block_bytes: int = DIVERGENCE_BYTES) -> int:
    """Rows per block so that one float32 [rows, V] block takes about ``block_bytes``.

    >>> block_rows(49152), block_rows(10)
    (10, 52428)
    """
    return max(1, min(1 << 16, block_bytes // (4 * v)))


def divergence_stats_reference(
    logits_p: torch.Tensor,
    logits_q: torch.Tensor,
    targets: torch.Tensor,
    top_k: int = 0,
    *,
    ignore_index: int = IGNORE_INDEX,
    block_bytes: int = DIVERGENCE_BYTES,
) -> DivergenceStats:
    """Compare the rows of ``logits_p`` (base) and ``logits_q`` [T, V] (any float dtype), in
    float32, a block of rows at a time.

    >>> p = torch.tensor([[2.0, 1.0, 0.0]]); q = torch.tensor([[0.0, 1.0, 2.0]])
    >>> s = divergence_stats_reference(p, q, torch.tensor([1]))
    >>> round(float(s.kl[0]), 4), round(float(s.js[0]), 4), s.top1_p.tolist(), s.top1_q.tolist()
    (1.1504, 0.2476, [0], [2])
    """
    check_pair(logits_p, logits_q, targets)
    t, v = logits_p.shape
    k = min(max(0, int(top_k)), v)
    rows = block_rows(v, block_bytes)
    parts = [_block(logits_p[r0 : r0 + rows], logits_q[r0 : r0 + rows], targets[r0 : r0 + rows], k, ignore_index)
             for r0 in range(0, t, rows)]
    if not parts:
        f = torch.empty(0, device=logits_p.device)
        i = torch.empty(0, dtype=torch.int64, device=logits_p.device)
        return DivergenceStats(*([f] * 9), i, i, i, i, i.reshape(0, k), f.reshape(0, k), i.reshape(0, k), f.reshape(0, k))
    return DivergenceStats(*(torch.cat(cols) for cols in zip(*parts)))


class _Side(NamedTuple):
    lse: torch.Tensor      # [R]
    logp: torch.Tensor     # [R, V] log-probabilities, less ``log_norm``
    p: torch.Tensor        # [R, V] probabilities, times ``norm``
    entropy: torch.Tensor  # [R]
    norm: torch.Tensor | float = 1.0      # [R, 1]: Σ p (the fast path keeps exp(x − max) unnormalised)
    log_norm: torch.Tensor | float = 0.0  # [R, 1]: log norm


def _logp_at(S: _Side, cols: torch.Tensor) -> torch.Tensor:
    """log P at ``cols`` [R, n] (the side's log-probabilities, normalised)."""
    return S.logp.gather(1, cols) - S.log_norm


def _side(x: torch.Tensor) -> _Side:
    """Normalise one block of float32 logits (``x`` is overwritten with the log-probabilities)."""
    lse = torch.logsumexp(x, 1)
    logp = x.sub_(lse[:, None])
    p = logp.exp()
    entropy = -_masked_sum(p, logp, p)
    return _Side(lse, logp, p, entropy)


def _masked_sum(weight: torch.Tensor, value: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    """Σ weight·value over the entries where ``where > 0`` (0·±inf and 0·NaN count as 0)."""
    prod = weight * value
    return prod.masked_fill_(where <= 0, 0.0).sum(1)


def _block(xp_raw, xq_raw, targets, k: int, ignore_index: int):
    safe, ignored = split_targets(targets, ignore_index)
    xp, xq = (x if x.dtype == torch.float32 else _buffer(name, x).copy_(x) for name, x in (("xp", xp_raw), ("xq", xq_raw)))
    work = _buffer("work", xp)
    t_p, t_q = xp.gather(1, safe[:, None]), xq.gather(1, safe[:, None])
    # counted as float32 sums of 0/1 in the work buffer (exact below 2^24; vectorises where bools do not)
    ranks = [(torch.gt(x, t, out=work).sum(1).long() + 1).masked_fill(ignored, 0) for x, t in ((xp, t_p), (xq, t_q))]
    fast = _fast_terms(xp, xq, work)
    if fast is not None:  # every entry finite and within e^±30 of the other's: the fast path
        P, Q, terms = fast
    else:  # -inf, NaN or far-apart entries (rare): guarded sums
        lse_p, lse_q = torch.logsumexp(xp, 1), torch.logsumexp(xq, 1)
        D = torch.sub(xp, xq).sub_((lse_p - lse_q)[:, None])
        tops = [xp.argmax(1), xq.argmax(1)]  # before the guarded path overwrites its copies
        P, Q, terms = _careful_terms(xp, xq, D, copy=(xp is xp_raw, xq is xq_raw))
    nan = torch.isnan(P.lse) | torch.isnan(Q.lse)
    nan_f = torch.full_like(P.lse, float("nan"))
    out_f = [torch.where(nan, nan_f, a) for a in (P.lse, Q.lse, *terms, P.entropy, Q.entropy)]
    lp = [torch.where(nan | ignored, nan_f, _logp_at(S, safe[:, None])[:, 0]) for S in (P, Q)]
    if k:
        (vp, ip), (vq, iq) = top_k_rows(P.logp, k), top_k_rows(Q.logp, k)
        vp, vq = vp - P.log_norm, vq - Q.log_norm
    if fast is not None:  # top-1 from the top-k where k >= 2, the lowest id where the best two tie
        tops = [_top1(v, i, x) for v, i, x in
                ((vp, ip, xp), (vq, iq, xq))] if k >= 2 else [xp.argmax(1), xq.argmax(1)]
    tops = [t.masked_fill(nan, -1) for t in tops]
    if not k:
        ip = iq = torch.empty((len(targets), 0), dtype=torch.int64, device=xp.device)
        vp = vq = torch.empty((len(targets), 0), device=xp.device)
    return (*out_f, *lp, *ranks, *tops, ip, vp, iq, vq)


def _buffer(name: str, like: torch.Tensor) -> torch.Tensor:
    """A float32 work buffer shaped like ``like`` [R, V], reused from block to block (:mod:`..workspace`)."""
    return workspace(f"divergence.{name}", like.numel(), device=like.device).view(like.shape)


def _normalise(x: torch.Tensor, side: str) -> _Side:
    """One side of float32 logits [R, V] with one exp an entry and neither [R, V] array
    normalised (two passes fewer): ``a = x − m`` and ``u = exp(a)`` in the side's work buffers,
    ``s = Σ u``, so p = u / s, log p = a − log s, lse = m + log s and the entropy
    log s − Σ u·a / s."""
    m = x.amax(1, keepdim=True)
    a = torch.sub(x, m, out=_buffer(f"shifted_{side}", x))
    u = torch.exp(a, out=_buffer(f"exp_{side}", x))
    s = u.sum(1, keepdim=True)
    log_s = s.log()
    entropy = log_s[:, 0] - _dot(u, a, _buffer("work", x)) / s[:, 0]
    return _Side((m + log_s)[:, 0], a, u, entropy, s, log_s)


def _top1(vals: torch.Tensor, ids: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The argmax from a top-k (k >= 2): its first id, or argmax's lowest id where the best two tie."""
    top = ids[:, 0].clone()
    tie = vals[:, 0] == vals[:, 1]
    if bool(tie.any()):
        top[tie] = x[tie].argmax(1)
    return top


def _dot(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Row-wise Σ a·b of two [R, V] tensors (``out`` holds the products; a pairwise sum, so the
    rounding grows with log V, where a BLAS dot's grows with V)."""
    return torch.mul(a, b, out=out).sum(1)


def _fast_terms(xp, xq, w):
    """Everything from two blocks of finite float32 logits whose log-ratios D stay within ±30
    (so no entry is 0 in one row only and no e^±D overflows), or None where they do not: a
    few passes, one exp an entry and model. With e = expm1(−D):

        KL(P‖Q) = Σ p·(D + e)
        KL(Q‖P) = Σ q·(expm1(D) − D)
        JS      = ½ Σ p·f(−D) + ½ Σ q·f(D) = −½ Σ p·L − ½ Σ q·(D + L),  L = log1p(e / 2)

    (``p·f(−D) + q·f(D) = (p + q)·f(−D) − q·D``, f(−D) = −L); p and q arrive unnormalised
    (:func:`_normalise`), so each sum is divided by its side's norm once per row."""
    P, Q = _normalise(xp, "p"), _normalise(xq, "q")
    D = torch.sub(xp, xq, out=_buffer("D", xp)).sub_((P.lse - Q.lse)[:, None])
    lo, hi = D.aminmax()
    if not (float(lo.min()) >= -30.0 and float(hi.max()) <= 30.0):
        return None
    e = torch.neg(D, out=_buffer("e", xp)).expm1_()  # expm1(−D); ``w``: a work buffer
    sp, sq = P.norm[:, 0], Q.norm[:, 0]
    kl = _dot(P.p, torch.add(e, D, out=w), w) / sp
    # expm1(D) itself, not −e / (1 + e): where P outweighs Q by e^17 or more, 1 + e rounds to 0
    reverse_kl = _dot(Q.p, torch.expm1(D, out=w).sub_(D), w) / sq
    L = e.mul_(0.5).log1p_()
    js = -0.5 * (_dot(P.p, L, w) / sp + _dot(Q.p, D.add_(L), w) / sq)
    return P, Q, (kl, reverse_kl, js)


def _careful_terms(xp, xq, D, *, copy: tuple[bool, bool]):
    """The same sums with every entry guarded (P(v) = 0, Q(v) = 0, D beyond ±30, NaN);
    ``copy``: which side is the caller's own float32 logits, not to be overwritten."""
    xp, xq = (x.clone() if c else x for x, c in zip((xp, xq), copy))
    P, Q = _side(xp), _side(xq)
    kl = _kl_sum(P.p, Q.p, D)
    reverse_kl = _kl_sum(Q.p, P.p, -D)
    js = 0.5 * (_masked_sum(P.p, _half_f(-D), P.p) + _masked_sum(Q.p, _half_f(D), Q.p))
    return P, Q, (kl, reverse_kl, js)


def _kl_sum(p: torch.Tensor, q: torch.Tensor, D: torch.Tensor) -> torch.Tensor:
    """KL(P‖Q) for D = log p − log q: Σ p·(D + expm1(−D)) where p > 0 (``p·D + q − p`` where
    D < −30, whose e^−D would overflow), plus Q's mass where p = 0."""
    term = torch.where(D >= -30.0, p * (D + torch.expm1(-D.clamp(min=-30.0))), p * D + q - p)
    return torch.where(p > 0, term, q).sum(1)


def _half_f(u: torch.Tensor) -> torch.Tensor:
    """f(u) = log(2 / (1 + e^u)) = −log1p(expm1(u) / 2), relative-accurate for small u; for
    u > 30 it is log 2 − u (to 1e-13), which does not overflow."""
    f = torch.expm1(u.clamp(max=30.0)).mul_(0.5).log1p_().neg_()
    return torch.where(u > 30.0, 0.6931471805599453 - u, f)
