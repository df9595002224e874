"""The CPU path's statistics: float32 logits folded in tile by tile, as the Triton kernels do.

Rows of logits arrive as column tiles ``x`` [R, n] (float32, in a buffer the caller reuses);
each tile is folded into running per-row statistics and dropped, so the [T, V] logits never
exist and the work stays in a cache-sized tile. Per row we keep

    m      the running max                s     sum exp(x - m)
    w      sum exp(x - m)·(x - m)         above #{v != target : x_v > target logit}
    top    the k best logits and their ids

so that at the end ``lse = m + log s`` and ``entropy = log s - w / s`` (the online softmax of
the kernels, :mod:`._triton_utils`). Every pass over a tile is one vectorised torch op with
its output in a preallocated buffer: no temporary of the tile's size is allocated, which on
CPU is both the time (page faults, cache misses) and the memory (glibc keeps freed tens of MB).
"""
from __future__ import annotations

import torch

from .common import CHUNK_BYTES, TokenStats, cat_stats, split_targets
from .workspace import workspace

MAX_TILE_ROWS = 2048


def tile_shape(rows: int, v: int, tile_bytes: int = CHUNK_BYTES) -> tuple[int, int]:
    """(rows per tile, columns per tile) for ``rows`` rows over a vocabulary of ``v``: as many
    rows as fit (at most :data:`MAX_TILE_ROWS`, so the head's matmul stays efficient), then
    as many columns as ``tile_bytes`` allows (at least 64, so the top-k always fits a tile).

    >>> tile_shape(2048, 49152), tile_shape(10, 1000)
    ((2048, 1024), (10, 1000))
    """
    r = max(1, min(rows, MAX_TILE_ROWS, tile_bytes // (4 * 64)))
    return r, max(1, min(v, max(64, tile_bytes // (4 * r))))


def flat_buffer(name: str, rows: int, cols: int, device=None) -> torch.Tensor:
    """The float32 work buffer ``name`` of ``rows * cols`` elements, kept between calls
    (:mod:`.workspace`); :func:`tile` views it contiguously."""
    return workspace(name, rows * cols, device=device)


def tile(buffer: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """The first ``rows * cols`` elements of ``buffer`` as a contiguous [rows, cols] tile."""
    return buffer[: rows * cols].view(rows, cols)


class OnlineStats:
    """Running statistics of up to ``rows`` rows whose float32 logits arrive as column tiles
    at most ``width`` wide; its buffers are reused for every block of rows (:meth:`begin`).

    ``begin(target_logit [R] f32, targets [R] i64, ignored [R] bool)`` starts a block of rows
    (targets of ignored rows: any valid id), ``add(x [R, n] f32, v0)`` folds in the logits of
    ids ``v0 .. v0+n-1``, ``finish()`` returns the block's :class:`TokenStats`.

    >>> x = torch.tensor([[1.0, 3.0, 2.0, 0.0]])
    >>> acc = OnlineStats(rows=1, width=2, top_k=2)
    >>> acc.begin(x[:, 2], torch.tensor([2]), torch.tensor([False]))
    >>> acc.add(x[:, :2].clone(), 0); acc.add(x[:, 2:].clone(), 2)
    >>> s = acc.finish()
    >>> s.rank.tolist(), s.top_k_ids.tolist(), round(float(s.logsumexp[0]), 4)
    ([2], [[1, 2]], 3.4402)
    """

    def __init__(self, *, rows: int, width: int, top_k: int, device=None):
        self.k = top_k
        self._work = flat_buffer("online.work", rows, width, device=device)  # comparisons, then exponentials

    def begin(self, target_logit: torch.Tensor, targets: torch.Tensor, ignored: torch.Tensor, *,
              from_tiles: bool = False) -> None:
        """Start a block of rows: their target logits, target ids and which rows have none.
        ``from_tiles``: the target logits are the tiles' own entries (one tile covers the
        vocabulary), so no entry needs reconciling with them."""
        r = target_logit.shape[0]
        f = dict(dtype=torch.float32, device=target_logit.device)
        self.t = target_logit.float()
        self.targets, self.ignored, self.from_tiles = targets, ignored, from_tiles
        self.m = torch.full((r,), float("-inf"), **f)
        self.s = torch.zeros(r, **f)
        self.w = torch.zeros(r, **f)
        self.nan = torch.zeros(r, dtype=torch.bool, device=self.t.device)
        self.above = torch.zeros(r, dtype=torch.int64, device=self.t.device)
        self.top_vals = torch.full((r, self.k), float("-inf"), **f)
        self.top_ids = torch.full((r, self.k), -1, dtype=torch.int64, device=self.t.device)

    def add(self, x: torch.Tensor, v0: int) -> None:
        """Fold in the tile ``x`` [R, n] (contiguous float32 logits of ids ``v0 .. v0+n-1``);
        ``x`` is overwritten."""
        r, n = x.shape
        work = tile(self._work, r, n)
        tile_max = x.amax(1)
        self.nan |= torch.isnan(tile_max)
        self._count_above(x, v0, work)
        if self.k:
            self._merge_top(x, v0, tile_max)
        m_new = torch.maximum(self.m, tile_max)
        ref = m_new.masked_fill(m_new == float("-inf"), 0.0)  # all -inf so far: any finite reference
        x.sub_(ref[:, None])
        e = torch.exp(x, out=work)
        s_tile = e.sum(1)
        w_tile = x.mul_(e).sum(1)  # sum e·(x - ref)
        redo = torch.isnan(w_tile) & ~self.nan  # a -inf logit: e·x = 0·(-inf), which counts as 0
        if redo.any():
            w_tile[redo] = x[redo].nansum(1)
        shift = self.m - ref  # <= 0
        alpha = torch.exp(shift)
        self.w = alpha * (self.w + torch.where(self.s > 0, shift, 0.0) * self.s) + w_tile
        self.s = self.s * alpha + s_tile
        self.m = m_new

    def _count_above(self, x: torch.Tensor, v0: int, work: torch.Tensor) -> None:
        """Entries strictly above the target's logit; the target's own column never counts (its
        logit may come from another summation order than the tile's). Counted as a float32 sum
        of 0/1 (exact below 2^24 columns), which vectorises where a sum of bools does not."""
        n = x.shape[1]
        self.above += torch.gt(x, self.t[:, None], out=work).sum(1).long()
        if self.from_tiles:  # the target's own entry equals its logit: never above it
            return
        col = self.targets - v0
        inside = (col >= 0) & (col < n)
        if inside.any():
            own = x.gather(1, col.clamp(0, n - 1)[:, None])[:, 0]
            self.above -= (inside & (own > self.t)).long()

    def _merge_top(self, x: torch.Tensor, v0: int, tile_max: torch.Tensor) -> None:
        """Merge the tile into the running top-k, only for rows whose tile holds a logit above
        their k-th best so far (after the first tiles, few do); equal logits keep the lower id."""
        if v0 == 0:  # the first tile: every row
            vals, ids = x.topk(min(self.k, x.shape[1]), dim=1)
            self.top_vals[:, : vals.shape[1]], self.top_ids[:, : ids.shape[1]] = vals, ids
            return
        rows = (tile_max > self.top_vals[:, -1]).nonzero()[:, 0]
        if not len(rows):
            return
        vals, ids = x.index_select(0, rows).topk(min(self.k, x.shape[1]), dim=1)
        vals = torch.cat([self.top_vals[rows], vals], 1)
        ids = torch.cat([self.top_ids[rows], ids + v0], 1)
        vals, j = vals.topk(self.k, dim=1)
        self.top_vals[rows], self.top_ids[rows] = vals, ids.gather(1, j)

    def finish(self) -> TokenStats:
        """The block's statistics (NaN logits make every float statistic NaN)."""
        log_s = self.s.log()
        nan = torch.full_like(log_s, float("nan"))
        lse = torch.where(self.nan, nan, self.m + log_s)
        entropy = torch.where(self.nan, nan, log_s - self.w / torch.where(self.s > 0, self.s, 1.0))
        logprob = torch.where(self.ignored | self.nan, nan, self.t - lse)
        rank = (self.above + 1).masked_fill(self.ignored, 0)
        top_vals, top_ids = self._consistent_top()
        return TokenStats(logprob, lse, entropy, rank, top_ids, top_vals - lse[:, None])

    def _consistent_top(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The top-k with the target's own entry at the target logit the logprob and the rank use
        (a tile may have rounded it differently), re-sorted: best first, equal logits by lower id."""
        vals, ids = self.top_vals, self.top_ids
        if not self.k or self.from_tiles:
            return vals, ids
        own = (ids == self.targets[:, None]) & ~self.ignored[:, None]
        if not own.any():
            return vals, ids
        vals = torch.where(own, self.t[:, None], vals)
        by_id = ids.argsort(dim=1, stable=True)
        vals, ids = vals.gather(1, by_id), ids.gather(1, by_id)
        order = vals.argsort(dim=1, descending=True, stable=True)
        return vals.gather(1, order), ids.gather(1, order)


def fold_tiles(t: int, v: int, targets: torch.Tensor, top_k: int, *, ignore_index: int, chunk_bytes: int,
               device, target_logit, logits_tile, tiles_exact: bool = True) -> TokenStats:
    """The statistics of T rows of logits over V ids that exist only one tile at a time: for each
    block of rows, ``target_logit(r0, r1, safe_targets)`` gives the rows' target logits [R] and
    ``logits_tile(r0, r1, v0, n, out)`` writes the logits of ids ``v0 .. v0+n-1`` into the reused
    float32 tile ``out`` [R, n] and returns it. Both references are this loop.

    ``tiles_exact``: a tile's entries are the logits ``target_logit`` gives, up to float32
    rounding (given logits, or a float32 head). Then, where one tile holds the whole vocabulary,
    the targets' logits are read from it and ``target_logit`` is not called. A half-precision
    head's tiles are rounded to its dtype, so its targets always come from ``target_logit``:
    a token's numbers must not depend on how many rows share its batch.

    >>> x = torch.tensor([[1.0, 3.0, 2.0, 0.0]])
    >>> s = fold_tiles(1, 4, torch.tensor([2]), 1, ignore_index=-100, chunk_bytes=1024, device=None,
    ...                target_logit=lambda r0, r1, y: x[r0:r1].gather(1, y[:, None])[:, 0],
    ...                logits_tile=lambda r0, r1, v0, n, out: out.copy_(x[r0:r1, v0:v0 + n]))
    >>> s.rank.tolist(), s.top_k_ids.tolist()
    ([2], [[1]])
    """
    rows, cols = tile_shape(t, v, chunk_bytes)
    acc = OnlineStats(rows=rows, width=cols, top_k=top_k, device=device)
    buffer = flat_buffer("online.tile", rows, cols, device=device)
    parts = []
    whole = cols >= v and tiles_exact  # one tile holds the vocabulary: the targets' logits are its entries
    for r0 in range(0, t, rows):
        r1 = min(t, r0 + rows)
        safe, ignored = split_targets(targets[r0:r1], ignore_index)
        first = logits_tile(r0, r1, 0, min(cols, v), tile(buffer, r1 - r0, min(cols, v)))
        t_logit = first.gather(1, safe[:, None])[:, 0] if whole else target_logit(r0, r1, safe)
        acc.begin(t_logit, safe, ignored, from_tiles=whole)
        acc.add(first, 0)
        for v0 in range(cols, v, cols):
            n = min(cols, v - v0)
            acc.add(logits_tile(r0, r1, v0, n, tile(buffer, r1 - r0, n)), v0)
        parts.append(acc.finish())
    return cat_stats(parts, device, top_k)
