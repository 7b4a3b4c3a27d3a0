"""Which ``size=`` an upsampling reaches exactly: the one per-dim law (``resize_break``) that
``GroupUpsample2d`` / ``3d``'s warning and ``check_grid``'s ``"upsample-size"`` ask, against
the measured equivariance error over sweeps of small sizes (the oracle, float64 and float32).
``mode="nearest-exact"`` was trusted at every size (4 -> 9 on a p4m map: error 0.68, no
warning, no finding) and the advice for ``"nearest"`` recommended it; the advice now names only
what the law (and the measurement) calls exact."""

from __future__ import annotations

import re
import warnings

import pytest
import torch
import torch.nn.functional as F
from conftest import seeded_rng
from torch import nn

from equilayers import check_grid
from equilayers.functional._upsample import nearest_maps, resize_break
from equilayers.nn import GroupUpsample2d, GroupUpsample3d, LiftingConv2d, LiftingConv3d
from equilayers.testing import equivariance_error

_MODES2 = [("nearest", None), ("nearest-exact", None), ("bilinear", None), ("bilinear", True),
           ("bilinear", False), ("bicubic", None), ("bicubic", True)]
_TOL = {torch.float64: 1e-9, torch.float32: 1e-4}


def _flip_commutes(n: int, o: int, mode: str) -> bool:
    """Measured in 1-D: ``interpolate(flip(x)) == flip(interpolate(x))`` in float32 and
    float64, contiguous and channels_last (every rule the law reads)."""
    for dtype in _TOL:
        for layout in (torch.contiguous_format, torch.channels_last):
            x = torch.randn(1, 2, 1, n, dtype=dtype).contiguous(memory_format=layout)
            up = F.interpolate(x, size=(1, o), mode=mode)
            if not torch.equal(F.interpolate(x.flip(-1), size=(1, o), mode=mode),
                               up.flip(-1)):
                return False
    return True


@pytest.mark.parametrize("mode", ["nearest", "nearest-exact"])
def test_the_law_is_the_measured_flip_symmetry_in_1d(mode):
    """Every ``n -> o`` with ``n <= 8``, ``o <= 3n``: the law calls a resize exact exactly
    where the flip commutes with it, measured; it reads torch's own index maps (the tester's
    28 nearest-exact pairs, 2 -> 3 ... 8 -> 23, are among the inexact ones)."""
    seen = {True: 0, False: 0}
    for n in range(1, 9):
        for o in range(1, 3 * n + 1):
            exact = _flip_commutes(n, o, mode)
            assert (resize_break(n, o, mode) is None) == exact, (n, o, mode)
            seen[exact] += 1
            ramp = torch.arange(n, dtype=torch.float64).view(1, 1, n)
            torch_map = tuple(int(v) for v in F.interpolate(ramp, size=o, mode=mode)[0, 0])
            assert torch_map in nearest_maps(n, o, mode)
    assert seen[True] and seen[False]  # (both kinds occur: the sweep can fail either way)
    assert resize_break(4, 9, "nearest-exact") is not None  # the tester's case
    assert resize_break(2, 82, "nearest") is not None  # an integer ratio float32 rounds off
    assert resize_break(4, 8, "nearest", scale=2.0) is None


def _measured(module, x: torch.Tensor, group: str) -> float:
    """The module's equivariance error in float64 and float32 (relative to the tolerance of
    each: > 1 is inexact)."""
    worst = 0.0
    for dtype, tol in _TOL.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            worst = max(worst, equivariance_error(module, x.to(dtype), group) / tol)
    return worst


def _warns(make, x: torch.Tensor) -> bool:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        make()(x)
    return any("not exactly equivariant" in str(w.message) for w in caught)


@pytest.mark.parametrize("mode,align", _MODES2)
def test_group_upsample2d_warns_and_check_grid_finds_exactly_the_inexact_sizes(mode, align,
                                                                                 gen):
    """GroupUpsample2d(size=o) on a p4m map of n x n, n 2..5, o 2..12: the module warns, and
    check_grid (after a lifting conv) reports ``"upsample-size"``, exactly where the measured
    error exceeds the tolerance: no false alarm, no miss."""
    with seeded_rng(0):
        lift = LiftingConv2d(1, 1, 1, group="p4m").double()
    wrong = []
    for n in range(2, 6):
        x = torch.randn(1, 1, 8, n, n, generator=gen, dtype=torch.float64)
        for o in range(2, 13):
            def make(o=o):
                return GroupUpsample2d(size=o, mode=mode, align_corners=align)
            inexact = _measured(make(), x, "p4m") > 1
            found = [f.problem for f in check_grid(nn.Sequential(lift, make()), (1, 1, n, n),
                                                   "p4m", shifts=False)]
            if _warns(make, x) != inexact or (found == ["upsample-size"]) != inexact:
                wrong.append((n, o, inexact, found))
    assert not wrong, wrong


@pytest.mark.parametrize("mode", ["nearest", "nearest-exact", "trilinear"])
def test_group_upsample3d_warns_and_check_grid_finds_exactly_the_inexact_sizes(mode, gen):
    """The same on a 24-slot o map of n^3, n 2..4, o 2..9 (the tester's 4^3 -> 9^3
    nearest-exact: 0.76 unwarned)."""
    with seeded_rng(0):
        lift = LiftingConv3d(1, 1, 1, group="o").double()
    wrong = []
    for n in range(2, 5):
        x = torch.randn(1, 1, 24, n, n, n, generator=gen, dtype=torch.float64)
        for o in range(2, 10):
            def make(o=o):
                return GroupUpsample3d(size=o, mode=mode)
            inexact = _measured(make(), x, "o") > 1
            found = [f.problem for f in check_grid(nn.Sequential(lift, make()),
                                                   (1, 1, n, n, n), "o", shifts=False)]
            if _warns(make, x) != inexact or (found == ["upsample-size"]) != inexact:
                wrong.append((n, o, inexact, found))
    assert not wrong, wrong


def _advised(text: str, n: int) -> list[dict]:
    """The options a warning's or finding's fix names, as GroupUpsample2d arguments."""
    out = []
    for m in re.findall(rf"{n} -> ([\d or]+)\)", text):
        out += [dict(size=int(v), mode="nearest") for v in m.split(" or ")]
    for mode in ("bilinear", "bicubic", "nearest-exact"):
        if f"'{mode}'" in text.split("use ", 1)[-1]:
            out.append(dict(size=None, mode=mode))
    return out


@pytest.mark.parametrize("n,o,mode", [(4, 9, "nearest"), (4, 9, "nearest-exact"),
                                      (7, 20, "nearest"), (6, 9, "nearest-exact"),
                                      (5, 8, "nearest")])
def test_the_advice_names_only_exact_options(n, o, mode, gen):
    """Every remedy the warning and check_grid's fix name is exact when measured at this input
    size (a multiple of the input's, a linear mode at size ``o``, ``"nearest-exact"`` only
    where it is exact: 7 -> 20, not 4 -> 9); the advice before recommended nearest-exact at
    4 -> 9 (error 0.68)."""
    x = torch.randn(1, 1, 8, n, n, generator=gen, dtype=torch.float64)
    with pytest.warns(UserWarning, match="not exactly equivariant") as caught:
        GroupUpsample2d(size=o, mode=mode)(x)
    with seeded_rng(0):
        net = nn.Sequential(LiftingConv2d(1, 1, 1, group="p4m"), GroupUpsample2d(size=o, mode=mode))
    (finding,) = check_grid(net, (1, 1, n, n), "p4m", shifts=False)
    for text in (str(caught[0].message), finding.fix):
        options = _advised(text, n)
        assert options and any(a["size"] for a in options), text
        assert ("'nearest-exact'" in text.split("use ", 1)[-1]) == (
            mode == "nearest" and resize_break(n, o, "nearest-exact") is None), text
        for kw in options:
            up = GroupUpsample2d(size=kw["size"] or o, mode=kw["mode"])
            assert _measured(up, x, "p4m") <= 1, (text, kw)
