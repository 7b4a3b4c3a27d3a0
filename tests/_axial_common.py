"""Shared by the tests of planar groups on volumes (``tests/test_axial3d.py``,
``tests/test_escnn_axial.py``): a smooth masked volume, our 3-conv SteerableConv3d stack, and
the off-grid error of a stack when every depth slice turns, measured inside a cylinder."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from equilayers.groups import FieldType, get
from equilayers.nn import SteerableConv3d

N = 35  # the volume's height and width; depth 9


def _radius() -> torch.Tensor:
    """``(N, N)``: each pixel's distance from the slice's centre."""
    yy, xx = torch.meshgrid(torch.arange(N) - N // 2.0, torch.arange(N) - N // 2.0,
                            indexing="ij")
    return (yy ** 2 + xx ** 2).sqrt()


def smooth_volume(generator: torch.Generator, sigma: float = 2.0) -> torch.Tensor:
    """``(1, 1, 9, N, N)`` float64: noise blurred by a Gaussian of ``sigma`` voxels (zero
    padding), zero outside the cylinder of radius 12."""
    x = torch.randn(1, 1, 9, N, N, dtype=torch.float64, generator=generator)
    r = int(3 * sigma)
    t = torch.arange(-r, r + 1, dtype=x.dtype)
    g = torch.exp(-t ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    for dim in (2, 3, 4):
        size = [1, 1, 1]
        size[dim - 2] = len(g)
        x = F.conv3d(x, g.view(1, 1, *size), padding=[r if d == dim else 0 for d in (2, 3, 4)])
    return x * (_radius() <= 12)


def steerable_stack(group: str, k: int, order: int) -> nn.Module:
    """Three ``SteerableConv3d`` (default basis) from one volume channel to 2 fields of
    orders ``0..order``, float64."""
    return nn.Sequential(
        SteerableConv3d(1, 4, k, padding=k // 2, group=group, max_order=order),
        SteerableConv3d(4, 4, k, padding=k // 2, group=group, in_max_order=order,
                        max_order=order),
        SteerableConv3d(4, 2, k, padding=k // 2, group=group, in_max_order=order,
                        max_order=order)).double()


def off_grid_error(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, group: str,
                   order: int, degrees: Sequence[float]) -> tuple[float, float]:
    """``(error, floor)``: the worst relative error of ``f`` over turns of every depth slice
    by ``degrees``, and of its output turned forth and back (two interpolations), inside the
    cylinder of radius 10."""
    inner = _radius() <= 10
    fields = FieldType.harmonic(group, order, spatial_dims=3)
    volume = FieldType.trivial(group, spatial_dims=3)
    grp, worst, floor = get(group), 0.0, 0.0
    with torch.no_grad():
        y = f(x)
        for deg in degrees:
            g = grp.element(math.radians(deg))
            turned = fields.act(g, y)
            diff = f(volume.act(g, x)) - turned
            back = fields.act(g.inverse(), turned) - y
            worst = max(worst, (diff[..., inner].norm() / turned[..., inner].norm()).item())
            floor = max(floor, (back[..., inner].norm() / y[..., inner].norm()).item())
    return worst, floor
