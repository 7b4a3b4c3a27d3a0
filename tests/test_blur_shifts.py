"""Shift equivariance of the blur pools: exact for circular shifts by multiples of the stride
where the stride divides the size (not otherwise: the controls), on every rank; a 1-px shift
moves a blurred max pool's output less than ``nn.MaxPool2d``'s."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch import nn

import equilayers.functional as EF
from equilayers.nn import BlurPool1d, BlurPool2d, BlurPool3d, MaxBlurPool2d

MODES = ["reflect", "replicate", "zeros", "circular"]


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
