"""Pooling of regular group feature maps ``(B, C, F, H, W)``: over the fiber (invariant) and
spatially (equivariant)."""

from __future__ import annotations

from typing import Literal, cast, overload

import torch
import torch.nn.functional as F

from .. import _checks as C
from ..kernels._autodiff import batched_grad, transforms_active

__all__ = ["group_pool", "group_max_pool2d", "group_avg_pool2d"]

REDUCTIONS = ("max", "mean")


def _check_5d(x: torch.Tensor, what: str) -> None:
    C.check_group_map(x, what)


def check_max_windows(x: torch.Tensor, k, s, p, d, ceil_mode: bool, what: str) -> None:
    """Every window of a dilated max pool reads at least one input pixel. A window that starts
    in the left padding can step over the whole input (``kernel_size=2, dilation=2,
    padding=1`` on a 1-pixel dim reads rows -1 and 1): torch's max pool outputs ``-inf`` there
    (and its float64 backward on such a window corrupted memory, torch 2.13.0). Only windows
    starting in the padding can miss the input, so only those ``ceil(p / s)`` are checked.
    Skipped for symbolic sizes (``torch.export`` with a dynamic size)."""
    dims = ("depth", "height", "width")[-len(k):]
    for n, name, ki, si, pi, di in zip(x.shape[-len(k):], dims, k, s, p, d, strict=True):
        if not isinstance(n, int) or di == 1 or n == 0:  # undilated windows: torch's own rule
            continue
        span = n + 2 * pi - di * (ki - 1) - 1
        out = (-(-span // si) if ceil_mode else span // si) + 1
        if ceil_mode and (out - 1) * si >= n + pi:
            out -= 1
        for o in range(min(out, -(-pi // si))):
            start = o * si - pi
            first = start + (di - 1 - start) // di * di  # the first tap at or past pixel 0
            if first >= n or first > start + di * (ki - 1):
                taps = [start + j * di for j in range(ki)]
                raise ValueError(
                    f"{what}: with kernel_size {ki}, dilation {di} and padding {pi}, output "
                    f"{name} index {o} of x's {name} {n} (shape {tuple(x.shape)}) reads only "
                    f"padding (input {name} positions {taps}); torch's max pool returns -inf "
                    "there. Use a larger input, a smaller dilation, or padding=0")


class _FiberMax(torch.autograd.Function):
    """``x.amax(2)`` with ``amax``'s gradient (ties share it equally; a fiber holding NaN gets
    NaN), computed as one float 0/1 mask written into the gradient buffer, its count over the
    fiber, and one in-place multiply: ``amax``'s own backward (bool masks, a separate
    division) measured 3-4x slower on CPU (see ``benchmarks/bench_pool.py``)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        out = x.amax(2)
        ctx.save_for_backward(x, out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        x, out = ctx.saved_tensors
        with torch.no_grad():  # the mask is piecewise constant in x
            if torch.compiler.is_compiling():  # a traced graph takes no strided out= (the
                # layout empty_like keeps: channels_last); the compiler fuses the cast anyway
                mask = torch.eq(x, out.unsqueeze(2)).to(x.dtype)
            else:
                mask = torch.eq(x, out.unsqueeze(2), out=torch.empty_like(x))
            count = mask.sum(2, keepdim=True)
        # Linear in grad, so create_graph=True differentiates this again. A batch of
        # gradients (is_grads_batched=True) cannot be written into the unbatched mask.
        if batched_grad(grad):
            return mask * (grad.unsqueeze(2) / count)
        return mask.mul_(grad.unsqueeze(2) / count)


def group_pool(x: torch.Tensor, reduction: str = "max") -> torch.Tensor:
    """Reduce the fiber: ``(B, C, F, H, W) -> (B, C, H, W)`` (or ``(B, C, F, D, H, W) ->
    (B, C, D, H, W)`` for the cube groups' fields on volumes) by ``"max"`` or ``"mean"``.

    Invariant over the fiber (any permutation of the slots), so a regular field becomes a
    trivial one. ``"max"`` is ``x.amax(2)``, values and gradients (ties share the gradient
    equally, ``amax``'s rule), with a faster hand-written backward. On this CPU (torch 2.13,
    1 thread) ``amax`` measured 0.14 ms forward at (16, 16, 8, 32, 32) against 6.2 ms for
    ``x.max(2).values``, 10 ms for ``F.max_pool3d`` and 0.37 ms for pairwise ``torch.maximum``.
    """
    C.check_choice(reduction, "reduction", REDUCTIONS, "group_pool")
    C.check_group_map(x, "group_pool", (2, 3))
    if x.shape[2] == 0:  # amax's IndexError, mean's NaN
        raise ValueError(f"group_pool: the fiber (dim 2) is empty, x of shape {tuple(x.shape)}; "
                         "a group feature map holds |G| slots per field (or the harmonic "
                         "coefficients) in dim 2")
    if reduction == "max":
        if (not (x.requires_grad and torch.is_grad_enabled()) or transforms_active()
                or torch.jit.is_tracing()):
            # no autograd node to build, torch.func or forward-mode AD transforms it, or
            # torch.jit.trace records it (a Python autograd Function is an op a saved
            # TorchScript graph cannot hold)
            return x.amax(2)
        return _FiberMax.apply(x)
    return x.mean(2)


def _spatial(x: torch.Tensor, fn, what: str, k, s, p, d, ceil_mode, *args
             ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    _check_5d(x, what)
    # torch's "Output size is too small" (ceil_mode takes a window overhanging the end)
    C.check_window(x, (d[0] * (k[0] - 1) + 1, d[1] * (k[1] - 1) + 1),
                   (p[1], p[1], p[0], p[0]), what, ceil_stride=s if ceil_mode else None)
    if fn is F.max_pool2d:
        check_max_windows(x, k, s, p, d, ceil_mode, what)
        args = (k, s, p, d, ceil_mode, *args)
    else:
        args = (k, s, p, ceil_mode, *args)
    b, c, f, h, w = x.shape
    # no planes (C = 0): an empty batch instead, which torch's pools take (they refuse 0 channels)
    y = fn(x.reshape(b, c * f, h, w) if c * f else x.reshape(0, 1, h, w), *args)
    if isinstance(y, tuple):  # (values, indices): both in the group map's layout
        values, indices = y
        return (values.reshape(b, c, f, *values.shape[-2:]),
                indices.reshape(b, c, f, *indices.shape[-2:]))
    return y.reshape(b, c, f, y.shape[-2], y.shape[-1])


@overload
def group_max_pool2d(x: torch.Tensor, kernel_size, stride=..., padding=..., dilation=...,
                     ceil_mode: bool = ..., return_indices: Literal[False] = ...
                     ) -> torch.Tensor: ...


@overload
def group_max_pool2d(x: torch.Tensor, kernel_size, stride=..., padding=..., dilation=...,
                     ceil_mode: bool = ..., *, return_indices: Literal[True]
                     ) -> tuple[torch.Tensor, torch.Tensor]: ...


@overload
def group_max_pool2d(x: torch.Tensor, kernel_size, stride=..., padding=..., dilation=...,
                     ceil_mode: bool = ..., return_indices: bool = ...
                     ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]: ...


def group_max_pool2d(x: torch.Tensor, kernel_size, stride=None, padding=0, dilation=1,
                     ceil_mode: bool = False, return_indices: bool = False
                     ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """``F.max_pool2d`` over the spatial dims of ``(B, C, F, H, W)`` (each slot separately),
    with ``F.max_pool2d``'s arguments in its order. ``return_indices``: also return
    ``F.max_pool2d``'s indices of each slot's plane, ``(B, C, F, H', W')`` int64, each the
    flat index ``h W + w`` into that slot's ``H x W`` plane (``nn.MaxUnpool2d`` takes them
    with the values on the ``(B, C F, H', W')`` view: ``y.flatten(1, 2)``)."""
    what = "group_max_pool2d"
    k, s, p, d = C.check_pool_args(kernel_size, stride, padding, dilation, what, max_pool=True)
    C.check_flag(ceil_mode, "ceil_mode", what)
    C.check_flag(return_indices, "return_indices", what)
    return _spatial(x, F.max_pool2d, what, k, s, p, d, ceil_mode, bool(return_indices))


def group_avg_pool2d(x: torch.Tensor, kernel_size, stride=None, padding=0,
                     ceil_mode: bool = False, count_include_pad: bool = True) -> torch.Tensor:
    """``F.avg_pool2d`` over the spatial dims of ``(B, C, F, H, W)`` (each slot separately)."""
    what = "group_avg_pool2d"
    k, s, p, d = C.check_pool_args(kernel_size, stride, padding, 1, what, max_pool=False)
    C.check_flag(ceil_mode, "ceil_mode", what)
    C.check_flag(count_include_pad, "count_include_pad", what)
    return cast(torch.Tensor,
                _spatial(x, F.avg_pool2d, what, k, s, p, d, ceil_mode, count_include_pad))
