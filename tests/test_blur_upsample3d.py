"""BlurUpsample3d / blur_upsample3d: the transpose of blur_pool3d (adjointness for every blur
size and both paddings), circular shifts, the mean, exactness on the cube's groups for the
U-Net pair (an odd blur as the negative control), the 2-D twin unchanged; the 3-D upsamplings
and pools keep a channels_last_3d layout."""

from __future__ import annotations

import warnings

import pytest
import torch
from _lps_common import WithIndex as _With

import equilayers.nn as enn
from equilayers.functional import blur_pool3d, blur_upsample2d, blur_upsample3d
from equilayers.groups import get
from equilayers.nn import BlurUpsample3d
from equilayers.testing import equivariance_error


def _rand(gen, *shape):
    return torch.randn(*shape, generator=gen, dtype=torch.float64)


@pytest.mark.parametrize("mode", ["zeros", "circular"])
@pytest.mark.parametrize("blur_size", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("s", [1, 2, 3])
def test_transposed_is_s_cubed_times_the_adjoint_of_blur_pool3d(mode, blur_size, s, gen):
    x, y = _rand(gen, 2, 3, 3, 4, 2), _rand(gen, 2, 3, 3 * s, 4 * s, 2 * s)
    up = blur_upsample3d(x, s, blur_size, mode, transposed=True)
    assert up.shape == y.shape
    lhs = (up * y).sum()
    rhs = s ** 3 * (x * blur_pool3d(y, blur_size, s, mode)).sum()
    torch.testing.assert_close(lhs, rhs, rtol=1e-12, atol=1e-12)


def test_shifts_mean_and_the_samples(gen):
    """Circular: shifting the input by t shifts the output by 2 t; the mean is kept; with
    blur_size 3 the input samples stay where they land (linear interpolation), as in 2-D."""
    x = _rand(gen, 1, 2, 4, 3, 5)
    up = blur_upsample3d(x, 2, 3, "circular")
    shifted = blur_upsample3d(torch.roll(x, (1, 2, 3), (-3, -2, -1)), 2, 3, "circular")
    torch.testing.assert_close(shifted, torch.roll(up, (2, 4, 6), (-3, -2, -1)))
    torch.testing.assert_close(up.mean(), x.mean())
    torch.testing.assert_close(up[..., ::2, ::2, ::2], x)
    # one slice deep, zero padded: the 2-D op on the slice times the depth tap's 2/4
    flat = _rand(gen, 1, 2, 1, 6, 5)
    torch.testing.assert_close(blur_upsample3d(flat, 1, 1, "zeros"), flat)
    torch.testing.assert_close(blur_upsample3d(flat, 2, 3, "zeros")[:, :, 0],
                               0.5 * 2 * blur_upsample2d(flat[:, :, 0], 2, 3, "zeros"))


@pytest.mark.parametrize("group", ["c4z", "oh"])
def test_the_unet_pair_is_exact_on_the_cube_groups_and_an_odd_blur_is_not(group, gen):
    n = int(get(group).order)
    x = _rand(gen, 1, 2, n, 3, 3, 3)
    pair = BlurUpsample3d(2, 4, "circular", transposed=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert pair(x).shape == (1, 2, n, 6, 6, 6)
        assert equivariance_error(pair, x, group) < 1e-12
    odd = BlurUpsample3d(2, 3, "circular")
    with pytest.warns(UserWarning, match=r"BlurUpsample3d\(scale_factor=2, "
                                         r"padding_mode='circular'\) on a group map is not"):
        assert equivariance_error(odd, x, group) > 0.1
    vol = _rand(gen, 1, 2, 3, 3, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a plain volume makes no group claim: no warning
        odd2 = BlurUpsample3d(2, 3, "circular")
        assert odd2(vol).shape == (1, 2, 6, 6, 6)


def test_module_equals_functional_repr_and_errors(gen):
    m = BlurUpsample3d(3, 2, "zeros", transposed=True)
    x = _rand(gen, 2, 1, 2, 3, 2)
    torch.testing.assert_close(m(x), blur_upsample3d(x, 3, 2, "zeros", transposed=True),
                               rtol=0, atol=0)
    assert repr(m) == ("BlurUpsample3d(scale_factor=3, blur_size=2, padding_mode='zeros', "
                       "transposed=True)")
    with pytest.raises(ValueError, match="transposed=True is the transpose of a blur pool"):
        BlurUpsample3d(2, 4, "reflect", transposed=True)
    with pytest.raises(ValueError, match=r"\(\.\.\., D, H, W\) with a batch dim"):
        blur_upsample3d(torch.randn(4, 4, 4), 2)



_CL3 = torch.channels_last_3d


@pytest.mark.parametrize("make", [
    lambda: BlurUpsample3d(), lambda: BlurUpsample3d(blur_size=1),
    lambda: BlurUpsample3d(3, 3, "circular"),
    lambda: BlurUpsample3d(blur_size=2, transposed=True, padding_mode="zeros"),
    lambda: BlurUpsample3d(blur_size=4, transposed=True, padding_mode="circular"),
    lambda: _With(enn.PolyphaseUpsample3d(), torch.tensor([1, 6])),
    lambda: _With(enn.PolyphaseUpsample3d(blur_size=3), torch.tensor([1, 6])),
    lambda: _With(enn.LearnablePolyphaseUpsample3d(), torch.eye(8)[[1, 6]]),
    lambda: _With(enn.LearnablePolyphaseUpsample3d(), torch.tensor([1, 6])),
    lambda: enn.BlurPool3d(padding_mode="circular"),
    lambda: enn.PolyphasePool3d(blur_size=3),
], ids=["blur", "blur1", "s3-circular", "transposed-even", "transposed-circular", "polyphase",
        "polyphase-blur", "learned", "learned-int", "pool-circular", "polyphase-pool-blur"])
def test_volume_ops_keep_channels_last_3d(make, gen):
    """A channels_last_3d volume batch came back contiguous from the 3-D upsamplings (and the
    circular or blurred 3-D pools), where nn.Upsample keeps the layout and the 2-D twins keep
    channels_last; the values are the contiguous input's, bit for bit."""
    x = torch.randn(2, 3, 4, 4, 4, generator=gen)
    m = make()
    y = m(x.contiguous(memory_format=_CL3))
    assert y.is_contiguous(memory_format=_CL3) and not y.is_contiguous()
    torch.testing.assert_close(y, m(x), rtol=0, atol=0)
    # control: what nn.Upsample does with the same input
    assert torch.nn.Upsample(scale_factor=2)(x.contiguous(memory_format=_CL3)).is_contiguous(
        memory_format=_CL3)
