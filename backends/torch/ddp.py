"""Multi-process data parallel training under `torchrun`.

Launch any training command with torchrun, e.g.

    torchrun --nproc_per_node=2 -m backends.torch train ...

torchrun sets WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR and MASTER_PORT. When WORLD_SIZE > 1 the torch
backend joins the process group (gloo on the CPU, NCCL on CUDA, one GPU per process: cuda:LOCAL_RANK),
wraps G and D each in DistributedDataParallel, and gives every rank the same inputs: the whole global
batch of B rows, of which rank r uses the contiguous shard rows [r B/W, (r + 1) B/W). Every loss is a
mean over its batch, so the mean over ranks of the shard gradients (what DDP's all-reduce computes) is
the gradient on the global batch, and the run matches a single process on the same global batch up to
floating-point rounding. Metrics that are batch means are averaged over ranks the same way.

Gradient penalties work under DDP: each rank's penalty is a mean over its shard (R1, WGAN-GP's interpolates)
or a sum of such means (Roth), so averaging is again right. The penalty's per-sample input gradients come
from torch.autograd.grad with respect to D's *input*, which runs none of the parameters' gradient
accumulators that DDP hooks; the one loss.backward() of the D update then reaches each parameter's
accumulator once, through the loss and the double backward alike, and DDP all-reduces the total
(tests/torch/test_remedies.py checks 2 gloo processes against 1).
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: rank r of world_size processes (0 of 1 when not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False  # True when this context initialised the process group (and must destroy it)

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {value!r}") from None


def setup(device_type: str) -> DistContext:
    """Join the process group when the environment (torchrun) says WORLD_SIZE > 1; else a 1-process context.

    device_type: "cpu" (gloo) or "cuda" (NCCL). An already initialised default group is used as it is.
    """
    world_size = _env_int("WORLD_SIZE", 1)
    if world_size <= 1:
        return DistContext()
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    local_rank = _env_int("LOCAL_RANK", 0)
    owns = False
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        kwargs = {}
        if device_type == "cuda":
            torch.cuda.set_device(local_rank)
            kwargs["device_id"] = torch.device("cuda", local_rank)
        dist.init_process_group(backend=backend, **kwargs)
        owns = True
        atexit.register(_destroy_if_initialized)  # torch asks for an explicit destroy before exit
    if dist.get_world_size() != world_size:
        raise RuntimeError(f"WORLD_SIZE is {world_size} but the process group has {dist.get_world_size()} ranks")
    return DistContext(dist.get_rank(), world_size, local_rank, owns)


def _destroy_if_initialized() -> None:
    """Wait for every rank, then destroy the group. Without the barrier a rank that finishes first can tear
    down its gloo connections while a peer's last collective is still in flight, which aborts the process
    ("terminate called without an active exception"), seen under load on a 2-core machine."""
    if dist.is_initialized():
        try:
            dist.barrier()
        finally:
            dist.destroy_process_group()


def teardown(ctx: DistContext) -> None:
    """Destroy the process group if `ctx` created it (also done at exit; calling it twice is harmless)."""
    if ctx.owns_group:
        _destroy_if_initialized()


def wrap(module: torch.nn.Module, ctx: DistContext, device: torch.device) -> torch.nn.Module:
    """`module` wrapped in DistributedDataParallel when distributed, else `module` itself.

    The wrapped module's parameters are the module's own, so the optimizer, state import/export and
    the forward passes that must not synchronise (evaluation, the frozen network in a step) all use the
    bare module, and only the training forward of the network being updated goes through DDP.
    """
    if not ctx.distributed:
        return module
    device_ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(module, device_ids=device_ids)


def shard_size(batch: int, ctx: DistContext, what: str) -> int:
    """The per-rank batch size; a clear error unless the global batch splits evenly over the ranks."""
    if batch % ctx.world_size != 0:
        raise ValueError(f"{what}: the global batch of {batch} rows does not split evenly over "
                         f"{ctx.world_size} processes; use a batch size divisible by {ctx.world_size}")
    return batch // ctx.world_size


def shard(array: np.ndarray, ctx: DistContext, axis: int, what: str) -> np.ndarray:
    """This rank's contiguous shard of the global batch along `axis` (the whole array when not distributed)."""
    if not ctx.distributed:
        return array
    size = shard_size(array.shape[axis], ctx, what)
    index = [slice(None)] * array.ndim
    index[axis] = slice(ctx.rank * size, (ctx.rank + 1) * size)
    return array[tuple(index)]


def mean_over_ranks(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """The elementwise mean of `tensor` over all ranks (sum all-reduce, then / world_size; gloo has no AVG)."""
    if not ctx.distributed:
        return tensor
    total = tensor.clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total / ctx.world_size
