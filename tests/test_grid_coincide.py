"""The grid law's padding coincidence (``windows_coincide``): a strided conv or blur whose
padded grid is not symmetric can still be exactly flip-equivariant when its padding reads
samples of the input (reflect, replicate, circular) that the flip maps onto each other:
reflect, ``n=4, k=1``, stride 3, padding 1 reads samples 1 and 2. ``check_grid`` and the
module warnings called such layers inexact (a false warning, found by a hypothesis draw of
``test_cubic_properties.py`` in CI); they now compare the windows' samples. Ground truth here
is always a measurement; the negative controls are the same configurations with zero padding
and the ones the flip does not map onto themselves."""

from __future__ import annotations

import itertools
import warnings

import pytest
import torch
import torch.nn.functional as F

import equilayers.nn as enn
from equilayers import check_grid
from equilayers.functional._grid_law import windows_coincide
from equilayers.testing import equivariance_error

MODES = ("reflect", "replicate", "circular")


def _flip_exact_1d(n: int, k: int, s: int, p: int, mode: str) -> bool:
    """Measured: ``conv(flip(x), flip(w)) == flip(conv(x, w))`` for a random 1-D signal and
    filter, padding ``p`` on both sides in ``mode``, stride ``s`` (float64)."""
    gen = torch.Generator().manual_seed(n * 1000 + k * 100 + s * 10 + p)
    x = torch.randn(1, 1, n, generator=gen, dtype=torch.float64)
    w = torch.randn(1, 1, k, generator=gen, dtype=torch.float64)

    def conv(v, f):
        return F.conv1d(F.pad(v, (p, p), mode=mode) if p else v, f, stride=s)

    return torch.allclose(conv(x.flip(-1), w.flip(-1)), conv(x, w).flip(-1), atol=1e-12)


def test_windows_coincide_is_the_measured_flip_exactness():
    """Over every small configuration (n 1..9, k 1..4, stride 1..3, padding 0..2, the three
    sampled modes): the predicate is True exactly where the measured layer is flip-exact, so
    it neither invents exactness nor misses it; a constant padding is never a coincidence
    (None), and at least one configuration is exact only by coincidence (the symmetric-grid
    law calls it inexact) and one is inexact (the controls of the sweep)."""
    seen = {"coincidence": 0, "inexact": 0}
    for n, k, s, p, mode in itertools.product(range(1, 10), range(1, 5), range(1, 4),
                                              range(3), MODES):
        if n + 2 * p < k or (mode == "reflect" and p >= n) or (mode == "circular" and p > n):
            continue
        exact = _flip_exact_1d(n, k, s, p, mode)
        assert windows_coincide(n, k, s, p, p, mode) == exact, (n, k, s, p, mode, exact)
        grid_law = (n + 2 * p - k) % s == 0
        seen["coincidence"] += exact and not grid_law
        seen["inexact"] += not exact
        assert not windows_coincide(n, k, s, p, p, None) and not windows_coincide(
            n, k, s, p, p, "zeros")
    assert seen["coincidence"] > 0 and seen["inexact"] > 0, seen


@pytest.mark.parametrize("cls, group, shape, mode, exact", [
    (enn.GroupConv2d, "p4m", (1, 2, 8, 4, 4), "reflect", True),
    (enn.GroupConv2d, "p4m", (1, 2, 8, 4, 4), "zeros", False),
    (enn.GroupConv2d, "p4m", (1, 2, 8, 4, 4), "circular", False),
    (enn.GroupConv2d, "p4m", (1, 2, 8, 4, 4), "replicate", False),
    (enn.GroupConv3d, "c4z", (1, 2, 4, 4, 4, 4), "reflect", True),  # the CI draw
    (enn.GroupConv3d, "c4z", (1, 2, 4, 4, 4, 4), "zeros", False),
], ids=["2d-reflect", "2d-zeros", "2d-circular", "2d-replicate", "3d-reflect", "3d-zeros"])
def test_reflect_coincidence_is_not_warned(cls, group, shape, mode, exact):
    """A group conv with ``k=1, stride=3, padding=1`` on 4-pixel (4-voxel) sides, p4m on the
    plane and c4z on volumes (the CI draw): with reflect padding exact (measured) and neither
    warned nor flagged by ``check_grid``; the controls (zeros, circular, replicate: the windows
    read other samples) are inexact, warned and flagged."""
    conv = cls(2, 2, 1, stride=3, padding=1, padding_mode=mode, group=group).double()
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        conv(x)
    findings = [f.problem for f in check_grid(conv, shape, group, shifts=False)]
    error = equivariance_error(conv, x, group)
    if exact:
        assert error < 1e-12 and not rec and not findings, (error, rec, findings)
    else:
        assert error > 1e-3 and rec and findings == ["stride-parity"], (error, findings)


def test_max_blur_pool_composite_window_is_judged_by_its_grid():
    """A max-then-blur pool's window is composite (the max's padding, then the blur's): the
    coincidence is not applied to it (``_window_padding_mode`` is None), while a blur pool
    reads its padding directly and states its mode."""
    assert enn.MaxBlurPool2d(2)._window_padding_mode() is None
    assert enn.BlurPool2d(padding_mode="circular")._window_padding_mode() == "circular"
