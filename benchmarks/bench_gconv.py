"""Group convolutions against their floor, a dense ``nn.Conv2d`` with the same expanded channel
counts (``C_in*F_in -> C_out*|G|``), and against escnn/e2cnn ``R2Conv`` when importable.

Rows: LiftingConv2d / GroupConv2d x c4, d4 x 3x3, 5x5 x 32x32, 64x64; batch 16 with 16 fields
in train mode (forward and forward+backward), and batch-1 inference in eval mode under
``torch.no_grad`` (our layers expand the filter in every forward, escnn's skips it in eval
mode; ``ours exported`` is the same layer after ``equilayers.export``, a plain ``nn.Conv2d``).
Construction time per layer via ``construct``. Transposed rows: LiftingConvTranspose2d /
GroupConvTranspose2d (stride 2) against a dense ``nn.ConvTranspose2d``, same expanded channels.

Run: ``python -m benchmarks.bench_gconv [--quick]`` prints a table (``--quick``: 32x32, 3x3).
"""

from __future__ import annotations

import importlib.util
import sys
import time

import torch
from torch import nn

from benchmarks._core import BenchCase, forward_backward, infer

FAMILY = "gconv"
#: peer libraries whose rows this family has only where they are installed (the runner
#: names each one missing)
OPTIONAL_PEERS = ("escnn", "e2cnn")
_ORDER = {"c4": 4, "d4": 8}


def _ours(kind: str, group: str, c: int, k: int):
    from equilayers.nn import GroupConv2d, LiftingConv2d
    cls = LiftingConv2d if kind == "lifting" else GroupConv2d
    return lambda: cls(c, c, k, padding=k // 2, group=group)


def _exported(builder):
    import equilayers

    return lambda: equilayers.export(builder())


def _floor(kind: str, group: str, c: int, k: int):
    n = _ORDER[group]
    c_in = c if kind == "lifting" else c * n
    return lambda: nn.Conv2d(c_in, c * n, k, padding=k // 2)


def _peer(lib: str, kind: str, group: str, c: int, k: int):
    mod = importlib.import_module(lib)
    gs_mod = mod.gspaces
    nn_mod = mod.nn
    n = 4
    if lib == "escnn":
        gs = gs_mod.rot2dOnR2(n) if group == "c4" else gs_mod.flipRot2dOnR2(n)
    else:
        gs = gs_mod.Rot2dOnR2(n) if group == "c4" else gs_mod.FlipRot2dOnR2(n)
    rin = gs.trivial_repr if kind == "lifting" else gs.regular_repr
    tin = nn_mod.FieldType(gs, c * [rin])
    tout = nn_mod.FieldType(gs, c * [gs.regular_repr])

    def build():
        return nn_mod.R2Conv(tin, tout, k, padding=k // 2)

    def wrap(conv):
        return lambda x: conv(nn_mod.GeometricTensor(x, tin)).tensor
    return build, wrap


def _input(kind: str, group: str, c: int, b: int, size: int, peer: bool):
    n = _ORDER[group]
    if kind == "lifting":
        return torch.randn(b, c, size, size)
    x = torch.randn(b, c, n, size, size)
    return x.flatten(1, 2) if peer else x


def cases(quick: bool) -> list[BenchCase]:
    """Train (b16) and inference (b1) rows for ours, the floor, and importable peers; then the
    transposed rows (:func:`transposed_cases`)."""
    sizes, ks = ((32,), (3,)) if quick else ((32, 64), (3, 5))
    c = 16
    peers = [p for p in ("escnn", "e2cnn") if importlib.util.find_spec(p) is not None]
    out: list[BenchCase] = []
    for kind in ("lifting", "group"):
        for group in ("c4", "d4"):
            for k in ks:
                for size in sizes:
                    for mode, b in (("train", 16), ("infer", 1)):
                        tag = f"{kind} {group} k{k} {size}x{size} {mode} b{b} c{c}"
                        params = dict(kind=kind, group=group, k=k, size=size, mode=mode,
                                      batch=b, fields=c)
                        floor_name = f"floor {tag}"

                        def mk(builder, peer=False, kind=kind, group=group, b=b, size=size,
                               mode=mode):
                            def make():
                                m = builder()
                                x = _input(kind, group, c, b, size, peer)
                                return (m.train() if mode == "train" else infer(m)), x
                            return make
                        floor_make = mk(_floor(kind, group, c, k), True)
                        out.append(BenchCase(floor_name, FAMILY, floor_make,
                                             backward=mode == "train",
                                             construct=_floor(kind, group, c, k),
                                             params=params))
                        out.append(BenchCase(f"ours {tag}", FAMILY, mk(_ours(kind, group, c, k)),
                                             floor=floor_name, backward=mode == "train",
                                             construct=_ours(kind, group, c, k), params=params))
                        if mode == "infer":  # the deployment path: equilayers.export()
                            out.append(BenchCase(
                                f"ours exported {tag}", FAMILY,
                                mk(_exported(_ours(kind, group, c, k))), floor=floor_name,
                                backward=False, params=params))
                        for lib in peers:
                            build, wrap = _peer(lib, kind, group, c, k)

                            def make_peer(build=build, wrap=wrap, kind=kind, group=group, b=b,
                                          size=size, mode=mode):
                                m = build()
                                x = _input(kind, group, c, b, size, True)
                                if mode == "train":
                                    return wrap(m.train()), x
                                m.eval()
                                f = wrap(m)

                                def fn(x):
                                    with torch.no_grad():
                                        return f(x)
                                return fn, x
                            out.append(BenchCase(f"{lib} {tag}", FAMILY, make_peer,
                                                 floor=floor_name, peer=lib,
                                                 backward=mode == "train", construct=build,
                                                 params=params))
    return out + transposed_cases(quick)


def _ours_transposed(kind: str, group: str, c: int, k: int):
    from equilayers.nn import GroupConvTranspose2d, LiftingConvTranspose2d
    cls = LiftingConvTranspose2d if kind == "lifting" else GroupConvTranspose2d
    return lambda: cls(c, c, k, stride=2, padding=1, group=group)


def _floor_transposed(kind: str, group: str, c: int, k: int):
    n = _ORDER[group]
    c_in = c if kind == "lifting" else c * n
    return lambda: nn.ConvTranspose2d(c_in, c * n, k, stride=2, padding=1)


def transposed_cases(quick: bool) -> list[BenchCase]:
    """Transposed group convs (stride 2, padding 1: ``k=3`` maps ``n -> 2n-1``, ``k=4``
    doubles) against a dense ``nn.ConvTranspose2d`` with the same expanded channel counts;
    training mode, batch 16, 16 fields, forward and forward+backward."""
    sizes, ks = ((16,), (4,)) if quick else ((16, 32), (3, 4))
    c, b = 16, 16
    out: list[BenchCase] = []
    for kind in ("lifting", "group"):
        for group in ("c4", "d4"):
            for k in ks:
                for size in sizes:
                    tag = f"transposed {kind} {group} k{k} s2 {size}x{size} train b{b} c{c}"
                    params = dict(kind=f"transposed-{kind}", group=group, k=k, size=size,
                                  mode="train", batch=b, fields=c)

                    def mk(builder, peer=False, kind=kind, group=group, size=size):
                        def make():
                            return builder().train(), _input(kind, group, c, b, size, peer)
                        return make
                    floor_name = f"floor {tag}"
                    out.append(BenchCase(floor_name, FAMILY,
                                         mk(_floor_transposed(kind, group, c, k), True),
                                         backward=True,
                                         construct=_floor_transposed(kind, group, c, k),
                                         params=params))
                    out.append(BenchCase(f"ours {tag}", FAMILY,
                                         mk(_ours_transposed(kind, group, c, k)),
                                         floor=floor_name, backward=True,
                                         construct=_ours_transposed(kind, group, c, k),
                                         params=params))
    return out


def _interleaved_min(fns: list, reps: int) -> list[float]:
    """Min wall time per closure, the closures run round-robin: on a shared, loaded machine the
    minimum over interleaved runs is the most stable estimate and keeps ratios fair."""
    for f in fns:
        f()
    best = [float("inf")] * len(fns)
    for _ in range(reps):
        for i, f in enumerate(fns):
            t = time.perf_counter()
            f()
            best[i] = min(best[i], time.perf_counter() - t)
    return best


def _build_time(construct, n: int = 20) -> float:
    construct()
    t = time.perf_counter()
    for _ in range(n):
        construct()
    return (time.perf_counter() - t) / n


def main(argv: list[str]) -> None:
    quick = "--quick" in argv
    reps = 5 if quick else 8
    all_cases = cases(quick)
    floors = [c for c in all_cases if c.floor is None]
    for floor in floors:
        group = [floor] + [c for c in all_cases if c.floor == floor.name]
        made = [c.make() for c in group]
        fwd = _interleaved_min([(lambda f=f, x=x: f(x)) for f, x in made], reps)
        fb = (_interleaved_min([forward_backward(f, x) for f, x in made], reps)
              if floor.backward else [None] * len(group))
        for i, case in enumerate(group):
            cons = _build_time(case.construct) if case.construct is not None else None
            rf = f"{fwd[i] / fwd[0]:.2f}x" if i else ""
            rb = f"{fb[i] / fb[0]:.2f}x" if i and fb[i] is not None else ""
            row = (case.name, f"{fwd[i] * 1e3:.2f}", rf,
                   f"{fb[i] * 1e3:.2f}" if fb[i] is not None else "-", rb,
                   f"{cons * 1e3:.2f}" if cons is not None else "-")
            print(" | ".join(f"{v:<46}" if j == 0 else f"{v:>8}" for j, v in enumerate(row)),
                  flush=True)


if __name__ == "__main__":
    torch.manual_seed(0)
    if "--threads" in sys.argv:
        torch.set_num_threads(int(sys.argv[sys.argv.index("--threads") + 1]))
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(" | ".join(["case".ljust(46), "fwd ms", "vs floor", "f+b ms", "vs floor",
                      "build ms"]))
    main(sys.argv[1:])
