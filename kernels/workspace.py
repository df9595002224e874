"""Work buffers the CPU path keeps between calls, so a hot loop allocates nothing of a tile's size.

A freshly allocated tens-of-MB tensor is fresh pages from the kernel: every 4 KiB page faults
and is zeroed on first write (~1.5 ms for 8 MB here, as long as the matmul that fills it), and
once glibc's malloc has handed such blocks back, each batch pays it again. Scoring many short
texts paid it on every batch; the divergence op, whose blocks need several [rows, V] temporaries,
on every block. A workspace is one named flat buffer per (thread, dtype, name) on the CPU (a GPU's
caching allocator already reuses blocks: there it is a plain ``torch.empty``) that
grows to the largest size asked for and is then reused: views of it live until the next call
that asks for the same name, so a caller must be done with a view before asking again (a
function takes its buffers at its start and keeps none in what it returns).

>>> a = workspace("doc", 6).view(2, 3)
>>> b = workspace("doc", 4)
>>> a.data_ptr() == b.data_ptr(), b.shape
(True, torch.Size([4]))
"""
from __future__ import annotations

import threading

import torch

_local = threading.local()


def workspace(name: str, numel: int, *, dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """The first ``numel`` elements of the buffer ``name`` (this thread's, for ``dtype`` on
    ``device``), a contiguous 1-D tensor whose contents are undefined. Its memory is the same
    on every call that fits, so earlier views of the same name are overwritten by its users.

    >>> workspace("x", 3, dtype=torch.int64).dtype
    torch.int64
    """
    device = torch.device(device if device is not None else "cpu")
    if device.type != "cpu":  # a GPU's caching allocator reuses blocks by itself: keep nothing
        return torch.empty(numel, dtype=dtype, device=device)
    buffers = getattr(_local, "buffers", None)
    if buffers is None:
        buffers = _local.buffers = {}
    key = (name, dtype, device)
    buf = buffers.get(key)
    if buf is None or buf.numel() < numel:
        buffers.pop(key, None)  # free the smaller one first: the peak is the new size, not both
        with torch.inference_mode(False):  # a normal tensor, usable in and out of inference mode
            buf = buffers[key] = torch.empty(numel, dtype=dtype, device=key[2])
    return buf[:numel]


def release(prefix: str = "") -> None:
    """Free this thread's buffers whose names start with ``prefix`` (all by default); they are
    kept for the next call otherwise.

    >>> _ = workspace("y", 10); release("y"); workspace("y", 1).numel()
    1
    """
    buffers = getattr(_local, "buffers", {})
    _local.buffers = {key: buf for key, buf in buffers.items() if not key[0].startswith(prefix)}
