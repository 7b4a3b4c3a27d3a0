"""Transposed group convolutions: lifting/group transposed convs x group (pixel filters for
c1..d4, the steerable basis for cN, dN, so2, o2) x stride 1 and 2 on even and odd sizes (a
transposed conv is exact at any size with ``output_padding=0``), a U-Net round trip of odd
sizes, and negative controls: a plain ``nn.ConvTranspose2d``, ``output_padding=1``, a nudged
expanded filter, the even-size U-Net."""

from __future__ import annotations

import torch
from torch import nn

from ..groups import get
from ..nn import (
    GroupConv2d,
    GroupConvTranspose2d,
    GroupPool,
    LiftingConv2d,
    LiftingConvTranspose2d,
)
from ._case import Case
from ._cases_gconv import _GROUPS, _seeded

_GRID = (0.0, 90.0, 180.0, 270.0)  # and their flips for dN: the grid subgroup of cN/dN/so2/o2


def _up(g, lifting, k=3, **kw):
    cls = LiftingConvTranspose2d if lifting else GroupConvTranspose2d
    return _seeded(lambda: cls(2, 3, k, group=g, **kw))


class _UNet(nn.Module):
    """Lift -> two stride-2 group convs -> two stride-2 transposed group convs with skips ->
    group conv -> GroupPool: ``n -> (n+1)/2 -> ... -> n`` for ``n = 4m + 1``."""

    in_rep = out_rep = "trivial"

    def __init__(self, g: str, output_padding: int = 0) -> None:
        super().__init__()
        op = output_padding
        self.lift = LiftingConv2d(1, 2, 3, padding=1, group=g)
        self.down1 = GroupConv2d(2, 2, 3, stride=2, padding=1, group=g)
        self.down2 = GroupConv2d(2, 2, 3, stride=2, padding=1, group=g)
        self.up2 = GroupConvTranspose2d(2, 2, 3, 2, 1, op, group=g)
        self.up1 = GroupConvTranspose2d(4, 2, 3, 2, 1, op, group=g)
        self.head = GroupConv2d(4, 1, 3, padding=1, group=g)
        self.pool = GroupPool()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.relu(self.lift(x))
        b = torch.relu(self.down1(a))
        u = torch.relu(self.up2(torch.relu(self.down2(b))))
        u = torch.relu(self.up1(torch.cat([u, b], 1)))
        return self.pool(self.head(torch.cat([u, a], 1)))


class _NudgedTranspose(GroupConvTranspose2d):
    """A negative control: one output slot's expanded filter column nudged."""

    def _expand(self) -> torch.Tensor:
        w = super()._expand().clone()
        w[:, 1] = w[:, 1] + 0.1  # only output (field 0, slot 1) changes
        return w


def _pixel(g: str) -> list[Case]:
    n = int(get(g).order)
    p = f"transposed/{g}"
    return [
        Case(f"{p}/lifting-k3-s1", _up(g, True, padding=1), (2, 2, 7, 7), g),
        Case(f"{p}/lifting-k3-s2-even", _up(g, True, stride=2, padding=1), (2, 2, 6, 6), g),
        Case(f"{p}/group-k3-s2-odd", _up(g, False, stride=2, padding=1), (2, 2, n, 5, 5), g),
        Case(f"{p}/group-k4-s2-p1-doubling", _up(g, False, 4, stride=2, padding=1),
             (2, 2, n, 6, 6), g),
        Case(f"{p}/group-k2-s2-no-bias", _up(g, False, 2, stride=2, bias=False),
             (2, 2, n, 5, 5), g),
        Case(f"{p}/group-dilation2-groups2-s3",
             _seeded(lambda: GroupConvTranspose2d(2, 4, 3, 3, 2, groups=2, dilation=2,
                                                  group=g)), (2, 2, n, 4, 4), g),
    ]


def _steerable() -> list[Case]:
    out = []
    for g, kw, f in (("c8", {}, 8), ("d8", {}, 16), ("c6", {}, 6), ("so2", {"max_order": 2}, 5),
                     ("o2", {"max_order": 1}, 3), ("c4", {"basis": "harmonic"}, 4)):
        els = (0.0, 180.0) if g == "c6" else _GRID
        out += [
            Case(f"transposed/{g}/steerable-lifting-k5-s2", _up(g, True, 5, stride=2,
                                                                 padding=2, **kw),
                 (2, 2, 6, 6), g, elements=els),
            Case(f"transposed/{g}/steerable-group-k3-s2", _up(g, False, 3, stride=2, padding=1,
                                                              **kw),
                 (2, 2, f, 5, 5), g, elements=els),
            # the U-Net's up-convolution: 2 x 2 at stride 2, footprints tiling the output
            Case(f"transposed/{g}/steerable-group-k2-s2", _up(g, False, 2, stride=2, **kw),
                 (2, 2, f, 5, 5), g, elements=els),
        ]
    return out


CASES = [c for g in _GROUPS for c in _pixel(g)] + _steerable() + [
    Case("transposed/d4/unet-17-9-5-9-17", _seeded(lambda: _UNet("d4")), (2, 1, 17, 17), "d4"),
    Case("transposed/so2/steerable-lifting-k4-s2-p1",
         _up("so2", True, 4, stride=2, padding=1, max_order=2), (2, 2, 5, 5), "so2"),
    # Negative controls: each must fail the harness.
    Case("transposed/d4/plain-conv-transpose-fails",
         _seeded(lambda: nn.ConvTranspose2d(2, 3, 3, 2, 1)), (2, 2, 5, 5), "d4",
         in_rep="trivial", out_rep="trivial", expect="fail"),
    Case("transposed/c4/output-padding1-fails", _up("c4", False, stride=2, padding=1,
                                                    output_padding=1), (2, 2, 4, 5, 5), "c4",
         expect="fail"),
    Case("transposed/d1/output-padding1-width-fails",
         _up("d1", False, stride=2, padding=1, output_padding=(0, 1)), (2, 2, 2, 5, 5), "d1",
         expect="fail"),
    Case("transposed/d4/nudged-expanded-filter-fails",
         _seeded(lambda: _NudgedTranspose(2, 3, 3, 2, 1, group="d4")), (2, 2, 8, 5, 5), "d4",
         expect="fail"),
    Case("transposed/c4/unet-even-16-fails", _seeded(lambda: _UNet("c4", 1)), (2, 1, 16, 16),
         "c4", expect="fail"),
]
