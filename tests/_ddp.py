"""A DistributedDataParallel and an FSDP2 (``fully_shard``) training step on CPU (gloo),
compared with one process. Used by ``tests/test_compat.py``; a module of its own (not the test
file) so ``torch.multiprocessing.spawn`` children can import the workers by name (``tests/`` is on
the ``sys.path`` that spawn hands its children).

The DDP model has no batch norm: ``GroupBatchNorm2d`` in train mode normalises with per-rank
batch statistics under DDP and FSDP (as ``nn.BatchNorm*`` does), so its gradients legitimately
differ from one process on the full batch. ``nn.SyncBatchNorm`` fixes that on GPUs, but refuses
CPU tensors. The FSDP model has a ``GroupBatchNorm2d``; its one-process reference runs the same
per-rank shards one after the other and averages their losses, which is what data parallelism
with per-rank batch statistics computes.
"""

from __future__ import annotations

import os
import socket

import torch
from torch import nn

from equilayers._rng import global_rng_from
from equilayers.nn import GroupBatchNorm2d, GroupConv2d, InvariantHead, LiftingConv2d

__all__ = ["ddp_model", "ddp_batch", "single_process_step", "free_port", "ddp_worker",
           "fsdp_model", "fsdp_single_process_step", "fsdp_worker"]


def ddp_model() -> nn.Module:
    """A small p4 model (float64, seeded): lifting conv, group conv, invariant head."""
    with global_rng_from(torch.Generator().manual_seed(0)):
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
    grads = _grads(model)
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
        # every rank done with its collectives before any tears gloo down: a rank that
        # destroys the group while another still talks to it can abort the other
        # ("terminate called without an active exception", seen once under the full suite)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def fsdp_model() -> nn.Sequential:
    """A small p4 model (float64, seeded): lifting conv, group BN, group conv, invariant head."""
    with global_rng_from(torch.Generator().manual_seed(0)):
        return nn.Sequential(
            LiftingConv2d(1, 4, 3, padding=1, group="p4"), GroupBatchNorm2d(4), nn.ReLU(),
        GroupConv2d(4, 4, 3, padding=1, group="p4"), nn.ReLU(),
        InvariantHead(4, 3, group="p4"),
    ).double()


def _grads(model: nn.Module) -> dict[str, torch.Tensor]:
    out = {}
    for n, p in model.named_parameters():
        assert p.grad is not None  # after backward, every parameter has its gradient
        out[n] = p.grad.detach().clone()
    return out


def _sharded_step(model: nn.Module, shards: list[tuple[torch.Tensor, torch.Tensor]]
                  ) -> dict[str, torch.Tensor]:
    """One SGD step on the mean of the shards' losses (each shard its own BN statistics)."""
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    opt.zero_grad()
    loss = sum((nn.functional.cross_entropy(model(x), y) for x, y in shards),
               torch.tensor(0.0)) / len(shards)
    loss.backward()
    grads = _grads(model)
    opt.step()
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    return {**{f"grad/{k}": v for k, v in grads.items()},
            **{f"param/{k}": v for k, v in params.items()}}


def _shards(world_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    x, y = ddp_batch()
    n = x.shape[0] // world_size
    return [(x[r * n:(r + 1) * n], y[r * n:(r + 1) * n]) for r in range(world_size)]


def fsdp_single_process_step(world_size: int = 2) -> dict[str, torch.Tensor]:
    """The one-process reference for :func:`fsdp_worker`: gradients and updated parameters."""
    return _sharded_step(fsdp_model(), _shards(world_size))


def fsdp_worker(rank: int, world_size: int, port: int, out_path: str) -> None:
    """One rank: ``fully_shard`` on every layer with parameters and on the root (FSDP2, CPU
    device mesh, gloo), its shard of the batch, one SGD step; rank 0 saves the gathered
    gradients and parameters."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        mesh = init_device_mesh("cpu", (world_size,))
        model = fsdp_model()
        for layer in model:
            if any(True for _ in layer.parameters()):
                fully_shard(layer, mesh=mesh)
        fully_shard(model, mesh=mesh)
        out = _sharded_step(model, _shards(world_size)[rank:rank + 1])
        # every rank holds a shard of each parameter and gradient: gather them (collective)
        # DTensors after fully_shard (typed as the Tensors _sharded_step returns)
        result = {k: v.full_tensor() for k, v in out.items()}  # type: ignore[attr-defined]
        if rank == 0:
            torch.save(result, out_path)
        # every rank done with its collectives before any tears gloo down: a rank that
        # destroys the group while another still talks to it can abort the other
        # ("terminate called without an active exception", seen once under the full suite)
        dist.barrier()
    finally:
        dist.destroy_process_group()
