"""LiftingConv2d / GroupConv2d: exact equivariance where ``exactness_problems`` predicts it
(hypothesis), the output size formula, and the inexact configurations and their warning."""

import warnings

import pytest
import torch
from _gconv_common import GROUPS, _rand
from conftest import seeded_rng
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from equilayers.functional import exactness_problems
from equilayers.functional._gconv import resolve_padding
from equilayers.groups import get
from equilayers.nn import GroupConv2d, LiftingConv2d
from equilayers.testing import equivariance_error


def _ref_size(n, k, s, d, lo, hi):
    return (n + lo + hi - d * (k - 1) - 1) // s + 1


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(group=st.sampled_from(GROUPS), k=st.integers(1, 7), stride=st.integers(1, 3),
       dilation=st.integers(1, 2), padding=st.one_of(st.integers(0, 3), st.just("same"),
                                                    st.just("valid")),
       size=st.integers(7, 14), c_in=st.integers(1, 3), c_out=st.integers(1, 3),
       mode=st.sampled_from(["zeros", "reflect", "replicate", "circular"]),
       lifting=st.booleans(), basis=st.sampled_from(["pixel", "harmonic"]))
def test_property_exact_when_predicted(group, k, stride, dilation, padding, size, c_in, c_out,
                                       mode, lifting, basis):
    """Output size matches nn.Conv2d's formula; exactness_problems() == [] implies exact
    equivariance (<= 1e-10 in float64), and a predicted problem is warned about; for the
    pixel filters and the steerable ones (even sizes sampled between the middle pixels)."""
    if padding == "same" and stride != 1:
        stride = 1
    pad = resolve_padding(padding, k, dilation)
    if mode != "zeros" and max(pad) >= size:  # reflect needs pad < size
        mode = "zeros"
    if size + pad[0] + pad[1] < dilation * (k - 1) + 1:
        return
    cls = LiftingConv2d if lifting else GroupConv2d
    with seeded_rng(0):
        m = cls(c_in, c_out, k, stride, padding, dilation, padding_mode=mode, group=group,
                basis=basis).double()
    n = get(group).order
    shape = (2, c_in, size, size) if lifting else (2, c_in, n, size, size)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    problems = exactness_problems(group, (size, size), k, stride, pad, dilation)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        y = m(x)
    assert bool(rec) == bool(problems), [str(r.message) for r in rec]
    h = _ref_size(size, k, stride, dilation, pad[2], pad[3])
    assert y.shape == (2, c_out, n, h, h)
    if not problems:
        assert equivariance_error(m, x, group) <= 1e-10


@pytest.mark.parametrize("group", ["p4", "p4m"])
def test_exact_in_float32(group, gen):
    stack = nn.Sequential(LiftingConv2d(3, 8, 5, padding=2, group=group), nn.ReLU(),
                          GroupConv2d(8, 8, 3, stride=2, padding=1, group=group))
    x = _rand(gen, 2, 3, 33, 33, dtype=torch.float32)
    assert equivariance_error(stack, x, group, in_rep="trivial", out_rep="regular") <= 1e-5


def test_even_size_stride2_is_not_exact(gen):
    """Stride 2 on 32x32 samples different pixels after a rotation: error O(1)."""
    m = GroupConv2d(4, 4, 3, stride=2, padding=1, group="p4").double()
    with pytest.warns(UserWarning, match="stride 2 does not tile"):
        err = equivariance_error(m, _rand(gen, 2, 4, 4, 32, 32), "p4")
    assert err > 0.1


@pytest.mark.parametrize("kwargs", [dict(stride=(1, 3)), dict(dilation=(2, 1)),
                                    dict(padding=(1, 0))])
def test_options_that_differ_between_height_and_width_are_not_exact_under_quarter_turns(
        kwargs, gen):
    """A quarter turn trades height and width, so a conv whose stride, dilation or padding
    differs between them is not equivariant to it, at any size (the rotated input's output
    does not even have the rotated shape): the law must say so, and the layer warn, for c4
    and d4. d2 and d1 trade no dims: the same options are exact there on a size that tiles
    (the control, measured)."""
    x = _rand(gen, 2, 3, 13, 13)
    for group in ("c4", "d4"):
        assert [p for p in exactness_problems(group, (13, 13), 3, kwargs.get("stride", 1),
                                              _pad(kwargs.get("padding", 1)),
                                              kwargs.get("dilation", 1))
                if "swap height and width" in p], (group, kwargs)
        m = LiftingConv2d(3, 4, 3, **{"padding": 1, **kwargs}, group=group).double()
        with pytest.warns(UserWarning, match="swap height and width"):
            m(x)
    for group in ("d2", "d1"):
        assert exactness_problems(group, (13, 13), 3, kwargs.get("stride", 1),
                                  _pad(kwargs.get("padding", 1)),
                                  kwargs.get("dilation", 1)) == [], (group, kwargs)
        m = LiftingConv2d(3, 4, 3, **{"padding": 1, **kwargs}, group=group).double()
        assert equivariance_error(m, x, group, in_rep="trivial", out_rep="regular") < 1e-12


def _pad(padding) -> tuple[int, int, int, int]:
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    return (pw, pw, ph, ph)


def test_warning_once_per_module(gen):
    m = GroupConv2d(2, 2, 3, stride=2, padding=1, group="p4").double()
    m(_rand(gen, 1, 2, 4, 9, 9))  # exact: no warning, not consumed
    with pytest.warns(UserWarning, match=r"not exactly equivariant on input of size 8x8.*"
                                         r"use an input height of 9 or 7"):
        m(_rand(gen, 1, 2, 4, 8, 8))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m(_rand(gen, 1, 2, 4, 8, 8))
    with pytest.warns(UserWarning, match="asymmetric"):
        GroupConv2d(2, 2, 4, padding="same", group="d1").double()(_rand(gen, 1, 2, 2, 6, 6))
