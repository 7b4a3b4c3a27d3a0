"""Pooling over the fiber: the floors of group pooling and norm pooling, and their alternatives.

Group pooling (invariant over a regular fiber) is at best ``x.amax(2)`` on the 5-D map
``(B, C, F, H, W)``; norm pooling (the norm of each harmonic field) at best
``(v * v).sum(2).sqrt()``. The other rows are formulations a layer might use instead.
"""

from __future__ import annotations

import torch

from ._core import BenchCase

FAMILY = "pool"


def _sizes(quick: bool) -> list[tuple[int, int, int, int]]:
    """(batch, fields, fiber, size) per case."""
    if quick:
        return [(2, 4, 8, 16)]
    return [(16, 16, 8, 32), (16, 16, 8, 64)]


def _input(b: int, c: int, f: int, n: int, device=None) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(b, c, f, n, n, generator=g).to(device)


def cases(quick: bool) -> list[BenchCase]:
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
        ]
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
    return out
