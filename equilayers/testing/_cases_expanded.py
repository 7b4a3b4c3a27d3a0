"""ExpandedGroupConv2d cases (the dense expanded filter that ``from_escnn`` loads for groups
off the pixel grid): exact on the grid subgroup when the filter is, with negative controls."""

from __future__ import annotations

import torch

from ..nn import ExpandedGroupConv2d, GroupConv2d, LiftingConv2d
from ._case import Case, seeded

_GRID = (0.0, 90.0, 180.0, 270.0)


def _from(make, group, **kw):
    """Build ``make()`` (a seeded float64 conv of ours), then hold its expanded filter."""
    def build():
        conv = seeded(make)().double()
        return ExpandedGroupConv2d.from_filter(
            conv.expanded_filter().detach(), conv.bias.detach(), group=group,
            lifting=conv.in_rep == "trivial", **kw)
    return build


def _random(group, c_in, lifting=False):
    """A negative control: a dense filter with i.i.d. entries (no symmetry at all)."""
    def build():
        m = ExpandedGroupConv2d(c_in, 3, 3, padding=1, group=group, lifting=lifting,
                                dtype=torch.float64)
        with torch.no_grad():
            m.weight.normal_(generator=torch.Generator().manual_seed(0))
        return m
    return build


CASES = [
    Case("expanded/c8/group-grid-subgroup",
         _from(lambda: GroupConv2d(2, 3, 3, padding=1, group="c8"), "c8", padding=1),
         (2, 2, 8, 9, 9), "c8", elements=_GRID),
    Case("expanded/d8/lifting-grid-subgroup",
         _from(lambda: LiftingConv2d(2, 3, 5, padding=2, group="d8"), "d8", padding=2),
         (2, 2, 11, 11), "d8", elements=_GRID),
    Case("expanded/d4/group-stride2-all-elements",
         _from(lambda: GroupConv2d(2, 3, 3, stride=2, padding=1, group="d4"), "d4",
               stride=2, padding=1),
         (2, 2, 8, 9, 9), "d4"),
    # Negative controls: an unconstrained dense filter is not equivariant, and a c8 filter is
    # not exact at 45 degrees (the grid cannot rotate by it).
    Case("expanded/c8/random-filter-fails", _random("c8", 2), (2, 2, 8, 9, 9), "c8",
         elements=_GRID, expect="fail"),
    Case("expanded/c4/random-lifting-filter-fails", _random("c4", 2, lifting=True),
         (2, 2, 9, 9), "c4", expect="fail"),
    Case("expanded/p4/stride2-even-size-fails",
         _from(lambda: GroupConv2d(2, 3, 3, stride=2, padding=1, group="c4"), "c4",
               stride=2, padding=1),
         (2, 2, 4, 10, 10), "c4", expect="fail"),
]
