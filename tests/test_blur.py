"""The blur pools (``BlurPool1d/2d/3d``, ``MaxBlurPool2d``, ``BlurConv2d``): the binomial
filters and the reference semantics, shapes of every rank, the module's contract (functional
twin, dtype and device, repr, gradcheck, state_dict, meta device, compile). Bad and small
inputs: ``test_blur_inputs.py``; shift equivariance: ``test_blur_shifts.py``;
``BlurUpsample2d``: ``test_blur_upsample.py``."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import equilayers.functional as EF
from equilayers.nn import (
    BlurConv2d,
    BlurPool1d,
    BlurPool2d,
    BlurPool3d,
    BlurUpsample2d,
    DiskMask,
    GaussianBlurPool2d,
    MaxBlurPool2d,
)


def _out(n, s):
    return (n - 1) // s + 1


# --- filters and the reference semantics ------------------------------------------------------
@pytest.mark.parametrize("k", range(1, 8))
def test_binomial_coefficients(k):
    f = EF.binomial_filter(k, dtype=torch.float64)
    expected = torch.tensor([math.comb(k - 1, i) for i in range(k)], dtype=torch.float64)
    torch.testing.assert_close(f, expected / expected.sum(), rtol=0, atol=0)
    assert EF.binomial_filter(3).tolist() == [0.25, 0.5, 0.25]


def _naive_blur_pool2d(x, k, s, mode):
    """Straight from the spec: pad (k-1)//2 before, the rest after; correlate; subsample."""
    left = (k - 1) // 2
    right = k - 1 - left
    b, c, h, w = x.shape
    xp = F.pad(x, (left, right, left, right), mode="constant" if mode == "zeros" else mode)
    f1 = EF.binomial_filter(k, dtype=x.dtype)
    f2 = torch.outer(f1, f1)
    out = torch.zeros(b, c, _out(h, s), _out(w, s), dtype=x.dtype)
    for p in range(out.shape[-2]):
        for q in range(out.shape[-1]):
            out[..., p, q] = (xp[..., s * p:s * p + k, s * q:s * q + k] * f2).sum((-2, -1))
    return out


@pytest.mark.parametrize("k,s,mode", [(3, 2, "reflect"), (4, 2, "replicate"), (2, 3, "zeros"),
                                      (5, 2, "circular"), (6, 3, "reflect"), (7, 1, "zeros")])
def test_matches_spec_loop(k, s, mode, gen):
    x = torch.randn(2, 3, 9, 8, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(EF.blur_pool2d(x, k, s, mode), _naive_blur_pool2d(x, k, s, mode))


def test_even_kernel_pads_bottom_right(gen):
    # k=2: out[p] = (x[2p] + x[2p+1]) / 2, so the last output of an odd size uses the padding
    x = torch.arange(5, dtype=torch.float64).reshape(1, 1, 5)
    torch.testing.assert_close(EF.blur_pool1d(x, 2, 2, "replicate"),
                               torch.tensor([[[0.5, 2.5, 4.0]]], dtype=torch.float64))


@pytest.mark.parametrize("s", [1, 2, 3, 5])
def test_kernel_size_one_is_subsampling(s, gen):
    x = torch.randn(2, 3, 11, 10, generator=gen)
    assert torch.equal(EF.blur_pool2d(x, 1, s), x[..., ::s, ::s])
    assert torch.equal(BlurPool1d(kernel_size=1, stride=s)(x), x[..., ::s])
    v = torch.randn(1, 2, 7, 8, 9, generator=gen)
    assert torch.equal(BlurPool3d(kernel_size=1, stride=s)(v), v[..., ::s, ::s, ::s])


def test_max_blur_pool_is_max_then_blur(gen):
    x = torch.randn(2, 3, 13, 12, generator=gen)
    ref = EF.blur_pool2d(F.max_pool2d(x, 3, 1, 1), 5, 3, "replicate")
    torch.testing.assert_close(MaxBlurPool2d(3, 3, 1, blur_size=5,
                                             padding_mode="replicate")(x), ref)


@pytest.mark.parametrize("n", [7, 8, 9, 16, 17, 56, 57])
@pytest.mark.parametrize("k,s,p", [(2, 2, 0), (3, 2, 1), (3, 2, 0), (2, 3, 0), (3, 3, 1)])
def test_max_blur_pool_shape_equals_maxpool(n, k, s, p):
    x = torch.randn(1, 2, n, n + 1)
    # nn.MaxPool2d's positional order (kernel_size, stride, padding), in the module and the
    # functional twin
    assert MaxBlurPool2d(k, s, p)(x).shape == nn.MaxPool2d(k, s, p)(x).shape
    assert EF.max_blur_pool2d(x, k, s, p).shape == F.max_pool2d(x, k, s, p).shape


@pytest.mark.parametrize("k", [2, 3])
def test_max_blur_pool_stride_defaults_to_kernel_size(k):
    x = torch.randn(1, 2, 9, 9)
    assert MaxBlurPool2d(k).stride == nn.MaxPool2d(k).stride == k
    assert MaxBlurPool2d(k)(x).shape == nn.MaxPool2d(k)(x).shape
    assert EF.max_blur_pool2d(x, k).shape == F.max_pool2d(x, k).shape


@pytest.mark.parametrize("k,s,p,d", [(3, 2, 1, 1), (1, 2, 0, 1), (7, 2, 3, 1), (2, 2, 0, 1),
                                     (4, 3, 1, 1), (3, 2, 2, 2)])
@pytest.mark.parametrize("n", [9, 10, 33])
def test_blur_conv_shape_and_weights(k, s, p, d, n, gen):
    conv = nn.Conv2d(4, 6, k, s, p, d)
    blur = BlurConv2d(4, 6, k, s, p, d)
    blur.load_state_dict(conv.state_dict())  # same parameter names
    x = torch.randn(2, 4, n, n, generator=gen)
    assert blur(x).shape == conv(x).shape
    ref = EF.blur_pool2d(F.conv2d(x, conv.weight, conv.bias, 1, p, d), 3, s)
    torch.testing.assert_close(blur(x), ref)


def test_blur_conv_padding_modes_and_groups(gen):
    x = torch.randn(2, 4, 10, 10, generator=gen, dtype=torch.float64)
    for mode in ["zeros", "reflect", "replicate", "circular"]:
        conv = nn.Conv2d(4, 6, 3, 1, 1, groups=2, padding_mode=mode, dtype=torch.float64)
        blur = BlurConv2d(4, 6, 3, 2, 1, groups=2, padding_mode=mode, dtype=torch.float64)
        blur.load_state_dict(conv.state_dict())
        bmode = "circular" if mode == "circular" else "reflect"
        torch.testing.assert_close(blur(x), EF.blur_pool2d(conv(x), 3, 2, bmode))


# --- shapes, ranks ----------------------------------------------------------------------------
def test_shapes_all_ranks(gen):
    assert BlurPool1d()(torch.randn(2, 3, 9)).shape == (2, 3, 5)
    assert BlurPool2d()(torch.randn(2, 3, 9, 8)).shape == (2, 3, 5, 4)
    with pytest.warns(UserWarning, match="BlurPool2d .* not exactly equivariant .* 9x8"):
        assert BlurPool2d()(torch.randn(2, 3, 8, 9, 8)).shape == (2, 3, 8, 5, 4)
    assert BlurPool3d(stride=3)(torch.randn(1, 2, 7, 8, 9)).shape == (1, 2, 3, 3, 3)
    with pytest.warns(UserWarning, match="MaxBlurPool2d .* not exactly equivariant .* 9x9"):
        assert MaxBlurPool2d()(torch.randn(2, 3, 8, 9, 9)).shape == (2, 3, 8, 4, 4)


def test_five_d_blurs_only_space(gen):
    x = torch.randn(2, 3, 8, 9, 9, generator=gen)
    y = BlurPool2d()(x)
    for f in range(8):
        torch.testing.assert_close(y[:, :, f], EF.blur_pool2d(x[:, :, f]))


def test_filter_is_broadcast_not_copied():
    m = BlurPool2d(channels=64)
    assert m.filter.shape == (3,)
    assert "filter" not in m.state_dict()  # derived: non-persistent


def test_non_contiguous_input(gen):
    x = torch.randn(2, 9, 10, 3, generator=gen).permute(0, 3, 1, 2)
    assert not x.is_contiguous()
    torch.testing.assert_close(BlurPool2d()(x), BlurPool2d()(x.contiguous()))
    xc = x.contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(MaxBlurPool2d()(xc), MaxBlurPool2d()(x.contiguous()))


def test_module_equals_functional(gen):
    x = torch.randn(2, 3, 11, 12, generator=gen)
    torch.testing.assert_close(BlurPool2d(3, 5, 3, "zeros")(x), EF.blur_pool2d(x, 5, 3, "zeros"))
    torch.testing.assert_close(BlurPool1d(None, 4, 2)(x), EF.blur_pool1d(x, 4, 2))
    torch.testing.assert_close(MaxBlurPool2d(2, blur_size=4)(x),
                               EF.max_blur_pool2d(x, 2, blur_size=4))
    torch.testing.assert_close(BlurUpsample2d(3, 5)(x), EF.blur_upsample2d(x, 3, 5))


def test_dtype_and_device_move(gen):
    m = BlurPool2d().double()
    assert m.filter.dtype == torch.float64
    x = torch.randn(1, 1, 8, 8, generator=gen, dtype=torch.float64)
    assert m(x).dtype == torch.float64
    assert BlurPool2d()(x.half()).dtype == torch.float16


def test_repr():
    assert repr(BlurPool2d()) == "BlurPool2d(kernel_size=3, stride=2)"
    assert "padding_mode='circular'" in repr(BlurPool2d(4, 5, 3, "circular"))
    assert repr(MaxBlurPool2d(3, 2, padding=1)) == (
        "MaxBlurPool2d(kernel_size=3, stride=2, padding=1)")
    assert "blur_size=5" in repr(BlurConv2d(3, 4, 3, blur_size=5))


# --- autograd, state, compile -----------------------------------------------------------------
def test_gradcheck(gen):
    x = torch.randn(1, 2, 6, 7, generator=gen, dtype=torch.float64, requires_grad=True)
    for fn in [lambda v: EF.blur_pool2d(v, 4, 2, "reflect"),
               lambda v: EF.blur_pool1d(v, 3, 3, "circular"),
               lambda v: EF.max_blur_pool2d(v, 2, 2, blur_size=3),
               lambda v: EF.blur_upsample2d(v, 2, 3)]:
        assert torch.autograd.gradcheck(fn, (x,))
    v = torch.randn(1, 1, 4, 5, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: EF.blur_pool3d(t, 3, 2, "zeros"), (v,))
    conv = BlurConv2d(2, 3, 3, padding=1, dtype=torch.float64)
    assert torch.autograd.gradcheck(conv, (x,))


def test_state_dict_round_trip(gen):
    a = BlurConv2d(3, 4, 3, padding=1, blur_size=5)
    b = BlurConv2d(3, 4, 3, padding=1, blur_size=5)
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, 3, 9, 9, generator=gen)
    torch.testing.assert_close(a(x), b(x))
    p = BlurPool2d(3, 5)
    assert p.state_dict() == {}
    BlurPool2d(3, 5).load_state_dict(p.state_dict())


def test_meta_device_and_to_empty():
    m = BlurPool2d().to("meta")
    m.to_empty(device="cpu")
    m.reset_parameters()
    assert m.filter.tolist() == [0.25, 0.5, 0.25]


_FIXED = [(BlurPool1d, {}, (2, 3, 9)), (BlurPool2d, {}, (2, 3, 9, 9)),
          (BlurPool3d, {}, (1, 2, 5, 5, 5)), (MaxBlurPool2d, {}, (2, 3, 9, 9)),
          (BlurUpsample2d, {}, (1, 2, 4, 5)), (GaussianBlurPool2d, {}, (2, 3, 9, 9)),
          (DiskMask, {"size": 9}, (2, 3, 9, 9))]


@pytest.mark.parametrize("cls,kw,shape", _FIXED, ids=[c.__name__ for c, _, _ in _FIXED])
def test_device_and_dtype_place_the_buffers(cls, kw, shape, gen):
    """As in ``torch.nn``, ``device=`` and ``dtype=`` place the fixed buffers: in float64 they
    hold the float64 values and the module computes what the converted default one does; on
    the meta device nothing is filled until ``to_empty`` moves them off, which fills them."""
    ref = cls(**kw)
    m64 = cls(**kw, dtype=torch.float64)
    want = dict(ref.named_buffers())
    got = dict(m64.named_buffers())
    assert want and set(got) == set(want)
    for name, b in got.items():
        assert b.dtype == torch.float64, name
        torch.testing.assert_close(b.float(), want[name], msg=name)
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(m64(x), ref.double()(x))
    meta = cls(**kw, device="meta", dtype=torch.float64)
    assert all(b.is_meta and b.dtype == torch.float64 for b in meta.buffers())
    meta.to_empty(device="cpu")
    for name, b in meta.named_buffers():
        torch.testing.assert_close(b, got[name], msg=name)
    with pytest.raises(TypeError, match="dtype=torch.int64 must be a floating-point"):
        cls(**kw, dtype=torch.int64)


def test_compile_fullgraph(gen):
    m = nn.Sequential(BlurConv2d(3, 4, 3, padding=1), MaxBlurPool2d(), BlurPool2d(channels=4))
    x = torch.randn(2, 3, 16, 16, generator=gen)
    compiled = torch.compile(m, fullgraph=True, backend="eager")
    torch.testing.assert_close(compiled(x), m(x))
