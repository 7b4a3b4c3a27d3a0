"""``check_grid`` on what a layer's call decides beyond its attributes: an upsampling's output
size (``nn.Upsample``, ``GroupUpsample2d`` / ``3d``) and the output padding a transposed conv's
``output_size`` implies. Each finding agrees with the measured equivariance error (float64):
a finding where the error is large, none where the model is exact (the controls)."""

from __future__ import annotations

import warnings

import pytest
import torch
from conftest import seeded_rng
from torch import nn

from equilayers import check_grid
from equilayers.nn import (
    GroupConvTranspose2d,
    GroupConvTranspose3d,
    GroupPool,
    GroupUpsample2d,
    GroupUpsample3d,
    LiftingConv2d,
    LiftingConv3d,
    LiftingConvTranspose2d,
    LiftingConvTranspose3d,
)
from equilayers.testing import equivariance_error

_UPS = [  # (the upsampling, after the group pool (plain images) or before it, exact?)
    (lambda: GroupUpsample2d(size=20), False, False),
    (lambda: nn.Upsample(scale_factor=20 / 7), True, False),
    (lambda: nn.Upsample(scale_factor=2.5, mode="bilinear"), True, False),
    (lambda: GroupUpsample2d(size=(14, 13), mode="bilinear"), False, False),
    (lambda: GroupUpsample2d(scale_factor=2), False, True),
    (lambda: GroupUpsample2d(size=20, mode="bilinear"), False, True),
    (lambda: GroupUpsample2d(size=20, mode="nearest-exact"), False, True),
    (lambda: nn.Upsample(scale_factor=2, mode="bicubic"), True, True),
]


@pytest.mark.parametrize("make,after,exact", _UPS, ids=[str(i) for i in range(len(_UPS))])
def test_an_upsampling_is_found_where_it_breaks_rotations(make, after, exact, gen):
    with seeded_rng(0):
        lift = LiftingConv2d(1, 2, 3, padding=1, group="p4")
    up = make()
    net = nn.Sequential(lift, GroupPool(), up) if after else nn.Sequential(lift, up, GroupPool())
    net = net.double()
    found = [f.problem for f in check_grid(net, (1, 1, 7, 7), "p4", shifts=False)]
    assert found == ([] if exact else ["upsample-size"]), (up, found)
    x = torch.randn(2, 1, 7, 7, generator=gen, dtype=torch.float64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        net(x)  # an inexact size= on a group map warns once; an exact one is quiet
    assert bool(caught) == (not exact and not after and "size" in repr(up)), (up, caught)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if net(x).shape[-1] == net(x).shape[-2]:  # (a non-square output cannot be compared)
            err = equivariance_error(net, x, "p4", out_rep="trivial")
            assert (err < 1e-12) == exact, (up, err)


def test_the_ratio_of_an_axis_the_group_keeps_is_free():
    """c4z turns H and W only: a depth resized by another ratio is exact; o moves it too."""
    def net(group):
        return nn.Sequential(LiftingConv3d(1, 1, 3, padding=1, group=group),
                             GroupUpsample3d(size=(7, 12, 12)))
    assert check_grid(net("c4z"), (1, 1, 6, 6, 6), "c4z", shifts=False) == []
    found = check_grid(net("o"), (1, 1, 6, 6, 6), "o", shifts=False)
    assert [f.problem for f in found] == ["upsample-size"]
    assert "nearest" in found[0].message and "depth" in found[0].message


class _ToSize(nn.Module):
    def __init__(self, up, size):
        super().__init__()
        self.up, self.size = up, size

    def forward(self, x):
        return self.up(x, output_size=self.size)


@pytest.mark.parametrize("nd", [2, 3])
def test_the_output_padding_of_a_calls_output_size_is_found(nd, gen):
    """``forward(x, output_size=2n)`` after a stride-2, k3, padding-1 transposed conv pads
    the end by one, as ``output_padding=1``: a finding (it had none, at error 1.4); the
    call at ``2n - 1`` is exact (the control)."""
    group, fiber = ("p4", 4) if nd == 2 else ("c4z", 4)
    make = GroupConvTranspose2d if nd == 2 else GroupConvTranspose3d
    with seeded_rng(0):
        up = make(2, 2, 3, stride=2, padding=1, group=group).double()
    n = 5
    shape = (1, 2, fiber) + (n,) * nd
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    for size, exact in (((2 * n,) * nd, False), ((2 * n - 1,) * nd, True)):
        net = _ToSize(up, size)
        found = [f.problem for f in check_grid(net, shape, group, shifts=False)]
        assert found == ([] if exact else ["output-padding"]), (size, found)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # (the layer's own warning says the same)
            err = equivariance_error(net, x, group, in_rep="regular", out_rep="regular")
        assert (err < 1e-12) == exact, (size, err)


class _LiftToSize(_ToSize):
    def forward(self, x):
        return self.up(x, output_size=self.size).amax(2)  # (plain images out)


@pytest.mark.parametrize("nd", [2, 3])
def test_a_lifting_transposed_convs_output_size_is_found(nd, gen):
    """A lifting transposed conv maps images to group maps, 4-D -> 5-D (5-D -> 6-D), so the
    output size of its call was not recorded and ``output_size=2n`` went unreported (p4 error
    1.07, c4z 0.97; the group transposed conv's was found). Now a finding; ``output_size`` at
    the default ``2n - 1`` is exact and none (the control)."""
    group = "p4" if nd == 2 else "c4z"
    make = LiftingConvTranspose2d if nd == 2 else LiftingConvTranspose3d
    with seeded_rng(0):
        up = make(1, 2, 3, stride=2, padding=1, group=group).double()
    n = 5 if nd == 2 else 3
    shape = (1, 1) + (n,) * nd
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    for size, exact in (((2 * n,) * nd, False), ((2 * n - 1,) * nd, True)):
        net = _LiftToSize(up, size)
        found = check_grid(net, shape, group, shifts=False)
        assert [(f.layer, f.problem) for f in found] == (
            [] if exact else [("up", "output-padding")]), (size, found)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # (the layer's own warning says the same)
            err = equivariance_error(net, x, group)
        assert (err < 1e-12) == exact, (size, err)


def test_a_blur_upsampling_off_the_grid_centre_is_a_finding_and_the_unet_pair_is_not(gen):
    """BlurUpsample2d/3d land their samples off the centre at every size except the U-Net's
    pair (scale 2, transposed, even blur); check_grid returned [] on all 288 inexact settings
    (measured error 0.50 here) and now names them, with the blur's padding under shifts."""
    from equilayers.nn import BlurUpsample2d, BlurUpsample3d, GroupConv2d

    def net(up):
        with seeded_rng(0):
            return nn.Sequential(LiftingConv2d(1, 2, 3, padding=1, group="p4m",
                                               padding_mode="circular"),
                                 up, GroupConv2d(2, 2, 3, padding=1, group="p4m",
                                                 padding_mode="circular")).double()

    x = torch.randn(1, 1, 9, 9, generator=gen, dtype=torch.float64)
    bad = net(BlurUpsample2d(2, 3, "circular"))
    with pytest.warns(UserWarning, match="not exactly equivariant"):
        assert equivariance_error(bad, x, "p4m") > 0.1
    found = check_grid(bad, x.shape, "p4m")
    assert [(f.layer, f.problem, f.breaks) for f in found] == [("1", "upsample-grid",
                                                                "rotations")]
    good = net(BlurUpsample2d(2, 2, "circular", transposed=True))
    assert equivariance_error(good, x, "p4m") < 1e-12  # the control
    assert check_grid(good, x.shape, "p4m") == []
    zeros = net(BlurUpsample2d(2, 2, "zeros", transposed=True))
    assert [f.problem for f in check_grid(zeros, x.shape, "p4m")] == ["non-circular-padding"]
    assert check_grid(zeros, x.shape, "p4m", shifts=False) == []
    found = check_grid(nn.Sequential(BlurUpsample3d(2, 3, "circular")), (1, 1, 24, 5, 5, 5), "o")
    assert [f.problem for f in found] == ["upsample-grid"]


@pytest.mark.parametrize("pool", [lambda: nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
                                  lambda: nn.AvgPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1))])
def test_a_torch_3d_pool_on_a_planar_group_map_is_checked(pool, gen):
    """A ``(1, k, k)`` torch 3-D pool on a p4 map (its fiber as depth) slides over (H, W)
    only, which check_grid allows, but then skipped it as "not a 2-D window": [] where the
    stride broke rotations (0.26). Now its (H, W) window is checked: found at 16, exact and
    finding-free at 17 (the control)."""
    for size, exact in ((16, False), (17, True)):
        net = nn.Sequential(LiftingConv2d(1, 2, 3, padding=1, group="p4"), pool(),
                            GroupPool()).double()
        x = torch.randn(1, 1, size, size, generator=gen, dtype=torch.float64)
        err = equivariance_error(net, x, "p4")
        found = check_grid(net, (1, 1, size, size), group="p4", shifts=False)
        if exact:
            assert err < 1e-10 and found == [], (err, found)
        else:
            assert err > 1e-2 and [(f.layer, f.problem) for f in found] == [
                ("1", "stride-parity")], (err, found)
