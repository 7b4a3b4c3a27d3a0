"""Steerable SO(3)/O(3) convs on voxels: lifting and harmonic -> harmonic ``SteerableConv3d``
x group x option over the cube's 24 (48) symmetries composed with the Wigner-D action, a small
stack, the Fourier nonlinearity on the sphere, escnn's norm-ReLU, the max pool by field norm,
and negative controls (a plain ``nn.Conv3d`` read as harmonic fields, a basis with one
Clebsch-Gordan slice of the wrong sign, ELU on the harmonic coefficients themselves, a max pool
of every slot)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..functional._fourier3d import sphere_fourier_matrices
from ..groups import FieldType, spherical_harmonics
from ..interop import EscnnSphereFourier
from ..nn import (
    FourierNonlinearity,
    GroupMaxPool3d,
    NormMaxPool,
    NormNonlinearity,
    SteerableConv3d,
)
from ._case import Case
from ._cases_gconv import _seeded


def _conv(g, c_in=2, k=3, **kw):
    kw.setdefault("padding", 1)
    return _seeded(lambda: SteerableConv3d(c_in, 2, k, group=g, **kw))


class _WrongSignSteerableConv3d(SteerableConv3d):
    """A negative control: the basis of one order-1 -> order-1 coupling through the order-2
    harmonics has one output row of the wrong sign (no longer an intertwiner)."""

    def _fill_derived(self, device: torch.device) -> None:
        super()._fill_derived(device)
        if self.filter_basis.numel() == 0:
            return
        block = self._basis_block(1, 1)  # (n, 3, 3, k, k, k)
        assert block is not None  # the case's k = 3 basis has 1 -> 1 elements
        with torch.no_grad():  # the last 1 -> 1 element: the outer shell's order-2 coupling
            block[-1, 0].neg_()  # its first order-1 row: slot 1 of the output


class _CoefficientELU(nn.Module):
    """A negative control: ELU on the harmonic coefficients (no sampling on the sphere)."""

    in_type = out_type = FieldType.harmonic("so3", 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.elu(x)


class _AsFields(nn.Sequential):
    """A plain ``nn.Conv3d`` whose output channels are read as SO(3) fields of orders 0, 1."""

    in_type = FieldType.trivial("so3")
    out_type = FieldType.harmonic("so3", 1)

    def __init__(self) -> None:
        super().__init__(nn.Conv3d(2, 2 * 4, 3, padding=1), nn.Unflatten(1, (2, 4)))


def _norm_relu_exp(g: str):
    """escnn's norm-ReLU (``bias_form="exp"``) with its log-thresholds moved off their init."""
    def make():
        mod = NormNonlinearity(2, 1, group=g, order0="norm", bias_form="exp",
                               dtype=torch.float64)
        with torch.no_grad():
            mod.log_bias.uniform_(-1, 1)
        return mod
    return _seeded(make)


def _sphere_fourier(g: str, random_points: bool = False) -> EscnnSphereFourier:
    """``from_escnn``'s Fourier ELU on the sphere, holding our cube-symmetric quadrature's
    matrices (exact on the cube's rotations), or, as a negative control, 40 random sphere
    points and their pseudo-inverse (approximate, as escnn's own grids are)."""
    if not random_points:
        a, a_inv = sphere_fourier_matrices(2)  # float64
        return EscnnSphereFourier(a, a_inv, group=g)
    gen = torch.Generator().manual_seed(0)
    pts = torch.randn(40, 3, generator=gen, dtype=torch.float64)
    pts = pts / pts.norm(dim=1, keepdim=True)
    a = spherical_harmonics(2, pts)
    return EscnnSphereFourier(a, torch.linalg.pinv(a), group=g)


def _cases_for(g: str) -> list[Case]:
    vol, f1, f2 = (2, 2, 5, 5, 5), (2, 2, 4, 5, 5, 5), (2, 2, 9, 7, 7, 7)
    p = f"so3/{g}"
    return [
        Case(f"{p}/lifting-L1", _conv(g, max_order=1), vol, g),
        Case(f"{p}/lifting-L2-k5", _conv(g, max_order=2, k=5, padding=2), (2, 2, 7, 7, 7), g),
        # even kernels turn about the point between the eight middle voxels (k4 p2: n -> n+1)
        Case(f"{p}/lifting-L1-k4", _conv(g, max_order=1, k=4, padding=2), vol, g),
        Case(f"{p}/harmonic-L1-L1-k2", _conv(g, in_max_order=1, max_order=1, k=2, padding=0),
             f1, g),
        Case(f"{p}/harmonic-L1-L1", _conv(g, in_max_order=1, max_order=1), f1, g),
        Case(f"{p}/harmonic-L2-L1-stride2", _conv(g, in_max_order=2, max_order=1, stride=2),
             f2, g),
        Case(f"{p}/harmonic-L1-L2-circular", _conv(g, in_max_order=1, max_order=2,
                                                   padding_mode="circular"), f1, g),
        Case(f"{p}/fourier-elu-L2", lambda: FourierNonlinearity(g, 2), (2, 2, 9, 3, 3, 3), g),
        Case(f"{p}/fourier-tanh-L1-170", lambda: FourierNonlinearity(g, 1, torch.tanh, 170),
             (2, 2, 4, 3, 3, 3), g),
        Case(f"{p}/norm-relu-exp-L1", _norm_relu_exp(g), (2, 2, 4, 3, 3, 3), g),
        Case(f"{p}/escnn-sphere-fourier-quadrature-L2", lambda: _sphere_fourier(g),
             (2, 2, 9, 3, 3, 3), g),
        Case(f"{p}/norm-max-pool-L2-k2", lambda: NormMaxPool(2, group=g), (2, 3, 9, 4, 4, 4),
             g),
        Case(f"{p}/norm-max-pool-per-order-L1-k3s2p1",
             lambda: NormMaxPool(3, 2, 1, group=g, per="order"), (2, 3, 4, 5, 5, 5), g),
    ]


def _stack():
    return _seeded(lambda: nn.Sequential(
        SteerableConv3d(2, 3, 3, padding=1, max_order=1),
        SteerableConv3d(3, 2, 3, padding=1, in_max_order=1, max_order=2),
        SteerableConv3d(2, 2, 3, stride=2, padding=1, in_max_order=2, max_order=0),
    ))


CASES = [c for g in ("so3", "o3") for c in _cases_for(g)] + [
    Case("so3/so3/stack-stride", _stack(), (2, 2, 7, 7, 7), "so3"),
    # Negative controls: each must fail the harness.
    Case("so3/so3/same-even-kernel-fails", _conv("so3", k=4, padding="same", max_order=1),
         (2, 2, 5, 5, 5), "so3", expect="fail"),
    Case("so3/so3/plain-conv3d-fails", _seeded(_AsFields), (2, 2, 5, 5, 5), "so3",
         expect="fail"),
    Case("so3/so3/coefficient-elu-fails", _CoefficientELU, (2, 2, 9, 3, 3, 3), "so3",
         expect="fail"),
    Case("so3/so3/escnn-sphere-fourier-random-points-fails",
         lambda: _sphere_fourier("so3", random_points=True), (2, 2, 9, 3, 3, 3), "so3",
         expect="fail"),
    Case("so3/so3/slot-max-pool-fails", lambda: GroupMaxPool3d(2), (2, 3, 9, 4, 4, 4), "so3",
         in_rep="harmonic", out_rep="harmonic", expect="fail"),
    Case("so3/so3/wrong-sign-cg-fails", _seeded(lambda: _WrongSignSteerableConv3d(
        2, 2, 3, padding=1, in_max_order=1, max_order=1)), (2, 2, 4, 5, 5, 5), "so3",
         expect="fail"),
]
