"""ExpandedGroupConv2d: a group convolution holding a given dense expanded filter (the target of
``from_escnn`` for groups off the pixel grid). Its equivariance cases are in
equilayers/testing/_cases_expanded.py; escnn conversions in tests/test_interop_2d_off_grid.py."""

import warnings

import pytest
import torch
from conftest import seeded_rng

from equilayers.functional import _gconv as G
from equilayers.functional import expand_group_filter, expanded_group_conv2d, group_conv2d
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


#: (group, lifting, in, out, conv options): the module and its functional twin must agree.
TWIN_CONFIGS = [
    ("c8", False, 2, 3, dict(padding=1)),
    ("d8", True, 2, 3, dict(padding=2, stride=2)),
    ("c3", False, 4, 2, dict(groups=2, padding=1, padding_mode="circular")),
    ("d4", True, 4, 6, dict(groups=2, padding=1, dilation=2, padding_mode="reflect")),
    ("c6", False, 2, 2, dict(padding="same", padding_mode="replicate", bias=False)),
    ("c8", True, 1, 2, dict(kernel_size=4, padding="same", bias=False)),  # asymmetric pad
    ("d2", False, 2, 2, dict(stride=(2, 1), padding=(0, 1))),
]


@pytest.mark.parametrize("group, lifting, c_in, c_out, kw", TWIN_CONFIGS,
                         ids=[f"{c[0]}-{'lift' if c[1] else 'group'}-{i}"
                              for i, c in enumerate(TWIN_CONFIGS)])
def test_module_equals_its_functional_twin(group, lifting, c_in, c_out, kw, gen):
    kw = dict(kw)
    k = kw.pop("kernel_size", 3)
    bias = kw.pop("bias", True)
    m = ExpandedGroupConv2d(c_in, c_out, k, **kw, bias=bias, group=group, lifting=lifting,
                            dtype=torch.float64)
    with torch.no_grad():  # any filter: the twin holds whatever it is given
        m.weight.normal_(generator=gen)
        if m.bias is not None:
            m.bias.normal_(generator=gen)
    n = m.fiber_out
    x = torch.randn((2, c_in, 9, 8) if lifting else (2, c_in, n, 9, 8), generator=gen,
                    dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # odd sizes: inexact on the grid, warned; not tested
        y = m(x)
    opts = {a: getattr(m, a) for a in ("stride", "padding", "dilation", "groups",
                                       "padding_mode")}
    twin = expanded_group_conv2d(x, m.weight, m.bias, **opts, group=group, lifting=lifting)
    assert twin.shape == y.shape and y.shape[:3] == (2, c_out, n)
    torch.testing.assert_close(twin, y, rtol=0, atol=0)
    # the same numbers as the plain conv of the flattened fiber (the definition)
    flat = x if lifting else x.flatten(1, 2)
    pad = G.resolve_padding(m.padding, k, m.dilation)
    flat = torch.nn.functional.pad(flat, pad, mode="constant" if m.padding_mode == "zeros"
                                   else m.padding_mode)
    ref = torch.nn.functional.conv2d(flat, m.weight, None if m.bias is None
                                     else m.bias.repeat_interleave(n), m.stride, 0, m.dilation,
                                     m.groups)
    torch.testing.assert_close(twin, ref.unflatten(1, (c_out, n)), rtol=1e-12, atol=1e-12)


def test_functional_twin_of_an_expanded_group_filter_is_group_conv2d(gen):
    """The pixel group conv is the expanded conv of its expanded filter: equal outputs; and
    a negative control: the filter of another group (c4's filter read as d2's: both have 4
    slots) gives other numbers, which the equivariance harness flags."""
    w = torch.randn(3, 2, 4, 3, 3, generator=gen, dtype=torch.float64)
    b = torch.randn(3, generator=gen, dtype=torch.float64)
    x = torch.randn(2, 2, 4, 7, 7, generator=gen, dtype=torch.float64)
    filt = expand_group_filter(w, "p4")
    got = expanded_group_conv2d(x, filt, b, padding=1, group="c4")
    torch.testing.assert_close(got, group_conv2d(x, w, b, padding=1, group="p4"))
    assert_equivariant(lambda t: expanded_group_conv2d(t, filt, b, padding=1, group="c4"), x,
                       "c4")
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(lambda t: expanded_group_conv2d(t, filt, b, padding=1, group="d2"),
                           x, "d2")


def test_functional_gradcheck(gen):
    for lifting in (False, True):
        f_in = 1 if lifting else 3
        x = torch.randn((1, 2, 5, 5) if lifting else (1, 2, 3, 5, 5), generator=gen,
                        dtype=torch.float64, requires_grad=True)
        w = torch.randn(6, 2 * f_in, 3, 3, generator=gen, dtype=torch.float64,
                        requires_grad=True)
        b = torch.randn(2, generator=gen, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(
            lambda a, ww, bb, lift=lifting: expanded_group_conv2d(
                a, ww, bb, padding=1, padding_mode="circular", group="c3", lifting=lift),
            (x, w, b))


def _bad_functional(**kw):
    args = dict(x=torch.randn(1, 2, 4, 6, 6), weight=torch.randn(12, 8, 3, 3),
                bias=torch.zeros(3), group="c4")
    return expanded_group_conv2d(**{**args, **kw})


@pytest.mark.parametrize("kw, error, match", [
    (dict(weight=torch.randn(13, 8, 3, 3)), ValueError, r"weight must be .*\(13, 8, 3, 3\)"),
    (dict(weight=torch.randn(12, 6, 3, 3)), ValueError, r"weight must be .*dim 1 by 4"),
    (dict(weight=torch.randn(12, 8, 3)), ValueError, "weight must be 4-D"),
    (dict(weight=torch.randn(12, 8, 3, 2)), ValueError, "weight must have square filters"),
    (dict(weight=torch.randn(12, 8, 3, 3).double()), TypeError,
     "x has dtype torch.float32, but weight is torch.float64"),
    (dict(weight=torch.randn(12, 8, 3, 3).long()), TypeError, "weight has dtype torch.int64"),
    (dict(bias=torch.zeros(12)), ValueError, r"bias must have shape \(3,\)"),
    (dict(bias=torch.zeros(3).double()), TypeError, "bias is torch.float64"),
    (dict(groups=2), ValueError, "groups=2 must divide C_out=3"),
    (dict(group="so2"), ValueError, "group='so2' is continuous"),
    (dict(group="o"), ValueError, "group='o' acts on volumes"),
    (dict(group="c8"), ValueError, r"weight must be .*\|G\|=8"),
    (dict(group=None), TypeError, "group=None must be a group name"),
    (dict(lifting=1), TypeError, "lifting=1 must be True or False"),
    (dict(lifting=True), ValueError, r"lifting=True expects 4-D .*pass lifting=False"),
    (dict(x=torch.randn(1, 2, 6, 6)), ValueError, r"lifting=False expects 5-D .*lifting=True"),
    (dict(x=torch.randn(1, 3, 4, 6, 6)), ValueError, "C_in=2 channels in dim 1"),
    (dict(x=torch.randn(1, 2, 8, 6, 6)), ValueError, r"regular fiber of \|G\|=4"),
    (dict(x=torch.randn(1, 2, 4, 2, 2)), ValueError, "smaller than the kernel's window"),
    (dict(padding_mode="wrap"), ValueError, "padding_mode='wrap' must be one of"),
    (dict(padding=6, padding_mode="reflect"), ValueError,
     "padding_mode='reflect' with padding"),
    (dict(padding="same", stride=2), ValueError, "padding='same' needs stride=1"),
    (dict(padding="full"), ValueError, "padding='full' must be an int, a pair, 'same' or 'valid'"),
    (dict(stride=0), ValueError, "stride=0 must be"),
    (dict(dilation=(1, 2, 3)), TypeError, r"dilation=\(1, 2, 3\) must be"),
    (dict(x=[1.0]), TypeError, "x must be a tensor"),
])
def test_functional_bad_inputs_are_named(kw, error, match):
    with pytest.raises(error, match=match):
        _bad_functional(**kw)


def test_module_rejects_a_cube_group_and_a_non_flag_lifting():
    """Both were accepted: group='o' built a layer of 24 slots on images (its grid check and
    equivariance meaningless), lifting='no' a lifting conv (read by its truth value)."""
    with pytest.raises(ValueError, match="group='o' acts on volumes"):
        ExpandedGroupConv2d(2, 3, 3, group="o")
    with pytest.raises(ValueError, match="acts on volumes"):
        ExpandedGroupConv2d.from_filter(torch.zeros(24, 48, 3, 3), group="o")
    with pytest.raises(TypeError, match="lifting='no' must be True or False"):
        ExpandedGroupConv2d(2, 3, 3, group="c8", lifting="no")
    assert ExpandedGroupConv2d(2, 3, 3, group="c8", lifting=True).lifting is True


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


def test_an_int_dilation_set_after_construction_works(gen):
    """``conv.dilation = 2`` (an int, as ``nn.Conv2d`` and ``GroupConv2d`` take it) gave
    ``TypeError: 'int' object is not subscriptable`` deep in the forward; now it computes as
    a layer built with ``dilation=2`` (the same filter), with or without ``padding="same"``."""
    x = torch.randn(2, 2, 8, 9, 9, dtype=torch.float64, generator=gen)
    for padding in (1, "same"):
        _, m = _pair(padding=padding)
        m.dilation = 2
        fresh = ExpandedGroupConv2d.from_filter(m.weight, m.bias, padding=padding, dilation=2,
                                                group="c8")
        assert torch.equal(m(x), fresh(x))
        assert m(x).shape == ((2, 3, 8, 7, 7) if padding == 1 else (2, 3, 8, 9, 9))
