"""Pieces every Triton kernel shares: launch configurations, the online softmax statistics,
the running top-k, and the host-side checks and buffers.

Every kernel works on a tile of logits ``x`` [BLOCK_T, BLOCK_V] in float32 (padding and
masked vocabulary are -inf) and keeps, per row:
    m    running max                       s    sum exp(x - m)
    w    sum exp(x - m)·(x - m)            cnt  #{x > target logit}, the target excluded
    top  the k best (logit, id) packed as int64 keys
so that at the end ``lse = m + log s`` and ``entropy = log s - w / s``. A NaN logit makes
``s`` NaN (exp(NaN) enters the sum), and so every float statistic of its row: no flag needed. Two such states (of
two vocabulary ranges) combine exactly (:func:`merge_stats`): that is what lets a kernel split
the vocabulary over programs (:mod:`..split_v`).

Top-k keys: the float's bits made order-preserving as an int32, shifted up 32 bits, plus
``2^31 - 1 - id`` so that equal logits prefer the lower id. One int64 comparison orders
(logit, id) pairs; the host decodes and sorts the k survivors (:func:`decode_topk`).

Targets: a target outside [0, V) that is not ``ignore_index`` is refused on the host when the
targets come from the CPU (:func:`check_targets`); targets already on the GPU are not read back
(that would stall the host), so the kernels guard themselves: such a row gets rank -1 and NaN
logprob, and nothing is read out of bounds.
"""
from __future__ import annotations

import functools
import os
from typing import NamedTuple

import torch
import triton
import triton.language as tl

from .common import MAX_TOP_K

# Top-k: ``K`` (k) is a runtime argument, never specialised; the compiled code depends on it
# only through K_PAD (k rounded up to a power of two, at least 8) and TOPK (k > 0), both
# constexprs: five compiled variants (no top-k, 8, 16, 32, 64) serve every k.
def topk_constexprs(k: int) -> dict:
    """The constexprs a top-``k`` launch compiles with.

    >>> topk_constexprs(20), topk_constexprs(3), topk_constexprs(0)
    ({'K_PAD': 32, 'TOPK': True}, {'K_PAD': 8, 'TOPK': True}, {'K_PAD': 1, 'TOPK': False})
    """
    return {"K_PAD": max(8, next_pow2(k)) if k > 0 else 1, "TOPK": k > 0}


# the output pointers every kernel takes, as Triton signature types (for ahead-of-time compiles)
OUTPUT_SIGNATURE = {"logprob_ptr": "*fp32", "lse_ptr": "*fp32", "ent_ptr": "*fp32", "rank_ptr": "*i64", "keys_ptr": "*i64"}
# the split-V partial buffers (see ..split_v) as Triton signature types
PARTIAL_SIGNATURE = {"part_f_ptr": "*fp32", "part_i_ptr": "*i32", "part_keys_ptr": "*i64"}
DEFAULT_SMS = 132  # an H100 SXM; the launchers read the real count from the device
DTYPE_NAMES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}
# what a kernel can be asked for, and therefore what the shipped configurations cover
SHIPPED_DTYPES = ("bf16", "fp16", "fp32")
SHIPPED_TOP_K = (0, 8, 16, 32, 64)  # one k per compiled top-k variant (see topk_constexprs)


class LaunchConfig(NamedTuple):
    """How a kernel is launched: tile sizes, warps, software-pipeline stages, how many programs
    split the vocabulary (``splits`` > 1: partial statistics merged by a second kernel) and,
    where set, a register ceiling for ptxas (``maxnreg``). ``block_d`` is the fused kernel's
    hidden-size chunk (0 elsewhere).

    >>> LaunchConfig(64, 128, 64, splits=3).launch_options(interpret=False)
    {'num_warps': 8, 'num_stages': 3}
    """

    block_t: int
    block_v: int
    block_d: int = 0
    num_warps: int = 8
    num_stages: int = 3
    splits: int = 1
    maxnreg: int | None = None

    def launch_options(self, interpret: bool) -> dict:
        """Triton's launch options (none under the interpreter, which ignores them)."""
        if interpret:
            return {}
        extra = {} if self.maxnreg is None else {"maxnreg": self.maxnreg}
        return {"num_warps": self.num_warps, "num_stages": self.num_stages, **extra}


def interpreting() -> bool:
    """True when Triton runs kernels in its CPU interpreter (``TRITON_INTERPRET=1``).

    >>> interpreting()   # the test suite sets TRITON_INTERPRET=1
    True
    """
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


GPU_KINDS = ("sm_90", "sm_80")  # the device kinds launch configurations are chosen (and compiled) for


def device_kind(device: torch.device | str = "cuda") -> str:
    """The ``device`` argument of the launch-configuration functions: ``"interpret"`` under
    ``TRITON_INTERPRET=1``; on a GPU ``"sm_90"`` for Hopper and newer, ``"sm_80"`` for Ampere
    and Ada (read once per device; no synchronisation).

    >>> device_kind()
    'interpret'
    """
    if interpreting():
        return "interpret"
    device = torch.device(device)
    index = device.index if device.index is not None else torch.cuda.current_device()
    return "sm_90" if _cuda_capability(index)[0] >= 9 else "sm_80"


@functools.lru_cache(maxsize=None)
def _cuda_capability(index: int) -> tuple[int, int]:
    return torch.cuda.get_device_capability(index)


def dtype_name(dtype) -> str:
    """Triton's name of a floating dtype (a torch dtype or already a name).

    >>> dtype_name(torch.bfloat16), dtype_name("fp32")
    ('bf16', 'fp32')
    """
    name = DTYPE_NAMES.get(dtype, dtype)
    if name not in SHIPPED_DTYPES:
        raise ValueError(f"the kernels take float32, float16 or bfloat16, got {dtype}")
    return name


@functools.lru_cache(maxsize=None)
def _cuda_sms(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def sm_count(device: torch.device) -> int:
    """Streaming multiprocessors of a CUDA ``device`` (cached; no synchronisation), else
    :data:`DEFAULT_SMS`.

    >>> sm_count(torch.device("cpu"))
    132
    """
    if device.type != "cuda":
        return DEFAULT_SMS
    return _cuda_sms(device.index if device.index is not None else torch.cuda.current_device())


def cdiv(a: int, b: int) -> int:
    """Ceiling division.

    >>> cdiv(7, 2)
    4
    """
    return -(-a // b)


def next_pow2(n: int) -> int:
    """Smallest power of two >= n (at least 1).

    >>> next_pow2(20), next_pow2(0)
    (32, 1)
    """
    return 1 << max(0, int(n) - 1).bit_length()


def ast_source(fn, sig: dict, const: dict, aligned: bool = True, ints=(), always=()):
    """A Triton ``ASTSource`` of kernel ``fn`` for ahead-of-time compiles: ``sig`` maps argument
    names to Triton types, ``const`` the constexprs to their values. The divisibility by 16 a
    real launch gives its arguments is stated for the integers in ``always`` and, when
    ``aligned``, for every pointer (torch's allocations) and the integers in ``ints`` (strides
    and sizes that are multiples of 16), so that the compile sees the vectorised loads a GPU
    launch does; unaligned, for those in ``always`` only.

    >>> @triton.jit
    ... def add_one(x_ptr, n, BLOCK: tl.constexpr):
    ...     i = tl.arange(0, BLOCK)
    ...     tl.store(x_ptr + i, tl.load(x_ptr + i, mask=i < n) + 1, mask=i < n)
    >>> src = ast_source(add_one, {"x_ptr": "*fp32", "n": "i32"}, {"BLOCK": 16}, ints=["n"])
    >>> src.attrs, src.signature["BLOCK"]
    ({(0,): [['tt.divisibility', 16]], (1,): [['tt.divisibility', 16]]}, 'constexpr')
    >>> ast_source(add_one, {"x_ptr": "*fp32", "n": "i32"}, {"BLOCK": 16}, aligned=False).attrs
    {}
    """
    from triton.compiler import ASTSource

    names = list(fn.arg_names)
    pointers = [n for n, ty in sig.items() if ty.startswith("*")]
    divisible = [*always, *(pointers + list(ints) if aligned else [])]
    attrs = {(names.index(n),): [["tt.divisibility", 16]] for n in sorted(set(divisible), key=names.index)}
    return ASTSource(fn, {**sig, **{c: "constexpr" for c in const}}, constexprs=const, attrs=attrs)


def shipped_variants() -> list[tuple[str, int, bool]]:
    """(dtype, k, aligned) for every kernel an op compiles on a GPU: each dtype, one k per
    compiled top-k variant (:func:`topk_constexprs`), with and without the alignment
    specialisation.

    >>> len(shipped_variants()), shipped_variants()[0], shipped_variants()[-1]
    (30, ('bf16', 0, True), ('fp32', 64, False))
    """
    return [(d, k, a) for a in (True, False) for d in SHIPPED_DTYPES for k in SHIPPED_TOP_K]


def choose_splits(row_blocks: int, v: int, block_v: int, sms: int = DEFAULT_SMS, min_tiles: int = 2) -> int:
    """How many programs share each row block's vocabulary, so that the grid has at least two
    programs per SM: 1 when the row blocks alone are enough, else as many splits as that takes,
    each at least ``min_tiles`` tiles of ``block_v`` (the per-program start-up, such as the
    target logit, stays small against the work).

    >>> choose_splits(4, 32768, 128)       # T = 256 in 64-row blocks: 86 splits of 3 tiles
    86
    >>> choose_splits(300, 128256, 128), choose_splits(1, 300, 128)
    (1, 2)
    """
    target = 2 * sms
    if row_blocks >= target:
        return 1
    tiles = cdiv(v, block_v)
    per = max(min_tiles, tiles // cdiv(target, row_blocks))
    return max(1, cdiv(tiles, per))


@triton.jit
def program_rows(targets_ptr, T, V, ignore_index, BLOCK_T: tl.constexpr):
    """This program's rows, their mask, their target columns as int32 (-1 for none), which
    rows have no valid target (``ignored``: 1 for ``ignore_index``, 2 for a target outside
    [0, V)), and a safe target index (0 for those) to read with."""
    rows = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    rmask = rows < T
    target = tl.load(targets_ptr + rows, mask=rmask, other=ignore_index)
    bad = (target < 0) | (target >= V)
    ignored = tl.where(target == ignore_index, 1, tl.where(bad, 2, 0))
    safe = tl.where(ignored != 0, 0, target)
    return rows, rmask, tl.where(ignored != 0, -1, safe).to(tl.int32), ignored, safe


@triton.jit
def init_stats(BLOCK_T: tl.constexpr):
    """Empty running statistics (m, s, w, cnt) for BLOCK_T rows."""
    return (tl.full([BLOCK_T], float("-inf"), tl.float32), tl.zeros([BLOCK_T], tl.float32),
            tl.zeros([BLOCK_T], tl.float32), tl.zeros([BLOCK_T], tl.int32))


@triton.jit
def online_update(x, cols, m, s, w, cnt, t_logit, target, EXCLUDE_TARGET: tl.constexpr):
    """Fold a tile ``x`` [BT, BV] into the running statistics of its rows. ``EXCLUDE_TARGET``:
    leave the target's own column out of the rank count, for a kernel whose ``t_logit`` is not
    bitwise the tile's value there (computed another way); where it is, ``x > t_logit`` is false
    at the target anyway and the comparison is saved."""
    m_new = tl.maximum(m, tl.max(x, 1))
    ref = tl.where(m_new == float("-inf"), 0.0, m_new)
    shift = m - ref
    alpha = tl.exp(shift)
    d = x - ref[:, None]
    e = tl.exp(d)
    ed = e * tl.maximum(d, -1e30)  # e·d, with 0·(-inf) = 0 where x = -inf (0 either way below -1e30)
    w = alpha * (w + tl.where(s > 0, shift, 0.0) * s) + tl.sum(ed, 1)
    s = s * alpha + tl.sum(e, 1)
    above = x > t_logit[:, None]
    if EXCLUDE_TARGET:
        above = above & (cols[None, :] != target[:, None])
    cnt += tl.sum(above.to(tl.int32), 1)
    return m_new, s, w, cnt


@triton.jit
def fold_tile(x, cols, cmask, m, s, w, cnt, top, t_logit, target,
              EXCLUDE_TARGET: tl.constexpr, TOPK: tl.constexpr):
    """Fold a tile ``x`` [BT, BV] into the running statistics and, with ``TOPK``, the top-k."""
    m, s, w, cnt = online_update(x, cols, m, s, w, cnt, t_logit, target, EXCLUDE_TARGET)
    if TOPK:
        top = topk_merge(top, x, cols, cmask)
    return m, s, w, cnt, top


@triton.jit
def merge_stats(m, s, w, m2, s2, w2):
    """Combine the (max, sum-exp, entropy term) of two disjoint parts of the same rows."""
    m_new = tl.maximum(m, m2)
    ref = tl.where(m_new == float("-inf"), 0.0, m_new)
    a = tl.exp(m - ref)
    b = tl.exp(m2 - ref)
    w = a * (w + tl.where(s > 0, m - ref, 0.0) * s) + b * (w2 + tl.where(s2 > 0, m2 - ref, 0.0) * s2)
    return m_new, a * s + b * s2, w


@triton.jit
def topk_init(BLOCK_T: tl.constexpr, K, K_PAD: tl.constexpr):
    """Running top-k keys [BT, K_PAD]: distinct sentinels below every real key; pad slots at max."""
    slots = tl.arange(0, K_PAD)
    row = tl.where(slots < K, -9223372036854775807 - 1 + slots.to(tl.int64), 9223372036854775807)
    return tl.zeros([BLOCK_T, K_PAD], dtype=tl.int64) + row[None, :]


@triton.jit
def topk_merge(top, x, cols, cmask):
    """Merge the tile ``x`` [BT, BV] (columns ``cols``, valid where ``cmask``) into ``top``.

    First one float comparison per entry against the row's k-th best value (``-inf`` while
    fewer than k entries were seen): ``not x < worst`` holds for every entry that could enter
    (NaN included), so when it holds nowhere in the tile, the steady state, nothing else runs.
    Otherwise the exact candidates are the entries whose key beats the k-th best, compared as
    (order-preserving int32 of the float, 2^31 - 1 - id) pairs, so no [BT, BV] int64 keys are
    built; each loop pass inserts every row's best candidate (one int32 max for the value, one
    int32 min for the lowest id among equal values).
    """
    worst = tl.min(top, 1)
    w_hi = (worst >> 32).to(tl.int32)
    w_bits = tl.where(w_hi >= 0, w_hi, w_hi ^ 0x7FFFFFFF)
    w_val = tl.where(w_hi == -2147483648, float("-inf"), w_bits.to(tl.float32, bitcast=True))
    maybe = ~(x < w_val[:, None])
    if tl.max(tl.max(maybe.to(tl.int32), 1), 0) > 0:
        bits = x.to(tl.int32, bitcast=True)
        key32 = tl.where(bits >= 0, bits, bits ^ 0x7FFFFFFF)
        lo = 2147483647 - cols
        w_lo = (worst & 0xFFFFFFFF).to(tl.int32)
        cand = cmask[None, :] & ((key32 > w_hi[:, None]) | ((key32 == w_hi[:, None]) & (lo[None, :] > w_lo[:, None])))
        while tl.max(tl.max(cand.to(tl.int32), 1), 0) > 0:
            b_hi = tl.max(tl.where(cand, key32, -2147483648), 1)
            b_col = tl.min(tl.where(cand & (key32 == b_hi[:, None]), cols[None, :], 2147483647), 1)
            best = (b_hi.to(tl.int64) << 32) + (2147483647 - b_col).to(tl.int64)
            take = best > worst
            top = tl.where((top == worst[:, None]) & take[:, None], best[:, None], top)
            cand = cand & take[:, None] & (cols[None, :] != b_col[:, None])
            worst = tl.min(top, 1)
    return top


@triton.jit
def topk_insert(top, keys):
    """Insert candidate keys [BT, N] (int64; non-candidates -2^63) into ``top``."""
    best = tl.max(keys, 1)
    worst = tl.min(top, 1)
    while tl.max((best > worst).to(tl.int32), 0) > 0:
        take = best > worst
        top = tl.where((top == worst[:, None]) & take[:, None], best[:, None], top)
        keys = tl.where((keys == best[:, None]) & take[:, None], -9223372036854775807 - 1, keys)
        best = tl.max(keys, 1)
        worst = tl.min(top, 1)
    return top


@triton.jit
def finish_and_store(rows, rmask, m, s, w, cnt, t_logit, ignored, top,
                     logprob_ptr, lse_ptr, ent_ptr, rank_ptr, keys_ptr,
                     K, K_PAD: tl.constexpr, TOPK: tl.constexpr):
    """Final statistics of each row, stored; NaN logits make every float statistic NaN; an
    ignored row has rank 0, a row whose target is out of range rank -1."""
    has_nan = s != s
    lse = tl.where(has_nan, float("nan"), m + tl.log(s))
    ent = tl.where(has_nan, float("nan"), tl.log(s) - w / tl.where(s > 0, s, 1.0))
    logprob = tl.where((ignored != 0) | has_nan, float("nan"), t_logit - lse)
    rank = tl.where(ignored == 1, 0, tl.where(ignored == 2, -1, cnt + 1))
    tl.store(lse_ptr + rows, lse, mask=rmask)
    tl.store(ent_ptr + rows, ent, mask=rmask)
    tl.store(logprob_ptr + rows, logprob, mask=rmask)
    tl.store(rank_ptr + rows, rank.to(tl.int64), mask=rmask)
    if TOPK:
        slots = tl.arange(0, K_PAD)
        ptrs = keys_ptr + rows.to(tl.int64)[:, None] * K + slots[None, :]
        tl.store(ptrs, top, mask=rmask[:, None] & (slots[None, :] < K))


def decode_topk(keys: torch.Tensor, lse: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Keys [T, k] → (ids [T, k] int64, logprobs [T, k] float32), best first.

    >>> key = (torch.tensor([1.5]).view(torch.int32).long() << 32) + (2**31 - 1 - 7)
    >>> decode_topk(key[None, :], torch.tensor([0.5]))
    (tensor([[7]]), tensor([[1.]]))
    """
    keys = keys.sort(dim=-1, descending=True).values
    key32 = keys >> 32
    bits = torch.where(key32 >= 0, key32, key32 ^ 0x7FFFFFFF).to(torch.int32)
    values = bits.view(torch.float32)
    ids = 2147483647 - (keys & 0xFFFFFFFF)
    return ids, values - lse[:, None]


def empty_outputs(t: int, k: int, device):
    """Output buffers: logprob, lse, entropy (f32), rank (i64), top-k keys (i64).

    >>> [tuple(b.shape) for b in empty_outputs(3, 2, "cpu")]
    [(3,), (3,), (3,), (3,), (3, 2)]
    """
    f = dict(dtype=torch.float32, device=device)
    return (torch.empty(t, **f), torch.empty(t, **f), torch.empty(t, **f),
            torch.empty(t, dtype=torch.int64, device=device),
            torch.empty((t, k), dtype=torch.int64, device=device))


def check_targets(targets: torch.Tensor, t: int, v: int, ignore_index: int,
                  device: torch.device | str = "cpu") -> torch.Tensor:
    """Targets as a contiguous int64 [T] vector on ``device``, without stalling the GPU.

    Targets on the CPU are checked there (each in [0, V) or ``ignore_index``, else
    ``ValueError``) and uploaded from pinned memory with a non-blocking copy. Targets already
    on the GPU are not checked here: reading them back would wait for the GPU. The kernels
    guard every row instead (an out-of-range target gives rank -1 and NaN logprob, and nothing
    is read out of bounds), so callers that want the error pass CPU targets.

    >>> check_targets(torch.tensor([3, -100], dtype=torch.int32), 2, 10, -100)
    tensor([   3, -100])
    >>> check_targets(torch.tensor([10, 0]), 2, 10, -100)
    Traceback (most recent call last):
    ValueError: targets must lie in [0, 10) or equal ignore_index=-100
    """
    if targets.shape != (t,):
        raise ValueError(f"targets must have shape ({t},), got {tuple(targets.shape)}")
    device = torch.device(device)
    if targets.device.type == "cpu":
        targets = targets.to(torch.int64).contiguous()
        bad = (targets != ignore_index) & ((targets < 0) | (targets >= v))
        if bool(bad.any()):
            raise ValueError(f"targets must lie in [0, {v}) or equal ignore_index={ignore_index}")
        if device.type == "cuda":
            targets = targets.pin_memory().to(device, non_blocking=True)
        return targets
    return targets.to(device=device, dtype=torch.int64).contiguous()


def check_top_k(top_k: int, v: int) -> int:
    """top_k clipped to V, within what the kernels support.

    >>> check_top_k(20, 8)
    8
    """
    if not 0 <= top_k <= MAX_TOP_K:
        raise ValueError(f"top_k must be in [0, {MAX_TOP_K}], got {top_k}")
    return min(top_k, v)
