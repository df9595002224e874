"""Data-parallel corpus scoring under ``torchrun`` or ``accelerate launch``.

Both launchers set RANK, WORLD_SIZE and LOCAL_RANK; each rank scores its shard on its own
GPU (``cuda:LOCAL_RANK``) and writes its own parts; rank 0 merges after a barrier. Rank 0
alone decides what is to do (and whether the run may resume at all) and sends that to every
rank, so a rank that starts late works on the same list. The process group (NCCL on GPUs, gloo
on CPU) is only used for that broadcast and the barriers.
"""
from __future__ import annotations

import os
from datetime import timedelta


def rank_and_world() -> tuple[int, int]:
    """``(rank, world_size)`` from the launcher's environment; ``(0, 1)`` when not launched.

    >>> rank_and_world() if "WORLD_SIZE" not in os.environ else (0, 1)
    (0, 1)
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1 and not 0 <= rank < world:
        raise RuntimeError(f"RANK={rank} is not in 0..WORLD_SIZE-1={world - 1}: check the launcher")
    return rank, world


def local_device(requested: str | None = None) -> str | None:
    """This rank's device: ``cuda:LOCAL_RANK`` when launched with GPUs and no device or a bare
    ``"cuda"`` was asked for; else ``requested`` as it is (None: the default device).

    >>> local_device("cpu"), local_device("cuda:1")
    ('cpu', 'cuda:1')
    """
    if requested not in (None, "cuda") or "LOCAL_RANK" not in os.environ:
        return requested
    import torch

    if torch.cuda.is_available():
        return f"cuda:{int(os.environ['LOCAL_RANK']) % torch.cuda.device_count()}"
    return requested


def _group():
    """``torch.distributed``, with the process group started (on first use; a day's timeout,
    since ranks can start and finish their shards far apart)."""
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and local_device() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_device())
        dist.init_process_group(backend=backend, timeout=timedelta(days=1))
    return dist


def barrier() -> None:
    """Wait for every rank.

    >>> barrier()                                          # doctest: +SKIP
    """
    _group().barrier()


def from_rank0(fn):
    """``fn()`` run on rank 0 only; its result on every rank. If it raises, rank 0 raises the
    error itself and every other rank a RuntimeError with its text (an error object may not
    pickle, and no rank may be left waiting). Without a launcher it is just ``fn()``.

    >>> from_rank0(lambda: ["d3", "d1"]) if "WORLD_SIZE" not in os.environ else ["d3", "d1"]
    ['d3', 'd1']
    """
    rank, world = rank_and_world()
    if world == 1:
        return fn()
    box: list = [None]
    error = None
    if rank == 0:
        try:
            box = [("ok", fn())]
        except Exception as err:  # noqa: BLE001 - every rank raises it below
            error, box = err, [("error", f"{type(err).__name__}: {err}")]
    _group().broadcast_object_list(box, src=0)
    status, value = box[0]
    if error is not None:
        raise error
    if status == "error":
        raise RuntimeError(f"rank 0 failed: {value}")
    return value


def shutdown() -> None:
    """Leave the process group, if one was started.

    >>> shutdown()                                         # doctest: +SKIP
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
