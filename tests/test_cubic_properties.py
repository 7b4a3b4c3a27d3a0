"""Hypothesis properties of the 3-D group convs over sizes, kernels, strides, paddings and
padding modes (issue 16): the output size is ``nn.Conv3d``'s, and ``check_grid`` is right both
ways. No finding -> exact over every element of the group (float64); a finding -> the layer
warns, and the measured error is real (the negative control: the predicate must not call an
inexact configuration exact, nor an exact one broken)."""

from __future__ import annotations

import warnings

import torch
from conftest import seeded_rng
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from torch import nn

import equilayers.nn as enn
from equilayers import check_grid
from equilayers.groups import get
from equilayers.testing import equivariance_error


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(group=st.sampled_from(["c4z", "d4z", "o", "oh", "t"]), k=st.integers(1, 4),
       stride=st.integers(1, 3), padding=st.integers(0, 2), size=st.integers(4, 8),
       depth=st.integers(4, 8), mode=st.sampled_from(["zeros", "circular", "reflect"]),
       lifting=st.booleans(), basis=st.sampled_from(["voxel", "harmonic"]))
# reflect padding reads samples 1 and 2 there, which the flip swaps: exact although the padded
# grid is not symmetric; check_grid and the warning called it inexact (a hypothesis draw in
# CI, 2026-12-05), the law now compares the windows' samples (windows_coincide)
@example(group="c4z", k=1, stride=3, padding=1, size=4, depth=4, mode="reflect",
         lifting=False, basis="voxel")
def test_property_check_grid_is_right_both_ways(group, k, stride, padding, size, depth, mode,
                                                 lifting, basis):
    grp = get(group)
    if group in ("o", "oh"):
        depth = size  # the cube's rotations trade every pair of dims
    if mode == "reflect" and padding >= min(size, depth):
        mode = "zeros"
    if min(size, depth) + 2 * padding < k:
        return
    cls = enn.LiftingConv3d if lifting else enn.GroupConv3d
    with seeded_rng(0):
        conv = cls(2, 2, k, stride=stride, padding=padding, padding_mode=mode,
                   group=group, basis=basis).double()
    shape = ((1, 2, depth, size, size) if lifting
             else (1, 2, grp.order, depth, size, size))
    findings = check_grid(conv, shape, group, shifts=False)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        y = conv(x)
        error = equivariance_error(conv, x, group)
    ref = nn.Conv3d(2, 2, k, stride=stride, padding=padding)(torch.zeros(1, 2, depth, size,
                                                                         size))
    assert y.shape[-3:] == ref.shape[-3:]
    event("inexact" if findings else "exact")
    if findings:
        assert rec, f"{findings} but no warning"
        assert error > 1e-8, (findings, error)
    else:
        assert not rec, [str(r.message) for r in rec]
        assert error <= 1e-10, error
