"""``ceil_mode`` of ``MaxBlurPool2d`` / ``max_blur_pool2d``: torch's ``nn.MaxPool2d(...,
ceil_mode=True)`` output size for every size torch takes, on every dispatch path and layout."""

from __future__ import annotations

import inspect
import itertools
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import equilayers.functional as EF
from equilayers import kernels
from equilayers.functional._ceil_mode import ceil_mode_pad
from equilayers.kernels import _registry
from equilayers.kernels._layout import layout_of
from equilayers.nn import MaxBlurPool2d

#: (n, kernel_size, stride, padding) for every n 1..13, k 1..5, s 1..4, p 0..k//2
GRID = [(n, k, s, p) for n, k, s in itertools.product(range(1, 14), range(1, 6), range(1, 5))
        for p in range(k // 2 + 1)]


def test_the_size_values_and_gradient_are_torchs_over_a_grid(gen):
    """Over the grid (H = n, W = n + 1): where torch's ceil_mode max pool takes the size, the
    output has its size (the module too, with the default blur), and with blur_size=1 (the
    blur pool is then x[..., ::s, ::s] of the stride-1 max) its values exactly and its input
    gradient, on inputs full of ties (the extra window's max and the pixel its gradient goes to
    are torch's: the replicated pixels never win over the ones they copy); where torch refuses
    the size, a ValueError. The control: floor mode gives another size at many of them."""
    differs = refused = 0
    for n, k, s, p in GRID:
        x = torch.randint(0, 3, (1, 2, n, n + 1), generator=gen).double().requires_grad_(True)
        try:
            want = F.max_pool2d(x, k, s, p, ceil_mode=True)
        except RuntimeError:  # "Output size is too small"
            refused += 1
            with pytest.raises(ValueError, match="smaller than the kernel's window"):
                EF.max_blur_pool2d(x, k, s, p, ceil_mode=True)
            continue
        got = EF.max_blur_pool2d(x, k, s, p, ceil_mode=True, blur_size=1)
        assert got.shape == want.shape and torch.equal(got, want), (n, k, s, p)
        gy = torch.randn(want.shape, generator=gen, dtype=torch.float64)
        g_got, g_want = (torch.autograd.grad(y, x, gy)[0] for y in (got, want))
        # (a pixel that wins several windows sums their gradients in another order)
        torch.testing.assert_close(g_got, g_want, rtol=0, atol=1e-12, msg=str((n, k, s, p)))
        y = MaxBlurPool2d(k, s, p, ceil_mode=True)(x)
        assert y.shape == nn.MaxPool2d(k, s, p, ceil_mode=True)(x).shape, (n, k, s, p)
        assert torch.isfinite(y).all(), (n, k, s, p)
        differs += want.shape[-2:] != tuple((m + 2 * p - k) // s + 1 for m in x.shape[-2:])
    assert differs > 100 and refused > 0, (differs, refused)


def test_torch_takes_sizes_in_ceil_mode_that_floor_mode_refuses():
    """nn.MaxPool2d(4, 3, 1, ceil_mode=True) pools a 1x1 input (its one window starts in the
    left padding); floor mode refuses it, with torch and with us."""
    x = torch.randn(1, 2, 1, 1)
    assert MaxBlurPool2d(4, 3, 1, ceil_mode=True)(x).shape == (1, 2, 1, 1)
    torch.testing.assert_close(EF.max_blur_pool2d(x, 4, 3, 1, ceil_mode=True, blur_size=1),
                               F.max_pool2d(x, 4, 3, 1, ceil_mode=True))
    with pytest.raises(ValueError, match="smaller than the kernel's window"):
        MaxBlurPool2d(4, 3, 1)(x)


@pytest.mark.parametrize("shape", [(1, 2, 0, 5), (1, 2, 5, 0), (2, 0, 5, 5), (0, 2, 5, 5)])
def test_empty_maps(shape):
    """An empty spatial dim is refused by name (torch refuses it too): ceil_mode's padding must
    not make a window of padding alone (a -inf pad gave a -inf output here). An empty batch or
    channel count gives the empty result."""
    x = torch.randn(shape)
    if 0 in shape[-2:]:
        with pytest.raises(ValueError, match="smaller than the kernel's window"):
            EF.max_blur_pool2d(x, 3, 2, 1, ceil_mode=True)
    else:
        assert EF.max_blur_pool2d(x, 3, 2, ceil_mode=True).shape == (*shape[:2], 2, 2)


def test_ceil_extra_is_the_reach_of_torchs_extra_window():
    """ceil_extra (a branch-free expression) against torch's own ceil_mode output size, over n
    1..40, k 1..11, s 1..8, p 0..k//2: the reach past n + 2p of torch's last window."""
    from equilayers.functional._ceil_mode import ceil_extra

    checked = 0
    for n, k, s in itertools.product(range(1, 41), range(1, 12), range(1, 9)):
        for p in range(k // 2 + 1):
            try:
                out = F.max_pool1d(torch.zeros(1, 1, n), k, s, p, ceil_mode=True).shape[-1]
            except RuntimeError:  # torch refuses the size
                continue
            assert ceil_extra(n, k, s, p) == max(0, (out - 1) * s + k - (n + 2 * p)), (n, k, s, p)
            checked += 1
    assert checked > 10000


def test_export_with_a_dynamic_height_and_width(gen):
    """torch.export with dynamic H and W: the ceil_mode padding is an expression of the sizes
    (it branched on their remainder, and export failed with "Cannot create Dim with
    inconsistent min=-4, max=-128"); the program gives torch's sizes and the eager values at
    odd and even sizes."""
    m = MaxBlurPool2d(3, 2, ceil_mode=True)
    dims = {2: torch.export.Dim("h", min=9, max=256), 3: torch.export.Dim("w", min=9, max=256)}
    ep = torch.export.export(m, (torch.randn(2, 3, 40, 41, generator=gen),),
                             dynamic_shapes=(dims,))
    for h, w in [(40, 41), (41, 40), (64, 63), (17, 18)]:
        x = torch.randn(2, 3, h, w, generator=gen)
        y = ep.module()(x)
        assert y.shape == nn.MaxPool2d(3, 2, ceil_mode=True)(x).shape
        torch.testing.assert_close(y, m(x))


def _paths():
    fast = [(p.name, lambda p=p: kernels.use_fast_path(p.name))
            for p in _registry.get_op("max_blur_pool2d").fast["cpu"]]
    return [("reference", kernels.use_reference), *fast]


def _layouts(gen, h, w):
    x4 = torch.randn(2, 3, h, w, generator=gen, dtype=torch.float64)
    x5 = torch.randn(2, 12, h, w, generator=gen, dtype=torch.float64)
    return {
        "contiguous 4-D": x4,
        "channels_last 4-D": x4.contiguous(memory_format=torch.channels_last),
        "contiguous 5-D": x5.unflatten(1, (3, 4)).contiguous(),
        # a channels_last group conv's output, viewed (B, C, F, H, W)
        "channels_last 5-D": x5.contiguous(memory_format=torch.channels_last).unflatten(1,
                                                                                      (3, 4)),
        "non-contiguous": x4.transpose(-1, -2),
        "unbatched": x4[0],
    }


@pytest.mark.parametrize("k, s, p, blur_size, mode", [
    (2, 2, 0, 3, "reflect"), (3, 2, 1, 3, "zeros"), (3, 2, 0, 4, "replicate"),
    (2, 3, 0, 5, "circular")])
def test_every_path_and_layout_equals_the_reference(gen, k, s, p, blur_size, mode):
    """The ceil_mode padding happens before the op's dispatch, so the reference, each CPU fast
    path (forced) and the layout table's choice agree, forward and backward, on contiguous,
    channels_last (4-D and the 5-D view of a channels_last group conv), transposed and
    unbatched inputs; the padded input keeps the layout the table is keyed by, and the output
    the layout of the floor-mode output."""
    kw = dict(ceil_mode=True, blur_size=blur_size, padding_mode=mode)
    # sizes where torch's ceil_mode adds a window (8 and 9 do for some of these, not others)
    h, w = [n for n in range(7, 20) if F.max_pool2d(torch.zeros(1, n, n), k, s, p,
                                                    ceil_mode=True).shape[-1]
            != F.max_pool2d(torch.zeros(1, n, n), k, s, p).shape[-1]][:2]
    for name, x in _layouts(gen, h, w).items():
        padded = ceil_mode_pad(x, k, s, p, "replicate")
        assert padded.shape[-2] > x.shape[-2] and padded.shape[-1] > x.shape[-1], name
        if layout_of(x) is not None:
            assert layout_of(padded) == layout_of(x), name
        xr = x.detach().requires_grad_(True)
        with kernels.use_reference():
            want = EF.max_blur_pool2d(xr, k, s, p, **kw)
        gy = torch.randn(want.shape, generator=gen, dtype=torch.float64)
        (g_want,) = torch.autograd.grad(want, xr, gy)
        torch_size = F.max_pool2d(x.reshape(-1, *x.shape[-2:]), k, s, p,
                                  ceil_mode=True).shape[-2:]
        assert want.shape == (*x.shape[:-2], *torch_size), name
        assert torch.isfinite(g_want).all() and g_want.abs().sum() > 0
        for path, ctx in [*_paths(), ("dispatch", lambda: torch.enable_grad())]:
            xg = x.detach().requires_grad_(True)
            with ctx():
                y = EF.max_blur_pool2d(xg, k, s, p, **kw)
            (g,) = torch.autograd.grad(y, xg, gy)
            torch.testing.assert_close(y, want, msg=f"{name} {path}")
            torch.testing.assert_close(g, g_want, msg=f"{name} {path}")
        floor = EF.max_blur_pool2d(x, k, s, p, blur_size=blur_size, padding_mode=mode)
        assert layout_of(y) == layout_of(floor), name


def test_the_padding_of_a_group_map_keeps_its_channels_last_layout(gen):
    """The control for the layout check above: F.pad of the 5-D view itself returns a
    contiguous tensor, which the layout table would read as another layout."""
    x = torch.randn(2, 12, 7, 10, generator=gen).contiguous(
        memory_format=torch.channels_last).unflatten(1, (3, 4))
    assert layout_of(x) == "channels_last 5-D"
    assert layout_of(F.pad(x, (0, 1, 0, 1), value=-math.inf)) == "contiguous 5-D"
    assert layout_of(ceil_mode_pad(x, 2, 2, 0, "replicate")) == "channels_last 5-D"


def test_gradcheck(gen):
    x = torch.randn(1, 2, 7, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    for k, s, p in [(3, 2, 0), (2, 2, 0), (3, 2, 1)]:
        assert torch.autograd.gradcheck(
            lambda v, k=k, s=s, p=p: EF.max_blur_pool2d(v, k, s, p, ceil_mode=True), (x,))


def test_module_equals_functional_and_floor_mode_where_no_window_is_added(gen):
    x = torch.randn(2, 3, 9, 10, generator=gen)
    m = MaxBlurPool2d(3, 2, ceil_mode=True, blur_size=4, padding_mode="zeros")
    torch.testing.assert_close(m(x), EF.max_blur_pool2d(x, 3, 2, ceil_mode=True, blur_size=4,
                                                        padding_mode="zeros"))
    # (9 - 3) % 2 == 0: no extra window, the floor-mode output; (10 - 3) % 2 == 1: one more
    y, y_floor = m(x), MaxBlurPool2d(3, 2, blur_size=4, padding_mode="zeros")(x)
    assert y.shape == (2, 3, 4, 5) and y_floor.shape == (2, 3, 4, 4)
    x = x[..., :9]
    torch.testing.assert_close(m(x), MaxBlurPool2d(3, 2, blur_size=4, padding_mode="zeros")(x),
                               rtol=0, atol=0)


def test_signature_repr_and_bad_values():
    """ceil_mode is keyword-only (nn.MaxPool2d's fourth and fifth positional arguments are
    dilation and return_indices, which MaxBlurPool2d does not take), after padding; the
    positional (kernel_size, stride, padding) keep working. repr shows it only when set; a
    non-bool is a TypeError naming it."""
    params = inspect.signature(MaxBlurPool2d).parameters
    assert list(params)[:4] == ["kernel_size", "stride", "padding", "ceil_mode"]
    assert params["ceil_mode"].kind is inspect.Parameter.KEYWORD_ONLY
    assert params["ceil_mode"].default is False
    fparams = inspect.signature(EF.max_blur_pool2d).parameters
    assert fparams["ceil_mode"].kind is inspect.Parameter.KEYWORD_ONLY
    assert repr(MaxBlurPool2d(3, 2, 1)) == "MaxBlurPool2d(kernel_size=3, stride=2, padding=1)"
    assert repr(MaxBlurPool2d(3, 2, 1, ceil_mode=True)) == (
        "MaxBlurPool2d(kernel_size=3, stride=2, padding=1, ceil_mode=True)")
    with pytest.raises(TypeError, match="positional"):
        MaxBlurPool2d(3, 2, 1, True)
    for bad in (1, None, "True"):
        with pytest.raises(TypeError, match=r"MaxBlurPool2d: ceil_mode=.* must be True or False"):
            MaxBlurPool2d(2, ceil_mode=bad)
        with pytest.raises(TypeError, match=r"max_blur_pool2d: ceil_mode=.* must be True or"):
            EF.max_blur_pool2d(torch.randn(1, 1, 4, 4), 2, ceil_mode=bad)


def test_state_dict_has_no_entry_and_compile_takes_it(gen):
    """The blur filter is a non-persistent buffer: no state_dict entry with or without
    ceil_mode (what lets antialias() swap its old Sequential for this module)."""
    assert MaxBlurPool2d(3, 2, ceil_mode=True).state_dict() == {}
    m = MaxBlurPool2d(3, 2, ceil_mode=True)
    x = torch.randn(2, 3, 8, 8, generator=gen)
    torch.testing.assert_close(torch.compile(m, fullgraph=True, backend="eager")(x), m(x))


# --- equivariance ----------------------------------------------------------------------------
@pytest.mark.parametrize("make, exact, broken", [
    # (n + 2 padding - kernel_size) % stride == 0 at the exact size: no window added
    (lambda c: MaxBlurPool2d(3, 2, 1, ceil_mode=c), 9, 8),
    (lambda c: MaxBlurPool2d(2, ceil_mode=c), 8, 9),
    # an even blur: exact at 9x9 in floor mode (its extra pad pixel is unread), which ceil_mode
    # breaks there; the law counts the extra window's reach, or it would stay silent
    (lambda c: MaxBlurPool2d(2, blur_size=2, ceil_mode=c), None, 9),
    (lambda c: MaxBlurPool2d(2, blur_size=4, ceil_mode=c), None, 9)])
def test_exact_where_ceil_mode_adds_no_window_warned_where_it_does(gen, make, exact, broken):
    """On d4 regular group maps: exact to rounding (rot90 and flips, no warning) at a size
    where ceil_mode adds no window, as in floor mode; where it adds one, a warning naming
    ceil_mode and the sizes to use, and a measured error of order 1 (the negative control),
    while the floor-mode pool at that size is exact where the floor grid is."""
    from equilayers.testing import equivariance_error

    for n in [exact, broken]:
        if n is None:
            continue
        x = torch.randn(2, 3, 8, n, n, generator=gen, dtype=torch.float64)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            m = make(True)
            m(x)
        warned = [str(w.message) for w in caught if "not exactly equivariant" in str(w.message)]
        error = equivariance_error(m, x, "d4")
        if n == exact:
            assert not warned and error < 1e-12, (n, error, warned)
        else:
            assert warned and "ceil_mode adds a last window" in warned[0], warned
            assert f"of {n + 1}" in warned[0] and error > 0.1, (n, error)
            if exact is None:  # the floor-mode pool is exact here
                assert equivariance_error(make(False), x, "d4") < 1e-12


def _shift_error(f, x, shifts):
    """Mean relative change of the globally pooled output under circular shifts."""
    base = f(x).mean((-2, -1))
    errs = [((f(torch.roll(x, d, (-2, -1))).mean((-2, -1)) - base).norm() / base.norm())
            for d in shifts]
    return float(torch.stack(errs).mean())


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("n, mode", [(16, "circular"), (22, "zeros"), (24, "reflect")])
def test_one_pixel_shift_error_below_ceil_mode_maxpool(seed, n, mode):
    """As a drop-in for nn.MaxPool2d(3, 2, ceil_mode=True) (GoogLeNet's) on even sizes, where
    ceil_mode adds a window: the output changes less under 1-px circular shifts of the input
    than the max pool's does (the docstring's approximate shift equivariance)."""
    gen = torch.Generator().manual_seed(seed)
    conv = nn.Conv2d(3, 8, 3, padding=1, padding_mode="circular", dtype=torch.float64)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen, dtype=torch.float64))
    x = torch.randn(4, 3, n, n, generator=gen, dtype=torch.float64)
    shifts = [(1, 0), (0, 1), (1, 1)]
    maxpool = nn.MaxPool2d(3, 2, ceil_mode=True)
    pool = MaxBlurPool2d(3, 2, ceil_mode=True, padding_mode=mode)
    with torch.no_grad():
        y = conv(x)
        assert pool(y).shape == maxpool(y).shape != nn.MaxPool2d(3, 2)(y).shape  # a window more
        e_max = _shift_error(lambda v: F.relu(maxpool(conv(v))), x, shifts)
        e_blur = _shift_error(lambda v: F.relu(pool(conv(v))), x, shifts)
    assert e_blur < e_max, (e_blur, e_max)
