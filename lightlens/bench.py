"""``python -m lightlens.bench cpu|kernels|client|divergence|generate``: the benchmarks, run from a
source checkout (they live in its ``benchmarks/`` folder, outside the installed package, with
their results in ``benchmarks/RESULTS.md``). Run from the repository root.

>>> root = _benchmarks_folder(Path("/nonexistent"))  # else the checkout this package sits in, if any
>>> root is None or (root / "benchmarks" / "RESULTS.md").is_file()
True
"""
from __future__ import annotations

import sys
from pathlib import Path


def _benchmarks_folder(start: Path) -> Path | None:
    """The checkout holding ``benchmarks/__main__.py``: the one this package sits in (an editable
    install), else ``start``."""
    for root in (Path(__file__).resolve().parents[1], start):
        if (root / "benchmarks" / "__main__.py").is_file():
            return root
    return None


def main(argv: list[str] | None = None) -> int:
    """Run ``benchmarks`` with ``argv`` (see ``python -m lightlens.bench --help``)."""
    root = _benchmarks_folder(Path.cwd())
    if root is None:
        print("lightlens.bench runs the benchmarks of a source checkout: clone the repository and run "
              "`python -m lightlens.bench cpu` from its root", file=sys.stderr)
        return 2
    sys.path.insert(0, str(root))
    from benchmarks.__main__ import main as run

    return run(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    raise SystemExit(main())
