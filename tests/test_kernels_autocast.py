"""Under ``torch.autocast`` every path of every dispatched op returns what its reference
returns: the same dtype (the reference is the specification) and values within the dtype's
rounding, forward and backward.

autocast casts a conv's inputs to its dtype and leaves elementwise ops alone, so the
references, which blur with a depthwise ``F.conv2d``, returned bfloat16 where the separable
fast paths, the polyphase fast path and the Triton kernels (none of them autocast ops)
returned float32, and ``BlurPool2d``'s output dtype changed between train and eval mode and
with the input's size and layout. The dispatcher now casts the input to autocast's dtype
first wherever the reference computes in it (:mod:`equilayers.kernels._amp`). Each path is
forced (``use_fast_path``, ``use_reference``; the Triton kernels through Triton's
interpreter, with ``TRITON_INTERPRET=1``, as the other kernel tests)."""

from __future__ import annotations

import contextlib

import pytest
import torch
from _refs import needs_triton

from equilayers import kernels
from equilayers import nn as enn

#: Per dispatched op, its calls: the blur's conv runs (the reference returns autocast's
#: dtype) or does not (a blur of size 1, polyphase sampling without a blur: the input's).
CALLS = {
    "blur_pool2d": {
        "k3-reflect": dict(kernel_size=3, stride=2, padding_mode="reflect"),
        "k3-zeros": dict(kernel_size=3, stride=2, padding_mode="zeros"),
        "k2-circular": dict(kernel_size=2, stride=2, padding_mode="circular"),
        "k1": dict(kernel_size=1, stride=2, padding_mode="reflect"),
    },
    "max_blur_pool2d": {
        "b3": dict(kernel_size=2, stride=2, blur_size=3, padding_mode="reflect", padding=0),
        "k3-pad1-zeros": dict(kernel_size=3, stride=2, blur_size=3, padding_mode="zeros",
                              padding=1),
        "b1": dict(kernel_size=2, stride=2, blur_size=1, padding_mode="reflect", padding=0),
    },
    "polyphase_pool2d": {
        "b1": dict(stride=2),
        "b3-index": dict(stride=2, blur_size=3, padding_mode="circular", return_index=True),
        "b2-reflect": dict(stride=2, blur_size=2, padding_mode="reflect"),
    },
}


def _paths(op):
    fast = tuple(kernels.FAST_OPS.get(op, {}).get("cpu", {}))
    return ("reference", *fast, *(("triton",) if op in kernels.KERNEL_OPS else ()))


CASES = [pytest.param(op, call, path, marks=[needs_triton] if path == "triton" else [],
                      id=f"{op}-{call}-{path}")
         for op, calls in CALLS.items() for call in calls for path in _paths(op)]
#: (autocast dtype, input dtype): a float32 input, a float16 one under bfloat16 (autocast
#: casts it too) and float64 (which autocast leaves alone).
DTYPES = [(torch.bfloat16, torch.float32), (torch.float16, torch.float32),
          (torch.bfloat16, torch.float16), (torch.bfloat16, torch.float64)]
TOL = {torch.bfloat16: 2e-2, torch.float16: 4e-3, torch.float32: 1e-5, torch.float64: 1e-10}


def test_every_dispatched_op_is_covered():
    """A new op of the table needs its calls here."""
    assert set(CALLS) == set(kernels.KERNEL_OPS) | set(kernels.FAST_OPS)


def _run(op, x, kwargs, gy):
    """The output(s) of ``op`` under the current context and autocast, and x's gradient
    (the backward outside autocast, as a training step runs it)."""
    x = x.detach().requires_grad_(True)
    out = kernels.dispatch(op, x, **kwargs)
    y, index = out if isinstance(out, tuple) else (out, None)
    with torch.autocast("cpu", enabled=False):
        (g,) = torch.autograd.grad(y, x, gy.to(y.dtype), allow_unused=True)
    return y, index, g


@pytest.mark.parametrize("amp,dtype", DTYPES, ids=lambda d: str(d).replace("torch.", ""))
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "empty"])
@pytest.mark.parametrize("op,call,path", CASES)
def test_each_path_returns_the_references_dtype_under_autocast(op, call, path, layout, amp,
                                                               dtype, gen, request):
    kwargs = CALLS[op][call]
    shape = (0, 3, 8, 8) if layout == "empty" else (2, 3, 8, 8)
    x = torch.randn(shape, generator=gen)
    if op == "max_blur_pool2d":
        # values exact in autocast's dtype: the reference max-pools x before its conv casts,
        # the other paths the cast x, and two values that round alike are a tie only there
        # (the gradient then goes to the first of them: the same outputs, another subgradient)
        x = x.to(amp)
    x = x.to(dtype)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    if path == "triton":
        request.getfixturevalue("interpret")
        context = contextlib.nullcontext()
    else:
        context = kernels.use_reference() if path == "reference" else kernels.use_fast_path(path)
    with torch.autocast("cpu", amp), kernels.use_reference():
        want = kernels.dispatch(op, x, **kwargs)
        want = want[0] if isinstance(want, tuple) else want
    gy = torch.randn(want.shape, generator=gen)
    with torch.autocast("cpu", amp), kernels.use_reference():
        y_ref, index_ref, g_ref = _run(op, x, kwargs, gy)
    with torch.autocast("cpu", amp), context:
        y, index, g = _run(op, x, kwargs, gy)
    assert y.dtype == y_ref.dtype, (op, call, path, y.dtype, y_ref.dtype)
    assert g is None and g_ref is None or g.dtype == g_ref.dtype == x.dtype
    tol = TOL[y_ref.dtype]
    torch.testing.assert_close(y.double(), y_ref.double(), rtol=tol, atol=tol)
    if g is not None:
        torch.testing.assert_close(g.double(), g_ref.double(), rtol=tol, atol=tol)
    if index_ref is not None:
        assert torch.equal(index, index_ref)


def test_the_reference_dtypes_the_cases_assume():
    """The control: autocast changes the reference's output dtype exactly where its conv runs
    (so the test above compares with both kinds of result)."""
    x = torch.randn(1, 2, 8, 8)
    with torch.autocast("cpu", torch.bfloat16), kernels.use_reference():
        got = {(op, call): kernels.dispatch(op, x, **kw) for op, calls in CALLS.items()
               for call, kw in calls.items()}
    got = {k: (v[0] if isinstance(v, tuple) else v).dtype for k, v in got.items()}
    stays = {("blur_pool2d", "k1"), ("max_blur_pool2d", "b1"), ("polyphase_pool2d", "b1")}
    assert got == {k: torch.float32 if k in stays else torch.bfloat16 for k in got}


@pytest.mark.parametrize("size", [32, 64, 112])
@pytest.mark.parametrize("channels_last", [False, True])
def test_blur_pool_module_dtype_under_autocast_is_the_same_in_train_and_eval(size,
                                                                             channels_last):
    """The tester's case: ``BlurPool2d`` under bfloat16 autocast gave bfloat16 without
    autograd (depthwise_conv) and float32 with it (separable) at 32 px."""
    x = torch.randn(2, 8, size, size)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    pool = enn.BlurPool2d()
    with torch.autocast("cpu", torch.bfloat16):
        dtypes = {pool(x).dtype, pool(x.requires_grad_(True)).dtype}
    assert dtypes == {torch.bfloat16}


def test_choose_and_explain_say_what_dispatch_runs_under_autocast():
    """On CPU the input cast to bfloat16 takes the reference (the fast paths take float32 and
    float64); the reason says so. Without autocast the same call takes a fast path."""
    x = torch.randn(2, 3, 16, 16)
    assert kernels.choose("blur_pool2d", x).path == "fast"
    with torch.autocast("cpu", torch.bfloat16):
        choice = kernels.choose("blur_pool2d", x)
        assert choice.path == "reference"
        assert "autocast" in choice.reason and "bfloat16" in choice.reason
        assert "autocast" in kernels.explain("blur_pool2d", x)
        assert kernels.choose("blur_pool2d", x, kernel_size=1).path == "fast"  # no conv


@needs_triton
def test_the_triton_kernel_takes_the_cast_input(interpret):
    """Where autocast casts, the Triton kernel still runs (in bfloat16: AMP keeps it)."""
    x = torch.randn(2, 3, 8, 8)
    with torch.autocast("cpu", torch.bfloat16):
        choice = kernels.choose("max_blur_pool2d", x)
    assert choice.path == "triton" and "bfloat16" in choice.reason


@needs_triton
@pytest.mark.parametrize("op,call", [(op, call) for op, calls in CALLS.items()
                                     for call in calls if op in kernels.KERNEL_OPS])
def test_the_direct_triton_entries_return_the_references_dtype(op, call, interpret, gen):
    """``kernels.triton_<op>`` (the kernel without dispatch) casts as dispatch does."""
    x = torch.randn(2, 3, 8, 8, generator=gen)
    with torch.autocast("cpu", torch.bfloat16):
        out = getattr(kernels, f"triton_{op}")(x, **CALLS[op][call])
        with kernels.use_reference():
            want = kernels.dispatch(op, x, **CALLS[op][call])
    out, want = (t[0] if isinstance(t, tuple) else t for t in (out, want))
    assert out.dtype == want.dtype
    torch.testing.assert_close(out.double(), want.double(), rtol=TOL[want.dtype],
                               atol=TOL[want.dtype])
