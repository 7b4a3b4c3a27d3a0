"""Batch normalization of harmonic fields ``(B, C, 2M+1, H, W)`` (and of SO(3)/O(3) fields
``(B, C, (M+1)^2, D, H, W)``, ``group="so3"``/``"o3"``)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .. import _checks as C
from ..groups import GroupLike
from . import _harmonic3d as H3
from ._autograd import plain_autograd
from ._group_norm import check_batch_values
from ._harmonic import _low_precision, _volume_fields, check_harmonic, on_planes

__all__ = ["harmonic_batch_norm", "STATISTICS"]

STATISTICS = ("order", "field", "order_centred")


def _check_stat(t: torch.Tensor | None, name: str, shape: tuple[int, ...], x: torch.Tensor
                ) -> None:
    """``None`` or a floating-point tensor of ``shape`` (``C`` read from ``x``)."""
    if t is None:
        return
    C.check_tensor(t, name, "harmonic_batch_norm")
    if tuple(t.shape) != shape:
        c = x.shape[1]
        raise ValueError(f"harmonic_batch_norm: {name} must have shape {shape} for x of shape "
                         f"{tuple(x.shape)} (C={c} fields, num_features={c}); got {name} of "
                         f"shape {tuple(t.shape)}")


def _running(running_mean: torch.Tensor | None, running_var: torch.Tensor | None
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """The running statistics an eval-mode call (``training=False``) normalises with."""
    if running_mean is None or running_var is None:
        raise ValueError("harmonic_batch_norm in eval mode needs running_mean and running_var "
                         "(or training=True)")
    return running_mean, running_var


def _wrapped(t: torch.Tensor) -> bool:
    """A torch.func-transformed tensor (never inside a compiled graph, where Dynamo cannot
    trace the check)."""
    return (not torch.compiler.is_compiling()
            and torch._C._functorch.is_functorch_wrapped_tensor(t))


def _vmap_levels(t: torch.Tensor) -> set[int]:
    """The ``torch.func.vmap`` levels at which ``t`` is batched, read through every functorch
    wrapper around it (a ``grad`` level wraps a tensor without batching it)."""
    levels: set[int] = set()
    for _ in range(64):  # (a bound: each step peels one level)
        if not torch._C._functorch.is_functorch_wrapped_tensor(t):
            break
        if torch._C._functorch.is_batchedtensor(t):
            levels.add(torch._C._functorch.maybe_get_level(t))
        t = torch._C._functorch.get_unwrapped(t)
    return levels


#: What to do instead, on a HarmonicBatchNorm (torch's replace_all_batch_norm_modules_ does
#: this to nn.BatchNorm, not to HarmonicBatchNorm, which is not a torch _BatchNorm).
_MODULE_FIX = ("On a HarmonicBatchNorm m: build it with track_running_stats=False, or set "
               "m.running_mean = m.running_var = m.num_batches_tracked = None and "
               "m.track_running_stats = False (what torch.func.replace_all_batch_norm_modules_ "
               "does to nn.BatchNorm; it does not patch HarmonicBatchNorm, which is not a "
               "torch _BatchNorm)")


def _check_captured(batch: torch.Tensor, running_mean: torch.Tensor,
                    running_var: torch.Tensor) -> None:
    """Raise where a torch.func transform would write its values into captured buffers, or
    ``vmap`` its per-sample statistics into buffers it does not batch."""
    if not _wrapped(batch):
        return
    if not (_wrapped(running_mean) and _wrapped(running_var)):
        raise RuntimeError(
            "harmonic_batch_norm: training mode updates running_mean/running_var in "
            "place, which torch.func transforms (grad, vmap, jvp) cannot do on captured "
            "buffers; use eval mode, running_mean=running_var=None, or pass the buffers as "
            "inputs of the transformed function. " + _MODULE_FIX)
    # passed in, but a vmap level batches the statistic and not the buffers (the per-sample
    # gradient recipe's in_dims=(None, None, 0), with grad inside wrapping the buffers)
    if _vmap_levels(batch) - (_vmap_levels(running_mean) & _vmap_levels(running_var)):
        raise RuntimeError(
            "harmonic_batch_norm: training mode updates running_mean/running_var in place "
            "with statistics that torch.func.vmap batches (one per sample), but vmap does not "
            "batch the buffers (in_dims=None for them, or captured), and one buffer cannot "
            "hold a value per sample (nn.BatchNorm raises here too: 'running_mean or "
            "running_var ... were not batched'); use eval mode, running_mean=running_var="
            "None, or give vmap batched buffers (in_dims=0, one copy per sample). "
            + _MODULE_FIX)


def _update(buf: torch.Tensor, batch: torch.Tensor, momentum: float) -> None:
    """``buf = (1 - momentum) buf + momentum batch`` in place; half-precision buffers are
    averaged in float32 (a batch statistic may not fit in float16 before the average)."""
    if _low_precision(buf):
        buf.copy_(buf.float().mul_(1 - momentum).add_(batch.float(), alpha=momentum))
    else:
        buf.mul_(1 - momentum).add_(momentum * batch.to(buf.dtype))


def harmonic_batch_norm(
    x: torch.Tensor,
    max_order: int,
    running_mean: torch.Tensor | None,
    running_var: torch.Tensor | None,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
    *,
    group: GroupLike | None = None,
    statistics: str = "order",
) -> torch.Tensor:
    """Batch norm for harmonic fields.

    Order 0 (invariant) is normalized as ``nn.BatchNorm`` does (mean and variance over
    ``B, H, W``, then ``weight[:, 0]`` and ``bias``). Orders m >= 1 are only rescaled:
    ``v_m / sqrt(E|v_m|^2 / 2 + eps) * weight[:, m]``: no centring, so directions are kept.
    ``running_mean`` is ``(C,)``, ``running_var`` and ``weight`` ``(C, M + 1)``, ``bias``
    ``(C,)``; the running buffers are updated in place when ``training`` (``new = (1 -
    momentum) old + momentum batch``, the unbiased variance for order 0, as ``nn.BatchNorm``).

    As ``nn.BatchNorm3d``: an empty batch (``B = 0`` or ``H * W = 0``) leaves the running
    statistics untouched and returns an empty output of the input's shape; float16/bfloat16
    inputs get their statistics and the normalization in float32 (output in the input dtype),
    and the running buffers keep their own dtype; ``weight``, ``bias`` and the running buffers
    have ``x``'s dtype, or float32 with a float16/bfloat16 ``x`` (``TypeError`` naming both
    dtypes otherwise, as torch's batch norm). Under ``torch.func`` transforms, training with
    running buffers raises where they would be written with transformed values (buffers
    captured by the transformed function, or not batched by a ``vmap`` that batches the
    statistics, as in the per-sample-gradient recipe's ``in_dims=(None, None, 0)``): use eval
    mode or no running buffers there (``torch.func.replace_all_batch_norm_modules_`` does not
    patch :class:`~equilayers.nn.HarmonicBatchNorm`: the error says what to set instead).

    ``group="so3"``/``"o3"``: SO(3)/O(3) fields ``(B, C, (M+1)^2, D, H, W)``; statistics over
    ``B, D, H, W`` and order ``l`` divided by ``sqrt(E|v_l|^2 / (2l + 1) + eps)``. A volume of
    planar fields ``(B, C, 2M+1, D, H, W)`` (a planar group or ``None``): the planar map,
    statistics over ``B, D, H, W``.

    ``statistics="field"`` (escnn's ``IIDBatchNorm``): one variance per field, the mean over
    its ``F`` slots of each slot's variance about its own batch mean, which is invariant (per
    order, ``E|v|^2 - |E v|^2``); every slot is divided by its root, so the field keeps its
    shape across orders (what a Fourier nonlinearity samples), then multiplied by one
    ``weight[:, 0]`` per field; order 0 is centred and shifted by ``bias`` as above.
    ``running_var`` and ``weight`` are then ``(C, 1)``.

    ``statistics="order_centred"`` (escnn's ``IIDBatchNorm`` on fields listed irrep by irrep,
    each its own field): one variance per order as ``"order"``, but about the batch mean, the
    mean over the order's slots of each slot's variance about its own batch mean (per order
    ``(E|v|^2 - |E v|^2) / d``, invariant); the output is not centred (but order 0), so it is
    ``"order"``'s map with another variance, which equals ``"order"``'s where the batch mean
    of every order ``>= 1`` is 0. The same state and eval-mode map as ``"order"``.
    """
    what = "harmonic_batch_norm"
    volume = _volume_fields(group, what)
    if volume:
        H3.check_harmonic3d(x, max_order, what)
    else:
        check_harmonic(x, max_order, what)
        if x.dim() == 6:  # a volume of planar fields: statistics over B, D, H, W
            if training:  # (named with the user's shape, not the planes' view)
                check_batch_values(x, x.shape[0] * math.prod(x.shape[3:]), what,
                                   "B * spatial")
            return on_planes(x, lambda v: harmonic_batch_norm(
                v, max_order, running_mean, running_var, weight, bias, training, momentum,
                eps, group=group, statistics=statistics))
    if statistics not in STATISTICS:
        raise ValueError(f"harmonic_batch_norm: statistics must be one of {STATISTICS}; got "
                         f"{statistics!r}")
    b, c, f = x.shape[:3]
    space = tuple(range(3, x.dim()))  # (H, W), or (D, H, W)
    per = 1 if statistics == "field" else max_order + 1  # variances (and weights) per field
    _check_stat(running_mean, "running_mean", (c,), x)
    _check_stat(running_var, "running_var", (c, per), x)
    _check_stat(weight, "weight", (c, per), x)
    _check_stat(bias, "bias", (c,), x)
    # the rule of every weighted op (and of torch's batch norm: float16/bfloat16 x with float32
    # parameters and statistics)
    C.check_tensors_match(x, what, (("weight", weight), ("bias", bias),
                                    ("running_mean", running_mean), ("running_var", running_var)),
                          low_precision_input=True)
    C.check_flag(training, "training", what)
    eps, momentum_ = C.check_norm_args(eps, momentum, what)
    assert momentum_ is not None  # (None refused: not momentum_none)
    momentum = momentum_
    ct = torch.float32 if _low_precision(x) else x.dtype  # of the statistics and the scale
    n = b * math.prod(x.shape[3:])
    if training:
        check_batch_values(x, n, what, "B * spatial")
    if statistics == "field":
        return _field_batch_norm(x, (running_mean, running_var, weight, bias), training,
                                 momentum, eps, ct, n)
    xc = x.to(ct)  # one cast for the statistics and the affine (x itself unless half)
    if training and n > 0:
        if statistics == "order_centred":
            mean0, stat = _centred_stats(xc, max_order, volume)
        elif volume:
            a0, *blocks = H3.order_blocks(xc, max_order)  # one split (H3.order_blocks)
            var0, mean0 = torch.var_mean(a0, dim=(0, *space), unbiased=False)  # (C, 1)
            # the 2l + 1 slots of each order l >= 1 (none at max_order 0: torch.arange
            # refuses the empty range 3 .. 2)
            var_m = (H3._order_sq(blocks).to(ct).mean(dim=(0, *space))
                     / torch.arange(3, 2 * max_order + 2, 2, device=x.device)
                     if max_order else a0.new_zeros(c, 0))
            stat = torch.cat([var0, var_m], dim=1)
        elif _hand_backward(x, weight, bias):
            y, mean0, stat = _PlanarBatchNorm.apply(x, weight, bias, max_order, eps)
            _track(running_mean, running_var, mean0, stat, momentum, n)
            return y
        else:
            mean0, stat = _planar_stats(xc, max_order)
        _track(running_mean, running_var, mean0, stat, momentum, n)
    elif training:  # empty batch: nothing to estimate; running statistics untouched
        mean0 = x.new_zeros(c, 1, dtype=ct)
        stat = None
    else:
        rm, rv = _running(running_mean, running_var)
        mean0, stat = rm.to(ct)[:, None], rv.to(ct)
    # (C, M+1); the empty batch of a training call is scaled by 1
    scale = x.new_ones(c, max_order + 1, dtype=ct) if stat is None else (stat + eps).rsqrt()
    if weight is not None:
        scale = scale * weight.to(ct)
    # per-slot scale: order 0 once, each order m on its slots; views, no index tensor (building
    # one on CUDA copies it from the host and stalls the queue, three host-device syncs per step
    # of an SO(2) CNN on an H200; no device sync, a meta shape, and ONNX-exportable, which
    # repeat_interleave with output_size is not)
    if volume:
        slot = torch.cat([scale[:, :1]] + [scale[:, m:m + 1].expand(c, 2 * m + 1)
                                           for m in range(1, max_order + 1)], dim=1)
    else:
        slot = _pair_slots(scale)
    return _affine(x, xc, slot, mean0, bias)


def _planar_stats(xc: torch.Tensor, max_order: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean0, stat)`` of planar fields ``xc`` ``(B, C, 2M+1, H, W)``: order 0's mean ``(C,
    1)``, and ``(C, M + 1)`` its variance then each order's ``E|v_m|^2 / 2``, the squared norm
    over the pair and ``B, H, W`` in one reduction (``var_mean`` over every slot would be one
    op less, but measured 3x slower on CPU at (16, 16, 5, 32, 32))."""
    b, c, f, h, w = xc.shape
    a0, rest = xc.split([1, f - 1], dim=2)
    var0, mean0 = torch.var_mean(a0, dim=(0, 3, 4), unbiased=False)  # (C, 1)
    if not max_order:
        return mean0, var0
    norm = torch.linalg.vector_norm(rest.view(b, c, max_order, 2, h, w), dim=(0, 3, 4, 5))
    return mean0, torch.cat([var0, norm.square().div_(2 * b * h * w)], dim=1)


def _centred_stats(xc: torch.Tensor, max_order: int, volume: bool
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean0, stat)`` of ``statistics="order_centred"``: order 0's mean ``(C, 1)`` and per
    order the mean of its slots' variances about their batch means ``(C, M + 1)`` (order 0:
    its variance), over ``B`` and the spatial dims."""
    var_s, mean_s = torch.var_mean(xc, dim=(0, *range(3, xc.dim())), unbiased=False)  # (C, F)
    sizes = [2 * m + 1 for m in range(max_order + 1)] if volume else [1] + [2] * max_order
    stat = torch.stack([v.mean(1) for v in var_s.split(sizes, dim=1)], dim=1)
    return mean_s[:, :1], stat


def _pair_slots(per_order: torch.Tensor) -> torch.Tensor:
    """``(C, M + 1) -> (C, 2M + 1)``: order 0 once, each order m >= 1 on its two slots (``[s_0,
    s_0, s_1, s_1, ...]`` less its first entry: one expand, no index tensor)."""
    c, k = per_order.shape
    return per_order[:, :, None].expand(c, k, 2).reshape(c, 2 * k)[:, 1:]


def _track(running_mean: torch.Tensor | None, running_var: torch.Tensor | None,
           mean0: torch.Tensor, stat: torch.Tensor, momentum: float, n: int) -> None:
    if running_mean is not None and running_var is not None:
        _check_captured(mean0, running_mean, running_var)
        with torch.no_grad():
            _update_stats(running_mean, running_var, mean0, stat, momentum, n)


def _hand_backward(x: torch.Tensor, weight: torch.Tensor | None,
                   bias: torch.Tensor | None) -> bool:
    """Whether a training call takes :class:`_PlanarBatchNorm`: a gradient is wanted and
    plain autograd runs (not under ``torch.func`` transforms, forward-mode AD, tracing,
    ``torch.compile`` or autocast: plain ops there)."""
    return (torch.is_grad_enabled()
            and any(t is not None and t.requires_grad for t in (x, weight, bias))
            and plain_autograd(x))


def _planar_train(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None,
                  max_order: int, eps: float) -> tuple[torch.Tensor, ...]:
    """Training-mode output of planar fields with statistics per order, in plain ops:
    ``(y, mean0, stat, r, scale, slot)`` (``r = (stat + eps)^-1/2``, ``scale = r weight``)."""
    xc = x.to(torch.float32 if _low_precision(x) else x.dtype)
    mean0, stat = _planar_stats(xc, max_order)
    r = (stat + eps).rsqrt()
    scale = r if weight is None else r * weight.to(r.dtype)
    slot = _pair_slots(scale)
    return _affine(x, xc, slot, mean0, bias), mean0, stat, r, scale, slot


class _PlanarBatchNorm(torch.autograd.Function):
    """Training-mode :func:`harmonic_batch_norm` of planar fields (statistics per order) with a
    hand-written backward: a dozen small ops on ``(C, F)`` sums instead of autograd through
    ``var_mean``, the pair norms and the per-slot expansion (93 -> 68 aten ops per
    forward+backward at ``(2, 8, 5, 8, 8)``). ``create_graph=True`` differentiates the plain
    formulation instead (second derivatives).

    With ``s = w r`` per order: order 0 is ``nn.BatchNorm``'s backward, ``dx = s g + k_0 x +
    c_0`` with ``k_0 = -s r^2 D_0 / n``, ``c_0 = -k_0 mu - s G_0 / n``; a pair slot
    ``dx = s g + k_m x``, ``k_m = -s r^2 P_m / (2 n)``; ``dw = r [D_0, P_m]``, ``db = G_0``,
    where ``G = sum g``, ``D_0 = sum g (a_0 - mu)``, ``P_m = sum g . v_m`` over ``B, H, W``
    (and the pair)."""

    @staticmethod
    def forward(ctx, x, weight, bias, max_order, eps):
        y, mean0, stat, r, scale, slot = _planar_train(x, weight, bias, max_order, eps)
        ctx.save_for_backward(x, weight, bias, mean0, r, scale, slot)
        ctx.args = (max_order, eps)
        ctx.mark_non_differentiable(mean0, stat)
        ctx.set_materialize_grads(False)  # no zero gradients built for mean0 and stat
        return y, mean0, stat

    @staticmethod
    def backward(ctx, gy, _gm, _gs):
        x, weight, bias, mean0, r, scale, slot = ctx.saved_tensors
        need = ctx.needs_input_grad[:3]
        if gy is None:  # y did not reach the loss
            return None, None, None, None, None
        if torch.is_grad_enabled():  # create_graph=True: the plain ops, differentiable
            ins = [t for t, nd in zip((x, weight, bias), need, strict=True) if nd]
            with torch.enable_grad():
                y = _planar_train(x, weight, bias, *ctx.args)[0]
            got = iter(torch.autograd.grad(y, ins, gy, create_graph=True))
            return (*(next(got) if nd else None for nd in need), None, None)
        b, c, f, h, w = x.shape
        n = b * h * w
        ct = slot.dtype
        g, xc = gy.to(ct), x.to(ct)
        fused = _fused_sums(xc)
        if fused:  # g slot, sum g x and sum g per slot in one pass (see _fused_sums)
            g = g.contiguous()  # e.g. the expanded ones of out.sum().backward(): one copy
            zeros, ones = _unit_stats(slot, c * f)
            g_slot, gx_sum, g_sum = torch.ops.aten.native_batch_norm_backward(
                g.view(b, c * f, h * w), xc.view(b, c * f, h * w), slot.reshape(-1), zeros, ones,
                None, None, False, 0.0, [need[0], True, True])
            g0, gx_sum = g_sum.view(c, f), gx_sum.view(c, f)
        else:
            g0 = g.sum((0, 3, 4))  # (C, F)
            gx_sum = (g * xc).sum((0, 3, 4))
        # sum g (x - mu) per slot (mu on slot 0 only), then per order [D_0, P_1, ..., P_M]
        d = torch.addcmul(gx_sum, g0, F.pad(mean0, (0, f - 1)), value=-1)
        d = F.pad(d, (1, 0)).view(c, f // 2 + 1, 2).sum(2)
        gw = r * d if need[1] else None
        gb = g0[:, 0] if need[2] else None
        gx = None
        if need[0]:
            k = scale * r * r * d
            k[:, 1:].mul_(0.5)  # a pair averages 2 n squares
            k.mul_(-1 / n)
            c0 = torch.addcmul(k[:, :1] * mean0, scale[:, :1], g0[:, :1], value=1 / n).neg_()
            view = (1, c, f, 1, 1)
            if fused:
                gx = g_slot.view(x.shape).addcmul_(xc, _pair_slots(k).reshape(view))
                gx[:, :, :1].add_(c0.view(1, c, 1, 1, 1))
                gx = gx.to(x.dtype)
            else:
                gx = torch.addcmul(torch.addcmul(F.pad(c0, (0, f - 1)).view(view), xc,
                                                 _pair_slots(k).reshape(view)),
                                   g, slot.reshape(view)).to(x.dtype)
        return gx, gw, gb, None, None


def _fused_sums(xc: torch.Tensor) -> bool:
    """Whether :class:`_PlanarBatchNorm`'s backward takes its per-slot sums and ``g * slot``
    from one eval-mode ``aten.native_batch_norm_backward`` (mean 0, variance 1, ``eps = 0``:
    ``g * weight``, ``sum g x``, ``sum g``; as accurate as ``sum``: 0.9e-7 and 1.0e-7 relative
    against float64 where ``sum`` gave 1.8e-7 and 2.0e-7 at (16, 32, 5, 64, 64)): the rule of
    :func:`scale_shift` (a contiguous ``x``; the gradient is made contiguous, one copy when it
    is not, e.g. the expanded ones of ``out.sum().backward()``). The training step of
    HarmonicBatchNorm at (16, 32, 5, 64, 64), forward and backward: 1.42-1.68x
    ``nn.BatchNorm3d``'s -> 1.01-1.20x (1 and 2 threads, four runs; ``benchmarks/results/
    harmonic-batch-norm/cpu-harmonic.md``; its peak memory row, 2.0x against 1.5x, is that copy
    of the benchmark's expanded gradient)."""
    return _batch_norm_kernels(xc)


def _update_stats(running_mean: torch.Tensor, running_var: torch.Tensor, mean0: torch.Tensor,
                  stat: torch.Tensor, momentum: float, n: int) -> None:
    """The running averages (in place, under ``no_grad``): ``running_mean`` of ``mean0``
    ``(C, 1)``, ``running_var`` of ``stat`` ``(C, K)`` with its column 0 (a variance about
    the mean) unbiased, times ``n / (n - 1)``, as ``nn.BatchNorm``."""
    unbias = n / max(n - 1, 1)
    # under torch.func (buffers passed into vmap: model ensembling) lerp_ has no batching
    # rule (a per-sample loop and a performance warning): the two-op update has
    if _low_precision(running_mean) or _low_precision(running_var) or _wrapped(running_var):
        _update(running_mean, mean0[:, 0], momentum)
        _update(running_var, torch.cat([stat[:, :1] * unbias, stat[:, 1:]], dim=1), momentum)
        return
    # (1 - m) old + m new as one op; column 0 then gets m (unbias - 1) var_0 more, so it
    # averages the unbiased variance
    running_mean.lerp_(mean0[:, 0].to(running_mean.dtype), momentum)
    running_var.lerp_(stat.to(running_var.dtype), momentum)
    if unbias != 1:
        running_var[:, 0].add_(stat[:, 0].to(running_var.dtype), alpha=momentum * (unbias - 1))


def _affine(x: torch.Tensor, xc: torch.Tensor, slot: torch.Tensor, mean0: torch.Tensor,
            bias: torch.Tensor | None) -> torch.Tensor:
    """``x`` (cast to the statistics' dtype: ``xc``) times the per-slot scale ``slot``
    ``(C, F)`` (weights included), order 0 centred on ``mean0`` ``(C, 1)`` and shifted by
    ``bias`` (the shift sits on order 0 only), as one ``addcmul``; returned in ``x``'s
    dtype."""
    c, f = slot.shape
    # order 0's shift bias - mean0 * s_0, then zeros on the other slots
    shift0 = (torch.mul(mean0, slot[:, :1]).neg_() if bias is None else
              torch.addcmul(bias.to(xc.dtype)[:, None], mean0, slot[:, :1], value=-1))
    shift = F.pad(shift0, (0, f - 1)) if f > 1 else shift0
    return scale_shift(xc, slot, shift).to(x.dtype)


#: From this many elements of ``x`` :func:`scale_shift` takes ``F.batch_norm`` on the CPU:
#: its fixed cost is about 10 us more than the ``addcmul``'s (1 thread), which it wins back
#: from about 30K elements (``/tmp`` timing of the two: 2.1x at 5K elements, 1.1x at 20K, 0.8x
#: at 40K, 0.57x at (4, 16, 5, 16, 16)).
SCALE_SHIFT_BN_FROM = 2 ** 15


def scale_shift(x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """``x * scale + shift`` with ``scale`` and ``shift`` ``(C, F)`` per slot of ``x`` ``(B, C,
    F, *spatial)``, as one broadcasting ``torch.addcmul``, or on the CPU for a contiguous ``x``
    of :data:`SCALE_SHIFT_BN_FROM` elements or more as an eval-mode ``F.batch_norm`` over ``C
    F`` channels with mean 0, variance 1 and ``eps = 0`` (``scale`` and ``shift`` its weight and
    bias: ``x * scale + shift`` up to rounding, differentiable in all three), which runs at
    about the speed of a copy of ``x`` where the ``addcmul`` took 1.8-2.1x. Eval-mode
    HarmonicBatchNorm at (16, 32, 5, 64, 64): 1.53-1.60x ``nn.BatchNorm3d`` on the same tensor
    -> 1.02-1.07x (1 and 2 threads, four runs; ``benchmarks/results/harmonic-batch-norm/
    cpu-harmonic.md``, its ``addcmul affine`` row the former path). Not measured on a GPU: the
    ``addcmul`` there."""
    c, f = scale.shape
    if _batch_norm_kernels(x):
        zeros, ones = _unit_stats(scale, c * f)
        return F.batch_norm(x.view(x.shape[0], c * f, math.prod(x.shape[3:])), zeros, ones,
                            scale.reshape(-1), shift.reshape(-1), False, 0.0, 0.0).view(x.shape)
    view = (1, c, f) + (1,) * (x.dim() - 3)
    return torch.addcmul(shift.view(view), x, scale.reshape(view))


def _batch_norm_kernels(x: torch.Tensor) -> bool:
    """The rule of :func:`scale_shift` and :func:`_fused_sums`: batch-norm kernels for the
    per-slot affine on the CPU, for a contiguous ``(B, C, F, ...)`` map of
    :data:`SCALE_SHIFT_BN_FROM` elements or more."""
    return (x.device.type == "cpu" and x.dim() >= 4 and x.numel() >= SCALE_SHIFT_BN_FROM
            and x.is_contiguous())


def _unit_stats(like: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean 0 and variance 1 for ``n`` channels (one allocation): with ``eps = 0`` they make an
    eval-mode batch norm the affine ``x * weight + bias``."""
    stats = like.new_zeros(2, n)
    stats[1] = 1
    return stats[0], stats[1]


def _field_batch_norm(x: torch.Tensor, state: tuple, training: bool, momentum: float,
                      eps: float, ct: torch.dtype, n: int) -> torch.Tensor:
    """:func:`harmonic_batch_norm` with ``statistics="field"`` (arguments checked there)."""
    running_mean, running_var, weight, bias = state
    c, f = x.shape[1:3]
    stat_dims = (0, *range(3, x.dim()))
    if training and n > 0:
        var_s, mean_s = torch.var_mean(x.to(ct), dim=stat_dims, unbiased=False)  # (C, F)
        var, mean0 = var_s.mean(1), mean_s[:, 0]
        if running_mean is not None and running_var is not None:
            _check_captured(mean0, running_mean, running_var)
            with torch.no_grad():
                _update_stats(running_mean, running_var, mean0[:, None], var[:, None],
                              momentum, n)
    elif training:  # empty batch: nothing to estimate; running statistics untouched
        var, mean0 = x.new_ones(c, dtype=ct), x.new_zeros(c, dtype=ct)
    else:
        rm, rv = _running(running_mean, running_var)
        var, mean0 = rv[:, 0].to(ct), rm.to(ct)
    scale = x.new_ones(c, dtype=ct) if training and n == 0 else (var + eps).rsqrt()
    if weight is not None:
        scale = scale * weight[:, 0].to(ct)
    return _affine(x, x.to(ct), scale[:, None].expand(c, f), mean0[:, None], bias)
