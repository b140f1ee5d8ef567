"""Data-parallel training under torchrun: who this process is, and the few collectives
training needs.

`torchrun` (torch.distributed.run) exports RANK, WORLD_SIZE and LOCAL_RANK to every
process it starts; without them this is a world of one and every helper is a no-op, so
`ganlab train V` outside torchrun runs exactly the single-process code path.

Backend: gloo on CPU, nccl on CUDA (one GPU per process, cuda:LOCAL_RANK).
Batch norm: SyncBatchNorm on CUDA, so N ranks of b/N samples normalise with the statistics
of the global batch b, as one process would. On CPU torch has no SyncBatchNorm kernel:
each rank normalises with its own shard's statistics, and the running statistics kept
(and saved) are rank 0's. Parameters stay identical on every rank (DDP averages gradients).
"""

from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ganlab.util import GanlabError


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = ""

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, device: torch.device) -> torch.device:
        """One GPU per process: a CUDA device becomes cuda:LOCAL_RANK under torchrun."""
        if self.active and device.type == "cuda":
            torch.cuda.set_device(self.local_rank)
            return torch.device("cuda", self.local_rank)
        return device

    def barrier(self) -> None:
        if self.active:
            torch.distributed.barrier()

    def wrap(self, net: nn.Module, device: torch.device) -> nn.Module:
        """`net` for the training passes: itself in a world of one, else DDP over it.

        broadcast_buffers=False: D runs several forwards before one backward (reals and
        fakes apart when it has batch norm, the penalties' interpolates); re-broadcasting
        running statistics in place on each forward breaks the autograd graph of the earlier
        ones. Running statistics are per rank (CPU) or synchronised (SyncBatchNorm, CUDA)."""
        if not self.active or not any(q.requires_grad for q in net.parameters()):
            return net
        from torch.nn.parallel import DistributedDataParallel as DDP

        if device.type == "cuda":
            # converts the children in place, so the bare net (checkpoints, samples) is the
            # one DDP trains; a sampler copied before this (the EMA) keeps plain batch norm
            net = nn.SyncBatchNorm.convert_sync_batchnorm(net)

        ids = [device.index] if device.type == "cuda" else None
        with warnings.catch_warnings():
            # torch 2.14 deprecates the name; its successor still syncs buffers at init,
            # and it says to keep broadcast_buffers=False for rank-local buffers, as here
            warnings.filterwarnings("ignore", message=".*broadcast_buffers", category=FutureWarning)
            return DDP(net, device_ids=ids, broadcast_buffers=False)

    def mean(self, values: dict[str, Tensor | float], device: torch.device) -> dict[str, Tensor | float]:
        """The average over ranks of each logged value (one all-reduce per log step)."""
        if not self.active or not values:
            return values
        keys = list(values)
        flat = torch.stack([torch.as_tensor(values[k], dtype=torch.float64, device=device).detach()
                            .reshape(()) for k in keys])
        torch.distributed.all_reduce(flat)
        flat /= self.world_size
        return dict(zip(keys, flat.tolist()))

    def broadcast(self, obj):
        """Rank 0's `obj` on every rank (a pickled object: checkpoints, decisions)."""
        if not self.active:
            return obj
        box = [obj if self.is_main else None]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def shutdown(self) -> None:
        if self.active and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def under_torchrun() -> bool:
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))


def init(device: torch.device) -> DistContext:
    """The context of this process; under torchrun with WORLD_SIZE > 1, the process group
    (gloo on CPU, nccl on CUDA) is initialised from torchrun's env:// rendezvous."""
    if not under_torchrun() or int(os.environ["WORLD_SIZE"]) <= 1:
        return DistContext()
    rank, world, local = (int(os.environ[k]) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type not in ("cpu", "cuda"):
        raise GanlabError(f"device: {device.type} has no torch.distributed backend; use cpu or cuda "
                          f"under torchrun")
    if not torch.distributed.is_initialized():
        kw = {"device_id": torch.device("cuda", local)} if backend == "nccl" else {}
        torch.distributed.init_process_group(backend, rank=rank, world_size=world, **kw)
    return DistContext(rank, world, local, backend)


def torchrun_argv(nproc: int, args: list[str]) -> list[str]:
    """This interpreter re-running `ganlab <args>` under torchrun on one node."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc-per-node={nproc}", "-m", "ganlab", *args]
