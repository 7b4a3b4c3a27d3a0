"""The group pools with ``ceil_mode=True`` on inputs about the size of their window: they take
exactly the sizes torch's pool takes (one window may overhang the end by less than the stride)
and refuse the rest with their own ValueError naming the size, as with ``ceil_mode=False``
(torch's "Output size is too small" RuntimeError, about the flattened ``C * F`` planes, leaked
through before)."""

from __future__ import annotations

import itertools
import warnings

import pytest
import torch
import torch.nn.functional as F

from equilayers.nn import (
    GroupAvgPool2d,
    GroupAvgPool3d,
    GroupMaxPool2d,
    GroupMaxPool3d,
    NormMaxPool,
)

_WINDOWS = [(3, 2, 0, 1), (3, 1, 0, 1), (4, 3, 0, 1), (5, 3, 0, 1), (3, 2, 1, 1), (3, 2, 0, 2),
            (2, 3, 0, 2)]


def _layers(nd: int):
    """``(name, make(k, s, p, d, ceil), torch's pool per slot, fiber, dilated?)``."""
    mx, av = (F.max_pool2d, F.avg_pool2d) if nd == 2 else (F.max_pool3d, F.avg_pool3d)
    gmax, gavg = (GroupMaxPool2d, GroupAvgPool2d) if nd == 2 else (GroupMaxPool3d,
                                                                  GroupAvgPool3d)
    norm_group = "so2" if nd == 2 else "so3"
    return [
        ("max", lambda k, s, p, d, c: gmax(k, s, p, d, ceil_mode=c),
         lambda v, k, s, p, d, c: mx(v, k, s, p, d, ceil_mode=c), 4 if nd == 2 else 24, True),
        ("avg", lambda k, s, p, d, c: gavg(k, s, p, ceil_mode=c),
         lambda v, k, s, p, d, c: av(v, k, s, p, ceil_mode=c), 4 if nd == 2 else 24, False),
        ("norm", lambda k, s, p, d, c: NormMaxPool(k, s, p, d, ceil_mode=c, group=norm_group),
         lambda v, k, s, p, d, c: mx(v, k, s, p, d, ceil_mode=c), 3 if nd == 2 else 4, True),
    ]


@pytest.mark.parametrize("nd", [2, 3])
@pytest.mark.parametrize("ceil_mode", [False, True])
def test_the_sizes_taken_are_torchs_and_the_rest_is_a_value_error(nd, ceil_mode, gen):
    refused = taken = 0
    for (name, make, ref, fiber, dilated), n, (k, s, p, d) in itertools.product(
            _layers(nd), (1, 2, 3), _WINDOWS):
        if d > 1 and not dilated:
            continue
        spatial = (5,) * (nd - 1) + (n,)
        x = torch.randn(1, 2, fiber, *spatial, generator=gen, dtype=torch.float64)
        try:  # (the norm pool's per-slot reference is only for the output size)
            want = ref(x.flatten(1, 2), k, s, p, d, ceil_mode)
        except RuntimeError:
            want = None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # (inexact windows warn)
            if want is None or (name == "avg" and nd == 3 and n < k):
                refused += 1  # (torch's avg_pool3d refuses n < k even where padding fills it)
                with pytest.raises(ValueError, match=r"smaller than the (kernel's|pooling) "
                                                     r"window|must be at least kernel_size"):
                    make(k, s, p, d, ceil_mode)(x)
                continue
            got = make(k, s, p, d, ceil_mode)(x)
        taken += 1
        assert got.shape[-nd:] == want.shape[-nd:], (name, n, k, s, p, d)
        if name != "norm":
            torch.testing.assert_close(got, want.unflatten(1, (2, fiber)), rtol=0, atol=0)
    assert refused and taken, (refused, taken)


def test_the_refusal_names_the_ceil_mode_rule():
    x = torch.randn(1, 2, 24, 6, 5, 1)
    with pytest.raises(ValueError, match=r"group_max_pool3d: the input's width 1 \(\+ padding "
                                         r"2 x 0\) is smaller than the pooling window \(3\) by "
                                         r"the stride 2 or more.*shape \(1, 2, 24, 6, 5, 1\)"):
        GroupMaxPool3d(3, 2, 0, ceil_mode=True)(x)
    with pytest.raises(ValueError, match=r"spatial size 5x1 .* smaller than the kernel's "
                                         r"window 3x3 by the stride 2x2 or more"):
        GroupMaxPool2d(3, 2, 0, ceil_mode=True)(x[:, :, :4, 0])
    # one window overhanging the end by less than the stride is torch's, and ours
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (not exact: the window overhangs one end)
        y = GroupMaxPool3d(3, 2, 0, ceil_mode=True)(torch.randn(1, 2, 24, 6, 2, 2))
    assert y.shape[-3:] == (3, 1, 1)
