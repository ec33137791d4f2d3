"""Multi-process sweeps under ``torchrun`` (torch.distributed), with exact image counts.

Batches, not images, are dealt round-robin to ranks: the dataset's pending indices are cut into the
same fixed batches a single process would use, and rank r takes batches r, r+W, r+2W, ... So no image
is duplicated or dropped (unlike DistributedSampler's padding), every batch has the same composition
as in a single-process run (identical per-image numbers), and each rank writes its own shards into
the shared run folder. After a barrier, rank 0 reads all shards in index order, so FID statistics
(float64) and every table are the same as a single process would compute. Multi-node runs need the
run folder on a filesystem all nodes share.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch


@dataclass(frozen=True)
class DistInfo:
    world: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def init(device: str = "cpu") -> DistInfo:
    """Join the process group torchrun describes in the environment (no-op for one process).

    NCCL for CUDA devices, gloo otherwise.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    info = DistInfo(world, int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0")))
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") and torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend=backend, timeout=timedelta(hours=2))
    return info


def device_for(device: str, info: DistInfo) -> str:
    """Each rank uses its own GPU (``cuda:LOCAL_RANK``) when running on CUDA."""
    if info.active and device.startswith("cuda") and ":" not in device:
        return f"cuda:{info.local_rank}"
    return device


def barrier(info: DistInfo) -> None:
    if info.active:
        import torch.distributed as dist

        dist.barrier()


def broadcast_object(obj: object, info: DistInfo) -> object:
    """Send a small picklable object from rank 0 to every rank."""
    if not info.active:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def my_batches(todo: list[int], batch_size: int, info: DistInfo) -> list[list[int]]:
    """This rank's batches: the single-process batches of `todo`, dealt round-robin."""
    batches = [todo[i : i + batch_size] for i in range(0, len(todo), batch_size)]
    return batches[info.rank :: info.world]
