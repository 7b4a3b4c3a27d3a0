"""GaussianBlurPool3d / gaussian_blur_pool3d (escnn's PointwiseAvgPoolAntialiased3D), the
``truncate`` option of both Gaussian pools, and BallMask / ball_mask3d (escnn's MaskModule on
volumes): the formulas, shapes against one depthwise ``F.conv3d``, module == functional, the
exactness warning and check_grid, bad input.
(The comparison with escnn's own modules is in tests/test_escnn_pools3d.py.)"""

import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from equilayers import check_grid
from equilayers.functional import ball_mask3d, gaussian_blur_pool2d, gaussian_blur_pool3d
from equilayers.functional._gaussian import (
    disk_mask_weights,
    gaussian_filter2d,
    gaussian_filter_size,
)
from equilayers.functional._gaussian3d import ball_mask_weights, gaussian_filter3d
from equilayers.nn import (
    BallMask,
    GaussianBlurPool2d,
    GaussianBlurPool3d,
    GroupConv3d,
    LiftingConv3d,
)


@pytest.mark.parametrize("sigma,truncate,k", [(0.66, 3.0, 5), (0.66, 4.0, 7), (0.5, 4.0, 5),
                                              (1.0, 3.0, 7), (0.1, 3.0, 1), (0.4, 2.5, 3)])
def test_filter3d_formula(sigma, truncate, k):
    """``2 * round(truncate * sigma) + 1`` taps (Python's round, as escnn), values
    ``exp(-|q|^2 / (2 sigma^2))`` normalized; the 3-D filter is the outer product of the 1-D
    ones and sums to 1 (each 2-D slice through its centre is the 2-D filter's shape)."""
    assert gaussian_filter_size(sigma, truncate=truncate) == k
    f = gaussian_filter3d(sigma, truncate=truncate, dtype=torch.float64)
    assert f.shape == (k, k, k)
    c = (k - 1) / 2
    ref = torch.tensor([[[math.exp(-((i - c) ** 2 + (j - c) ** 2 + (m - c) ** 2)
                                   / (2 * sigma ** 2)) for m in range(k)] for j in range(k)]
                        for i in range(k)], dtype=torch.float64)
    torch.testing.assert_close(f, ref / ref.sum(), rtol=0, atol=1e-15)
    plane = gaussian_filter2d(sigma, truncate=truncate, dtype=torch.float64)
    torch.testing.assert_close(f[k // 2] / f[k // 2].sum(), plane, rtol=0, atol=1e-15)


@pytest.mark.parametrize("shape,sigma,stride,padding,truncate,out", [
    ((2, 3, 9, 9, 9), 0.66, 2, None, 3.0, (5, 5, 5)),
    ((2, 3, 24, 7, 7, 7), 0.66, 2, None, 3.0, (4, 4, 4)),
    ((1, 2, 10, 7, 8), 1.0, 2, 1, 3.0, (3, 2, 2)),
    ((1, 2, 9, 9, 9), 0.66, None, None, 3.0, (2, 2, 2)),  # stride None: the filter size
    ((1, 2, 9, 11, 6), 0.66, (1, 2, 3), (0, 2, 1), 3.0, (5, 6, 2)),
    ((1, 2, 4, 9, 9, 9), 0.66, 2, None, 4.0, (5, 5, 5)),
])
def test_shapes_and_reference(shape, sigma, stride, padding, truncate, out, gen):
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    m = GaussianBlurPool3d(sigma, stride, padding, truncate=truncate).double()
    y = m(x)
    assert y.shape == (*shape[:-3], *out)
    k = gaussian_filter_size(sigma, truncate=truncate)
    s = (k,) * 3 if stride is None else (stride if isinstance(stride, tuple) else (stride,) * 3)
    p = ((k - 1) // 2,) * 3 if padding is None else (
        padding if isinstance(padding, tuple) else (padding,) * 3)
    flat = x.reshape(-1, 1, *shape[-3:])
    filt = gaussian_filter3d(sigma, truncate=truncate, dtype=torch.float64)
    ref = F.conv3d(flat, filt[None, None], stride=s, padding=p).reshape(y.shape)
    torch.testing.assert_close(y, ref)
    torch.testing.assert_close(gaussian_blur_pool3d(x, sigma, stride, padding,
                                                    truncate=truncate), y)


def test_truncate_2d(gen):
    """``truncate`` widens the 2-D filter too (escnn's max pool blurs with 4 sigma)."""
    m = GaussianBlurPool2d(0.66, truncate=4.0)
    assert m.kernel_size == 7 and m.filter.shape == (7, 7)
    assert repr(m) == "GaussianBlurPool2d(sigma=0.66, stride=(2, 2), truncate=4)"
    x = torch.randn(2, 3, 11, 11, generator=gen, dtype=torch.float64)
    ref = F.conv2d(x.reshape(-1, 1, 11, 11),
                   gaussian_filter2d(0.66, truncate=4.0, dtype=torch.float64)[None, None],
                   stride=2, padding=3).reshape(2, 3, 6, 6)
    torch.testing.assert_close(m.double()(x), ref)
    torch.testing.assert_close(gaussian_blur_pool2d(x, 0.66, truncate=4.0), ref)
    # the default is escnn's average pool's 3 sigma, a different filter
    assert not torch.allclose(GaussianBlurPool2d(0.66).double()(x), ref)


def test_module_behaviour(gen):
    m = GaussianBlurPool3d(0.66)
    assert m.state_dict() == {} and m.filter.shape == (5, 5, 5)
    assert repr(m) == "GaussianBlurPool3d(sigma=0.66, stride=(2, 2, 2))"
    assert "padding=(1, 1, 1)" in repr(GaussianBlurPool3d(0.66, 2, 1))
    assert m(torch.randn(0, 3, 9, 9, 9)).shape == (0, 3, 5, 5, 5)
    assert m(torch.randn(2, 0, 4, 9, 9, 9)).shape == (2, 0, 4, 5, 5, 5)
    x = torch.randn(2, 3, 9, 9, 9, generator=gen).transpose(-1, -3)  # non-contiguous
    torch.testing.assert_close(m(x), gaussian_blur_pool3d(x.contiguous(), 0.66))
    assert m.double()(x.double()).dtype == torch.float64
    assert GaussianBlurPool3d(0.66, dtype=torch.float64).filter.dtype == torch.float64
    meta = GaussianBlurPool3d(0.66, device="meta")
    assert meta.filter.is_meta
    real = meta.to_empty(device="cpu")
    real.reset_parameters()
    torch.testing.assert_close(real.filter, gaussian_filter3d(0.66))
    leaf = torch.randn(1, 2, 5, 5, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: gaussian_blur_pool3d(t, 0.5), (leaf,))


def test_exactness_warning_and_check_grid(gen):
    """An even volume at stride 2 breaks exactness on a 6-D map: one warning per module, and
    check_grid names the layer; odd sizes are exact and silent."""
    m = GaussianBlurPool3d(0.66)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m(torch.randn(1, 1, 24, 9, 9, 9, generator=gen))  # exact: silent
        m(torch.randn(1, 1, 8, 8, 8, generator=gen))      # a plain volume: not checked
    with pytest.warns(UserWarning, match=r"GaussianBlurPool3d \(the cube's rotations and "
                                         r"flips\) is not exactly equivariant on input of size "
                                         r"8x8x8"):
        m(torch.randn(1, 1, 24, 8, 8, 8, generator=gen))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m(torch.randn(1, 1, 24, 6, 6, 6, generator=gen))  # warned once per module
    net = torch.nn.Sequential(LiftingConv3d(1, 2, 3, padding=1, group="o"),
                              GaussianBlurPool3d(0.66),
                              GroupConv3d(2, 2, 3, padding=1, group="o"))
    assert check_grid(net, (1, 1, 9, 9, 9), "o", shifts=False) == []
    found = check_grid(net, (1, 1, 8, 8, 8), "o", shifts=False)
    assert [f.layer for f in found] == ["1"], found


@pytest.mark.parametrize("ctor,exc,match", [
    (lambda: GaussianBlurPool3d(0.0), ValueError,
     r"GaussianBlurPool3d: sigma=0.0 must be a real number > 0"),
    (lambda: GaussianBlurPool3d(0.66, stride=(1, 2)), ValueError, r"stride=\(1, 2\) must be"),
    (lambda: GaussianBlurPool3d(0.66, padding=-1), ValueError, r"padding=-1 must be .* >= 0"),
    (lambda: GaussianBlurPool3d(0.66, truncate=0), ValueError,
     r"GaussianBlurPool3d: truncate=0 must be a real number > 0.*standard deviations"),
    (lambda: GaussianBlurPool2d(0.66, truncate="4"), TypeError,
     r"GaussianBlurPool2d: truncate='4' must be a real number"),
    (lambda: GaussianBlurPool3d(100.0), ValueError,
     r"sigma=100 asks for a filter of 601 taps per dim .*; sigma must be at most 42\.6667 "
     r"\(a 257-tap filter\)"),
])
def test_bad_arguments(ctor, exc, match):
    with pytest.raises(exc, match=match):
        ctor()


def test_bad_inputs(gen):
    with pytest.raises(ValueError, match=r"GaussianBlurPool3d: x must be 5-D or 6-D"):
        GaussianBlurPool3d(0.66)(torch.randn(3, 9, 9, 9, generator=gen))
    with pytest.raises(ValueError, match=r"5x5x5 filter does not fit the padded input "
                                         r"1\+2\*0 x 9\+2\*0 x 9\+2\*0"):
        GaussianBlurPool3d(0.66, padding=0)(torch.randn(1, 1, 1, 9, 9))
    with pytest.raises(TypeError, match=r"dtype torch.int64.*floating-point"):
        gaussian_blur_pool3d(torch.ones(1, 1, 5, 5, 5, dtype=torch.long))


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 3), st.integers(0, 3), st.integers(0, 3), st.floats(0.1, 1.0),
       st.integers(1, 3), st.integers(0, 2), st.booleans())
def test_shape_formula_property(ed, eh, ew, sigma, stride, padding, six_d):
    """``D' = floor((D + 2 padding - k) / stride) + 1`` over random sizes and options."""
    k = gaussian_filter_size(sigma)
    base = max(k - 2 * padding, 1)
    d, h, w = base + ed, base + eh, base + ew
    shape = (1, 2, 3, d, h, w) if six_d else (1, 2, d, h, w)
    y = gaussian_blur_pool3d(torch.randn(shape), sigma, stride, padding)
    assert y.shape == (*shape[:-3], *((n + 2 * padding - k) // stride + 1 for n in (d, h, w)))


def test_ball_mask_formula(gen):
    """escnn's build_mask in 3-D: 1 where the squared distance r <= t = (c - margin/100 c)^2,
    else exp((t - r) / sigma^2); its central slice is the disk mask's (same t, same r)."""
    for size, margin, sigma in ((7, 0.0, 2.0), (6, 20.0, 1.0), (9, 5.0, 2.0), (1, 0.0, 2.0)):
        c = (size - 1) / 2
        t = (c - margin / 100 * c) ** 2

        ref = torch.ones(size, size, size, dtype=torch.float64)
        for i in range(size):
            for j in range(size):
                for k in range(size):
                    r = (i - c) ** 2 + (j - c) ** 2 + (k - c) ** 2
                    if r > t:
                        ref[i, j, k] = math.exp((t - r) / sigma ** 2)
        got = ball_mask_weights(size, margin, sigma, dtype=torch.float64)
        torch.testing.assert_close(got, ref, rtol=0, atol=1e-15)
        if size % 2:
            torch.testing.assert_close(got[size // 2], disk_mask_weights(
                size, margin, sigma, dtype=torch.float64), rtol=0, atol=1e-15)
    m = BallMask(7, margin=10.0)
    assert m.state_dict() == {} and repr(m) == "BallMask(7, margin=10)"
    x = torch.randn(2, 3, 4, 7, 7, 7, generator=gen)
    torch.testing.assert_close(m(x), ball_mask3d(x, 10.0))
    assert m(torch.randn(0, 3, 7, 7, 7)).shape == (0, 3, 7, 7, 7)
    assert BallMask(5, device="meta").mask.is_meta
    leaf = torch.randn(1, 2, 4, 4, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: ball_mask3d(t, 5.0), (leaf,))


def test_ball_mask_bad_input(gen):
    with pytest.raises(ValueError, match=r"BallMask expects 7x7x7 spatial dims; got shape "
                                         r"\(1, 2, 6, 6, 6\) \(built for size=7\)"):
        BallMask(7)(torch.randn(1, 2, 6, 6, 6, generator=gen))
    with pytest.raises(ValueError, match=r"ball_mask3d expects cubic \(equal\) spatial dims"):
        ball_mask3d(torch.randn(1, 2, 5, 5, 6, generator=gen))
    with pytest.raises(ValueError, match=r"BallMask: x must be 5-D or 6-D"):
        BallMask(5)(torch.randn(2, 5, 5, 5, generator=gen))
    with pytest.raises(ValueError, match=r"BallMask: margin=150 must be a real number in "):
        BallMask(5, margin=150)


def test_masks_infer_shapes_on_meta_inputs(gen):
    """A meta input (shape inference, as torch layers allow) failed in torch's device check:
    the CPU mask was cast to the input's dtype but not moved. The control: a CPU input."""
    from equilayers.nn import BallMask, DiskMask

    for mask, shape in ((DiskMask(7), (2, 3, 7, 7)), (BallMask(5), (1, 2, 5, 5, 5))):
        y = mask(torch.empty(shape, device="meta"))
        assert y.is_meta and y.shape == shape
        x = torch.randn(shape, generator=gen)
        assert torch.equal(mask(x), x * mask.mask)
