"""Upsampling under the rotations that swap dims: ``check_grid``'s ``"upsample-size"`` and
``GroupUpsample2d`` / ``3d``'s warning against the error measured over every group element
(float64; a shape that does not commute is inexact). The law compared the *ratios* of swapped
dims: it called ``GroupUpsample3d(size=(8, 8, 16))`` on a 4 x 4 x 8 ``o`` map exact (16 of 24
elements break it: the output box is fixed) and flagged ``size=6`` on 9 x 2 x 9 (exact: every
dim goes to 6). With ``size=`` the swapped dims need equal *output* sizes; with
``scale_factor``, equal factors (``upsample_problem``)."""

from __future__ import annotations

import itertools
import warnings

import pytest
import torch
from torch import nn

from equilayers import check_grid
from equilayers.groups import act, get
from equilayers.nn import GroupUpsample2d, GroupUpsample3d


def _measured(up: nn.Module, x: torch.Tensor, group: str, rep: str = "regular") -> float:
    """The worst ``|up(g x) - g up(x)|`` over the group's elements (``inf`` where the shapes
    differ)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        y, worst = up(x), 0.0
        for g in get(group).elements():
            a, b = up(act(x, g, rep)), act(y, g, rep)
            if a.shape != b.shape:
                return float("inf")
            worst = max(worst, (a - b).abs().max().item())
    return worst


def _flagged(up: nn.Module, shape: tuple[int, ...], group: str) -> bool:
    found = [f.problem for f in check_grid(nn.Sequential(up), shape, group, shifts=False)]
    assert found in ([], ["upsample-size"]), found
    return bool(found)


def _warns(up: nn.Module, x: torch.Tensor) -> bool:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        up(x)
    return any("not exactly equivariant" in str(w.message) for w in caught)


_MODES3 = [("nearest", None), ("trilinear", None), ("trilinear", True)]


@pytest.mark.parametrize("group", ["o", "d4z"])
def test_check_grid_on_group_upsample3d_is_the_measured_error_on_boxes(group, gen):
    """Boxes and cubes, ``size=`` an int or a triple: the finding comes exactly where the
    measured error is not float rounding (the tester's 4x4x8 -> 8x8x16 is found, 9x2x9 -> 6
    is not)."""
    seen, wrong = {True: 0, False: 0}, []
    for shape, size, (mode, align) in itertools.product(
            [(4, 4, 8), (9, 2, 9), (5, 6, 3), (3, 3, 3)], [6, (8, 8, 16), (6, 6, 9), (12, 12, 12)],
            _MODES3):
        x = torch.randn(1, 1, get(group).order, *shape, generator=gen, dtype=torch.float64)
        up = GroupUpsample3d(size=size, mode=mode, align_corners=align)
        inexact = _measured(up, x, group) > 1e-9
        seen[inexact] += 1
        if _flagged(up, tuple(x.shape), group) != inexact:
            wrong.append((shape, size, mode, align, inexact))
    assert not wrong, wrong
    assert seen[True] and seen[False], seen  # the sweep can fail either way
    x = torch.randn(1, 1, 24, 4, 4, 8, generator=gen, dtype=torch.float64)
    assert _measured(GroupUpsample3d(size=(8, 8, 16)), x, "o") == float("inf")  # the control


def test_check_grid_on_nn_upsample_scale_factors_is_the_measured_error(gen):
    """``nn.Upsample`` on volumes: per-dim factors, ``recompute_scale_factor``, ``"area"``,
    ``align_corners``; a factor that floors differently on swapped dims of another size
    (``2.5`` on 5 x 2 x 5) is still one factor, and exact where the per-dim law says so."""
    seen, wrong = {True: 0, False: 0}, []
    for shape, factor, recompute, (mode, align) in itertools.product(
            [(4, 4, 8), (5, 2, 5), (1, 3, 3)], [(2, 2, 3), 2.5, (2, 2, 2)], [None, True],
            [("nearest", None), ("trilinear", None), ("trilinear", True), ("area", None)]):
        x = torch.randn(1, 2, *shape, generator=gen, dtype=torch.float64)
        up = nn.Upsample(scale_factor=factor, mode=mode, align_corners=align,
                         recompute_scale_factor=recompute)
        inexact = _measured(up, x, "o", "trivial") > 1e-9
        seen[inexact] += 1
        if _flagged(up, tuple(x.shape), "o") != inexact:
            wrong.append((shape, factor, recompute, mode, align, inexact))
    assert not wrong, wrong
    assert seen[True] and seen[False], seen


@pytest.mark.parametrize("nd", [2, 3])
def test_the_warning_and_check_grid_are_the_measured_error_on_h_and_w(nd, gen):
    """The module warns on ``H, W`` only: measured over p4m (2-D) and d4z (3-D: the depth is
    never moved), on rectangles and boxes; check_grid for the same group agrees. The old rule
    missed ``size=(8, 16)`` on a 4 x 8 map (swapped dims at one ratio, different sizes)."""
    if nd == 2:
        group, cls, modes = "p4m", GroupUpsample2d, [("nearest", None), ("bilinear", True),
                                                     ("bicubic", None)]
        shapes, sizes = [(4, 4), (4, 8), (3, 5)], [8, (8, 16), (10, 15), (9, 9), (12, 8)]
    else:
        group, cls, modes = "d4z", GroupUpsample3d, _MODES3
        shapes, sizes = [(4, 4, 8), (3, 4, 8), (2, 3, 3)], [6, (8, 8, 16), (5, 8, 8), (9, 6, 6)]
    seen, wrong = {True: 0, False: 0}, []
    for shape, size, (mode, align) in itertools.product(shapes, sizes, modes):
        x = torch.randn(1, 1, get(group).order, *shape, generator=gen, dtype=torch.float64)

        def make(size=size, mode=mode, align=align):
            return cls(size=size, mode=mode, align_corners=align)

        inexact = _measured(make(), x, group) > 1e-9
        seen[inexact] += 1
        if (_warns(make(), x), _flagged(make(), tuple(x.shape), group)) != (inexact,) * 2:
            wrong.append((shape, size, mode, align, inexact))
    assert not wrong, wrong
    assert seen[True] and seen[False], seen


def test_the_advice_for_swapped_sizes_is_exact(gen):
    """The fix names one output size for the swapped dims; that size is measured exact."""
    x = torch.randn(1, 1, 24, 4, 4, 6, generator=gen, dtype=torch.float64)
    (finding,) = check_grid(nn.Sequential(GroupUpsample3d(size=(8, 8, 12))), tuple(x.shape), "o",
                            shifts=False)
    assert "different output sizes (8 and 12)" in finding.message, finding
    assert "e.g. 12 there" in finding.fix, finding.fix
    assert _measured(GroupUpsample3d(size=12), x, "o") < 1e-12
