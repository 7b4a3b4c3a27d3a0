"""Transposed group convolutions on voxels (GroupConvTranspose3d / LiftingConvTranspose3d and
their functional twins): shapes against nn.ConvTranspose3d, module == functional, the
exactness law of the transposed grid on every cube group (output_padding the negative
control), adjointness to the forward GroupConv3d, a 3-D U-Net round trip, export, check_grid,
the init, gradcheck and the errors."""

from __future__ import annotations

import itertools
import warnings

import pytest
import torch
import torch.nn.functional as F
from _gconv_common import assert_exports_to_conv_transpose3d_and_gradchecks
from conftest import seeded_rng
from torch import nn

from equilayers import check_grid
from equilayers.functional import (
    exactness_problems3d,
    group_conv_transpose3d,
    lifting_conv_transpose3d,
)
from equilayers.groups import get
from equilayers.nn import (
    GroupConv3d,
    GroupConvTranspose3d,
    GroupPool,
    LiftingConv3d,
    LiftingConvTranspose3d,
)
from equilayers.testing import equivariance_error

CUBE = ["c4z", "d4z", "o", "oh"]


def _rand(gen, *shape, dtype=torch.float64):
    return torch.randn(*shape, generator=gen, dtype=dtype)


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


@pytest.mark.parametrize("group", CUBE)
@pytest.mark.parametrize("lifting", [True, False])
def test_exact_at_every_size_unless_output_padding(group, lifting, gen):
    """Exact (float64 rounding) for every element at even and odd sizes, k 2..4, stride 1..3,
    with output_padding 0: no problem, no warning. output_padding on a moved dim: a problem,
    a warning and a large error (the negative control)."""
    n = int(get(group).order)
    cls = LiftingConvTranspose3d if lifting else GroupConvTranspose3d
    for k, s, p, size in [(3, 2, 1, 4), (4, 2, 1, 3), (2, 2, 0, 3), (3, 3, 0, 2), (3, 1, 1, 3)]:
        with seeded_rng(0):
            m = cls(2, 2, k, s, p, group=group).double()
        x = _rand(gen, 1, 2, *(() if lifting else (n,)), size, size, size)
        assert exactness_problems3d(group, (size,) * 3, k, s, (p,) * 6, 1, output_padding=0) == []
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert equivariance_error(m, x, group) < 1e-12, (k, s, p, size)
    with seeded_rng(0):
        bad = cls(2, 2, 3, 2, 1, output_padding=1, group=group).double()
    x = _rand(gen, 1, 2, *(() if lifting else (n,)), 3, 3, 3)
    assert exactness_problems3d(group, (3, 3, 3), 3, 2, (1,) * 6, 1, output_padding=1)
    with pytest.warns(UserWarning, match="not exactly equivariant on input of size 3x3x3: "
                                         r"output_padding \(depth 1, height 1, width 1\)"
                      if group in ("o", "oh") else r"output_padding \(height 1, width 1\)"):
        assert equivariance_error(bad, x, group) > 1e-2


def test_output_padding_on_a_dim_c4z_leaves_alone_is_exact(gen):
    """c4z and d4z move height and width only: output_padding on the depth keeps them exact."""
    with seeded_rng(0):
        m = GroupConvTranspose3d(2, 2, 3, 2, 1, (1, 0, 0), group="c4z").double()
    x = _rand(gen, 1, 2, 4, 3, 3, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert m(x).shape == (1, 2, 4, 6, 5, 5)
        assert equivariance_error(m, x, "c4z") < 1e-12


@pytest.mark.parametrize("k,s,p,op,d,size", [(3, 2, 1, 1, 1, 4), (4, 2, 1, 0, 1, 3),
                                             (3, 3, 2, 2, 1, 5), (3, 1, 0, 1, 2, 3),
                                             (1, 2, 0, 1, 1, 3)])
def test_shapes_are_conv_transpose3d_and_module_equals_functional(k, s, p, op, d, size, gen):
    for lifting, group in ((True, "o"), (False, "d4z")):
        n = int(get(group).order)
        cls = LiftingConvTranspose3d if lifting else GroupConvTranspose3d
        with seeded_rng(0):
            m = cls(2, 3, k, s, p, op, dilation=d, group=group).double()
        x = _rand(gen, 2, 2, *(() if lifting else (n,)), size, size + 1, size)
        y = _quiet(m, x)
        ref = nn.ConvTranspose3d(2, 3, k, s, p, op, dilation=d)
        assert y.shape == (2, 3, n, *ref(torch.zeros(1, 2, size, size + 1, size)).shape[-3:])
        fn = lifting_conv_transpose3d if lifting else group_conv_transpose3d
        torch.testing.assert_close(fn(x, m.voxel_filter(), m.bias, s, p, op, 1, d,
                                      group=group), y, rtol=0, atol=0)
        # the expanded filter in F.conv_transpose3d's layout, the bias per slot
        z = F.conv_transpose3d(x.flatten(1, 2) if not lifting else x, m.expanded_filter(),
                               m.bias.repeat_interleave(n), s, p, op, 1, d)
        torch.testing.assert_close(z.unflatten(1, (3, n)), y, rtol=0, atol=0)


def test_output_size_picks_the_output_padding(gen):
    with seeded_rng(0):
        m = GroupConvTranspose3d(2, 2, 3, stride=2, padding=1, group="c4z").double()
    x = _rand(gen, 1, 2, 4, 5, 5, 5)
    assert _quiet(m, x, output_size=(10, 9, 9)).shape[-3:] == (10, 9, 9)  # depth: exact
    with pytest.warns(UserWarning, match=r"output_padding \(height 1, width 1\)"):
        assert m(x, output_size=[1, 2, 9, 10, 10]).shape[-3:] == (9, 10, 10)
    with pytest.raises(ValueError, match="reaches sizes 9 to 10 only"):
        m(x, output_size=(11, 9, 9))
    with pytest.raises(ValueError, match=r"must end with the output's \(D, H, W\) as ints"):
        m(x, output_size=(9, 9))
    with pytest.raises(ValueError, match="expects 6-D"):
        m(x[:, :, 0], output_size=(9, 9, 9))


@pytest.mark.parametrize("group", ["c4z", "o"])
def test_adjoint_of_the_forward_group_conv(group, gen):
    """<conv(x), y> == <x, convT(y)>, conv the F.conv3d with the transposed conv's own expanded
    filter: a group conv from its out to its in fields, itself exactly equivariant; the same
    through autograd (the vector-Jacobian product of the conv is the transposed conv)."""
    n = int(get(group).order)
    with seeded_rng(0):
        up = GroupConvTranspose3d(3, 2, 3, stride=2, padding=1, bias=False,
                                  group=group).double()
    filt = up.expanded_filter().detach()  # (3 n, 2 n, 3, 3, 3)

    def conv(t):
        return F.conv3d(t.flatten(1, 2), filt, None, 2, 1).unflatten(1, (3, n))

    x = _rand(gen, 2, 2, n, 7, 7, 7).requires_grad_(True)
    y = _rand(gen, 2, 3, n, 4, 4, 4)
    torch.testing.assert_close((conv(x) * y).sum(), (x * up(y)).sum(), rtol=1e-12, atol=0)
    (g,) = torch.autograd.grad(conv(x), x, y)
    torch.testing.assert_close(g, up(y), rtol=1e-12, atol=1e-12)
    assert equivariance_error(conv, x.detach(), group, in_rep="regular",
                              out_rep="regular") < 1e-12


def _unet3d(group: str, op: int = 0) -> nn.Module:
    class UNet3d(nn.Module):
        in_rep, out_rep = "trivial", "trivial"

        def __init__(self):
            super().__init__()
            self.lift = LiftingConv3d(1, 2, 3, padding=1, group=group)
            self.down = GroupConv3d(2, 3, 3, stride=2, padding=1, group=group)
            self.up = GroupConvTranspose3d(3, 2, 3, stride=2, padding=1, output_padding=op,
                                           group=group)
            self.head = GroupConv3d(4, 1, 3, padding=1, group=group)
            self.pool = GroupPool()

        def forward(self, x):
            a = torch.relu(self.lift(x))
            u = torch.relu(self.up(torch.relu(self.down(a))))
            return self.pool(self.head(torch.cat([u, a], 1)))
    with seeded_rng(0):
        return UNet3d().double()


@pytest.mark.parametrize("group", CUBE)
def test_unet_round_trip_exact_on_odd_sizes_and_check_grid_agrees(group, gen):
    """7 -> 4 -> 7 is exact, check_grid finds nothing; 8 -> 4 -> 8 (output_padding 1) is not,
    and check_grid names the strided conv's parity and the transposed conv's padding."""
    net = _unet3d(group)
    x = _rand(gen, 1, 1, 7, 7, 7)
    assert check_grid(net, (1, 1, 7, 7, 7), group, shifts=False) == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert equivariance_error(net, x, group) < 1e-12
    even = _unet3d(group, op=1)
    found = {(f.layer, f.problem) for f in check_grid(even, (1, 1, 8, 8, 8), group,
                                                      shifts=False)}
    assert found == {("down", "stride-parity"), ("up", "output-padding")}, found
    assert _quiet(equivariance_error, even, _rand(gen, 1, 1, 8, 8, 8), group) > 1e-3


def test_check_grid_on_plain_conv_transpose3d():
    """A transposed conv is exact at any size with output_padding 0 (no stride-parity finding
    on even sizes, the former verdict); output_padding is named on the dims the group moves;
    under shifts, overlapping or cropped footprints are a transposed-border finding, not a
    padding-mode one; a tiling one (k == stride, no padding) none."""
    up = nn.ConvTranspose3d(2, 2, 3, stride=2, padding=1)
    for n in (4, 5):
        assert check_grid(up, (1, 2, n, n, n), "o", shifts=False) == []
        assert [(f.problem, f.breaks) for f in check_grid(up, (1, 2, n, n, n), "o")] == [
            ("transposed-border", "shifts")]
    assert check_grid(nn.ConvTranspose3d(2, 2, 2, stride=2), (1, 2, 5, 5, 5), "oh") == []
    op = nn.ConvTranspose3d(2, 2, 3, stride=2, padding=1, output_padding=(1, 1, 0))
    (f,) = check_grid(op, (1, 2, 5, 5, 5), "o", shifts=False)[-1:]
    assert f.problem == "output-padding" and "depth: 1; height: 1" in f.message
    assert [g.problem for g in check_grid(op, (1, 2, 5, 5, 5), "o", shifts=False)] == [
        "anisotropic", "output-padding"]  # o trades the width with the padded dims
    depth_only = nn.ConvTranspose3d(2, 2, 3, stride=2, padding=1, output_padding=(1, 0, 0))
    assert check_grid(depth_only, (1, 2, 5, 5, 5), "c4z", shifts=False) == []


@pytest.mark.parametrize("cls,shape,kw", [
    (LiftingConvTranspose3d, (2, 2, 3, 3, 3), {"group": "o"}),
    (GroupConvTranspose3d, (2, 2, 8, 3, 3, 3), {"group": "d4z", "kernel_size": 4}),
    (GroupConvTranspose3d, (2, 2, 4, 3, 3, 3), {"group": "c4z", "basis": "harmonic"}),
    (GroupConvTranspose3d, (2, 4, 4, 3, 4, 3), {"group": "c4z", "groups": 2, "dilation": 2,
                                                "output_padding": (1, 0, 1)}),
])
def test_export_is_a_plain_conv_transpose3d_and_gradcheck(cls, shape, kw, gen):
    kw = {"kernel_size": 3, "stride": 2, "padding": 1, **kw}
    with seeded_rng(0):
        m = cls(shape[1], 2, **kw).double()
    assert_exports_to_conv_transpose3d_and_gradchecks(m, _rand(gen, *shape))


@pytest.mark.parametrize("stride,k", [(1, 3), (2, 4), (2, 3)])
def test_init_keeps_the_second_moment(stride, k, gen):
    """Unit-variance input -> output second moment about 1 per slot, stride included."""
    with seeded_rng(0):
        m = GroupConvTranspose3d(16, 16, k, stride=stride, padding=1, group="c4z")
    x = _rand(gen, 2, 16, 4, 6, 6, 6, dtype=torch.float32)
    with torch.no_grad():
        y = _quiet(m, x)[..., 2:-2, 2:-2, 2:-2]
    assert 0.8 < float(y.square().mean()) < 1.2


def test_repr_state_dict_and_weight_layout():
    m = GroupConvTranspose3d(4, 2, 3, 2, 1, (1, 0, 0), groups=2, group="c4z")
    assert repr(m) == ("GroupConvTranspose3d(4, 2, kernel_size=3, group='c4z', stride=(2, 2, 2), "
                       "padding=1, groups=2, output_padding=(1, 0, 0))")
    assert m.weight.shape == (2, 2, 4, 3, 3, 3)  # the forward conv's: (C_out, C_in // groups, ...)
    assert m.expanded_filter().shape == (16, 4, 3, 3, 3)  # F.conv_transpose3d's
    other = GroupConvTranspose3d(4, 2, 3, 2, 1, (1, 0, 0), groups=2, group="c4z")
    other.load_state_dict(m.state_dict())
    assert set(m.state_dict()) == {"weight", "bias"}
    torch.testing.assert_close(other.weight, m.weight)


@pytest.mark.parametrize("kwargs,match", [
    ({"padding_mode": "reflect"}, "a transposed conv takes 'zeros' only"),
    ({"padding": "same"}, "a transposed conv takes an int or three ints"),
    ({"output_padding": 1}, "must be smaller than the stride or the dilation"),
    ({"output_padding": (0, 2, 0), "stride": 2}, "must be smaller than the stride"),
    ({"output_padding": (1, 1)}, "output_padding=\\(1, 1\\) must be an int or three ints"),
    ({"kernel_size": (3, 3, 5)}, "must be cubic"),
    ({"group": "p4"}, "acts on 2 spatial dims"),
    ({"basis": "harmonic", "kernel_size": 0}, "kernel_size=0 must be an integer >= 1"),
])
def test_bad_arguments(kwargs, match):
    args = {"in_channels": 2, "out_channels": 2, "kernel_size": 3, "group": "o", **kwargs}
    with pytest.raises(ValueError, match=match):
        GroupConvTranspose3d(**args)


def test_functional_bad_arguments_and_empty_sizes(gen):
    x, w = _rand(gen, 1, 2, 4, 4, 4), _rand(gen, 3, 2, 3, 3, 3)
    with pytest.raises(ValueError, match="must be smaller than the stride"):
        lifting_conv_transpose3d(x, w, output_padding=1)
    with pytest.raises(ValueError, match="would be -4x-4x-4"):
        lifting_conv_transpose3d(x, w, padding=5)
    with pytest.raises(ValueError, match="a transposed conv takes an int or three ints"):
        lifting_conv_transpose3d(x, w, padding="valid")
    with pytest.raises(ValueError, match="expects 6-D"):
        group_conv_transpose3d(x, _rand(gen, 3, 2, 24, 3, 3, 3))
    m = GroupConvTranspose3d(2, 3, 3, 2, group="c4z", dtype=torch.float64)
    with pytest.raises(ValueError, match=r"has an empty spatial size 4x0x4"):
        m(_rand(gen, 1, 2, 4, 4, 0, 4))
    assert m(_rand(gen, 0, 2, 4, 4, 4, 4)).shape == (0, 3, 4, 9, 9, 9)  # control


def test_every_configuration_the_law_calls_exact_is(gen):
    """The law against measurement on c4z over small configurations: no problem -> error at
    rounding; a problem -> a large error (a flip-symmetric coincidence aside, none here)."""
    for k, s, p, op, size in itertools.product((2, 3), (1, 2), (0, 1), (0, 1), (2, 3)):
        if op >= s or (size - 1) * s - 2 * p + k + op < 2:
            continue
        with seeded_rng(0):
            m = GroupConvTranspose3d(1, 1, k, s, p, (0, op, op), group="c4z").double()
        x = _rand(gen, 1, 1, 4, size, size, size)
        law = exactness_problems3d("c4z", (size,) * 3, k, s, (p,) * 6, 1,
                                   output_padding=(0, op, op))
        err = _quiet(equivariance_error, m, x, "c4z")
        assert (err < 1e-12) == (not law), (k, s, p, op, size, err)
