"""Benchmarks anyone can run from the repository: ``python -m benchmarks cpu|kernels|client``.

divergence: two models compared (:mod:`benchmarks.divergence`); generate: generation against
Hugging Face ``generate`` (:mod:`benchmarks.generate`).
cpu: the main job against a plain loop, many short texts, llama.cpp when built
(:mod:`benchmarks.cpu`, :mod:`benchmarks.short`, :mod:`benchmarks.llamacpp`); kernels: the token
statistics ops (:mod:`benchmarks.kernels`); client: remote-backend documents/s against an
instant local server (:mod:`benchmarks.client`). Every figure goes into RESULTS.md.
"""
from __future__ import annotations

import argparse
import sys

from . import write_json


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run one benchmark, print it (and write JSON with ``--out``)."""
    from . import client, cpu, kernels

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["divergence"]:  # its own options: python -m benchmarks divergence --help
        from . import divergence

        return divergence.main(argv[1:])
    if argv[:1] == ["generate"]:  # its own options: python -m benchmarks generate --help
        from . import generate

        return generate.main(argv[1:])
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["cpu", "kernels", "client"])
    p.add_argument("--data", default=str(cpu.DEFAULT_DATA), help="text file (default: WikiText-2 test in ../shared)")
    p.add_argument("--tokens", type=int, default=4096, help="cpu: tokens of the text (default 4096)")
    p.add_argument("--max-length", type=int, default=2048, help="cpu: the disjoint windows' length (default 2048)")
    p.add_argument("--runs", type=int, default=3, help="cpu: fresh processes per side; medians (default 3)")
    p.add_argument("--llama-cpp", help="cpu: a llama.cpp build folder (default $LLAMA_CPP_DIR or ../llamacpp)")
    p.add_argument("--kind", default="vllm", help="client: the server format (default vllm)")
    p.add_argument("--docs", type=int, default=2000, help="client: documents to send (default 2000)")
    p.add_argument("--concurrency", type=int, default=32, help="client: requests in flight (default 32)")
    p.add_argument("--out", help="also write the measurements as JSON here")
    args = p.parse_args(argv)
    if args.what == "kernels":
        r = kernels.run()
        kernels.print_table(r)
    elif args.what == "client":
        r = client.run(kind=args.kind, docs=args.docs, concurrency=args.concurrency)
        client.print_table(r)
    else:
        r = cpu.run_cpu(args.data, args.tokens, args.max_length, args.runs, args.llama_cpp)
        cpu.print_table(r)
    write_json(r, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
