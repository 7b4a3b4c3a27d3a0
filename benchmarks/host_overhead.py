"""Host (Python) work per call of the Triton-routed pools, measured on the CPU.

``python -m benchmarks.host_overhead [--quick] [--profile CASE]``

On a GPU a small pool's kernel runs in 0.05-0.15 ms while the call that launches it took
0.28-0.36 ms (H200): the GPU waited for Python. This script measures that Python alone, on the
CPU, with no GPU: it sets ``EQUILAYERS_TRITON_INTERPRET=1`` and ``TRITON_INTERPRET=1`` so that
:func:`equilayers.kernels.dispatch` routes CPU tensors to the Triton path (rule 5 of
:mod:`equilayers.kernels._dispatch`), and replaces the ``kernel[grid](...)`` launches of
:mod:`equilayers.kernels._triton` with no-ops (inside this process only). Everything else runs
as on CUDA: the dispatch, the custom ops (``torch.library``) and their autograd, the tap tables
(:mod:`equilayers.kernels._tables`, copied to the input's device), the output allocations.
What differs from CUDA: CPU allocations and copies instead of the CUDA caching allocator's and
``cudaMemcpyAsync`` (the tables are copied to the CPU, which returns them as they are), and
``_launch``'s interpreter branch (no warps). So the numbers are the Python and dispatcher work
of a call, not a GPU's.

Each case is timed call by call (``time.perf_counter``), the median of ``--calls`` calls after
warmup: ``forward`` on an input that does not require grad, ``fwd+bwd`` the forward on an
input that does, then ``torch.autograd.backward(y, g)`` with a preallocated ``g`` (no
``sum()``). ``module`` calls the ``nn`` module, ``functional`` its functional twin. The
reference rows, ``nn.MaxPool2d(2)`` on a tiny CPU input, are torch's own per-call overhead
(its fwd+bwd row: the harness's ``torch.autograd.backward`` and autograd engine included).

``--profile CASE`` (e.g. ``MaxBlurPool2d/module/fwd+bwd``) prints cProfile's top functions of
that case by internal time.

Results: ``benchmarks/results/host-overhead.md``.
"""

from __future__ import annotations

import os

os.environ["EQUILAYERS_TRITON_INTERPRET"] = "1"  # before anything reads them (module level:
os.environ["TRITON_INTERPRET"] = "1"  # triton.jit reads TRITON_INTERPRET at decoration)

import argparse  # noqa: E402
import cProfile  # noqa: E402
import pstats  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import torch  # noqa: E402

from equilayers import functional as EF  # noqa: E402
from equilayers import kernels  # noqa: E402
from equilayers import nn as enn  # noqa: E402

from ._cli import positive_int  # noqa: E402

#: The kernels of ``_triton.py`` launched as ``kernel[grid](...)``.
KERNELS = ("_sep_gather", "_max_blur_fwd", "_max_blur_bwd", "_phase_norms", "_phase_gather",
           "_phase_scatter")


class _NoLaunch:
    """``kernel[grid](*args, **kwargs)`` that launches nothing."""

    def __getitem__(self, grid):
        return self._launch

    @staticmethod
    def _launch(*args, **kwargs) -> None:
        return None


def stub_launches() -> None:
    """Replace every Triton launch of :mod:`equilayers.kernels._triton` with a no-op."""
    try:
        from equilayers.kernels import _triton
    except ImportError:  # (the bare ModuleNotFoundError came through)
        raise SystemExit("benchmarks.host_overhead measures the host work of the Triton paths "
                         "and needs triton: pip install 'equilayers[triton]' (on a CPU, run "
                         "it with TRITON_INTERPRET=1)") from None

    for name in KERNELS:
        assert hasattr(_triton, name), name  # a renamed kernel must not launch for real
        setattr(_triton, name, _NoLaunch())


def _cases(b: int, c: int, n: int) -> dict[str, tuple[Callable, Callable, str]]:
    """name -> (module call, functional call, op name)."""
    blur = enn.BlurPool2d(c)
    maxblur = enn.MaxBlurPool2d(2)
    poly = enn.PolyphasePool2d(2)
    return {
        "BlurPool2d": (blur, lambda x: EF.blur_pool2d(x, 3, 2, "reflect"), "blur_pool2d"),
        "MaxBlurPool2d": (maxblur, lambda x: EF.max_blur_pool2d(x, 2), "max_blur_pool2d"),
        "PolyphasePool2d": (poly, lambda x: EF.polyphase_pool2d(x, 2), "polyphase_pool2d"),
    }


def _fwd(f: Callable, x: torch.Tensor) -> Callable[[], object]:
    return lambda: f(x)


def _fwd_bwd(f: Callable, x: torch.Tensor) -> Callable[[], object]:
    g = torch.ones_like(f(x))

    def step():
        torch.autograd.backward(f(x), g)
        x.grad = None
    return step


def median_us(step: Callable[[], object], calls: int, warmup: int = 50) -> float:
    for _ in range(warmup):
        step()
    times = []
    clock = time.perf_counter
    for _ in range(calls):
        t0 = clock()
        step()
        times.append(clock() - t0)
    return statistics.median(times) * 1e6


def steps(b: int, c: int, n: int) -> dict[str, Callable[[], object]]:
    """``"<module>/<module|functional>/<forward|fwd+bwd>"`` -> one call."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(b, c, n, n, generator=gen)
    xg = x.clone().requires_grad_(True)
    out = {}
    for name, (module, functional, op) in _cases(b, c, n).items():
        path = kernels.select(op, x, **({"stride": 2} if op == "polyphase_pool2d" else {}))[0]
        assert path == "triton", (name, kernels.explain(op, x))
        for how, f in (("module", module), ("functional", functional)):
            out[f"{name}/{how}/forward"] = _fwd(f, x)
            out[f"{name}/{how}/fwd+bwd"] = _fwd_bwd(f, xg)
    tiny = torch.randn(1, 1, 4, 4, generator=gen)
    torch_pool = torch.nn.MaxPool2d(2)
    out["nn.MaxPool2d(2) 1x1x4x4 (torch)/module/forward"] = _fwd(torch_pool, tiny)
    out["nn.MaxPool2d(2) 1x1x4x4 (torch)/module/fwd+bwd"] = _fwd_bwd(
        torch_pool, tiny.clone().requires_grad_(True))
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer calls")
    p.add_argument("--calls", type=positive_int, default=None, help="timed calls per case")
    p.add_argument("--size", type=positive_int, nargs=3, default=(32, 64, 56),
                   metavar=("B", "C", "N"),
                   help="input (B, C, N, N); default 32 64 56")
    p.add_argument("--profile", default=None, help="cProfile this case instead of timing")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    stub_launches()
    table = steps(*args.size)
    if args.profile:
        if args.profile not in table:
            raise SystemExit(f"--profile: unknown case {args.profile!r}; one of {list(table)}")
        step = table[args.profile]
        for _ in range(50):
            step()
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(2000):
            step()
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        return
    calls = args.calls or (300 if args.quick else 3000)
    b, c, n = args.size
    print(f"host work per call, us (median of {calls}; input {b}x{c}x{n}x{n} float32; "
          f"Triton launches stubbed; torch {torch.__version__})")
    print(f"{'case':<58} {'us':>8}")
    for name, step in table.items():
        print(f"{name:<58} {median_us(step, calls):8.1f}")


if __name__ == "__main__":
    main()
