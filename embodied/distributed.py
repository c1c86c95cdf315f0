"""Data-parallel training under ``torchrun``: one process per rank, each with its own envs and
seed; gradients are averaged across ranks and rank 0 logs and checkpoints.

Outside ``torchrun`` (no ``WORLD_SIZE`` in the environment) everything here is a no-op.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def all_gather(self, x: torch.Tensor) -> torch.Tensor:
        """Concatenate ``x [B, ...]`` of every rank along dim 0 (equal B on every rank)."""
        if not self.enabled:
            return x
        parts = [torch.empty_like(x) for _ in range(self.world_size)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    def all_reduce_sum(self, x: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            x = x.clone()
            dist.all_reduce(x, op=dist.ReduceOp.SUM)
        return x

    def mean(self, value: float) -> float:
        """The mean of ``value`` over ranks."""
        if not self.enabled:
            return value
        return float(self.all_reduce_sum(torch.tensor([value], dtype=torch.float64, device=self.device))[0]) / self.world_size

    def average_gradients(self, params: Iterable[nn.Parameter]) -> None:
        """All-reduce the mean gradient, as one flat buffer (one collective per minibatch)."""
        if not self.enabled:
            return
        grads = [p.grad for p in params if p.grad is not None]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat /= self.world_size
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()

    def broadcast_module(self, module: nn.Module) -> None:
        """Make every rank start from rank 0's parameters and buffers."""
        if self.enabled:
            for tensor in [*module.parameters(), *module.buffers()]:
                dist.broadcast(tensor.data, src=0)

    def check_in_sync(self, module: nn.Module) -> None:
        """Raise if this rank's parameters differ from rank 0's (a data-parallel bug)."""
        if not self.enabled:
            return
        flat = torch.cat([t.detach().reshape(-1).double() for t in [*module.parameters(), *module.buffers()]])
        reference = flat.clone()
        dist.broadcast(reference, src=0)
        if not torch.equal(flat, reference):
            raise RuntimeError(f"rank {self.rank}'s parameters diverged from rank 0's "
                               f"(max difference {float((flat - reference).abs().max()):.3g})")

    def barrier(self, failed: bool = False) -> None:
        """Wait for every rank; if any rank arrives with ``failed``, the others raise here.

        A rank whose work failed must still come here (then re-raise its own error): a plain
        barrier would leave the ranks waiting for it until the process group's timeout.
        """
        if not self.enabled:
            return
        flag = torch.tensor([int(failed)], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if flag.item() and not failed:
            raise RuntimeError(f"rank {self.rank}: stopping because another rank failed while every rank waited "
                               "for it; that rank's error above says why")


def init_distributed(device: str) -> tuple[Distributed, torch.device]:
    """Join the process group ``torchrun`` set up (gloo on CPU, NCCL on CUDA); returns the rank
    info and this rank's device (``cuda:<local_rank>`` when ``device`` is cuda)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Distributed(), torch.device(device)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError("device=cuda under torchrun but no CUDA GPU is visible; use device=cpu")
        torch.cuda.set_device(local_rank)
        torch_device = torch.device("cuda", local_rank)
        backend = "nccl"
    else:
        torch_device = torch.device("cpu")
        backend = "gloo"
    if not dist.is_initialized():
        # rank 0 evaluates (and renders videos) while the others wait in the next collective
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size, timeout=timedelta(hours=1))
    return Distributed(rank, world_size, local_rank, torch_device), torch_device


def shutdown_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
