"""The launch configurations the kernels pick on a GPU, run under TRITON_INTERPRET=1 (set in
conftest) with small T, V and D but the GPU's BLOCK_T / BLOCK_V / BLOCK_D, warps and top-k
variants, against float64; split-V against float64 and against the unsplit kernel; hidden
sizes below 16; targets checked without a device sync; and the compile-time resources of every
shipped kernel (no register spills)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from lightlens.kernels import _triton_utils as utils
from lightlens.kernels import head_logits, split_v
from lightlens.kernels.from_hidden import kernel as fused
from lightlens.kernels.from_logits import kernel as logits_op

from oracles import f32_tol, float64_stats
from test_kernels import check

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
# one k per compiled top-k variant (keyed by the k that names it), below its K_PAD where it can be
K_OF = {0: 0, 8: 5, 16: 13, 32: 20, 64: 64}
HEADS = [{}, {"bias": True}, {"logit_scale": 0.25}, {"softcap": 4.0},
         {"bias": True, "logit_scale": 2.0, "softcap": 6.0}]


def gpu_cases(op) -> list[tuple]:
    """(dtype, k, aligned, config) for every configuration ``op``'s launcher can pick on any GPU
    kind: the shipped compiled variants crossed with the device kinds, duplicates dropped."""
    cases = {}
    for device in utils.GPU_KINDS:
        for dtype, k_variant, aligned in op.shipped_configs():
            k = K_OF[k_variant]
            if op is fused:
                config = fused.launch_config(1 << 20, 1 << 17, 4096, dtype, k, device, aligned=aligned)
            else:
                config = logits_op.launch_config(1 << 20, 1 << 17, dtype, k, device)
                aligned = True  # one configuration: alignment changes only the compiled loads
            cases.setdefault((dtype, k, aligned, config._replace(splits=1)), None)
    return list(cases)


def case_id(case) -> str:
    dtype, k, aligned, c = case
    return f"{dtype}-k{k}-{'al' if aligned else 'unal'}-{c.block_t}x{c.block_v}x{c.block_d}w{c.num_warps}s{c.num_stages}"


def same_choices(a, b):
    """Ranks and top-k ids are decided by comparisons only: a split launch gives exactly the
    unsplit ones (lse and entropy differ by rounding order only; checked against float64)."""
    assert torch.equal(a.rank, b.rank)
    assert torch.equal(a.top_k_ids, b.top_k_ids)


def stable_top_ids(x: torch.Tensor, k: int) -> torch.Tensor:
    """The k best ids of each row, equal values by lower id (a stable sort of the exact values)."""
    return torch.sort(x.double(), dim=-1, descending=True, stable=True).indices[:, :k]


def logits_case(seed, t, v, dtype):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(t, v, generator=g) * 3).to(dtype)
    targets = torch.randint(0, v, (t,), generator=g)
    targets[1] = -100
    x[2, : v // 3] = float("-inf")  # a masked vocabulary
    x[0, 7] = x[0, v - 5] = x[0].max() + 1  # a tie for the best logit, across tiles: lower id first
    return x, targets


TOKEN_CASES = gpu_cases(logits_op)


def test_token_stats_cases_cover_every_gpu_configuration():
    configs = {c for *_, c in TOKEN_CASES}
    assert configs == {logits_op.launch_config(1 << 20, 1 << 17, d, k, dev)._replace(splits=1)
                       for d in DTYPES for k in range(65) for dev in utils.GPU_KINDS}
    assert {(d, utils.topk_constexprs(k)["K_PAD"], k > 0) for d, k, *_ in TOKEN_CASES} == \
        {(d, utils.topk_constexprs(k)["K_PAD"], k > 0) for d in DTYPES for k in range(65)}


@pytest.mark.parametrize("case", TOKEN_CASES, ids=case_id)
def test_token_stats_gpu_configuration(case):
    """One row per program in the GPU's tiles: V = BLOCK_V + 808 is a full tile and a masked one;
    also split in two (a tile each)."""
    dtype, k, _, config = case
    v = config.block_v + 808
    logits, targets = logits_case(k, 3, v, DTYPES[dtype])
    want = float64_stats(logits, targets, k)
    whole = logits_op.token_stats_triton(logits, targets, k, config=config)
    halves = logits_op.token_stats_triton(logits, targets, k, config=config._replace(splits=2))
    for got in (whole, halves):
        check(got, want, k, exact_ids=False)  # torch.topk orders ties arbitrarily; ours: lower id first
        assert torch.equal(got.top_k_ids, stable_top_ids(logits, k))  # the exact values: ids exact, any dtype
    same_choices(whole, halves)
    if k:
        assert whole.top_k_ids[0, :2].tolist() == [7, v - 5]


FUSED_CASES = gpu_cases(fused)


def test_fused_cases_cover_every_gpu_configuration():
    configs = {c for *_, c in FUSED_CASES}
    assert configs == {fused.launch_config(1 << 20, 1 << 17, 4096, d, k, dev, aligned=a)._replace(splits=1)
                       for d in DTYPES for k in range(65) for dev in utils.GPU_KINDS for a in (True, False)}
    assert len(configs) == 4 and all(c.block_d >= 16 for c in configs)


@pytest.mark.parametrize("case", FUSED_CASES, ids=case_id)
def test_fused_gpu_configuration(case):
    """64-row blocks over T = 65 (the second has one row), V = 300 (tiles of 128 or 64, the last
    partial), D = 80 (aligned: 64-feature steps, the second masked) or 40 (unaligned, 16-feature
    steps); each head variant in turn; the natural split of so few rows (2) and unsplit."""
    dtype, k, aligned, config = case
    i = FUSED_CASES.index(case)
    head = HEADS[i % len(HEADS)]
    g = torch.Generator().manual_seed(i)
    t, d, v = 65, 80 if aligned else 40, 300
    hidden = torch.randn(t, d, generator=g).to(DTYPES[dtype])
    weight = (torch.randn(v, d, generator=g) * 0.6).to(DTYPES[dtype])
    bias = torch.randn(v, generator=g).to(DTYPES[dtype]) if head.get("bias") else None
    targets = torch.randint(0, v, (t,), generator=g)
    targets[3] = -100
    assert fused.is_aligned(hidden, weight) == aligned
    kw = dict(bias=bias, logit_scale=head.get("logit_scale"), softcap=head.get("softcap"))
    logits = head_logits(hidden.double(), weight.double(), None if bias is None else bias.double(),
                         head.get("logit_scale"), head.get("softcap"))
    want = float64_stats(logits, targets, k)
    dots = (hidden.double().abs() @ weight.double().abs().T).max() + (0 if bias is None else bias.double().abs().max())
    scale = dots * (head.get("logit_scale") or 1.0)
    natural = utils.choose_splits(2, v, config.block_v)  # what the launcher picks for these 2 row blocks
    assert natural == (2 if config.block_v == 128 else 3)
    split = fused.fused_token_stats_triton(hidden, weight, targets, k, config=config._replace(splits=natural), **kw)
    whole = fused.fused_token_stats_triton(hidden, weight, targets, k, config=config, **kw)
    for got in (whole, split):
        check(got, want, k, terms=v * d, scale=scale)
    same_choices(whole, split)


def fused_inputs(seed, t, d, v, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(t, d, generator=g).to(dtype)
    weight = (torch.randn(v, d, generator=g) * 0.6).to(dtype)
    targets = torch.randint(0, v, (t,), generator=g)
    targets[1] = -100
    return hidden, weight, targets


@pytest.mark.parametrize("splits", [1, 2, 3, 4])
def test_split_v_any_count_fused(splits):
    """V = 300 in 64-column tiles (5): 1 split; 2 (3 + 2 tiles); 3 (2, 2, 1); 4 (2, 2, 1 and an
    empty range). Against float64, and ranks / ids exactly the unsplit ones."""
    hidden, weight, targets = fused_inputs(splits, 66, 24, 300)
    config = fused.launch_config(66, 300, 24, torch.float32, 20, "sm_90", aligned=False)._replace(splits=splits)
    assert config.block_v == 64
    got = fused.fused_token_stats_triton(hidden, weight, targets, 20, config=config)
    want = float64_stats(head_logits(hidden.double(), weight.double()), targets, 20)
    check(got, want, 20, terms=300 * 24, scale=(hidden.abs() @ weight.abs().T).max())
    same_choices(got, fused.fused_token_stats_triton(hidden, weight, targets, 20, config=config._replace(splits=1)))


@pytest.mark.parametrize("splits,k", [(2, 1), (3, 64), (4, 5)])
def test_split_v_any_count_token_stats(splits, k):
    """V = 2·BLOCK_V + 1,000 in the GPU's tiles (3): 2 splits (2 + 1 tiles), 3 (1 each; k = 64
    merges 3 x 64 keys), 4 (1, 1, 1 and an empty range)."""
    v = 2 * logits_op.BLOCK_V + 1000
    logits, targets = logits_case(splits, 3, v, torch.float32)
    config = logits_op.launch_config(3, v, torch.float32, k)._replace(splits=splits)
    got = logits_op.token_stats_triton(logits, targets, k, config=config)
    check(got, float64_stats(logits, targets, k), k, exact_ids=False)
    assert torch.equal(got.top_k_ids, stable_top_ids(logits, k))
    same_choices(got, logits_op.token_stats_triton(logits, targets, k, config=config._replace(splits=1)))


def test_split_with_fewer_logits_than_k_in_a_split():
    """A split range shorter than k (V = 70, 64-column tiles, 2 splits: 64 + 6 columns, k = 20):
    its sentinel keys must not enter the merged top-k."""
    hidden, weight, targets = fused_inputs(9, 5, 16, 70)
    config = fused.launch_config(5, 70, 16, torch.float32, 20, "sm_80", aligned=False)._replace(splits=2)
    assert config.block_v == 64
    got = fused.fused_token_stats_triton(hidden, weight, targets, 20, config=config)
    want = float64_stats(head_logits(hidden.double(), weight.double()), targets, 20)
    check(got, want, 20, terms=70 * 16, scale=(hidden.abs() @ weight.abs().T).max())
    assert all(len(set(row)) == 20 and min(row) >= 0 for row in got.top_k_ids.tolist())


def test_a_nan_logit_makes_its_row_nan_split_or_not():
    """No NaN flag: exp(NaN) makes the row's sum NaN, in any split, and so lse, entropy and
    logprob; the other rows are untouched, ranks and ids agree split or not."""
    v = 2 * logits_op.BLOCK_V + 1000
    logits, targets = logits_case(7, 3, v, torch.float32)
    logits[2, v - 3] = float("nan")  # in the last tile (the last split)
    config = logits_op.launch_config(3, v, "fp32", 5)
    runs = [logits_op.token_stats_triton(logits, targets, 5, config=config._replace(splits=n)) for n in (1, 3)]
    want = float64_stats(logits, targets, 5)
    for got in runs:
        assert torch.isnan(got.logsumexp[2]) and torch.isnan(got.entropy[2]) and torch.isnan(got.logprob[2])
        np.testing.assert_allclose(got.logsumexp[:2].double().numpy(), want["logsumexp"][:2].numpy(),
                                   atol=f32_tol(v, logits[:2]))
        assert got.top_k_ids[2, 0] == v - 3  # NaN sorts above every number, as in torch.topk
    same_choices(*runs)
    hidden, weight, t2 = fused_inputs(3, 66, 24, 300)
    hidden[65, 4] = float("nan")
    config = fused.launch_config(66, 300, 24, torch.float32, 5, aligned=False)
    runs = [fused.fused_token_stats_triton(hidden, weight, t2, 5, config=config._replace(splits=n)) for n in (1, 3)]
    for got in runs:
        assert bool(torch.isnan(got.logsumexp[65])) and not bool(torch.isnan(got.logsumexp[:65]).any())


@pytest.mark.parametrize("dtype", ["bf16", "fp32"])
@pytest.mark.parametrize("d", [1, 8, 15])
def test_hidden_sizes_below_16(dtype, d):
    """tl.dot needs 16 features a step on a GPU: every GPU configuration steps 16 or more, and
    masked loads pad a smaller hidden size with zeros."""
    hidden, weight, targets = fused_inputs(d, 9, d, 130, DTYPES[dtype])
    config = fused.launch_config(9, 130, d, DTYPES[dtype], 5, "sm_90", aligned=fused.is_aligned(hidden, weight))
    assert config.block_d >= 16
    got = fused.fused_token_stats_triton(hidden, weight, targets, 5, config=config)
    want = float64_stats(head_logits(hidden.double(), weight.double()), targets, 5)
    check(got, want, 5, terms=130 * max(d, 2), scale=(hidden.double().abs() @ weight.double().abs().T).max(),
          exact_ids=dtype == "fp32")


def test_block_d_below_16_is_refused_on_a_gpu(monkeypatch):
    hidden, weight, targets = fused_inputs(1, 4, 8, 50)
    monkeypatch.setattr(fused, "interpreting", lambda: False)
    with pytest.raises(ValueError, match="BLOCK_D must be at least 16"):
        fused.fused_token_stats_triton(hidden, weight, targets, config=utils.LaunchConfig(64, 64, 8))


def test_choose_splits_gives_two_programs_per_sm():
    """For T >= 256 at V >= 32k, every GPU configuration's grid has at least 2 programs per SM,
    on an H100 SXM (132 SMs), an H100 PCIe (114) and an A100 (108); and no split when rows
    alone fill the GPU."""
    for sms in (132, 114, 108):
        for t in (256, 300, 1000, 4096, 8192, 16384, 32768):
            for v in (32000, 32768, 49152, 128256, 152064, 262144):
                for dtype, kv, aligned in fused.shipped_configs():
                    for dev in utils.GPU_KINDS:
                        c = fused.launch_config(t, v, 4096, dtype, K_OF[kv], dev, sms, aligned=aligned)
                        rows = -(-t // c.block_t)
                        tiles_per_split = -(-(-(-v // c.block_v)) // c.splits)
                        assert rows * c.splits >= 2 * sms, (sms, t, v, c)
                        assert c.splits == 1 or tiles_per_split >= 2  # no split smaller than 2 tiles
                        assert (c.splits == 1) == (rows >= 2 * sms)
                c = logits_op.launch_config(t, v, "bf16", 20, "sm_90", sms)
                assert t * c.splits >= 2 * sms


def test_out_of_range_targets_on_the_device_are_flagged_not_read():
    """Targets already on the GPU are not read back; the kernel marks an out-of-range one with
    rank -1 and NaN logprob (and reads nothing out of bounds); the other rows are unaffected."""
    v = logits_op.BLOCK_V + 808
    logits, targets = logits_case(1, 3, v, torch.float32)
    targets[0] = v
    config = logits_op.launch_config(3, v, "fp32", 3, "sm_90")

    def run(splits):
        def main(grid, v_per_split, outputs, partials):
            logits_op._token_stats_kernel[grid](
                logits, logits.stride(0), targets, 3, v, -100, 3, v_per_split, *outputs, *partials,
                **utils.topk_constexprs(3), BLOCK_T=config.block_t, BLOCK_V=config.block_v)
        return split_v.launch(main, t=3, v=v, k=3, config=config._replace(splits=splits), targets=targets,
                              ignore_index=-100, device="cpu")

    for splits in (1, 2):
        got = run(splits)
        assert got.rank.tolist()[:2] == [-1, 0] and got.rank[2] >= 1
        assert torch.isnan(got.logprob[0]) and torch.isnan(got.logprob[1]) and not torch.isnan(got.logprob[2])
        want = float64_stats(logits, torch.tensor([0, -100, int(targets[2])]), 3)
        np.testing.assert_allclose(got.logsumexp.double().numpy(), want["logsumexp"].numpy(), atol=f32_tol(v, logits))


def test_targets_on_the_device_are_not_read_back():
    """A meta tensor has no data: any host read (``.any()``, ``bool()``, ``.item()``) raises, so
    check_targets passing proves it never synchronises on device targets."""
    targets = torch.tensor([1, 2, 70000], device="meta")
    out = utils.check_targets(targets, 3, 10, -100, device="meta")
    assert out.dtype == torch.int64 and out.device.type == "meta"
    with pytest.raises(ValueError, match="shape"):
        utils.check_targets(targets, 4, 10, -100, device="meta")


def test_cpu_targets_are_checked_on_the_host():
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        logits_op.token_stats_triton(torch.zeros(2, 10), torch.tensor([3, 10]))
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        fused.fused_token_stats_triton(torch.zeros(2, 16), torch.zeros(10, 16), torch.tensor([-1, 0]))


def test_shipped_kernels_compile_without_spills(tmp_path):
    """No GPU in CI: compile every shipped kernel for sm_90 and sm_80 with Triton's real pipeline
    and ptxas; none spills registers, each fits its SM, and the bf16/fp16 fused kernels use the
    tensor cores (wgmma on Hopper)."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(TRITON_CACHE_DIR=str(tmp_path), TRITON_DEFAULT_FP_FUSION="1")
    out = subprocess.run([sys.executable, "-m", "lightlens.kernels.aot", "--report", "--json", "--no-sass", "--jobs", "2", "90", "80"],
                         env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = json.loads(out.stdout)
    assert len(rows) == 136 and {r["op"] for r in rows} >= {"divergence", "token_stats", "fused_token_stats"}
    spills = [(r["arch"], r["op"], r["variant"], r["spill_stores"], r["spill_loads"]) for r in rows
              if r["spill_stores"] or r["spill_loads"]]
    assert not spills, spills
    assert all(r["blocks"] >= 1 and r["regs"] <= 255 for r in rows)
    fused_rows = [r for r in rows if r["op"] == "fused_token_stats" and not r["variant"].startswith("fp32")]
    assert all(r["mma"] == ("wgmma" if r["arch"] == 90 else "mma") for r in fused_rows)
