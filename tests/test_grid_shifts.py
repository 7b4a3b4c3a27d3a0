"""check_grid under circular shifts and its size search: each finding (and each fix) agrees
with the measured error of the model (float64), with negative controls."""

import warnings

import pytest
import torch
from conftest import seeded_rng
from torch import nn

import equilayers
import equilayers.nn as enn
from equilayers import check_grid
from equilayers.groups import circular_shift
from equilayers.testing import equivariance_error


def _shift_error(net: nn.Module, x: torch.Tensor, s: int) -> float:
    """The relative error of ``net`` under circular shifts of ``x`` by multiples of ``s`` (the
    output shifted by the same number of its own pixels)."""
    with torch.no_grad():
        y = net(x)
        return max(((net(circular_shift(x, (a * s, b * s))) - circular_shift(y, (a, b))).norm()
                    / y.norm()).item() for a, b in [(1, 0), (0, 1), (1, 2)])


def _shift_error3d(net: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        y = net(x)
        dims = (-3, -2, -1)
        return ((net(torch.roll(x, (1, 2, 1), dims)) - torch.roll(y, (1, 2, 1), dims)).norm()
                / y.norm()).item()


@pytest.mark.parametrize("k,padding,ceil", [(2, 0, False), (3, 1, False), (3, 0, False),
                                            (3, 1, True), (2, 0, True)])
@pytest.mark.parametrize("blur_size", [1, 2, 3])
def test_a_max_blur_pool_is_never_shift_exact_and_its_fix_is(k, padding, ceil, blur_size, gen):
    """MaxBlurPool2d(..., padding_mode="circular") passed the shift check (its max and blur
    read as one window, labelled with the blur's circular padding) where its error under
    shifts by its stride was 0.1-0.6: its max is unpadded or padded with -inf, never
    circularly. Now a finding; its fix (a circular pad before it, padding=0) measures exact
    and passes (the control: a check that can pass). MaxBlurPool2d(2, blur_size=1) is
    nn.MaxPool2d(2): windows that tile, exact, and no finding (another control)."""
    pool = enn.MaxBlurPool2d(k, 2, padding, ceil_mode=ceil, blur_size=blur_size,
                             padding_mode="circular").double()
    for n in (8, 12):
        x = torch.randn(2, 3, n, n, generator=gen, dtype=torch.float64)
        if (k, padding, blur_size) == (2, 0, 1):
            assert _shift_error(pool, x, 2) < 1e-12 and check_grid(pool, x.shape, "c1") == []
            continue
        assert _shift_error(pool, x, 2) > 0.05
        found = check_grid(pool, (2, 3, n, n), "c1")
        assert found and all(f.breaks == "shifts" for f in found), found
        assert {f.problem for f in found} <= {"no-padding", "non-circular-padding"}
        fix = found[0].fix
        assert fix.startswith("nn.CircularPad2d(") or "ceil_mode" in fix, fix
        # the fix: circular padding of the max (what its windows consume), padding=0
        lo, hi = (k - 1) // 2, k - 1 - (k - 1) // 2
        if not ceil:
            assert fix.startswith(f"nn.CircularPad2d({lo if lo == hi else (lo, hi, lo, hi)})")
        fixed = nn.Sequential(nn.CircularPad2d((lo, hi, lo, hi)), enn.MaxBlurPool2d(
            k, 2, blur_size=blur_size, padding_mode="circular")).double()
        assert _shift_error(fixed, x, 2) < 1e-12
        assert check_grid(fixed, (2, 3, n, n), "c1") == []


def test_the_max_blur_drop_in_after_circular_convs_is_flagged(gen):
    """The tester's stack: conv(circular) > ReLU > MaxBlurPool2d(2, circular) at 16x16,
    shift-2 error 0.105, and check_grid said [] for c1 and p4m."""
    with seeded_rng(0):
        net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, padding_mode="circular"), nn.ReLU(),
                            enn.MaxBlurPool2d(2, padding_mode="circular")).double()
    x = torch.randn(2, 3, 16, 16, generator=gen, dtype=torch.float64)
    assert _shift_error(net, x, 2) > 0.05
    for group in ("c1", "p4m"):
        (f,) = [f for f in check_grid(net, (2, 3, 16, 16), group) if f.breaks == "shifts"]
        assert (f.layer, f.problem) == ("2", "no-padding") and "max's 2x2" in f.message
    with seeded_rng(0):
        fixed = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, padding_mode="circular"), nn.ReLU(),
                              nn.CircularPad2d((0, 1, 0, 1)),
                              enn.MaxBlurPool2d(2, padding_mode="circular")).double()
    assert _shift_error(fixed, x, 2) < 1e-12
    assert check_grid(fixed, (2, 3, 16, 16), "c1") == []


def _circular_cases():
    lift = dict(padding_mode="circular", group="p4")
    return {  # name: (model, its fix, shape)
        "Conv2d k3 p2": (lambda p: nn.Conv2d(1, 1, 3, padding=p, padding_mode="circular"), 2),
        "Conv2d k1 p1": (lambda p: nn.Conv2d(1, 1, 1, padding=p, padding_mode="circular"), 1),
        "Conv2d k5 p1": (lambda p: nn.Conv2d(1, 1, 5, padding=p, padding_mode="circular"), 1),
        "Conv2d k3 s2 p2": (lambda p: nn.Conv2d(1, 1, 3, 2, padding=p,
                                                padding_mode="circular"), 2),
        "Lift k5 p1": (lambda p: nn.Sequential(enn.LiftingConv2d(1, 2, 5, padding=p, **lift),
                                               enn.GroupPool()), 1),
        "GroupConv2d k3 dil2 p1": (lambda p: nn.Sequential(
            enn.LiftingConv2d(1, 2, 3, padding=1, **lift),
            enn.GroupConv2d(2, 2, 3, padding=p, dilation=2, **lift), enn.GroupPool()), 1),
        "Conv3d k3 p2": (lambda p: nn.Conv3d(1, 1, 3, padding=p, padding_mode="circular"), 2),
        "Conv3d k5 p1": (lambda p: nn.Conv3d(1, 1, 5, padding=p, padding_mode="circular"), 1),
        "LiftingConv3d(o) k3 dil2 p1": (lambda p: nn.Sequential(enn.LiftingConv3d(
            1, 1, 3, padding=p, dilation=2, padding_mode="circular", group="o"),
            enn.GroupPool()), 1),
    }


@pytest.mark.parametrize("name", sorted(_circular_cases()))
def test_circular_padding_of_another_width_than_the_window_is_a_finding(name, gen):
    """A circular conv whose padding is not what its windows consume (k_eff - stride ..
    k_eff - 1 in all per dim) crops or enlarges its output: measured 0.2-0.9 under circular
    shifts, where check_grid said [] (2-D and 3-D). Its fix, padding=(k_eff - 1) // 2,
    measures exact and passes."""
    build, bad = _circular_cases()[name]
    three = "3d" in name
    stride = 2 if " s2 " in name else 1
    with seeded_rng(0):
        net = build(bad).double().eval()
    shape = (1, 1, 8, 8, 8) if three else (1, 1, 12, 12)
    x = torch.randn(*shape, generator=gen, dtype=torch.float64)
    group = "o" if three else "c1"
    err = _shift_error3d(net, x) if three else _shift_error(net, x, stride)
    assert err > 1e-3
    found = [f for f in check_grid(net, shape, group) if f.breaks == "shifts"]
    assert [f.problem for f in found] == ["circular-padding-size"], found
    fix = found[0].fix
    assert fix.startswith("padding=")
    with seeded_rng(0):
        fixed = build(int(fix.split("=")[1].split(" ")[0])).double().eval()
    assert (_shift_error3d(fixed, x) if three else _shift_error(fixed, x, stride)) < 1e-12
    assert [f for f in check_grid(fixed, shape, group) if f.breaks == "shifts"] == []


def test_a_circular_pad_module_wider_than_the_windows_consume_is_a_finding(gen):
    """nn.CircularPad2d(2) before a valid 3x3 conv: the output is 14x14 from 12x12, shift
    error 0.43, and check_grid said []. Its pixels are counted to the end of their reach:
    a second valid conv consuming the rest is exact (the control), a strided one must take
    what is left (k - s .. k - 1), and a layer that resizes ends the reach."""
    x = torch.randn(1, 1, 12, 12, generator=gen, dtype=torch.float64)
    with seeded_rng(0):
        wide = nn.Sequential(nn.CircularPad2d(2), nn.Conv2d(1, 1, 3)).double()
        exact = nn.Sequential(nn.CircularPad2d(2), nn.Conv2d(1, 1, 3), nn.ReLU(),
                              nn.Conv2d(1, 1, 3)).double()
        strided = nn.Sequential(nn.CircularPad2d(3), nn.Conv2d(1, 1, 3, stride=2)).double()
        tiled = nn.Sequential(nn.CircularPad2d(1), nn.MaxPool2d(2)).double()
        fine = nn.Sequential(nn.CircularPad2d(1), nn.Conv2d(1, 1, 3, stride=2)).double()
    assert _shift_error(wide, x, 1) > 0.1
    (f,) = check_grid(wide, (1, 1, 12, 12), "c1")
    assert (f.layer, f.problem, f.fix) == ("0", "circular-padding-size",
                                           "nn.CircularPad2d(1) (what the windows after it "
                                           "consume)")
    assert _shift_error(exact, x, 1) < 1e-12 and check_grid(exact, (1, 1, 12, 12), "c1") == []
    for net in (strided, tiled):
        assert _shift_error(net, x, 2) > 0.1
        assert [f.problem for f in check_grid(net, (1, 1, 12, 12), "c1")] == [
            "circular-padding-size"]
    assert _shift_error(fine, x, 2) < 1e-12 and check_grid(fine, (1, 1, 12, 12), "c1") == []


def test_antialias_polyphase_circular_pad_is_read_as_a_pad(gen):
    """antialias(mode="polyphase") puts its own circular pad before a stride-1 max: check_grid
    took the max for a valid (cropping) window, a false alarm (shift-by-2 error 6e-17). The
    pad says what it pads (``padding``, ``padding_mode``). Control: a too-wide pad of the
    same class before the max is a finding, and measures inexact."""
    from equilayers._surgery import _CircularPad

    with seeded_rng(0):
        net = nn.Sequential(nn.Conv2d(3, 4, 3, 1, 1, padding_mode="circular"), nn.ReLU(),
                            nn.MaxPool2d(2))
        aa = equilayers.antialias(net, mode="polyphase").double().eval()
    assert isinstance(aa[2][0], _CircularPad)
    x = torch.randn(2, 3, 16, 16, generator=gen, dtype=torch.float64)
    assert _shift_error(aa, x, 2) < 1e-12
    assert check_grid(aa, (2, 3, 16, 16), "c1") == []
    wide = nn.Sequential(_CircularPad((4, 4)), nn.MaxPool2d(2, 1)).double()
    assert _shift_error(wide, x, 1) > 0.1
    assert [f.problem for f in check_grid(wide, (2, 3, 16, 16), "c1")] == [
        "circular-padding-size"]


def _measured(net: nn.Module, n: int, gen) -> float:
    x = torch.randn(2, 1, n, n, generator=gen, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return equivariance_error(net, x, "p4", in_rep="trivial", out_rep="trivial")


def _size_models():
    with seeded_rng(0):
        ceil = nn.Sequential(
            enn.LiftingConv2d(1, 4, 3, padding=1, padding_mode="circular", group="p4"),
            enn.MaxBlurPool2d(3, 2, ceil_mode=True),
            enn.GroupConv2d(4, 4, 3, stride=2, padding=1, padding_mode="circular", group="p4"),
            enn.GroupPool())
        up = nn.Sequential(enn.LiftingConv2d(1, 2, 3, 2, 1, group="p4"),
                           enn.GroupUpsample2d(size=(12, 12)), enn.GroupPool())
    return {"ceil": (ceil.double().eval(), (9, 10)), "upsample": (up.double().eval(), (8,))}


@pytest.mark.parametrize("name", ["ceil", "upsample"])
def test_a_suggested_size_is_one_check_grid_passes_and_measures_exact(name, gen):
    """The size search counted only stride parities and an even blur's padding, and re-checked
    each size with the window law alone: it named 10 for a MaxBlurPool2d(ceil_mode=True) stack
    at 9 (p4 error 0.30 at 10: the ceil window) and 9 for an upsampling to 12x12 at 8 (error
    0.75 at 9: 5 -> 12). Every suggested size now is one check_grid finds nothing at, and
    the model measures exact there; at the given sizes it measured inexact (the control)."""
    net, sizes = _size_models()[name]
    for n in sizes:
        assert _measured(net, n, gen) > 1e-3
        found = check_grid(net, (1, 1, n, n), "p4", shifts=False)
        fixes = {f.fix for f in found if f.fix.startswith("use an input size of ")}
        assert len(fixes) == 1, found
        m = int(fixes.pop().split("of ")[1].split(",")[0])
        assert check_grid(net, (1, 1, m, m), "p4", shifts=False) == []
        assert _measured(net, m, gen) < 1e-12


@pytest.mark.parametrize("mode", ["reflect", "replicate", "zeros"])
def test_padding_its_windows_never_read_is_not_a_shift_finding(mode, gen):
    """BlurPool2d(kernel_size=2, stride=2) pads one pixel after, which its windows never read
    on even sizes: shift-by-2 error 0 at 8 and 12, where check_grid named its padding_mode (a
    false alarm). Control: a 3-tap blur reads its padding, is flagged and measures inexact."""
    for n in (8, 12):
        x = torch.randn(2, 1, n, n, generator=gen, dtype=torch.float64)
        with seeded_rng(0):
            conv = nn.Conv2d(1, 2, 3, padding=1, padding_mode="circular")
            net = nn.Sequential(conv, enn.BlurPool2d(kernel_size=2, stride=2,
                                                     padding_mode=mode)).double()
            read = nn.Sequential(conv, enn.BlurPool2d(kernel_size=3, stride=2,
                                                      padding_mode=mode)).double()
        assert _shift_error(net, x, 2) < 1e-12
        assert check_grid(net, (2, 1, n, n), "c1") == []
        assert _shift_error(read, x, 2) > 1e-3
        assert [(f.layer, f.problem) for f in check_grid(read, (2, 1, n, n), "c1")] == [
            ("1", "non-circular-padding")]


@pytest.mark.parametrize("make,s", [
    (lambda: nn.Sequential(nn.CircularPad2d((0, 1, 0, 1)), nn.MaxPool2d(2)), 2),
    (lambda: nn.Sequential(nn.CircularPad2d(1), nn.Conv2d(1, 1, 3, stride=3)), 3),
    (lambda: nn.Sequential(nn.CircularPad2d((0, 1, 0, 1)),
                           enn.MaxBlurPool2d(2, blur_size=1, padding_mode="circular")), 2),
], ids=["pad-maxpool", "pad-conv-k3s3", "pad-maxblur-b1"])
def test_a_circular_pad_before_windows_that_tile_is_consumed(make, s, gen):
    """A circular pad before a window no larger than its stride: the window consumes k - 1 of
    its pixels, as any window; the pad's reach was closed with all its pixels left
    (``circular-padding-size`` with the fix nn.CircularPad2d(0)) on exact models, one of
    them the fix check_grid itself names for MaxBlurPool2d (found by the regression probe).
    The control: a pad wider than the windows consume is a finding and measures inexact."""
    with seeded_rng(0):
        net = make().double()
    x = torch.randn(2, 1, 12, 12, generator=gen, dtype=torch.float64)
    assert _shift_error(net, x, s) < 1e-12
    assert check_grid(net, x.shape, "c1") == []
    with seeded_rng(0):
        wide = nn.Sequential(nn.CircularPad2d(2), *list(make())[1:]).double()
    assert _shift_error(wide, x, s) > 0.05
    assert [f.problem for f in check_grid(wide, x.shape, "c1")] == ["circular-padding-size"]


def test_a_circular_pad_before_a_tiling_3d_pool_is_consumed(gen):
    net = nn.Sequential(nn.CircularPad3d((0, 1) * 3), nn.MaxPool3d(2)).double()
    x = torch.randn(1, 1, 8, 8, 8, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        y = net(x)
        err = (net(torch.roll(x, (2, 4, 2), (-3, -2, -1)))
               - torch.roll(y, (1, 2, 1), (-3, -2, -1))).norm() / y.norm()
    assert err < 1e-12
    assert [f for f in check_grid(net, x.shape, "o") if f.breaks == "shifts"] == []
