"""Pooling over the fiber: our GroupPool and NormPool against their floors and escnn's.

Group pooling (invariant over a regular fiber) is at best ``x.amax(2)`` on the 5-D map
``(B, C, F, H, W)``; norm pooling at best ``(v * v)`` summed per rotation order, then ``sqrt``
(NormPool's output: one magnitude per order), or ``(v * v).sum(2).sqrt()`` for one norm per
field. The other rows are formulations a layer might use instead, and escnn's and e2cnn's
``GroupPooling`` (C8 regular fields) and ``NormPool`` (fields of orders 0, 1, 2) on the same
tensors when they are installed (their ``GeometricTensor`` wrapping is timed with them).
"""

from __future__ import annotations

import importlib.util

import torch

from ._core import BenchCase, per_order_norms

FAMILY = "pool"
#: peer libraries whose rows this family has only where they are installed (the runner
#: names each one missing)
OPTIONAL_PEERS = ("escnn", "e2cnn")


def _sizes(quick: bool) -> list[tuple[int, int, int, int]]:
    """(batch, fields, fiber, size) per case."""
    if quick:
        return [(2, 4, 8, 16)]
    return [(16, 16, 8, 32), (16, 16, 8, 64)]


def _input(b: int, c: int, f: int, n: int, device=None) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(b, c, f, n, n, generator=g).to(device)


def _peer(lib: str, kind: str, c: int, f: int):
    """escnn's or e2cnn's GroupPooling (C_f regular fields) or NormPool (orders 0..(f-1)/2) on
    a 5-D map (the two libraries share this API; e2cnn spells its gspace ``Rot2dOnR2``)."""
    if lib == "escnn":
        from escnn import gspaces
        from escnn import nn as pnn
        rot2d = gspaces.rot2dOnR2
    else:
        from e2cnn import gspaces
        from e2cnn import nn as pnn
        rot2d = gspaces.Rot2dOnR2

    if kind == "group":
        gs = rot2d(f)
        ftype = pnn.FieldType(gs, c * [gs.regular_repr])
        layer = pnn.GroupPooling(ftype)
    else:
        m = (f - 1) // 2
        gs = rot2d(N=-1, maximum_frequency=m)
        ftype = pnn.FieldType(gs, c * [gs.irrep(k) for k in range(m + 1)])
        layer = pnn.NormPool(ftype)
    return lambda x: layer(pnn.GeometricTensor(x.flatten(1, 2), ftype)).tensor


def cases(quick: bool) -> list[BenchCase]:
    from equilayers import nn as enn

    peers = [lib for lib in ("escnn", "e2cnn") if importlib.util.find_spec(lib) is not None]
    out = []
    for b, c, f, n in _sizes(quick):
        tag = f"b{b} c{c} f{f} {n}x{n}"
        params = {"batch": b, "fields": c, "fiber": f, "size": n}

        def make(fn, fiber=f, b=b, c=c, n=n):
            return lambda device=None: (fn, _input(b, c, fiber, n, device))

        group_floor = f"amax fiber {tag}"
        out += [
            BenchCase(group_floor, FAMILY, make(lambda x: x.amax(2)), params=params),
            BenchCase(f"max(2).values {tag}", FAMILY, make(lambda x: x.max(2).values),
                      floor=group_floor, params=params),
            BenchCase(f"max_pool3d over fiber {tag}", FAMILY,
                      make(lambda x: torch.nn.functional.max_pool3d(
                          x, (x.shape[2], 1, 1)).squeeze(2)),
                      floor=group_floor, params=params),
            BenchCase(f"GroupPool {tag}", FAMILY, make(enn.GroupPool()), floor=group_floor,
                      params=params),
        ]
        out += [BenchCase(f"{lib} GroupPooling c{f} {tag}", FAMILY,
                          make(_peer(lib, "group", c, f)), floor=group_floor, peer=lib,
                          params=params) for lib in peers]
        # Norm pooling over harmonic fields: fiber 2M+1 = 5.
        norm_floor = f"(v*v).sum(2).sqrt() {tag.replace(f'f{f}', 'f5')}"
        out += [
            BenchCase(norm_floor, FAMILY, make(lambda v: (v * v).sum(2).sqrt(), fiber=5),
                      params={**params, "fiber": 5}),
            BenchCase(f"linalg.vector_norm {tag.replace(f'f{f}', 'f5')}", FAMILY,
                      make(lambda v: torch.linalg.vector_norm(v, dim=2), fiber=5),
                      floor=norm_floor, params={**params, "fiber": 5}),
            BenchCase(f"einsum sqrt {tag.replace(f'f{f}', 'f5')}", FAMILY,
                      make(lambda v: torch.einsum("bcfhw,bcfhw->bchw", v, v).sqrt(),
                           fiber=5),
                      floor=norm_floor, params={**params, "fiber": 5}),
        ]
        # NormPool (one magnitude per order 0, 1, 2) against the same output's floor.
        tag5 = tag.replace(f"f{f}", "f5")
        order_floor = f"per-order (v*v) sum sqrt {tag5}"
        out += [
            BenchCase(order_floor, FAMILY, make(per_order_norms, fiber=5),
                      params={**params, "fiber": 5}),
            BenchCase(f"NormPool M2 {tag5}", FAMILY, make(enn.NormPool(2), fiber=5),
                      floor=order_floor, params={**params, "fiber": 5}),
        ]
        out += [BenchCase(f"{lib} NormPool M2 {tag5}", FAMILY,
                          make(_peer(lib, "norm", c, 5), fiber=5), floor=order_floor, peer=lib,
                          params={**params, "fiber": 5}) for lib in peers]
    return out
