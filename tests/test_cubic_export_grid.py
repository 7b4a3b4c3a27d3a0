"""The cube groups' 3-D layers: ``export()`` to plain ``nn.Conv3d`` models (identical outputs),
and ``check_grid`` on volumes, agreeing with the layers' own warning,
``exactness_problems3d`` and the measured equivariance error."""

from __future__ import annotations

import re
import warnings

import pytest
import torch
from conftest import seeded_rng
from torch import nn

import equilayers
import equilayers.nn as enn
from equilayers import check_grid
from equilayers.functional import exactness_problems3d
from equilayers.testing import assert_equivariant, equivariance_error

ORDERS = {"o": 24, "oh": 48, "c4z": 4, "d4z": 8}


def _model(group="o"):
    with seeded_rng(0):
        return nn.Sequential(
            enn.LiftingConv3d(2, 3, 3, padding=1, group=group), enn.GroupBatchNorm3d(3), nn.ReLU(),
            enn.GroupConv3d(3, 3, 3, stride=2, padding=1, group=group), enn.GroupMaxPool3d(3, 2, 1),
            enn.GroupConv3d(3, 4, 3, padding=1, groups=1, padding_mode="circular", group=group),
            nn.ReLU(), enn.GroupAvgPool3d(1),
            enn.GroupConv3d(4, 2, 3, padding=1, bias=False, padding_mode="reflect", group=group),
            enn.GroupPool(), nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(2, 3)).double()


def _only_torch_nn(model, keep=()):
    for m in model.modules():
        assert type(m).__module__.startswith("torch.nn") or isinstance(m, keep), type(m)


# --- export ---------------------------------------------------------------------------------
@pytest.mark.parametrize("group", ["c4z", "o"])
def test_export_3d_model_same_outputs(group, gen):
    model = _model(group)
    x = torch.randn(3, 2, 9, 9, 9, generator=gen, dtype=torch.float64)
    model.train()
    model(x)  # BN running statistics off their init
    for mode in ("eval", "train"):
        getattr(model, mode)()
        exported = equilayers.export(model)
        _only_torch_nn(exported, keep=(enn.GroupPool,))  # the 6-D fiber pool is kept
        assert exported.training == model.training
        torch.testing.assert_close(exported(x), model(x), rtol=1e-12, atol=1e-12)
    assert isinstance(model[0], enn.LiftingConv3d)  # the original is untouched


@pytest.mark.parametrize("layer,shape", [
    (lambda: enn.LiftingConv3d(2, 3, 3, padding=1, group="oh"), (2, 2, 5, 5, 5)),
    (lambda: enn.LiftingConv3d(2, 3, 2, padding="same", padding_mode="replicate",
                               group="c4z"), (2, 2, 4, 6, 6)),
    (lambda: enn.GroupConv3d(2, 4, 3, stride=2, padding=1, groups=2, group="d4z"),
     (2, 2, 8, 7, 7, 7)),
    (lambda: enn.GroupConv3d(2, 2, 3, dilation=2, padding=2, padding_mode="circular",
                             bias=False, group="o"), (1, 2, 24, 5, 5, 5)),
    (lambda: enn.GroupConv3d(2, 2, 2, padding="same", padding_mode="reflect", group="c4z"),
     (1, 2, 4, 5, 5, 5)),
])
def test_export_3d_convs_are_plain_conv3d_with_identical_outputs(layer, shape, gen):
    conv = layer().double().eval()
    if conv.bias is not None:
        nn.init.normal_(conv.bias)
    x = torch.randn(*shape, generator=gen, dtype=torch.float64)
    exported = equilayers.export(conv)
    _only_torch_nn(exported)
    assert sum(isinstance(m, nn.Conv3d) for m in exported.modules()) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the 'same' convs with even kernels are inexact
        assert torch.equal(exported(x), conv(x))
    xr = x.clone().requires_grad_()
    assert torch.isfinite(torch.autograd.grad(exported(xr).sum(), xr)[0]).all()


def test_exported_3d_model_stays_equivariant(gen):
    with seeded_rng(0):
        model = nn.Sequential(enn.LiftingConv3d(1, 2, 3, padding=1, group="o"), nn.ReLU(),
                              enn.GroupConv3d(2, 2, 3, stride=2, padding=1, group="o"),
                              enn.GroupMaxPool3d(3, 2, 1)).double().eval()
        exported = equilayers.export(model)
        _only_torch_nn(exported)
        x = torch.randn(2, 1, 9, 9, 9, generator=gen, dtype=torch.float64)
        assert_equivariant(exported, x, "o", in_rep="trivial", out_rep="regular")


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")  # 2.13
@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")  # 2.15
def test_exported_3d_model_is_scriptable(gen):
    model = _model("c4z").eval()
    del model[9]  # the kept 6-D GroupPool: replaced by a plain reduction for scripting
    model.insert(9, nn.Flatten(1, 2))
    model[10] = nn.AdaptiveAvgPool3d(1)
    model[12] = nn.Linear(2 * 4, 3).double()
    scripted = torch.jit.script(equilayers.export(model))
    x = torch.randn(1, 2, 9, 9, 9, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(scripted(x), model(x), rtol=1e-12, atol=1e-12)


def test_bn_and_pools_kept_when_the_fiber_is_not_known(gen):
    """Without a group conv (or with two fiber sizes) the 6-D BN and pools need a fiber
    size to unflatten with: they are kept, and the copy still runs."""
    model = nn.Sequential(enn.GroupBatchNorm3d(2), enn.GroupMaxPool3d(2)).double().eval()
    exported = equilayers.export(model)
    assert isinstance(exported[0], enn.GroupBatchNorm3d)
    assert isinstance(exported[1], enn.GroupMaxPool3d)
    x = torch.randn(1, 2, 4, 4, 4, 4, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(exported(x), model(x))


# --- check_grid -----------------------------------------------------------------------------
def _strided(group, stride=2, mode="circular"):
    with seeded_rng(0):
        return enn.LiftingConv3d(1, 2, 3, stride=stride, padding=1, padding_mode=mode,
                                 group=group).double()


@pytest.mark.parametrize("group", sorted(ORDERS))
@pytest.mark.parametrize("size", [6, 7, 8, 9])
def test_check_grid_warning_problems_and_measurement_agree(group, size, gen):
    """Stride 2 on odd sizes: no finding, no warning, no problem, exact; on even sizes all four
    say it is not, and the fix check_grid names is a size where the layer is exact."""
    conv = _strided(group)
    shape = (1, 1, size, size, size)
    findings = check_grid(conv, shape, group)
    problems = exactness_problems3d(group, (size,) * 3, 3, 2, (1,) * 6, 1)
    x = torch.randn(*shape, generator=gen, dtype=torch.float64)
    if size % 2:
        assert findings == [] and problems == []
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert equivariance_error(conv, x, group) < 1e-12
    else:
        (f,) = findings
        assert (f.problem, f.breaks, f.input_size) == ("stride-parity", "rotations",
                                                       (size,) * 3)
        # c4z/d4z leave the depth alone: only H and W grow
        want = (f"{size + 1}" if group in ("o", "oh") else f"{size}x{size + 1}x{size + 1}")
        assert f.fix == f"use an input size of {want}"
        assert problems and all("stride 2 does not tile" in p for p in problems)
        assert f"use a height of {size + 1}" in " ".join(problems)
        with pytest.warns(UserWarning, match=f"LiftingConv3d \\({group}\\) is not exactly "
                                             f"equivariant on input of size {size}x{size}x"):
            assert equivariance_error(conv, x, group) > 1e-3
        assert check_grid(conv, (1, 1) + (size + 1,) * 3, group) == []


def test_check_grid_c4z_leaves_the_depth_free(gen):
    conv = _strided("c4z")
    assert check_grid(conv, (1, 1, 8, 9, 9), "c4z") == []
    assert exactness_problems3d("c4z", (8, 9, 9), 3, 2, (1,) * 6, 1) == []
    assert [f.problem for f in check_grid(_strided("o"), (1, 1, 8, 9, 9), "o")] == [
        "stride-parity"]  # the depth's tiling; its size may differ (below)
    (f,) = check_grid(_strided("d4z"), (1, 1, 9, 8, 8), "d4z")
    assert f.fix == "use an input size of 9"  # H and W grow to the depth


@pytest.mark.parametrize("group", sorted(ORDERS))
def test_boxes_are_exact_where_each_dim_tiles(group, gen):
    """A rotation of a ``D x H x W`` volume permutes the sizes with the dims: the stride-2 conv
    is exact on a box of odd sizes for every cube group (no finding, no warning, error at
    rounding) and not on one with an even size it moves (the control)."""
    conv = _strided(group)
    x = torch.randn(1, 1, 7, 9, 11, generator=gen, dtype=torch.float64)
    assert check_grid(conv, (1, 1, 7, 9, 11), group) == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert equivariance_error(conv, x, group) < 1e-12
    bad = torch.randn(1, 1, 7, 9, 10, generator=gen, dtype=torch.float64)
    assert [f.problem for f in check_grid(conv, (1, 1, 7, 9, 10), group)] == ["stride-parity"]
    with pytest.warns(UserWarning, match="not exactly equivariant"):
        assert equivariance_error(_strided(group), bad, group) > 1e-3


def test_check_grid_on_group_maps_pools_and_blur(gen):
    net = nn.Sequential(enn.GroupConv3d(2, 2, 3, padding=1, padding_mode="circular",
                                        group="o"),
                        enn.BlurPool3d(padding_mode="circular"), enn.GroupMaxPool3d(2))
    # 9 -> blur 5 -> max pool k2 on 5: the pool breaks; 10 breaks the blur first
    (f,) = check_grid(net, (1, 2, 24, 9, 9, 9), "o")
    assert (f.layer, f.kind, f.input_size) == ("2", "GroupMaxPool3d", (5, 5, 5))
    assert f.fix == "use an input size of 11"  # 11 -> 6 -> 3: (6 - 2) % 2 == 0
    assert check_grid(net, (1, 2, 24, 11, 11, 11), "o") == []
    g = check_grid(net, (1, 2, 24, 10, 10, 10), "o")[0]
    assert (g.layer, g.kind, g.problem, g.fix) == ("1", "BlurPool3d", "stride-parity",
                                                   "use an input size of 11")
    x = torch.randn(1, 2, 24, 11, 11, 11, generator=gen, dtype=torch.float64)
    assert equivariance_error(net.double(), x, "o") < 1e-12
    # the blur's default reflect padding: a shift finding, not a rotation one
    assert [h.problem for h in check_grid(enn.BlurPool3d(), (1, 2, 24, 9, 9, 9), "o")] == [
        "non-circular-padding"]


def test_check_grid_plain_torch_3d_layers():
    net = nn.Sequential(nn.Conv3d(2, 2, 3, padding=1, padding_mode="circular"),
                        nn.ZeroPad3d((0, 1, 0, 1, 0, 1)), nn.MaxPool3d(2),
                        nn.Conv3d(2, 2, 3, stride=(1, 2, 2), padding=1,
                                  padding_mode="circular"))
    found = {(f.layer, f.problem) for f in check_grid(net, (1, 2, 9, 9, 9), "oh")}
    assert ("1", "asymmetric-padding") in found and ("1", "non-circular-padding") in found
    assert ("3", "anisotropic") in found  # o/oh trade depth with height and width
    assert ("3", "anisotropic") not in {(f.layer, f.problem) for f in check_grid(
        net, (1, 2, 9, 9, 9), "c4z")}  # c4z trades only height and width


def test_check_grid_3d_padding_per_dim():
    """``nn.ZeroPad3d((w_lo, w_hi, h_lo, h_hi, d_lo, d_hi))`` is read in torch's order, and a
    padding that differs between traded dims is anisotropic: padding the width only (1 after)
    breaks c4z (which moves height and width), padding the depth only does not."""
    width = [(f.problem, f.message) for f in check_grid(
        nn.ZeroPad3d((0, 1, 1, 1, 1, 1)), (1, 2, 9, 9, 9), "c4z", shifts=False)]
    assert [p for p, _ in width] == ["anisotropic", "asymmetric-padding"]
    assert "width: 0 before, 1 after" in width[1][1]
    assert check_grid(nn.ZeroPad3d((1, 1, 1, 1, 0, 1)), (1, 2, 9, 9, 9), "c4z",
                      shifts=False) == []
    conv = nn.Conv3d(2, 2, 3, padding=(1, 1, 0), padding_mode="circular")
    assert [f.problem for f in check_grid(conv, (1, 2, 9, 9, 9), "c4z", shifts=False)] == [
        "anisotropic"]
    depth = nn.Conv3d(2, 2, 3, padding=(0, 1, 1), padding_mode="circular")
    assert check_grid(depth, (1, 2, 9, 9, 9), "c4z", shifts=False) == []
    # (under shifts, the unpadded dim crops: its circular padding is not what its windows take)
    assert [f.problem for f in check_grid(depth, (1, 2, 9, 9, 9), "c4z")] == [
        "circular-padding-size"]


def test_check_grid_c4z_rotations_keep_the_depth(gen):
    """c4z's quarter turns swap height and width only: a layer norm over ``(C, D, H, W)`` on
    a ``5 x 9 x 9`` volume takes every rotated input (no finding, exact), while the cube's
    rotations move the depth and it rejects them (the control)."""
    with seeded_rng(0):
        conv = enn.LiftingConv3d(1, 2, 3, padding=1, padding_mode="circular", group="c4z")
    net = nn.Sequential(conv, enn.GroupPool("max"), nn.LayerNorm([2, 5, 9, 9])).double()
    assert check_grid(net, (1, 1, 5, 9, 9), "c4z") == []
    x = torch.randn(2, 1, 5, 9, 9, generator=gen, dtype=torch.float64)
    assert equivariance_error(net, x, "c4z", out_rep="trivial") < 1e-12
    found = check_grid(net, (1, 1, 5, 9, 9), "o")
    assert [(f.problem, f.breaks) for f in found] == [("non-cubic", "rotations"),
                                                      ("group-mismatch", "group")]


def test_check_grid_3d_bad_input():
    conv = _strided("o")
    with pytest.raises(ValueError, match=r"must have 5 dims"):
        check_grid(conv, (1, 1, 9, 9), "o")
    with pytest.raises(ValueError, match="input_shape"):
        check_grid(conv, (1, 1, 9, 0, 9), "o")


@pytest.mark.parametrize("group", ["c4", "p4m", "c1"])
@pytest.mark.parametrize("layer", [
    lambda: nn.Sequential(enn.LiftingConv3d(1, 4, 3, group="o"),
                          enn.GroupConv3d(4, 4, 3, stride=2, group="o")),
    lambda: nn.Conv3d(1, 2, 3, stride=2), lambda: nn.MaxPool3d(2), lambda: enn.BlurPool3d(),
    lambda: enn.PolyphasePool3d(), lambda: nn.ZeroPad3d(1)],
    ids=["group-convs", "Conv3d", "MaxPool3d", "BlurPool3d", "PolyphasePool3d", "ZeroPad3d"])
def test_check_grid_refuses_a_planar_group_on_a_volume_model(layer, group):
    """The planar checks read (H, W) windows and skipped the 3-D ones, so a volume model
    checked against a planar group got [] (no finding) at a size its own group flags; it is
    refused by name, as a cube group on an image shape is, with the groups that fit."""
    net = layer()
    with pytest.raises(ValueError, match=r"acts on images \(H, W\), but the model slides "
                                         r"windows over volumes .*'c4z' or 'd4z'"):
        check_grid(net, (1, 1, 10, 10, 10), group)


def test_check_grid_planar_group_maps_keep_their_3d_helpers():
    """The control: a planar group model may use torch's 3-D layers on its (B, C, |G|, H, W)
    maps where they do not reach across the group axis (a (1, k, k) conv, a batch norm, a
    global pool): it is checked as before, its strided group conv's finding included."""
    with seeded_rng(0):
        net = nn.Sequential(enn.LiftingConv2d(1, 2, 3, padding=1, group="p4"),
                            nn.BatchNorm3d(2), nn.Conv3d(2, 2, (1, 3, 3), padding=(0, 1, 1)),
                            enn.GroupConv2d(2, 2, 3, stride=2, group="p4"),
                            nn.AdaptiveAvgPool3d(1))
    assert [(f.layer, f.problem) for f in check_grid(net, (1, 1, 8, 8), "p4", shifts=False)
            ] == [("3", "stride-parity")]
    assert check_grid(net, (1, 1, 9, 9), "p4", shifts=False) == []


def test_check_grid_3d_does_not_use_up_the_warning():
    conv = _strided("o")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_grid(conv, (1, 1, 8, 8, 8), "o")
    with pytest.warns(UserWarning) as record:
        conv(torch.randn(1, 1, 8, 8, 8, dtype=torch.float64))
    msg = " | ".join(str(r.message) for r in record)
    sizes = {int(v) for v in re.findall(r"use a \w+ of (\d+)", msg)}
    assert sizes == {9}
