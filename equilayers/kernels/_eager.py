"""The custom ops of :mod:`._ops` in plain eager mode: the same kernels through
``torch.autograd.Function``, without ``torch.library``'s per-call Python.

A ``torch.library`` custom op costs Python on every eager call: the dispatcher calls a
Python autograd kernel, which fills the schema's defaults, builds a generated
``autograd.Function`` and redispatches to a Python backend kernel; the backward op goes through
the same again. For a pool call that launches one or two small kernels this was most of the
call's host time (measured with the launches stubbed: ``benchmarks/host_overhead.py``). So
where nothing can see the difference, :func:`plain` calls, the kernels run through the
``autograd.Function`` below, which computes exactly what the op computes (the same
``_triton`` functions on the same arguments, the same saved tensors, the same backward;
a double backward, ``create_graph=True``, and a batch of gradients, ``is_grads_batched=True``,
go through the differentiable backward ops of :mod:`._ops`). Everywhere else the custom op
runs, so that a compiler, a tracer, a dispatch or function mode (``FakeTensorMode``,
``FlopCounterMode``, ``make_fx``, ``with torch.device(...)``) or a tensor subclass sees one op,
as before.

Imported only when a kernel runs (this module imports Triton, through :mod:`._triton`).
"""

from __future__ import annotations

import torch

from . import _ops, _triton
from ._autodiff import batched_grad
from ._ops import _as_4d, _like_5d

__all__ = ["blur_pool2d", "max_blur_pool2d", "plain", "polyphase_pool2d"]


def plain(x: torch.Tensor) -> bool:
    """Whether a call on ``x`` may skip the custom op: ``x`` is a plain ``torch.Tensor``, no
    torch function or dispatch mode is active, and nothing compiles or traces."""
    # (is_compiling first: dynamo traces this, and cannot trace the mode stacks' lengths)
    return (not torch.compiler.is_compiling() and type(x) is torch.Tensor
            and not torch._C._len_torch_function_stack()
            and not torch._C._len_torch_dispatch_stack() and not torch.jit.is_tracing())


def _recording(x: torch.Tensor) -> bool:
    return x.requires_grad and torch.is_grad_enabled()


# --- blur_pool2d -------------------------------------------------------------------------------

def _blur(x, kernel_size, stride, padding_mode):
    return _like_5d(_triton.blur_forward(_as_4d(x), kernel_size, stride, padding_mode), x)


class _BlurPool2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, kernel_size, stride, padding_mode):
        ctx.args = (x.shape[-2], x.shape[-1], kernel_size, stride, padding_mode)
        return _blur(x, kernel_size, stride, padding_mode)

    @staticmethod
    def backward(ctx, grad):
        # create_graph, or a batch of gradients (is_grads_batched=True): the differentiable op
        if torch.is_grad_enabled() or not plain(grad) or batched_grad(grad):
            return _ops.blur_pool2d_backward(grad, *ctx.args), None, None, None
        gx = _triton.blur_backward(_as_4d(grad), *ctx.args)
        return _like_5d(gx, grad), None, None, None


def blur_pool2d(x: torch.Tensor, kernel_size: int, stride: int,
                padding_mode: str) -> torch.Tensor:
    """:func:`._ops.blur_pool2d`, for a :func:`plain` call."""
    if _recording(x):
        return _BlurPool2d.apply(x, kernel_size, stride, padding_mode)
    return _blur(x, kernel_size, stride, padding_mode)


# --- max_blur_pool2d ---------------------------------------------------------------------------

def _max_blur(x, kernel_size, stride, blur_size, padding_mode, padding):
    y = _triton.max_blur_forward(_as_4d(x), kernel_size, blur_size, stride, padding_mode,
                                 padding)
    return _like_5d(y, x)


class _MaxBlurPool2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, kernel_size, stride, blur_size, padding_mode, padding):
        ctx.args = (kernel_size, stride, blur_size, padding_mode, padding)
        ctx.save_for_backward(x)
        return _max_blur(x, kernel_size, stride, blur_size, padding_mode, padding)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        none = (None,) * 5
        if torch.is_grad_enabled() or not plain(grad) or batched_grad(grad):
            return _ops.max_blur_pool2d_backward(grad, x, *ctx.args), *none
        kernel_size, stride, blur_size, padding_mode, padding = ctx.args
        gx = _triton.max_blur_backward(_as_4d(grad), _as_4d(x), kernel_size, blur_size, stride,
                                       padding_mode, padding)
        return _like_5d(gx, x), *none


def max_blur_pool2d(x: torch.Tensor, kernel_size: int, stride: int, blur_size: int,
                    padding_mode: str, padding: int) -> torch.Tensor:
    """:func:`._ops.max_blur_pool2d`, for a :func:`plain` call."""
    if _recording(x):
        return _MaxBlurPool2d.apply(x, kernel_size, stride, blur_size, padding_mode, padding)
    return _max_blur(x, kernel_size, stride, blur_size, padding_mode, padding)


# --- polyphase_pool2d --------------------------------------------------------------------------

def _polyphase(x, stride, criterion):
    y, index = _triton.polyphase_forward(_as_4d(x), stride, criterion)
    return _like_5d(y, x), index


class _PolyphasePool2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, stride, criterion):
        ctx.args = (x.shape[-2], x.shape[-1], stride)
        y, index = _polyphase(x, stride, criterion)
        ctx.save_for_backward(index)
        ctx.mark_non_differentiable(index)
        return y, index

    @staticmethod
    def backward(ctx, grad, grad_index):
        (index,) = ctx.saved_tensors
        if torch.is_grad_enabled() or not plain(grad) or batched_grad(grad):
            return _ops.polyphase_pool2d_backward(grad, index, *ctx.args), None, None
        gx = _triton.polyphase_backward(_as_4d(grad), index, *ctx.args)
        return _like_5d(gx, grad), None, None


def polyphase_pool2d(x: torch.Tensor, stride: int,
                     criterion: str) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`._ops.polyphase_pool2d`, for a :func:`plain` call."""
    if _recording(x):
        return _PolyphasePool2d.apply(x, stride, criterion)
    return _polyphase(x, stride, criterion)
