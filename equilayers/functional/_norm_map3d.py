"""The norm-ReLU of SO(3)/O(3) harmonic fields ``(B, C, (L+1)^2, D, H, W)`` (the default
``function`` of :func:`~equilayers.functional.norm_nonlinearity` with ``group="so3"``/``"o3"``)
on the CPU: the output and the input's gradient written into one buffer each, each order's
squared norm and ``sum g . v`` summed slot by slot (no temporary of the input's size), and a
hand-written backward (the planar version is :class:`._norm_map._NormReLU`). At (8, 16, 9,
16^3), 2 threads, against the plain formulation in the same run (``benchmarks/bench_harmonic.py``;
``benchmarks/results/so3-norm-relu-fast/``): training step 24.4 -> 10.5 ms, eval 7.2 -> 3.4 ms
(``nn.ReLU``: 3.3 and 0.8 ms), peak memory 64 -> 60 and 48 -> 32 MiB; a second run 25.9 ->
10.5 and 7.5 -> 3.5 ms. Each order's squares are summed slot by slot in slot order here and
in the plain formulation (:func:`._harmonic3d._order_sq`), so both give the same forward bits
(``tests/test_norm_relu3d.py``; a compiled or exported model takes the plain one).

Taken for ``function`` in (``F.relu``, ``torch.relu``), orders ``L >= 1``, float32/float64
on the CPU under plain eager autograd (:func:`._autograd.plain_autograd`);
``create_graph=True`` differentiates the plain ops (second derivatives). Arguments are checked
by the caller.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..kernels._autodiff import batched_grad
from ._norm_map import cpu_relu_path, relu_order0, slot_sum

__all__ = ["norm_relu3d"]

Plain = Callable[[torch.Tensor, "torch.Tensor | None"], torch.Tensor]


def norm_relu3d(x: torch.Tensor, bias: torch.Tensor | None, max_order: int,
                function: Callable[[torch.Tensor], torch.Tensor], eps: float, order0: str,
                plain: Plain) -> torch.Tensor | None:
    """The norm-ReLU of ``x`` on the one-buffer path, or ``None`` where it does not apply (the
    caller then runs ``plain``, the same map as plain ops, also this path's second
    derivative)."""
    if not cpu_relu_path(x, function, max_order):
        return None
    if torch.is_grad_enabled() and (x.requires_grad
                                    or (bias is not None and bias.requires_grad)):
        return _NormReLU3d.apply(x, bias, max_order, eps, order0, plain)
    return _forward(x, bias, max_order, eps, order0)[0]


def _blocks(t: torch.Tensor, max_order: int) -> tuple[torch.Tensor, ...]:
    return t.split([2 * l + 1 for l in range(max_order + 1)], dim=2)


def _bias_parts(bias: torch.Tensor | None, c: int, max_order: int):
    if bias is None:
        return None, [None] * max_order
    bv = bias.view(1, c, max_order + 1, 1, 1, 1)
    return bv[:, :, :1], list(bv[:, :, 1:].unbind(2))


def _forward(x: torch.Tensor, bias: torch.Tensor | None, max_order: int, eps: float,
             order0: str) -> tuple[torch.Tensor, torch.Tensor, list, list, list]:
    """``(y, out0, [f_l], [scale_l], [norm_l])``: per order ``l >= 1``, ``f = relu(|v_l| +
    b_l)``, ``scale = f / |v_l|`` and ``|v_l| = sqrt(sum v^2 + eps)``, each ``(B, C, 1, D, H,
    W)``."""
    c = x.shape[1]
    a0, *vs = _blocks(x, max_order)
    b0, bl = _bias_parts(bias, c, max_order)
    out0 = relu_order0(a0, b0, order0)
    y = torch.empty_like(x)
    y0, *ys = _blocks(y, max_order)
    y0.copy_(out0)
    fs, scales, norms = [], [], []
    for v, yl, b in zip(vs, ys, bl, strict=True):
        norm = slot_sum(v, v).add_(eps).sqrt_()
        fv = F.relu(norm if b is None else norm + b.unsqueeze(2))
        scale = fv / norm
        torch.mul(v, scale, out=yl)
        fs.append(fv)
        scales.append(scale)
        norms.append(norm)
    return y, out0, fs, scales, norms


class _NormReLU3d(torch.autograd.Function):
    """With ``G = sum_slots g . v`` per order, ``f' = 1[|v| + b > 0]``: ``dv = g scale + v (f'
    - scale) G / |v|^2``, ``db_l = sum f' G / |v|``; order 0 as :class:`._norm_map._NormReLU`
    (ReLU's, or with ``order0="norm"`` ``da_0 = g s^2``, ``db_0 = sum g s``, ``s =
    sign(y_0)``)."""

    @staticmethod
    def forward(ctx, x, bias, max_order, eps, order0, plain):
        y, out0, fs, scales, norms = _forward(x, bias, max_order, eps, order0)
        ctx.save_for_backward(x, bias, out0, *fs, *scales, *norms)
        ctx.args = (max_order, order0, plain)
        return y

    @staticmethod
    def backward(ctx, gy):
        x, bias, out0, *rest = ctx.saved_tensors
        max_order, order0, plain = ctx.args
        need = ctx.needs_input_grad[:2]
        if torch.is_grad_enabled() or batched_grad(gy):
            # create_graph=True, or a batch of gradients: the plain ops, differentiable
            ins = [t for t, nd in zip((x, bias), need, strict=True) if nd]
            with torch.enable_grad():
                got = iter(torch.autograd.grad(plain(x, bias), ins, gy, create_graph=True))
            return (*(next(got) if nd else None for nd in need), None, None, None, None)
        fs, scales, norms = (rest[i * max_order:(i + 1) * max_order] for i in range(3))
        g0, *gs = _blocks(gy, max_order)
        a0, *vs = _blocks(x, max_order)
        if order0 == "norm":
            sign = out0.sign()
            gb0 = g0 * sign
            ga0 = gb0 * sign
        else:
            gb0 = ga0 = torch.ops.aten.threshold_backward(g0, out0, 0)  # ReLU's backward
        gx = torch.empty_like(x) if need[0] else None
        gbs = [gb0.sum((0, 3, 4, 5))]
        if gx is not None:
            _blocks(gx, max_order)[0].copy_(ga0)
        for i, (g, v, fv, scale, norm) in enumerate(zip(gs, vs, fs, scales, norms,
                                                        strict=True)):
            t = slot_sum(g, v).div_(norm)  # G / |v|
            u = torch.ops.aten.threshold_backward(t, fv, 0)  # f' G / |v|
            gbs.append(u.sum((0, 3, 4, 5)))
            if gx is not None:
                coef = torch.addcmul(u, t, scale, value=-1).div_(norm)
                out = _blocks(gx, max_order)[i + 1]
                torch.mul(g, scale, out=out).addcmul_(v, coef)
        gb = torch.cat(gbs, dim=1) if need[1] else None
        return gx, gb, None, None, None, None
