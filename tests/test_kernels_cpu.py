"""The CPU fast path (``equilayers.kernels._cpu``) == the pure-PyTorch reference, values and
gradients: every blur size, stride and padding mode, odd sizes, non-contiguous, channels_last
and 5-D inputs, ties and NaN in the max pooling, gradcheck in float64."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from _refs import ref_blur, ref_max_blur, ref_poly
from hypothesis import given, settings
from hypothesis import strategies as st

from equilayers import functional as EF
from equilayers import kernels
from equilayers import nn as enn
from equilayers.kernels import _conv_paths, _cpu, _cpu_polyphase

MODES = ["reflect", "replicate", "zeros", "circular"]


def _compare(fast, reference, x, gen, tol, **kw):
    """Forward and backward (a random upstream gradient) of ``fast`` vs ``reference``."""
    xf = x.detach().requires_grad_(True)
    xr = x.detach().requires_grad_(True)
    y, yr = fast(xf, **kw), reference(xr, **kw)
    assert y.shape == yr.shape and y.dtype == yr.dtype
    g = torch.randn(yr.shape, generator=gen, dtype=x.dtype)
    (gf,) = torch.autograd.grad(y, xf, g)
    (gr,) = torch.autograd.grad(yr, xr, g)
    torch.testing.assert_close(y, yr, atol=tol, rtol=tol)
    torch.testing.assert_close(gf, gr, atol=tol, rtol=tol)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("k", range(1, 8))
def test_cpu_fast_blur_every_mode_size_and_stride(gen, mode, k):
    for stride in (1, 2, 3):
        for h, w in [(9, 8), (7, 11), (12, 5)]:
            x = torch.randn(2, 3, h, w, generator=gen, dtype=torch.float64)
            _compare(_cpu.blur_pool2d, ref_blur, x, gen, 1e-12, kernel_size=k, stride=stride,
                     padding_mode=mode)


@pytest.mark.parametrize("mode", MODES)
def test_cpu_fast_blur_layouts_float32(gen, mode):
    base = torch.randn(2, 4, 11, 10, generator=gen)
    for x in [base, base.transpose(-1, -2), base[:, ::2, 1:, ::3],
              base.contiguous(memory_format=torch.channels_last),
              torch.randn(2, 3, 4, 9, 7, generator=gen)]:
        _compare(_cpu.blur_pool2d, ref_blur, x, gen, 1e-5, kernel_size=5, stride=2,
                 padding_mode=mode)


@pytest.mark.parametrize("op,ref,kw", [(_cpu.blur_pool2d, ref_blur, {"kernel_size": 3}),
                                       (_cpu.max_blur_pool2d, ref_max_blur, {"padding": 1,
                                                                             "kernel_size": 3})])
def test_cpu_fast_keeps_channels_last_3d(gen, op, ref, kw):
    """A channels_last_3d 5-D group map keeps its layout through the fast path, output and
    input gradient (new buffers take the input's format; a contiguous one stays contiguous)."""
    base = torch.randn(2, 3, 4, 9, 8, generator=gen)
    cl3 = base.contiguous(memory_format=torch.channels_last_3d)
    assert not cl3.is_contiguous()
    for x, fmt in [(cl3, torch.channels_last_3d), (base, torch.contiguous_format)]:
        xf = x.detach().requires_grad_(True)
        y = op(xf, **kw)
        assert y.is_contiguous(memory_format=fmt)
        (gx,) = torch.autograd.grad(y, xf, torch.ones_like(y))
        assert gx.is_contiguous(memory_format=fmt)
        _compare(op, ref, x, gen, 1e-5, **kw)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("blur_size", [1, 2, 3, 4, 7])
def test_cpu_fast_max_blur_every_mode(gen, mode, blur_size):
    for m, pad, stride, (h, w) in [(2, 0, 2, (9, 8)), (2, 0, 3, (12, 13)), (1, 0, 2, (8, 9)),
                                   (3, 0, 2, (11, 10)), (3, 1, 2, (11, 10)), (2, 1, 2, (9, 8)),
                                   (4, 2, 3, (10, 9)), (4, 1, 1, (8, 7))]:
        x = torch.randn(2, 3, h, w, generator=gen, dtype=torch.float64)
        _compare(_cpu.max_blur_pool2d, ref_max_blur, x, gen, 1e-12, kernel_size=m,
                 stride=stride, blur_size=blur_size, padding_mode=mode, padding=pad)


def test_cpu_fast_max_blur_layouts_and_ties(gen):
    base = torch.randn(2, 4, 11, 10, generator=gen)
    ties = torch.randint(0, 3, (2, 4, 11, 10), generator=gen).float()  # first-maximum routing
    for x in [base.transpose(-1, -2), base.contiguous(memory_format=torch.channels_last),
              base[:, 1:, ::2], ties, ties.contiguous(memory_format=torch.channels_last),
              torch.randn(2, 3, 4, 9, 7, generator=gen)]:
        _compare(_cpu.max_blur_pool2d, ref_max_blur, x, gen, 1e-5)


@pytest.mark.parametrize("m,pad", [(3, 1), (3, 0), (2, 1), (4, 2)])
def test_cpu_fast_max_blur_general_windows_ties_nan_inf(gen, m, pad):
    """Windows other than 2x2, max-pool padding: first-maximum routing on ties (integers),
    NaN and inf (the reference backward, per chunk), every layout."""
    ties = torch.randint(0, 3, (2, 4, 11, 10), generator=gen).double()
    base = torch.randn(2, 4, 11, 10, generator=gen, dtype=torch.float64)
    nan, inf = base.clone(), base.clone()
    nan[0, 1, 3, 3] = float("nan")
    inf[1, 2, 0, 0] = float("inf")
    inf[1, 3, 5, 5] = float("-inf")
    for x in [ties, ties.contiguous(memory_format=torch.channels_last), ties.transpose(-1, -2),
              base[:, 1:, ::2], nan, inf, torch.full((2, 4, 11, 10), float("-inf"))]:
        xa, xb = x.detach().requires_grad_(True), x.detach().requires_grad_(True)
        ya = _cpu.max_blur_pool2d(xa, m, 2, 3, "zeros", pad)
        yb = ref_max_blur(xb, m, 2, 3, "zeros", pad)
        torch.testing.assert_close(ya, yb, equal_nan=True)
        g = torch.randn(yb.shape, generator=gen, dtype=yb.dtype)
        (ga,), (gb,) = torch.autograd.grad(ya, xa, g), torch.autograd.grad(yb, xb, g)
        torch.testing.assert_close(ga, gb, equal_nan=True)
    # Negative control: last-maximum routing differs from first-maximum on ties.
    (g_first,) = torch.autograd.grad(_cpu.max_blur_pool2d(
        ties.requires_grad_(True), m, 2, 3, "zeros", pad).sum(), ties)
    flipped = ties.detach().flip(-1, -2).requires_grad_(True)
    (g_last,) = torch.autograd.grad(ref_max_blur(flipped, m, 2, 3, "zeros", pad).sum(), flipped)
    assert not torch.equal(g_first, g_last.flip(-1, -2))


def test_cpu_fast_max_pool_2x2_nan_and_inf_take_the_reference_backward(gen):
    x = torch.randn(2, 3, 7, 8, generator=gen)
    nan = x.clone()
    nan[0, 1, 3, 3] = nan[1, 2, 0, 0] = float("nan")
    inf = x.clone()
    inf[0, 0, 2, 5] = float("inf")
    for t, g in [(nan, None), (inf, None), (x, float("inf")), (x, float("nan"))]:
        a, b = t.detach().requires_grad_(True), t.detach().requires_grad_(True)
        ya, yb = kernels.max_pool2d_stride1(a, 2), F.max_pool2d(b, 2, stride=1)
        torch.testing.assert_close(ya, yb, equal_nan=True)
        grad = torch.randn(yb.shape, generator=gen)
        if g is not None:
            grad[0, 0, 1, 1] = g
        (ga,) = torch.autograd.grad(ya, a, grad)
        (gb,) = torch.autograd.grad(yb, b, grad)
        torch.testing.assert_close(ga, gb, equal_nan=True)


@pytest.mark.parametrize("m,pad", [(2, 0), (3, 1)])
def test_cpu_fast_max_blur_non_finite_upstream_gradient_takes_the_reference(gen, m, pad):
    """A finite input with an inf or NaN upstream gradient: the mask backward would route it
    differently (0 * inf is NaN), so each such chunk takes max_pool2d's own backward."""
    x = torch.randn(2, 3, 9, 8, generator=gen)
    for bad in (float("inf"), float("nan")):
        a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        ya = _cpu.max_blur_pool2d(a, m, 2, 3, "reflect", pad)
        yb = ref_max_blur(b, m, 2, 3, "reflect", pad)
        grad = torch.randn(yb.shape, generator=gen)
        grad[0, 1, 2, 2] = bad
        (ga,), (gb,) = torch.autograd.grad(ya, a, grad), torch.autograd.grad(yb, b, grad)
        assert gb.isfinite().any() and not gb.isfinite().all()
        torch.testing.assert_close(ga, gb, equal_nan=True)


def test_cpu_fast_max_pool2d_stride1_window_1_is_a_copy(gen):
    """kernel_size=1 returns a new tensor, as F.max_pool2d does: writing into the output
    leaves the input alone, with or without autograd."""
    for requires_grad in (False, True):
        x = torch.randn(2, 3, 5, 4, generator=gen, requires_grad=requires_grad)
        before = x.detach().clone()
        y = kernels.max_pool2d_stride1(x, 1)
        assert torch.equal(y, before)
        with torch.no_grad():
            y.add_(1.0)
        assert torch.equal(x.detach(), before)


def test_max_pool2d_stride1_of_a_plane_in_every_backward(gen):
    """A plane ``(H, W)``, which the check accepts: the backward with NaN, with
    ``create_graph`` and under ``torch.func`` give F.max_pool2d's gradients (they raised
    "non-empty 3D or 4D tensor expected" where the finite backward worked)."""
    import torch.func as TF

    x = torch.randn(5, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    want = torch.autograd.grad(F.max_pool2d(x[None], 2, stride=1).sum(), x)[0]
    got = torch.autograd.grad(kernels.max_pool2d_stride1(x, 2).sum(), x, create_graph=True)[0]
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(TF.grad(lambda t: kernels.max_pool2d_stride1(t, 2).sum())(
        x.detach()), want)
    nan = torch.tensor([[1.0, float("nan")], [0.0, 2.0]], requires_grad=True)
    kernels.max_pool2d_stride1(nan, 2).sum().backward()
    ref = nan.detach().clone().requires_grad_(True)
    F.max_pool2d(ref[None], 2, stride=1).sum().backward()
    torch.testing.assert_close(nan.grad, ref.grad, equal_nan=True)


@pytest.mark.parametrize("shape", [(2, 0, 4, 4), (2, 3, 0, 4, 4), (2, 3, 0, 4)])
def test_polyphase_linf_of_an_empty_map_is_empty(shape):
    """``criterion="linf"`` on a zero channel, fiber or height count: the empty result and
    gradient, as ``l2`` and ``l1`` (torch's inf norm refuses an empty dim: a RuntimeError)."""
    for crit in ("l2", "l1", "linf"):
        x = torch.zeros(shape, requires_grad=True)
        y = EF.polyphase_pool2d(x, 2, criterion=crit)
        assert y.shape == (*shape[:-2], shape[-2] // 2, shape[-1] // 2)
        assert torch.autograd.grad(y.sum(), x)[0].shape == shape


def test_cpu_fast_gradcheck_float64(gen):
    x = torch.randn(1, 2, 7, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    for mode in MODES:
        assert torch.autograd.gradcheck(lambda t, m=mode: _cpu.blur_pool2d(t, 3, 2, m), (x,))
        assert torch.autograd.gradcheck(lambda t, m=mode: _cpu.max_blur_pool2d(t, 2, 2, 4, m),
                                        (x,))
    assert torch.autograd.gradcheck(lambda t: _cpu.blur_pool2d(t, 6, 3, "circular"), (x,))


def test_cpu_fast_path_is_what_training_dispatches_to(monkeypatch, gen):
    monkeypatch.delenv("EQUILAYERS_TRITON_INTERPRET", raising=False)
    monkeypatch.delenv("EQUILAYERS_DISABLE_TRITON", raising=False)
    x = torch.randn(2, 3, 10, 9, generator=gen, requires_grad=True)
    assert kernels.select("blur_pool2d", x)[0] == "fast"
    assert kernels.select("max_blur_pool2d", x)[0] == "fast"
    for module, functional, reference in [
            (enn.BlurPool2d(padding_mode="circular"),
             lambda t: EF.blur_pool2d(t, padding_mode="circular"),
             lambda t: ref_blur(t, padding_mode="circular")),
            (enn.MaxBlurPool2d(), EF.max_blur_pool2d, ref_max_blur)]:
        y = module(x)
        assert "_BlurPoolBackward" in type(y.grad_fn).__name__, y.grad_fn
        _compare(lambda t, m=module, **kw: m(t), reference, x, gen, 1e-5)
        _compare(lambda t, f=functional, **kw: f(t), reference, x, gen, 1e-5)
    # The switches force the reference (no fast autograd node).
    def fast_node(y):
        return "_BlurPoolBackward" in type(y.grad_fn).__name__

    assert fast_node(enn.BlurPool2d()(x)) and fast_node(EF.max_blur_pool2d(x))
    with kernels.use_reference():
        assert not fast_node(enn.BlurPool2d()(x)) and not fast_node(EF.blur_pool2d(x))
    monkeypatch.setenv("EQUILAYERS_DISABLE_TRITON", "1")
    assert kernels.select("max_blur_pool2d", x)[0] == "reference"
    assert not fast_node(EF.max_blur_pool2d(x)) and not fast_node(enn.BlurPool2d()(x))


@pytest.mark.parametrize("chunk_planes", [1, 3])
def test_cpu_fast_chunks_equal_the_reference(monkeypatch, gen, chunk_planes):
    """Several chunks per call (chunks shrunk): every layout, a NaN in one chunk only."""
    monkeypatch.setattr(_cpu, "_chunk_bytes", lambda: chunk_planes * 11 * 10 * 4)
    base = torch.randn(3, 5, 11, 10, generator=gen)
    nan = base.clone()
    nan[1, 2, 4, 4] = float("nan")
    for x in [base, base.contiguous(memory_format=torch.channels_last), base[:, 1:, ::2],
              base.transpose(-1, -2), torch.randn(2, 3, 4, 11, 10, generator=gen), nan]:
        for mode in MODES:
            xa, xb = x.detach().requires_grad_(True), x.detach().requires_grad_(True)
            for fast, ref in [(_cpu.blur_pool2d, ref_blur), (_cpu.max_blur_pool2d, ref_max_blur)]:
                ya, yb = fast(xa, padding_mode=mode), ref(xb, padding_mode=mode)
                torch.testing.assert_close(ya, yb, atol=1e-5, rtol=1e-5, equal_nan=True)
                assert ya.is_contiguous(memory_format=torch.channels_last) == (
                    x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
                    and not x.is_contiguous())
                g = torch.randn(yb.shape, generator=gen)
                (ga,), (gb,) = torch.autograd.grad(ya, xa, g), torch.autograd.grad(yb, xb, g)
                torch.testing.assert_close(ga, gb, atol=1e-5, rtol=1e-5, equal_nan=True)
                # An expanded upstream gradient (from .sum()) reads the same.
                (ga,) = torch.autograd.grad(fast(xa, padding_mode=mode).sum(), xa)
                (gb,) = torch.autograd.grad(ref(xb, padding_mode=mode).sum(), xb)
                torch.testing.assert_close(ga, gb, atol=1e-5, rtol=1e-5, equal_nan=True)
    # Negative control: a chunk written to the wrong place is caught.
    monkeypatch.setattr(_cpu, "_chunks", lambda t: (range(0, 1), 1))
    y = _cpu.blur_pool2d(base)
    assert not torch.allclose(y, ref_blur(base), atol=1e-3, equal_nan=True)


def test_cpu_fast_double_backward_equals_the_reference(gen):
    """create_graph=True (a gradient penalty) differentiates the backward again."""
    x = torch.randn(1, 2, 8, 7, generator=gen, dtype=torch.float64, requires_grad=True)
    for mode in MODES:
        for fast in (_cpu.blur_pool2d, _cpu.max_blur_pool2d):
            assert torch.autograd.gradgradcheck(lambda t, f=fast, m=mode: f(t, padding_mode=m),
                                                (x,))
    for fast, ref in [(_cpu.blur_pool2d, ref_blur), (_cpu.max_blur_pool2d, ref_max_blur)]:
        pen = []
        for fn in (fast, ref):
            (g,) = torch.autograd.grad((fn(x) ** 2).sum(), x, create_graph=True)
            (gg,) = torch.autograd.grad((g ** 2).sum(), x)
            pen.append(gg)
        torch.testing.assert_close(*pen)
        assert pen[0].abs().sum() > 0  # not trivially zero


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_depthwise_padded_copy_keeps_channels_last(gen, mode):
    """An even blur pads a copy (F.pad may return it contiguous): the copy is made
    channels_last again, so a channels_last input gives a channels_last output."""
    x = torch.randn(2, 5, 9, 8, generator=gen).contiguous(memory_format=torch.channels_last)
    for k in (2, 4):
        y = _conv_paths.blur_pool2d(x, k, 2, mode)
        assert y.is_contiguous(memory_format=torch.channels_last), (k, mode)
        torch.testing.assert_close(y, ref_blur(x, k, 2, mode), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_depthwise_ring_equals_the_reference(gen, mode):
    """The depthwise path's zero-padded conv with its border ring recomputed: values,
    gradients (an expanded upstream gradient too) and a gradient penalty, at strides 1-3,
    blurs 3 and 5, odd and even sizes, both layouts; the ring's own autograd node runs."""
    for shape, k, s in [((2, 3, 9, 8), 3, 2), ((1, 2, 8, 11), 3, 1), ((2, 2, 12, 10), 5, 3),
                        ((1, 3, 7, 7), 5, 2)]:
        base = torch.randn(shape, generator=gen, dtype=torch.float64)
        for x in (base, base.contiguous(memory_format=torch.channels_last)):
            xa, xb = x.detach().requires_grad_(True), x.detach().requires_grad_(True)
            ya = _conv_paths.blur_pool2d(xa, k, s, mode)
            node = ya.grad_fn  # a view of the ring's output
            assert type(node.next_functions[0][0]).__name__ == "_RingBlurBackward", node
            yb = ref_blur(xb, k, s, mode)
            torch.testing.assert_close(ya, yb, atol=1e-12, rtol=1e-12)
            (ga,), (gb,) = (torch.autograd.grad(y.sum(), v) for y, v in ((ya, xa), (yb, xb)))
            torch.testing.assert_close(ga, gb, atol=1e-12, rtol=1e-12)
        assert torch.autograd.gradgradcheck(
            lambda t, k=k, s=s: _conv_paths.blur_pool2d(t, k, s, mode),
            (base[:1, :2].detach().requires_grad_(True),))
    x = torch.randn(2, 3, 10, 9, generator=gen, dtype=torch.float64, requires_grad=True)
    (ga,), (gb,) = (torch.autograd.grad((f(x, padding_mode=mode) ** 2).sum(), x)
                    for f in (_conv_paths.max_blur_pool2d, ref_max_blur))
    torch.testing.assert_close(ga, gb, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("chunk_bytes", [None, 64, 1000])
def test_cpu_fast_polyphase_equals_the_reference(monkeypatch, gen, chunk_bytes):
    """Same component, values and gradients: every criterion, stride, blur and padding mode,
    every layout; small inputs (vector_norm, None), chunks of whole samples (1000 bytes) and of
    rows within a sample (64)."""
    if chunk_bytes is not None:
        monkeypatch.setattr(_cpu_polyphase, "_SMALL_POLYPHASE", 0)
        monkeypatch.setattr(_cpu, "_chunk_bytes", lambda: chunk_bytes)
    base = torch.randn(3, 4, 12, 6, generator=gen)
    nan = base.clone()
    nan[1, 2, 5, 3] = float("nan")
    inputs = [base, base.contiguous(memory_format=torch.channels_last), base[:, ::2],
              base.transpose(-1, -2), torch.randn(2, 3, 4, 6, 6, generator=gen),
              torch.randn(2, 6, 6, generator=gen), base.double(), nan, torch.zeros(2, 3, 6, 6)]
    for x in inputs:
        for kw in [{}, {"criterion": "l1"}, {"criterion": "linf"}, {"stride": 3},
                   {"blur_size": 3}, {"blur_size": 4, "padding_mode": "reflect"},
                   {"blur_size": 2, "padding_mode": "zeros", "criterion": "l1"}]:
            a, b = x.detach().requires_grad_(True), x.detach().requires_grad_(True)
            (ya, ia), (yb, ib) = EF.polyphase_pool2d(a, return_index=True, **kw), \
                ref_poly(b, return_index=True, **kw)
            assert torch.equal(ia, ib), (kw, ia, ib)
            torch.testing.assert_close(ya, yb, equal_nan=True)
            g = torch.randn(yb.shape, generator=gen, dtype=yb.dtype)
            (ga,), (gb,) = torch.autograd.grad(ya, a, g), torch.autograd.grad(yb, b, g)
            torch.testing.assert_close(ga, gb, equal_nan=True)
    assert not EF.polyphase_pool2d(torch.zeros(2, 3, 6, 6), return_index=True)[1].any()  # ties


@pytest.mark.parametrize("small", [True, False])
@pytest.mark.parametrize("criterion,eps", [("l2", 2.0 ** -13), ("l1", 2.0 ** -25)])
def test_cpu_fast_polyphase_norms_are_float64(monkeypatch, small, criterion, eps):
    """Component 1 exceeds component 0 by eps, which a float32 norm rounds away (1 + eps**2
    and 1 + eps are 1 in float32): the float64 norms, as the reference's, pick component 1."""
    if not small:
        monkeypatch.setattr(_cpu_polyphase, "_SMALL_POLYPHASE", 0)
    x = torch.zeros(2, 1, 2, 4)
    x[:, 0, 0] = torch.tensor([1.0, 1.0, 0.0, eps])  # component 0: (1, 0); 1: (1, eps)
    kw = {"criterion": criterion, "return_index": True}
    assert ref_poly(x, **kw)[1].tolist() == [1, 1]
    assert _cpu_polyphase.polyphase_pool2d(x, **kw)[1].tolist() == [1, 1]


@pytest.mark.parametrize("small", [True, False])
def test_cpu_fast_polyphase_l2_ranks_the_rounded_norms_as_the_reference(monkeypatch, small):
    """Components 0 and 1 have float64 sums of squares one ulp apart whose square roots round
    to the same double: the reference's vector_norm ties them and takes component 0. The
    chunked sums (large inputs) must rank the norms too, not the sums (which pick 1)."""
    if not small:
        monkeypatch.setattr(_cpu_polyphase, "_SMALL_POLYPHASE", 0)
    a, b, b2 = 5.1323771476745605, 0.00017565155576448888, 0.0001756515703164041
    assert a * a + b * b < a * a + b2 * b2
    x = torch.zeros(2, 1, 2, 4)
    x[:, 0, 0] = torch.tensor([a, a, b, b2])  # component 0: (a, b); component 1: (a, b2)
    assert ref_poly(x, return_index=True)[1].tolist() == [0, 0]
    assert _cpu_polyphase.polyphase_pool2d(x, return_index=True)[1].tolist() == [0, 0]


@pytest.mark.parametrize("small", [True, False])
def test_cpu_fast_polyphase_gradcheck_and_dispatch(monkeypatch, gen, small):
    if not small:  # the chunked norms and the scatter-backward gather of large inputs
        monkeypatch.setattr(_cpu_polyphase, "_SMALL_POLYPHASE", 0)
    x = torch.randn(2, 2, 6, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    for kw in [{}, {"blur_size": 3, "criterion": "l1"}]:
        assert torch.autograd.gradcheck(
            lambda t, k=kw: _cpu_polyphase.polyphase_pool2d(t, **k), (x,))
    y = EF.polyphase_pool2d(x)
    assert ("_PolyphaseGather" in type(y.grad_fn).__name__) != small
    # Negative control: the smallest-norm component is a different sample set.
    xr = x.detach().reshape(2, 2, 3, 2, 2, 2)
    worst = (xr ** 2).sum((1, 2, 4)).reshape(2, 4).argmin(1)
    assert not torch.equal(EF.polyphase_pool2d(x.detach(), return_index=True)[1], worst)


@settings(max_examples=60, deadline=None)
@given(b=st.integers(1, 3), c=st.integers(1, 4), h=st.integers(4, 13), w=st.integers(4, 13),
       k=st.integers(1, 7), stride=st.integers(1, 3), m=st.integers(1, 4),
       pad=st.integers(0, 2), mode=st.sampled_from(MODES), budget=st.integers(1, 3000),
       layout=st.integers(0, 2))
def test_cpu_fast_property_random_shapes_and_chunks(b, c, h, w, k, stride, m, pad, mode,
                                                     budget, layout):
    """Blur / max-blur fast paths == the reference over random shapes, strides, blur sizes,
    max windows and paddings, padding modes, layouts and chunk budgets (chunk boundaries
    anywhere)."""
    pad = min(pad, m // 2)
    size, right = min(h, w) + 2 * pad - m + 1, (k - 1) - (k - 1) // 2
    if (mode == "reflect" and size <= right) or (mode == "circular" and size < right):
        return  # the reference rejects it (padding wider than the input)
    gen = torch.Generator().manual_seed(b * 1000 + h * 31 + w)
    x = torch.randn(b, c, h, w, generator=gen, dtype=torch.float64)
    x = [x, x.contiguous(memory_format=torch.channels_last), x.transpose(-1, -2)][layout]
    orig = _cpu._chunk_bytes
    _cpu._chunk_bytes = lambda: budget
    try:
        _compare(_cpu.max_blur_pool2d, ref_max_blur, x, gen, 1e-12, kernel_size=m,
                 stride=stride, blur_size=k, padding_mode=mode, padding=pad)
        _compare(_cpu.blur_pool2d, ref_blur, x, gen, 1e-12, kernel_size=k, stride=stride,
                 padding_mode=mode)
    finally:
        _cpu._chunk_bytes = orig


@settings(max_examples=60, deadline=None)
@given(b=st.integers(1, 3), c=st.integers(1, 4), hs=st.integers(1, 5), ws=st.integers(1, 5),
       s=st.integers(2, 3), k=st.integers(1, 5), criterion=st.sampled_from(["l2", "l1", "linf"]),
       mode=st.sampled_from(MODES), budget=st.integers(8, 3000), small=st.booleans())
def test_cpu_fast_polyphase_property(b, c, hs, ws, s, k, criterion, mode, budget, small):
    h, w = hs * s, ws * s
    if k > 1 and mode in ("reflect", "circular") and min(h, w) <= (k - 1) - (k - 1) // 2:
        return  # the reference rejects it
    gen = torch.Generator().manual_seed(b * 100 + h * 7 + w)
    x = torch.randn(b, c, h, w, generator=gen, dtype=torch.float64, requires_grad=True)
    orig = _cpu._chunk_bytes, _cpu_polyphase._SMALL_POLYPHASE
    _cpu._chunk_bytes, _cpu_polyphase._SMALL_POLYPHASE = (lambda: budget), (1 << 19 if small
                                                                          else 0)
    try:
        kw = {"stride": s, "criterion": criterion, "blur_size": k, "padding_mode": mode}
        ya, ia = _cpu_polyphase.polyphase_pool2d(x, return_index=True, **kw)
    finally:
        _cpu._chunk_bytes, _cpu_polyphase._SMALL_POLYPHASE = orig
    yb, ib = ref_poly(x, return_index=True, **kw)
    if not torch.equal(ia, ib):  # allowed only between components whose norms tie to ~1e-16
        with kernels.use_reference():
            xb = EF.blur_pool2d(x.detach(), k, 1, mode) if k > 1 else x.detach()
        order = {"l2": 2, "l1": 1, "linf": float("inf")}[criterion]
        norms = torch.linalg.vector_norm(xb.reshape(b, c, hs, s, ws, s), order, dim=(1, 2, 4))
        norms = norms.reshape(b, s * s)
        top = norms.max(1).values
        assert torch.allclose(norms.gather(1, ia[:, None])[:, 0], top, rtol=1e-12, atol=0)
        return
    torch.testing.assert_close(ya, yb)
    g = torch.randn(yb.shape, generator=gen, dtype=yb.dtype)
    torch.testing.assert_close(torch.autograd.grad(ya, x, g)[0], torch.autograd.grad(yb, x, g)[0])


@pytest.mark.parametrize("path", [p.name for p in
                                  kernels._registry.get_op("max_blur_pool2d").fast["cpu"]])
def test_cpu_fast_max_blur_group_maps_with_inf_and_double_backward(gen, path):
    """5-D group maps on every CPU fast path: an inf or NaN in a channels_last one (the view of
    a channels_last group conv's output, which is not viewed as planes) took max_pool2d's own
    backward on the 5-D tensor, and a gradient penalty (create_graph=True) on any 5-D map ran
    max_pool2d on it: both raised torch's "non-empty 3D or 4D (batch mode) tensor expected".
    Both equal the reference now, values, gradients and second derivatives."""
    base = torch.randn(2, 12, 9, 10, generator=gen, dtype=torch.float64)
    cl5 = base.contiguous(memory_format=torch.channels_last).unflatten(1, (3, 4))
    bad = cl5.clone()
    bad[0, 0, 0, 0, 0], bad[1, 2, 3, 4, 5] = float("inf"), float("nan")
    for x, double in [(bad, False), (cl5, True), (base.unflatten(1, (3, 4)), True)]:
        xa, xb = x.detach().requires_grad_(True), x.detach().requires_grad_(True)
        with kernels.use_fast_path(path):
            ya = EF.max_blur_pool2d(xa, 3, 2, 1)
        yb = ref_max_blur(xb, 3, 2, padding=1)
        torch.testing.assert_close(ya, yb, equal_nan=True)
        g = torch.randn(yb.shape, generator=gen, dtype=yb.dtype)
        (ga,), (gb,) = (torch.autograd.grad(y, v, g, create_graph=double)
                        for y, v in ((ya, xa), (yb, xb)))
        torch.testing.assert_close(ga, gb, equal_nan=True)
        if double:  # d/dx |grad|^2: zero almost everywhere for a max, but it must run
            (ha,), (hb,) = (torch.autograd.grad(gv.square().sum(), v, allow_unused=True,
                                                materialize_grads=True)
                            for gv, v in ((ga, xa), (gb, xb)))
            torch.testing.assert_close(ha, hb)


@pytest.mark.parametrize("mode", ["reflect", "replicate", "zeros", "circular"])
def test_every_path_keeps_a_channels_last_layout(mode, gen):
    """The fast path returned channels_last, the reference (under ``use_reference()``,
    torch.func, tracing) a contiguous tensor for ``"circular"`` only (its ``F.pad`` copies):
    the output layout changed with the path. The values were and are equal."""
    x = torch.randn(2, 3, 8, 8, generator=gen).contiguous(memory_format=torch.channels_last)
    fast = EF.blur_pool2d(x, 3, 2, mode)
    with kernels.use_reference():
        ref = EF.blur_pool2d(x, 3, 2, mode)
    for y in (fast, ref):
        assert y.is_contiguous(memory_format=torch.channels_last) and not y.is_contiguous()
    torch.testing.assert_close(fast, ref)
