"""Planar groups on voxels, turning every depth slice about the depth axis: the lifting and
harmonic -> harmonic ``SteerableConv3d`` of ``"so2"``, ``"o2"``, ``"c8"``, ``"d8"`` (both
bases: escnn's shells, the default, and ``basis="slices"``) over their
grid elements (quarter turns and flips of ``(H, W)``, the depth never moved), a small stack, and
negative controls (a plain ``nn.Conv3d`` read as harmonic fields; a basis whose order-1 output
turns the wrong way)."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..groups import FieldType
from ..nn import (
    FourierNonlinearity,
    GatedNonlinearity,
    HarmonicBatchNorm,
    NormMaxPool,
    NormNonlinearity,
    NormPool,
    SteerableConv3d,
)
from ._case import Case
from ._cases_gconv import _seeded


def _conv(g, c_in=2, k=3, **kw):
    kw.setdefault("padding", 1)
    return _seeded(lambda: SteerableConv3d(c_in, 2, k, group=g, **kw))


class _MirroredSlot(SteerableConv3d):
    """A negative control: the last basis element (into order 1 of a lifting conv) has its
    ``s_1`` output row negated, so its order-1 output turns by ``-t`` when the input turns by
    ``t`` (a reflection of the fiber, not a rotation)."""

    def _fill_derived(self, device: torch.device) -> None:
        super()._fill_derived(device)
        if self.filter_basis.numel():
            with torch.no_grad():
                taps = self.kernel_size[0] ** (3 if self.basis == "shells" else 2)
                self.filter_basis.view(-1, self.fiber_out, self.fiber_in, taps)[-1, 2].neg_()


class _AsFields(nn.Sequential):
    """A plain ``nn.Conv3d`` whose output channels are read as SO(2) fields of orders 0, 1."""

    in_type = FieldType.trivial("so2", spatial_dims=3)
    out_type = FieldType.harmonic("so2", 1, spatial_dims=3)

    def __init__(self) -> None:
        super().__init__(nn.Conv3d(2, 2 * 3, 3, padding=1), nn.Unflatten(1, (2, 3)))


def _cases_for(g: str) -> list[Case]:
    vol, f2 = (2, 2, 4, 7, 9), (2, 2, 5, 3, 7, 7)
    p = f"axial/{g}"
    grid: Literal["grid"] | None = "grid" if g[0] in "cd" else None
    return [
        Case(f"{p}/slices-lifting-M2", _conv(g, max_order=2, basis="slices"), vol, g,
             elements=grid),
        Case(f"{p}/slices-harmonic-M2-M1-k5", _conv(g, in_max_order=2, max_order=1, k=5,
                                                   padding=2, basis="slices"), f2, g,
             elements=grid),
        Case(f"{p}/lifting-M2-k155", _conv(g, max_order=2, k=(1, 5, 5), padding=(0, 2, 2)),
             vol, g, elements=grid),
        Case(f"{p}/slices-harmonic-M2-M2-k255-stride2",
             _conv(g, in_max_order=2, max_order=2, k=(2, 5, 5), padding=(0, 2, 2),
                   stride=2, basis="slices"), (2, 2, 5, 4, 9, 9), g, elements=grid),
        Case(f"{p}/lifting-M2", _conv(g, max_order=2), vol, g, elements=grid),
        Case(f"{p}/lifting-M1-k5-stride2", _conv(g, max_order=1, k=5, padding=2, stride=2),
             (2, 2, 4, 9, 9), g, elements=grid),
        Case(f"{p}/harmonic-M2-M3", _conv(g, in_max_order=2, max_order=3), f2, g,
             elements=grid),
        Case(f"{p}/harmonic-M2-M1-circular", _conv(g, in_max_order=2, max_order=1,
                                                   padding_mode="circular"), f2, g,
             elements=grid),
    ]


class _CoefficientELU(nn.Module):
    """A negative control: ELU on the harmonic coefficients of planar volume fields."""

    in_type = out_type = FieldType.harmonic("so2", 2, spatial_dims=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.elu(x)


def _pointwise(g: str) -> list[Case]:
    """The harmonic layers on volumes of planar fields (``spatial_dims=3``)."""
    f2, p = (2, 2, 5, 3, 5, 5), f"axial/{g}"
    grid: Literal["grid"] | None = "grid" if g[0] in "cd" else None

    def bn():
        mod = HarmonicBatchNorm(2, 2, group=g, spatial_dims=3).train()
        with torch.no_grad():
            mod.weight.uniform_(0.5, 1.5)
        return mod
    return [
        Case(f"{p}/norm-relu", _seeded(lambda: NormNonlinearity(2, 2, group=g,
                                                                spatial_dims=3)), f2, g,
             elements=grid),
        Case(f"{p}/gated-first-half", lambda: GatedNonlinearity(2, gates="first_half",
                                                                group=g, spatial_dims=3),
             (2, 4, 5, 3, 5, 5), g, elements=grid),
        Case(f"{p}/batch-norm-train", _seeded(bn), f2, g, elements=grid),
        Case(f"{p}/fourier-elu", lambda: FourierNonlinearity(g, 2, spatial_dims=3), f2, g,
             elements=grid),
        Case(f"{p}/norm-pool", lambda: NormPool(2, group=g, spatial_dims=3), f2, g,
             elements=grid),
        Case(f"{p}/norm-max-pool", lambda: NormMaxPool(2, group=g, spatial_dims=3),
             (2, 3, 5, 4, 6, 6), g, elements=grid),
    ]


def _model():
    """An SO(2)-about-depth CNN: lifting, batch norm, norm-ReLU, conv, gated, Fourier ELU,
    conv to invariants."""
    return _seeded(lambda: nn.Sequential(
        SteerableConv3d(1, 4, 3, padding=1, group="so2", max_order=2),
        HarmonicBatchNorm(4, 2, group="so2", spatial_dims=3),
        NormNonlinearity(4, 2, group="so2", spatial_dims=3),
        SteerableConv3d(4, 6, 5, stride=2, padding=2, group="so2", in_max_order=2,
                        max_order=2),
        GatedNonlinearity(2, gates="first_half", group="so2", spatial_dims=3),
        FourierNonlinearity("so2", 2, spatial_dims=3),
        NormPool(2, group="so2", spatial_dims=3),
    ))


def _stack():
    return _seeded(lambda: nn.Sequential(
        SteerableConv3d(2, 3, 3, padding=1, group="o2", max_order=2),
        SteerableConv3d(3, 2, 5, padding=2, group="o2", in_max_order=2, max_order=1),
        SteerableConv3d(2, 2, 3, stride=2, padding=1, group="o2", in_max_order=1,
                        max_order=0),
    ))


CASES = [c for g in ("so2", "o2", "c8", "d8") for c in _cases_for(g)] + [
    c for g in ("so2", "o2", "d8") for c in _pointwise(g)] + [
    Case("axial/o2/stack-stride", _stack(), (2, 2, 6, 7, 7), "o2"),
    Case("axial/so2/model", _model(), (2, 1, 6, 9, 9), "so2"),
    # Negative controls: each must fail the harness.
    Case("axial/so2/plain-conv3d-fails", _seeded(_AsFields), (2, 2, 4, 5, 5), "so2",
         expect="fail"),
    Case("axial/so2/coefficient-elu-fails", _CoefficientELU, (2, 2, 5, 3, 5, 5), "so2",
         expect="fail"),
    Case("axial/so2/mirrored-slot-fails", _seeded(lambda: _MirroredSlot(
        2, 2, 3, padding=1, group="so2", max_order=1)), (2, 2, 4, 5, 5), "so2",
         expect="fail"),
    Case("axial/so2/mirrored-slot-slices-fails", _seeded(lambda: _MirroredSlot(
        2, 2, 3, padding=1, group="so2", max_order=1, basis="slices")), (2, 2, 4, 5, 5),
         "so2", expect="fail"),
]
