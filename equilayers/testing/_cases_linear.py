"""Equivariant MLPs on fibers alone ``(B, C, F)``: ``GroupLinear`` for every kind of field and
``OnFibers`` around the harmonic nonlinearities, batch norms and pools, with negative controls.

A fiber has no pixels, so every element acts exactly, off the grid too: the SO(2)/O(2) rows
test arbitrary angles at the exact tolerance (the SO(3) rows the cube's 24 rotations here;
``tests/test_linear.py`` adds random rotations).
"""

from __future__ import annotations

import torch
from torch import nn

from .. import nn as enn
from ._case import Case, seeded

_ANGLES = (0.0, 17.0, 33.3, 90.0, 137.0, 201.5)


def _linear(c_in, c_out, group, **kw):
    return seeded(lambda: enn.GroupLinear(c_in, c_out, group=group, dtype=torch.float64, **kw))


def _mlp_regular(group: str):
    """Linear -> BatchNorm1d (per field, over batch and slots) -> ReLU -> Linear -> max pool."""
    def build() -> nn.Module:
        return nn.Sequential(
            enn.GroupLinear(2, 6, group=group), nn.BatchNorm1d(6), nn.ReLU(),
            enn.GroupLinear(6, 3, group=group), enn.OnFibers(enn.GroupPool("max"))).double()
    return seeded(build)


def _mlp_so3(nonlinearity: str):
    """Orders 0..2 in and inside (a linear map reaches an order only from the same order),
    orders 0..1 out; SO(3)'s batch norm and a norm or gated nonlinearity on the fibers."""
    def build() -> nn.Module:
        act = (enn.NormNonlinearity(6, 2, group="so3") if nonlinearity == "norm"
               else enn.GatedNonlinearity(2, group="so3"))
        return nn.Sequential(
            enn.GroupLinear(2, 6, group="so3", max_order=2),
            enn.OnFibers(enn.HarmonicBatchNorm(6, 2, group="so3")), enn.OnFibers(act),
            enn.GroupLinear(6, 3, group="so3", max_order=1, in_max_order=2)).double()
    return seeded(build)


def _mlp_so2():
    def build() -> nn.Module:
        return nn.Sequential(
            enn.GroupLinear(2, 6, group="so2", max_order=3),
            enn.OnFibers(enn.NormNonlinearity(6, 3)), enn.GroupLinear(6, 4, group="so2",
                                                                      max_order=3),
            enn.OnFibers(enn.GatedNonlinearity(3)), enn.OnFibers(enn.NormPool())).double()
    return seeded(build)


class _Dense(nn.Module):
    """Negative control: an unconstrained ``nn.Linear`` on the flattened fibers, declaring the
    types of the ``GroupLinear`` it stands in for."""

    def __init__(self, like: enn.GroupLinear) -> None:
        super().__init__()
        self.in_type, self.out_type = like.in_type, like.out_type
        assert like.in_type is not None and like.out_type is not None  # GroupLinear's are set
        f_in, f_out = like.in_type.fiber_size, like.out_type.fiber_size
        assert f_in is not None and f_out is not None  # and sized
        self.shape = (like.out_features, f_out)
        self.linear = nn.Linear(like.in_features * f_in, like.out_features * f_out,
                                dtype=torch.float64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1)).unflatten(1, self.shape)


def _dense(c_in, c_out, group, **kw):
    return seeded(lambda: _Dense(enn.GroupLinear(c_in, c_out, group=group, **kw)))


def _slotwise_relu_mlp():
    """Negative control: a ReLU on every slot of SO(2) harmonic fibers (fine for regular
    fields, not for rotating coefficients)."""
    def build() -> nn.Module:
        return nn.Sequential(enn.GroupLinear(2, 6, group="so2", max_order=2), nn.ReLU(),
                             enn.GroupLinear(6, 3, group="so2", max_order=2)).double()
    return seeded(build)


CASES = [
    Case("linear/p4m/regular", _linear(3, 4, "p4m"), (4, 3, 8), "p4m"),
    Case("linear/c8/regular", _linear(3, 4, "c8"), (4, 3, 8), "c8"),
    Case("linear/d6/regular-no-bias", _linear(3, 4, "d6", bias=False), (4, 3, 12), "d6"),
    Case("linear/o/regular", _linear(2, 3, "o"), (4, 2, 24), "o"),
    Case("linear/oh/regular", _linear(2, 3, "oh"), (4, 2, 48), "oh"),
    Case("linear/ico/regular", _linear(2, 3, "ico"), (4, 2, 60), "ico"),
    Case("linear/d4z/regular", _linear(2, 3, "d4z"), (4, 2, 8), "d4z"),
    Case("linear/so2/harmonic-M3", _linear(3, 4, "so2", max_order=3), (4, 3, 7), "so2",
         elements=_ANGLES),
    Case("linear/so2/harmonic-M1-to-M2", _linear(3, 4, "so2", max_order=1, in_max_order=2),
         (4, 3, 5), "so2", elements=_ANGLES),
    Case("linear/o2/harmonic-M2", _linear(3, 4, "o2", max_order=2), (4, 3, 5), "o2",
         elements=_ANGLES),
    Case("linear/c4/harmonic-M3-aliased-orders", _linear(3, 4, "c4", max_order=3), (4, 3, 7),
         "c4"),
    Case("linear/d8/harmonic-M3", _linear(3, 4, "d8", max_order=3), (4, 3, 7), "d8"),
    Case("linear/so3/harmonic-L2", _linear(3, 4, "so3", max_order=2), (4, 3, 9), "so3"),
    Case("linear/o3/harmonic-L2-to-L1", _linear(3, 4, "o3", max_order=1, in_max_order=2),
         (4, 3, 9), "o3"),
    Case("linear/d6/mlp-batchnorm-relu-maxpool", _mlp_regular("d6"), (8, 2, 12), "d6",
         out_rep="invariant"),
    Case("linear/o/mlp-batchnorm-relu-maxpool", _mlp_regular("o"), (8, 2, 24), "o",
         out_rep="invariant"),
    Case("linear/so3/mlp-norm-relu", _mlp_so3("norm"), (8, 2, 9), "so3"),
    Case("linear/so3/mlp-gated", _mlp_so3("gated"), (8, 2, 9), "so3"),
    Case("linear/so2/mlp-norm-gated-normpool", _mlp_so2(), (8, 2, 7), "so2",
         out_rep="invariant", elements=_ANGLES),
    # negative controls
    Case("linear/p4m/dense-linear-fails", _dense(3, 4, "p4m"), (4, 3, 8), "p4m",
         expect="fail"),
    Case("linear/so2/dense-linear-fails", _dense(3, 4, "so2", max_order=2), (4, 3, 5), "so2",
         elements=_ANGLES, expect="fail"),
    Case("linear/so3/dense-linear-fails", _dense(3, 4, "so3", max_order=1), (4, 3, 4), "so3",
         expect="fail"),
    Case("linear/so2/slotwise-relu-mlp-fails", _slotwise_relu_mlp(), (8, 2, 5), "so2",
         elements=_ANGLES, expect="fail"),
]
