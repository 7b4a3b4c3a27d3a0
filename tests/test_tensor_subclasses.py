"""A tensor subclass comes through every zoo module as through ``nn.AvgPool2d``: the same values
as the reference path (``kernels.use_reference()``) gives the plain tensors, and the subclass
kept. Two kinds: torch's ``TwoTensor`` test subclass (a ``__torch_dispatch__`` wrapper: every
op runs on both halves, so ``m(TwoTensor(a, b))`` is ``TwoTensor(m(a), m(b))``) and a
``__torch_function__`` subclass. The 2-D blur pools' CPU fast path wrote into plain ``out=``
buffers: it returned a plain tensor, for ``TwoTensor`` one holding a mix of both halves (a
silent wrong answer, and a U-Net's both halves wrong)."""

from __future__ import annotations

import contextlib
import warnings

import pytest
import torch
from _refs import needs_triton
from _zoo import ZOO, build
from torch.testing._internal.two_tensor import TwoTensor

from equilayers import functional as EF
from equilayers import kernels
from equilayers.kernels import _dispatch

NAMES = sorted(ZOO)


class Logged(torch.Tensor):
    """A ``__torch_function__`` subclass that counts the torch calls it sees."""

    calls = 0

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        Logged.calls += 1
        return super().__torch_function__(func, types, args, kwargs or {})


def _outputs(out) -> list[torch.Tensor]:
    return [out] if isinstance(out, torch.Tensor) else [o for o in out if o is not None]


def _call(m, x, rest, reference: bool = False) -> list[torch.Tensor]:
    return _run(m, x, rest, None, reference)[0]


def _run(m, x, rest, grads=None, reference: bool = False):
    """``(outputs, the input's gradient)`` of ``m`` at ``x``: with ``grads`` (one per output)
    the backward of the outputs that carry a gradient, else a forward without autograd."""
    x = x.detach().requires_grad_(grads is not None)
    with warnings.catch_warnings(), torch.set_grad_enabled(grads is not None), (
            kernels.use_reference() if reference else contextlib.nullcontext()):
        warnings.simplefilter("ignore")  # grid-exactness warnings of the zoo's sizes
        outs = _outputs(m(x, *rest))
    pairs = [(o, g) for o, g in zip(outs, grads or (), strict=False) if o.requires_grad]
    if not pairs:
        return outs, None
    (gx,) = torch.autograd.grad([o for o, _ in pairs], x, [g for _, g in pairs])
    return [o.detach() for o in outs], gx


def _two_tensor_mismatch(got, want_a, want_b) -> str | None:
    """Why ``got`` (a module's outputs on ``TwoTensor(a, b)``, or the input's gradient) is not
    ``TwoTensor(m(a), m(b))`` (the reference path's on ``a`` and ``b``), or ``None``."""
    for i, (o, ra, rb) in enumerate(zip(got, want_a, want_b, strict=True)):
        if not isinstance(o, TwoTensor):
            return f"output {i} is a {type(o).__name__}, not a TwoTensor"
        for half, r in (("a", ra), ("b", rb)):
            v = getattr(o, half)
            if v.shape != r.shape or not torch.allclose(v, r, atol=1e-5, rtol=1e-5):
                err = (v - r).abs().max().item() if v.shape == r.shape else "shape"
                return f"output {i}: half {half} is off the reference by {err}"
    return None


def _second(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    return torch.randn(x.shape, generator=gen, dtype=x.dtype)


LAST = {4: torch.channels_last, 5: torch.channels_last_3d}


def _laid_out(x: torch.Tensor, layout: str) -> torch.Tensor:
    if layout == "contiguous":
        return x.contiguous()
    if x.dim() not in LAST:
        pytest.skip(f"a {x.dim()}-D input has no channels-last layout")
    return x.contiguous(memory_format=LAST[x.dim()])


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("name", NAMES)
def test_a_dispatch_subclass_gets_the_reference_values(name, layout, gen):
    """Outputs and the input's gradient (eval mode, autograd on: the fast paths' hand-written
    backwards run) on each half equal the reference path's on that half."""
    m, args = build(name)
    x, rest = _laid_out(args[0], layout), args[1:]
    assert x.is_floating_point()
    x2 = _laid_out(_second(x, gen), layout)
    want_a = _call(m, x, rest, True)
    ga = [torch.randn(o.shape, generator=gen) for o in want_a]
    gb = [torch.randn(o.shape, generator=gen) for o in want_a]
    want_a, gxa = _run(m, x, rest, ga, True)
    want_b, gxb = _run(m, x2, rest, gb, True)
    gt = [TwoTensor(a, b) for a, b in zip(ga, gb, strict=True)]
    got, gx = _run(m, TwoTensor(x, x2), rest, gt)
    why = _two_tensor_mismatch(got, want_a, want_b)
    assert why is None, why
    assert (gx is None) == (gxa is None)
    why = gx is not None and _two_tensor_mismatch([gx], [gxa], [gxb])
    assert not why, f"the input's gradient: {why}"


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("name", NAMES)
def test_a_function_subclass_is_kept(name, layout):
    m, args = build(name)
    x, rest = _laid_out(args[0], layout), args[1:]
    want = _call(m, x, rest, True)
    Logged.calls = 0
    got = _call(m, x.as_subclass(Logged), rest)
    assert Logged.calls > 0
    for o, r in zip(got, want, strict=True):
        assert type(o) is Logged, f"a {type(o).__name__} came back"
        torch.testing.assert_close(o.as_subclass(torch.Tensor), r, atol=1e-5, rtol=1e-5)


# the CPU fast paths themselves, forward and backward, each forced: (op, fast path, call)
FAST_CALLS = [
    ("blur_pool2d", "separable", lambda t: EF.blur_pool2d(t, 3, 2, "reflect")),
    ("blur_pool2d", "depthwise_conv", lambda t: EF.blur_pool2d(t, 3, 2, "circular")),
    ("max_blur_pool2d", "separable", lambda t: EF.max_blur_pool2d(t, 2, 2)),
    ("max_blur_pool2d", "separable", lambda t: EF.max_blur_pool2d(t, 3, 2, padding=1)),
    ("max_blur_pool2d", "depthwise_conv", lambda t: EF.max_blur_pool2d(t, 2, 2)),
    ("polyphase_pool2d", "chunked_norms", lambda t: EF.polyphase_pool2d(t, 2, blur_size=3)),
    (None, None, lambda t: kernels.max_pool2d_stride1(t, 2)),
    (None, None, lambda t: kernels.max_pool2d_stride1(t, 3)),
]


def _forward_backward(fn, x: torch.Tensor, g: torch.Tensor):
    x = x.detach().requires_grad_(True)
    y = fn(x)
    y.backward(g)
    return y.detach(), x.grad


@pytest.mark.parametrize("case", range(len(FAST_CALLS)))
def test_fast_paths_step_aside_for_a_subclass(case, gen):
    """Forward and backward of a TwoTensor where a CPU fast path runs for plain tensors equal
    the reference on each half (the gradient a TwoTensor too)."""
    op, fast_path, fn = FAST_CALLS[case]
    a, b = torch.randn(2, 3, 10, 12, generator=gen), torch.randn(2, 3, 10, 12, generator=gen)
    with kernels.use_reference():
        shape = fn(a).shape
    ga, gb = torch.randn(shape, generator=gen), torch.randn(shape, generator=gen)
    with kernels.use_fast_path(fast_path or "separable"):
        if op is not None:  # a plain tensor takes that fast path, a subclass the reference
            assert kernels.choose(op, a).fast_path == fast_path
            assert kernels.choose(op, TwoTensor(a, b)).path == "reference"
            assert "tensor subclass" in kernels.explain(op, a.as_subclass(Logged))
        y, gx = _forward_backward(fn, TwoTensor(a, b), TwoTensor(ga, gb))
    for half, x, g in (("a", a, ga), ("b", b, gb)):
        with kernels.use_reference():
            ry, rgx = _forward_backward(fn, x, g)
        torch.testing.assert_close(getattr(y, half), ry, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(getattr(gx, half), rgx, atol=1e-5, rtol=1e-5)


def test_the_check_can_fail(gen, monkeypatch):
    """Negative control: with the fast path taking subclasses again (the old rule), BlurPool2d
    on a TwoTensor is caught (a plain tensor with both halves mixed)."""
    m, (x,) = build("BlurPool2d")
    x2 = _second(x, gen)
    want = (_call(m, x, (), True), _call(m, x2, (), True))
    monkeypatch.setattr(_dispatch, "plain_tensor", lambda t: True)
    _dispatch._memo.clear()
    try:
        assert _two_tensor_mismatch(_call(m, TwoTensor(x, x2), ()), *want) is not None
        assert type(_call(m, x.as_subclass(Logged), ())[0]) is torch.Tensor
    finally:
        _dispatch._memo.clear()


@needs_triton
@pytest.mark.parametrize("op,kwargs", [
    ("blur_pool2d", {"kernel_size": 3, "stride": 2}),
    ("max_blur_pool2d", {"kernel_size": 2, "stride": 2}),
    ("polyphase_pool2d", {"stride": 2, "blur_size": 3}),
])
def test_the_triton_kernels_take_a_subclass_through_the_custom_op(interpret, gen, op, kwargs):
    """On the Triton path a subclass sees the custom op, whose ``__torch_dispatch__`` (or
    ``__torch_function__``) handles it like any op: the reference's values, the type kept."""
    from _refs import DEVICE

    a = torch.randn(2, 3, 8, 8, generator=gen).to(DEVICE)
    b = torch.randn(2, 3, 8, 8, generator=gen).to(DEVICE)
    assert kernels.choose(op, TwoTensor(a, b), **kwargs).path == "triton"
    with kernels.use_reference():
        ra, rb = (kernels.dispatch(op, t, **kwargs) for t in (a, b))
    y = kernels.dispatch(op, TwoTensor(a, b), **kwargs)
    assert isinstance(y, TwoTensor)
    torch.testing.assert_close(y.a, ra, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(y.b, rb, atol=1e-5, rtol=1e-5)
    y = kernels.dispatch(op, a.as_subclass(Logged), **kwargs)
    assert type(y) is Logged
    torch.testing.assert_close(y.as_subclass(torch.Tensor), ra, atol=1e-5, rtol=1e-5)
