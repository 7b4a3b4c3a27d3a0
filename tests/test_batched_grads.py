"""Batched backward passes: ``torch.autograd.grad(..., is_grads_batched=True)``,
``torch.autograd.functional.jacobian``/``hessian(vectorize=True)`` and
``gradcheck(check_batched_grad=True)`` run the backward pass on a batch of gradients (torch's
legacy batched tensor; no ``torch.func`` transform is active then). The hand-written backwards
wrote that gradient into unbatched buffers (``out=``, ``copy_``, in-place ops) and raised
"Batching rule not implemented for aten::alias" and the like, 34 of the 130 zoo modules; they
take their plain-op branch for it now (``equilayers.kernels._autodiff.batched_grad``). Each
check through the default dispatch and under :func:`equilayers.kernels.use_reference`."""

from __future__ import annotations

import contextlib

import pytest
import torch
from _training_loop_common import NAMES, _first, _model, _same
from torch import nn

from equilayers import functional as EF
from equilayers import kernels
from equilayers import nn as enn
from equilayers.kernels._autodiff import batched_grad

CONTEXTS = {"dispatch": contextlib.nullcontext, "reference": kernels.use_reference}


@pytest.mark.parametrize("context", CONTEXTS)
@pytest.mark.parametrize("name", NAMES)
def test_batched_backward_equals_the_loop(name, context, gen):
    """Every zoo module, train and eval mode: the backward of a batch of three gradients
    equals three backward calls."""
    m, args = _model(name)
    x0, rest = args[0], args[1:]
    for mode in (True, False):
        m.train(mode)
        with CONTEXTS[context]():
            x = x0.clone().requires_grad_(True)
            y = _first(m(x, *rest))
            u = torch.randn((3, *y.shape), generator=gen, dtype=y.dtype)
            loop = torch.stack([torch.autograd.grad(y, x, g, retain_graph=True)[0] for g in u])
            (batched,) = torch.autograd.grad(y, x, u, is_grads_batched=True)
        _same(batched, loop, rtol=1e-10, atol=1e-10)


def _pool(kernel_size):
    return lambda: (lambda t: kernels.max_pool2d_stride1(t, kernel_size))


#: Small cases, one or more per hand-written backward: (build, input shape).
SMALL = {
    "BlurPool2d": (lambda: enn.BlurPool2d(2), (1, 2, 6, 6)),
    "MaxBlurPool2d": (lambda: enn.MaxBlurPool2d(), (1, 2, 6, 6)),
    "MaxBlurPool2d[ceil]": (lambda: enn.MaxBlurPool2d(3, 2, ceil_mode=True), (1, 2, 6, 5)),
    "max_pool2d_stride1[2]": (_pool(2), (1, 2, 4, 4)),
    "max_pool2d_stride1[3]": (_pool(3), (1, 2, 4, 5)),
    "BlurConv2d[fold]": (lambda: enn.BlurConv2d(2, 2, 3, padding=1, fold=True), (1, 2, 5, 6)),
    "GroupPool": (lambda: enn.GroupPool(), (1, 2, 4, 3, 3)),
    "NormNonlinearity": (lambda: enn.NormNonlinearity(2, 1), (1, 2, 3, 3, 3)),
    "NormNonlinearity[volume]": (
        lambda: enn.NormNonlinearity(2, 1, group="o2", spatial_dims=3), (1, 2, 3, 2, 2, 3)),
    "GatedNonlinearity": (lambda: enn.GatedNonlinearity(1), (1, 2, 3, 3, 3)),
    "GatedNonlinearity[first_half]": (
        lambda: enn.GatedNonlinearity(1, gates="first_half"), (1, 4, 3, 2, 3)),
    "NormPool": (lambda: enn.NormPool(1), (1, 2, 3, 3, 3)),
}


def _small(name, gen):
    build, shape = SMALL[name]
    f = build()
    if isinstance(f, nn.Module):
        f = f.double()
    return f, torch.randn(shape, generator=gen, dtype=torch.float64)


@pytest.mark.parametrize("context", CONTEXTS)
@pytest.mark.parametrize("name", SMALL)
def test_vectorized_jacobian_and_batched_gradcheck(name, context, gen):
    """``jacobian(vectorize=True)`` equals the loop's, ``hessian(vectorize=True)`` of a scalar
    loss the loop's, and ``gradcheck(check_batched_grad=True)`` passes, in float64."""
    f, x = _small(name, gen)

    def loss(t):
        return f(t).square().sum()

    with CONTEXTS[context]():
        want = torch.autograd.functional.jacobian(f, x)
        got = torch.autograd.functional.jacobian(f, x, vectorize=True)
        want_h = torch.autograd.functional.hessian(loss, x)
        got_h = torch.autograd.functional.hessian(loss, x, vectorize=True)
        assert torch.autograd.gradcheck(f, (x.requires_grad_(True),), check_batched_grad=True)
    _same(got, want, rtol=1e-10, atol=1e-10)
    _same(got_h, want_h, rtol=1e-10, atol=1e-10)


def test_batched_grad_tells_a_batch_of_gradients():
    """The helper is True for the gradient a backward receives from ``is_grads_batched=True``
    and False for a plain one (the control: the plain backward sees False)."""
    seen = []

    class Probe(torch.autograd.Function):
        @staticmethod
        def forward(ctx, t):
            return t * 2

        @staticmethod
        def backward(ctx, g):
            seen.append(batched_grad(g))
            return g * 2

    x = torch.randn(3, requires_grad=True)
    torch.autograd.grad(Probe.apply(x), x, torch.eye(3), is_grads_batched=True)
    torch.autograd.grad(Probe.apply(x), x, torch.ones(3))
    assert seen == [True, False]
    assert not batched_grad(torch.ones(3))


#: The CPU fast paths of the blur pools, each forced: (op, fast path).
FAST = [(op, path) for op in ("blur_pool2d", "max_blur_pool2d")
        for path in ("separable", "depthwise_conv")]
_CALLS = {"blur_pool2d": lambda t, mode: EF.blur_pool2d(t, 3, 2, mode),
          "max_blur_pool2d": lambda t, mode: EF.max_blur_pool2d(t, 2, 2, padding_mode=mode)}


@pytest.mark.parametrize("channels_last", [False, True], ids=["contiguous", "channels_last"])
@pytest.mark.parametrize("mode", ["reflect", "zeros", "circular"])
@pytest.mark.parametrize("op,path", FAST)
def test_forced_fast_paths_take_a_batch_of_gradients(op, path, mode, channels_last, gen):
    """Each CPU fast path of the blur pools, forced, on each layout and padding mode: a batch
    of gradients equals the loop's, and ``gradcheck(check_batched_grad=True)`` passes. (The
    depthwise conv's border-ring backward asked a batched gradient for its channels_last
    layout: "NYI: querying is_contiguous inside of vmap" for every mode but zeros.)"""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(1, 2, 7, 6, generator=gen, dtype=torch.float64).contiguous(
        memory_format=fmt).requires_grad_(True)

    def f(t):
        return _CALLS[op](t, mode)

    with kernels.use_fast_path(path):
        assert kernels.choose(op, x, padding_mode=mode).fast_path == path
        y = f(x)
        u = torch.randn((3, *y.shape), generator=gen, dtype=y.dtype)
        loop = torch.stack([torch.autograd.grad(y, x, g, retain_graph=True)[0] for g in u])
        (batched,) = torch.autograd.grad(y, x, u, is_grads_batched=True)
        assert torch.autograd.gradcheck(f, (x,), check_batched_grad=True)
    _same(batched, loop, rtol=1e-10, atol=1e-10)


def test_default_route_to_the_depthwise_conv_takes_a_batch_of_gradients(gen):
    """Unforced: a channels_last 112 px reflect blur pool with autograd recording is what the
    layout table sends to ``depthwise_conv``; its batched backward and
    ``jacobian(vectorize=True)`` equal the reference's."""
    x = torch.randn(1, 2, 112, 112, generator=gen).contiguous(
        memory_format=torch.channels_last).requires_grad_(True)
    assert kernels.choose("blur_pool2d", x).fast_path == "depthwise_conv", (
        "the layout table no longer routes this call to depthwise_conv: pick an input it does")
    pool = enn.BlurPool2d()
    y = pool(x)
    u = torch.randn((2, *y.shape), generator=gen)
    (batched,) = torch.autograd.grad(y, x, u, is_grads_batched=True)
    jac = torch.autograd.functional.jacobian(lambda t: pool(t)[0, 0, :2, :2], x, vectorize=True)
    with kernels.use_reference():
        y_ref = pool(x)
        (want,) = torch.autograd.grad(y_ref, x, u, is_grads_batched=True)
        want_jac = torch.autograd.functional.jacobian(lambda t: pool(t)[0, 0, :2, :2], x,
                                                      vectorize=True)
    _same(batched, want, rtol=1e-5, atol=1e-6)
    _same(jac, want_jac, rtol=1e-5, atol=1e-6)
