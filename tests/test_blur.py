import contextlib
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st
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

MODES = ["reflect", "replicate", "zeros", "circular"]


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


# --- bad input ----------------------------------------------------------------------------------
@pytest.mark.parametrize("kw,match", [
    ({"kernel_size": 0}, "kernel_size=0"), ({"kernel_size": 8}, "kernel_size=8"),
    ({"stride": 0}, "stride=0"), ({"padding_mode": "mirror"}, "padding_mode='mirror'"),
    ({"channels": 0}, "channels=0"),
])
def test_bad_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        BlurPool2d(**kw)
    if "channels" not in kw:
        with pytest.raises(ValueError, match=match):
            EF.blur_pool2d(torch.zeros(1, 1, 8, 8), **kw)


def _blur_by_axis(x, k, s, modes):
    """The blur pool written out: each axis padded in its own mode, then the 2-D binomial."""
    left, right = (k - 1) // 2, (k - 1) - (k - 1) // 2
    x = F.pad(x, (left, right, 0, 0), mode=modes[1])
    x = F.pad(x, (0, 0, left, right), mode=modes[0])
    f = EF.binomial_filter(k, dtype=x.dtype)
    w = torch.outer(f, f)[None, None]
    y = F.conv2d(x.flatten(0, 1)[:, None], w, stride=s)
    return y.view(*x.shape[:2], *y.shape[-2:])


def _every_path(name, x, **kw):
    """``[(path, output, input gradient)]`` of op ``name``: the reference and each CPU fast
    path forced."""
    from equilayers import kernels
    from equilayers.kernels import _registry

    out = []
    paths = [(p.name, kernels.use_fast_path(p.name)) for p in _registry.get_op(name).fast["cpu"]]
    for path, ctx in [("reference", kernels.use_reference()), *paths]:
        xg = x.detach().requires_grad_(True)
        with ctx:
            y = kernels.dispatch(name, xg, **kw)
        (g,) = torch.autograd.grad(y, xg, torch.ones_like(y))
        out.append((path, y, g))
    return out


@pytest.mark.parametrize("shape,k,modes", [
    ((2, 3, 1, 1), 3, ("replicate", "replicate")), ((2, 3, 2, 7), 5, ("replicate", "reflect")),
    ((2, 3, 6, 1), 4, ("reflect", "replicate")), ((1, 2, 3, 3), 7, ("replicate", "replicate")),
    ((1, 2, 5, 4), 5, ("reflect", "reflect"))])
def test_reflect_on_a_too_short_axis_is_replicate(gen, shape, k, modes):
    """The rule of the docstrings: an axis of size <= (k-1) - (k-1)//2 (the larger pad) is
    padded with replicate instead of reflect (which F.pad refuses there), on every path."""
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    expected = _blur_by_axis(x, k, 2, modes)
    for path, y, g in _every_path("blur_pool2d", x, kernel_size=k, padding_mode="reflect"):
        torch.testing.assert_close(y, expected, msg=path)
        _, _, g_ref = _every_path("blur_pool2d", x, kernel_size=k)[0]
        torch.testing.assert_close(g, g_ref, msg=path)
    # max_blur_pool2d's max-pooled map (kernel_size=1: the input itself) falls back the same
    for path, y, _ in _every_path("max_blur_pool2d", x, kernel_size=1, stride=2, blur_size=k):
        torch.testing.assert_close(y, expected, msg=path)
    assert torch.equal(EF.blur_pool2d(torch.ones(1, 1, 1, 1) * 3, 3), torch.ones(1, 1, 1, 1) * 3)


def test_small_inputs_work_where_the_torch_layers_do(gen):
    """The drop-ins take every input size their torch originals take (the audit's cases)."""
    for n in (1, 2, 3):
        x = torch.randn(1, 3, n, n, generator=gen)
        assert MaxBlurPool2d(3, 2, 1)(x).shape == nn.MaxPool2d(3, 2, 1)(x).shape
        if n >= 2:
            assert MaxBlurPool2d(2)(x).shape == nn.MaxPool2d(2)(x).shape
    # a 2x2 input max-pools to a single pixel, which blurs to itself
    x = torch.randn(1, 3, 2, 2, generator=gen)
    torch.testing.assert_close(MaxBlurPool2d(2)(x), nn.MaxPool2d(2)(x))
    conv = nn.Conv2d(8, 8, 3, 2, 1)
    x = torch.randn(1, 8, 1, 1, generator=gen)
    for fold in (None, True, False):
        blur = BlurConv2d(8, 8, 3, 2, 1, fold=fold)
        blur.load_state_dict(conv.state_dict())
        torch.testing.assert_close(blur(x), conv(x))  # a 1x1 map: the blur is the identity


def test_max_blur_circular_size_check_reads_the_padded_max_pooled_map(gen):
    """A circular blur needs every size of the map it blurs >= its right pad: that map is the
    stride-1 max pool's, padding included. A 2x2 input max-pooled by 3 with padding 1 is 2x2,
    which a 5-tap circular blur (pads 2 after) takes; by 2 without padding it is 1x1, refused
    with the ValueError (not F.pad's RuntimeError)."""
    from equilayers import kernels

    x = torch.randn(1, 2, 2, 2, generator=gen, dtype=torch.float64)
    y = EF.max_blur_pool2d(x, 3, 2, 1, blur_size=5, padding_mode="circular")
    with kernels.use_reference():
        ref = EF.blur_pool2d(F.max_pool2d(x, 3, 1, 1), 5, 2, "circular")
    torch.testing.assert_close(y, ref)
    with pytest.raises(ValueError, match="spatial size >= 2; got spatial shape \\(1, 1\\)"):
        EF.max_blur_pool2d(x, 2, 2, 0, blur_size=5, padding_mode="circular")


@pytest.mark.parametrize("n,k", [(3, 7), (1, 3), (2, 5)])
def test_fallback_keeps_flips_and_rot90(gen, n, k):
    x = torch.randn(1, 2, n, n, generator=gen, dtype=torch.float64)
    s = max(n - 1, 1)  # (n - 1) % s == 0: the pool tiles the input from both ends
    y = EF.blur_pool2d(x, k, s)
    for t in (lambda v: v.flip(-1), lambda v: v.flip(-2), lambda v: v.rot90(1, (-2, -1))):
        torch.testing.assert_close(EF.blur_pool2d(t(x), k, s), t(y))


def test_square_tuple_strides_and_unbatched_inputs_as_torch(gen):
    conv = BlurConv2d(3, 4, 3, stride=(2, 2), padding=1)
    assert conv.stride == 2 and BlurConv2d(3, 4, 3, stride=[3, 3]).stride == 3
    x = torch.randn(2, 3, 9, 9, generator=gen)
    torch.testing.assert_close(EF.blur_conv2d(x, conv.weight, None, (2, 2), 1),
                               EF.blur_conv2d(x, conv.weight, None, 2, 1))
    with pytest.raises(ValueError, match=r"stride=\(2, 1\) must be an integer or a pair of equal"):
        BlurConv2d(3, 4, 3, stride=(2, 1))
    with pytest.raises(ValueError, match=r"stride=\(1, 2\)"):
        EF.blur_conv2d(x, conv.weight, stride=(1, 2))
    # unbatched (C, H, W), as nn.Conv2d and nn.MaxPool2d take it: the batched result's sample
    x3 = x[0]
    torch.testing.assert_close(conv(x3), conv(x3[None])[0])
    assert conv(x3).shape == nn.Conv2d(3, 4, 3, 2, 1)(x3).shape == (4, 5, 5)
    for pool in (MaxBlurPool2d(), MaxBlurPool2d(3, 2, 1)):
        torch.testing.assert_close(pool(x3), pool(x3[None])[0])
        assert pool(x3).shape == nn.MaxPool2d(pool.kernel_size, 2, pool.padding)(x3).shape
    torch.testing.assert_close(EF.max_blur_pool2d(x3, 2), EF.max_blur_pool2d(x3[None], 2)[0])
    assert EF.blur_conv2d_path(x3, conv.weight, padding=1) == EF.blur_conv2d_path(
        x3[None], conv.weight, padding=1)
    with pytest.raises(ValueError, match=r"3-D or 4-D .*got a 2-D"):
        conv(x3[0])
    with pytest.raises(ValueError, match=r"3-D or 4-D or 5-D .*got a 2-D"):
        MaxBlurPool2d()(x3[0])


def test_bad_inputs():
    with pytest.raises(ValueError, match="with 4 channels"):
        BlurPool2d(channels=3)(torch.zeros(1, 4, 8, 8))
    # an unbatched (C, H, W) map: the channels are dim 0
    assert BlurPool2d(channels=3)(torch.zeros(3, 8, 8)).shape == (3, 4, 4)
    with pytest.raises(ValueError, match="with 4 channels"):
        BlurPool2d(channels=3)(torch.zeros(4, 3, 8))
    with pytest.raises(ValueError, match="spatial size >= 2"):
        BlurPool2d(kernel_size=5, padding_mode="circular")(torch.zeros(1, 1, 1, 8))
    with pytest.raises(ValueError, match="at least 3-D"):
        BlurPool2d()(torch.zeros(8, 8))
    with pytest.raises(TypeError, match="floating-point"):
        BlurPool2d()(torch.zeros(1, 1, 8, 8, dtype=torch.long))
    # float8 is floating point to torch but no op computes in it: named, not a deep torch error
    # (it reached the reference and failed inside F.pad); float16 in the same position runs
    with pytest.raises(TypeError, match="float8_e4m3fn.*x.float()"):
        BlurPool2d()(torch.zeros(1, 1, 8, 8).to(torch.float8_e4m3fn))
    assert BlurPool2d()(torch.zeros(1, 1, 8, 8, dtype=torch.float16)).dtype == torch.float16
    with pytest.raises(ValueError, match="blur_size=8"):
        MaxBlurPool2d(blur_size=8)
    with pytest.raises(ValueError, match="padding=2"):
        MaxBlurPool2d(2, padding=2)
    with pytest.raises(ValueError, match="blur_padding_mode='x'"):
        BlurConv2d(3, 4, 3, blur_padding_mode="x")
    with pytest.raises(ValueError, match="scale_factor=0"):
        BlurUpsample2d(0)


# --- equivariance properties ------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(h=st.integers(4, 17), w=st.integers(4, 17), s=st.integers(1, 4), c=st.integers(1, 4),
       k=st.integers(1, 7), t=st.tuples(st.integers(-3, 3), st.integers(-3, 3)),
       dtype=st.sampled_from([torch.float32, torch.float64]), seed=st.integers(0, 2**16))
def test_circular_shift_by_stride_multiples_is_exact(h, w, s, c, k, t, dtype, seed):
    h, w = h - h % s or s, w - w % s or s  # circular shifts commute with subsampling iff s | N
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, c, h, w, generator=gen, dtype=dtype)
    shift = (s * t[0], s * t[1])
    y = EF.blur_pool2d(x, k, s, "circular")
    ys = EF.blur_pool2d(torch.roll(x, shift, (-2, -1)), k, s, "circular")
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(ys, torch.roll(y, t, (-2, -1)), rtol=tol, atol=tol)


def _shift_error(f, x, shifts):
    """Mean relative change of the globally pooled output under circular shifts."""
    base = f(x).mean((-2, -1))
    errs = [((f(torch.roll(x, d, (-2, -1))).mean((-2, -1)) - base).norm() / base.norm())
            for d in shifts]
    return float(torch.stack(errs).mean())


@settings(max_examples=15, deadline=None)
@given(n=st.integers(6, 12), mode=st.sampled_from(MODES), k=st.integers(3, 7),
       seed=st.integers(0, 2**16))
def test_one_pixel_shift_error_below_maxpool(n, mode, k, seed):
    # reflect padding on inputs of 12-16 pixels: the border's share of the pooled mean moves
    # about as much as max pool's aliasing does (blur / max error up to 1.015 at n=6-7 and
    # 0.976 at n=8, over 60-300 seeds; <= 0.88 from n=9 on; the other modes <= 0.82 from
    # n=6). The draw n=6, reflect, k=3, seed=326 (0.0564 against 0.0549) failed the test
    assume(mode != "reflect" or n >= 9)
    gen = torch.Generator().manual_seed(seed)
    conv = nn.Conv2d(3, 8, 3, padding=1, padding_mode="circular", dtype=torch.float64)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen, dtype=torch.float64))
    x = torch.randn(4, 3, 2 * n, 2 * n, generator=gen, dtype=torch.float64)
    shifts = [(1, 0), (0, 1), (1, 1)]
    with torch.no_grad():
        e_max = _shift_error(lambda v: F.relu(nn.MaxPool2d(2)(conv(v))), x, shifts)
        pool = MaxBlurPool2d(2, blur_size=k, padding_mode=mode)
        e_blur = _shift_error(lambda v: F.relu(pool(conv(v))), x, shifts)
    assert e_blur < e_max, (e_blur, e_max)


def test_blur_upsample_mean_and_shift(gen):
    x = torch.randn(2, 3, 6, 7, generator=gen, dtype=torch.float64)
    for s, k in [(2, 3), (3, 5), (2, 4), (2, 1), (3, 1)]:  # blur_size=1: scaled by s**2 too
        up = BlurUpsample2d(s, k, "circular")
        y = up(x)
        assert y.shape == (2, 3, 6 * s, 7 * s)
        torch.testing.assert_close(y.mean((-2, -1)), x.mean((-2, -1)))
        torch.testing.assert_close(up(torch.roll(x, (1, 2), (-2, -1))),
                                   torch.roll(y, (s, 2 * s), (-2, -1)))
    # scale 2, blur 3: the input samples stay, the new ones interpolate linearly
    y = BlurUpsample2d(2, 3)(x)
    torch.testing.assert_close(y[..., ::2, ::2], x)
    torch.testing.assert_close(y[..., 1:-1:2, ::2], (x[..., :-1, :] + x[..., 1:, :]) / 2)


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


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("stride", [2, 3])
def test_circular_shift_needs_the_stride_to_divide_the_size(gen, dims, stride):
    # the docstrings' condition, both ways: exact where the stride divides the size (12), not
    # at 7 (the samples do not tile the torus; measured 0.3-1.3), the same pool and shift
    cls = {1: BlurPool1d, 2: BlurPool2d, 3: BlurPool3d}[dims]
    axes = tuple(range(-dims, 0))
    pool = cls(kernel_size=3, stride=stride, padding_mode="circular")
    for n, exact in [(12, True), (7, False)]:
        x = torch.randn(2, 3, *(n,) * dims, generator=gen, dtype=torch.float64)
        lhs = pool(torch.roll(x, (stride,) * dims, axes))
        rhs = torch.roll(pool(x), (1,) * dims, axes)
        err = ((lhs - rhs).norm() / rhs.norm()).item()
        assert (err < 1e-14) if exact else (err > 0.1), (n, err)


@pytest.mark.parametrize("dims", [1, 3])
def test_blur_pool_1d_3d_circular_shift_equivariance(gen, dims):
    # the shared table's shift cases move (H, W) only; 1-D and 3-D pools are checked here,
    # over every spatial dim, with a zero-padded negative control
    cls = {1: BlurPool1d, 3: BlurPool3d}[dims]
    size = (12,) * dims
    x = torch.randn(2, 3, *size, generator=gen, dtype=torch.float64)
    axes = tuple(range(-dims, 0))
    shift, stride = (4, 2, 6)[:dims], 2
    for mode, exact in [("circular", True), ("zeros", False)]:
        pool = cls(kernel_size=3, stride=stride, padding_mode=mode)
        lhs = pool(torch.roll(x, shift, axes))
        rhs = torch.roll(pool(x), tuple(s // stride for s in shift), axes)
        err = ((lhs - rhs).norm() / rhs.norm()).item()
        assert (err < 1e-14) if exact else (err > 1e-3), (mode, err)


# --- transposed blur upsampling: the partner of an even blur pool -----------------------------
@pytest.mark.parametrize("mode", ["zeros", "circular"])
@pytest.mark.parametrize("s", [1, 2, 3])
@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_blur_upsample_transposed_is_the_pools_transpose(gen, mode, s, k):
    """<pool(a), b> == <a, up(b)> / s**2: the upsampling is the pool's adjoint, at every
    scale (s = 1 with an even blur too: the pads swapped) and blur size (1: the adjoint of
    a[..., ::s, ::s], scaled by s**2)."""
    a = torch.randn(2, 3, 6 * s, 5 * s, generator=gen, dtype=torch.float64)
    b = torch.randn(2, 3, 6, 5, generator=gen, dtype=torch.float64)
    lhs = (EF.blur_pool2d(a, k, s, mode) * b).sum()
    rhs = (a * BlurUpsample2d(s, k, mode, transposed=True)(b)).sum() / s**2
    torch.testing.assert_close(lhs, rhs)
    if k % 2:  # odd sizes: the same as the default placement
        torch.testing.assert_close(EF.blur_upsample2d(b, s, k, mode, transposed=True),
                                   EF.blur_upsample2d(b, s, k, mode))


def test_blur_upsample_transposed_size2_is_nearest(gen):
    x = torch.randn(2, 3, 4, 5, generator=gen, dtype=torch.float64)
    near = x.repeat_interleave(2, -1).repeat_interleave(2, -2)
    for mode in ("zeros", "circular"):
        torch.testing.assert_close(EF.blur_upsample2d(x, 2, 2, mode, transposed=True), near)


@pytest.mark.parametrize("mode", ["zeros", "circular"])
def test_even_blur_pool_and_transposed_upsample_commute_with_d4_on_even_sizes(gen, mode):
    """BlurPool2d(4) then BlurUpsample2d(2, 4, transposed=True) on even sizes: exact under
    rot90 and flips, on images and on regular d4 fields (the odd blur is the control)."""
    from equilayers.testing import equivariance_error

    for shape in [(2, 3, 12, 12), (2, 3, 8, 12, 12)]:
        x = torch.randn(shape, generator=gen, dtype=torch.float64)
        for k, exact in [(4, True), (2, True), (3, False)]:
            pool, up = BlurPool2d(kernel_size=k, padding_mode=mode), BlurUpsample2d(
                2, k, mode, transposed=True)
            warns = not exact and len(shape) == 5  # the pool warns on group maps only
            with (pytest.warns(UserWarning, match="Blur(Pool|Upsample)2d.* not exactly equivariant")
                  if warns else contextlib.nullcontext()):
                err = equivariance_error(lambda v, p=pool, u=up: u(p(v)), x, "d4")
            assert (err < 1e-12) if exact else (err > 1e-3), (shape, k, err)


def test_blur_upsample_transposed_needs_zeros_or_circular():
    with pytest.raises(ValueError, match="transposed=True .* padding_mode='reflect'"):
        BlurUpsample2d(2, 4, transposed=True)
    with pytest.raises(ValueError, match="padding_mode='replicate'"):
        EF.blur_upsample2d(torch.zeros(1, 1, 2, 2), 2, 4, "replicate", transposed=True)
    assert "transposed=True" in repr(BlurUpsample2d(2, 4, "zeros", transposed=True))


def test_blur_upsample_warns_on_group_maps_where_it_cannot_be_exact(gen):
    """BlurUpsample2d on a group map warns once per module when its setting is off centre at
    every size (everything but no upsampling with an odd blur, or scale 2, transposed, even
    blur), and only then: for every scale 1-3, blur 1-4, transposed or not, padding mode, at
    sizes 6 and 7, the warning agrees with the measured p4 error (0.9 where it breaks). On
    images it makes no group claim and stays quiet."""
    import itertools

    from equilayers.testing import equivariance_error

    for s, b, transposed, mode in itertools.product((1, 2, 3), (1, 2, 3, 4), (False, True),
                                                    ("zeros", "circular", "reflect")):
        if transposed and mode == "reflect":
            continue
        for n in (6, 7):
            up = BlurUpsample2d(s, b, mode, transposed=transposed)
            x = torch.randn(1, 2, 4, n, n, generator=gen, dtype=torch.float64)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                up(x)
                up(x)
            assert len(caught) <= 1 and all(w.filename == __file__ for w in caught)
            error = equivariance_error(up, x, "p4")
            assert bool(caught) == (error > 1e-9), (s, b, transposed, mode, n, error)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            BlurUpsample2d(s, b, mode, transposed=transposed)(x[:, :, 0])  # images: quiet
