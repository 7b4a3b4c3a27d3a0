"""Host cost of the harmonic layers (``python -m benchmarks.host_harmonic``).

On a GPU the SO(2) CNN of ``bench_equimodels.py`` is bound by the host: every aten op is a
launch and ~10-20 us of Python and dispatcher time. This measures, on tiny CPU inputs with one
thread (so the arithmetic is negligible and what is left is the per-op overhead), each layer
``so2_cnn`` uses (and the other harmonic nonlinearities) and the whole ``so2_cnn(8)``: the
forward and forward+backward time in microseconds (medians over many calls) and the aten ops of
one forward+backward, counted with a ``TorchDispatchMode``.

``--json PATH`` also writes the rows as JSON.
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import time
import warnings
from collections.abc import Callable

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from ._cli import positive_int


class _Count(TorchDispatchMode):
    """Counts every aten op that reaches the dispatcher (views included, as each is host
    work)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: collections.Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[str(func.overloadpacket.__name__)] += 1
        return func(*args, **(kwargs or {}))


def _cases() -> list[tuple[str, Callable[[], nn.Module], tuple[int, ...]]]:
    from benchmarks.bench_equimodels import so2_cnn
    from equilayers.nn import (
        FourierNonlinearity,
        GatedNonlinearity,
        GroupConv2d,
        HarmonicBatchNorm,
        LiftingConv2d,
        NormNonlinearity,
        NormPool,
    )

    c, m, hw = 8, 2, 8
    f = 2 * m + 1
    return [
        ("LiftingConv2d so2", lambda: LiftingConv2d(1, c, 5, padding=2, group="so2",
                                                    max_order=m), (2, 1, hw, hw)),
        ("GroupConv2d so2", lambda: GroupConv2d(c, 2 * c, 5, stride=2, padding=2, group="so2",
                                                max_order=m), (2, c, f, hw, hw)),
        ("HarmonicBatchNorm (train)", lambda: HarmonicBatchNorm(c, m), (2, c, f, hw, hw)),
        ("HarmonicBatchNorm (eval)", lambda: HarmonicBatchNorm(c, m).eval(), (2, c, f, hw, hw)),
        ("NormNonlinearity", lambda: NormNonlinearity(c, m), (2, c, f, hw, hw)),
        ("NormNonlinearity order0=norm", lambda: NormNonlinearity(c, m, order0="norm"),
         (2, c, f, hw, hw)),
        ("GatedNonlinearity", lambda: GatedNonlinearity(m), (2, c, f, hw, hw)),
        ("FourierNonlinearity so2", lambda: FourierNonlinearity("so2", m), (2, c, f, hw, hw)),
        ("NormPool", lambda: NormPool(), (2, c, f, hw, hw)),
        ("so2_cnn(8) (train)", lambda: so2_cnn(8), (2, 1, 16, 16)),
        ("so2_cnn(8) (eval)", lambda: so2_cnn(8).eval(), (2, 1, 16, 16)),
    ]


def _median_us(fn: Callable[[], object], reps: int) -> float:
    for _ in range(max(reps // 10, 3)):
        fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e6


def measure(reps: int = 300) -> list[dict]:
    """One row per case: ``fwd_us``, ``fwd_bwd_us``, ``ops`` (forward+backward) and
    ``fwd_ops``, plus the most frequent ops (the sizes' exactness warnings silenced: the stride-2
    convs on even sizes are timed, not checked)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _measure(reps)


def _measure(reps: int) -> list[dict]:
    rows = []
    for name, build, shape in _cases():
        with torch.random.fork_rng(devices=[]):  # the same init every run; global RNG untouched
            torch.manual_seed(0)
            model = build()
        x = torch.randn(*shape, generator=torch.Generator().manual_seed(0)).requires_grad_()

        def fwd(model=model, x=x):
            with torch.no_grad():
                return model(x)

        def step(model=model, x=x):
            model(x).sum().backward()

        step()
        with _Count() as c_f:
            fwd()
        with _Count() as c:
            step()
        rows.append({"layer": name, "fwd_us": _median_us(fwd, reps),
                     "fwd_bwd_us": _median_us(step, reps),
                     "fwd_ops": sum(c_f.ops.values()), "ops": sum(c.ops.values()),
                     "top": c.ops.most_common(8)})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=positive_int, default=300)
    p.add_argument("--json", default=None)
    p.add_argument("--top", action="store_true", help="print the most frequent ops per row")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    rows = measure(args.reps)
    print(f"torch {torch.__version__}, 1 thread, medians of {args.reps}")
    print("| layer | forward us | fwd+bwd us | aten ops fwd (no_grad) | aten ops fwd+bwd |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['layer']} | {r['fwd_us']:.0f} | {r['fwd_bwd_us']:.0f} | {r['fwd_ops']} | "
              f"{r['ops']} |")
        if args.top:
            print("    ", ", ".join(f"{n} {k}" for n, k in r["top"]))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
