"""A DistributedDataParallel training step on CPU (gloo), compared with one process on the full
batch. Used by ``tests/test_compat.py``; lives in the package so ``torch.multiprocessing.spawn``
children can import the worker by name.

The model has no batch norm: ``GroupBatchNorm2d`` in train mode normalises with per-rank batch
statistics under DDP (as ``nn.BatchNorm*`` does), so its gradients legitimately differ from one
process on the full batch. ``nn.SyncBatchNorm`` fixes that on GPUs, but refuses CPU tensors.
"""

from __future__ import annotations

import os
import socket

import torch
from torch import nn

from ..nn import GroupConv2d, InvariantHead, LiftingConv2d

__all__ = ["ddp_model", "ddp_batch", "single_process_step", "free_port", "ddp_worker"]


def ddp_model() -> nn.Module:
    """A small p4 model (float64, seeded): lifting conv, group conv, invariant head."""
    torch.manual_seed(0)
    return nn.Sequential(
        LiftingConv2d(1, 4, 3, padding=1, group="p4"), nn.ReLU(),
        GroupConv2d(4, 4, 3, padding=1, group="p4"), nn.ReLU(),
        InvariantHead(4, 3, group="p4"),
    ).double()


def ddp_batch(n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(n, 1, 9, 9, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (n,), generator=gen)
    return x, y


def _step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    opt.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    opt.step()
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    return {**{f"grad/{k}": v for k, v in grads.items()},
            **{f"param/{k}": v for k, v in params.items()}}


def single_process_step() -> dict[str, torch.Tensor]:
    """Gradients and updated parameters of one SGD step on the full batch, one process."""
    return _step(ddp_model(), *ddp_batch())


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ddp_worker(rank: int, world_size: int, port: int, out_path: str) -> None:
    """One rank: its shard of the batch, one DDP SGD step; rank 0 saves grads and params."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        model = DDP(ddp_model())
        x, y = ddp_batch()
        shard = x.shape[0] // world_size
        sl = slice(rank * shard, (rank + 1) * shard)
        result = _step(model, x[sl], y[sl])
        result = {k.replace("module.", "", 1): v for k, v in result.items()}
        if rank == 0:
            torch.save(result, out_path)
    finally:
        dist.destroy_process_group()
