"""check_grid: findings agree with measured equivariance."""

import pytest
import torch
import torch.nn.functional as F
from conftest import seeded_rng
from torch import nn

import equilayers
import equilayers.nn as enn
from equilayers import check_grid
from equilayers.testing import equivariance_error, symmetrized_conv2d


def _sym_strided(stride=2, padding_mode="circular"):
    with seeded_rng(0):
        conv = symmetrized_conv2d(2, 3, 3, "d4")
        conv.stride = (stride, stride)
        conv.padding_mode = padding_mode
        return conv


@pytest.mark.parametrize("size,flagged", [(8, True), (9, False), (64, True), (65, False)])
def test_stride2_even_flagged_odd_passes_and_measurement_agrees(gen, size, flagged):
    conv = _sym_strided()
    findings = check_grid(conv, (1, 2, size, size), "p4m")
    assert bool(findings) == flagged
    if flagged:
        (f,) = findings
        assert f.problem == "stride-parity" and f.breaks == "rotations"
        assert f.fix == f"use an input size of {size + 1}"
    if size < 16:
        x = torch.randn(2, 2, size, size, generator=gen, dtype=torch.float64)
        err = equivariance_error(conv, x, "p4m")
        assert (err > 1e-3) if flagged else (err < 1e-13)


def test_public_and_str():
    assert equilayers.check_grid is check_grid and "check_grid" in equilayers.__all__
    (f,) = check_grid(_sym_strided(), (1, 2, 8, 8))
    assert "stride 2 on a 8x8 input" in str(f) and "Fix: use an input size of 9" in str(f)


def test_flips_only_need_the_columns():
    conv = _sym_strided()
    # 9 rows, 8 columns: a flip group only cares about the columns
    assert [f.problem for f in check_grid(conv, (1, 2, 8, 9), "d1")] == []
    (f,) = check_grid(conv, (1, 2, 9, 8), "d1")
    # a flip, not a rotation, is what breaks; the suggested size grows the columns only
    assert (f.problem, f.breaks, f.fix) == ("stride-parity", "flips", "use an input size of 9")
    assert check_grid(conv, (1, 2, 8, 8), "c1") == []  # shifts only, circular padding


def test_network_search_suggests_a_size_for_the_whole_model():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, padding_mode="circular"), nn.ReLU(),
                        nn.MaxPool2d(2), nn.Conv2d(4, 4, 3, stride=2, padding=1,
                                                   padding_mode="circular"))
    (f,) = check_grid(net, (1, 3, 64, 64), "p4")
    # 65 would break the pool; 66 -> pool 33 -> conv (33 + 2 - 3) % 2 == 0
    assert f.layer == "3" and f.input_size == (32, 32) and f.fix == "use an input size of 66"
    assert check_grid(net, (1, 3, 66, 66), "p4") == []


def test_padding_findings():
    net = nn.Sequential(nn.Conv2d(2, 2, 3, padding=1), nn.Conv2d(2, 2, 4, padding="same"),
                        nn.ZeroPad2d((0, 1, 0, 1)), nn.MaxPool2d(3, stride=1, padding=1),
                        nn.Conv2d(2, 2, 3, padding=1, padding_mode="reflect"))
    found = {(f.layer, f.problem): f for f in check_grid(net, (1, 2, 9, 9), "p4")}
    assert found[("0", "non-circular-padding")].fix == "padding_mode='circular'"
    assert ("1", "asymmetric-padding") in found and ("2", "asymmetric-padding") in found
    # torch's padding='same' puts an even kernel's extra pixel after (bottom/right)
    assert "rows: 1 before, 2 after; columns: 1 before, 2 after" in found[
        ("1", "asymmetric-padding")].message
    assert found[("3", "non-circular-padding")].fix == "nn.CircularPad2d before it and padding=0"
    # a pool has no padding_mode: the finding names its own padding (it said padding_mode='pool')
    assert found[("3", "non-circular-padding")].message.startswith(
        "the pool's own padding (-inf for a max pool")
    assert found[("4", "non-circular-padding")].message.startswith("padding_mode='reflect' fills")
    assert ("4", "non-circular-padding") in found
    # reflect and zero padding are symmetric: no rotation finding for layers 0, 3, 4
    assert not any(f.breaks == "rotations" for f in found.values()
                   if f.layer in ("0", "3", "4"))
    assert check_grid(net, (1, 2, 9, 9), "p4", shifts=False) == [
        f for f in check_grid(net, (1, 2, 9, 9), "p4") if f.breaks != "shifts"]


def test_pad_modules_are_read_left_right_top_bottom(gen):
    """``nn.ZeroPad2d((left, right, top, bottom))``: padding only the columns asymmetrically
    breaks the column flip (d1), and only the rows does not; the measured errors agree."""
    cols, rows = nn.ZeroPad2d((0, 1, 1, 1)), nn.ZeroPad2d((1, 1, 0, 1))
    (f,) = check_grid(cols, (1, 2, 9, 9), "d1", shifts=False)
    assert (f.problem, f.breaks) == ("asymmetric-padding", "flips")
    assert "columns: 0 before, 1 after" in f.message and "rows" not in f.message
    assert check_grid(rows, (1, 2, 9, 9), "d1", shifts=False) == []
    x = torch.randn(1, 2, 9, 9, generator=gen, dtype=torch.float64)
    assert equivariance_error(cols, x, "d1") > 1e-3
    assert equivariance_error(rows, x, "d1") < 1e-12


def test_transposed_convs_border_findings_under_shifts(gen):
    """A transposed conv whose footprints overlap or are cropped drops what falls past the
    border: a ``transposed-border`` shift finding (not ``output-padding``, which is about
    rotations); non-overlapping uncropped footprints (``k == stride``, ``padding=0``) wrap
    exactly and get none."""
    overlap = nn.ConvTranspose2d(2, 2, 3, stride=2, padding=1)
    assert [(f.problem, f.breaks) for f in check_grid(overlap, (1, 2, 9, 9), "p4")] == [
        ("transposed-border", "shifts")]
    cropped = nn.ConvTranspose2d(2, 2, 2, stride=2, padding=1)
    assert [f.problem for f in check_grid(cropped, (1, 2, 9, 9), "p4")] == [
        "transposed-border"]
    tiled = nn.ConvTranspose2d(2, 2, 2, stride=2).double()
    assert check_grid(tiled, (1, 2, 9, 9), "p4") == []
    x = torch.randn(1, 2, 9, 9, generator=gen, dtype=torch.float64)
    assert (tiled(torch.roll(x, 1, -1)) - torch.roll(tiled(x), 2, -1)).abs().max() < 1e-12
    o = overlap.double()  # the control: the overlapping one does not wrap
    assert (o(torch.roll(x, 1, -1)) - torch.roll(o(x), 2, -1)).abs().max() > 1e-3


def test_measured_shift_breaks_where_flagged(gen):
    conv = nn.Conv2d(2, 2, 3, padding=1).double()
    assert [f.problem for f in check_grid(conv, (1, 2, 8, 8), "c1")] == ["non-circular-padding"]
    x = torch.randn(1, 2, 8, 8, generator=gen, dtype=torch.float64)
    assert (conv(torch.roll(x, 1, -1)) - torch.roll(conv(x), 1, -1)).abs().max() > 1e-3


def test_group_level_findings():
    conv = _sym_strided()
    problems = [f.problem for f in check_grid(conv, (1, 2, 9, 9), "c8")]
    assert problems == ["off-grid-group"]
    assert check_grid(conv, (1, 2, 9, 11), "p4") == []  # a rectangle: see below


@pytest.mark.parametrize("size,flagged", [((9, 11), False), ((9, 12), True), ((8, 11), True),
                                          ((13, 31), False)])
def test_rectangles_are_exact_where_each_dim_tiles(gen, size, flagged):
    """A quarter turn maps an ``H x W`` input to ``W x H``; a layer's windows then tile the
    rotated input where they tile each dim of the first: the finding and the warning agree with
    the measured error (and with the square case's conditions, dim by dim)."""
    conv = _sym_strided()
    findings = check_grid(conv, (1, 2, *size), "p4m")
    assert bool(findings) == flagged
    assert all(f.problem == "stride-parity" for f in findings)
    x = torch.randn(2, 2, *size, generator=gen, dtype=torch.float64)
    err = equivariance_error(conv.double(), x, "p4m")
    assert (err > 1e-3) if flagged else (err < 1e-12)


def test_rectangles_flagged_where_the_model_cannot_take_the_rotated_shape(gen):
    """A layer norm over ``(C, H, W)`` runs on ``H x W`` but rejects the rotated ``W x H``, and
    a fixed-size upsampling sees other sizes on it: each is a ``non-square`` finding naming
    the rotated shape; global pooling instead is exact."""
    conv = _sym_strided(stride=1).double()
    norm = nn.Sequential(conv, nn.LayerNorm([3, 9, 11])).double()
    (f,) = check_grid(norm, (1, 2, 9, 11), "p4")
    assert f.problem == "non-square" and "11x9" in f.message and "rejects" in f.message
    fixed = nn.Sequential(conv, nn.Upsample(size=(18, 22)), nn.Conv2d(3, 3, 3, padding=1)).double()
    f, up = check_grid(fixed, (1, 2, 9, 11), "p4", shifts=False)
    assert f.problem == "non-square" and "sees 18x22, where a rotation" in f.message
    # (the upsampling itself: size= gives the dims a rotation swaps different sizes)
    assert up.problem == "upsample-size" and "(18 and 22)" in up.message, up
    # a flip keeps H x W: no rotated shape to reject, nothing found, exact
    assert check_grid(norm, (1, 2, 9, 11), "d1") == []
    x = torch.randn(2, 2, 9, 11, generator=gen, dtype=torch.float64)
    assert equivariance_error(norm, x, "d1") < 1e-12
    pooled = nn.Sequential(conv, nn.AdaptiveAvgPool2d(1), nn.Flatten())
    assert check_grid(pooled, (1, 2, 9, 11), "p4") == []
    x = torch.randn(2, 2, 9, 11, generator=gen, dtype=torch.float64)
    assert equivariance_error(pooled, x, "p4", out_rep="invariant") < 1e-12


class DuckGroupConv(nn.Module):
    """Stands in for equilayers' GroupConv2d: torch.nn-style attributes plus `group`, acting
    on (B, C, |G|, H, W) (here: a strided circular 3x3 box filter per slot)."""

    def __init__(self, stride, padding_mode="circular"):
        super().__init__()
        self.kernel_size, self.stride, self.padding, self.dilation = (3, 3), 2, 1, 1
        self.padding_mode, self.group = padding_mode, "p4"

    def forward(self, x):
        b, c, f, h, w = x.shape
        flat = x.reshape(b, c * f, h, w)
        flat = F.pad(flat, (1, 1, 1, 1), mode="circular")
        out = F.avg_pool2d(flat, 3, stride=self.stride)
        return out.reshape(b, c, f, *out.shape[-2:])


def test_duck_typed_layers_on_5d_maps():
    layer = DuckGroupConv(2)
    (f,) = check_grid(layer, (1, 2, 4, 16, 16), "p4")
    assert f.kind == "DuckGroupConv" and f.input_size == (16, 16)
    assert f.fix == "use an input size of 17"
    assert check_grid(layer, (1, 2, 4, 17, 17), "p4") == []
    assert [g.problem for g in check_grid(DuckGroupConv(2, "zeros"), (1, 2, 4, 17, 17))] == [
        "non-circular-padding"]


def test_bad_input():
    conv = _sym_strided()
    with pytest.raises(ValueError, match=r"input_shape .* got \(8, 8\)"):
        check_grid(conv, (8, 8))
    with pytest.raises(ValueError, match="got '1,2,8,8'"):
        check_grid(conv, "1,2,8,8")
    with pytest.raises(ValueError, match="unknown group='p5'"):
        check_grid(conv, (1, 2, 8, 8), "p5")
    with pytest.raises(TypeError, match="nn.Module"):
        check_grid(lambda t: t, (1, 2, 8, 8))
    # a model that declares its input type: the shape must have its dims
    gconv = equilayers.nn.GroupConv2d(2, 2, 3, padding=1, group="p4")
    with pytest.raises(ValueError, match=r"input_shape=\(1, 2, 9, 9\) must have 5 dims"):
        check_grid(gconv, (1, 2, 9, 9), "p4")


def test_anisotropic_stride_under_rotations():
    conv = nn.Conv2d(2, 2, 3, stride=(1, 3), padding=1, padding_mode="circular")
    problems = {f.problem for f in check_grid(conv, (1, 2, 9, 9), "p4")}
    assert "anisotropic" in problems
    assert "anisotropic" not in {f.problem for f in check_grid(conv, (1, 2, 9, 9), "d1")}
    # padding that differs between the dims is anisotropic too (equal kernel and stride)
    padded = nn.Conv2d(2, 2, 3, padding=(1, 0), padding_mode="circular")
    assert [f.problem for f in check_grid(padded, (1, 2, 9, 9), "p4", shifts=False)] == [
        "anisotropic"]
    assert check_grid(padded, (1, 2, 9, 9), "d1", shifts=False) == []
    # (its unpadded columns crop: a circular shift of the input is not one of the output)
    assert [f.problem for f in check_grid(padded, (1, 2, 9, 9), "c1")] == [
        "circular-padding-size"]


def test_real_group_conv_layers():
    from equilayers.nn import GroupConv2d, LiftingConv2d

    net = nn.Sequential(
        LiftingConv2d(2, 3, 3, padding=1, padding_mode="circular", group="p4m"), nn.ReLU(),
        GroupConv2d(3, 3, 3, stride=2, padding=1, padding_mode="circular", group="p4m")).double()
    (f,) = check_grid(net, (1, 2, 10, 10), "p4m")
    assert (f.layer, f.kind, f.problem, f.fix) == ("2", "GroupConv2d", "stride-parity",
                                                   "use an input size of 11")
    assert check_grid(net, (1, 2, 11, 11), "p4m") == []
    gen = torch.Generator().manual_seed(0)
    for size, exact in [(10, False), (11, True)]:
        x = torch.randn(2, 2, size, size, generator=gen, dtype=torch.float64)
        if exact:
            err = equivariance_error(net, x, "p4m")
        else:  # the layer names the size check_grid names
            with pytest.warns(UserWarning, match="GroupConv2d .* use an input height of 11"):
                err = equivariance_error(net, x, "p4m")
        assert (err < 1e-12) if exact else (err > 1e-3), (size, err)
    zeros = GroupConv2d(3, 3, 3, padding=1, group="p4")
    assert [g.problem for g in check_grid(zeros, (1, 3, 4, 9, 9), "p4")] == [
        "non-circular-padding"]


@pytest.mark.parametrize("k,stride,padding,n", [(3, 2, 1, 32), (3, 2, 1, 10), (5, 2, 2, 16),
                                                (3, 3, 1, 32), (2, 2, 0, 9), (7, 4, 3, 50),
                                                (1, 2, 0, 8)])
def test_exactness_message_sizes_are_exact(k, stride, padding, n):
    """The sizes a stride finding suggests are exact for that layer (the formula in the message
    is the one the check applies), and the finding names the layer's own padding."""
    import re

    from equilayers.functional import exactness_problems

    pad = (padding,) * 4
    problems = exactness_problems("p4", (n, n), k, stride, pad, 1)
    msgs = [m for m in problems if "does not tile" in m]
    assert msgs, problems
    for msg in msgs:
        sizes = [int(v) for v in re.search(r"use an input \w+ of (\d+(?: or \d+)?)",
                                           msg).group(1).split(" or ")]
        assert f"n + {padding} + {padding} - {k} divisible by {stride}" in msg
        for size in sizes:
            assert not [m for m in exactness_problems("p4", (size, size), k, stride, pad, 1)
                        if "does not tile" in m], (msg, size)


def test_check_grid_does_not_use_up_the_layers_warnings():
    """check_grid runs the model without arming anything: the model's own forward at the bad
    size still warns (the once-per-module flag is untouched), and so do the spatial pools."""
    import warnings

    from equilayers.nn import GroupMaxPool2d, LiftingConv2d

    m = nn.Sequential(LiftingConv2d(1, 2, 3, stride=2, padding=1, group="p4m"),
                      GroupMaxPool2d(2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # check_grid itself prints nothing
        assert check_grid(m, (1, 1, 36, 36), group="p4m")
    with pytest.warns(UserWarning) as record:
        m(torch.randn(1, 1, 36, 36))
    text = " | ".join(str(r.message) for r in record)
    assert "LiftingConv2d (d4)" in text and "use an input height of 37 or 35" in text


@pytest.mark.parametrize("pool,size,exact", [("max2", 16, True), ("max2", 35, False),
                                             ("avg3s2p1", 35, True), ("avg3s2p1", 36, False)])
def test_group_pools_warn_when_inexact(pool, size, exact):
    """GroupMaxPool2d / GroupAvgPool2d warn once at the first inexact size (a p4m net at 35x35
    with GroupMaxPool2d(2) measured invariance error 0.50 and used to print nothing)."""
    import warnings

    from equilayers.nn import GroupAvgPool2d, GroupMaxPool2d

    m = GroupMaxPool2d(2) if pool == "max2" else GroupAvgPool2d(3, 2, 1)
    x = torch.randn(1, 2, 8, size, size)
    if exact:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            m(x)
        assert equivariance_error(m, x.double(), "p4m") < 1e-12
    else:
        with pytest.warns(UserWarning, match="not exactly equivariant"):
            m(x)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            m(x)  # once per module
        assert equivariance_error(m, x.double(), "p4m") > 1e-3  # the warning was right


_SPATIAL_POOLS = {
    "BlurPool2d": lambda: enn.BlurPool2d(),
    "BlurPool2d(stride=3)": lambda: enn.BlurPool2d(stride=3),
    "BlurPool2d(kernel_size=4)": lambda: enn.BlurPool2d(kernel_size=4),
    "MaxBlurPool2d": lambda: enn.MaxBlurPool2d(),
    "MaxBlurPool2d(3, 2, 1)": lambda: enn.MaxBlurPool2d(3, 2, 1),
    "MaxBlurPool2d(blur_size=4)": lambda: enn.MaxBlurPool2d(blur_size=4),
    "GaussianBlurPool2d": lambda: enn.GaussianBlurPool2d(),
    "NormMaxPool(2)": lambda: enn.NormMaxPool(2),
    "NormMaxPool(3, 2, 1)": lambda: enn.NormMaxPool(3, 2, 1),
    # ceil_mode adds a last window exactly where the floor windows leave a remainder (they
    # used to skip the check: GroupMaxPool2d(2, ceil_mode=True) at 9x9, p4 error 0.9, silent)
    "NormMaxPool(2, ceil_mode=True)": lambda: enn.NormMaxPool(2, ceil_mode=True),
    "GroupMaxPool2d(2, ceil_mode=True)": lambda: enn.GroupMaxPool2d(2, ceil_mode=True),
    "GroupAvgPool2d(3, 2, 1, ceil_mode=True)": lambda: enn.GroupAvgPool2d(3, 2, 1,
                                                                          ceil_mode=True),
    "MaxBlurPool2d(ceil_mode=True)": lambda: enn.MaxBlurPool2d(ceil_mode=True),
    "MaxBlurPool2d(3, 2, 1, ceil_mode=True)": lambda: enn.MaxBlurPool2d(3, 2, 1, ceil_mode=True),
    # an even blur's floor grid is exact at odd sizes (its extra padding pixel is unread),
    # where ceil_mode adds a window: the law counts the window's reach (error ~0.5 at 9x9)
    "MaxBlurPool2d(blur_size=4, ceil_mode=True)": lambda: enn.MaxBlurPool2d(blur_size=4,
                                                                            ceil_mode=True),
    "MaxBlurPool2d(blur_size=2, ceil_mode=True)": lambda: enn.MaxBlurPool2d(blur_size=2,
                                                                            ceil_mode=True),
}


def test_an_even_blur_pool_is_flagged_for_its_asymmetric_padding():
    """BlurPool2d(kernel_size=4) pads 1 before and 2 after: at 9x9 its last window reads the
    extra pixel, so check_grid names the asymmetric padding and its fix (an odd blur), not the
    stride's parity (an input size); at 8x8 that pixel is never read and nothing is found."""
    model = nn.Sequential(enn.BlurPool2d(kernel_size=4))
    assert check_grid(model, (1, 3, 4, 8, 8), "p4", shifts=False) == []
    (finding,) = check_grid(model, (1, 3, 4, 9, 9), "p4", shifts=False)
    assert finding.problem == "asymmetric-padding"
    assert "rows: 1 before, 2 after" in finding.message


@pytest.mark.parametrize("name", sorted(_SPATIAL_POOLS))
def test_blur_and_norm_pools_warn_exactly_where_the_grid_breaks(name, gen):
    """The blur pools, NormMaxPool and the ceil_mode group pools on group maps warn once at
    the first size where they are not exactly equivariant, and only there: at every size
    8..13 the warning agrees with the measured p4 error (float64; 0.2-1.3 where it breaks,
    rounding elsewhere), and with check_grid. On images (4-D) they make no group claim and
    stay quiet (a plain anti-aliased CNN at an even size)."""
    import warnings

    fiber = 5 if name.startswith("NormMaxPool") else 4  # harmonic orders 0..2, or p4 slots
    for n in range(8, 14):
        m = _SPATIAL_POOLS[name]()
        x = torch.randn(2, 3, fiber, n, n, generator=gen, dtype=torch.float64)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            m(x)
            m(x)
        warned = [w for w in caught if "not exactly equivariant" in str(w.message)]
        assert len(warned) <= 1, (name, n)  # once per module
        error = equivariance_error(m, x, "p4")
        assert bool(warned) == (error > 1e-6), (name, n, error, warned)
        findings = check_grid(nn.Sequential(m), tuple(x.shape), "p4", shifts=False)
        assert (error < 1e-12) == (findings == []), (name, n, findings)
        if not warned:
            continue
        assert warned[0].filename == __file__  # points at the caller
        if fiber == 4 and not name.startswith("Group"):  # the group pools take 5-D only
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                _SPATIAL_POOLS[name]()(x[:, :, 0])  # images: quiet


def test_a_size_the_model_rejects_is_a_finding_with_the_size_it_takes():
    """A U-Net's levels must halve evenly: an odd size is one finding naming the next size
    the model runs at; an error no size fixes (wrong channels) is raised."""
    from equilayers.models import UNet

    net = UNet(1, 3, group="p4", depth=2, width=2)
    assert check_grid(net, (1, 1, 16, 16)) == []
    (f,) = check_grid(net, (1, 1, 18, 18))
    assert (f.problem, f.fix, f.input_size) == ("unsupported-size", "use an input size of 20",
                                                (18, 18))
    assert "multiples of 2**depth = 4" in f.message
    with pytest.raises(ValueError, match="got an input with 2 channels"):
        check_grid(net, (1, 2, 16, 16))
    # a rectangle with one side wrong: no common increase makes 15 and 16 multiples of 4
    # (check_grid raised the model's error); each side is rounded up on its own
    for size, fits in (((15, 16), "16"), ((18, 16), "20x16"), ((6, 8), "8")):
        (f,) = check_grid(net, (1, 1, *size))
        assert (f.problem, f.fix) == ("unsupported-size", f"use an input size of {fits}")
    # one side alone grown, as the forward's message says (it named 32x16: a common rounding)
    deep = UNet(1, 2, group="p4m", width=1, depth=3, padding_mode="reflect").eval()
    with pytest.raises(ValueError, match="use an input size of 24x16 or larger"):
        deep(torch.randn(1, 1, 24, 8))
    fixes = {f.fix for f in check_grid(deep, (1, 1, 24, 8)) if f.problem == "unsupported-size"}
    assert fixes == {"use an input size of 24x16"}


class _Devices(nn.Module):
    """Records the device of each input it sees; ``item=True`` reads a value (which a meta
    tensor cannot give), as data-dependent code does."""

    def __init__(self, item: bool = False) -> None:
        super().__init__()
        self.item, self.seen = item, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.device.type)
        if self.item and x.abs().sum().item() > 1e30:
            return -x
        return x


@pytest.mark.parametrize("item", [False, True], ids=["meta", "falls-back-to-zeros"])
def test_sizes_are_read_on_the_meta_device_with_a_fallback(item):
    """check_grid runs the model on the meta device (shapes only: its size search used to
    forward ever larger zeros, minutes on a 3-D model); a module that cannot run there (a
    ``.item()``) gets the zeros, and the findings are the same either way."""
    probe = _Devices(item)
    with seeded_rng(0):
        net = nn.Sequential(nn.Conv2d(2, 2, 3, stride=2, padding=1, padding_mode="circular"),
                            probe)
    (f,) = check_grid(net, (1, 2, 8, 8), "p4")
    assert (f.problem, f.fix) == ("stride-parity", "use an input size of 9")
    assert probe.seen[0] == "meta"
    assert set(probe.seen) == ({"meta", "cpu"} if item else {"meta"})
    assert all(p.device.type == "cpu" for p in net.parameters())  # the model is untouched


def test_a_window_without_padding_is_a_shift_finding(gen):
    """A "valid" conv (no padding) crops at the border: check_grid returned [] where the
    measured circular-shift error was 1.38. Controls: a circular pad module before it, a
    pool whose windows tile (kernel = stride), and shifts=False find nothing."""
    from equilayers.testing import shift_equivariance_error

    with seeded_rng(0):
        valid = nn.Conv2d(1, 1, 3).double()
        padded = nn.Sequential(nn.CircularPad2d(1), nn.Conv2d(1, 1, 3)).double()
    x = torch.randn(1, 1, 16, 16, generator=gen, dtype=torch.float64)
    assert shift_equivariance_error(padded, x, [(1, 2)]) < 1e-12
    assert shift_equivariance_error(valid, x, [(1, 2)]) > 0.1
    found = check_grid(valid, (1, 1, 16, 16), "c1")
    assert [(f.problem, f.breaks) for f in found] == [("no-padding", "shifts")]
    assert "padding_mode='circular'" in found[0].fix
    assert check_grid(padded, (1, 1, 16, 16), "c1") == []
    assert check_grid(nn.MaxPool2d(2), (1, 1, 16, 16), "c1") == []
    assert check_grid(valid, (1, 1, 16, 16), "c1", shifts=False) == []
    (f,) = check_grid(nn.MaxPool2d(3, 2), (1, 1, 17, 17), "c1")
    assert (f.problem, f.fix) == ("no-padding", "nn.CircularPad2d before it")
    (f,) = check_grid(nn.Conv3d(1, 1, 3), (1, 1, 8, 8, 8), "o")
    assert (f.problem, f.input_size) == ("no-padding", (8, 8, 8))
    # the pad module's pixels reach past pointwise layers and last for k - 1 per window: no
    # finding where it is exact; a pad too narrow is one; after a zero pad, the pad's finding
    with seeded_rng(0):
        exact = [nn.Sequential(nn.CircularPad2d(1), nn.ReLU(), nn.BatchNorm2d(1),
                               nn.Conv2d(1, 1, 3)),
                 nn.Sequential(nn.CircularPad2d(2), nn.Conv2d(1, 1, 3), nn.Conv2d(1, 1, 3))]
        narrow = nn.Sequential(nn.CircularPad2d(1), nn.Conv2d(1, 1, 5))
        zeros = nn.Sequential(nn.ZeroPad2d(1), nn.Conv2d(1, 1, 3))
    for net in exact:
        assert shift_equivariance_error(net.double().eval(), x, [(1, 2)]) < 1e-12
        assert check_grid(net, (1, 1, 16, 16), "c1") == []
    assert shift_equivariance_error(narrow.double(), x, [(1, 2)]) > 0.1
    (f,) = check_grid(narrow, (1, 1, 16, 16), "c1")
    assert f.problem == "no-padding" and "leaves (2, 2) pixels" in f.message
    assert [f.problem for f in check_grid(zeros, (1, 1, 16, 16), "c1")] == [
        "non-circular-padding"]


def test_a_layer_built_for_another_group_is_a_finding(gen):
    """C4 and D2 both have 4 slots: a d2 group conv after a p4 lifting conv runs, and
    check_grid said nothing while the measured p4 error was O(1). The control: the same
    model built with p4 throughout, and a p4m model asked about its subgroup p4."""
    from equilayers.nn import GroupConv2d, GroupPool, LiftingConv2d
    from equilayers.testing import equivariance_error

    def net(second):
        with seeded_rng(0):
            return nn.Sequential(LiftingConv2d(1, 2, 3, padding=1, group="p4",
                                               padding_mode="circular"), nn.ReLU(),
                                 GroupConv2d(2, 2, 3, padding=1, group=second,
                                             padding_mode="circular"),
                                 GroupPool()).double()

    x = torch.randn(2, 1, 9, 9, generator=gen, dtype=torch.float64)
    mixed = net("d2")
    assert equivariance_error(mixed, x, "p4") > 0.1
    (f,) = check_grid(mixed, (1, 1, 9, 9), "p4")
    assert (f.layer, f.problem, f.breaks) == ("2", "group-mismatch", "group")
    assert "d2, which does not contain c4" in f.message and "group='c4'" in f.fix
    same = net("p4")
    assert equivariance_error(same, x, "p4") < 1e-12
    assert check_grid(same, (1, 1, 9, 9), "p4") == []
    with seeded_rng(0):
        p4m = nn.Sequential(LiftingConv2d(1, 2, 3, padding=1, group="p4m",
                                          padding_mode="circular"), GroupPool())
    assert check_grid(p4m, (1, 1, 9, 9), "p4") == []
