"""Transposed steerable convs on voxels (``SteerableConvTranspose3d``): SO(3)/O(3) harmonic
fields over the cube's 24/48 symmetries, and the planar groups about the depth axis over the
quarter turns and flips of every slice; lifting and harmonic inputs, stride 2, the
``output_size`` argument, non-cubic kernels, a small encoder-decoder with a skip; negative
controls (``output_padding`` on a moved dim, a plain ``nn.ConvTranspose3d`` read as fields, a
basis element whose order-1 output row has the wrong sign)."""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from ..groups import FieldType
from ..nn import NormNonlinearity, NormPool, SteerableConv3d, SteerableConvTranspose3d
from ._case import Case
from ._cases_gconv import _seeded


def _up(g, c_in=2, k=3, **kw):
    kw.setdefault("stride", 2)
    kw.setdefault("padding", 1)
    return _seeded(lambda: SteerableConvTranspose3d(c_in, 2, k, group=g, **kw))


class _ToSize(nn.Module):
    """A transposed conv called with ``output_size`` (the size its ``output_padding=0``
    reaches: exact)."""

    def __init__(self, up: SteerableConvTranspose3d) -> None:
        super().__init__()
        self.up = up
        self.in_type, self.out_type = up.in_type, up.out_type

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(x, output_size=[2 * n - 1 for n in x.shape[-3:]])


class _WrongRow(SteerableConvTranspose3d):
    """A negative control: the last basis element of the volume -> order 1 block of a lifting
    conv has its first row negated, so that element is no longer steerable."""

    def _fill_derived(self, device: torch.device) -> None:
        super()._fill_derived(device)
        if self.filter_basis.numel() == 0:
            return
        block = self._basis_block(1, 0)  # (n, 3, 1, k, k, k)
        assert block is not None  # the case's k = 3 basis has 0 -> 1 elements
        with torch.no_grad():
            block[-1, 0].neg_()


class _AsFields(nn.Sequential):
    """A plain ``nn.ConvTranspose3d`` whose output channels are read as SO(3) fields of orders
    0, 1."""

    in_type = FieldType.trivial("so3")
    out_type = FieldType.harmonic("so3", 1)

    def __init__(self) -> None:
        super().__init__(nn.ConvTranspose3d(2, 2 * 4, 3, 2, 1), nn.Unflatten(1, (2, 4)))


class _EncoderDecoder(nn.Module):
    """Lift -> stride-2 steerable conv -> stride-2 transposed steerable conv with a skip ->
    steerable conv -> NormPool: ``n -> (n+1)/2 -> n`` on odd sizes."""

    def __init__(self, g: str) -> None:
        super().__init__()
        kw: dict[str, Any] = {"group": g}
        self.lift = SteerableConv3d(1, 2, 3, padding=1, max_order=1, **kw)
        self.act = NormNonlinearity(2, 1, group=g, spatial_dims=3)
        self.down = SteerableConv3d(2, 2, 3, 2, 1, in_max_order=1, max_order=2, **kw)
        self.up = SteerableConvTranspose3d(2, 2, 3, 2, 1, in_max_order=2, max_order=1, **kw)
        self.head = SteerableConv3d(4, 2, 3, padding=1, in_max_order=1, max_order=1, **kw)
        self.pool = NormPool(1, group=g, spatial_dims=3)
        self.in_type = self.lift.in_type
        self.out_type = self.pool.out_type

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.act(self.lift(x))
        u = self.act(self.up(self.down(a)))
        return self.pool(self.head(torch.cat([a, u], 1)))


def _so3(g: str) -> list[Case]:
    vol, f1, f2 = (2, 2, 4, 4, 4), (2, 2, 4, 3, 3, 3), (2, 2, 9, 4, 4, 4)
    p = f"so3/{g}/transposed"
    return [
        Case(f"{p}-lifting-L1", _up(g, max_order=1), vol, g),
        Case(f"{p}-harmonic-L1-L2", _up(g, in_max_order=1, max_order=2), f1, g),
        Case(f"{p}-harmonic-L2-L1-k5", _up(g, k=5, padding=2, in_max_order=2, max_order=1),
             f2, g),
        Case(f"{p}-harmonic-L1-L1-stride1", _up(g, stride=1, in_max_order=1, max_order=1),
             f1, g),
        # a U-Net's up-conv: 2 x 2 x 2 at stride 2 (shells about the middle point)
        Case(f"{p}-harmonic-L1-L1-k2", _up(g, k=2, padding=0, in_max_order=1, max_order=1),
             f1, g),
        Case(f"{p}-encoder-decoder", _seeded(lambda: _EncoderDecoder(g)), (2, 1, 7, 7, 7), g),
    ]


def _axial(g: str) -> list[Case]:
    vol, f2 = (2, 2, 3, 4, 5), (2, 2, 5, 3, 4, 4)
    p = f"axial/{g}/transposed"
    grid: Literal["grid"] | None = "grid" if g[0] in "cd" else None
    return [
        Case(f"{p}-lifting-M2", _up(g, max_order=2), vol, g, elements=grid),
        Case(f"{p}-harmonic-M2-M1-k155", _up(g, k=(1, 5, 5), padding=(0, 2, 2),
                                             in_max_order=2, max_order=1), f2, g,
             elements=grid),
        Case(f"{p}-slices-harmonic-M2-M2", _up(g, in_max_order=2, max_order=2,
                                               basis="slices"), f2, g, elements=grid),
        Case(f"{p}-harmonic-M2-M2-k2", _up(g, k=2, padding=0, in_max_order=2, max_order=2),
             f2, g, elements=grid),
        Case(f"{p}-slices-harmonic-M2-M1-k4", _up(g, k=4, in_max_order=2, max_order=1,
                                                  basis="slices"), f2, g, elements=grid),
        Case(f"{p}-harmonic-M2-M1-depth-output-padding",
             _up(g, in_max_order=2, max_order=1, output_padding=(1, 0, 0)), f2, g,
             elements=grid),
        Case(f"{p}-output-size", _seeded(lambda: _ToSize(SteerableConvTranspose3d(
            2, 2, 3, 2, 1, group=g, in_max_order=2, max_order=2))), f2, g, elements=grid),
        Case(f"{p}-encoder-decoder", _seeded(lambda: _EncoderDecoder(g)), (2, 1, 5, 7, 7), g,
             elements=grid),
    ]


CASES = [c for g in ("so3", "o3") for c in _so3(g)] + [
    c for g in ("so2", "o2", "d8") for c in _axial(g)] + [
    # Negative controls: each must fail the harness.
    Case("so3/so3/transposed-output-padding-fails",
         _up("so3", in_max_order=1, max_order=1, output_padding=1),
         (2, 2, 4, 3, 3, 3), "so3", expect="fail"),
    Case("axial/so2/transposed-output-padding-fails",
         _up("so2", in_max_order=1, max_order=1, output_padding=(0, 1, 1)),
         (2, 2, 3, 3, 4, 4), "so2", expect="fail"),
    Case("so3/so3/plain-conv-transpose3d-fails", _seeded(_AsFields), (2, 2, 4, 4, 4), "so3",
         expect="fail"),
    Case("so3/so3/transposed-wrong-row-fails", _seeded(lambda: _WrongRow(
        2, 2, 3, 2, 1, max_order=1)), (2, 2, 4, 4, 4), "so3", expect="fail"),
]
