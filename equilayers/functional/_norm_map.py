"""The map of :func:`~equilayers.functional.norm_nonlinearity` on planar harmonic fields
(arguments checked there), and its norm-ReLU with a hand-written backward."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..kernels._autodiff import batched_grad
from ._autograd import plain_autograd

__all__ = ["cpu_relu_path", "norm_map", "relu_order0", "slot_sum"]

_RELUS = (F.relu, torch.relu)


def _parts(x: torch.Tensor, bias: torch.Tensor | None, max_order: int,
           function: Callable[[torch.Tensor], torch.Tensor], eps: float, order0: str
           ) -> tuple[torch.Tensor, ...]:
    """``(y, out0, f, scale, norm)``: the output, its order 0, and per pair ``f = function(|v|
    + b)``, ``scale = f / |v|`` and ``|v| = sqrt(c^2 + s^2 + eps)`` ``(B, C, M, H, W)`` (the
    last three ``y`` itself for ``max_order = 0``)."""
    b, c, f, h, w = x.shape
    # order 0 and the pairs, and their biases: one view each (no per-order slices)
    a0, rest = x.split([1, f - 1], dim=2) if max_order else (x, x)
    b0 = bm = None
    if bias is not None:
        bv = bias.view(1, c, max_order + 1, 1, 1)
        b0, bm = bv.split([1, max_order], dim=2) if max_order else (bv, bv)
    if order0 == "norm":
        mag = a0.abs()
        out0 = torch.sign(a0) * function(mag if b0 is None else mag + b0)
    else:
        out0 = function(a0 if b0 is None else a0 + b0)
    if max_order == 0:
        return out0, out0, out0, out0, out0
    # (B, C, M, 2, H, W); float32 for half inputs up to the product (cast back after it): a
    # float16 pair of entries below 65504 can have a norm above it (cast back before the scale,
    # inf / inf = NaN), and so can the scale's gradient, the sum of x * grad over the pair
    pairs = rest.view(b, c, max_order, 2, h, w)
    v = pairs if x.dtype in (torch.float32, torch.float64) else pairs.float()
    cos, sin = v.unbind(3)  # c^2 + s^2 as _relu_parts sums it: the same rounding on each path
    norm = (torch.addcmul(cos * cos, sin, sin) + eps).sqrt()
    fv = function(norm if bm is None else norm + bm)
    scale = fv / norm
    out = (pairs * scale.unsqueeze(3)).to(x.dtype)
    return torch.cat([out0, out.reshape(b, c, f - 1, h, w)], dim=2), out0, fv, scale, norm


def norm_map(x: torch.Tensor, bias: torch.Tensor | None, max_order: int,
             function: Callable[[torch.Tensor], torch.Tensor], eps: float,
             order0: str) -> torch.Tensor:
    """``v_m -> v_m function(|v_m| + b_m) / |v_m|``, ``a_0 -> function(a_0 + b_0)`` (or the
    ``order0="norm"`` map): :class:`_NormReLU` where it applies, plain ops otherwise."""
    if (function in _RELUS and max_order and x.dtype in (torch.float32, torch.float64)
            and plain_autograd(x)):
        if torch.is_grad_enabled() and (x.requires_grad
                                        or (bias is not None and bias.requires_grad)):
            return _NormReLU.apply(x, bias, max_order, eps, order0)
        if _one_buffer(x):
            return _relu_parts(x, bias, max_order, eps, order0)[0]  # no graph to record
    return _parts(x, bias, max_order, function, eps, order0)[0]


def slot_sum(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``sum_i a[:, :, i] b[:, :, i]`` kept as dim 2 of size 1, one slot at a time (no
    temporary of the inputs' size): the one-buffer paths' sums over a field's slots."""
    out = torch.mul(a[:, :, :1], b[:, :, :1])
    for i in range(1, a.shape[2]):
        out.addcmul_(a[:, :, i:i + 1], b[:, :, i:i + 1])
    return out


def relu_order0(a0: torch.Tensor, b0: torch.Tensor | None, order0: str) -> torch.Tensor:
    """The norm-ReLU's order 0 without autograd: ``relu(a_0 + b_0)``, or with
    ``order0="norm"`` ``sign(a_0) relu(|a_0| + b_0)`` (planar and SO(3) fields alike)."""
    if order0 == "norm":
        mag = a0.abs()
        return torch.sign(a0) * F.relu(mag if b0 is None else mag.add_(b0))
    return F.relu(a0 if b0 is None else a0 + b0)


def cpu_relu_path(x: torch.Tensor, function: Callable[[torch.Tensor], torch.Tensor],
                  max_order: int) -> bool:
    """Whether a harmonic nonlinearity of ``x`` with ``function`` takes its one-buffer ReLU
    path with a hand-written backward (the gated one, :mod:`._gated`, and the SO(3) norm-ReLU,
    :mod:`._norm_map3d`): ReLU, orders past 0, float32/float64 on the CPU, plain eager
    autograd; elsewhere the plain ops."""
    return (function in _RELUS and bool(max_order) and x.device.type == "cpu"
            and x.dtype in (torch.float32, torch.float64) and plain_autograd(x))


def _one_buffer(x: torch.Tensor) -> bool:
    """Whether the norm-ReLU writes its output and its gradient into one buffer each
    (:func:`_relu_parts`, and its backward): on the CPU, where it saves memory passes (numbers
    there). It takes 10 more aten ops per forward+backward than the ``cat`` formulation (52
    against 42 at ``(2, 8, 5, 8, 8)``), the same time on tiny CPU inputs
    (``benchmarks/host_harmonic.py``); a GPU runs the SO(2) CNN bound by the host, per op, and
    this was not measured there: the former formulation on other devices."""
    return x.device.type == "cpu"


def _relu_parts(x: torch.Tensor, bias: torch.Tensor | None, max_order: int, eps: float,
                order0: str) -> tuple[torch.Tensor, ...]:
    """:func:`_parts` of the norm-ReLU without autograd (inside :class:`_NormReLU`): the same
    values, written into one output buffer (no ``cat``) and the pair norms summed from the two
    slots (no ``(B, C, M, 2, H, W)`` square temporary), in-place where a temporary is not kept;
    also the forward without a graph (eval). NormNonlinearity at (16, 32, 5, 64, 64), 2
    threads, against the ``cat`` formulation in the same run
    (``benchmarks/results/harmonic-batch-norm/cpu-harmonic.md``): eval 55 -> 36 ms (``nn.ReLU``
    on the tensor: 12 ms), training step 89 -> 45 ms, peak memory 128 -> 96 MiB and 224 -> 192
    MiB."""
    b, c, f, h, w = x.shape
    a0 = x[:, :, :1]
    b0 = bm = None
    if bias is not None:
        b0, bm = bias.view(1, c, max_order + 1, 1, 1).split([1, max_order], dim=2)
    out0 = relu_order0(a0, b0, order0)
    y = torch.empty_like(x)
    y[:, :, :1].copy_(out0)
    pairs = x[:, :, 1:].view(b, c, max_order, 2, h, w)
    cos, sin = pairs.unbind(3)
    norm = torch.mul(cos, cos).addcmul_(sin, sin).add_(eps).sqrt_()
    fv = F.relu(norm if bm is None else norm + bm)
    scale = fv / norm
    torch.mul(pairs, scale.unsqueeze(3), out=y[:, :, 1:].view(b, c, max_order, 2, h, w))
    return y, out0, fv, scale, norm


class _NormReLU(torch.autograd.Function):
    """The norm-ReLU (``function=relu``, float32/float64) with a hand-written backward (57 ->
    42 aten ops per forward+backward at ``(2, 8, 5, 8, 8)``, 66 -> 47 with ``order0="norm"``;
    52 and 57 on the CPU, which writes one buffer each way: :func:`_one_buffer`).
    With ``G = sum_pair g . v``, ``f' = 1[|v| + b > 0]``: ``dv = g scale + v (f' - scale) G /
    |v|^2``, ``db_m = sum f' G / |v|``; order 0 is ReLU's, or with ``order0="norm"`` (``y_0 =
    sign(a_0) relu(|a_0| + b_0)``) ``da_0 = g s^2``, ``db_0 = sum g s`` with ``s = sign(y_0)``
    (0 where ``a_0 = 0`` or the ReLU cuts, as autograd of ``sign`` and ``abs``).
    ``create_graph=True`` differentiates the plain ops instead (second derivatives)."""

    @staticmethod
    def forward(ctx, x, bias, max_order, eps, order0):
        y, out0, fv, scale, norm = (_relu_parts(x, bias, max_order, eps, order0)
                                    if _one_buffer(x) else
                                    _parts(x, bias, max_order, F.relu, eps, order0))
        ctx.save_for_backward(x, bias, out0, fv, scale, norm)
        ctx.args = (max_order, eps, order0)
        return y

    @staticmethod
    def backward(ctx, gy):
        x, bias, out0, fv, scale, norm = ctx.saved_tensors
        need = ctx.needs_input_grad[:2]
        if torch.is_grad_enabled() or batched_grad(gy):
            # create_graph=True, or a batch of gradients: the plain ops, differentiable
            ins = [t for t, nd in zip((x, bias), need, strict=True) if nd]
            with torch.enable_grad():
                y = _parts(x, bias, ctx.args[0], F.relu, ctx.args[1], ctx.args[2])[0]
            got = iter(torch.autograd.grad(y, ins, gy, create_graph=True))
            return (*(next(got) if nd else None for nd in need), None, None, None)
        b, c, f, h, w = x.shape
        m = ctx.args[0]
        g0, gr = gy.split([1, f - 1], dim=2)
        gp = gr.reshape(b, c, m, 2, h, w)
        pairs = x[:, :, 1:].view(b, c, m, 2, h, w)
        if ctx.args[2] == "norm":
            sign = out0.sign()
            gb0 = g0 * sign  # the bias's gradient; times the sign again, x's
            ga0 = gb0 * sign
        else:
            gb0 = ga0 = torch.ops.aten.threshold_backward(g0, out0, 0)  # ReLU's backward
        one = _one_buffer(x)
        if one:  # G / |v|, summed from the two slots (no (B, C, M, 2, H, W) temporary)
            (g_cos, g_sin), (cos, sin) = gp.unbind(3), pairs.unbind(3)
            t = torch.mul(g_cos, cos).addcmul_(g_sin, sin).div_(norm)
        else:
            t = (gp * pairs).sum(3) / norm
        u = torch.ops.aten.threshold_backward(t, fv, 0)  # f' G / |v|
        coef = torch.addcmul(u, t, scale, value=-1).div_(norm)
        gx = None
        if need[0] and one:  # one buffer: order 0, then the pairs' g scale + v coef
            gx = torch.empty_like(x)
            gx[:, :, :1].copy_(ga0)
            rest = gx[:, :, 1:].view(b, c, m, 2, h, w)
            torch.mul(gp, scale.unsqueeze(3), out=rest).addcmul_(pairs, coef.unsqueeze(3))
        elif need[0]:
            gx = torch.cat([ga0, torch.addcmul(gp * scale.unsqueeze(3), pairs,
                                               coef.unsqueeze(3)).reshape(b, c, f - 1, h, w)], 2)
        gb = torch.cat([gb0.sum((0, 3, 4)), u.sum((0, 3, 4))], dim=1) if need[1] else None
        return gx, gb, None, None, None
