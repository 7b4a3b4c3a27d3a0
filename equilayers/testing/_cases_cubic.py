"""The cube's groups (and the icosahedral ``"ico"`` on its grid subgroup) on voxels: lifting and
group convs and their transposes x group x option
(voxel and harmonic bases; a transposed conv at stride 2 on even and odd sizes, an even
kernel), group batch norm, group pooling, a small stack, a U-Net round trip, and negative
controls (a plain ``nn.Conv3d`` and ``nn.ConvTranspose3d``, a stride that does not tile an
even size, ``output_padding``, nudged expanded filters). The
harmonic basis is exact for the reason the voxel one is (the expansion permutes one filter,
whatever it is); that its span is closed under the group is a test of its own
(tests/test_cubic_harmonic.py)."""

from __future__ import annotations

import torch
from torch import nn

from ..groups import FieldType, get
from ..nn import (
    GroupBatchNorm3d,
    GroupConv3d,
    GroupConvTranspose3d,
    GroupPool,
    LiftingConv3d,
    LiftingConvTranspose3d,
)
from ._case import Case
from ._cases_gconv import _seeded

_GROUPS = ("c4z", "d4z", "o", "oh", "t", "th")


def _lift(g, **kw):
    kw.setdefault("padding", 1)
    k = kw.pop("k", 3)  # here, not in the lambda: a pop there gave k=3 from the second build on
    return _seeded(lambda: LiftingConv3d(2, 2, k, group=g, **kw))


def _gconv(g, **kw):
    kw.setdefault("padding", 1)
    k = kw.pop("k", 3)  # (as in _lift)
    return _seeded(lambda: GroupConv3d(2, 2, k, group=g, **kw))


def _up(g, lifting, k=3, **kw):
    cls = LiftingConvTranspose3d if lifting else GroupConvTranspose3d
    return _seeded(lambda: cls(2, 2, k, group=g, **kw))


class _UNet3d(nn.Module):
    """Lift -> stride-2 group conv -> stride-2 transposed group conv with a skip -> group
    conv -> GroupPool: ``n -> (n+1)/2 -> n`` on odd sizes."""

    in_rep = out_rep = "trivial"

    def __init__(self, g: str) -> None:
        super().__init__()
        self.lift = LiftingConv3d(1, 2, 3, padding=1, group=g)
        self.down = GroupConv3d(2, 2, 3, stride=2, padding=1, group=g)
        self.up = GroupConvTranspose3d(2, 2, 3, 2, 1, group=g)
        self.head = GroupConv3d(4, 1, 3, padding=1, group=g)
        self.pool = GroupPool()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.relu(self.lift(x))
        u = torch.relu(self.up(torch.relu(self.down(a))))
        return self.pool(self.head(torch.cat([u, a], 1)))


class _NudgedTranspose3d(GroupConvTranspose3d):
    """A negative control: one output slot's expanded filter column nudged."""

    def _expand(self) -> torch.Tensor:
        w = super()._expand().clone()
        w[:, 1] = w[:, 1] + 0.1  # only output (field 0, slot 1) changes
        return w


def _stack(g):
    return _seeded(lambda: nn.Sequential(
        LiftingConv3d(2, 2, 3, padding=1, group=g), GroupBatchNorm3d(2), nn.ReLU(),
        GroupConv3d(2, 2, 3, stride=2, padding=1, group=g), nn.ReLU(),        # 9 -> 5
        GroupConv3d(2, 2, 3, padding=1, padding_mode="circular", group=g),
        GroupPool("max"),
    ).eval())


class _NudgedGroupConv3d(GroupConv3d):
    """A negative control: one output slot's expanded filter block nudged."""

    def _expand(self) -> torch.Tensor:  # (what the forward and expanded_filter() call)
        w = super()._expand().clone()
        w[1] = w[1] + 0.1  # only output (field 0, slot 1) changes
        return w


def _cases_for(g: str) -> list[Case]:
    n = int(get(g).order)
    vol, gmap, gmap_odd = (2, 2, 5, 5, 5), (2, 2, n, 5, 5, 5), (2, 2, n, 7, 7, 7)
    p = f"cubic/{g}"
    return [
        Case(f"{p}/lifting-k3", _lift(g), vol, g),
        Case(f"{p}/lifting-stride2-odd", _lift(g, stride=2), (2, 2, 7, 7, 7), g),
        Case(f"{p}/group-k3", _gconv(g), gmap, g),
        Case(f"{p}/group-stride2-odd", _gconv(g, stride=2), gmap_odd, g),
        Case(f"{p}/group-reflect", _gconv(g, padding_mode="reflect"), gmap, g),
        Case(f"{p}/lifting-harmonic", _lift(g, basis="harmonic"), vol, g),
        Case(f"{p}/group-harmonic-k5-stride2", _gconv(g, k=5, stride=2, padding=2,
                                                      basis="harmonic"), gmap_odd, g),
        Case(f"{p}/lifting-transposed-s2-even", _up(g, True, stride=2, padding=1),
             (2, 2, 4, 4, 4), g),
        Case(f"{p}/group-transposed-k4-s2-doubling", _up(g, False, 4, stride=2, padding=1),
             (2, 2, n, 3, 3, 3), g),
        Case(f"{p}/group-transposed-harmonic-s2", _up(g, False, stride=2, padding=1,
                                                      basis="harmonic"), (2, 2, n, 3, 3, 3), g),
        # even harmonic kernels: shells about the point between the eight middle voxels
        Case(f"{p}/lifting-harmonic-k4", _lift(g, k=4, padding=2, basis="harmonic"), vol, g),
        Case(f"{p}/group-transposed-harmonic-k2-s2", _up(g, False, 2, stride=2, padding=0,
                                                         basis="harmonic"),
             (2, 2, n, 3, 3, 3), g),
        Case(f"{p}/batchnorm", _seeded(lambda: GroupBatchNorm3d(2)), gmap, g),
        Case(f"{p}/pool-max", lambda: GroupPool("max"), gmap, g),
    ]


class _SwappedIco(GroupConv3d):
    """A negative control: the "ico" group conv reading slot ``h g^-1`` where ``g^-1 h``
    belongs (the regular action taken from the wrong side)."""

    def _index_tables(self, device):
        tables = super()._index_tables(device)
        grp = get("ico")
        inv = torch.tensor([grp.index(g.inverse()) for g in grp.elements()])
        cayley = grp.cayley_table  # [g, h] -> slot of h g^-1
        tables["expansion_table"] = cayley[torch.arange(60)[None, :], inv[:, None]].to(device)
        return tables


class _IcoAsIh(LiftingConv3d):
    """A negative control for ``"ih"``: an ``"ico"`` lifting conv (60 slots) with each output
    slot copied to its inversion partner, so it has ``"ih"``'s 120 slots but filters that
    ignore the inversion."""

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, group="ico", **kw)
        self.in_type = FieldType.trivial(get("ih"))  # read as "ih" fields by the harness
        self.out_type = FieldType.regular(get("ih"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)
        return torch.cat([y, y], dim=2)


def _ico_cases() -> list[Case]:
    """``"ico"`` (``"ih"``): exact on its grid subgroup ``"t"`` (``"th"``) only
    (``elements="grid"``); the other elements are interpolated, tests/test_ico.py measures them
    against a plain control."""
    gmap, gmap_odd, vol = (2, 2, 60, 5, 5, 5), (2, 2, 60, 7, 7, 7), (2, 2, 5, 5, 5)
    p = "cubic/ico"

    def case(name, build, shape, **kw):
        return Case(f"{p}/{name}", build, shape, "ico", elements="grid", **kw)

    return [
        case("lifting-k3", _lift("ico"), vol),
        case("lifting-k5-stride2-odd", _lift("ico", k=5, stride=2, padding=2), (2, 2, 7, 7, 7)),
        case("group-k3", _gconv("ico"), gmap),
        case("group-stride2-odd-circular", _gconv("ico", stride=2, padding_mode="circular"),
             gmap_odd),
        case("group-transposed-s2", _up("ico", False, stride=2, padding=1), (2, 2, 60, 3, 3, 3)),
        case("group-transposed-k2-s2", _up("ico", False, 2, stride=2), (2, 2, 60, 3, 3, 3)),
        case("batchnorm", _seeded(lambda: GroupBatchNorm3d(2)), gmap),
        case("pool-max", lambda: GroupPool("max"), gmap),
        case("swapped-slot-table-fails", _seeded(lambda: _SwappedIco(2, 2, 3, padding=1,
                                                                     group="ico")),
             gmap, expect="fail"),
        case("plain-conv3d-fails", _seeded(lambda: nn.Conv3d(2, 2, 3, padding=1)), vol,
             in_rep="trivial", out_rep="trivial", expect="fail"),
        # "ih": I and the inversion, exact on its grid subgroup "th" (24 elements)
        Case("cubic/ih/lifting-k3", _lift("ih"), vol, "ih", elements="grid"),
        Case("cubic/ih/group-k3-stride2-odd", _gconv("ih", stride=2), (2, 2, 120, 7, 7, 7),
             "ih", elements="grid"),
        Case("cubic/ih/pool-max", lambda: GroupPool("max"), (2, 2, 120, 5, 5, 5), "ih",
             elements="grid"),
        Case("cubic/ih/plain-conv3d-fails", _seeded(lambda: nn.Conv3d(2, 2, 3, padding=1)), vol,
             "ih", in_rep="trivial", out_rep="trivial", elements="grid", expect="fail"),
        # "ico" filters under "ih": no inversion in the filters, so the inversion breaks it
        Case("cubic/ih/ico-lifting-fails", _seeded(lambda: _IcoAsIh(2, 2, 3, padding=1)), vol,
             "ih", elements="grid", expect="fail"),
    ]


CASES = [c for g in _GROUPS for c in _cases_for(g)] + _ico_cases() + [
    Case("cubic/o/stack-stride-pool", _stack("o"), (2, 2, 9, 9, 9), "o"),
    Case("cubic/oh/unet-7-4-7", _seeded(lambda: _UNet3d("oh")), (2, 1, 7, 7, 7), "oh"),
    # Negative controls: each must fail the harness.
    Case("cubic/o/plain-conv3d-fails", _seeded(lambda: nn.Conv3d(2, 2, 3, padding=1)),
         (2, 2, 5, 5, 5), "o", in_rep="trivial", out_rep="trivial", expect="fail"),
    Case("cubic/o/plain-conv-transpose3d-fails",
         _seeded(lambda: nn.ConvTranspose3d(2, 2, 3, 2, 1)), (2, 2, 3, 3, 3), "o",
         in_rep="trivial", out_rep="trivial", expect="fail"),
    Case("cubic/c4z/transposed-output-padding-fails",
         _up("c4z", False, stride=2, padding=1, output_padding=(0, 1, 1)), (2, 2, 4, 3, 3, 3),
         "c4z", expect="fail"),
    Case("cubic/o/nudged-transposed-filter-fails", _seeded(lambda: _NudgedTranspose3d(
        2, 2, 3, 2, 1, group="o")), (2, 2, 24, 3, 3, 3), "o", expect="fail"),
    Case("cubic/c4z/stride2-even-size-fails", _gconv("c4z", stride=2), (2, 2, 4, 6, 6, 6),
         "c4z", expect="fail"),
    Case("cubic/t/plain-conv3d-fails", _seeded(lambda: nn.Conv3d(2, 2, 3, padding=1)),
         (2, 2, 5, 5, 5), "t", in_rep="trivial", out_rep="trivial", expect="fail"),
    Case("cubic/th/plain-conv3d-fails", _seeded(lambda: nn.Conv3d(2, 2, 3, padding=1)),
         (2, 2, 5, 5, 5), "th", in_rep="trivial", out_rep="trivial", expect="fail"),
    Case("cubic/o/nudged-expanded-filter-fails", _seeded(lambda: _NudgedGroupConv3d(
        2, 2, 3, padding=1, group="o")), (2, 2, 24, 5, 5, 5), "o", expect="fail"),
]
