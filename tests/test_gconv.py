"""LiftingConv2d / GroupConv2d: shapes, exactness (hypothesis), gradients, state, cache, errors."""

import copy
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import seeded_rng
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import equilayers.functional as EF
import equilayers.nn as enn
from equilayers.functional import (
    exactness_problems,
    expand_group_filter,
    expand_lifting_filter,
    group_conv2d,
    lifting_conv2d,
)
from equilayers.functional._gconv import resolve_padding
from equilayers.groups import act, act_spatial, get, group_fourier_basis
from equilayers.nn import GroupConv2d, LiftingConv2d
from equilayers.testing import equivariance_error

GROUPS = ["c1", "c2", "c4", "d1", "d2", "d4"]


def _rand(gen, *shape, dtype=torch.float64):
    return torch.randn(*shape, generator=gen, dtype=dtype)


def _ref_size(n, k, s, d, lo, hi):
    return (n + lo + hi - d * (k - 1) - 1) // s + 1


@pytest.mark.parametrize("group", GROUPS)
def test_smoke_shapes(group, gen):
    n = get(group).order
    lift = LiftingConv2d(3, 5, 3, padding=1, group=group)
    conv = GroupConv2d(5, 2, 3, stride=2, group=group)
    y = lift(_rand(gen, 2, 3, 9, 9, dtype=torch.float32))
    assert y.shape == (2, 5, n, 9, 9)
    assert conv(y).shape == (2, 2, n, 4, 4)


def test_expanded_filter_layout(gen):
    """Block [o, g, c] of the expanded filter is g . psi[o, c] (trivial / regular action)."""
    grp = get("d4")
    w = _rand(gen, 3, 2, 5, 5)
    e = expand_lifting_filter(w, grp).reshape(3, 8, 2, 5, 5)
    for i, g in enumerate(grp.elements()):
        torch.testing.assert_close(e[:, i], act_spatial(w, g), rtol=0, atol=0)
    w = _rand(gen, 3, 2, 8, 3, 3)  # group axis: coefficients in the group's Fourier basis
    per_element = torch.einsum("kh,ockxy->ochxy", group_fourier_basis(grp), w)
    e = expand_group_filter(w, grp).reshape(3, 8, 2, 8, 3, 3)
    for i, g in enumerate(grp.elements()):
        torch.testing.assert_close(e[:, i], act(per_element, g, "regular"), rtol=0, atol=1e-15)


def test_index_buffer_is_not_persistent():
    conv = GroupConv2d(4, 4, 3, group="p4m")
    assert set(conv.state_dict()) == {"weight", "bias"}
    assert conv.expansion_index.shape == (8, 4 * 8, 3, 3)  # one output field's table
    assert conv.weight.shape == (4, 4, 8, 3, 3)
    assert LiftingConv2d(3, 4, 5, group="p4").weight.shape == (4, 3, 5, 5)


def test_gather_table_does_not_grow_with_out_channels():
    # the table is one output field's: the whole expanded filter's int64 index would be twice
    # the float32 filter (1.2 GB for a p4m 512 -> 512 k3 conv)
    for cls in (LiftingConv2d, GroupConv2d):
        small, wide = cls(4, 2, 3, group="p4m"), cls(4, 64, 3, group="p4m")
        assert wide.expansion_index.shape == small.expansion_index.shape
        assert wide.expansion_index.numel() * 64 == wide._expand().numel()


def test_module_equals_functional(gen):
    lift = LiftingConv2d(4, 6, 3, stride=2, padding=1, groups=2, group="d2").double()
    x = _rand(gen, 2, 4, 9, 9)
    y = lifting_conv2d(x, lift.weight, lift.bias, 2, 1, 1, 2, group="d2")
    torch.testing.assert_close(lift(x), y, rtol=0, atol=0)
    conv = GroupConv2d(6, 2, 5, padding="same", padding_mode="reflect", group="d2").double()
    y2 = group_conv2d(y, conv.weight, conv.bias, padding="same", padding_mode="reflect",
                      group="d2")
    torch.testing.assert_close(conv(y), y2, rtol=0, atol=0)


def test_non_contiguous_input(gen):
    conv = GroupConv2d(3, 2, 3, padding=1, group="p4").double()
    x = _rand(gen, 2, 4, 3, 7, 7).transpose(1, 2)  # (2, 3, 4, 7, 7) non-contiguous
    assert not x.is_contiguous()
    torch.testing.assert_close(conv(x), conv(x.contiguous()), rtol=0, atol=0)


def test_bias_is_one_value_per_field(gen):
    conv = GroupConv2d(2, 3, 1, group="p4m").double()
    with torch.no_grad():
        conv.weight.zero_()
    y = conv(_rand(gen, 1, 2, 8, 4, 4))
    torch.testing.assert_close(y, conv.bias.view(1, 3, 1, 1, 1).expand_as(y))
    # and the functionals' message says so (it said "per output channel": a user passing
    # C_out * |G| values, one per channel of the expanded conv, was told to do just that)
    from equilayers import functional as EF
    with pytest.raises(ValueError, match=r"shape \(3,\) \(one value per output field\)"):
        EF.group_conv2d(_rand(gen, 1, 2, 8, 4, 4), conv.weight, torch.zeros(24), group="p4m")


@pytest.mark.parametrize("make", [
    lambda: LiftingConv2d(2, 3, 3, padding=1, group="p4m"),
    lambda: GroupConv2d(2, 3, 3, padding=1, group="p4"),
    lambda: GroupConv2d(2, 3, 3, padding=1, group="c8"),  # steerable, regular fields
    lambda: LiftingConv2d(2, 3, 3, padding=1, group="c8"),
], ids=["lift-p4m", "p4", "c8", "lift-c8"])
def test_bias_per_slot_is_a_gather_through_bias_index(make, gen):
    """The bias per output slot is one ``index_select`` through the integer table
    ``bias_index`` (the field of each slot; fewer aten ops per training step than
    ``repeat_interleave``): a random bias lands on every slot of its field, and its gradient
    sums its field's slots. The control: a table written in place is caught (it would move
    the bias to other fields) and named."""
    with seeded_rng(0):
        m = make().double()
    with torch.no_grad():
        m.bias.copy_(torch.randn(3, generator=gen, dtype=torch.float64))
    x = _rand(gen, 2, 2, 5, 5) if m.lifting else _rand(gen, 2, 2, m.fiber_in, 5, 5)
    y = m(x)
    no_bias = F.conv2d(x if m.lifting else x.flatten(1, 2), m._expand(), None, padding=1)
    torch.testing.assert_close(
        y - no_bias.unflatten(1, (3, m.fiber_out)),
        m.bias.view(1, 3, 1, 1, 1).expand_as(y), rtol=0, atol=1e-12)
    assert torch.equal(m._slot_bias(), m.bias.repeat_interleave(m.fiber_out))
    grad = torch.randn(y.shape, generator=gen, dtype=torch.float64)
    (g,) = torch.autograd.grad(y, m.bias, grad)
    torch.testing.assert_close(g, grad.sum(dim=(0, 2, 3, 4)), rtol=0, atol=1e-12)
    with torch.no_grad():
        m.bias_index[0] = 1
    with pytest.raises(RuntimeError, match="its integer table 'bias_index'"):
        m(x)


def test_a_conv_pickled_before_bias_index_still_runs(gen):
    """A module pickled before the slot bias was a gather has no ``bias_index``: unpickling
    builds it, and the clone equals the original. The control: the same state restored
    without ``__setstate__`` has no table, and its forward fails."""
    import pickle
    m = GroupConv2d(2, 3, 3, padding=1, group="p4").double()
    with torch.no_grad():
        m.bias.copy_(torch.randn(3, generator=gen, dtype=torch.float64))
    state = m.__getstate__()
    del state["bias_index"]
    old = GroupConv2d.__new__(GroupConv2d)
    old.__setstate__(state)
    x = _rand(gen, 1, 2, 4, 5, 5)
    torch.testing.assert_close(pickle.loads(pickle.dumps(old))(x), m(x), rtol=0, atol=0)
    torch.testing.assert_close(old(x), m(x), rtol=0, atol=0)
    bare = GroupConv2d.__new__(GroupConv2d)
    bare.__dict__.update(state)
    with pytest.raises(AttributeError, match="bias_index"):
        bare(x)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(group=st.sampled_from(GROUPS), k=st.integers(1, 7), stride=st.integers(1, 3),
       dilation=st.integers(1, 2), padding=st.one_of(st.integers(0, 3), st.just("same"),
                                                    st.just("valid")),
       size=st.integers(7, 14), c_in=st.integers(1, 3), c_out=st.integers(1, 3),
       mode=st.sampled_from(["zeros", "reflect", "replicate", "circular"]),
       lifting=st.booleans())
def test_property_exact_when_predicted(group, k, stride, dilation, padding, size, c_in, c_out,
                                       mode, lifting):
    """Output size matches nn.Conv2d's formula; exactness_problems() == [] implies exact
    equivariance (<= 1e-10 in float64), and a predicted problem is warned about."""
    if padding == "same" and stride != 1:
        stride = 1
    pad = resolve_padding(padding, k, dilation)
    if mode != "zeros" and max(pad) >= size:  # reflect needs pad < size
        mode = "zeros"
    if size + pad[0] + pad[1] < dilation * (k - 1) + 1:
        return
    cls = LiftingConv2d if lifting else GroupConv2d
    with seeded_rng(0):
        m = cls(c_in, c_out, k, stride, padding, dilation, padding_mode=mode, group=group).double()
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


@pytest.mark.parametrize("cls,shape", [(LiftingConv2d, (1, 2, 5, 5)),
                                       (GroupConv2d, (1, 2, 4, 4, 4))])
def test_gradcheck(cls, shape, gen):
    m = cls(2, 2, 3, padding=1, padding_mode="circular", group="p4").double()
    x = _rand(gen, *shape).requires_grad_(True)
    fn = lifting_conv2d if cls is LiftingConv2d else group_conv2d
    assert torch.autograd.gradcheck(
        lambda x, w, b: fn(x, w, b, padding=1, padding_mode="circular", group="p4"),
        (x, m.weight, m.bias), fast_mode=True)


def test_state_dict_round_trip_train_eval(gen):
    a = GroupConv2d(3, 4, 3, padding=1, group="p4m").double()
    x = _rand(gen, 2, 3, 8, 7, 7)
    sd_train = {k: v.clone() for k, v in a.state_dict().items()}
    a.eval()
    with torch.no_grad():
        y = a(x)
    sd_eval = a.state_dict()
    assert sd_train.keys() == sd_eval.keys()
    for k in sd_train:
        assert torch.equal(sd_train[k], sd_eval[k])
    b = GroupConv2d(3, 4, 3, padding=1, group="p4m").double()
    b.load_state_dict(sd_eval)
    b.eval()
    with torch.no_grad():
        torch.testing.assert_close(b(x), y, rtol=0, atol=0)
    b.train()
    torch.testing.assert_close(b(x), y, rtol=0, atol=0)


def _fresh(m, x):
    return F.conv2d(x.flatten(1, 2), m._expand().detach(), m.bias.repeat_interleave(
        m.fiber_out), padding=1).unflatten(1, (m.out_channels, m.fiber_out))


def test_every_weight_change_reaches_the_next_eval_forward(gen):
    """Nothing stale (the eval filter is checked against the weight on every call): whatever
    route changes the weight, the next eval forward uses it
    (an optimizer step, fused too, which does not bump ``_version``; ``load_state_dict``;
    in-place edits with or without ``.data``; ``.to(dtype)``)."""
    m = GroupConv2d(3, 4, 3, padding=1, group="p4").double()
    x = _rand(gen, 2, 3, 4, 7, 7)
    m.eval()
    with torch.no_grad():
        y0 = m(x)
    for opt in (torch.optim.SGD(m.parameters(), lr=0.5),
                torch.optim.AdamW(m.parameters(), lr=0.1, fused=True)):
        opt.zero_grad()
        m(x).square().sum().backward()
        opt.step()
        with torch.no_grad():
            y1 = m(x)
            torch.testing.assert_close(y1, _fresh(m, x), rtol=0, atol=0)
            assert not torch.allclose(y0, y1)
            y0 = y1
    other = GroupConv2d(3, 4, 3, padding=1, group="p4").double()
    m.load_state_dict(other.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(m(x), _fresh(other, x), rtol=0, atol=0)
        m.weight.mul_(2.0)
        torch.testing.assert_close(m(x), _fresh(m, x), rtol=0, atol=0)
    m.weight.data.mul_(0.5)  # .data: no version bump
    m.bias.data.add_(1.0)
    with torch.no_grad():
        torch.testing.assert_close(m(x), _fresh(m, x), rtol=0, atol=0)
        m.float()
        assert m(x.float()).dtype == torch.float32
        torch.testing.assert_close(m(x.float()), _fresh(m, x.float()))


def test_eval_with_grad_still_trains(gen):
    m = GroupConv2d(2, 2, 3, group="p4").double().eval()
    with torch.no_grad():
        m(_rand(gen, 1, 2, 4, 5, 5))  # cache filled
    m(_rand(gen, 1, 2, 4, 5, 5)).sum().backward()
    assert m.weight.grad is not None and m.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("kwargs,match", [
    (dict(group="c8", basis="pixel"),
     r"group 'c8' has rotations off the pixel grid.*basis='harmonic'.*groups: c1, c2, c4"),
    (dict(group="so2"), r"group 'so2' is continuous.*pass max_order=M"),
    (dict(group="so2", max_order=-1), r"max_order must be an integer >= 0.*got -1"),
    (dict(group="so2", max_order=1.5), r"max_order must be an integer >= 0.*got 1.5"),
    (dict(group="p4", basis="pixel", max_order=2),
     r"max_order=2 asks for harmonic fields.*basis='harmonic'"),
    (dict(group="c8", in_max_order=2), r"in_max_order=2 needs harmonic output.*max_order=M"),
    (dict(group="p5"), "unknown group 'p5'"),
    (dict(groups=3), "groups=3 must divide in_channels=4"),
    (dict(kernel_size=(3, 5)), "kernel_size must be a positive int"),
    (dict(padding_mode="mirror"), "padding_mode='mirror' must be one of"),
    (dict(padding="full"), "padding must be an int, a pair, 'same' or 'valid'"),
    (dict(padding="same", stride=2), "padding='same' needs stride=1"),
    (dict(basis="fourier"), "unknown basis 'fourier'.*'pixel'.*'harmonic'"),
    (dict(in_channels=0), "in_channels=0 must be an integer >= 1"),
])
def test_bad_arguments(kwargs, match):
    args = dict(in_channels=4, out_channels=6, kernel_size=3)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        GroupConv2d(**args)


@pytest.mark.parametrize("cls", [GroupConv2d, LiftingConv2d])
def test_numpy_channel_counts_are_sizes(cls):
    """``in_channels``/``out_channels``/``groups`` read off an array (numpy integers) are
    accepted as by ``nn.Conv2d`` and every other size argument (they were refused as "not a
    positive int", so UNet(np.int64(2), ...) failed); a float is a TypeError."""
    with seeded_rng(0):
        a = cls(np.int64(4), np.int32(6), 3, groups=np.int64(2))
    with seeded_rng(0):
        b = cls(4, 6, 3, groups=2)
    assert (type(a.in_channels), a.out_channels, a.groups) == (int, 6, 2)
    torch.testing.assert_close(a.weight, b.weight)
    with pytest.raises(TypeError, match=r"in_channels=4.0 must be an integer >= 1"):
        cls(4.0, 6, 3)


@pytest.mark.parametrize("cls", [GroupConv2d, LiftingConv2d])
def test_bias_must_be_a_bool(cls):
    """``bias=0`` or ``bias=None`` is not read as ``False`` behind the user's back."""
    for bias in (0, None, "True"):
        with pytest.raises(TypeError, match=rf"{cls.__name__}: bias={bias!r} must be True or "
                                            "False"):
            cls(4, 6, 3, bias=bias)


def test_bad_inputs(gen):
    conv = GroupConv2d(4, 2, 3, group="p4")
    with pytest.raises(ValueError, match=r"expects 5-D .* got shape \(2, 4, 9, 9\).*Lifting"):
        conv(torch.randn(2, 4, 9, 9))
    with pytest.raises(ValueError, match=r"C_in=4 channels.*\(2, 3, 4, 9, 9\)"):
        conv(torch.randn(2, 3, 4, 9, 9))
    with pytest.raises(ValueError, match=r"\|G\|=4 slots.*\(2, 4, 8, 9, 9\)"):
        conv(torch.randn(2, 4, 8, 9, 9))
    with pytest.raises(ValueError, match="expects 4-D"):
        LiftingConv2d(3, 2, 3)(torch.randn(2, 3, 4, 9, 9))
    with pytest.raises(ValueError, match="C_in=3 channels"):
        LiftingConv2d(3, 2, 3)(torch.randn(2, 4, 9, 9))


UNBATCHED = r"one unbatched sample\? .* pass x.unsqueeze\(0\) and take y\[0\]"


@pytest.mark.parametrize("make,shape", [
    (lambda: LiftingConv2d(3, 2, 3, group="p4"), (3, 9, 9)),
    (lambda: GroupConv2d(3, 2, 3, group="p4m"), (3, 8, 9, 9)),
    (lambda: GroupConv2d(3, 2, 3, group="so2", max_order=2), (3, 5, 9, 9)),
    (lambda: enn.GroupConvTranspose2d(3, 2, 3, group="p4"), (3, 4, 9, 9)),
    (lambda: enn.ExpandedGroupConv2d(3, 2, 3, group="p4"), (3, 4, 9, 9)),
    (lambda: enn.LiftingConv3d(3, 2, 3, group="o"), (3, 5, 5, 5)),
    (lambda: enn.GroupConv3d(3, 2, 3, group="c4z"), (3, 4, 5, 5, 5)),
    (lambda: enn.InvariantHead(3, 5, group="p4"), (3, 4, 9, 9))])
def test_an_unbatched_sample_is_named(make, shape):
    """torch's convs take one sample without a batch dim; ours need it, and the error says so
    (it named the lifting/group conv mix-up instead, the wrong fix). A batch of images given to
    a group conv keeps that hint."""
    with pytest.raises(ValueError, match=UNBATCHED):
        make()(torch.randn(shape))
    with pytest.raises(ValueError) as caught:
        make()(torch.randn(2, *shape[1:]))
    assert "unbatched" not in str(caught.value)


@pytest.mark.parametrize("make,shape", [
    (lambda: GroupConv2d(3, 2, 3, group="p4m"), (3, 4, 9, 9)),
    (lambda: GroupConv2d(3, 2, 3, group="so2", max_order=2), (3, 3, 9, 9)),
    (lambda: enn.GroupConvTranspose2d(3, 2, 3, group="p4"), (3, 2, 9, 9)),
    (lambda: enn.ExpandedGroupConv2d(3, 2, 3, group="p4"), (3, 2, 9, 9)),
    (lambda: enn.GroupConv3d(3, 2, 3, group="c4z"), (3, 2, 5, 5, 5)),
    (lambda: enn.InvariantHead(3, 5, group="p4"), (3, 2, 9, 9))])
def test_a_batch_whose_dim_1_is_not_the_fiber_is_not_called_unbatched(make, shape):
    """A rank short by one with C_in in dim 0 is one unbatched sample only when dim 1 is the
    fiber too: a batch of 3 images of 4 channels given to GroupConv2d(3, ..., 'p4m') (8
    slots) is the lifting/group mix-up, and the message keeps that hint, not the unbatched
    one. The control: with the fiber in dim 1 it is the unbatched hint."""
    with pytest.raises(ValueError) as caught:
        make()(torch.randn(shape))
    assert "unbatched" not in str(caught.value)
    fiber = {"GroupConv2d": None, "GroupConvTranspose2d": 4, "ExpandedGroupConv2d": 4,
             "GroupConv3d": 4, "InvariantHead": 4}
    m = make()
    f = fiber[type(m).__name__] or (8 if m.group.name == "d4" else 5)
    with pytest.raises(ValueError, match=UNBATCHED):
        m(torch.randn(shape[0], f, *shape[2:]))


def test_meta_device_and_repr():
    m = GroupConv2d(4, 4, 3, stride=2, padding=1, group="p4m", device="meta")
    assert m.weight.is_meta and m.expansion_index.is_meta
    r = repr(GroupConv2d(4, 4, 3, padding="same", padding_mode="circular", group="p4m"))
    assert "group='d4'" in r and "padding='same'" in r and "circular" in r


def test_deepcopy_and_to(gen):
    m = LiftingConv2d(2, 2, 3, group="p4")
    m2 = copy.deepcopy(m).double()
    assert m2.expansion_index.dtype == torch.long
    x = _rand(gen, 1, 2, 5, 5)
    torch.testing.assert_close(m2(x), m.double()(x))


def test_torch_compile_fullgraph(gen):
    net = nn.Sequential(LiftingConv2d(2, 4, 3, padding=1, group="p4m"), nn.ReLU(),
                        GroupConv2d(4, 2, 3, stride=2, padding=1, group="p4m"))
    x = _rand(gen, 2, 2, 9, 9, dtype=torch.float32)
    compiled = torch.compile(net, fullgraph=True, backend="eager")
    torch.testing.assert_close(compiled(x), net(x))
    compiled(x).sum().backward()
    assert net[0].weight.grad is not None
    net.eval()
    with torch.no_grad():  # the eval cache is bypassed while compiling: no graph break
        torch.testing.assert_close(compiled(x), net(x))


def test_input_checks_are_skipped_only_for_a_like_input():
    """The planar group convs skip their input checks (and the window checks of the conv
    helper) for an input like the last checked one; the key holds everything they read, so a
    different input, a changed option or a weight moved to the meta device after a good call is
    still refused by name (a memo keyed on the shape alone lets the dtype, padding-mode and meta
    cases below through to torch)."""
    gen = torch.Generator().manual_seed(0)
    conv = GroupConv2d(2, 3, 3, padding=1, group="p4")
    x = torch.randn(1, 2, 4, 5, 5, generator=gen)
    conv(x)
    conv(x)  # the memo's path
    with pytest.raises(ValueError, match=r"C_in=2 channels"):
        conv(torch.randn(1, 3, 4, 5, 5, generator=gen))
    with pytest.raises(ValueError, match=r"\|G\|=4 slots"):
        conv(torch.randn(1, 2, 3, 5, 5, generator=gen))
    with pytest.raises(TypeError, match="x"):
        conv(x.to(torch.int64))
    conv(x)
    conv.padding_mode, conv._pad = "reflect", (5, 5, 5, 5)
    with pytest.raises(ValueError, match="padding_mode='reflect' with padding"):
        conv(x)
    conv.padding_mode, conv._pad = "zeros", (0, 0, 0, 0)
    with pytest.raises(ValueError, match="smaller than the kernel's window"):
        conv(torch.randn(1, 2, 4, 2, 2, generator=gen))
    conv(x)
    conv.to_empty(device="meta")
    with pytest.raises(RuntimeError, match="meta device"):
        conv(x)


@pytest.mark.parametrize("make, x_shape", [
    (lambda: GroupConv2d(2, 2, 3, padding=1, group="p4"), (1, 2, 4, 9, 9)),
    (lambda: LiftingConv2d(2, 2, 5, padding="same", group="so2", max_order=1), (1, 2, 9, 9)),
    (lambda: enn.GroupConvTranspose2d(2, 2, 3, stride=2, padding=1, group="p4"),
     (1, 2, 4, 5, 5)),
])
def test_padding_set_after_construction_takes_effect(make, x_shape, gen):
    """As on ``nn.Conv2d``, ``conv.padding = p`` takes effect at the next call (model surgery
    does this); before, the padding resolved at construction was kept, and the repr then
    showed the new value. The reference: a module built with that padding (same weights)."""
    conv = make().eval()
    x = torch.randn(x_shape, generator=gen)
    conv(x)  # a call first: nothing kept from it may survive the change
    conv.padding = 0
    fresh = type(conv)(**{**_ctor_args(conv), "padding": 0}).eval()
    fresh.load_state_dict(conv.state_dict())
    torch.testing.assert_close(conv(x), fresh(x), rtol=0, atol=0)
    assert conv(x).shape != make()(x).shape  # the control: the padding changes the shape
    with pytest.raises(ValueError, match=r"padding='same' needs stride=1"):
        GroupConv2d(2, 2, 3, stride=2, group="p4").padding = "same"
    with pytest.raises(ValueError, match=r"GroupConv2d: padding must be"):
        GroupConv2d(2, 2, 3, group="p4").padding = "full"


def _ctor_args(conv) -> dict:
    kw = dict(in_channels=conv.in_channels, out_channels=conv.out_channels,
              kernel_size=conv.kernel_size[0], stride=conv.stride, group=conv.group.name)
    if conv.basis == "harmonic" and conv.max_order is not None:
        kw["max_order"] = conv.max_order
    return kw


@pytest.mark.parametrize("make, shape", [
    (lambda: enn.LiftingConv2d(2, 3, 3, group="p4"), (1, 2, 7, 7)),
    (lambda: enn.GroupConv2d(2, 3, 5, group="so2", max_order=1), (1, 2, 3, 7, 7)),
    (lambda: enn.GroupConvTranspose2d(2, 3, 3, group="p4m"), (1, 2, 8, 5, 5)),
    (lambda: enn.GroupConv3d(2, 3, 3, group="c4z"), (1, 2, 4, 5, 5, 5)),
])
def test_input_dtype_other_than_the_weights_is_named(make, shape):
    """A float64 input to a float32 module (and back) gets a TypeError naming the module, both
    dtypes and the fix, not torch's "Input type (double) and bias type (float)". Under
    autocast a float32/float16 input is cast (allowed); float64 never is. The control: the
    matching dtype runs, and the check is not skipped by the input-check memo."""
    conv = make()
    x = torch.randn(shape)
    conv(x)  # memoized for float32
    with pytest.raises(TypeError, match=rf"{type(conv).__name__}: x has dtype torch.float64, "
                                        r"but the module's parameters are torch.float32; "
                                        r"convert the input \(x.float\(\)\) or the module "
                                        r"\(module.double\(\)\)$"):
        conv(x.double())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert conv(x.half()).dtype == torch.bfloat16
        with pytest.raises(TypeError, match=r"float64"):
            conv(x.double())
    conv.double()
    with pytest.raises(TypeError, match=r"x has dtype torch.float32, but the module's "
                                        r"parameters are torch.float64"):
        conv(x)
    assert conv(x.double()).dtype == torch.float64


@pytest.mark.parametrize("make, shape", [
    (lambda: enn.InvariantHead(3, 5, group="p4"), (2, 3, 4, 5, 5)),
    (lambda: enn.BlurConv2d(3, 4, 3, stride=2, padding=1), (2, 3, 8, 8)),
    (lambda: enn.ExpandedGroupConv2d(3, 4, 3, group="c4"), (2, 3, 4, 7, 7)),
    (lambda: enn.GroupBatchNorm2d(3), (2, 3, 4, 5, 5)),
])
def test_other_modules_with_weights_name_a_dtype_mismatch(make, shape):
    """The same rule on the other modules that hold weights: the head, the blurred conv, the
    frozen expanded conv and the group batch norm (which, as nn.BatchNorm3d, also takes a
    float16/bfloat16 input with float32 parameters). The control: the matching dtype runs."""
    m = make()
    x = torch.randn(shape)
    m(x)
    with pytest.raises(TypeError, match=rf"{type(m).__name__}: x has dtype torch.float64, but "
                                        r"the module's parameters are torch.float32"):
        m(x.double())
    assert m.double()(x.double()).dtype == torch.float64


def test_functional_convs_check_stride_device_and_dtype_as_the_modules():
    """The functional group convs refuse what their modules refuse: padding='same' with a
    stride (it gave a smaller, not a 'same', output), a weight on another device (a meta
    weight ran on uninitialized memory and returned garbage on the CPU), a weight or bias of
    another dtype (torch's message from inside). The control: the matching call runs."""
    x, w = torch.randn(2, 3, 9, 9), torch.randn(6, 3, 3, 3)
    xg, wg = torch.randn(2, 3, 4, 9, 9), torch.randn(6, 3, 4, 3, 3)
    with pytest.raises(ValueError, match=r"lifting_conv2d: padding='same' needs stride=1"):
        EF.lifting_conv2d(x, w, stride=2, padding="same")
    with pytest.raises(ValueError, match=r"group_conv2d: padding='same' needs stride=1"):
        EF.group_conv2d(xg, wg, stride=2, padding="same")
    with pytest.raises(ValueError, match=r"lifting_conv2d: weight is on meta but x is on cpu"):
        EF.lifting_conv2d(x, w.to("meta"))
    with pytest.raises(TypeError, match=r"group_conv2d: x has dtype torch.float32, but weight "
                                        r"is torch.float64; convert the input \(x.double\(\)\) "
                                        r"or the weight \(weight.float\(\)\)"):
        EF.group_conv2d(xg, wg.double())
    with pytest.raises(TypeError, match=r"but bias is torch.float64.*bias.float\(\)"):
        EF.lifting_conv2d(x, w, torch.randn(6, dtype=torch.float64))
    assert EF.lifting_conv2d(x, w, padding="same").shape == (2, 6, 4, 9, 9)
    assert EF.group_conv2d(xg, wg, stride=2, padding=1).shape == (2, 6, 4, 5, 5)


@pytest.mark.parametrize("kwargs", [
    dict(padding="same"),  # k=4: 3 pixels of padding per dim, the odd one right/bottom
    dict(padding="same", dilation=(1, 2)),
    dict(padding=(1, 2)),  # (H, W) as nn.Conv2d
    dict(padding=(2, 0), stride=(1, 2)),
    dict(padding=(0, 1), padding_mode="reflect"),
    dict(padding="same", padding_mode="circular"),
])
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
def test_the_trivial_group_is_nn_conv2d(kwargs, gen):
    """Over c1 the lifting and group convs are ``nn.Conv2d`` with the same weight, bias and
    options, value for value: where the padding goes (the odd pixel of ``'same'`` with an even
    kernel on the right/bottom, a pair as (H, W)), the stride and dilation per dim, the
    bias on every output field. The equivariance tests cannot see a padding put on the
    wrong side or dim when that choice is symmetric under the group."""
    x = _rand(gen, 2, 3, 9, 10)
    w, b = _rand(gen, 5, 3, 4, 4), _rand(gen, 5)
    ref = torch.nn.Conv2d(3, 5, 4, bias=True, dtype=torch.float64, **kwargs)
    with torch.no_grad():
        ref.weight.copy_(w)
        ref.bias.copy_(b)
    want = ref(x)
    y = EF.lifting_conv2d(x, w, b, group="c1", **kwargs)
    torch.testing.assert_close(y, want[:, :, None], rtol=0, atol=1e-12)
    y = EF.group_conv2d(x[:, :, None], w[:, :, None], b, group="c1", **kwargs)
    torch.testing.assert_close(y, want[:, :, None], rtol=0, atol=1e-12)
    # control: the reference with the padding on the other side differs
    if kwargs.get("padding") == "same" and "dilation" not in kwargs:
        shifted = F.conv2d(F.pad(x, (2, 1, 2, 1), mode=kwargs.get("padding_mode", "zeros")
                                 .replace("zeros", "constant")), w, b)
        assert not torch.allclose(shifted, want)


def test_functional_convs_refuse_non_square_pixel_filters():
    """A pixel filter must be k x k: rotations map k x k onto itself. A (C_out, C_in, 5, 3)
    weight read as k=3 (its last dim) would gather the wrong entries with no error; (3, 5)
    would index past the weight. Both orientations, lifting and group, functional and
    expand_*_filter. The control: the square weight runs."""
    x, xg = torch.randn(1, 2, 9, 9), torch.randn(1, 2, 4, 9, 9)
    for shape in ((5, 3), (3, 5)):
        with pytest.raises(ValueError, match=r"lifting_conv2d needs square filters.*kernel "
                                             rf"\({shape[0]}, {shape[1]}\)"):
            EF.lifting_conv2d(x, torch.randn(3, 2, *shape))
        with pytest.raises(ValueError, match=r"group_conv2d needs square filters"):
            EF.group_conv2d(xg, torch.randn(3, 2, 4, *shape))
        with pytest.raises(ValueError, match=r"expand_lifting_filter needs square filters"):
            EF.expand_lifting_filter(torch.randn(3, 2, *shape))
        with pytest.raises(ValueError, match=r"expand_group_filter needs square filters"):
            EF.expand_group_filter(torch.randn(3, 2, 4, *shape))
    assert EF.lifting_conv2d(x, torch.randn(3, 2, 3, 3)).shape == (1, 3, 4, 7, 7)
    assert EF.group_conv2d(xg, torch.randn(3, 2, 4, 3, 3)).shape == (1, 3, 4, 7, 7)


def test_functional_convs_refuse_groups_that_split_an_output_field():
    """``groups`` must divide ``C_out`` (the fields), not only ``C_out * |G|`` (the slots
    F.conv2d sees): with 5 fields of p4 in 2 groups, F.conv2d accepts the 20 slots and field
    2's slots would read different input channels, so the field would not be a regular field
    (not equivariant), with no error. The control: 6 fields in 2 groups run."""
    x, xg = torch.randn(1, 4, 9, 9), torch.randn(1, 4, 4, 9, 9)
    with pytest.raises(ValueError, match=r"lifting_conv2d: groups=2 must divide C_out=5"):
        EF.lifting_conv2d(x, torch.randn(5, 2, 3, 3), groups=2)
    with pytest.raises(ValueError, match=r"group_conv2d: groups=2 must divide C_out=5"):
        EF.group_conv2d(xg, torch.randn(5, 2, 4, 3, 3), groups=2)
    assert EF.lifting_conv2d(x, torch.randn(6, 2, 3, 3), groups=2).shape == (1, 6, 4, 7, 7)
    assert EF.group_conv2d(xg, torch.randn(6, 2, 4, 3, 3), groups=2).shape == (1, 6, 4, 7, 7)
