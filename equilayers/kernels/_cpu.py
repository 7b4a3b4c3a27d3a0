"""Cheaper PyTorch formulations with the references' exact semantics (the CPU fast path).

``max_pool2d_stride1(x, m)`` equals ``F.max_pool2d(x, m, stride=1)``, values and gradients:
the forward is ``2 (m - 1)`` elementwise ``torch.maximum`` passes over shifted views (separable:
rows, then columns), where CPU ``max_pool2d`` computes an int64 index per output and is an
order of magnitude slower; the backward routes each output's gradient to the first maximum of
its window in row-major order, as ``max_pool2d`` does, from equality masks (no index tensor is
stored: training keeps the output, not ``8`` bytes per output of indices). Windows holding a NaN
take the ``max_pool2d`` backward itself (it sends them to the last NaN).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["max_pool2d_stride1"]


def _window(t: torch.Tensor, u: int, v: int, h: int, w: int) -> torch.Tensor:
    return t[..., u:u + h, v:v + w]


class _MaxPoolStride1(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, m: int) -> torch.Tensor:
        h, w = x.shape[-2] - m + 1, x.shape[-1] - m + 1
        rows = x[..., :h, :]
        for u in range(1, m):
            rows = torch.maximum(rows, x[..., u:u + h, :])
        out = rows[..., :w]
        for v in range(1, m):
            out = torch.maximum(out, rows[..., v:v + w])
        if m == 1:
            out = out.clone()
        ctx.m = m
        ctx.save_for_backward(x, out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, out = ctx.saved_tensors
        m = ctx.m
        if torch.isnan(out).any():
            with torch.enable_grad():
                xd = x.detach().requires_grad_(True)
                (gx,) = torch.autograd.grad(F.max_pool2d(xd, m, stride=1), xd, grad)
            return gx, None
        h, w = out.shape[-2:]
        gx = torch.zeros_like(x)
        taken = None
        for u in range(m):
            for v in range(m):
                win = _window(x, u, v, h, w) == out
                if taken is None:
                    taken = win
                else:
                    win &= ~taken
                    taken = taken | win
                _window(gx, u, v, h, w).addcmul_(grad, win)
        return gx, None


def max_pool2d_stride1(x: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """``F.max_pool2d(x, kernel_size, stride=1)`` (no padding), faster on CPU; same gradients.

    Example:
        >>> x = torch.randn(2, 3, 7, 6)
        >>> torch.equal(max_pool2d_stride1(x, 2), F.max_pool2d(x, 2, stride=1))
        True
    """
    if x.shape[-2] < kernel_size or x.shape[-1] < kernel_size:
        raise ValueError(f"max_pool2d_stride1: kernel_size={kernel_size} is larger than the "
                         f"spatial size {tuple(x.shape[-2:])}")
    return _MaxPoolStride1.apply(x, kernel_size)
