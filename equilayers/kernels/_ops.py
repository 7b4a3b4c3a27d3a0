"""The Triton kernels as ``torch.library`` custom ops, with fake implementations and autograd.

``torch.ops.equilayers.blur_pool2d``, ``max_blur_pool2d`` and ``polyphase_pool2d`` (and their
``*_backward`` ops) are opaque to ``torch.compile``: a compiled graph holds one node per call.
Triton itself is imported only when an op runs on real tensors.
"""

from __future__ import annotations

import math

import torch

__all__ = ["blur_pool2d", "max_blur_pool2d", "polyphase_pool2d"]


def _out_len(n: int, s: int) -> int:
    return (n - 1) // s + 1


def _as_4d(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1, 2) if x.dim() == 5 else x


def _like_5d(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    # 5-D results are always contiguous (as the fake implementations say).
    return y.contiguous().unflatten(1, x.shape[1:3]) if x.dim() == 5 else y


def _empty_out(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """An output the way the kernels allocate it: channels_last in, channels_last out."""
    shape = (*x.shape[:-2], h, w)
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(
            memory_format=torch.channels_last):
        return x.new_empty(shape).contiguous(memory_format=torch.channels_last)
    return x.new_empty(shape)


# --- blur_pool2d -------------------------------------------------------------------------------

@torch.library.custom_op("equilayers::blur_pool2d", mutates_args=())
def blur_pool2d(x: torch.Tensor, kernel_size: int, stride: int,
                padding_mode: str) -> torch.Tensor:
    """Blur pooling by the Triton kernel; ``x`` is ``(B, C, H, W)`` or ``(B, C, F, H, W)``."""
    from . import _triton

    y = _triton.blur_forward(_as_4d(x), kernel_size, stride, padding_mode)
    return _like_5d(y, x)


@blur_pool2d.register_fake
def _(x, kernel_size, stride, padding_mode):
    return _empty_out(x, _out_len(x.shape[-2], stride), _out_len(x.shape[-1], stride))


@torch.library.custom_op("equilayers::blur_pool2d_backward", mutates_args=())
def blur_pool2d_backward(grad: torch.Tensor, height: int, width: int, kernel_size: int,
                         stride: int, padding_mode: str) -> torch.Tensor:
    """The gradient of :func:`blur_pool2d` with respect to its input of size ``height x width``."""
    from . import _triton

    gx = _triton.blur_backward(_as_4d(grad), height, width, kernel_size, stride, padding_mode)
    return _like_5d(gx, grad)


@blur_pool2d_backward.register_fake
def _(grad, height, width, kernel_size, stride, padding_mode):
    return _empty_out(grad, height, width)


def _blur_setup(ctx, inputs, output):
    x, ctx.kernel_size, ctx.stride, ctx.padding_mode = inputs
    ctx.size = (x.shape[-2], x.shape[-1])


def _blur_backward(ctx, grad):
    gx = blur_pool2d_backward(grad, *ctx.size, ctx.kernel_size, ctx.stride, ctx.padding_mode)
    return gx, None, None, None


blur_pool2d.register_autograd(_blur_backward, setup_context=_blur_setup)


# The backward ops are linear in their gradient: their own backward (a double backward, for
# gradient penalties and Hessian-vector products) is the forward op's Jacobian applied to the
# incoming gradient; with respect to ``x`` the max's routing is piecewise constant (zero, as
# PyTorch's max_pool2d double backward). Each is built from differentiable ops, so higher
# orders work too.

def _blur_bw_setup(ctx, inputs, output):
    _, _, _, ctx.kernel_size, ctx.stride, ctx.padding_mode = inputs


def _blur_bw_backward(ctx, gg):
    return blur_pool2d(gg, ctx.kernel_size, ctx.stride, ctx.padding_mode), *(None,) * 5


blur_pool2d_backward.register_autograd(_blur_bw_backward, setup_context=_blur_bw_setup)


# --- max_blur_pool2d ---------------------------------------------------------------------------

@torch.library.custom_op("equilayers::max_blur_pool2d", mutates_args=())
def max_blur_pool2d(x: torch.Tensor, kernel_size: int, stride: int, blur_size: int,
                    padding_mode: str, padding: int = 0) -> torch.Tensor:
    """``blur_pool2d(max_pool2d(x, kernel_size, 1, padding), blur_size, stride, padding_mode)``
    fused by the Triton kernel."""
    from . import _triton

    y = _triton.max_blur_forward(_as_4d(x), kernel_size, blur_size, stride, padding_mode,
                                 padding)
    return _like_5d(y, x)


@max_blur_pool2d.register_fake
def _(x, kernel_size, stride, blur_size, padding_mode, padding=0):
    h = x.shape[-2] + 2 * padding - kernel_size + 1
    w = x.shape[-1] + 2 * padding - kernel_size + 1
    return _empty_out(x, _out_len(h, stride), _out_len(w, stride))


@torch.library.custom_op("equilayers::max_blur_pool2d_backward", mutates_args=())
def max_blur_pool2d_backward(grad: torch.Tensor, x: torch.Tensor, kernel_size: int, stride: int,
                             blur_size: int, padding_mode: str,
                             padding: int = 0) -> torch.Tensor:
    """The gradient of :func:`max_blur_pool2d` with respect to ``x`` (through the argmax)."""
    from . import _triton

    gx = _triton.max_blur_backward(_as_4d(grad), _as_4d(x), kernel_size, blur_size, stride,
                                   padding_mode, padding)
    return _like_5d(gx, x)


@max_blur_pool2d_backward.register_fake
def _(grad, x, kernel_size, stride, blur_size, padding_mode, padding=0):
    return _empty_out(x, x.shape[-2], x.shape[-1])


def _max_blur_setup(ctx, inputs, output):
    x, ctx.kernel_size, ctx.stride, ctx.blur_size, ctx.padding_mode, ctx.padding = inputs
    ctx.save_for_backward(x)


def _max_blur_backward(ctx, grad):
    (x,) = ctx.saved_tensors
    gx = max_blur_pool2d_backward(grad, x, ctx.kernel_size, ctx.stride, ctx.blur_size,
                                  ctx.padding_mode, ctx.padding)
    return gx, None, None, None, None, None


max_blur_pool2d.register_autograd(_max_blur_backward, setup_context=_max_blur_setup)


def _max_blur_bw_setup(ctx, inputs, output):
    _, x, ctx.kernel_size, ctx.stride, ctx.blur_size, ctx.padding_mode, ctx.padding = inputs
    ctx.save_for_backward(x)


def _max_blur_bw_backward(ctx, gg):
    # gg (x's shape) read at each window's first maximum (max_pool2d's routing, the kernels'),
    # then blurred: the forward's Jacobian applied to gg
    (x,) = ctx.saved_tensors
    x4, g4 = _as_4d(x), _as_4d(gg)
    _, where = torch.nn.functional.max_pool2d(x4.detach(), ctx.kernel_size, stride=1,
                                              padding=ctx.padding, return_indices=True)
    picked = g4.flatten(2).gather(2, where.flatten(2)).view(where.shape)
    y = blur_pool2d(picked, ctx.blur_size, ctx.stride, ctx.padding_mode)
    y = y.unflatten(1, x.shape[1:3]) if x.dim() == 5 else y
    return y, *(None,) * 6


max_blur_pool2d_backward.register_autograd(_max_blur_bw_backward,
                                           setup_context=_max_blur_bw_setup)


# --- polyphase_pool2d --------------------------------------------------------------------------

@torch.library.custom_op("equilayers::polyphase_pool2d", mutates_args=())
def polyphase_pool2d(x: torch.Tensor, stride: int,
                     criterion: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(y, index)``: adaptive polyphase sampling by the Triton kernels (no blur; ``H`` and
    ``W`` divisible by ``stride``); ``index`` is the chosen flat index per sample, int64."""
    from . import _triton

    y, index = _triton.polyphase_forward(_as_4d(x), stride, criterion)
    return _like_5d(y, x), index


@polyphase_pool2d.register_fake
def _(x, stride, criterion):
    out = _empty_out(x, x.shape[-2] // stride, x.shape[-1] // stride)
    return out, x.new_empty((x.shape[0],), dtype=torch.int64)


@torch.library.custom_op("equilayers::polyphase_pool2d_backward", mutates_args=())
def polyphase_pool2d_backward(grad: torch.Tensor, index: torch.Tensor, height: int, width: int,
                              stride: int) -> torch.Tensor:
    """The gradient of :func:`polyphase_pool2d` with respect to its ``height x width`` input:
    ``grad`` on the chosen component of each sample, zero elsewhere."""
    from . import _triton

    gx = _triton.polyphase_backward(_as_4d(grad), index, height, width, stride)
    return _like_5d(gx, grad)


@polyphase_pool2d_backward.register_fake
def _(grad, index, height, width, stride):
    return _empty_out(grad, height, width)


def _polyphase_setup(ctx, inputs, output):
    x, ctx.stride, _ = inputs
    ctx.size = (x.shape[-2], x.shape[-1])
    ctx.save_for_backward(output[1])


def _polyphase_backward(ctx, grad, grad_index):
    (index,) = ctx.saved_tensors
    return polyphase_pool2d_backward(grad, index, *ctx.size, ctx.stride), None, None


polyphase_pool2d.register_autograd(_polyphase_backward, setup_context=_polyphase_setup)


def _polyphase_bw_setup(ctx, inputs, output):
    _, index, _, _, ctx.stride = inputs
    ctx.save_for_backward(index)


def _polyphase_bw_backward(ctx, gg):
    # gg's chosen component per sample (the reference's gather): the forward's Jacobian
    (index,) = ctx.saved_tensors
    s, (h, w) = ctx.stride, gg.shape[-2:]
    b = gg.shape[0]
    gr = gg.reshape(b, math.prod(gg.shape[1:-2]), h // s, s, w // s, s)
    rows = torch.arange(b, device=gg.device)
    out = gr[rows, :, :, index // s, :, index % s]
    return out.reshape(*gg.shape[:-2], h // s, w // s), None, None, None, None


polyphase_pool2d_backward.register_autograd(_polyphase_bw_backward,
                                            setup_context=_polyphase_bw_setup)
