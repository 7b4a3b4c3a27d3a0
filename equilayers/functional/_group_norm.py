"""Batch normalization of regular group feature maps with statistics shared over the fiber."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import _checks as C
from ._autograd import plain_autograd

__all__ = ["group_batch_norm"]


def check_input(x: torch.Tensor, num_features: int, what: str, ndim: int | tuple = 5) -> None:
    """``x`` is a floating group feature map (``ndim``: 5 for ``(B, C, F, H, W)``, 6 for
    ``(B, C, F, D, H, W)``, or a tuple of both) with ``num_features`` fields."""
    ranks = (ndim,) if isinstance(ndim, int) else ndim
    plain = "nn.BatchNorm2d for images" if 5 in ranks else "nn.BatchNorm3d for volumes"
    C.check_group_map(x, what, tuple(n - 3 for n in ranks), f" (use {plain})")
    if x.shape[1] != num_features:
        raise ValueError(f"{what} expects C={num_features} fields in dim 1; got shape "
                         f"{tuple(x.shape)}")


def check_batch_values(x: torch.Tensor, n: int, what: str, counted: str) -> None:
    """torch's batch-norm rule, with the caller's name and the user's shape: batch statistics
    need more than one value per channel (one value has variance 0: the output would be the
    bias, the running variance pulled towards 0). An empty batch (``n = 0``) passes, as
    torch's does."""
    if n == 1:
        raise ValueError(f"{what}: expected more than 1 value per channel when training; got "
                         f"input of shape {tuple(x.shape)} ({counted} = 1): train on a batch "
                         "of more than one sample (or a larger map), or call .eval()")


def group_batch_norm(x: torch.Tensor, running_mean: torch.Tensor | None,
                     running_var: torch.Tensor | None, weight: torch.Tensor | None = None,
                     bias: torch.Tensor | None = None, training: bool = False,
                     momentum: float = 0.1, eps: float = 1e-5) -> torch.Tensor:
    """``F.batch_norm`` on ``(B, C, F, H, W)`` (or ``(B, C, F, D, H, W)``, fields on
    volumes): one mean/variance (and one affine pair) per field ``C``, computed over ``B, F``
    and the spatial dims. Permuting the fiber or moving the image does not change the
    statistics, so the map is exactly equivariant for regular fields."""
    what = "group_batch_norm"
    C.check_norm_args(eps, momentum, what)
    C.check_group_map(x, what, (2, 3), " (use nn.BatchNorm2d for images)")
    check_input(x, x.shape[1], what, (5, 6))
    for name, t in (("running_mean", running_mean), ("running_var", running_var),
                    ("weight", weight), ("bias", bias)):
        if t is not None:
            C.check_tensor(t, name, what)
            if t.shape != x.shape[1:2]:
                raise ValueError(f"{what}: {name} must have shape (C,) = ({x.shape[1]},), one "
                                 f"value per field of x (shape {tuple(x.shape)}); got shape "
                                 f"{tuple(t.shape)}")
    # torch's batch norm takes float16/bfloat16 x with float32 parameters and statistics
    C.check_tensors_match(x, what, (("running_mean", running_mean), ("running_var", running_var),
                                    ("weight", weight), ("bias", bias)), low_precision_input=True)
    if not training and (running_mean is None or running_var is None):
        raise ValueError(f"{what}: training=False normalizes with running_mean and running_var; "
                         "pass both, or training=True (batch statistics)")
    return batch_norm_checked(x, running_mean, running_var, weight, bias, training, momentum,
                              eps)


def batch_norm_checked(x: torch.Tensor, running_mean: torch.Tensor | None,
                       running_var: torch.Tensor | None, weight: torch.Tensor | None,
                       bias: torch.Tensor | None, training: bool, momentum: float,
                       eps: float, what: str = "group_batch_norm") -> torch.Tensor:
    """:func:`group_batch_norm` after its checks (a module that checked its input already calls
    this): with batch statistics on CUDA, :func:`batch_norm_by_reductions`; otherwise
    ``F.batch_norm``, a 6-D map folded to the 5 dims cuDNN's batch norm takes."""
    if training:
        check_batch_values(x, x.numel() // max(x.shape[1], 1), what, "B * F * spatial")
    if training and split_batch_norm(x) and (running_mean is None) == (running_var is None):
        return batch_norm_by_reductions(x, running_mean, running_var, weight, bias, momentum,
                                        eps)
    if x.dim() == 6:  # fold D into the fiber axis: the same per-field statistics
        y = F.batch_norm(x.flatten(2, 3), running_mean, running_var, weight, bias, training,
                         momentum, eps)
        return y.view(x.shape)
    return F.batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps)


#: Elements per channel from which batch statistics on CUDA take the reductions (see
#: :func:`split_batch_norm`).
SPLIT_FROM = 2**20


def split_batch_norm(x: torch.Tensor) -> bool:
    """Whether batch statistics take :func:`batch_norm_by_reductions`: on CUDA, with at least
    :data:`SPLIT_FROM` elements per channel. A group map has few channels (``C`` fields) of
    many elements (``F·H·W`` each), and cuDNN's and torch's CUDA batch norms parallelise over
    channels. On an H200 (2026-12-04, forward+backward, b64) ``F.batch_norm`` took 3.9-4.7 ms
    on 8 fields of 8 slots at 64x64 (2.1M elements per channel; the reductions 1.0-1.4 ms) and
    3.0 ms on a cube group's 8 fields of 24 slots at 16^3 (the reductions 0.9-1.0 ms); the
    reductions take about 1 ms at any size (host-bound), so ``F.batch_norm`` keeps the maps
    below ~0.5M elements per channel (0.3-0.4 ms at 16K-131K; at 524K the two runs disagreed).
    ``benchmarks/gpu_profile.py``; ``benchmarks/results/cuda/session-2026-12-04-second.md``.
    On CPU ``F.batch_norm`` was 2.7x faster than the plain-op reductions (a one-off timing on
    this project's 2-core CPU, 2026-12-04, not in ``benchmarks/``), so it stays."""
    return x.device.type == "cuda" and x.numel() >= SPLIT_FROM * x.shape[1]


def batch_norm_by_reductions(x: torch.Tensor, running_mean: torch.Tensor | None,
                             running_var: torch.Tensor | None, weight: torch.Tensor | None,
                             bias: torch.Tensor | None, momentum: float,
                             eps: float) -> torch.Tensor:
    """``F.batch_norm(x, ..., training=True)`` for a map of any rank from 3 on, by reductions
    that parallelise over all elements, whatever the number of channels: one ``var_mean`` and
    one ``addcmul`` forward; a hand-written backward of two reductions and two ``addcmul``
    saving what ``F.batch_norm`` saves (``x`` and two numbers per channel). Under ``torch.func``
    transforms, forward-mode AD, ``torch.compile`` or tracing, the same maths as plain ops
    (which every transform differentiates and a compiler fuses); a second derivative
    differentiates those ops too. A float16/bfloat16 ``x`` is normalized in float32 (as torch's
    batch norms keep their statistics), the output in ``x``'s dtype. The running statistics
    are updated as ``F.batch_norm`` does (``momentum`` weighs the new batch, the variance
    unbiased). Agrees with ``F.batch_norm`` to float rounding (tests)."""
    n = x.numel() // max(x.shape[1], 1)
    if n <= 1:  # F.batch_norm's own error: "Expected more than 1 value per channel ..."
        return F.batch_norm(x, running_mean, running_var, weight, bias, True, momentum, eps)
    if plain_autograd(x, autocast=False):
        y, mean, var = _ByReductions.apply(x, weight, bias, eps)
    else:
        y, mean, var = _by_reductions(x, weight, bias, eps)
    if running_mean is not None and running_var is not None:
        with torch.no_grad():
            running_mean.lerp_(mean.detach().to(running_mean.dtype), momentum)
            unbiased = var.detach() * (n / (n - 1))
            running_var.lerp_(unbiased.to(running_var.dtype), momentum)
    return y


def _by_reductions(x, weight, bias, eps):
    """The forward as plain ops: ``(y, mean, var)``, the statistics per channel (float32 for a
    float16/bfloat16 ``x``)."""
    xf = x if x.dtype in (torch.float32, torch.float64) else x.float()
    var, mean = torch.var_mean(xf, dim=(0, *range(2, x.dim())), correction=0)
    scale = torch.rsqrt(var + eps)
    if weight is not None:
        scale = scale * weight
    shift = -mean * scale if bias is None else bias - mean * scale
    shape = (1, -1) + (1,) * (x.dim() - 2)
    return torch.addcmul(shift.view(shape), xf, scale.view(shape)).to(x.dtype), mean, var


class _ByReductions(torch.autograd.Function):
    @staticmethod
    def forward(x, weight, bias, eps):
        with torch.no_grad():
            return _by_reductions(x, weight, bias, eps)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, weight, bias, eps = inputs
        _, mean, var = output
        ctx.mark_non_differentiable(mean, var)
        ctx.save_for_backward(x, weight, bias, mean, var)
        ctx.eps = eps

    @staticmethod
    def backward(ctx, gy, _mean, _var):
        x, weight, bias, mean, var = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: differentiate the plain ops, twice too
            wanted = [t for t, need in zip((x, weight, bias), ctx.needs_input_grad[:3],
                                           strict=True) if need]
            y = _by_reductions(x, weight, bias, ctx.eps)[0]
            grads = iter(torch.autograd.grad(y, wanted, gy, create_graph=True))
            return (*(next(grads) if need else None for need in ctx.needs_input_grad[:3]),
                    None)
        dims = (0, *range(2, x.dim()))
        shape = (1, -1) + (1,) * (x.dim() - 2)
        n = x.numel() // x.shape[1]
        ct = mean.dtype  # float32 for a float16/bfloat16 x
        invstd = torch.rsqrt(var + ctx.eps)
        sum_dy = gy.sum(dims, dtype=ct)
        sum_dy_xhat = ((x - mean.view(shape)) * gy).sum(dims, dtype=ct) * invstd
        scale = invstd if weight is None else invstd * weight
        grad_x = None
        if ctx.needs_input_grad[0]:  # scale * (dy - mean(dy) - xhat * mean(dy * xhat))
            b = -scale * invstd * sum_dy_xhat / n
            c = -b * mean - scale * sum_dy / n
            grad_x = torch.addcmul(torch.addcmul(c.view(shape), x, b.view(shape)), gy,
                                   scale.view(shape)).to(x.dtype)
        grad_w = sum_dy_xhat.to(weight.dtype) if ctx.needs_input_grad[1] else None
        grad_b = sum_dy.to(bias.dtype) if ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b, None
