"""equilayers.interop.from_escnn where it reads a setting back from an escnn buffer: the
antialiased pools' ``sigma`` from their float32 filter (every ``sigma = k / 16``, ``k = 1 ..
40``, 2-D and 3-D, average and max: the half-integer ties of escnn's size rule ``2
round(truncate sigma) + 1`` included), ``MaskModule``'s ``sigma`` from its mask (hard masks,
every pixel outside 0; masks that are 1 everywhere; a pixel just outside the disk), and the
refusal of buffers escnn's formulas do not give.

Needs escnn (run in the peers venv: ``make test-peers``); skipped elsewhere, but for the
escnn-free :func:`sigma_for_taps` test."""

import math

import pytest
import torch
from _interop_common import _escnn

from equilayers._interop_pools import sigma_for_taps
from equilayers.interop import from_escnn

SIGMAS = [k / 16 for k in range(1, 41)]  # the tester's scan: 0.0625 .. 2.5


def _esc():
    _escnn()
    from escnn import gspaces
    from escnn import nn as esc
    return gspaces, esc


def _trivial(gs, c):
    from escnn import nn as esc
    return esc.FieldType(gs, c * [gs.trivial_repr])


def _pool(esc, kind, t, sigma):
    if kind == "avg2d":
        return esc.PointwiseAvgPoolAntialiased2D(t, sigma=sigma, stride=2)
    if kind == "avg3d":
        return esc.PointwiseAvgPoolAntialiased3D(t, sigma=sigma, stride=2)
    if kind == "max2d":
        return esc.PointwiseMaxPoolAntialiased2D(t, 2, 2, sigma=sigma)
    return esc.PointwiseMaxPoolAntialiased3D(t, 3, 2, 1, sigma=sigma)


@pytest.mark.parametrize("kind", ["avg2d", "avg3d", "max2d", "max3d"])
def test_antialiased_pool_converts_for_every_sigma(kind, gen):
    """Every ``sigma`` of the scan converts to our pool with escnn's tap count and ``sigma``,
    and gives escnn's outputs. The ties (``truncate sigma`` a half-integer: average pools
    0.5, 1.5, 2.5; max pools 0.375, 0.625, ..., 2.375) were refused: ``sigma`` read back from
    the float32 filter (0.4999999978 for 0.5) rounded to the other tap count."""
    gspaces, esc = _esc()
    three = kind.endswith("3d")
    t = _trivial(gspaces.rot2dOnR3(4) if three else gspaces.rot2dOnR2(4), 2)
    truncate = 3.0 if kind.startswith("avg") else 4.0
    x = torch.randn((2, 2, 5, 6, 7) if three else (2, 2, 9, 10), generator=gen)
    for sigma in SIGMAS:
        m = _pool(esc, kind, t, sigma)
        ours = from_escnn(m)
        blur = ours if kind.startswith("avg") else ours.blur
        k = m.filter.shape[-1]
        assert blur.kernel_size == k == 2 * round(truncate * sigma) + 1, sigma
        assert blur.truncate == truncate
        if k > 1:  # (a 1-tap filter [1] is every sigma below 1 / (2 truncate))
            assert blur.sigma == pytest.approx(sigma, rel=1e-6), sigma
        with torch.no_grad():
            want = m(esc.GeometricTensor(x, t)).tensor
        torch.testing.assert_close(ours(x), want, msg=lambda s, sigma=sigma: f"{sigma}: {s}")


@pytest.mark.parametrize("truncate", [3.0, 4.0])
def test_sigma_for_taps_moves_a_tie_to_the_filters_tap_count(truncate):
    """At each half-integer ``truncate sigma``, a ``sigma`` off by 1e-8 either way (what a
    float32 filter gives back) moves to the nearest float with the filter's tap count (the
    filters differ by ~1e-8); ``sigma`` of the right count is kept as it is, and one whose
    count misses by more than one step is left for the filter check to refuse."""
    def taps(sigma):
        return 2 * round(truncate * sigma) + 1

    moved = 0
    for n in range(12):
        tie = (n + 0.5) / truncate
        for k in (2 * n + 1, 2 * n + 3):  # the counts on either side of the tie
            for sigma in (tie * (1 - 1e-8), tie, tie * (1 + 1e-8)):
                got = sigma_for_taps(sigma, k, truncate)
                assert taps(got) == k, (sigma, k)
                if taps(sigma) == k:
                    assert got == sigma
                else:
                    assert got == pytest.approx(tie, rel=1e-12), (sigma, k)
                    moved += 1
        inner = (n + 0.25) / truncate
        assert sigma_for_taps(inner, 2 * n + 1, truncate) == inner
        assert sigma_for_taps(inner, 2 * n + 7, truncate) == inner  # 3 steps away: not moved
    assert moved == 12 * 3  # each tie: 3 of its 6 (sigma, count) pairs move


def test_pool_filter_escnns_formula_does_not_give_is_refused():
    """The control: the move to the tap count accepts no other filter. escnn's 5-tap
    ``sigma=0.5`` average pool with its outer ring changed by 1e-3, and a filter whose centre
    is not above its neighbour, are refused."""
    gspaces, esc = _esc()
    t = _trivial(gspaces.rot2dOnR2(4), 1)
    m = esc.PointwiseAvgPoolAntialiased2D(t, sigma=0.5, stride=2)
    from_escnn(m)  # converts as it is
    with torch.no_grad():
        m.filter[..., 0, :] += 1e-3
    with pytest.raises(ValueError, match="filter is not a Gaussian with escnn's size rule"):
        from_escnn(m)
    with torch.no_grad():
        m.filter.fill_(1.0 / 25)
    with pytest.raises(ValueError, match="centre is not above its neighbour"):
        from_escnn(m)


_MASKS = [(9, 0.0, 0.05), (9, 0.0, 0.09), (11, 0.0, 1e-3), (8, 10.0, 0.05),  # hard
          (9, 0.0, 1e5), (8, 0.0, 1e6)]  # 1 everywhere in float32


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("size,margin,sigma", _MASKS)
def test_hard_or_flat_mask_converts_exactly(dim, size, margin, sigma, gen):
    """escnn's float32 mask holds only 0 and 1 (``sigma`` below ~0.1 px: every pixel outside
    underflows to 0; above ~1e4 px: every pixel rounds to 1): it converts to a ``DiskMask`` /
    ``BallMask`` with a ``sigma`` that gives the same mask exactly, float32 and float64. It
    was refused ("does not follow escnn's formula"): ``sigma`` fell back to 2."""
    gspaces, esc = _esc()
    t = _trivial(gspaces.rot2dOnR3(4) if dim == 3 else gspaces.rot2dOnR2(4), 2)
    m = esc.MaskModule(t, size, margin=margin, sigma=sigma)
    assert set(m.mask.unique().tolist()) <= {0.0, 1.0}  # the case: no value in between
    ours = from_escnn(m)
    assert type(ours).__name__ == ("BallMask" if dim == 3 else "DiskMask")
    assert (ours.size, ours.margin) == (size, margin)
    x = torch.randn((2, 2) + (size,) * dim, generator=gen)
    with torch.no_grad():
        assert torch.equal(ours(x), m(esc.GeometricTensor(x, t)).tensor)
        m64 = m.double()
        assert torch.equal(ours.double()(x.double()),
                           m64(esc.GeometricTensor(x.double(), t)).tensor)


@pytest.mark.parametrize("dim", [2, 3])
def test_mask_sigma_read_where_the_mask_gives_it_precisely(dim, gen):
    """A margin that leaves a pixel 1e-4 px^2 outside the disk: escnn's float32 value there,
    ``exp(-2.5e-5)``, gives ``log`` to 0.2%, so ``sigma`` read from it (the nearest pixel
    outside, as before) missed the farther pixels and the mask was refused. ``sigma`` is read
    from the value that gives it most precisely: escnn's outputs."""
    gspaces, esc = _esc()
    t = _trivial(gspaces.rot2dOnR3(4) if dim == 3 else gspaces.rot2dOnR2(4), 1)
    margin = 100 * (1 - math.sqrt(16 - 1e-4) / 4)  # S = 9, c = 4: t = 16 - 1e-4
    m = esc.MaskModule(t, 9, margin=margin, sigma=2.0)
    ours = from_escnn(m)
    assert ours.sigma == pytest.approx(2.0, rel=1e-6)
    x = torch.randn((2, 1) + (9,) * dim, generator=gen)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), m(esc.GeometricTensor(x, t)).tensor)


def test_mask_escnns_formula_does_not_give_is_refused():
    """The control: a hard mask with one pixel outside set to 1 (a mix of 0 and 1 outside),
    and one with a pixel inside set to 0.5, are refused by name."""
    gspaces, esc = _esc()
    t = _trivial(gspaces.rot2dOnR2(4), 1)
    for where, value in (((0, 0), 1.0), ((4, 4), 0.5)):
        m = esc.MaskModule(t, 9, margin=0.0, sigma=0.05)
        from_escnn(m)  # converts as it is
        with torch.no_grad():
            m.mask[(0, 0) + where] = value
        with pytest.raises(ValueError, match="MaskModule's mask does not follow escnn's"):
            from_escnn(m)
