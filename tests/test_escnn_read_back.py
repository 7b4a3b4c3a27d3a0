"""equilayers.interop.from_escnn where it reads a setting back from an escnn buffer: the
antialiased pools' ``sigma`` from their float32 filter (every ``sigma = k / 16``, ``k = 1 ..
40``, 2-D and 3-D, average and max: the half-integer ties of escnn's size rule ``2
round(truncate sigma) + 1`` included), and the refusal of filters escnn's formula does not
give.

Needs escnn (run in the peers venv: ``make test-peers``); skipped elsewhere, but for the
escnn-free :func:`sigma_for_taps` test."""

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

