"""The "Coming from kornia or antialiased-cnns" table of docs/layers/antialias.md: each row's
equilayers call gives the peer's outputs (float64, to 1e-12) on odd and even sizes. Runs in the
peers venv (`make test-peers`), where kornia 0.9.0 and antialiased-cnns 0.3 are installed; the
controls show that the padding mode the table names matters (our default reflect padding gives
other outputs than kornia's zeros)."""

import itertools

import pytest
import torch
from _peers import ANTIALIASED_CNNS_MISSING, KORNIA_MISSING
from torch import nn

from equilayers import functional as EF
from equilayers.nn import BlurPool1d, BlurPool2d, EdgeAwareBlurPool2d, MaxBlurPool2d

SIZES = [(8, 8), (9, 9), (13, 10)]


def _x(h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, 3, h, w, generator=g, dtype=torch.float64)


def _same(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.shape == b.shape, (a.shape, b.shape)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


@pytest.fixture(scope="module")
def kf():
    return pytest.importorskip("kornia.filters", reason=KORNIA_MISSING)


@pytest.fixture(scope="module")
def ac():
    return pytest.importorskip("antialiased_cnns", reason=ANTIALIASED_CNNS_MISSING)


@pytest.mark.parametrize("k,s", list(itertools.product(range(1, 8), [1, 2, 3])))
def test_kornia_blur_pool(kf, k, s):
    for h, w in SIZES:
        x = _x(h, w)
        want = kf.BlurPool2D(k, s)(x)
        _same(BlurPool2d(kernel_size=k, stride=s, padding_mode="zeros").double()(x), want)
        _same(EF.blur_pool2d(x, k, s, padding_mode="zeros"), kf.blur_pool2d(x, k, s))


@pytest.mark.parametrize("k,s,m", list(itertools.product(range(1, 8), [1, 2, 3], [2, 3])))
def test_kornia_max_blur_pool(kf, k, s, m):
    """kornia's ``kernel_size`` is the blur's, ``max_pool_size`` the max window (ours: the
    other way round, as ``nn.MaxPool2d``'s ``kernel_size``)."""
    for h, w in SIZES:
        x = _x(h, w)
        want = kf.MaxBlurPool2D(k, s, m)(x)
        _same(MaxBlurPool2d(m, s, blur_size=k, padding_mode="zeros").double()(x), want)
        _same(EF.max_blur_pool2d(x, m, s, blur_size=k, padding_mode="zeros"),
              kf.max_blur_pool2d(x, k, s, m))


def test_kornia_edge_aware_blur(kf):
    x = _x(12, 15).abs() + 0.1
    _same(EdgeAwareBlurPool2d(5, 1.1, 3)(x), kf.EdgeAwareBlurPool2D(5, 1.1, 3)(x))


def test_kornia_control_the_padding_mode_matters(kf):
    x = _x(9, 9)
    assert (BlurPool2d(stride=2).double()(x) - kf.BlurPool2D(3, 2)(x)).abs().max() > 0.1


_PAD_TYPES = [("reflect", "reflect"), ("refl", "reflect"), ("repl", "replicate"),
              ("replicate", "replicate"), ("zero", "zeros")]


@pytest.mark.parametrize("pad_type,mode", _PAD_TYPES)
@pytest.mark.parametrize("k,s", list(itertools.product([1, 2, 3, 4, 5, 7], [2, 3])))
def test_antialiased_cnns_blur_pool(ac, pad_type, mode, k, s):
    for h, w in SIZES:
        x = _x(h, w)
        want = ac.BlurPool(3, pad_type=pad_type, filt_size=k, stride=s).double()(x)
        _same(BlurPool2d(3, kernel_size=k, stride=s, padding_mode=mode).double()(x), want)
        x1 = x[:, :, 0]
        want1 = ac.blurpool.BlurPool1D(3, pad_type=pad_type, filt_size=k, stride=s).double()(x1)
        _same(BlurPool1d(3, kernel_size=k, stride=s, padding_mode=mode).double()(x1), want1)


@pytest.mark.parametrize("k", [2, 3, 4, 5])
def test_antialiased_cnns_max_blur_pool_recipe(ac, k):
    """Its README's replacement for ``MaxPool2d(2)``: a stride-1 max, then its BlurPool."""
    for h, w in SIZES:
        x = _x(h, w)
        want = nn.Sequential(nn.MaxPool2d(2, 1), ac.BlurPool(3, filt_size=k, stride=2)).double()(x)
        _same(MaxBlurPool2d(2, blur_size=k).double()(x), want)


def test_antialiased_cnns_control_the_default_filter_size_differs(ac):
    """Its ``BlurPool`` defaults to ``filt_size=4``, ours to 3: the table names the size."""
    x = _x(9, 9)
    assert (BlurPool2d(3).double()(x) - ac.BlurPool(3).double()(x)).abs().max() > 0.05


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_antialiased_cnns_checkpoint_loads_after_the_swap(ac, k):
    """Swapping its ``BlurPool`` for ours (the table's row) and loading its checkpoint failed
    strictly on the persistent ``filt`` buffers ("Unexpected key(s)"): they are read and
    checked. The control: a ``filt`` that is not the binomial is an error, not dropped."""
    peer = nn.Sequential(nn.Conv2d(3, 4, 3), ac.BlurPool(4, filt_size=k, stride=2))
    ours = nn.Sequential(nn.Conv2d(3, 4, 3), BlurPool2d(4, kernel_size=k, stride=2))
    ckpt = peer.state_dict()
    assert ours.load_state_dict(ckpt).missing_keys == []  # strict: nothing unexpected
    x = _x(9, 9).float()
    torch.testing.assert_close(ours(x), peer(x), rtol=0, atol=1e-6)
    delta = torch.zeros_like(ckpt["1.filt"])
    delta[..., 0, 0] = 2.0 if k == 1 else 1.0  # (for k = 1 the binomial is the delta)
    ckpt["1.filt"] = delta
    with pytest.raises(RuntimeError, match=r"1.filt .* is not the binomial of size"):
        ours.load_state_dict(ckpt)
