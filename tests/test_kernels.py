"""Triton kernels == their pure-PyTorch references: values and gradients, layouts, dtypes,
edge cases; as ``torch.library`` ops (``opcheck``, one op under ``torch.compile``); refused
inside ``torch.func``.

Kernel tests run on CUDA when present, else on CPU through Triton's interpreter: they need
``TRITON_INTERPRET=1`` in the environment before Triton compiles anything (``make test`` sets
it); without it, or without triton, they are skipped with the reason. The dispatch between
them and the references, which runs everywhere: ``tests/test_kernels_dispatch.py``.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from _refs import DEVICE, needs_triton, ref_blur, ref_max_blur, ref_poly

from equilayers import functional as EF
from equilayers import kernels

MODES = ["reflect", "replicate", "zeros", "circular"]


def _compare(kernel, reference, x, gen, atol=1e-5, **kw):
    """Forward and backward of ``kernel`` vs ``reference`` (reference run in float64)."""
    xk = x.detach().requires_grad_(True)
    xr = x.detach().double().requires_grad_(True)
    y = kernel(xk, **kw)
    yr = reference(xr, **kw)
    assert y.shape == yr.shape and y.dtype == x.dtype
    gy = torch.randn(yr.shape, generator=gen, dtype=torch.float64).to(x.device)
    (gk,) = torch.autograd.grad(y, xk, gy.to(x.dtype))
    (gr,) = torch.autograd.grad(yr, xr, gy)
    torch.testing.assert_close(y.double(), yr, atol=atol, rtol=atol)
    torch.testing.assert_close(gk.double(), gr, atol=atol, rtol=atol)
    return y, gk


def _randn(gen, *shape, dtype=torch.float32):
    return torch.randn(*shape, generator=gen).to(device=DEVICE, dtype=dtype)


@needs_triton
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("k", range(1, 8))
def test_triton_blur_every_mode_and_size(interpret, gen, mode, k):
    _compare(kernels.triton_blur_pool2d, ref_blur, _randn(gen, 2, 3, 9, 8), gen,
             kernel_size=k, stride=2, padding_mode=mode)


@needs_triton
@pytest.mark.parametrize("k,stride,mode", [(3, 1, "reflect"), (4, 3, "circular"),
                                           (2, 4, "replicate"), (5, 3, "zeros"),
                                           (7, 1, "circular"), (1, 3, "reflect")])
def test_triton_blur_strides(interpret, gen, k, stride, mode):
    _compare(kernels.triton_blur_pool2d, ref_blur, _randn(gen, 1, 2, 11, 7), gen,
             kernel_size=k, stride=stride, padding_mode=mode)


@needs_triton
def test_triton_blur_layouts(interpret, gen):
    x = _randn(gen, 2, 5, 9, 13)
    cl = x.contiguous(memory_format=torch.channels_last)
    y, g = _compare(kernels.triton_blur_pool2d, ref_blur, cl, gen, kernel_size=4,
                    padding_mode="circular")
    assert y.is_contiguous(memory_format=torch.channels_last)
    noncontig = _randn(gen, 2, 13, 5, 19).transpose(1, 2)[..., ::2]
    assert not noncontig.is_contiguous()
    _compare(kernels.triton_blur_pool2d, ref_blur, noncontig, gen, kernel_size=3)
    # 5-D group feature maps (B, C, F, H, W): blur over H, W only.
    _compare(kernels.triton_blur_pool2d, ref_blur, _randn(gen, 2, 2, 4, 7, 9), gen,
             kernel_size=5, stride=3, padding_mode="replicate")
    # sum().backward() hands the kernel a stride-0 (expanded) gradient.
    xg = x.detach().requires_grad_(True)
    kernels.triton_blur_pool2d(xg).sum().backward()
    xr = x.detach().double().requires_grad_(True)
    ref_blur(xr).sum().backward()
    torch.testing.assert_close(xg.grad.double(), xr.grad, atol=1e-5, rtol=1e-5)


@needs_triton
@pytest.mark.parametrize("channels_last", [False, True])
def test_triton_zero_padding_reads_nothing_outside_the_input(interpret, gen, channels_last):
    """Zeros padding is a masked load, not a weight-0 read of whatever lies before the row:
    NaN in the last row and column (the memory just before the next row's and plane's first
    element) stays where the reference puts it, forward and backward (0 * NaN is NaN)."""
    nan = float("nan")
    x = _randn(gen, 2, 3, 9, 8)
    x[..., -1, :] = nan
    x[..., :, -1] = nan
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = kernels.triton_blur_pool2d(x, kernel_size=3, stride=2, padding_mode="zeros")
    yr = ref_blur(x.double(), 3, 2, "zeros")
    assert y.isnan().any() and not y.isnan().all()
    torch.testing.assert_close(y.double(), yr, equal_nan=True, atol=1e-5, rtol=1e-5)
    # backward: the transposed tables pad with -1 too; NaN in the output gradient's borders
    xk = _randn(gen, 2, 3, 9, 8).requires_grad_(True)
    xr = xk.detach().double().requires_grad_(True)
    g = torch.randn(2, 3, 5, 4, generator=gen, dtype=torch.float64).to(DEVICE)
    g[..., -1, :] = nan
    g[..., :, -1] = nan
    (gk,) = torch.autograd.grad(
        kernels.triton_blur_pool2d(xk, kernel_size=3, stride=2, padding_mode="zeros"), xk,
        g.float())
    (gr,) = torch.autograd.grad(ref_blur(xr, 3, 2, "zeros"), xr, g)
    torch.testing.assert_close(gk.double(), gr, equal_nan=True, atol=1e-5, rtol=1e-5)


@needs_triton
@pytest.mark.parametrize("op,ref", [(kernels.triton_blur_pool2d, ref_blur),
                                    (kernels.triton_max_blur_pool2d, ref_max_blur)])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_triton_half_dtypes(interpret, gen, op, ref, dtype):
    # The kernels accumulate in float32: they are within one rounding of the exact result.
    atol = 2e-3 if dtype == torch.float16 else 2e-2
    _compare(op, ref, _randn(gen, 2, 3, 10, 9, dtype=dtype), gen, atol=atol)


@needs_triton
@pytest.mark.parametrize("shape,k", [((2, 3, 1, 1), 3), ((2, 3, 2, 7), 5), ((1, 2, 6, 1), 4)])
def test_triton_reflect_on_a_too_short_axis_is_replicate(interpret, gen, shape, k):
    """An axis of size <= the blur's larger pad: replicate there, as the reference."""
    x = _randn(gen, *shape)
    _compare(kernels.triton_blur_pool2d, ref_blur, x, gen, kernel_size=k)
    _compare(kernels.triton_max_blur_pool2d, ref_max_blur, x, gen, kernel_size=1, blur_size=k)
    # the max-pooled map is the short one: 1x1 padded by 1 and max-pooled by 2 is 2x2
    _compare(kernels.triton_max_blur_pool2d, ref_max_blur, _randn(gen, 1, 2, 1, 1), gen,
             kernel_size=2, blur_size=5, padding=1)


@needs_triton
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("m,k", [(2, 3), (3, 2), (1, 5), (2, 7)])
def test_triton_max_blur_every_mode(interpret, gen, mode, m, k):
    _compare(kernels.triton_max_blur_pool2d, ref_max_blur, _randn(gen, 2, 3, 10, 9), gen,
             kernel_size=m, blur_size=k, padding_mode=mode)


@needs_triton
@pytest.mark.parametrize("m,pad", [(2, 0), (3, 1)])
def test_triton_max_blur_nan_is_the_maximum(interpret, gen, m, pad):
    """As max_pool2d: a NaN in a window is its maximum (forward) and takes the window's
    gradient (backward), so NaN spreads exactly as far as the reference spreads it."""
    x = _randn(gen, 1, 2, 9, 8)
    x[0, 0, 4, 3] = float("nan")
    x[0, 1, 0, 7] = float("nan")
    xk = x.clone().requires_grad_(True)
    xr = x.double().requires_grad_(True)
    yk = kernels.triton_max_blur_pool2d(xk, m, 2, 3, "zeros", padding=pad)
    yr = ref_max_blur(xr, m, 2, 3, "zeros", padding=pad)
    assert yr.isnan().any() and not yr.isnan().all()
    torch.testing.assert_close(yk.double(), yr, equal_nan=True, atol=1e-5, rtol=1e-5)
    g = torch.randn(yr.shape, generator=gen, dtype=torch.float64).to(DEVICE)
    (gk,) = torch.autograd.grad(yk, xk, g.float())
    (gr,) = torch.autograd.grad(yr, xr, g)
    assert gr[0, 0, 4, 3] != 0  # the NaN took gradient
    torch.testing.assert_close(gk.double(), gr, equal_nan=True, atol=1e-5, rtol=1e-5)


@needs_triton
@pytest.mark.parametrize("m,pad,stride", [(3, 1, 2), (2, 1, 2), (4, 2, 3), (3, 1, 1)])
def test_triton_max_blur_kernel_with_max_pool_padding(interpret, gen, m, pad, stride):
    """The ResNet stem's MaxBlurPool2d(3, 2, 1) and friends: -inf padding, ties routed to
    the first real maximum, all -inf windows, channels_last."""
    x = _randn(gen, 2, 3, 10, 9)
    for t in [x, x.contiguous(memory_format=torch.channels_last),
              torch.randint(0, 3, (2, 3, 9, 10), generator=gen).float().to(DEVICE)]:
        for mode in ("zeros", "reflect"):
            _compare(kernels.triton_max_blur_pool2d, ref_max_blur, t, gen, kernel_size=m,
                     stride=stride, padding_mode=mode, padding=pad)
    neg = torch.full((1, 2, 7, 8), float("-inf"), device=DEVICE)
    neg[0, 0, 3, 3] = 1.0
    xa, xb = neg.clone().requires_grad_(True), neg.clone().requires_grad_(True)
    ya = kernels.triton_max_blur_pool2d(xa, m, stride, 1, "zeros", padding=pad)
    yb = ref_max_blur(xb, m, stride, 1, "zeros", padding=pad)
    torch.testing.assert_close(ya, yb)
    ya.sum().backward()
    yb.sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad)
    assert xb.grad.abs().sum() > 0  # the all -inf windows route somewhere real


@needs_triton
def test_triton_max_blur_layouts_and_ties(interpret, gen):
    x = _randn(gen, 2, 4, 11, 8)
    y, _ = _compare(kernels.triton_max_blur_pool2d, ref_max_blur,
                    x.contiguous(memory_format=torch.channels_last), gen, stride=3)
    assert y.is_contiguous(memory_format=torch.channels_last)
    _compare(kernels.triton_max_blur_pool2d, ref_max_blur, x.transpose(-1, -2), gen)
    _compare(kernels.triton_max_blur_pool2d, ref_max_blur, _randn(gen, 1, 2, 3, 9, 7), gen,
             padding_mode="zeros")
    # Ties everywhere: the gradient must go to the first maximum of each window, as in
    # max_pool2d, or it lands on a different pixel than the reference's.
    ties = torch.randint(0, 3, (2, 3, 9, 10), generator=gen).float().to(DEVICE)
    _compare(kernels.triton_max_blur_pool2d, ref_max_blur, ties, gen)


def _double_backward(op, x, gy, v, **kw):
    """``d/d gy <grad_x, v>`` and ``d/dx |grad_x|^2`` (zero where unused) of ``op(x) . gy``."""
    xx = x.detach().requires_grad_(True)
    gy = gy.to(x.dtype).requires_grad_(True)
    (g,) = torch.autograd.grad(op(xx, **kw), xx, gy, create_graph=True)
    a, b = torch.autograd.grad((g * v.to(x.dtype)).sum() + (g ** 2).sum(), (gy, xx),
                               allow_unused=True)
    return a, torch.zeros_like(xx) if b is None else b


@needs_triton
@pytest.mark.parametrize("op,ref,shape,kw", [
    (kernels.triton_blur_pool2d, ref_blur, (2, 3, 7, 6),
     {"kernel_size": 4, "padding_mode": "circular"}),
    (kernels.triton_blur_pool2d, ref_blur, (1, 2, 2, 5, 6), {"stride": 3}),
    (kernels.triton_max_blur_pool2d, ref_max_blur, (2, 3, 7, 6),
     {"kernel_size": 3, "padding": 1, "padding_mode": "zeros"}),
    (kernels.triton_max_blur_pool2d, ref_max_blur, (1, 2, 2, 6, 5), {"blur_size": 4}),
])
def test_triton_double_backward_equals_the_reference(interpret, gen, op, ref, shape, kw):
    """Gradient penalties and Hessian-vector products differentiate the backward: the kernel's
    backward op had no autograd formula (a RuntimeError on the GPU path only)."""
    x = _randn(gen, *shape)
    if len(shape) == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    y = ref(x.double(), **kw)
    gy = torch.randn(y.shape, generator=gen, dtype=torch.float64).to(DEVICE)
    v = torch.randn(x.shape, generator=gen, dtype=torch.float64).to(DEVICE)
    got = _double_backward(op, x, gy, v, **kw)
    want = _double_backward(ref, x.double(), gy, v, **kw)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a.double(), b, atol=1e-5, rtol=1e-5)


@needs_triton
@pytest.mark.parametrize("k,s,p", [(3, 2, 0), (3, 2, 1), (2, 3, 0)])
def test_triton_takes_ceil_mode_after_its_padding(interpret, gen, k, s, p):
    """max_blur_pool2d(..., ceil_mode=True) pads first (the edge replicated as far as the
    extra window reaches), then dispatches: the Triton kernel takes the padded input and equals
    the reference, forward and backward, on contiguous, channels_last and 5-D group maps."""
    from equilayers.functional._ceil_mode import ceil_mode_pad

    x = _randn(gen, 2, 3, 10, 11)
    for t in (x, x.contiguous(memory_format=torch.channels_last), _randn(gen, 1, 2, 4, 10, 9)):
        padded = ceil_mode_pad(t, k, s, p, "replicate")
        assert padded.shape[-2] > t.shape[-2]  # H = 10 gets an extra window
        assert kernels.select("max_blur_pool2d", padded, kernel_size=k, stride=s,
                              padding=p)[0] == "triton"
        eh, ew = padded.shape[-2] - t.shape[-2], padded.shape[-1] - t.shape[-1]

        def ceil_by_inf(v, eh=eh, ew=ew):  # the reference on a -inf pad: torch's ceil window
            return ref_max_blur(F.pad(v, (0, ew, 0, eh), value=-float("inf")), k, s, 3,
                                "reflect", p)

        y, _ = _compare(lambda v: EF.max_blur_pool2d(v, k, s, p, ceil_mode=True), ceil_by_inf,
                        t, gen)
        assert y.shape[-2:] == F.max_pool2d(t.flatten(0, -3), k, s, p, ceil_mode=True).shape[-2:]


@needs_triton
@pytest.mark.parametrize("shape", [(2, 0, 5, 4), (1, 2, 0, 5, 4), (2, 3, 0, 5), (2, 3, 4, 0)])
def test_triton_empty_inputs_equal_the_reference(interpret, gen, shape):
    """A zero channel, fiber or spatial size: the empty result and gradient on every path
    (the kernel's tap tables raised ``max() arg is an empty sequence`` on a zero size)."""
    x = _randn(gen, *shape)
    for k, mode in [(1, "reflect"), (3, "reflect"), (4, "zeros")]:
        assert kernels.select("blur_pool2d", x, kernel_size=k, padding_mode=mode)[0] == "triton"
        _compare(kernels.triton_blur_pool2d, ref_blur, x, gen, kernel_size=k, padding_mode=mode)
    if 0 not in shape[-2:]:  # (an empty window is the spec's ValueError)
        _compare(kernels.triton_max_blur_pool2d, ref_max_blur, x, gen, kernel_size=3, padding=1)


def test_kernel_reference_takes_empty_inputs(gen):
    """The references, the specification (and the CPU path of float16), return the empty
    result of a zero channel count as the fast paths and kernels do (they raised PyTorch's
    errors from F.pad, conv2d and max_pool2d)."""
    for shape in [(2, 0, 5, 4), (1, 2, 0, 6, 4), (2, 3, 0, 5)]:
        for dtype in (torch.float16, torch.float64):
            x = torch.zeros(shape, dtype=dtype, requires_grad=True)
            y = ref_blur(x, 3, 2, "reflect")
            assert y.shape == (*shape[:-2], (shape[-2] - 1) // 2 + 1, (shape[-1] - 1) // 2 + 1)
            assert torch.autograd.grad(y.sum(), x)[0].shape == shape
            if shape[-2]:
                y = ref_max_blur(x, 2, 2, padding=1)
                assert y.shape == (*shape[:-2], (shape[-2] + 2 - 2) // 2 + 1,
                                   (shape[-1] + 2 - 2) // 2 + 1)
                assert torch.autograd.grad(y.sum(), x)[0].shape == shape
    y = ref_poly(torch.zeros(2, 0, 4, 6, dtype=torch.float16), 2, blur_size=3)
    assert y.shape == (2, 0, 2, 3)
    # the spec's own errors stay: circular padding of an empty axis
    with pytest.raises(ValueError, match="needs every spatial size >= 1"):
        ref_blur(torch.zeros(2, 3, 0, 5), 3, 2, "circular")


@needs_triton
@pytest.mark.parametrize("channels_last", [False, True])
def test_triton_int64_indexing_equals_the_int32_path(interpret, gen, monkeypatch, channels_last):
    """Launches of 2**31 or more output elements index in int64 (the int32 division of the
    smaller ones would wrap); forced here on small inputs, every kernel still equals the
    reference, forward and backward."""
    from equilayers.kernels import _triton

    x = _randn(gen, 2, 3, 11, 10)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    assert not _triton._launch("blur", x.numel(), x)["I64"]
    monkeypatch.setattr(_triton, "I64_FROM", 1)
    assert _triton._launch("blur", x.numel(), x)["I64"]
    _compare(kernels.triton_blur_pool2d, ref_blur, x, gen, kernel_size=3, stride=2,
             padding_mode="reflect")
    _compare(kernels.triton_max_blur_pool2d, ref_max_blur, x, gen, kernel_size=3, padding=1)
    x = x[..., :10, :]  # polyphase: even sizes
    y, index = kernels.triton_polyphase_pool2d(x, return_index=True)
    yr, index_r = ref_poly(x, return_index=True)
    assert torch.equal(index, index_r) and torch.equal(y, yr)
    g = torch.randn(y.shape, generator=gen).to(x.device)
    (gx,) = torch.autograd.grad(kernels.triton_polyphase_pool2d(x.requires_grad_()), x, g)
    assert torch.equal(gx[..., 0::2, 0::2][index == 0], g[index == 0])


def test_triton_launch_indexes_in_int32_below_the_limit():
    """The int32 flat index covers a launch's last program (up to BLOCK past ``total``)."""
    _triton = pytest.importorskip("equilayers.kernels._triton")
    x = torch.empty(0)
    assert _triton.I64_FROM + max(b for pair in _triton.LAUNCH.values() for b, _ in pair) <= 2**31
    assert _triton.I64_FROM + 4096 <= 2**31  # the interpreter's BLOCK
    assert not _triton._launch("blur", _triton.I64_FROM - 1, x)["I64"]
    assert _triton._launch("blur", _triton.I64_FROM, x)["I64"]


@needs_triton
def test_triton_opcheck(interpret, gen):
    from equilayers.kernels import _ops

    x = _randn(gen, 2, 3, 9, 11).requires_grad_(True)
    cl = _randn(gen, 2, 5, 8, 7).contiguous(memory_format=torch.channels_last)
    for args in [(x, 3, 2, "reflect"), (cl.requires_grad_(True), 4, 3, "circular")]:
        torch.library.opcheck(_ops.blur_pool2d, args)
    torch.library.opcheck(_ops.max_blur_pool2d, (x, 2, 2, 3, "zeros"))
    torch.library.opcheck(_ops.max_blur_pool2d, (x, 3, 2, 3, "reflect", 1))
    g = _randn(gen, 2, 3, 5, 6)
    torch.library.opcheck(_ops.blur_pool2d_backward, (g, 9, 11, 3, 2, "replicate"))
    torch.library.opcheck(_ops.max_blur_pool2d_backward, (_randn(gen, 2, 3, 4, 5), x.detach(),
                                                          2, 2, 3, "reflect"))
    torch.library.opcheck(_ops.max_blur_pool2d_backward, (_randn(gen, 2, 3, 5, 6), x.detach(),
                                                          3, 2, 3, "zeros", 1))
    # gradients that require grad: the backward ops' own autograd formulas (double backward)
    torch.library.opcheck(_ops.blur_pool2d_backward,
                          (g.requires_grad_(True), 9, 11, 3, 2, "replicate"))
    torch.library.opcheck(_ops.max_blur_pool2d_backward,
                          (_randn(gen, 2, 3, 5, 6).requires_grad_(True), x.detach(), 3, 2, 3,
                           "zeros", 1))


@needs_triton
def test_triton_compile_fullgraph_sees_one_op(interpret, gen):
    targets = []

    def backend(gm, example_inputs):
        targets.extend(str(n.target) for n in gm.graph.nodes if n.op == "call_function")
        return gm.forward

    def f(t):
        return kernels.dispatch("max_blur_pool2d", t, kernel_size=2, stride=2, blur_size=3,
                                padding_mode="reflect")

    x = _randn(gen, 2, 3, 9, 8)
    out = torch.compile(f, fullgraph=True, backend=backend)(x)
    assert targets == ["equilayers.max_blur_pool2d.default"]
    torch.testing.assert_close(out, ref_max_blur(x))


@needs_triton
@pytest.mark.parametrize("name", ["blur_pool2d", "max_blur_pool2d", "polyphase_pool2d"])
def test_triton_entries_refuse_torch_func_and_forward_ad(interpret, gen, name):
    """The direct Triton entries inside torch.func or forward-mode AD: a RuntimeError naming
    the functional op (whose dispatch takes the reference there, which gives the right
    tangent). Before: torch.func.jvp's tangent came back zero, forward AD's None, silently."""
    from torch.autograd import forward_ad as fwAD

    entry, op = getattr(kernels, f"triton_{name}"), getattr(EF, name)
    x = _randn(gen, 1, 2, 6, 6)
    v = torch.randn(x.shape, generator=gen).to(DEVICE)
    entry(x)  # control: the kernel runs outside the transforms
    match = f"triton_{name}: .* equilayers.functional.{name}"
    with pytest.raises(RuntimeError, match=match):
        torch.func.jvp(entry, (x,), (v,))
    with pytest.raises(RuntimeError, match=match), fwAD.dual_level():
        entry(fwAD.make_dual(x, v))
    with pytest.raises(RuntimeError, match=match):
        torch.func.vmap(entry)(x[None])
    with fwAD.dual_level():  # the functional op: the reference's tangent, not zero
        tangent = fwAD.unpack_dual(op(fwAD.make_dual(x, v))).tangent
    torch.testing.assert_close(tangent, torch.func.jvp(op, (x,), (v,))[1])
    assert tangent.abs().sum() > 0


@needs_triton
def test_triton_functional_dispatches_to_the_kernel(interpret, gen):
    x = _randn(gen, 2, 3, 9, 10)
    assert kernels.select("max_blur_pool2d", x)[0] == "triton"
    _compare(EF.max_blur_pool2d, ref_max_blur, x, gen, padding_mode="circular")
    _compare(EF.blur_pool2d, ref_blur, x, gen, kernel_size=5)
