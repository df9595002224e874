"""GGUF files: dequantised once by transformers, then cached as a safetensors folder.

The cache key is the GGUF's sha256, so a changed file is converted again and an unchanged
one loads in a fraction of a second instead of being dequantised on every start. Processes
that start on the same GGUF at once convert it once: the others wait on a file lock.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

from .cache import cache_dir, file_lock, partial_dir, sha256_file, share_like_folder


def require_gguf_support() -> None:
    """Raise an ImportError that says what to install if GGUF loading cannot work."""
    missing = [m for m in ("gguf", "accelerate") if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(
            f"loading a GGUF file needs the {' and '.join(missing)} package(s): "
            "pip install 'lightlens[offline]'  (or: pip install gguf accelerate)"
        )


def converted_dir(gguf_path: str | Path) -> Path:
    """The folder of a GGUF's dequantised copy (HF layout: config, safetensors, tokenizer).

    Converts on first use; a process that finds another converting waits for it.

    >>> converted_dir("SmolLM2-135M-Instruct.Q4_1.gguf")  # doctest: +SKIP
    PosixPath('/root/.cache/lightlens/converted/b179c9523d0e6a0f')
    """
    gguf_path = Path(gguf_path)
    if not gguf_path.is_file():
        raise FileNotFoundError(f"no GGUF file at {gguf_path}: check the path")
    out = cache_dir() / "converted" / sha256_file(gguf_path)[:16]
    if not (out / "config.json").exists():
        with file_lock(out):
            if not (out / "config.json").exists():  # not converted while we waited
                shutil.rmtree(out, ignore_errors=True)  # what an older, killed conversion left
                _convert(gguf_path, out)
    return out


def _convert(gguf_path: Path, out: Path) -> None:
    require_gguf_support()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    print(f"lightlens: dequantising {name} once (cached in {out})…", file=sys.stderr, flush=True)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    # The weights are plain float tensors now; drop the GGUF marker so they can be saved.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.name_or_path = gguf_path.stem
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_dir(out)  # not mkdtemp: its 0700 would keep a shared cache from others
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        share_like_folder(tmp)
        try:
            os.replace(tmp, out)  # atomic: a half-written conversion is never found
        except OSError:  # without file locks another process may have got there first
            if not (out / "config.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
