"""The blur pools on bad and small inputs: argument checks, reflect padding on a too short
axis (replicate, on every path), sizes torch's layers take, the circular size check, tuple
strides and unbatched inputs as torch takes them, input checks."""

import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import equilayers.functional as EF
import equilayers.nn as enn
from equilayers.nn import BlurConv2d, BlurPool2d, BlurUpsample2d, MaxBlurPool2d


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


def test_max_blur_pool_takes_nn_max_pool2ds_equal_pairs():
    """A drop-in for nn.MaxPool2d: kernel_size=(2, 2) raised 'must be an integer'; an unequal
    pair is refused with the fix."""
    from equilayers.nn import MaxBlurPool2d

    assert repr(MaxBlurPool2d((2, 2))) == repr(MaxBlurPool2d(2))
    assert repr(MaxBlurPool2d(3, (2, 2), (1, 1))) == repr(MaxBlurPool2d(3, 2, 1))
    with pytest.raises(ValueError, match=r"kernel_size=\(2, 3\) must be one int or an equal "
                                         r"pair.*keep nn.MaxPool2d"):
        MaxBlurPool2d((2, 3))


def test_equal_pairs_and_peer_padding_names(gen):
    """kornia's ``BlurPool2D(kernel_size=(3, 3))`` and ``F.max_pool2d``'s pairs: the modules
    took equal pairs where their functional twins refused them (or the reverse); unequal
    pairs are refused by name. antialiased-cnns' ``pad_type`` names get the torch name."""
    import equilayers.functional as EF
    from equilayers.nn import BlurPool2d, MaxBlurPool2d

    x = torch.randn(1, 2, 9, 9, generator=gen)
    torch.testing.assert_close(EF.max_blur_pool2d(x, (2, 2), [2, 2], (0, 0)),
                               EF.max_blur_pool2d(x, 2, 2, 0), rtol=0, atol=0)
    torch.testing.assert_close(EF.blur_pool2d(x, (3, 3), (2, 2)), EF.blur_pool2d(x, 3, 2),
                               rtol=0, atol=0)
    m = BlurPool2d(kernel_size=(5, 5), stride=[2, 2])
    assert (m.kernel_size, m.stride) == (5, 2)
    torch.testing.assert_close(m(x), EF.blur_pool2d(x, 5, 2), rtol=0, atol=0)
    for make in (lambda: EF.blur_pool2d(x, (3, 2)), lambda: BlurPool2d(kernel_size=(3, 1)),
                 lambda: EF.max_blur_pool2d(x, 2, (2, 1)), lambda: MaxBlurPool2d((2, 3))):
        with pytest.raises(ValueError, match=r"must be one int or an equal pair"):
            make()
    for peer, ours in (("zero", "zeros"), ("refl", "reflect"), ("repl", "replicate")):
        with pytest.raises(ValueError, match=rf"padding_mode='{peer}' must be one of .*"
                                             rf"use padding_mode='{ours}'"):
            BlurPool2d(2, padding_mode=peer)


@pytest.mark.parametrize("nd", [1, 3])
def test_the_1d_and_3d_blur_pools_take_equal_tuples_as_blur_pool2d_takes_pairs(nd, gen):
    """BlurPool3d's docstring promised BlurPool2d's arguments, but ``kernel_size=(3, 3, 3)``
    and ``stride=(2, 2, 2)`` were refused ("must be an integer"); 1-D takes ``(k,)`` as
    ``nn.AvgPool1d``. Equal tuples are their ints (module and functional twin alike); unequal
    ones and tuples of another length are refused by name."""
    import equilayers.functional as EF
    from equilayers.nn import BlurPool1d, BlurPool3d

    module, fn = {1: (BlurPool1d, EF.blur_pool1d), 3: (BlurPool3d, EF.blur_pool3d)}[nd]
    x = torch.randn(1, 2, *(9,) * nd, generator=gen)
    m = module(kernel_size=(5,) * nd, stride=[2] * nd)
    assert (m.kernel_size, m.stride) == (5, 2) and repr(m) == repr(module(kernel_size=5, stride=2))
    torch.testing.assert_close(m(x), fn(x, 5, 2), rtol=0, atol=0)
    torch.testing.assert_close(fn(x, (5,) * nd, (2,) * nd), fn(x, 5, 2), rtol=0, atol=0)
    assert fn(x, 5, 2).shape[-nd:] == (5,) * nd
    if nd == 3:
        for make in (lambda: module(kernel_size=(3, 3, 1)), lambda: fn(x, 3, (2, 1, 2))):
            with pytest.raises(ValueError, match=r"must be one int or an equal triple .*cubic"
                                                 r".*keep a depthwise (nn|F).[cC]onv3d"):
                make()
    other = (3, 3) if nd == 3 else (3, 3, 3)
    for make in (lambda: module(kernel_size=other), lambda: fn(x, 3, other)):
        with pytest.raises(TypeError, match=re.escape(f"={other} must be one int or ")
                           + r"(an equal triple|a 1-tuple)"):
            make()
    # control: the 2-D rule, unchanged
    with pytest.raises(TypeError, match=r"must be one int or an equal pair"):
        EF.blur_pool2d(torch.randn(1, 2, 9, 9), (3, 3, 3))


@pytest.mark.parametrize("make,one", [
    (lambda: BlurPool2d(kernel_size=0), "plain subsampling"),
    (lambda: EF.blur_pool3d(torch.randn(1, 1, 4, 4, 4), 8), "plain subsampling"),
    (lambda: BlurUpsample2d(blur_size=0), "zero insertion, no blur"),
    (lambda: enn.BlurUpsample3d(blur_size=8), "zero insertion, no blur"),
    (lambda: EF.blur_upsample3d(torch.randn(1, 1, 2, 2, 2), 2, 0), "zero insertion, no blur"),
    (lambda: enn.PolyphasePool2d(blur_size=0), "no blur"),
    (lambda: enn.PolyphasePool3d(blur_size=0), "no blur"),
    (lambda: enn.PolyphaseUpsample2d(blur_size=0), "no blur"),
    (lambda: enn.PolyphaseUpsample3d(blur_size=0), "no blur"),
    (lambda: EF.polyphase_upsample3d(torch.randn(1, 1, 2, 2, 2), torch.tensor([0]),
                                     blur_size=0), "no blur"),
    (lambda: MaxBlurPool2d(blur_size=0), "no blur: the strided max pool"),
    (lambda: BlurConv2d(3, 4, 3, blur_size=0), "no blur: the strided conv"),
])
def test_a_bad_blur_size_says_what_size_1_means_for_the_op(make, one):
    """Every blur-size error said "(1 = plain subsampling)", true of the blur pools only: for
    an upsampling size 1 is zero insertion, for the polyphase ops no blur."""
    with pytest.raises(ValueError, match=r"must be an integer in 1\.\.7") as info:
        make()
    assert f"the binomial filter size (1 = {one})" in str(info.value)
    if one != "plain subsampling":  # control: the blur pools' wording is gone here
        assert "plain subsampling" not in str(info.value)
