"""glibc's malloc, tuned for a loop of large tensors (a no-op where the C library is not glibc).

torch allocates CPU tensors with ``malloc``. glibc serves blocks above its *mmap threshold*
with fresh pages from the kernel, which fault and are zeroed on first write, and hands them
back on free; the threshold starts at 128 KiB and rises, up to 32 MiB, only when such a block
is freed. A model's forward pass over a 2,048-token window allocates and frees blocks of a few
MB many times over, so until the threshold has risen every window pays those faults again:
measured here, 400,000–600,000 page faults and ~0.4 s a window for the two SmolLM2 models of
the divergence benchmark, ~5% of the time.

:func:`keep_freed_blocks` sets the threshold to that 32 MiB maximum at once (and the trim
threshold to twice it, as glibc's own rule does), so freed blocks are reused from the heap;
:func:`release_freed_memory` gives freed pages back where a loop would otherwise keep them.
"""
from __future__ import annotations

import ctypes
import functools

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)
MMAP_THRESHOLD_MAX = 32 * 2**20  # glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit


@functools.lru_cache(maxsize=1)
def _glibc():
    try:
        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None
    except OSError:  # not glibc (macOS, musl, Windows): nothing to tune
        return None


@functools.lru_cache(maxsize=1)
def keep_freed_blocks() -> bool:
    """Serve blocks up to 32 MiB from the heap and keep up to 64 MiB of freed top of heap (once
    per process; True where glibc took the settings).

    >>> keep_freed_blocks() in (True, False)
    True
    """
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)) and bool(
        libc.mallopt(M_TRIM_THRESHOLD, 2 * MMAP_THRESHOLD_MAX))


def release_freed_memory() -> None:
    """Give freed heap pages back to the system (glibc's ``malloc_trim``; a no-op elsewhere).

    A sampler's [B, V] temporaries (sorts, float64 sums) are freed every step, but once glibc
    has raised its mmap threshold they come from the heap and their freed pages stay resident:
    measured +200 MB at batch 8 over 128 steps of SmolLM2. Trimming every few steps bounds that
    by a few steps' worth of temporaries.

    >>> release_freed_memory()
    """
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
