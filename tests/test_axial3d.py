"""Planar groups on voxels (``SteerableConv3d(..., group="so2" | "o2" | "cN" | "dN")``): the
basis is the planar one on every depth slice, module == functional, the init, the off-grid
error against the interpolation floor and a plain ``nn.Conv3d``, the exactness warning, bad
input. The exact grid-element rows and their negative controls are in the case table
(``equilayers/testing/_cases_axial.py``)."""

from __future__ import annotations

import warnings

import pytest
import torch
from _axial_common import off_grid_error, smooth_volume, steerable_stack
from torch import nn

from equilayers._rng import global_rng_from
from equilayers.functional import steerable_basis3d, steerable_conv3d
from equilayers.groups import FieldType, get
from equilayers.nn import GroupConv2d, LiftingConv2d, SteerableConv3d


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("group", ["so2", "o2", "c8", "d4"])
@pytest.mark.parametrize("in_order", [None, 2])
def test_every_depth_slice_is_the_planar_conv(group, in_order):
    """Depth slice ``z`` of the expanded filter is the planar conv's filter of the
    coefficients ``j * k + z``: the same basis, scale and layout as ``LiftingConv2d`` /
    ``GroupConv2d``."""
    k = 5
    with global_rng_from(_gen()):
        conv = SteerableConv3d(3, 2, k, group=group, in_max_order=in_order, max_order=2,
                               basis="slices")
        planar = (LiftingConv2d(3, 2, k, group=group, max_order=2, basis="harmonic")
                  if in_order is None else
                  GroupConv2d(3, 2, k, group=group, in_max_order=in_order, max_order=2,
                              basis="harmonic"))
    n = planar.weight.shape[-1]
    assert conv.weight.shape[-1] == n * k
    filt = conv.expanded_filter()
    for z in range(k):
        with torch.no_grad():
            planar.weight.copy_(conv.weight.view(2, 3, n, k)[..., z])
        torch.testing.assert_close(filt[:, :, z], planar.expanded_filter(), rtol=0, atol=1e-6)


@pytest.mark.parametrize("basis", ["shells", "slices"])
@pytest.mark.parametrize("group", ["so2", "d8"])
def test_module_matches_functional(group, basis):
    with global_rng_from(_gen()):
        conv = SteerableConv3d(2, 3, 3, stride=(1, 2, 2), padding=1, group=group,
                               in_max_order=1, max_order=2, basis=basis).double()
        nn.init.normal_(conv.bias)
    x = torch.randn(2, 2, 3, 4, 7, 7, dtype=torch.float64, generator=_gen(1))
    dense = steerable_basis3d(group, 3, in_order=1, out_order=2, dtype=torch.float64,
                              basis=basis)
    assert dense.shape == (conv.weight.shape[-1], 5, 3, 3, 3, 3)
    want = steerable_conv3d(x, conv.weight, dense, conv.bias, stride=(1, 2, 2), padding=1)
    torch.testing.assert_close(conv(x), want, rtol=0, atol=1e-12)
    nonzero = dense.flatten(1, 2).abs().sum(dim=(1, 3, 4)) > 0  # (n, k): depth slices used
    if basis == "slices":  # an element lives on one depth slice and is planar there
        assert (nonzero.sum(1) == 1).all()
        assert (nonzero.float().argmax(1) == torch.arange(len(dense)) % 3).all()
    else:  # shells reach across the slices
        assert (nonzero.sum(1) > 1).any()


@pytest.mark.parametrize("basis", ["shells", "slices"])
@pytest.mark.parametrize("group", ["so2", "o2"])
@pytest.mark.parametrize("in_order", [None, 2])
def test_init_second_moment(group, in_order, basis):
    """Every output order has second moment about 1 per slot on unit i.i.d. input (valid
    padding; measured 0.95-1.06)."""
    with global_rng_from(_gen()), torch.no_grad():
        conv = SteerableConv3d(16, 8, 5, group=group, in_max_order=in_order, max_order=2,
                               basis=basis)
        shape = (8, 16, 9, 9, 9) if in_order is None else (8, 16, 5, 9, 9, 9)
        y = conv(torch.randn(shape))
    for m in range(3):
        slots = [0] if m == 0 else [2 * m - 1, 2 * m]
        moment = y[:, :, slots].square().mean().item()  # per slot
        assert 0.8 < moment < 1.25, (m, moment)


#: (group, kernel_size, max_order) -> the largest relative off-grid error of the 3-conv stack
#: allowed (the default basis="shells"). Measured (seeds 0 / 1 / 2, worst of 17, 33, 45, 71,
#: 137 degrees; 2026-12-06): so2 k3 M1 0.020 / 0.015 / 0.021 (floor 0.053-0.076), o2 k5 M2
#: 0.029 / 0.019 / 0.017 (floor 0.057-0.099); basis="slices" 0.031 / 0.026 / 0.020 and 0.020 /
#: 0.026 / 0.019; a plain nn.Conv3d stack read as the same fields 1.2-1.8.
OFF_GRID = {("so2", 3, 1): 0.05, ("o2", 5, 2): 0.05}


@pytest.mark.parametrize("group,k,order", list(OFF_GRID))
def test_off_grid_rotations_about_the_depth_axis(group, k, order):
    """Turning every depth slice of a smooth volume by angles off the grid: the stack's
    output turns with it up to the bound, below the interpolation floor (the output turned
    forth and back), while a plain ``nn.Conv3d`` stack is off by more than its output."""
    with global_rng_from(_gen()):
        ours = steerable_stack(group, k, order)
        plain = nn.Sequential(
            nn.Conv3d(1, 8, k, padding=k // 2), nn.Conv3d(8, 8, k, padding=k // 2),
            nn.Conv3d(8, 2 * (2 * order + 1), k, padding=k // 2),
            nn.Unflatten(1, (2, 2 * order + 1))).double()
    x = smooth_volume(_gen(3))

    def error(f) -> tuple[float, float]:
        return off_grid_error(f, x, group, order, (17, 33, 45, 71, 137))

    err, floor = error(ours)
    assert err < OFF_GRID[(group, k, order)], err
    assert err < floor, (err, floor)
    assert error(plain)[0] > 1.0


def test_exactness_warning_reads_the_plane_only():
    """Stride 2 on an even width breaks the quarter turns (warned once); the depth is never
    moved, so an even depth with stride 2 is exact (no warning)."""
    conv = SteerableConv3d(1, 1, 3, stride=2, padding=1, group="so2", max_order=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        conv(torch.randn(1, 1, 8, 9, 9))
    with pytest.warns(UserWarning, match=r"so2\) is not exactly equivariant on its grid "
                                         r"elements \(c4\).*width"):
        conv(torch.randn(1, 1, 9, 9, 8))


@pytest.mark.parametrize("group,match", [
    ("o", r"group='o' has no harmonic fields; steerable 3-D filters take 'so3' or 'o3', or "
          r"a planar group .* \(use GroupConv3d/LiftingConv3d"),
    ("nope", r"group='nope' is not a group"),
])
def test_refuses_groups_without_harmonic_fields(group, match):
    with pytest.raises(ValueError, match=match):
        SteerableConv3d(1, 1, 3, group=group)
    with pytest.raises(ValueError, match=match.replace("SteerableConv3d", "")):
        steerable_basis3d(group, 3)


def test_fields_are_volumes_of_the_planar_group():
    conv = SteerableConv3d(2, 3, 3, group="o2", in_max_order=1, max_order=2)
    assert conv.in_type == FieldType.harmonic("o2", 1, spatial_dims=3)
    assert conv.out_type == FieldType.harmonic("o2", 2, spatial_dims=3)
    with pytest.raises(ValueError, match=r"SteerableConv3d.*6-D"):
        conv(torch.randn(1, 2, 3, 5, 5))  # a planar field map is not a volume


@pytest.mark.parametrize("name", ["norm", "gated", "fourier", "pool", "bn-eval"])
def test_harmonic_maps_on_volumes_are_the_planar_maps_per_slice(name):
    """A volume of planar fields (``spatial_dims=3``) gets, on every depth slice, what the
    planar module gives that slice (module and functional alike)."""
    from equilayers import functional as EF
    from equilayers.nn import (
        FourierNonlinearity,
        GatedNonlinearity,
        HarmonicBatchNorm,
        NormNonlinearity,
        NormPool,
    )
    make = {
        "norm": lambda dims: NormNonlinearity(3, 2, spatial_dims=dims),
        "gated": lambda dims: GatedNonlinearity(2, group="o2", spatial_dims=dims),
        "fourier": lambda dims: FourierNonlinearity("so2", 2, spatial_dims=dims),
        "pool": lambda dims: NormPool(2, spatial_dims=dims),
        "bn-eval": lambda dims: HarmonicBatchNorm(3, 2, spatial_dims=dims).eval(),
    }[name]
    with global_rng_from(_gen()):
        volume, planar = make(3), make(2)
    if name == "bn-eval":
        for mod in (volume, planar):
            mod.running_mean.fill_(0.3)
            mod.running_var.uniform_(0.5, 2.0, generator=_gen(2))
    x = torch.randn(2, 3, 5, 4, 6, 7, generator=_gen(1))
    y = volume(x)
    per_slice = torch.stack([planar(x[:, :, :, d]) for d in range(4)],
                            dim=2 if name == "pool" else 3)
    torch.testing.assert_close(y, per_slice, rtol=0, atol=1e-6)
    if name == "norm":
        torch.testing.assert_close(EF.norm_nonlinearity(x, volume.bias, 2), y)


def test_batch_norm_on_volumes_takes_statistics_over_depth_too():
    """Training statistics over ``B, D, H, W``: the same as the planar module on the depth
    slices stacked into the batch."""
    from equilayers.nn import HarmonicBatchNorm
    volume = HarmonicBatchNorm(3, 2, group="so2", spatial_dims=3)
    planar = HarmonicBatchNorm(3, 2, group="so2")
    x = torch.randn(2, 3, 5, 4, 6, 7, generator=_gen(1))
    y = volume(x)
    folded = planar(x.permute(0, 3, 1, 2, 4, 5).reshape(8, 3, 5, 6, 7))
    torch.testing.assert_close(y, folded.reshape(2, 4, 3, 5, 6, 7).permute(0, 2, 3, 1, 4, 5))
    torch.testing.assert_close(volume.running_var, planar.running_var)
    torch.testing.assert_close(volume.running_mean, planar.running_mean)


@pytest.mark.parametrize("basis", ["shells", "slices"])
@pytest.mark.parametrize("kernel_size", [(1, 5, 5), (3, 5, 5), (2, 3, 3), (5, 3, 3)])
def test_kernels_of_any_depth(kernel_size, basis):
    """A planar group takes ``(k_d, k, k)`` kernels (the depth is never turned): exact on the
    quarter turns (flips) of every slice, module == functional, and the padding (``"same"``;
    none: ``n - k + 1`` per dim), the output size and the repr follow ``nn.Conv3d``'s."""
    from equilayers.testing import equivariance_error

    with global_rng_from(_gen()):
        lift = SteerableConv3d(2, 3, kernel_size, padding="same", group="o2", max_order=2,
                               basis=basis).double()
        conv = SteerableConv3d(3, 2, kernel_size, padding="same", group="o2",
                               in_max_order=2, max_order=1, basis=basis).double()
    x = torch.randn(2, 2, 5, 7, 7, dtype=torch.float64, generator=_gen(1))
    o2 = get("o2")
    assert equivariance_error(nn.Sequential(lift, conv), x, o2,
                              elements=o2.grid_elements()) < 1e-12
    dense = steerable_basis3d("o2", kernel_size, out_order=2, dtype=torch.float64,
                              basis=basis)
    assert dense.shape[-3:] == kernel_size
    torch.testing.assert_close(lift(x), steerable_conv3d(x, lift.weight, dense, lift.bias,
                                                         padding="same"), rtol=0, atol=1e-12)
    assert lift(x).shape == (2, 3, 5, 5, 7, 7)
    assert f"kernel_size={kernel_size}" in repr(lift)
    valid = SteerableConv3d(2, 3, kernel_size, group="o2", max_order=1, basis=basis)
    assert valid(x.float()).shape[-3:] == tuple(n - kk + 1 for n, kk in zip(
        x.shape[-3:], kernel_size, strict=True))


@pytest.mark.parametrize("group", ["so2", "o2", "c4", "d4"])
@pytest.mark.parametrize("transposed", [False, True])
def test_depth_only_kernels_build_or_name_the_empty_basis(group, transposed):
    """``(k_d, 1, 1)``: the default shell of a 1 x 1 plane (radius 0, sigma 0.005) vanishes
    on every voxel of an even depth (all 0.5 off the centre), so the shells' basis is empty:
    the layer says so and what builds one (it crashed in the init rule with torch's
    ``max(): Expected reduction dim``); a wider ``sigma``, an odd depth and the slices build
    and are exact on the grid elements."""
    from equilayers.nn import SteerableConvTranspose3d
    from equilayers.testing import equivariance_error

    cls = SteerableConvTranspose3d if transposed else SteerableConv3d
    for kd in (2, 4):
        with pytest.raises(ValueError, match=rf"basis is empty for kernel_size=\({kd}, 1, 1\)"
                           r".*vanish on every voxel.*sigma=0\.5"):
            cls(1, 2, (kd, 1, 1), group=group, max_order=1)
    x = torch.randn(2, 1, 3, 5, 4, 4, dtype=torch.float64, generator=_gen(1))
    g = get(group)
    for kw in ({"sigma": 0.5}, {"basis": "slices"}, {}):
        kd = 3 if not kw else 2
        with warnings.catch_warnings(), global_rng_from(_gen()):
            warnings.simplefilter("ignore")  # (order 1 unreached by a 1 x 1 plane)
            conv = cls(1, 2, (kd, 1, 1), group=group, in_max_order=1, max_order=1,
                       **kw).double()
        assert conv.weight.abs().sum() > 0, kw
        assert equivariance_error(conv, x, g, elements=g.grid_elements()) < 1e-12, kw
        # the control: the same output with its order-0 slot moved into the order-1 cosine
        rolled = equivariance_error(lambda v, conv=conv: conv(v).roll(1, dims=2), x, g,
                                    in_rep=conv.in_type, out_rep=conv.out_type,
                                    elements=g.grid_elements())
        assert rolled > 1e-3, (kw, rolled)


def test_one_slice_kernels_are_the_planar_basis():
    """On a single slice ``(1, k, k)`` the shells reduce to the planar basis's span (their
    ``J`` and ``J + 2`` coincide there and are kept once)."""
    shells = steerable_basis3d("so2", (1, 5, 5), in_order=2, out_order=2, dtype=torch.float64)
    slices = steerable_basis3d("so2", (1, 5, 5), in_order=2, out_order=2, dtype=torch.float64,
                               basis="slices")
    a, b = shells.flatten(1), slices.flatten(1)
    rank = int(torch.linalg.matrix_rank(torch.cat([a, b])))
    assert rank == len(a) == len(b) == int(torch.linalg.matrix_rank(a))


@pytest.mark.parametrize("kernel_size,match", [
    ((3, 5, 3), r"kernel_size=\(3, 5, 3\) must be k, or \(k_d, k, k\)"),
    ((3, 5, 5, 5), r"must be k, or \(k_d, k, k\)"),
])
def test_refuses_kernels_that_the_turns_do_not_map(kernel_size, match):
    with pytest.raises(ValueError, match=match):
        SteerableConv3d(1, 1, kernel_size, group="so2")
    with pytest.raises(ValueError, match=r"kernel_size"):
        SteerableConv3d(1, 1, (3, 5, 5), group="so3")  # SO(3) turns the depth: cubic only


def test_reprs_name_the_volume_fields():
    """The harmonic layers built for volumes of planar fields say so in their repr (a default
    module's repr does not change), and a repr rebuilds the same field types."""
    from equilayers.nn import (
        FourierNonlinearity,
        GatedNonlinearity,
        HarmonicBatchNorm,
        NormNonlinearity,
        NormPool,
    )
    mods = [NormNonlinearity(3, 2, spatial_dims=3), GatedNonlinearity(2, group="o2",
                                                                      spatial_dims=3),
            HarmonicBatchNorm(3, 2, spatial_dims=3), NormPool(2, spatial_dims=3),
            FourierNonlinearity("so2", 2, spatial_dims=3)]
    for m in mods:
        assert repr(m).endswith("spatial_dims=3)"), repr(m)
    assert "spatial_dims" not in repr(NormNonlinearity(3, 2))
    assert "spatial_dims" not in repr(HarmonicBatchNorm(3, 1, group="so3"))


def test_check_grid_takes_the_planar_group_on_volumes():
    """A model of planar fields on volumes is checked with its own group: its grid elements
    are c4z's (d4z's with flips), the depth is free; the off-grid rotations are named for
    so2 / o2 / c8 as on images; groups whose grid elements are not the cube's about the depth
    axis are refused by name, and so is a planar group on a plain volume model (the
    control)."""
    from equilayers import check_grid

    net = nn.Sequential(SteerableConv3d(1, 2, 3, 2, 1, group="o2", max_order=1))
    for group, cube in (("so2", "c4z"), ("o2", "d4z"), ("c8", "c4z"), ("d4", "d4z")):
        for size, parity in (((6, 6, 6), ["stride-parity"]), ((6, 7, 7), [])):
            found = check_grid(net, (1, 1, *size), group, shifts=False)
            off = [] if group == "d4" else ["off-grid-group"]
            assert [f.problem for f in found] == off + parity, (group, size, found)
            assert [f.fix for f in found[len(off):]] == [
                f.fix for f in check_grid(net, (1, 1, *size), cube, shifts=False)]
    assert [f.fix for f in check_grid(net, (1, 1, 6, 6, 6), "c4", shifts=False)] == [
        "use an input size of 6x7x7"]
    with pytest.raises(ValueError, match="may also be checked with its planar group"):
        check_grid(net, (1, 1, 6, 7, 7), "c2")
    with pytest.raises(ValueError, match=r"acts on images \(H, W\), but the model slides"):
        check_grid(nn.Conv3d(1, 1, 3, 2, 1), (1, 1, 6, 7, 7), "so2")
