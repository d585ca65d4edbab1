"""Distributed data parallel helpers: process group, ranks, and collective bookkeeping.

A run is distributed when it is launched by ``torchrun`` (``WORLD_SIZE`` > 1 in the
environment); the engine then joins the process group (nccl on CUDA, gloo on CPU), trains one
slice of every global batch per rank, and lets only rank 0 write files. Without ``torchrun``
every helper here is a no-op, so single-process runs need no process group at all.
"""

from __future__ import annotations

import gc
import logging
import os
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

log = logging.getLogger("aerossl")


def env_world_size() -> int:
    """``WORLD_SIZE`` set by the launcher (1 when not launched by torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def cpu_threads() -> int:
    """CPU threads for this process: the cores it may run on (its affinity), shared evenly
    among the processes ``torchrun`` started on this machine (``LOCAL_WORLD_SIZE``)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def is_distributed() -> bool:
    """Whether a process group with more than one rank is active."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 when not distributed)."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """Number of ranks (1 when not distributed)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """Whether this process writes files and logs (rank 0)."""
    return rank() == 0


def local_device(device: torch.device) -> torch.device:
    """Under torchrun each rank takes the GPU of its ``LOCAL_RANK`` (a bare ``cuda`` device)."""
    if device.type == "cuda" and device.index is None and "LOCAL_RANK" in os.environ:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return device


def init(device: torch.device) -> bool:
    """Join the process group when launched with ``WORLD_SIZE`` > 1; True if distributed.

    nccl for CUDA devices, gloo otherwise. Ranks other than 0 log warnings only.
    """
    if env_world_size() <= 1 or not dist.is_available():
        return False
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if not is_main():
        logging.getLogger("aerossl").setLevel(logging.WARNING)
    return is_distributed()


def shutdown() -> None:
    """Leave the process group (at the end of a command)."""
    if dist.is_available() and dist.is_initialized():
        gc.collect()  # drop the run's DDP wrapper (it holds the group) while Python is alive
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank."""
    if is_distributed():
        dist.barrier()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def any_rank(flag: bool, device: torch.device) -> bool:
    """Whether ``flag`` is true on any rank."""
    if not is_distributed():
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def mean_over_ranks(row: dict[str, float], device: torch.device) -> dict[str, float]:
    """Average logged values over ranks, each over the ranks where it is finite (a rank with no
    confident pseudo-label has no pseudo-label accuracy). Every rank must log the same keys."""
    if not is_distributed() or not row:
        return row
    keys = sorted(row)
    x = torch.tensor([row[k] for k in keys], dtype=torch.float64)
    finite = torch.isfinite(x)
    both = torch.stack([torch.where(finite, x, torch.zeros_like(x)), finite.double()]).to(device)
    dist.all_reduce(both)
    sums, counts = both.cpu()
    return {k: float(s / c) if c > 0 else float("nan") for k, s, c in zip(keys, sums, counts,
                                                                           strict=True)}


class _Step(nn.Module):
    """The algorithm's whole training step as one module call, so that DDP sees every forward
    pass of a step (weak views without autograd, several views, teachers) in one forward and
    synchronises the gradients of its single backward."""

    def __init__(self, algorithm: nn.Module) -> None:
        super().__init__()
        self.algorithm = algorithm

    def forward(self, batch: Any, ctx: Any) -> Any:
        return self.algorithm.training_step(batch, ctx)


def wrap(algorithm: nn.Module, device: torch.device) -> nn.Module | None:
    """``algorithm.training_step`` under DistributedDataParallel (None when not distributed).

    Buffers (batch-norm statistics, algorithm state such as distribution alignment's running
    mean) are broadcast from rank 0 at every step (``forward_sync_buffers``, called
    ``broadcast_buffers`` before torch 2.13), so all ranks hold rank 0's buffers and the single
    checkpoint rank 0 writes is every rank's state.
    """
    if not is_distributed():
        return None
    import inspect

    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    params = inspect.signature(DistributedDataParallel.__init__).parameters
    sync = "forward_sync_buffers" if "forward_sync_buffers" in params else "broadcast_buffers"
    return DistributedDataParallel(_Step(algorithm), device_ids=ids, **{sync: True})


@torch.no_grad()
def sync_buffers(*modules: nn.Module | None) -> None:
    """Give every rank rank 0's buffers now (DDP does it at the start of each forward): called
    before a checkpoint, so that all ranks hold exactly the state rank 0 writes."""
    if not is_distributed():
        return
    for module in modules:
        if module is not None:
            for b in module.buffers():
                dist.broadcast(b, src=0)
