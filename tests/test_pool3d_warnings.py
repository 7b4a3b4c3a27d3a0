"""GroupMaxPool3d / GroupAvgPool3d warn exactly where their windows break exactness, box
windows included: measured over the group the map stands for (its fiber's 4 or 8 slots:
c4z/d4z, which never move the depth; 24 or 48 slots O/O_h on any box; otherwise O_h on a
cube, D4z on a box), per slot (a
pool commutes with any slot permutation, so the spatial action decides). A ``(1, 3, 3)``
window on a cubic O map was never warned about (the pool skipped non-cubic windows; error
3.35 over O), and ``check_grid`` for the measured group agrees."""

from __future__ import annotations

import itertools
import warnings

import pytest
import torch
from torch import nn

from equilayers import check_grid
from equilayers.groups import get
from equilayers.groups._actions import act_spatial
from equilayers.nn import GroupAvgPool3d, GroupMaxPool3d


def _measured(pool: nn.Module, x: torch.Tensor, group: str) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        y, worst = pool(x), 0.0
        for g in get(group).elements():
            a, b = pool(act_spatial(x, g)), act_spatial(y, g)
            if a.shape != b.shape:
                return float("inf")
            worst = max(worst, (a - b).abs().max().item())
    return worst


def _warns(pool: nn.Module, x: torch.Tensor) -> bool:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pool(x)
    return any("not exactly equivariant" in str(w.message) for w in caught)


_MAPS = [  # (slots, spatial size, the group the pool judges it by)
    (48, (5, 5, 5), "oh"), (4, (5, 5, 5), "d4z"), (8, (6, 6, 6), "d4z"),
    # a box: 24 or 48 slots are the cube groups' (o, oh), which trade all three dims there too
    # (GroupMaxPool3d(2) on a 5x8x8 o map was judged d4z, unwarned at 0.41 over o)
    (48, (4, 5, 5), "oh"), (24, (5, 8, 8), "o"), (8, (4, 5, 5), "d4z"),
]


@pytest.mark.parametrize("cls", [GroupMaxPool3d, GroupAvgPool3d])
def test_the_warning_is_the_measured_error_for_box_windows(cls, gen):
    seen, wrong = {True: 0, False: 0}, []
    for (slots, size, group), k, s, p in itertools.product(
            _MAPS, [3, (1, 3, 3), (3, 1, 1), 2], [1, 2], [0, 1, (0, 1, 1)]):
        kk, pp = (k,) * 3 if isinstance(k, int) else k, (p,) * 3 if isinstance(p, int) else p
        if any(2 * a > b for a, b in zip(pp, kk, strict=True)):
            continue  # (torch: padding at most half the window)
        x = torch.randn(1, 1, slots, *size, generator=gen, dtype=torch.float64)
        inexact = _measured(cls(k, s, p), x, group) > 1e-12
        seen[inexact] += 1
        if _warns(cls(k, s, p), x) != inexact:
            wrong.append((slots, size, k, s, p, inexact))
    assert not wrong, wrong
    assert seen[True] and seen[False], seen  # (the sweep can fail either way)


def test_the_testers_case_warns_and_check_grid_agrees(gen):
    """``(1, 3, 3)`` at stride 1, padding ``(0, 1, 1)`` on a 5^3 map: warned, found by
    check_grid for o, measured inexact over o; the same window on a c4z map of the same cube
    is exact (the depth never moves) and neither warns nor is found."""
    x = torch.randn(1, 2, 24, 5, 5, 5, generator=gen, dtype=torch.float64)
    for cls in (GroupMaxPool3d, GroupAvgPool3d):
        with pytest.warns(UserWarning, match=r"oh trades depth/height, depth/width, but the "
                                             r"window is 1x3x3 \(D x H x W\)"):
            cls((1, 3, 3), 1, (0, 1, 1))(x)
        assert _measured(cls((1, 3, 3), 1, (0, 1, 1)), x, "o") > 0.5
        found = check_grid(nn.Sequential(cls((1, 3, 3), 1, (0, 1, 1))), tuple(x.shape), "o",
                           shifts=False)
        assert [f.problem for f in found] == ["anisotropic"], found
        c4z = x[:, :, :4]
        assert not _warns(cls((1, 3, 3), 1, (0, 1, 1)), c4z)
        assert _measured(cls((1, 3, 3), 1, (0, 1, 1)), c4z, "c4z") < 1e-12
        assert check_grid(nn.Sequential(cls((1, 3, 3), 1, (0, 1, 1))), tuple(c4z.shape), "c4z",
                          shifts=False) == []
