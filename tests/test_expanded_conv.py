"""ExpandedGroupConv2d: a group convolution holding a given dense expanded filter (the target of
``from_escnn`` for groups off the pixel grid). Its equivariance cases are in
equilayers/testing/_cases_expanded.py; escnn conversions in tests/test_interop.py."""

import pytest
import torch
from conftest import seeded_rng

from equilayers.functional import group_conv2d
from equilayers.nn import ExpandedGroupConv2d, GroupConv2d, LiftingConv2d
from equilayers.testing import assert_equivariant


def _pair(group="c8", lifting=False, **kw):
    """(our conv, ExpandedGroupConv2d holding its expanded filter), float64."""
    with seeded_rng(0):
        cls = LiftingConv2d if lifting else GroupConv2d
        conv = cls(2, 3, 3, group=group, **kw).double()
        return conv, ExpandedGroupConv2d.from_filter(conv.expanded_filter().detach(),
                                                     conv.bias.detach(), group=group,
                                                     lifting=lifting, **kw)


@pytest.mark.parametrize("group", ["c8", "d8", "c3", "d4"])
@pytest.mark.parametrize("lifting", [False, True])
def test_same_outputs_as_the_source_layer(group, lifting, gen):
    conv, ours = _pair(group, lifting, padding=1, stride=2)
    n = conv.fiber_out
    x = torch.randn((2, 2, 9, 9) if lifting else (2, 2, n, 9, 9), generator=gen,
                    dtype=torch.float64)
    y = ours(x)
    assert y.shape == (2, 3, n, 5, 5)  # floor((9 + 2 - 3) / 2) + 1
    torch.testing.assert_close(y, conv(x), rtol=0, atol=1e-12)
    assert ours.in_rep == ("trivial" if lifting else "regular") and ours.out_rep == "regular"
    assert ours.grid_equivariance_error() < 1e-12


def test_functional_twin_and_frozen_default(gen):
    w = torch.randn(3, 2, 4, 3, 3, generator=gen, dtype=torch.float64)
    b = torch.randn(3, generator=gen, dtype=torch.float64)
    x = torch.randn(2, 2, 4, 7, 7, generator=gen, dtype=torch.float64)
    conv = GroupConv2d(2, 3, 3, padding=1, group="p4").double()
    with torch.no_grad():
        conv.weight.copy_(w)
        conv.bias.copy_(b)
    ours = ExpandedGroupConv2d.from_filter(conv.expanded_filter().detach(), b, padding=1,
                                           group="c4")
    torch.testing.assert_close(ours(x), group_conv2d(x, w, b, padding=1, group="p4"))
    assert not ours.weight.requires_grad and not ours.bias.requires_grad
    fresh = ExpandedGroupConv2d(2, 3, 3, group="c8")
    assert fresh.weight.shape == (24, 16, 3, 3) and fresh.bias.shape == (3,)
    assert fresh.weight.abs().sum() == 0 and fresh.grid_equivariance_error() == 0.0
    assert repr(fresh) == "ExpandedGroupConv2d(2, 3, kernel_size=3, group='c8')"
    assert "lifting=True, stride=(2, 2), bias=False" in repr(
        ExpandedGroupConv2d(2, 3, 3, stride=2, bias=False, group="c8", lifting=True))


def test_grid_error_detects_a_broken_filter(gen):
    _, ours = _pair("c8", padding=1)
    with torch.no_grad():
        ours.weight[5, 3, 1, 2] += 0.5 * ours.weight.abs().max()
    assert ours.grid_equivariance_error() > 0.1
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(ours, torch.randn(1, 2, 8, 7, 7, generator=gen,
                                             dtype=torch.float64),
                           "c8", elements=[g for g in ours.group.elements() if g.is_grid])


def test_per_slot_bias_and_bad_inputs():
    w = torch.zeros(16, 8, 3, 3)
    ok = ExpandedGroupConv2d.from_filter(w, torch.arange(2.0).repeat_interleave(8), group="c8")
    assert ok.bias.tolist() == [0.0, 1.0]
    with pytest.raises(ValueError, match="constant over each regular field"):
        ExpandedGroupConv2d.from_filter(w, torch.arange(16.0), group="c8")
    with pytest.raises(ValueError, match=r"bias must be \(C_out,\) = \(2,\)"):
        ExpandedGroupConv2d.from_filter(w, torch.zeros(3), group="c8")
    with pytest.raises(ValueError, match=r"\|G\| = 8 of 'c8'.*got \(15, 8, 3, 3\)"):
        ExpandedGroupConv2d.from_filter(torch.zeros(15, 8, 3, 3), group="c8")
    with pytest.raises(ValueError, match="continuous"):
        ExpandedGroupConv2d(2, 3, 3, group="so2")
    with pytest.raises(ValueError, match="padding_mode='wrap' must be one of"):
        ExpandedGroupConv2d(2, 3, 3, padding_mode="wrap")
    with pytest.raises(ValueError, match="square"):
        ExpandedGroupConv2d(2, 3, (3, 5))
    with pytest.raises(ValueError, match="in_channels=0 must be an integer >= 1"):
        ExpandedGroupConv2d(0, 3, 3)
    m = ExpandedGroupConv2d(2, 3, 3, group="c8")
    with pytest.raises(ValueError, match=r"regular fiber of \|G\|=8 slots"):
        m(torch.randn(1, 2, 4, 5, 5))
    with pytest.raises(ValueError, match="expects 5-D"):
        m(torch.randn(1, 2, 5, 5))


def test_stride2_even_size_warns_once():
    _, ours = _pair("c8", padding=1, stride=2)
    x = torch.randn(1, 2, 8, 10, 10, dtype=torch.float64)
    with pytest.warns(UserWarning, match=r"ExpandedGroupConv2d \(c8\) is not exactly "
                      r"equivariant even on its grid subgroup c4"):
        ours(x)
    ours(x)  # once per module: a second warning would fail under -W error in CI


def test_non_contiguous_gradcheck_state_dict(gen):
    _, ours = _pair("d8", padding=1)
    x = torch.randn(1, 2, 16, 5, 5, generator=gen, dtype=torch.float64)
    nc = x.transpose(-1, -2).contiguous().transpose(-1, -2)
    assert not nc.is_contiguous()
    torch.testing.assert_close(ours(nc), ours(x))
    tiny = ExpandedGroupConv2d(1, 1, 3, padding=1, group="c3", dtype=torch.float64)
    with torch.no_grad():
        tiny.weight.normal_(generator=gen)
        tiny.bias.normal_(generator=gen)
    tiny.requires_grad_(True)  # gradients work once enabled (they are off by default)
    small = torch.randn(1, 1, 3, 4, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, w, b: tiny(a), (small, tiny.weight, tiny.bias))
    other = ExpandedGroupConv2d(2, 3, 3, padding=1, group="d8", dtype=torch.float64)
    other.load_state_dict(ours.state_dict())
    torch.testing.assert_close(other(x), ours(x), rtol=0, atol=0)


def test_torch_compile_fullgraph(gen):
    _, ours = _pair("c8", padding=1)
    x = torch.randn(2, 2, 8, 7, 7, generator=gen, dtype=torch.float64)
    compiled = torch.compile(ours, fullgraph=True, backend="eager")
    torch.testing.assert_close(compiled(x), ours(x))
