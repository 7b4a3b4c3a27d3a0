"""GaussianBlurPool2d / gaussian_blur_pool2d and DiskMask / disk_mask2d: escnn's filter,
padding and mask formulas, shapes, module == functional, bad input, gradcheck."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from equilayers.functional import disk_mask2d, gaussian_blur_pool2d
from equilayers.functional._gaussian import (
    disk_mask_weights,
    gaussian_filter2d,
    gaussian_filter_size,
)
from equilayers.nn import DiskMask, GaussianBlurPool2d


# Python's round, as escnn: round(1.5) = 2, round(2.5) = 2
@pytest.mark.parametrize("sigma,k", [(0.66, 5), (0.5, 5), (0.4, 3), (1.0, 7), (0.1, 1),
                                     (2.5 / 3, 5)])
def test_filter_size_and_values(sigma, k):
    assert gaussian_filter_size(sigma) == k
    f = gaussian_filter2d(sigma, dtype=torch.float64)
    c = (k - 1) / 2
    ref = torch.tensor([[math.exp(-((i - c) ** 2 + (j - c) ** 2) / (2 * sigma ** 2))
                         for j in range(k)] for i in range(k)], dtype=torch.float64)
    torch.testing.assert_close(f, ref / ref.sum(), rtol=0, atol=1e-15)
    torch.testing.assert_close(f, f.T, rtol=0, atol=0)


@pytest.mark.parametrize("shape,sigma,stride,padding,out", [
    ((2, 3, 33, 33), 0.66, 2, None, (17, 17)),
    ((2, 3, 8, 9, 9), 0.66, 2, None, (5, 5)),
    ((1, 2, 10, 7), 1.0, 2, 1, (3, 2)),
    ((1, 2, 9, 9), 0.66, None, None, (2, 2)),  # stride None: the filter size, as escnn
    ((1, 2, 9, 11), 0.66, (1, 2), (0, 2), (5, 6)),
])
def test_shapes_and_reference(shape, sigma, stride, padding, out, gen):
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    y = GaussianBlurPool2d(sigma, stride, padding).double()(x)
    assert y.shape == (*shape[:-2], *out)
    k = gaussian_filter_size(sigma)
    s = (k, k) if stride is None else (stride if isinstance(stride, tuple) else (stride,) * 2)
    p = ((k - 1) // 2,) * 2 if padding is None else (
        padding if isinstance(padding, tuple) else (padding,) * 2)
    flat = x.reshape(-1, 1, *shape[-2:])
    ref = F.conv2d(flat, gaussian_filter2d(sigma, dtype=torch.float64)[None, None], stride=s,
                   padding=p).reshape(y.shape)
    torch.testing.assert_close(y, ref)
    torch.testing.assert_close(gaussian_blur_pool2d(x, sigma, stride, padding), y)


def test_module_behaviour(gen):
    m = GaussianBlurPool2d(0.66)
    assert m.state_dict() == {} and m.filter.shape == (5, 5)
    assert repr(m) == "GaussianBlurPool2d(sigma=0.66, stride=(2, 2))"
    assert "padding=(1, 1)" in repr(GaussianBlurPool2d(0.66, 2, 1))
    assert m(torch.randn(0, 3, 9, 9)).shape == (0, 3, 5, 5)
    x = torch.randn(2, 3, 9, 9, generator=gen).transpose(-1, -2)  # non-contiguous
    torch.testing.assert_close(m(x), gaussian_blur_pool2d(x.contiguous(), 0.66))
    assert m.double()(x.double()).dtype == torch.float64
    meta = GaussianBlurPool2d(0.66).to("meta")
    assert meta.filter.is_meta
    leaf = torch.randn(1, 2, 7, 7, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: gaussian_blur_pool2d(t, 0.5), (leaf,))


@pytest.mark.parametrize("ctor,exc,match", [
    (lambda: GaussianBlurPool2d(0.0), ValueError,
     r"GaussianBlurPool2d: sigma=0.0 must be a real number > 0"),
    (lambda: GaussianBlurPool2d(-1), ValueError, r"sigma=-1 must be a real number > 0"),
    (lambda: GaussianBlurPool2d("1"), TypeError, r"sigma='1' must be a real number"),
    (lambda: GaussianBlurPool2d(0.66, stride=0), ValueError, r"stride=0 must be .* >= 1"),
    (lambda: GaussianBlurPool2d(0.66, padding=-1), ValueError, r"padding=-1 must be .* >= 0"),
    (lambda: GaussianBlurPool2d(0.66, stride=1.5), TypeError,
     r"stride=1.5 must be an integer or a pair"),
    (lambda: DiskMask(0), ValueError, r"DiskMask: size=0 must be an integer >= 1"),
    (lambda: DiskMask(True), TypeError, r"DiskMask: size=True must be an integer"),
    (lambda: DiskMask(9, margin=150), ValueError, r"margin=150 must be a real number in "
                                                  r"\[0, 100\]; a percentage of the radius"),
    (lambda: DiskMask(9, sigma=0), ValueError, r"DiskMask: sigma=0 must be a real number > 0"),
])
def test_bad_arguments(ctor, exc, match):
    with pytest.raises(exc, match=match):
        ctor()


def test_bad_inputs(gen):
    with pytest.raises(ValueError, match=r"GaussianBlurPool2d: x must be 4-D or 5-D"):
        GaussianBlurPool2d(0.66)(torch.randn(3, 9, 9, generator=gen))
    with pytest.raises(ValueError, match=r"5x5 filter does not fit the padded input 1\+2\*2"):
        GaussianBlurPool2d(0.66, padding=2)(torch.randn(1, 1, 1, 0))
    with pytest.raises(TypeError, match=r"dtype torch.int64.*floating-point.*x\.float\(\)"):
        gaussian_blur_pool2d(torch.ones(1, 1, 5, 5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"DiskMask expects 9x9 spatial dims; got shape "
                                         r"\(1, 2, 8, 8\) \(built for size=9\)"):
        DiskMask(9)(torch.randn(1, 2, 8, 8, generator=gen))
    with pytest.raises(ValueError, match=r"disk_mask2d expects square spatial dims"):
        disk_mask2d(torch.randn(1, 2, 8, 9, generator=gen))


def test_disk_mask_formula(gen):
    """escnn's build_mask: 1 where the squared distance r <= t = (c - margin/100 c)^2, else
    exp((t - r) / sigma^2)."""
    for size, margin, sigma in ((9, 0.0, 2.0), (10, 20.0, 1.0), (29, 5.0, 2.0), (1, 0.0, 2.0)):
        c = (size - 1) / 2
        t = (c - margin / 100 * c) ** 2
        ref = torch.tensor([[1.0 if (i - c) ** 2 + (j - c) ** 2 <= t else
                             math.exp((t - (i - c) ** 2 - (j - c) ** 2) / sigma ** 2)
                             for j in range(size)] for i in range(size)], dtype=torch.float64)
        torch.testing.assert_close(disk_mask_weights(size, margin, sigma, dtype=torch.float64),
                                   ref, rtol=0, atol=1e-15)
    m = DiskMask(9, margin=10.0)
    assert m.state_dict() == {} and repr(m) == "DiskMask(9, margin=10)"
    x = torch.randn(2, 3, 4, 9, 9, generator=gen)
    torch.testing.assert_close(m(x), disk_mask2d(x, 10.0))
    assert m(torch.randn(0, 3, 9, 9)).shape == (0, 3, 9, 9)
    leaf = torch.randn(1, 2, 5, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: disk_mask2d(t, 5.0), (leaf,))


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 3), st.integers(0, 4), st.integers(0, 3), st.floats(0.1, 1.2),
       st.integers(1, 3), st.integers(0, 2), st.booleans())
def test_shape_formula_property(b, extra_h, extra_w, sigma, stride, padding, five_d):
    """``H' = floor((H + 2 padding - k) / stride) + 1`` over random sizes, strides, paddings."""
    k = gaussian_filter_size(sigma)
    h, w = max(k - 2 * padding, 1) + extra_h, max(k - 2 * padding, 1) + extra_w
    shape = (b, 2, 3, h, w) if five_d else (b, 2, h, w)
    y = gaussian_blur_pool2d(torch.randn(shape), sigma, stride, padding)
    assert y.shape == (*shape[:-2], (h + 2 * padding - k) // stride + 1,
                       (w + 2 * padding - k) // stride + 1)


def test_float32_modules_on_float64_inputs_equal_their_functional_twins(gen):
    """A float32 module (the default) on a float64 input computes with its filter or mask
    built in float64, as the functional twin does (it had the float32 values widened: 3e-8
    off); the module's own buffer stays float32, and a float32 input uses it as it is. The
    control: the float32 filter widened is not the float64 one."""
    from equilayers import functional as EF
    from equilayers.nn import BallMask, GaussianBlurPool3d

    x = torch.randn(2, 3, 9, 9, generator=gen, dtype=torch.float64)
    v = torch.randn(2, 2, 9, 9, 9, generator=gen, dtype=torch.float64)
    pairs = [(GaussianBlurPool2d(0.66), EF.gaussian_blur_pool2d(x, 0.66), x),
             (GaussianBlurPool3d(0.66), EF.gaussian_blur_pool3d(v, 0.66), v),
             (DiskMask(9, margin=10.0), EF.disk_mask2d(x, margin=10.0), x),
             (BallMask(9, margin=10.0), EF.ball_mask3d(v, margin=10.0), v)]
    for module, want, inp in pairs:
        torch.testing.assert_close(module(inp), want, rtol=0, atol=1e-15)
        assert next(iter(module.buffers())).dtype == torch.float32
    blur = GaussianBlurPool2d(0.66)
    torch.testing.assert_close(blur(x.float()), EF.gaussian_blur_pool2d(x.float(), 0.66),
                               rtol=0, atol=0)
    widened = blur.filter.double()
    assert (widened - gaussian_filter2d(0.66, dtype=torch.float64)).abs().max() > 1e-10


def test_the_arguments_a_module_built_its_buffers_from_cannot_be_reassigned(gen):
    """``g.sigma = 1.5`` kept blurring with the first sigma (error 0 against sigma 0.66, 0.85
    against 1.5) while the repr showed 1.5, and a later ``.double()`` failed deep in torch;
    now the assignment raises, naming the fix. Other attributes stay assignable (control)."""
    from equilayers.nn import (
        BlurPool2d,
        BlurUpsample2d,
        GaussianBlurPool3d,
        MaxBlurPool2d,
        Restrict,
    )

    g = GaussianBlurPool2d(0.66)
    with pytest.raises(AttributeError, match=r"GaussianBlurPool2d.sigma is fixed at "
                                             r"construction.*new GaussianBlurPool2d with "
                                             r"sigma=1.5"):
        g.sigma = 1.5
    for module, name, value in ((GaussianBlurPool3d(), "truncate", 4.0), (BlurPool2d(),
                                "kernel_size", 5), (MaxBlurPool2d(2), "blur_size", 5),
                                (BlurUpsample2d(), "blur_size", 5), (DiskMask(9), "size", 7),
                                (Restrict("d4", "c4"), "subgroup", "d1")):
        with pytest.raises(AttributeError, match=f"{type(module).__name__}.{name} is fixed"):
            setattr(module, name, value)
    g.stride = (1, 1)  # read by forward each call: free to change
    x = torch.randn(1, 1, 9, 9, generator=gen)
    assert g(x).shape == (1, 1, 9, 9)
    assert copy.deepcopy(g).double()(x.double()).shape == (1, 1, 9, 9)


@pytest.mark.parametrize("dims", [2, 3])
def test_an_int_padding_or_stride_set_after_construction_works(dims, gen):
    """The constructor takes ints and stores pairs (triples): ``m.padding = 0`` afterwards,
    as on torch's pools, failed deep in the forward ("'int' object is not subscriptable").
    The reference: a module built with that padding and stride."""
    from equilayers.nn import GaussianBlurPool3d

    cls = GaussianBlurPool2d if dims == 2 else GaussianBlurPool3d
    x = torch.randn(1, 2, *(9,) * dims, generator=gen)
    m = cls(0.66)
    m.padding, m.stride = 0, 1
    torch.testing.assert_close(m(x), cls(0.66, stride=1, padding=0)(x), rtol=0, atol=0)
    assert m(x).shape[-1] == 9 - (m.kernel_size - 1)  # the control: the padding changed
