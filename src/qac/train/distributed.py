"""torchrun/DDP plumbing: the same training code runs on one CPU or many GPUs.

Launch with ``torchrun --nproc_per_node=N -m qac.cli train ...``; torchrun's environment variables
(RANK, WORLD_SIZE, LOCAL_RANK) switch it on. NCCL on CUDA, gloo on CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """This process's place in a torchrun job (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        """True in a job of more than one process (world_size > 1)."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on rank 0, the process that logs and writes the run folder."""
        return self.rank == 0


def init_distributed(device_name: str) -> DistInfo:
    """Initialise the process group when launched by torchrun; returns this process's rank info."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and device_name in ("auto", "cuda")
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    if use_cuda:
        torch.cuda.set_device(local)
    return DistInfo(rank, world, local)


def all_reduce_sum(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum a tensor over ranks in place (no-op on one process)."""
    if info.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op in a single process)."""
    if info.enabled:
        dist.barrier()


def rank_device(device_name: str, info: DistInfo) -> torch.device:
    """This process's device: ``cuda:LOCAL_RANK`` under torchrun with CUDA (for ``auto``/``cuda``), else as named."""
    from qac.util import resolve_device

    if info.enabled and device_name in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device(f"cuda:{info.local_rank}")
    return resolve_device(device_name)


def shard(n: int, info: DistInfo) -> slice:
    """This rank's contiguous block of ``n`` items (ranks in order; the last blocks may be shorter or empty).

    >>> shard(10, DistInfo(1, 3)), shard(10, DistInfo(2, 3)), shard(10, DistInfo())
    (slice(4, 8, None), slice(8, 10, None), slice(0, 10, None))
    """
    per = -(-n // info.world_size)
    lo = min(info.rank * per, n)
    return slice(lo, min(lo + per, n))


def gather_objects(obj: object, info: DistInfo) -> list:
    """Every rank's ``obj`` (picklable; move tensors to the CPU first), in rank order, on every rank."""
    if not info.enabled:
        return [obj]
    out: list = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out
