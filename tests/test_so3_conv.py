"""``SteerableConv3d`` and its SO(3)/O(3) steerable 3-D basis (issue 16).

Exact checks run over the cube's 24 rotations (48 with O(3)) on the voxel grid, composed with
the Wigner-D action on the fibers; off-grid rotations are measured against the interpolation
floor on a smooth volume (``OFF_GRID``); negative controls (a plain ``nn.Conv3d``, a basis with
one row of the wrong sign) must fail the same checks.
"""

from __future__ import annotations

import pytest
import torch
from _so3_common import D64, off_grid
from conftest import seeded_rng
from torch import nn

import equilayers
from equilayers import functional as EF
from equilayers import nn as enn
from equilayers.groups import FieldType, SO3Group, get
from equilayers.testing import equivariance_report


# --- the basis and the conv -------------------------------------------------------------------
def _harmonic_report(conv, x, group, elements=None):
    return equivariance_report(conv, x, group, elements=elements)


@pytest.mark.parametrize("group", ["so3", "o3"])
@pytest.mark.parametrize("orders", [(None, 1), (None, 2), (1, 1), (2, 1), (1, 3)])
def test_exact_on_the_cube(group, orders):
    l_in, l_out = orders
    with seeded_rng(0):
        conv = enn.SteerableConv3d(2, 3, 5 if l_out == 3 else 3, padding=1, group=group,
                                   in_max_order=l_in, max_order=l_out).double()
    f_in = () if l_in is None else ((l_in + 1) ** 2,)
    x = torch.randn(2, 2, *f_in, 7, 7, 7, generator=torch.Generator().manual_seed(1), dtype=D64)
    rep = _harmonic_report(conv, x, group)
    assert len(rep.errors) == (24 if group == "so3" else 48)
    assert rep.error < 1e-13, rep
    conv32 = conv.float()
    assert _harmonic_report(conv32, x.float(), group).error < 1e-5


def test_stride_and_dilation_exact(gen):
    with seeded_rng(0):
        conv = enn.SteerableConv3d(2, 2, 3, stride=2, padding=2, dilation=2, max_order=1,
                                   in_max_order=1).double()
    x = torch.randn(1, 2, 4, 9, 9, 9, generator=gen, dtype=D64)
    assert _harmonic_report(conv, x, "so3").error < 1e-13


def test_negative_controls_fail_on_the_cube(gen):
    x = torch.randn(2, 2, 7, 7, 7, generator=gen, dtype=D64)
    with seeded_rng(0):
        plain = nn.Conv3d(2, 2 * 4, 3, padding=1).double()
    as_fields = nn.Sequential(plain, nn.Unflatten(1, (2, 4)))
    rep = equivariance_report(as_fields, x, "so3", in_rep="trivial",
                              out_rep=FieldType.harmonic("so3", 1))
    assert rep.error > 0.1
    with seeded_rng(0):
        conv = enn.SteerableConv3d(2, 2, 3, padding=1, in_max_order=1, max_order=1).double()
    _break(conv)
    y = torch.randn(2, 2, 4, 7, 7, 7, generator=gen, dtype=D64)
    assert _harmonic_report(conv, y, "so3").error > 1e-3


def _break(conv: enn.SteerableConv3d) -> None:
    """Flip the sign of one output row of the last 1 -> 1 element (the outer shell's coupling
    through the order-2 harmonics)."""
    block = conv._basis_block(1, 1)  # (n, 3, 3, k, k, k), a view of the basis buffer
    assert block is not None
    with torch.no_grad():
        block[-1, 0].neg_()  # the first order-1 row: slot 1 of the output


#: Bounds on the off-grid errors of seed 0 in SteerableConv3d's docstring (0.023, 0.014, 0.015).
OFF_GRID = {(None, 1, 3): 0.03, (None, 2, 5): 0.03, (1, 1, 3): 0.03,
            (None, 1, 4): 0.03, (1, 1, 2): 0.03}  # even: about the point between 8 voxels


@pytest.mark.parametrize("orders", list(OFF_GRID))
def test_off_grid_error_is_bounded(orders):
    l_in, l_out, k = orders
    with seeded_rng(0):
        conv = enn.SteerableConv3d(2, 2, k, padding=k // 2, in_max_order=l_in,
                                   max_order=l_out).double()
    err, floor = off_grid(conv, l_in=l_in)
    assert err <= OFF_GRID[orders], (err, floor)
    # a plain conv viewed as the same fields is far off
    with seeded_rng(0):
        plain = nn.Sequential(nn.Conv3d(2 * (1 if l_in is None else (l_in + 1) ** 2),
                                        2 * (l_out + 1) ** 2, k, padding=k // 2).double())
    plain.in_type, plain.out_type = conv.in_type, conv.out_type
    flat = plain if l_in is None else nn.Sequential(nn.Flatten(1, 2), *plain)
    wrapped = nn.Sequential(*flat, nn.Unflatten(1, (2, (l_out + 1) ** 2)))
    wrapped.in_type, wrapped.out_type = conv.in_type, conv.out_type
    assert off_grid(wrapped, l_in=l_in)[0] > 2 * err


def test_harness_measures_off_grid_rotations_of_volumes():
    """equivariance_report on SO(3) elements off the grid: smoothed input, trilinear rotation,
    the inscribed ball; the error is near the one measured above and below the floor, and a
    plain conv read as the same fields is far off."""
    so3 = get("so3")
    assert isinstance(so3, SO3Group)
    gen = torch.Generator().manual_seed(0)
    els = [so3.random_element(gen) for _ in range(3)]
    with seeded_rng(0):
        conv = enn.SteerableConv3d(2, 2, 3, padding=1, max_order=1).double()
    x = torch.randn(1, 2, 21, 21, 21, generator=gen, dtype=D64)
    rep = equivariance_report(conv, x, so3, elements=els, smooth=2.0, margin=2.0)
    assert rep.approximate and 0 < rep.error < 0.04 and rep.error < rep.floor, rep
    plain = nn.Sequential(nn.Conv3d(2, 8, 3, padding=1).double(), nn.Unflatten(1, (2, 4)))
    bad = equivariance_report(plain, x, so3, elements=els, smooth=2.0, margin=2.0,
                              in_rep="trivial", out_rep=conv.out_type)
    assert bad.error > 0.3, bad


# --- the module's contract --------------------------------------------------------------------
def test_module_equals_functional(gen):
    with seeded_rng(0):
        conv = enn.SteerableConv3d(2, 3, 3, stride=1, padding=1, in_max_order=1, max_order=2)
    x = torch.randn(2, 2, 4, 5, 5, 5, generator=gen)
    basis = EF.steerable_basis3d("so3", 3, in_order=1, out_order=2)
    torch.testing.assert_close(conv(x), EF.steerable_conv3d(x, conv.weight, basis, conv.bias,
                                                            padding=1))
    assert conv(x).shape == (2, 3, 9, 5, 5, 5)
    assert "max_order=2, in_max_order=1" in repr(conv)


def test_gradcheck_state_dict_and_export(gen):
    with seeded_rng(0):
        conv = enn.SteerableConv3d(1, 2, 3, padding=1, max_order=1).double()
    x = torch.randn(1, 1, 4, 4, 4, generator=gen, dtype=D64, requires_grad=True)
    assert torch.autograd.gradcheck(conv, (x,))
    with seeded_rng(1):
        other = enn.SteerableConv3d(1, 2, 3, padding=1, max_order=1).double()
    with torch.no_grad():
        conv.bias.normal_()  # a nonzero bias on the order-0 slot
    other.load_state_dict(conv.state_dict())
    torch.testing.assert_close(other(x), conv(x))
    plain = equilayers.export(nn.Sequential(conv))
    assert not any(isinstance(m, enn.SteerableConv3d) for m in plain.modules())
    torch.testing.assert_close(plain(x), conv(x))


def test_check_grid_on_so3():
    """check_grid reads SO(3) as its grid subgroup O: stride 2 wants odd sizes; its other
    rotations are one off-grid finding (as c8's on images), which O itself does not get."""
    net = nn.Sequential(enn.SteerableConv3d(1, 2, 3, padding=1, max_order=1),
                        enn.SteerableConv3d(2, 2, 3, stride=2, padding=1, in_max_order=1))
    found = equilayers.check_grid(net, (1, 1, 10, 10, 10), "so3", shifts=False)
    assert [(f.problem, f.fix) for f in found] == [
        ("off-grid-group", "measure the approximate error (equilayers.metrics), or use o/oh "
         "for exactness"), ("stride-parity", "use an input size of 11")]
    found = equilayers.check_grid(net, (1, 1, 11, 11, 11), "o3", shifts=False)
    # SO(3) layers asked about O(3): no inversion in their weights (group-mismatch, each)
    assert [f.problem for f in found] == ["off-grid-group", "group-mismatch", "group-mismatch"]
    assert "exact: its elements in 'oh'" in found[0].message
    assert equilayers.check_grid(net, (1, 1, 11, 11, 11), "o", shifts=False) == []


def test_init_preserves_the_second_moment(gen):
    with seeded_rng(0):
        conv = enn.SteerableConv3d(16, 16, 5, padding=2, in_max_order=1, max_order=2)
    x = torch.randn(4, 16, 4, 9, 9, 9, generator=gen)
    with torch.no_grad():
        y = conv(x)
    for lo in range(3):
        ms = float(y[:, :, lo * lo:(lo + 1) ** 2, 2:-2, 2:-2, 2:-2].square().mean())
        assert 0.6 < ms < 1.5, (lo, ms)


def test_bad_input():
    with pytest.raises(ValueError, match="group='o'.*'so3' or 'o3'"):
        enn.SteerableConv3d(2, 2, 3, group="o")
    with pytest.raises(ValueError, match="kernel_size=0 must be an integer >= 1"):
        enn.SteerableConv3d(2, 2, 0)
    with pytest.raises(ValueError, match="max_order=-1"):
        enn.SteerableConv3d(2, 2, 3, max_order=-1)
    with pytest.raises(TypeError, match="in_max_order=1.5"):
        enn.SteerableConv3d(2, 2, 3, in_max_order=1.5)
    conv = enn.SteerableConv3d(2, 2, 3, padding=1, in_max_order=1)
    with pytest.raises(ValueError, match="F=4 slots"):
        conv(torch.randn(1, 2, 9, 5, 5, 5))
    with pytest.raises(ValueError, match="C_in=2"):
        conv(torch.randn(1, 3, 4, 5, 5, 5))
    with pytest.warns(UserWarning, match="order\\(s\\) \\[3\\]"):
        enn.SteerableConv3d(2, 2, 3, max_order=3)  # J = 3 exceeds the caps of k = 3
