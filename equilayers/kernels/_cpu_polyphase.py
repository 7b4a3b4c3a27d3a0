"""The CPU fast path of ``polyphase_pool2d`` (see :mod:`._cpu` for the others).

The component norms are summed in float64 chunk by chunk of rows (the reference's
``vector_norm`` over the strided component dims took 6-8x longer in an ad-hoc measurement here),
then the argmax and one gather; the backward scatters into zeros. Picks the reference's component
up to the order of the float64 sums.
"""

from __future__ import annotations

import math

import torch

from . import _cpu

__all__ = ["polyphase_pool2d"]

#: Below this many input elements the component norms take ``vector_norm`` in one call
#: (an ad-hoc interleaved sweep here, b4-32 x c16-64 x 32-64 px: the chunked sums win from
#: about 2**19 elements, 2-4x at 2**21 and up; benchmarks/ times only the large sizes).
_SMALL_POLYPHASE = 1 << 19


def _component_norms(x: torch.Tensor, s: int, criterion: str) -> torch.Tensor:
    """``(B, s * s)``: per sample, the criterion of each polyphase component (the l2 norm,
    the sum of magnitudes for l1, the maximum magnitude for linf), in float64 like the
    reference. Chunks of rows: ``vector_norm`` over them took 6-8x longer."""
    b, h, w = x.shape[0], x.shape[-2], x.shape[-1]
    if x.numel() < _SMALL_POLYPHASE:  # the reference's one call: fewer Python calls win here
        xr = x.reshape(b, -1, h // s, s, w // s, s)
        order = {"l2": 2, "l1": 1, "linf": math.inf}[criterion]
        return torch.linalg.vector_norm(xr, order, dim=(1, 2, 4),
                                        dtype=torch.float64).reshape(b, s * s)
    rows = x.reshape(b, -1, s, w)                       # (B, R * H/s, s, W): one row phase per s
    if criterion == "linf":                             # exact in any dtype: no float64
        return rows.abs().amax(1).view(b, s, w // s, s).amax(2).reshape(b, s * s)
    acc = x.new_empty((b, s, w), dtype=torch.float64)

    def measure(part: torch.Tensor) -> torch.Tensor:
        part = part.to(torch.float64)
        return part * part if criterion == "l2" else part.abs()

    per_sample, budget = rows[0].numel() * 8, _cpu._chunk_bytes()
    if per_sample <= budget:                            # whole samples per chunk
        step = budget // per_sample
        for k in range(0, b, step):
            torch.sum(measure(rows[k:k + step]), 1, out=acc[k:k + step])
    else:                                               # row chunks within a sample
        step = max(1, budget // (s * w * 8))
        acc.zero_()
        for k in range(b):
            for i in range(0, rows.shape[1], step):
                acc[k] += measure(rows[k, i:i + step]).sum(0)
    sums = acc.view(b, s, w // s, s).sum(2).reshape(b, s * s)
    # l2: the norms themselves, as the reference's: two sums an ulp apart can round to one
    # square root, which the reference's argmax ties (the first wins) and the sums would not
    return sums.sqrt() if criterion == "l2" else sums


def _gather(x: torch.Tensor, index: torch.Tensor, s: int) -> torch.Tensor:
    """``x[b, ..., i::s, j::s]`` with ``i * s + j = index[b]``."""
    b, h, w = x.shape[0], x.shape[-2], x.shape[-1]
    xr = x.reshape(b, -1, h // s, s, w // s, s)
    rows = torch.arange(b, device=x.device)
    return xr[rows, :, :, index // s, :, index % s].reshape(*x.shape[:-2], h // s, w // s)


class _PolyphaseGather(torch.autograd.Function):
    """:func:`_gather` whose backward scatters into zeros without accumulating (each input
    receives at most one gradient): 12% faster than indexing's own backward at 32 x 64 x 56 x 56,
    slower below :data:`_SMALL_POLYPHASE` elements (one more Python-level call); ad-hoc
    measurements, as for :data:`_SMALL_POLYPHASE`."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, index: torch.Tensor, s: int) -> torch.Tensor:
        ctx.save_for_backward(index)
        ctx.shape, ctx.s = x.shape, s
        return _gather(x, index, s)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (index,) = ctx.saved_tensors
        s, shape = ctx.s, ctx.shape
        b, h, w = shape[0], shape[-2], shape[-1]
        gx = grad.new_zeros((b, grad[0].numel() // (h // s * (w // s)), h // s, s, w // s, s))
        rows = torch.arange(b, device=grad.device)
        gx[rows, :, :, index // s, :, index % s] = grad.reshape(b, -1, h // s, w // s)
        return gx.view(shape), None, None


def polyphase_pool2d(x: torch.Tensor, stride: int = 2, criterion: str = "l2",
                     blur_size: int = 1, padding_mode: str = "circular",
                     return_index: bool = False):
    """The reference ``polyphase_pool2d`` (arguments already validated): the component norms
    in float64 by row chunks, the argmax, one gather; the blur, if any, the fast blur at
    stride 1. Picks the reference's component up to the order of the float64 sums."""
    if blur_size > 1:
        x = _cpu.blur_pool2d(x, blur_size, 1, padding_mode)
    index = _component_norms(x.detach(), stride, criterion).argmax(1)
    if x.numel() >= _SMALL_POLYPHASE and x.requires_grad and torch.is_grad_enabled():
        y = _PolyphaseGather.apply(x, index, stride)
    else:  # autograd differentiates the indexing itself
        y = _gather(x, index, stride)
    return (y, index) if return_index else y
