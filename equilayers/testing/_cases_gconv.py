"""Group-convolution family cases: lifting/group convs x group x option, group BN, group
pooling, a 5-layer stack, and negative controls."""

from __future__ import annotations

import torch
from torch import nn

from ..functional import _gconv as G
from ..nn import (
    GroupAvgPool2d,
    GroupBatchNorm2d,
    GroupConv2d,
    GroupMaxPool2d,
    GroupPool,
    LiftingConv2d,
)
from ._case import Case, seeded

_GROUPS = ("c1", "c2", "c4", "d1", "d2", "d4")
_ORDER = {"c1": 1, "c2": 2, "c4": 4, "d1": 2, "d2": 4, "d4": 8}


def _seeded(fn):
    """``fn``'s module in float64, its parameters drawn from a generator seeded with 0."""
    return seeded(lambda: fn().double())


def _lift(g, **kw):
    kw.setdefault("padding", 1)
    k = kw.pop("k", 3)  # here, not in the lambda: a pop there gave k=3 from the second build on
    return _seeded(lambda: LiftingConv2d(3, 4, k, group=g, **kw))


def _gconv(g, c_in=4, c_out=4, **kw):
    kw.setdefault("padding", 1)
    k = kw.pop("k", 3)
    return _seeded(lambda: GroupConv2d(c_in, c_out, k, group=g, **kw))


def _stack(g):
    def make():
        return nn.Sequential(
            LiftingConv2d(3, 4, 3, padding=1, group=g), GroupBatchNorm2d(4), nn.ReLU(),
            GroupConv2d(4, 4, 3, stride=2, padding=1, group=g), nn.ReLU(),       # 17 -> 9
            GroupMaxPool2d(3, 2, 1),                                             # 9 -> 5
            GroupConv2d(4, 4, 3, padding=1, dilation=1, groups=2, group=g), nn.ReLU(),
            GroupConv2d(4, 4, 3, padding="same", padding_mode="circular", group=g),
            GroupBatchNorm2d(4), nn.ReLU(),
            GroupConv2d(4, 2, 3, padding=1, padding_mode="reflect", group=g),
            GroupPool("max"),
        ).eval()
    return _seeded(make)


class _PerturbedGroupConv(nn.Module):
    """A negative control: a GroupConv2d whose expanded filter has one slot's block nudged."""

    in_rep = out_rep = "regular"

    def __init__(self, g: str) -> None:
        super().__init__()
        self.conv = GroupConv2d(4, 4, 3, padding=1, group=g)
        with torch.no_grad():
            w = self.conv._expand().clone()
            w[1] += 0.1 * torch.randn_like(w[1])  # only output (field 0, slot 1) changes
        self.register_buffer("w", w)

    def forward(self, x):
        c = self.conv
        return G.conv_expanded(x, self.w, c.bias, c.fiber_out, c.stride, c._pad, c.dilation)


def _cases_for(g: str) -> list[Case]:
    n = _ORDER[g]
    img, gmap, gmap_odd = (2, 3, 9, 9), (2, 4, n, 9, 9), (2, 4, n, 11, 11)
    p = f"gconv/{g}"
    return [
        Case(f"{p}/lifting-k3", _lift(g), img, g),
        Case(f"{p}/lifting-k5-same", _lift(g, k=5, padding="same"), img, g),
        Case(f"{p}/lifting-stride2-odd", _lift(g, stride=2), (2, 3, 11, 11), g),
        Case(f"{p}/lifting-k1", _lift(g, k=1, padding=0), img, g),
        Case(f"{p}/group-k3", _gconv(g), gmap, g),
        Case(f"{p}/group-k5-valid", _gconv(g, k=5, padding="valid"), gmap, g),
        Case(f"{p}/group-stride2-odd", _gconv(g, stride=2), gmap_odd, g),
        Case(f"{p}/group-dilation2", _gconv(g, dilation=2, padding=2), gmap, g),
        Case(f"{p}/group-groups2", _gconv(g, c_out=6, groups=2), gmap, g),
        Case(f"{p}/group-even-k2-symmetric", _gconv(g, k=2, padding=1), gmap, g),
        Case(f"{p}/group-reflect", _gconv(g, padding_mode="reflect"), gmap, g),
        Case(f"{p}/group-replicate", _gconv(g, padding_mode="replicate", k=5, padding=2),
             gmap, g),
        Case(f"{p}/group-circular", _gconv(g, padding_mode="circular"), gmap, g),
        Case(f"{p}/group-same-no-bias", _gconv(g, padding="same", bias=False), gmap, g),
        Case(f"{p}/batchnorm", _seeded(lambda: GroupBatchNorm2d(4)), gmap, g),
        Case(f"{p}/pool-max", lambda: GroupPool("max"), gmap, g),
        Case(f"{p}/pool-mean", lambda: GroupPool("mean"), gmap, g),
        Case(f"{p}/maxpool2d-k3s2p1-odd", lambda: GroupMaxPool2d(3, 2, 1), gmap, g),
        Case(f"{p}/avgpool2d-k2s2-even", lambda: GroupAvgPool2d(2), (2, 4, n, 8, 8), g),
    ]


CASES = [c for g in _GROUPS for c in _cases_for(g)] + [
    Case("gconv/d4/stack5-stride-pool", _stack("d4"), (2, 3, 17, 17), "d4"),
    Case("gconv/c4/stack5-stride-pool", _stack("c4"), (2, 3, 17, 17), "c4"),
    # Negative controls: each must fail the harness, for the stated reason.
    Case("gconv/d4/perturbed-expanded-filter-fails", _seeded(lambda: _PerturbedGroupConv("d4")),
         (2, 4, 8, 9, 9), "d4", expect="fail"),
    Case("gconv/c4/perturbed-expanded-filter-fails", _seeded(lambda: _PerturbedGroupConv("c4")),
         (2, 4, 4, 9, 9), "c4", expect="fail"),
    Case("gconv/p4/stride2-even-size-fails", _gconv("c4", stride=2), (2, 4, 4, 10, 10), "c4",
         expect="fail"),
    Case("gconv/d1/stride2-even-width-fails", _gconv("d1", stride=2), (2, 4, 2, 9, 10), "d1",
         expect="fail"),
    Case("gconv/p4m/same-even-kernel-fails", _gconv("d4", k=2, padding="same"),
         (2, 4, 8, 9, 9), "d4", expect="fail"),
    Case("gconv/p4/stack5-even-size-fails", _stack("c4"), (2, 3, 16, 16), "c4", expect="fail"),
]
