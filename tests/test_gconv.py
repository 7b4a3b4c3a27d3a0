"""LiftingConv2d / GroupConv2d: shapes, the expanded filter and its tables, bias, module ==
functional, gradients, state, the eval cache, meta device, copies, compile, and the trivial
group as ``nn.Conv2d``. Exactness: tests/test_gconv_exactness.py; errors:
tests/test_gconv_inputs.py."""

import copy

import pytest
import torch
import torch.nn.functional as F
from _gconv_common import GROUPS, _rand
from conftest import seeded_rng
from torch import nn

import equilayers.functional as EF
from equilayers.functional import (
    expand_group_filter,
    expand_lifting_filter,
    group_conv2d,
    lifting_conv2d,
)
from equilayers.groups import act, act_spatial, get, group_fourier_basis
from equilayers.nn import GroupConv2d, LiftingConv2d


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
