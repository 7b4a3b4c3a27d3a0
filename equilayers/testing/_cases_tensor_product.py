"""The tensor-product nonlinearity of harmonic fields: every group with harmonic fields, on
images, volumes and fibers alone, in conv and MLP stacks, with negative controls.

On images and volumes the rows test the grid elements (the map is exact for every element,
but rotating pixels off the grid interpolates); on fibers alone (``OnFibers``) the SO(2)/O(2)
rows test arbitrary angles at the exact tolerance.
"""

from __future__ import annotations

import torch
from torch import nn

from .. import nn as enn
from ..groups import FieldType
from ._case import Case, seeded

_ANGLES = (0.0, 17.0, 33.3, 90.0, 137.0, 201.5)


def _tp(c, group, max_order, out_max_order=None, **kw):
    return seeded(lambda: enn.TensorProductNonlinearity(c, group, max_order, out_max_order,
                                                        dtype=torch.float64, **kw))


def _on_fibers(c, group, max_order, out_max_order=None):
    return seeded(lambda: enn.OnFibers(enn.TensorProductNonlinearity(
        c, group, max_order, out_max_order, dtype=torch.float64)))


def _so3_stack():
    """Steerable conv -> tensor product (orders 0..2 -> 0..1) -> steerable conv: a volume."""
    def build() -> nn.Module:
        return nn.Sequential(
            enn.SteerableConv3d(2, 3, 3, padding=1, group="so3", in_max_order=1, max_order=2),
            enn.TensorProductNonlinearity(3, "so3", 2, 1),
            enn.SteerableConv3d(3, 2, 3, padding=1, group="so3", in_max_order=1, max_order=1),
        ).double()
    return seeded(build)


def _so2_stack():
    """Harmonic conv -> tensor product -> batch norm -> harmonic conv -> norm pool: an
    image in, invariants out."""
    def build() -> nn.Module:
        return nn.Sequential(
            enn.LiftingConv2d(1, 3, 5, padding=2, group="so2", max_order=2),
            enn.TensorProductNonlinearity(3, "so2", 2),
            enn.HarmonicBatchNorm(3, 2),
            enn.GroupConv2d(3, 2, 5, padding=2, group="so2", max_order=2),
            enn.NormPool(2)).double()
    return seeded(build)


def _so3_mlp():
    def build() -> nn.Module:
        return nn.Sequential(
            enn.GroupLinear(2, 4, group="so3", max_order=1),
            enn.OnFibers(enn.TensorProductNonlinearity(4, "so3", 1, 2)),
            enn.GroupLinear(4, 3, group="so3", max_order=1, in_max_order=2)).double()
    return seeded(build)


class _SlotSquare(nn.Module):
    """Negative control: every slot squared alone (a pointwise square is fine for regular
    fields, not for rotating coefficients)."""

    def __init__(self, group: str, max_order: int, spatial_dims: int | None = None) -> None:
        super().__init__()
        self.in_type = self.out_type = FieldType.harmonic(group, max_order,
                                                          spatial_dims=spatial_dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * x


class _Declared(nn.Module):
    """Negative control: a module run on fields of another group than it was built for (an
    SO(2) basis, which has maps that a flip reverses, on O(2) fields)."""

    def __init__(self, module: nn.Module, group: str, max_order: int) -> None:
        super().__init__()
        self.module = module
        self.in_type = self.out_type = FieldType.harmonic(group, max_order)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)


class _FullSquare(nn.Module):
    """Negative control: a random map of the whole square ``x x^T`` (every product to every
    output slot), declared as SO(3) fields."""

    in_type = out_type = FieldType.harmonic("so3", 1)

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(4, 4, 4, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("oij,bci...,bcj...->bco...", self.weight, x, x)


CASES = [
    Case("tensor-product/so2/M2", _tp(3, "so2", 2), (2, 3, 5, 5, 5), "so2"),
    Case("tensor-product/o2/M2-to-M3", _tp(3, "o2", 2, 3), (2, 3, 5, 5, 5), "o2"),
    Case("tensor-product/c8/M3", _tp(2, "c8", 3), (2, 2, 7, 5, 5), "c8", elements="grid"),
    Case("tensor-product/c4/M3-aliased-orders", _tp(2, "c4", 3), (2, 2, 7, 5, 5), "c4"),
    Case("tensor-product/d4/M2-to-M1", _tp(3, "d4", 2, 1), (2, 3, 5, 5, 5), "d4"),
    Case("tensor-product/d6/M2", _tp(2, "d6", 2), (2, 2, 5, 5, 5), "d6", elements="grid"),
    Case("tensor-product/so2/volume-M1", _tp(2, "so2", 1, spatial_dims=3),
         (2, 2, 3, 3, 4, 4), "so2"),
    Case("tensor-product/so3/L2", _tp(3, "so3", 2), (2, 3, 9, 3, 3, 3), "so3"),
    Case("tensor-product/o3/L2-to-L1", _tp(2, "o3", 2, 1), (2, 2, 9, 3, 3, 3), "o3"),
    Case("tensor-product/so3/L1-to-L2", _tp(2, "so3", 1, 2), (2, 2, 4, 3, 3, 3), "so3"),
    Case("tensor-product/so2/fibers-M3", _on_fibers(3, "so2", 3), (4, 3, 7), "so2",
         elements=_ANGLES),
    Case("tensor-product/o2/fibers-M2", _on_fibers(3, "o2", 2), (4, 3, 5), "o2",
         elements=_ANGLES),
    Case("tensor-product/o3/fibers-L2", _on_fibers(2, "o3", 2), (4, 2, 9), "o3"),
    Case("tensor-product/so3/steerable-conv-stack", _so3_stack(), (2, 2, 4, 5, 5, 5), "so3"),
    Case("tensor-product/so2/harmonic-conv-stack", _so2_stack(), (2, 1, 9, 9), "so2",
         in_rep="trivial", out_rep="trivial"),
    Case("tensor-product/so3/mlp", _so3_mlp(), (4, 2, 4), "so3"),
    # negative controls
    Case("tensor-product/so2/slot-square-fails", lambda: _SlotSquare("so2", 2),
         (2, 3, 5, 5, 5), "so2", expect="fail"),
    Case("tensor-product/so3/slot-square-fails", lambda: _SlotSquare("so3", 1),
         (2, 3, 4, 3, 3, 3), "so3", expect="fail"),
    Case("tensor-product/o2/so2-basis-on-o2-fields-fails", seeded(lambda: _Declared(
        enn.TensorProductNonlinearity(3, "so2", 2, dtype=torch.float64), "o2", 2)),
         (2, 3, 5, 5, 5), "o2", expect="fail"),
    Case("tensor-product/so3/full-square-map-fails", seeded(_FullSquare), (2, 2, 4, 3, 3, 3),
         "so3", expect="fail"),
]
