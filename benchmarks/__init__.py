"""Benchmarks (not installed with lightlens): run from the repository root as ``python -m benchmarks``."""
from __future__ import annotations

import json
from pathlib import Path


def write_json(result: dict, out: str | None) -> None:
    """Write a benchmark's measurements to ``out`` as JSON (nothing when ``out`` is None)."""
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(result, indent=2))
