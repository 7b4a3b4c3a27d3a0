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

Teardown: under the full suite a rank twice died of SIGABRT ("terminate called without an
active exception": C++'s message for a thread object destroyed while its thread runs) while the
other rank was still alive, the second time with a barrier before ``destroy_process_group``; 40
runs of the two tests alone under a CPU load did not repeat it, so where it happens was not
caught. Each rank now leaves with ``os._exit(0)`` once its group is destroyed (no interpreter
finalization, where torch's and gloo's threads are torn down; the result file is closed by
then), and :func:`spawn` reruns a world once if a rank still dies by a signal, with a warning
that shows in the test summary.
"""

from __future__ import annotations

import os
import signal
import sys
import warnings

import torch
from torch import nn

from equilayers._rng import global_rng_from
from equilayers.nn import GroupBatchNorm2d, GroupConv2d, InvariantHead, LiftingConv2d

__all__ = ["ddp_model", "ddp_batch", "single_process_step", "spawn", "ddp_worker",
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


def spawn(worker, world_size: int, out_path: str) -> None:
    """Run ``worker(rank, world_size, store_path, out_path)`` on ``world_size`` processes
    (``torch.multiprocessing.spawn``), rendezvous through a file store next to ``out_path``
    (no TCP port to pick: a free port can be taken between picking and binding). A world in
    which a rank dies by a signal (the teardown abort in the module docstring) runs once more,
    with a warning; an exception in a rank, or a second signal death, fails."""
    import torch.multiprocessing as mp

    for attempt in (1, 2):
        store = f"{out_path}.store{attempt}"  # a fresh store: a used one holds the old keys
        try:
            mp.spawn(worker, args=(world_size, store, out_path), nprocs=world_size, join=True)
            return
        except mp.ProcessExitedException as e:
            if attempt == 2 or e.signal_name is None:
                raise
            warnings.warn(f"a rank died by {e.signal_name} (torch/gloo teardown); running the "
                          f"world again: {e}", RuntimeWarning, stacklevel=2)


def _init(rank: int, world_size: int, store_path: str):
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store_path}", rank=rank,
                            world_size=world_size)
    return dist


def _leave(dist) -> None:
    """Every rank done with its collectives, the group destroyed, then out without the
    interpreter's finalization (module docstring)."""
    dist.barrier()  # a rank that destroys the group while another still uses it can abort it
    dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def ddp_worker(rank: int, world_size: int, store_path: str, out_path: str) -> None:
    """One rank: its shard of the batch, one DDP SGD step; rank 0 saves grads and params."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    dist = _init(rank, world_size, store_path)
    model = DDP(ddp_model())
    x, y = ddp_batch()
    shard = x.shape[0] // world_size
    sl = slice(rank * shard, (rank + 1) * shard)
    result = _step(model, x[sl], y[sl])
    result = {k.replace("module.", "", 1): v for k, v in result.items()}
    if rank == 0:
        torch.save(result, out_path)
    _leave(dist)


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


def fsdp_worker(rank: int, world_size: int, store_path: str, out_path: str) -> None:
    """One rank: ``fully_shard`` on every layer with parameters and on the root (FSDP2, CPU
    device mesh, gloo), its shard of the batch, one SGD step; rank 0 saves the gathered
    gradients and parameters."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    dist = _init(rank, world_size, store_path)
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
    _leave(dist)


def abort_once_worker(rank: int, world_size: int, store_path: str, out_path: str) -> None:
    """Rank 1 dies by a signal (SIGKILL: no core file, unlike the SIGABRT it stands for) the
    first time, when no ``out_path`` marker exists yet; the other runs exit cleanly: the check
    of :func:`spawn`'s one rerun."""
    if rank == 1 and not os.path.exists(out_path):
        open(out_path, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    os._exit(0)


def abort_always_worker(rank: int, world_size: int, store_path: str, out_path: str) -> None:
    """Rank 1 dies by a signal every time: :func:`spawn` must fail after its one rerun."""
    if rank == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    os._exit(0)


def raising_worker(rank: int, world_size: int, store_path: str, out_path: str) -> None:
    """Rank 1 raises: :func:`spawn` must fail at once, without a rerun."""
    if rank == 1:
        open(out_path, "a").write("ran\n")
        raise RuntimeError("rank 1 failed")
    os._exit(0)
