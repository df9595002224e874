"""Compile the Triton kernels for a GPU that is not here, and report what they use.

    python -m lightlens.kernels.aot [--report] [--json] [--jobs N] [--only TEXT] [ARCH ...]   (ARCH: 90, 80)

CI has no GPU; this proves that every kernel a launcher can pick on a GPU (each op's
``kernel.shipped_configs()`` with the tiles, warps and stages of its ``launch_config``, and
the split-V merge kernel) goes through Triton's whole pipeline (TTIR → TTGIR → LLVM → PTX →
cubin via ptxas) for Hopper (sm_90a) and Ampere (sm_80). It runs without ``TRITON_INTERPRET``.

Each kernel is compiled with the specialisation a real launch gets (16-byte aligned pointers;
strides, hidden size and vocabulary multiples of 16, as every real model has) and without it
(an odd vocabulary such as GPT-2's 50,257, a tiny hidden size: scalar loads; the fused
kernel's launcher picks other tiles then). ``--report`` prints, from ``ptxas -v`` (the ptxas
Triton ships, run by Triton on the PTX it produced, its log captured), registers per thread,
spill stores / loads in bytes, shared memory per block, the occupancy these allow
(:func:`occupancy`), and the SASS instructions a thread issues per logit in the steady state
(:func:`steady_state_instructions`, from ``nvdisasm`` of the cubin: what the roofline in
``benchmarks/kernels.py`` charges for the statistics). Each kernel serves split and unsplit
launches and every head variant.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from typing import NamedTuple


class Arch(NamedTuple):
    """Per-SM limits of a GPU architecture (CUDA programming guide, compute capabilities).

    >>> ARCHS[90].smem_per_sm // 1024, ARCHS[80].smem_per_block // 1024
    (228, 163)
    """

    gpu_name: str  # ptxas --gpu-name
    regs_per_sm: int = 65536
    smem_per_sm: int = 228 * 1024
    smem_per_block: int = 227 * 1024
    max_warps: int = 64
    max_blocks: int = 32
    smem_reserved: int = 1024  # shared memory the driver reserves per block (sm_80 and later)
    reg_unit: int = 256  # registers are allocated per warp in units of this many


ARCHS = {
    90: Arch("sm_90a"),
    80: Arch("sm_80", smem_per_sm=164 * 1024, smem_per_block=163 * 1024),
}


def occupancy(regs: int, smem: int, num_warps: int, arch: int) -> dict:
    """Resident blocks and warps per SM for a kernel using ``regs`` registers per thread and
    ``smem`` bytes of shared memory per block, with ``num_warps`` warps per block, and which
    limit binds (registers, shared memory, warps or blocks per SM).

    >>> occupancy(128, 0, 8, 90)   # 128 regs x 32 lanes x 8 warps = half the register file
    {'blocks': 2, 'warps': 16, 'limit': 'registers'}
    >>> occupancy(80, 100_000, 8, 90)['limit'], occupancy(80, 100_000, 8, 80)['blocks']
    ('shared memory', 1)
    """
    a = ARCHS[arch]
    per_warp = -(-regs * 32 // a.reg_unit) * a.reg_unit
    limits = {
        "registers": (a.regs_per_sm // per_warp) // num_warps if per_warp else a.max_blocks,
        "shared memory": a.smem_per_sm // (smem + a.smem_reserved) if smem <= a.smem_per_block else 0,
        "warps": a.max_warps // num_warps,
        "blocks": a.max_blocks,
    }
    limit = min(limits, key=limits.get)
    return {"blocks": limits[limit], "warps": limits[limit] * num_warps, "limit": limit}


def parse_ptxas(log: str) -> dict:
    """Registers, spill bytes and static shared memory from a ``ptxas -v`` log.

    >>> parse_ptxas('''ptxas info    : Function properties for k
    ...     0 bytes stack frame, 8 bytes spill stores, 4 bytes spill loads
    ... ptxas info    : Used 96 registers, used 1 barriers, 64 bytes smem, 400 bytes cmem[0]''')
    {'regs': 96, 'spill_stores': 8, 'spill_loads': 4, 'static_smem': 64}
    """
    regs = re.search(r"Used (\d+) registers", log)
    spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", log)
    smem = re.search(r"(\d+) bytes smem", log)
    if regs is None or spills is None:
        raise ValueError(f"not a ptxas -v log: {log[:500]!r}")
    return {"regs": int(regs.group(1)), "spill_stores": int(spills.group(1)),
            "spill_loads": int(spills.group(2)), "static_smem": int(smem.group(1)) if smem else 0}


def shipped_kernels() -> list[tuple[str, str, tuple]]:
    """(op, variant label, arguments of that op's ``compile_sources``) for every kernel a
    launcher can pick on a GPU.

    >>> ks = shipped_kernels()
    >>> len(ks), ks[0], ks[-1], [k for k in ks if k[0] == 'divergence'][-1]
    (68, ('token_stats', 'bf16 k=0', ('bf16', 0, True)), ('merge_splits', 'k=64', (64,)), ('divergence', 'fp32', ('fp32',)))
    """
    from .from_hidden import kernel as from_hidden
    from .from_logits import kernel as from_logits
    from ._triton_utils import SHIPPED_TOP_K

    out = []
    for op, mod in (("token_stats", from_logits), ("fused_token_stats", from_hidden)):
        for dtype, k, aligned in mod.shipped_configs():
            out.append((op, f"{dtype} k={k}{'' if aligned else ' unaligned'}", (dtype, k, aligned)))
    out += [("divergence", dtype, (dtype,)) for dtype in ("bf16", "fp16", "fp32")]
    return out + [("merge_splits", f"k={k}", (k,)) for k in SHIPPED_TOP_K]


def steady_state_instructions(sass: str) -> int:
    """SASS instructions one thread issues per pass of a kernel's outermost loop when nothing
    unusual happens: nested loops (the matmul over D, the top-k insertion) and conditional
    blocks that hold one (the top-k slow path) are left out. ``sass``: ``nvdisasm -c`` output.

    >>> sass = '''
    ... .L_x_0:
    ...         /*0000*/  FADD R1, R1, R2 ;
    ...         /*0010*/  @P0 BRA `(.L_x_2) ;
    ... .L_x_1:
    ...         /*0020*/  FMUL R3, R3, R3 ;
    ...         /*0030*/  @P1 BRA `(.L_x_1) ;
    ... .L_x_2:
    ...         /*0040*/  IADD3 R4, R4, 1, RZ ;
    ...         /*0050*/  @P2 BRA `(.L_x_0) ;'''
    >>> steady_state_instructions(sass)   # FADD, BRA, IADD3, BRA: the block at .L_x_1 is skipped
    4
    """
    lines = sass.splitlines()
    labels = {m.group(1): i for i, line in enumerate(lines) if (m := re.match(r"^\s*(\.L_x_\d+):", line))}
    branches = [(i, labels[m.group(1)]) for i, line in enumerate(lines)
                if (m := re.search(r"BRA `\((\.L_x_\d+)\)", line)) and m.group(1) in labels]
    loops = [(target, i) for i, target in branches if target < i]
    if not loops:
        return 0
    outer = max(loops, key=lambda lp: lp[1] - lp[0])
    skip = [lp for lp in loops if lp != outer and outer[0] <= lp[0] and lp[1] <= outer[1]]
    skip += [(i + 1, target - 1) for i, target in branches if outer[0] <= i < target <= outer[1]
             and any(i < a and b < target for a, b in skip)]
    return sum(1 for i in range(outer[0], outer[1] + 1)
               if re.search(r"/\*[0-9a-f]{4}\*/", lines[i]) and not any(a <= i <= b for a, b in skip))


def _ptxas_path(arch: int) -> str:
    """The ptxas Triton runs for ``sm_<arch>``."""
    from triton import knobs
    from triton.backends.nvidia import compiler

    tool = compiler.get_ptxas(arch) if hasattr(compiler, "get_ptxas") else knobs.nvidia.ptxas
    return tool.path


def compile_kernel(op: str, args: tuple, arch: int, sass: bool = True) -> dict:
    """Compile one kernel for ``sm_<arch>``; returns its resources (see :func:`parse_ptxas`),
    shared memory per block, cubin size, whether it uses wgmma / mma, its occupancy and, with
    ``sass``, its steady-state instructions per logit (``instr_per_logit``). Runs without ``TRITON_INTERPRET`` (the doctests' process has it: a subprocess here).

    >>> code = "from lightlens.kernels.aot import compile_kernel; r = compile_kernel('merge_splits', (8,), 90); "
    >>> code += "print(r['spill_stores'], r['mma'], r['num_warps'])"
    >>> subprocess.run([sys.executable, "-c", code], env=compile_env(), capture_output=True, text=True).stdout.split()
    ['0', 'none', '4']
    """
    import triton
    from triton.backends.compiler import GPUTarget

    from . import split_v
    from .divergence import kernel as divergence
    from .from_hidden import kernel as from_hidden
    from .from_logits import kernel as from_logits

    if op == "merge_splits":
        src, options = split_v.compile_sources(*args), split_v.merge_config(args[0]).launch_options(False)
    elif op == "divergence":
        src, options = divergence.compile_source(*args)
    else:
        mod = {"token_stats": from_logits, "fused_token_stats": from_hidden}[op]
        src, options = mod.compile_sources(*args, device=f"sm_{arch}")
    log = io.StringIO()
    with contextlib.redirect_stdout(log):  # Triton prints ptxas's log (TRITON_DUMP_PTXAS_LOG)
        kern = triton.compile(src, target=GPUTarget("cuda", arch, 32), options=options)
    text = log.getvalue()
    if "Used" not in text:  # a Triton that does not print it: run its ptxas ourselves
        with tempfile.TemporaryDirectory() as tmp:
            ptx = os.path.join(tmp, "k.ptx")
            with open(ptx, "w") as f:
                f.write(kern.asm["ptx"])
            done = subprocess.run([_ptxas_path(arch), "-v", f"--gpu-name={ARCHS[arch].gpu_name}", ptx,
                                   "-o", os.path.join(tmp, "k.cubin")], capture_output=True, text=True)
            text = done.stdout + done.stderr
    res = parse_ptxas(text)
    ptx = kern.asm["ptx"]
    res.update(smem=kern.metadata.shared + res["static_smem"], cubin_bytes=len(kern.asm["cubin"]),
               mma="wgmma" if "wgmma" in ptx else ("mma" if "mma.sync" in ptx else "none"),
               num_warps=options["num_warps"], num_stages=options["num_stages"])
    res.update(occupancy(res["regs"], res["smem"], res["num_warps"], arch))
    if sass and op not in ("merge_splits", "divergence"):  # instructions per logit in the steady state (SASS;
        # the divergence kernel sweeps the vocabulary twice, which this count does not describe)
        nvdisasm = os.path.join(os.path.dirname(_ptxas_path(arch)), "nvdisasm")
        if os.path.exists(nvdisasm):
            with tempfile.TemporaryDirectory() as tmp:
                path = os.path.join(tmp, "k.cubin")
                with open(path, "wb") as f:
                    f.write(kern.asm["cubin"])
                sass = subprocess.run([nvdisasm, "-c", path], capture_output=True, text=True).stdout
            names = list(src.fn.arg_names)
            tile = src.constants[(names.index("BLOCK_T"),)] * src.constants[(names.index("BLOCK_V"),)]
            res["instr_per_logit"] = round(steady_state_instructions(sass) * 32 * res["num_warps"] / tile, 1)
    return res


def _job(item):
    op, label, args, arch, sass = item
    return {"arch": arch, "op": op, "variant": label, **compile_kernel(op, args, arch, sass)}


def compile_env() -> dict:
    """This process's environment for a compiling subprocess: no ``TRITON_INTERPRET``, and
    Triton's floating-point fusion default stated (its default is about to change).

    >>> "TRITON_INTERPRET" in compile_env(), compile_env()["TRITON_DEFAULT_FP_FUSION"]
    (False, '1')
    """
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    return env


def compile_all(archs=(90, 80), jobs: int = 1, only: str | None = None, sass: bool = True) -> list[dict]:
    """Compile every shipped kernel (those whose "op variant" label contains ``only``) for each
    ``sm_<arch>``; one dict per kernel (see :func:`compile_kernel`). Needs no GPU, and no
    ``TRITON_INTERPRET``.

    >>> code = "from lightlens.kernels.aot import compile_all; print(len(compile_all([90, 80], only='merge_splits k=16')))"
    >>> subprocess.run([sys.executable, "-c", code], env=compile_env(), capture_output=True, text=True).stdout.split()
    ['2']
    """
    os.environ["TRITON_DUMP_PTXAS_LOG"] = "1"
    os.environ["TRITON_ALWAYS_COMPILE"] = "1"  # a cached kernel would print no log
    items = [(op, label, args, arch, sass) for arch in archs for op, label, args in shipped_kernels()
             if only is None or only in f"{op} {label}"]
    if jobs <= 1:
        return [_job(i) for i in items]
    with ProcessPoolExecutor(jobs) as pool:
        return list(pool.map(_job, items))


def format_row(r: dict) -> str:
    """One line of the report.

    >>> format_row({"arch": 90, "op": "token_stats", "variant": "bf16 k=0", "regs": 40, "spill_stores": 0,
    ...             "spill_loads": 0, "smem": 32, "num_warps": 8, "num_stages": 3, "warps": 48, "blocks": 6,
    ...             "limit": "registers", "mma": "none", "cubin_bytes": 9000})
    'sm_90 token_stats       bf16 k=0                  regs  40  spill 0/0 B  smem    32 B  8 warps x 6 blocks = 48 warps/SM (registers)  none'
    """
    per_logit = f"  {r['instr_per_logit']} instr/logit" if r.get("instr_per_logit") else ""
    return (f"sm_{r['arch']} {r['op']:<17} {r['variant']:<25} regs {r['regs']:>3}  "
            f"spill {r['spill_stores']}/{r['spill_loads']} B  smem {r['smem']:>5} B  "
            f"{r['num_warps']} warps x {r['blocks']} blocks = {r['warps']} warps/SM ({r['limit']})  {r['mma']}"
            f"{per_logit}")


def main(argv: list[str] | None = None) -> int:
    """The command line (see the module docstring).

    >>> cmd = [sys.executable, "-m", "lightlens.kernels.aot", "--report", "--only", "merge_splits k=8", "80"]
    >>> print(subprocess.run(cmd, env=compile_env(), capture_output=True, text=True).stdout)
    sm_80 merge_splits      k=8 ... spill 0/0 B ... warps/SM (registers)  none
    """
    p = argparse.ArgumentParser(prog="python -m lightlens.kernels.aot", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("archs", nargs="*", type=int, default=[90, 80], choices=sorted(ARCHS))
    p.add_argument("--report", action="store_true", help="registers, spills, shared memory, occupancy")
    p.add_argument("--json", action="store_true", help="print one JSON list instead of lines")
    p.add_argument("--jobs", type=int, default=1, help="compile in this many processes")
    p.add_argument("--only", help="only the kernels whose 'op variant' label contains this")
    p.add_argument("--no-sass", action="store_true", help="skip counting instructions per logit (faster)")
    args = p.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        raise SystemExit("run without TRITON_INTERPRET: the interpreter cannot compile")
    rows = compile_all(args.archs, args.jobs, args.only, sass=not args.no_sass)
    if args.json:
        print(json.dumps(rows))
    elif args.report:
        print("\n".join(format_row(r) for r in rows))
    else:
        print("\n".join(f"sm_{r['arch']} {r['op']} {r['variant']}: cubin {r['cubin_bytes']} B, {r['mma']}, "
                        f"shared {r['smem']} B" for r in rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
