"""Transposed group convolutions (GroupConvTranspose2d / LiftingConvTranspose2d and their
functional twins): shapes against nn.ConvTranspose2d, module == functional, the exactness law
of the transposed grid, adjointness, a U-Net round trip, export, gradcheck, compile."""

from __future__ import annotations

import itertools
import warnings

import pytest
import torch
import torch.nn.functional as F
from conftest import seeded_rng
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import equilayers
from equilayers.functional import (
    exactness_problems,
    group_conv_transpose2d,
    lifting_conv_transpose2d,
)
from equilayers.groups import get
from equilayers.nn import (
    ExpandedGroupConv2d,
    GroupConv2d,
    GroupConvTranspose2d,
    GroupPool,
    LiftingConv2d,
    LiftingConvTranspose2d,
)
from equilayers.testing import assert_equivariant, equivariance_error

PIXEL = ["c1", "c2", "c4", "d1", "d2", "d4"]


def _rand(gen, *shape, dtype=torch.float64):
    return torch.randn(*shape, generator=gen, dtype=dtype)


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(group=st.sampled_from(PIXEL), k=st.integers(1, 5), stride=st.integers(1, 3),
       dilation=st.integers(1, 2), padding=st.integers(0, 2), op=st.integers(0, 2),
       size=st.integers(3, 9), lifting=st.booleans())
def test_property_shape_and_exact_when_predicted(group, k, stride, dilation, padding, op,
                                                 size, lifting):
    """The output size is nn.ConvTranspose2d's; exactness_problems() == [] (output_padding 0)
    implies exact equivariance (<= 1e-10 in float64), a predicted problem warns."""
    if op >= max(stride, dilation):
        op = 0
    out = (size - 1) * stride - 2 * padding + dilation * (k - 1) + op + 1
    if out < 1:
        return
    cls = LiftingConvTranspose2d if lifting else GroupConvTranspose2d
    with seeded_rng(0):
        m = cls(2, 3, k, stride, padding, op, dilation=dilation, group=group).double()
        n = int(get(group).order)
        shape = (2, 2, size, size) if lifting else (2, 2, n, size, size)
        x = torch.randn(shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        problems = exactness_problems(group, (size, size), k, stride,
                                      (padding,) * 4, dilation, output_padding=op)
        assert bool(problems) == (op > 0 and n > 1)
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            y = m(x)
        assert bool(rec) == bool(problems), [str(r.message) for r in rec]
        ref = nn.ConvTranspose2d(2, 3, k, stride, padding, op, dilation=dilation)
        assert y.shape == (2, 3, n, *ref(torch.zeros(1, 2, size, size)).shape[-2:])
        err = equivariance_error(m, x, group)
        assert err <= 1e-10 if not problems else err > 1e-3


def test_the_law_on_plain_transposed_convs(gen):
    """The law on its own: a flip-symmetric nn.ConvTranspose2d filter commutes with the flip
    of the width exactly iff output_padding == 0, for every (k, stride, padding, dilation, n)
    here whose output has more than one pixel."""
    for k, s, p, d, n in itertools.product((1, 2, 3, 4), (1, 2, 3), (0, 1, 2), (1, 2), (3, 4)):
        for op in range(max(s, d)):
            w = _rand(gen, 2, 2, k, k)
            w = w + w.flip(-1)
            x = _rand(gen, 1, 2, n, n)
            if (n - 1) * s - 2 * p + d * (k - 1) + op + 1 < 2:
                continue
            y = F.conv_transpose2d(x, w, None, s, p, op, 1, d)
            y_flip = F.conv_transpose2d(x.flip(-1), w, None, s, p, op, 1, d)
            exact = torch.allclose(y_flip, y.flip(-1), atol=1e-12)
            law = not exactness_problems("d1", (n, n), k, s, (p,) * 4, d, output_padding=op)
            assert exact == law, (k, s, p, d, n, op)


@pytest.mark.parametrize("group,kw", [("c8", {}), ("d8", {}), ("c3", {}), ("c6", {}),
                                      ("so2", {"max_order": 2}), ("o2", {"max_order": 1}),
                                      ("c4", {"basis": "harmonic"}),
                                      ("d4", {"max_order": 2})])
def test_steerable_exact_on_the_grid_subgroup(group, kw, gen):
    with seeded_rng(0):
        up = LiftingConvTranspose2d(2, 3, 5, stride=2, padding=2, group=group, **kw).double()
        mid = GroupConvTranspose2d(3, 2, 3, stride=2, padding=1, group=group, **kw).double()
        x = _rand(gen, 2, 2, 6, 6)
        els = get(group).grid_elements()
        assert equivariance_error(up, x, group, elements=els) <= 1e-10
        assert equivariance_error(nn.Sequential(up, mid), x, group, in_rep="trivial",
                                  out_rep=mid.out_rep, elements=els) <= 1e-10


@pytest.mark.parametrize("lifting", [True, False])
@pytest.mark.parametrize("group,kw", [("p4m", {}), ("c8", {}), ("so2", {"max_order": 1})])
def test_module_equals_functional(lifting, group, kw, gen):
    with seeded_rng(0):
        cls = LiftingConvTranspose2d if lifting else GroupConvTranspose2d
        m = cls(4, 6, 3, 2, 1, 1, groups=2, dilation=1, group=group, **kw).double()
        with torch.no_grad():
            m.bias.normal_()
        shape = (2, 4, 7, 6) if lifting else (2, 4, m.fiber_in, 7, 6)
        x = _rand(gen, *shape)
        fn = lifting_conv_transpose2d if lifting else group_conv_transpose2d
        extra = {} if m.basis == "pixel" else {"kernel_size": 3, **kw}
        y = _quiet(fn, x, m.weight, m.bias, 2, 1, 1, 2, 1, group=group, **extra)
        torch.testing.assert_close(_quiet(m, x), y, rtol=0, atol=0)
        assert y.shape[-2:] == (14, 12)


def test_non_contiguous_and_output_size(gen):
    with seeded_rng(0):
        m = GroupConvTranspose2d(3, 2, 3, stride=2, padding=1, group="p4").double()
        x = _rand(gen, 2, 4, 3, 7, 7).transpose(1, 2)
        torch.testing.assert_close(m(x), m(x.contiguous()))
        # output_size picks the output padding, as nn.ConvTranspose2d's forward does
        m1 = GroupConvTranspose2d(3, 2, 3, stride=2, padding=1, output_padding=1, group="p4")
        m1.load_state_dict(m.state_dict())
        y = _quiet(m, x, output_size=(14, 14))
        torch.testing.assert_close(y, _quiet(m1.double(), x))
        with pytest.raises(ValueError, match="reaches sizes 13 to 14 only"):
            m(x, output_size=(16, 16))
        with pytest.raises(ValueError, match="output_size"):
            m(x, output_size=(13.0, 13.0))
    # torch's rule for output_size: up to stride - 1 more (dilation widened it), per dim named
    x = _rand(gen, 1, 3, 4, 5, 5).float()
    dilated = GroupConvTranspose2d(3, 2, 3, dilation=2, group="p4")
    with pytest.raises(ValueError, match=r"valid sizes range from \[9, 9\] to \[9, 9\]"):
        nn.ConvTranspose2d(3, 2, 3, dilation=2)(x[:, :, 0], output_size=[10, 10])
    with pytest.raises(ValueError, match=r"along H, a 5-pixel input reaches sizes 9 to 9 only"):
        dilated(x, output_size=[10, 10])
    assert dilated(x, output_size=[9, 9]).shape[-2:] == (9, 9)
    wide = GroupConvTranspose2d(3, 2, 3, stride=(2, 3), group="p4")
    with pytest.raises(ValueError, match=r"along W, a 5-pixel input reaches sizes 15 to 17"):
        _quiet(wide, x, output_size=[11, 9])


def test_adjoint_of_the_forward_group_conv(gen):
    """<conv(x), y> == <x, convT(y)>, conv the F.conv2d with the transposed conv's own expanded
    filter: an ExpandedGroupConv2d from out to in fields, itself exactly equivariant."""
    with seeded_rng(0):
        up = GroupConvTranspose2d(3, 4, 3, stride=2, padding=1, groups=1, bias=False,
                                  group="d4").double()
        filt = up.expanded_filter().detach()
        conv = ExpandedGroupConv2d.from_filter(filt, None, stride=2, padding=1, group="d4")
        y = _rand(gen, 2, 3, 8, 5, 5)
        x = _rand(gen, 2, 4, 8, 9, 9)
        lhs = (conv(x) * y).sum()
        rhs = (x * up(y)).sum()
        torch.testing.assert_close(lhs, rhs, rtol=1e-12, atol=0)
        assert equivariance_error(conv, x, "d4") <= 1e-10
        # the same through autograd: the vector-Jacobian product of the conv is the transposed conv
        x.requires_grad_(True)
        (g,) = torch.autograd.grad(conv(x), x, y)
        torch.testing.assert_close(g, up(y), rtol=1e-12, atol=1e-12)


def _unet(group: str, op: int = 0) -> nn.Module:
    class UNet(nn.Module):
        in_rep, out_rep = "trivial", "trivial"

        def __init__(self):
            super().__init__()
            self.lift = LiftingConv2d(1, 2, 3, padding=1, group=group)
            self.down1 = GroupConv2d(2, 3, 3, stride=2, padding=1, group=group)
            self.down2 = GroupConv2d(3, 3, 3, stride=2, padding=1, group=group)
            self.up2 = GroupConvTranspose2d(3, 3, 3, stride=2, padding=1, output_padding=op,
                                            group=group)
            self.up1 = GroupConvTranspose2d(6, 2, 3, stride=2, padding=1, output_padding=op,
                                            group=group)
            self.head = GroupConv2d(4, 1, 3, padding=1, group=group)
            self.pool = GroupPool()

        def forward(self, x):
            a = torch.relu(self.lift(x))           # n
            b = torch.relu(self.down1(a))          # (n + 1) / 2
            c = torch.relu(self.down2(b))
            u = torch.relu(self.up2(c))            # back to b's size
            u = torch.relu(self.up1(torch.cat([u, b], 1)))  # back to a's size
            return self.pool(self.head(torch.cat([u, a], 1)))
    with seeded_rng(0):
        return UNet().double()


@pytest.mark.parametrize("group", ["p4", "p4m"])
def test_unet_round_trip_of_odd_sizes_is_exact(group, gen):
    """17 -> 9 -> 5 -> 9 -> 17: the stride-2 convs see odd sizes, the transposed convs have
    output_padding 0, the skips line up, and the whole model is exact."""
    net = _unet(group)
    x = _rand(gen, 2, 1, 17, 17)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no layer may warn
        assert net(x).shape == (2, 1, 17, 17)
        assert_equivariant(net, x, group)
    assert equilayers.check_grid(net, (1, 1, 17, 17), group, shifts=False) == []


def test_unet_of_even_sizes_is_not_exact(gen):
    """16 -> 8 -> 4 -> 8 -> 16 needs output_padding=1: inexact, warned and reported."""
    net = _unet("p4", op=1)
    x = _rand(gen, 2, 1, 16, 16)
    with pytest.warns(UserWarning, match="not exactly equivariant"):
        assert net(x).shape == (2, 1, 16, 16)
    assert equivariance_error(net, x, "p4") > 1e-3
    problems = {f.problem for f in equilayers.check_grid(net, (1, 1, 16, 16), "p4",
                                                         shifts=False)}
    assert problems == {"stride-parity", "output-padding"}


@pytest.mark.parametrize("lifting", [True, False])
@pytest.mark.parametrize("group,kw", [("d4", {}), ("c8", {}), ("so2", {"max_order": 2})])
def test_export_is_a_plain_conv_transpose(lifting, group, kw, gen):
    with seeded_rng(0):
        cls = LiftingConvTranspose2d if lifting else GroupConvTranspose2d
        m = cls(4, 2, 3, stride=2, padding=1, output_padding=1, groups=2, dilation=1, group=group,
                **kw).double()
        with torch.no_grad():
            m.bias.normal_()
        out = equilayers.export(m)
        assert any(type(c) is nn.ConvTranspose2d for c in out.modules())
        assert not any(type(c).__module__.startswith("equilayers") for c in out.modules())
        x = _rand(gen, *((2, 4, 5, 5) if lifting else (2, 4, m.fiber_in, 5, 5)))
        torch.testing.assert_close(out(x), _quiet(m, x), rtol=0, atol=0)


@pytest.mark.parametrize("cls,shape,kw", [
    (LiftingConvTranspose2d, (1, 2, 3, 3), {"group": "p4m"}),
    (GroupConvTranspose2d, (1, 2, 4, 3, 3), {"group": "p4"}),
    (GroupConvTranspose2d, (1, 2, 8, 3, 3), {"group": "c8"}),
])
def test_gradcheck(cls, shape, kw, gen):
    with seeded_rng(0):
        m = cls(2, 2, 3, stride=2, padding=1, **kw).double()
        x = _rand(gen, *shape).requires_grad_(True)
        assert torch.autograd.gradcheck(m, (x,))
        assert torch.autograd.gradcheck(
            lambda w: torch.func.functional_call(m, {"weight": w}, (x.detach(),)),
            (m.weight.detach().clone().requires_grad_(True),))


def test_state_dict_round_trip_and_repr(gen):
    with seeded_rng(0):
        a = GroupConvTranspose2d(3, 2, 3, stride=2, padding=1, output_padding=1, group="p4m")
        b = GroupConvTranspose2d(3, 2, 3, stride=2, padding=1, output_padding=1, group="p4m")
        assert set(a.state_dict()) == {"weight", "bias"}
        b.load_state_dict(a.state_dict())
        x = _rand(gen, 1, 3, 8, 4, 4, dtype=torch.float32)
        torch.testing.assert_close(_quiet(a, x), _quiet(b, x), rtol=0, atol=0)
        assert repr(a) == ("GroupConvTranspose2d(3, 2, kernel_size=3, group='d4', stride=(2, 2), "
                           "padding=1, output_padding=(1, 1))")
        assert repr(LiftingConvTranspose2d(3, 2, 5, group="c8", bias=False, dilation=2)) == (
            "LiftingConvTranspose2d(3, 2, kernel_size=5, group='c8', dilation=(2, 2), bias=False)")


def test_torch_compile_fullgraph(gen):
    with seeded_rng(0):
        net = nn.Sequential(LiftingConvTranspose2d(2, 3, 3, stride=2, padding=1, group="p4"),
                            nn.ReLU(), GroupConvTranspose2d(3, 2, 4, stride=2, padding=1,
                                                            group="p4"))
        x = _rand(gen, 2, 2, 5, 5, dtype=torch.float32)
        compiled = torch.compile(net, fullgraph=True, backend="eager")
        torch.testing.assert_close(compiled(x), net(x))
        compiled(x).sum().backward()
        assert net[0].weight.grad is not None


@pytest.mark.parametrize("stride,k", [(1, 3), (2, 4), (2, 3)])
def test_init_keeps_the_second_moment(stride, k, gen):
    """Unit-variance input -> output second moment about 1 per slot, stride included."""
    with seeded_rng(0):
        m = GroupConvTranspose2d(32, 32, k, stride=stride, padding=1, group="p4")
        x = _rand(gen, 4, 32, 4, 12, 12, dtype=torch.float32)
        with torch.no_grad():
            y = _quiet(m, x)[..., 2:-2, 2:-2]
        assert 0.8 < float(y.square().mean()) < 1.2


@pytest.mark.parametrize("kwargs,match", [
    ({"padding_mode": "reflect"}, "padding_mode must be one of \\('zeros',\\)"),
    ({"padding": "same"}, "a transposed conv takes an int or a pair"),
    # at stride 2 too (it told to use stride=1, which is then refused as well)
    ({"padding": "same", "stride": 2}, "a transposed conv takes an int or a pair"),
    ({"padding": "valid", "stride": 2}, "a transposed conv takes an int or a pair"),
    ({"output_padding": 1}, "must be smaller than the stride or the dilation"),
    ({"output_padding": 2, "stride": 2}, "must be smaller than the stride or the dilation"),
    ({"output_padding": -1, "stride": 2}, "output_padding"),
    ({"kernel_size": (3, 5)}, r"kernel_size=\(3, 5\) must be square \(k, k\)"),
    ({"group": "oh"}, "use GroupConvTranspose3d for the cube"),
    ({"group": "so3"}, "acts on volumes: its harmonic fields take SteerableConvTranspose3d; "
                       "use GroupConvTranspose3d for the cube's groups"),
    ({"group": "oh"}, "group='oh' acts on volumes: use GroupConvTranspose3d"),
])
def test_bad_arguments(kwargs, match):
    args = {"in_channels": 2, "out_channels": 2, "kernel_size": 3, **kwargs}
    with pytest.raises(ValueError, match=match):
        GroupConvTranspose2d(**args)


def test_functional_bad_arguments(gen):
    x, w = _rand(gen, 1, 2, 4, 4), _rand(gen, 3, 2, 3, 3)
    with pytest.raises(ValueError, match="must be smaller than the stride"):
        lifting_conv_transpose2d(x, w, output_padding=1)
    with pytest.raises(ValueError, match="would be -4x-4"):
        lifting_conv_transpose2d(x, w, padding=5)
    with pytest.raises(ValueError, match="a transposed conv takes an int or a pair"):
        lifting_conv_transpose2d(x, w, padding="valid")
    with pytest.raises(ValueError, match="expects 5-D"):
        group_conv_transpose2d(x, _rand(gen, 3, 2, 4, 3, 3))


def test_empty_spatial_size_is_named(gen):
    """An empty height or width was torch's "Only zero batch or zero channel inputs are
    supported" naming the internal ``(B, C F, H, W)`` view (``[1, 8, 0, 4]`` for a
    ``(1, 2, 4, 0, 4)`` map); an empty batch still gives an empty output, as torch."""
    m = GroupConvTranspose2d(2, 3, 3, 2, group="p4", dtype=torch.float64)
    with pytest.raises(ValueError, match=r"shape \(1, 2, 4, 0, 4\) has an empty spatial size 0x4"):
        m(_rand(gen, 1, 2, 4, 0, 4))
    with pytest.raises(ValueError, match="empty spatial size 3x0"):
        lifting_conv_transpose2d(_rand(gen, 1, 2, 3, 0), _rand(gen, 3, 2, 3, 3))
    assert m(_rand(gen, 0, 2, 4, 4, 4)).shape == (0, 3, 4, 9, 9)  # control


@pytest.mark.parametrize("make,shape", [
    (lambda: GroupConvTranspose2d(2, 2, 3, group="p4"), (1, 2, 4, 5, 5)),
    (lambda: LiftingConvTranspose2d(2, 2, 3, group="p4"), (1, 2, 5, 5)),
    (lambda: equilayers.nn.GroupConvTranspose3d(2, 2, 3, group="c4z"), (1, 2, 4, 4, 4, 4)),
    (lambda: equilayers.nn.SteerableConvTranspose3d(2, 2, 3, group="so3", in_max_order=0,
                                                    max_order=0), (1, 2, 1, 4, 4, 4)),
])
def test_padding_mode_set_after_construction_is_refused_at_forward(make, shape, gen):
    """torch's transposed convs raise at forward when ``padding_mode`` is set to another mode
    after construction; the layers ignored it silently. The control: 'zeros' runs."""
    m = make()
    x = _rand(gen, *shape, dtype=torch.float32)
    m(x)
    m.padding_mode = "circular"
    with pytest.raises(ValueError, match="padding_mode='circular' was set after construction"):
        m(x)


@pytest.mark.parametrize("make,shape,nd", [
    (lambda: GroupConvTranspose2d(2, 2, 4, stride=2, padding=1, group="p4"), (1, 2, 4, 5, 5), 2),
    (lambda: LiftingConvTranspose2d(2, 2, 4, stride=2, padding=1, group="p4"), (1, 2, 5, 5), 2),
    (lambda: equilayers.nn.GroupConvTranspose3d(2, 2, 4, stride=2, padding=1, group="c4z"),
     (1, 2, 4, 5, 5, 5), 3),
])
def test_output_size_read_off_a_traced_input(make, shape, nd, gen):
    """``output_size`` computed from ``x.shape`` under ``torch.jit.trace`` (0-dim tensors
    there) is taken as ``nn.ConvTranspose2d`` takes it (the trace failed: "must end with the
    output's (H, W) as ints"); 0-dim integer tensors are taken eagerly too, float ones not."""
    conv = make()
    x = torch.randn(shape, generator=gen)

    class Up(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = conv

        def forward(self, x):
            return self.conv(x, output_size=[2 * n for n in x.shape[-nd:]])

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(Up(), x)
    want = Up()(x)
    assert want.shape[-nd:] == tuple(2 * n for n in shape[-nd:])
    torch.testing.assert_close(traced(x), want, rtol=0, atol=0)
    eager = conv(x, output_size=[torch.tensor(2 * n) for n in shape[-nd:]])
    torch.testing.assert_close(eager, want, rtol=0, atol=0)
    with pytest.raises(ValueError, match="output_size"):
        conv(x, output_size=[torch.tensor(2.0 * n) for n in shape[-nd:]])
