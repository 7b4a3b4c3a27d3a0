"""The transposed steerable conv on voxels (``SteerableConvTranspose3d`` and its functional twin
``steerable_conv_transpose3d``): shapes against ``nn.ConvTranspose3d``, module == functional ==
``F.conv_transpose3d`` with the expanded filter, the adjoint of the forward conv, exactness at
every size unless ``output_padding`` (the negative control), the init, the state dict shared
with ``SteerableConv3d``, export, check_grid, gradcheck and the errors. Whole-table rows:
``equilayers/testing/_cases_steerable_transposed3d.py``."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from _gconv_common import assert_exports_to_conv_transpose3d_and_gradchecks
from _so3_common import off_grid
from conftest import seeded_rng
from torch import nn

from equilayers import check_grid
from equilayers.functional import steerable_basis3d, steerable_conv_transpose3d
from equilayers.nn import SteerableConv3d, SteerableConvTranspose3d
from equilayers.testing import equivariance_error

D64 = torch.float64


def _rand(gen, *shape, dtype=D64):
    return torch.randn(*shape, generator=gen, dtype=dtype)


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


@pytest.mark.filterwarnings("ignore:SteerableConvTranspose3d. no basis function")  # k = 1
@pytest.mark.parametrize("k,s,p,op,d,size", [(3, 2, 1, 1, 1, 4), (5, 2, 2, 0, 1, 3),
                                             (3, 3, 2, 2, 1, 5), (3, 1, 0, 1, 2, 3),
                                             (1, 2, 0, 1, 1, 3)])
def test_shapes_are_conv_transpose3d_and_module_equals_functional(k, s, p, op, d, size, gen):
    with seeded_rng(0):
        m = SteerableConvTranspose3d(2, 3, k, s, p, op, dilation=d, in_max_order=1,
                                     max_order=2).double()
        nn.init.normal_(m.bias)
    x = _rand(gen, 2, 2, 4, size, size + 1, size)
    y = _quiet(m, x)
    ref = nn.ConvTranspose3d(2, 3, k, s, p, op, dilation=d)
    assert y.shape == (2, 3, 9, *ref(torch.zeros(1, 2, size, size + 1, size)).shape[-3:])
    basis = steerable_basis3d("so3", k, in_order=1, out_order=2, dtype=D64)
    torch.testing.assert_close(steerable_conv_transpose3d(x, m.weight, basis, m.bias, s, p, op,
                                                          1, d), y)
    # the expanded filter in F.conv_transpose3d's layout, the bias on the order-0 slots
    bias = F.pad(m.bias[:, None], (0, 8)).flatten()
    z = F.conv_transpose3d(x.flatten(1, 2), m.expanded_filter(), bias, s, p, op, 1, d)
    torch.testing.assert_close(z.unflatten(1, (3, 9)), y, rtol=0, atol=0)


def test_a_planar_group_with_a_thin_kernel_and_output_size(gen):
    with seeded_rng(0):
        m = SteerableConvTranspose3d(2, 2, (1, 3, 3), (1, 2, 2), (0, 1, 1), group="so2",
                                     in_max_order=2, max_order=1).double()
    x = _rand(gen, 1, 2, 5, 3, 4, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert m(x).shape == (1, 2, 3, 3, 7, 7)
        assert m(x, output_size=(3, 7, 7)).shape == (1, 2, 3, 3, 7, 7)
        assert equivariance_error(m, x, "c4") < 1e-12  # turns of every slice
    with pytest.warns(UserWarning, match="output_padding=1 pads the height"):
        assert m(x, output_size=(3, 8, 8)).shape[-3:] == (3, 8, 8)
    with pytest.raises(ValueError, match="reaches sizes 7 to 8 only"):
        m(x, output_size=(3, 9, 7))


@pytest.mark.parametrize("group", ["so3", "o3"])
def test_exact_at_every_size_unless_output_padding(group, gen):
    """Exact (float64 rounding) on the cube's elements at even and odd sizes, k 1..5, stride
    1..3, with output_padding 0, and no warning; output_padding 1: a warning and a large error
    (the negative control)."""
    for k, s, p, size in [(3, 2, 1, 4), (5, 2, 2, 3), (1, 2, 0, 3), (3, 3, 0, 2), (3, 1, 1, 3)]:
        with seeded_rng(0):
            m = SteerableConvTranspose3d(2, 2, k, s, p, group=group, in_max_order=1,
                                         max_order=1).double()
        x = _rand(gen, 1, 2, 4, size, size, size)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert equivariance_error(m, x, group) < 1e-12, (k, s, p, size)
    with seeded_rng(0):
        bad = SteerableConvTranspose3d(2, 2, 3, 2, 1, 1, group=group, in_max_order=1).double()
    with pytest.warns(UserWarning, match=r"output_padding \(depth 1, height 1, width 1\)"):
        assert equivariance_error(bad, _rand(gen, 1, 2, 4, 3, 3, 3), group) > 1e-2


@pytest.mark.parametrize("group", ["so3", "so2"])
def test_adjoint_of_the_forward_conv(group, gen):
    """``<convT(x), y> == <x, conv(y)>``, ``conv`` the ``F.conv3d`` with the transposed conv's
    expanded filter, and the vector-Jacobian product of that conv is the transposed conv."""
    with seeded_rng(0):
        up = SteerableConvTranspose3d(3, 2, 3, 2, 1, bias=False, group=group, in_max_order=1,
                                      max_order=2).double()
    f_in, f_out = up.fiber_in, up.fiber_out
    x = _rand(gen, 2, 3, f_in, 3, 4, 4)
    y = up(x)
    z = _rand(gen, *y.shape)
    w = up.expanded_filter()
    conv = F.conv3d(z.flatten(1, 2), w, stride=2, padding=1).unflatten(1, (3, f_in))
    torch.testing.assert_close((y * z).sum(), (x * conv).sum())
    zz = z.flatten(1, 2).requires_grad_(True)
    (g,) = torch.autograd.grad(F.conv3d(zz, w, stride=2, padding=1), zz, x.flatten(1, 2))
    torch.testing.assert_close(g.unflatten(1, (2, f_out)), y)


def test_state_dict_is_the_forward_convs_and_repr():
    m = SteerableConvTranspose3d(4, 2, 3, 2, 1, (1, 0, 0), groups=2, in_max_order=1,
                                 max_order=1)
    assert repr(m) == ("SteerableConvTranspose3d(4, 2, kernel_size=3, group='so3', "
                       "max_order=1, in_max_order=1, stride=(2, 2, 2), padding=1, groups=2, "
                       "output_padding=(1, 0, 0))")
    fwd = SteerableConv3d(4, 2, 3, 2, 1, groups=2, in_max_order=1, max_order=1)
    assert m.weight.shape == fwd.weight.shape  # (C_out, C_in // groups, num_basis)
    fwd.load_state_dict(m.state_dict())  # the same keys and shapes, both ways
    m.load_state_dict(fwd.state_dict())
    assert m.expanded_filter().shape == (16, 4, 3, 3, 3)  # F.conv_transpose3d's layout
    wt, wf = m.expanded_filter(), fwd.expanded_filter()  # (16, 4, ...) and (8, 8, ...)
    for g in range(2):  # group g: in slots 8g..8g+7, out slots 4g..4g+3
        for i in range(8):
            for j in range(4):
                torch.testing.assert_close(wt[8 * g + i, j], wf[4 * g + j, i], rtol=0, atol=0)


@pytest.mark.parametrize("group,stride", [("so3", 1), ("so3", 2), ("so2", 2)])
def test_init_keeps_the_second_moment(group, stride, gen):
    """Unit-variance input -> every output order with second moment about 1, stride
    included (the variance times the stride's product)."""
    with seeded_rng(0):
        m = SteerableConvTranspose3d(16, 16, 3, stride, 1, group=group, in_max_order=1,
                                     max_order=2)
    f_in = m.fiber_in
    x = _rand(gen, 2, 16, f_in, 6, 6, 6, dtype=torch.float32)
    with torch.no_grad():
        y = _quiet(m, x)[..., 2:-2, 2:-2, 2:-2]
    slots = ([(0, 1), (1, 4), (4, 9)] if group == "so3" else [(0, 1), (1, 3), (3, 5)])
    for lo, hi in slots:
        assert 0.7 < float(y[:, :, lo:hi].square().mean()) < 1.3, (lo, hi)


@pytest.mark.parametrize("group,shape,kw", [
    ("so3", (2, 2, 3, 3, 3), {}),
    ("o3", (2, 4, 4, 3, 4, 3), {"in_max_order": 1, "groups": 2, "dilation": 2,
                                "output_padding": (1, 0, 1)}),
    ("so2", (2, 2, 5, 3, 4, 4), {"in_max_order": 2, "kernel_size": (1, 3, 3),
                                 "padding": (0, 1, 1), "basis": "slices"}),
])
def test_export_is_a_plain_conv_transpose3d_and_gradcheck(group, shape, kw, gen):
    kw = {"kernel_size": 3, "stride": 2, "padding": 1, "group": group, **kw}
    with seeded_rng(0):
        m = SteerableConvTranspose3d(shape[1], 2, **kw).double()
        nn.init.normal_(m.bias)
    assert_exports_to_conv_transpose3d_and_gradchecks(m, _rand(gen, *shape))


def test_check_grid_and_an_encoder_decoder_round_trip(gen):
    """A stride-2 conv and the stride-2 transposed conv, ``n -> (n+1)/2 -> n`` on odd sizes:
    check_grid finds nothing and the round trip is exact; output_padding=1 is named."""
    def net(op):
        with seeded_rng(0):
            return nn.Sequential(
                SteerableConv3d(1, 2, 3, 2, 1, max_order=1),
                SteerableConvTranspose3d(2, 1, 3, 2, 1, op, in_max_order=1, max_order=1),
            ).double()
    good = net(0)
    # only SO(3)'s off-grid rotations (the grid itself allows O exactly)
    assert [f.problem for f in check_grid(good, (1, 1, 7, 7, 7), "so3", shifts=False)] == [
        "off-grid-group"]
    assert check_grid(good, (1, 1, 7, 7, 7), "o", shifts=False) == []
    x = _rand(gen, 1, 1, 7, 7, 7)
    assert good(x).shape == (1, 1, 4, 7, 7, 7)
    assert equivariance_error(good, x, "so3", in_rep="trivial") < 1e-12
    found = check_grid(net(1), (1, 1, 7, 7, 7), "so3", shifts=False)
    assert [f.problem for f in found] == ["off-grid-group", "output-padding"]


@pytest.mark.parametrize("kwargs,match", [
    ({"padding_mode": "circular"}, "a transposed conv takes 'zeros' only"),
    ({"padding": "same"}, "a transposed conv takes an int or three ints"),
    ({"output_padding": 1}, "must be smaller than the stride or the dilation"),
    ({"output_padding": (1, 1)}, "output_padding=\\(1, 1\\) must be an int or three ints"),
    ({"kernel_size": 0}, "kernel_size=0 must be an integer >= 1"),
    ({"group": "o"}, "'so3' or 'o3'"),
    ({"basis": "slices"}, "basis='slices'"),
])
def test_bad_arguments(kwargs, match):
    args = {"in_channels": 2, "out_channels": 2, "kernel_size": 3, **kwargs}
    with pytest.raises(ValueError, match=match):
        SteerableConvTranspose3d(**args)


def test_functional_bad_arguments_and_empty_sizes(gen):
    basis = steerable_basis3d("so3", 3, out_order=1, dtype=D64)
    x, w = _rand(gen, 1, 2, 4, 4, 4), _rand(gen, 3, 2, basis.shape[0])
    with pytest.raises(ValueError, match="must be smaller than the stride"):
        steerable_conv_transpose3d(x, w, basis, output_padding=1)
    with pytest.raises(ValueError, match="would be -4x-4x-4"):
        steerable_conv_transpose3d(x, w, basis, padding=5)
    with pytest.raises(ValueError, match="a transposed conv takes an int or three ints"):
        steerable_conv_transpose3d(x, w, basis, padding="valid")
    with pytest.raises(ValueError, match="num_basis="):
        steerable_conv_transpose3d(x, w[..., :-1], basis)
    m = SteerableConvTranspose3d(2, 3, 3, 2, dtype=D64)
    with pytest.raises(ValueError, match=r"has an empty spatial size 4x0x4"):
        m(_rand(gen, 1, 2, 4, 0, 4))
    assert m(_rand(gen, 0, 2, 4, 4, 4)).shape == (0, 3, 4, 9, 9, 9)  # control


#: Off-grid errors of seed 0 (SteerableConvTranspose3d's docstring): stride 1, the forward
#: conv's level (0.023 / 0.014 / 0.014); stride 2 far off, as escnn's R3ConvTransposed.
OFF_GRID = {(None, 1, 3): 0.03, (None, 2, 5): 0.03, (1, 1, 3): 0.03}


@pytest.mark.parametrize("orders", list(OFF_GRID))
def test_off_grid_error_at_stride_1_is_the_forward_convs(orders):
    """At stride 1 the transposed conv is a steerable conv with the point-reflected filter:
    off-grid rotations (smoothed 21^3 volume, 5 random rotations) are off by the forward
    conv's level, below the interpolation floor; a plain ``nn.ConvTranspose3d`` read as the
    same fields is far off (the control)."""
    l_in, l_out, k = orders
    with seeded_rng(0):
        up = SteerableConvTranspose3d(2, 2, k, padding=k // 2, in_max_order=l_in,
                                      max_order=l_out).double()
    err, floor = off_grid(up, l_in=l_in)
    assert err <= OFF_GRID[orders] and err < floor / 2, (err, floor)
    f_in, f_out = up.fiber_in, up.fiber_out
    with seeded_rng(0):
        plain = nn.ConvTranspose3d(2 * f_in, 2 * f_out, k, padding=k // 2).double()
    wrapped = nn.Sequential(*([] if l_in is None else [nn.Flatten(1, 2)]), plain,
                            nn.Unflatten(1, (2, f_out)))
    wrapped.in_type, wrapped.out_type = up.in_type, up.out_type
    assert off_grid(wrapped, l_in=l_in)[0] > 2 * err
