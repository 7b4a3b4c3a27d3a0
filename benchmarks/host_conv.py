"""The host cost of one group conv call beside the dense conv of the same expanded shape:
``python -m benchmarks.host_conv`` (CPU, one thread).

On a GPU a small equivariant model is bound by the host: every aten op is Python and
dispatcher work plus one kernel launch. Here the inputs are tiny (one image of 4 x 4 pixels,
3 x 3 x 3 voxels), so the arithmetic is negligible and the times are the host's: per layer,
the forward, the forward+backward (``torch.autograd.grad`` of the output against a fixed
gradient, into the parameters and, past the lifting layer, the input), the eval-mode forward
under ``torch.no_grad`` (the kept filter of :mod:`equilayers.nn._eval_filter`), each the
median over rounds of the mean of many calls, in microseconds; and the aten ops one
forward+backward dispatches (counted by a ``TorchDispatchMode``). ``--ops`` lists them.
"""

from __future__ import annotations

import argparse
import collections
import platform
import statistics
import time
import warnings
from collections.abc import Callable

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from equilayers.nn import GroupConv2d, GroupConv3d, LiftingConv2d

from ._cli import positive_int


class _Count(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: collections.Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[str(func)] += 1
        return func(*args, **(kwargs or {}))


def _grad(*shape: int) -> torch.Tensor:
    return torch.randn(shape).requires_grad_()


def _layers() -> list[tuple[str, nn.Module, nn.Module, torch.Tensor, torch.Tensor]]:
    """``(name, ours, dense, x, x_dense)``: the dense conv has the expanded filter's shape."""
    torch.manual_seed(0)
    rows = []
    for group, n in (("p4", 4), ("p4m", 8)):
        rows.append((f"LiftingConv2d {group} 8->8 k3", LiftingConv2d(8, 8, 3, padding=1,
                                                                     group=group),
                     nn.Conv2d(8, 8 * n, 3, padding=1), torch.randn(1, 8, 4, 4),
                     torch.randn(1, 8, 4, 4)))
    for group, n in (("p4", 4), ("p4m", 8)):
        rows.append((f"GroupConv2d {group} 8->8 k3", GroupConv2d(8, 8, 3, padding=1, group=group),
                     nn.Conv2d(8 * n, 8 * n, 3, padding=1), _grad(1, 8, n, 4, 4),
                     _grad(1, 8 * n, 4, 4)))
    rows.append(("GroupConv2d c8 steerable 8->8 k3",
                 GroupConv2d(8, 8, 3, padding=1, group="c8"),
                 nn.Conv2d(64, 64, 3, padding=1), _grad(1, 8, 8, 4, 4),
                 _grad(1, 64, 4, 4)))
    rows.append(("GroupConv3d o 2->2 k3", GroupConv3d(2, 2, 3, padding=1, group="o"),
                 nn.Conv3d(48, 48, 3, padding=1), _grad(1, 2, 24, 3, 3, 3),
                 _grad(1, 48, 3, 3, 3)))
    return rows


def _per_call(fn: Callable[[], object], calls: int, rounds: int) -> float:
    """Microseconds per call: the median over ``rounds`` of the mean of ``calls`` calls."""
    for _ in range(max(calls // 4, 3)):
        fn()
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - t) / calls)
    return statistics.median(times) * 1e6


def _closures(m: nn.Module, x: torch.Tensor):
    params = list(m.parameters())
    # past the first layer the input carries a gradient too (the lifting rows: images)
    x = x.detach().requires_grad_(x.requires_grad)
    inputs = ([x] if x.requires_grad else []) + params
    grad = torch.ones_like(m(x))

    def forward():
        return m(x)

    def train_step():
        return torch.autograd.grad(m(x), inputs, grad)

    def eval_forward():
        with torch.no_grad():
            return m(x)
    return forward, train_step, eval_forward


def _ops(m: nn.Module, x: torch.Tensor) -> collections.Counter[str]:
    m.train()
    _, train_step, _ = _closures(m, x)
    train_step()
    with _Count() as c:
        train_step()
    return c.ops


def measure(m: nn.Module, x: torch.Tensor, calls: int, rounds: int) -> dict:
    m.train()
    forward, train_step, eval_forward = _closures(m, x)
    out = {"forward_us": _per_call(forward, calls, rounds),
           "fwd_bwd_us": _per_call(train_step, calls, rounds)}
    m.eval()
    out["eval_us"] = _per_call(eval_forward, calls, rounds)
    m.train()
    out["ops"] = sum(_ops(m, x).values())
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=positive_int, default=200, help="calls per round")
    p.add_argument("--rounds", type=positive_int, default=15)
    p.add_argument("--ops", action="store_true", help="list the aten ops of each layer")
    p.add_argument("--filter", default="", help="only layers whose name contains this")
    args = p.parse_args(argv)
    layers = [row for row in _layers() if args.filter in row[0]]
    if not layers:  # (an empty table, exit 0)
        p.error(f"--filter {args.filter!r} matches no layer; one of "
                f"{[row[0] for row in _layers()]}")
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, 1 thread; "
          f"us per call (median of {args.rounds} rounds of {args.calls}), aten ops per "
          "forward+backward")
    print("| layer | fwd | dense | fwd+bwd | dense | eval no_grad | dense | ops | dense |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, ours, dense, x, xd in layers:
        a = measure(ours, x, args.calls, args.rounds)
        b = measure(dense, xd, args.calls, args.rounds)
        print(f"| {name} | {a['forward_us']:.0f} | {b['forward_us']:.0f} | "
              f"{a['fwd_bwd_us']:.0f} | {b['fwd_bwd_us']:.0f} | {a['eval_us']:.0f} | "
              f"{b['eval_us']:.0f} | {a['ops']} | {b['ops']} |", flush=True)
        if args.ops:
            for op, count in sorted(_ops(ours, x).items()):
                print(f"    {count} {op}")


if __name__ == "__main__":
    main()
