"""Work buffers kept between calls (kernels/workspace.py), reused, grown, per thread and never
aliased by what the ops return; and the block-maxima top-k of wide rows."""
from __future__ import annotations

import threading

import pytest
import torch

from lightlens.kernels import divergence_stats_reference, fused_token_stats_reference
from lightlens.kernels.common import top_k_rows
from lightlens.kernels.workspace import release, workspace


def test_reused_then_grown():
    release()
    a = workspace("t", 100)
    assert workspace("t", 50).data_ptr() == a.data_ptr()  # smaller: the same memory
    b = workspace("t", 1000)
    assert b.numel() == 1000 and workspace("t", 100).data_ptr() == b.data_ptr()
    assert workspace("t", 10, dtype=torch.int64).data_ptr() != b.data_ptr()  # another dtype, another buffer


def test_each_thread_has_its_own():
    mine = workspace("t", 10).data_ptr()
    theirs = []
    th = threading.Thread(target=lambda: theirs.append(workspace("t", 10).data_ptr()))
    th.start()
    th.join()
    assert theirs[0] != mine


def test_results_do_not_alias_the_buffers():
    """A second call overwrites the buffers; the first call's statistics must not change."""
    g = torch.Generator().manual_seed(0)
    h1, h2 = torch.randn(40, 8, generator=g), torch.randn(40, 8, generator=g)
    w = torch.randn(300, 8, generator=g)
    y = torch.randint(0, 300, (40,), generator=g)
    first = fused_token_stats_reference(h1, w, y, 5, chunk_bytes=4096)
    kept = [t.clone() for t in first]
    fused_token_stats_reference(h2, w, y, 5, chunk_bytes=4096)
    assert all(torch.equal(a, b) for a, b in zip(first, kept))

    xp, xq = h1 @ w.T, h2 @ w.T
    d1 = divergence_stats_reference(xp, xq, y, 3, block_bytes=4096)
    kept = [t.clone() for t in d1]
    divergence_stats_reference(xq, xp, y, 3, block_bytes=4096)
    assert all(torch.equal(a, b) for a, b in zip(d1, kept))
    assert torch.equal(xp, h1 @ w.T)  # the caller's logits are not overwritten


@pytest.mark.parametrize("v", [1024, 49152, 50257, 3000])
@pytest.mark.parametrize("k", [1, 5, 20])
def test_top_k_rows_is_topk(v, k):
    """Block-maxima top-k: the same values as torch.topk, and ids that hold those values,
    for V a multiple of the block or not, with ties, -inf and a lone best in the tail."""
    g = torch.Generator().manual_seed(v + k)
    x = torch.randn(9, v, generator=g).mul_(3)
    x[1] = torch.randint(0, 4, (v,), generator=g).float()  # many ties
    x[2, : v // 2] = float("-inf")
    x[3, -1] = 100.0  # the best entry in the last, partial block
    x[4, ::64] = 50.0 + torch.arange(len(x[4, ::64])).float() / 1000  # one winner per block, ascending
    vals, ids = top_k_rows(x, k)
    want_vals, _ = x.topk(k, 1)
    assert torch.equal(vals, want_vals)
    assert torch.equal(x.gather(1, ids), vals)
    assert all(len(set(row)) == k for row in ids.tolist())  # no column twice


def test_made_in_inference_mode_works_outside():
    """A buffer first made inside torch.inference_mode() is still writable outside it."""
    release()
    x = torch.tensor([[0.0, 1.0, 2.0]])
    with torch.inference_mode():
        inside = fused_token_stats_reference(torch.eye(3), x.T.repeat(1, 3), torch.tensor([1, 2, 0]), 2)
    outside = fused_token_stats_reference(torch.eye(3), x.T.repeat(1, 3), torch.tensor([1, 2, 0]), 2)
    assert torch.equal(inside.logprob, outside.logprob)


def test_half_precision_head_does_not_depend_on_the_batch():
    """A bf16 head's statistics are the same whether one tile holds the vocabulary or not (the
    target logit never comes from a bf16-rounded tile on one path and float32 on the other)."""
    g = torch.Generator().manual_seed(3)
    h = torch.randn(50, 16, generator=g).bfloat16()
    w = (torch.randn(1000, 16, generator=g) * 0.5).bfloat16()
    y = torch.randint(0, 1000, (50,), generator=g)
    whole = fused_token_stats_reference(h, w, y, 3)  # 50 x 1000 fits one tile
    tiled = fused_token_stats_reference(h, w, y, 3, chunk_bytes=2048)  # 64-column tiles
    assert torch.allclose(whole.logprob, tiled.logprob, atol=1e-5, rtol=0)
    assert torch.equal(whole.rank, tiled.rank)
