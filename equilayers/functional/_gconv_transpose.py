"""Transposed lifting and group convolutions: the upsampling twins of :func:`lifting_conv2d` /
:func:`group_conv2d` (``F.conv_transpose2d``'s arguments), for decoders of dense prediction.

Math. The filter is expanded exactly as the forward conv with the same ``(in, out)`` fields
expands it, ``W[o, g, c] = g . psi[o, c]`` (``(C_out * F_out, C_in * F_in // groups, k, k)``),
and regrouped to ``F.conv_transpose2d``'s layout ``(C_in * F_in, C_out * F_out // groups, k,
k)`` (:func:`transpose_filter`); then one ``F.conv_transpose2d`` runs. A transposed conv is a
correlation of the stride-dilated input with the point-reflected filter, and the point
reflection (the rotation by 180 degrees) commutes with every rotation and flip, so ``g . psi``
reflected is ``g . (psi reflected)``: the layer is a group conv of the dilated input, exactly
equivariant where its output grid is centred on the input's (:func:`exactness_problems` with
``output_padding``: always with ``output_padding=0``, at any input size and stride). It is
the adjoint of ``F.conv2d`` with the same expanded filter (``C_out * F_out -> C_in * F_in``),
itself an equivariant group conv ``out -> in``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .. import _checks as C
from ..groups import GroupLike
from . import _gconv as G
from ._basis_settings import Cutoff

__all__ = [
    "transpose_filter",
    "check_output_padding",
    "transposed_size",
    "conv_transpose_expanded",
    "lifting_conv_transpose2d",
    "group_conv_transpose2d",
]


def transpose_filter(weight: torch.Tensor, groups: int = 1) -> torch.Tensor:
    """``F.conv2d``'s weight ``(O, I // groups, k, k)`` -> ``F.conv_transpose2d``'s ``(I, O //
    groups, k, k)`` of the same taps (a view-and-transpose per group: no copy of the math)."""
    o, i = weight.shape[:2]
    return (weight.reshape(groups, o // groups, i, *weight.shape[2:]).transpose(1, 2)
            .reshape(groups * i, o // groups, *weight.shape[2:]))


def transposed_size(n: int, kernel_size: int, stride: int, padding: int, output_padding: int,
                    dilation: int) -> int:
    """``(n - 1) * stride - 2 * padding + dilation * (k - 1) + output_padding + 1``: the output
    size of a transposed conv along one dim (as ``nn.ConvTranspose2d``)."""
    return (n - 1) * stride - 2 * padding + dilation * (kernel_size - 1) + output_padding + 1


def check_output_padding(output_padding, stride, dilation, what: str) -> tuple[int, int]:
    """``output_padding`` as a pair, each ``>= 0`` and smaller than the stride or the dilation
    of its dim (``nn.ConvTranspose2d``'s rule)."""
    op = C.check_pair(output_padding, "output_padding", what, minimum=0,
                      fix="smaller than the stride or the dilation; 0 keeps the layer exact")
    s, d = C.check_pair(stride, "stride", what, minimum=1), C.check_pair(dilation, "dilation",
                                                                         what, minimum=1)
    for o, si, di in zip(op, s, d, strict=True):
        if o >= si and o >= di:
            raise ValueError(f"{what}: output_padding={output_padding!r} must be smaller than "
                             f"the stride or the dilation of its dim (as nn.ConvTranspose2d); "
                             f"got stride={stride!r}, dilation={dilation!r}")
    return op


def _padding(padding, what: str) -> tuple[int, int]:
    if isinstance(padding, str):
        raise ValueError(f"{what}: padding={padding!r}: a transposed conv takes an int or a pair "
                         "(as nn.ConvTranspose2d; it crops the output, 'same'/'valid' do not "
                         "apply)")
    return C.check_pair(padding, "padding", what, minimum=0, fix="an int or a pair")


def conv_transpose_expanded(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                            fiber_out: int, stride=1, padding=0, output_padding=0, dilation=1,
                            groups: int = 1, *, what: str = "conv_transpose") -> torch.Tensor:
    """One ``F.conv_transpose2d`` with a transposed expanded filter ``(C_in * F_in, C_out *
    F_out // groups, k, k)``: ``(B, C_in, [F_in,] H, W) -> (B, C_out, F_out, H', W')``.
    ``bias``: one value per output field ``(C_out,)`` or per slot ``(C_out * F_out,)``."""
    b, h, w = x.shape[0], x.shape[-2], x.shape[-1]
    if b and (h == 0 or w == 0):  # F.conv_transpose2d named the internal (B, C F, H, W) view
        raise ValueError(f"{what}: x of shape {tuple(x.shape)} has an empty spatial size "
                         f"{h}x{w}; a transposed conv needs at least 1x1 (as "
                         "nn.ConvTranspose2d: only an empty batch is allowed)")
    x4 = x.reshape(b, math.prod(x.shape[1:-2]), h, w)  # no -1: an empty batch is fine
    sp, dp = C.check_pair(stride, "stride", what), C.check_pair(dilation, "dilation", what)
    pp = _padding(padding, what)
    op = C.check_pair(output_padding, "output_padding", what)
    k = weight.shape[-1]
    size = [transposed_size(n, k, s, p, o, d)
            for n, s, p, o, d in zip((h, w), sp, pp, op, dp, strict=True)]
    if min(size) < 1:
        raise ValueError(f"{what}: the output of a {h}x{w} input would be {size[0]}x{size[1]} "
                         f"((n - 1) * stride - 2 * padding + dilation * (k - 1) + "
                         f"output_padding + 1 with k={k}, stride={sp}, padding={pp}, "
                         f"output_padding={op}, dilation={dp}): use a smaller padding or a "
                         "larger input")
    slots = weight.shape[1] * groups
    if bias is not None and bias.shape[0] != slots:
        bias = bias.repeat_interleave(fiber_out)
    y = F.conv_transpose2d(x4, weight, bias, sp, pp, op, groups, dp)
    return y.reshape(b, slots // fiber_out, fiber_out, y.shape[-2], y.shape[-1])


def lifting_conv_transpose2d(x: torch.Tensor, weight: torch.Tensor,
                             bias: torch.Tensor | None = None, stride=1, padding=0,
                             output_padding=0, groups: int = 1, dilation=1, *,
                             group: GroupLike = "p4", kernel_size: int | None = None,
                             max_order: int | None = None,
                             sigma: float | Sequence[float] | None = None,
                             frequencies_cutoff: Cutoff | None = None,
                             rings: Sequence[float] | None = None) -> torch.Tensor:
    """Transposed lifting conv ``(B, C_in, H, W) -> (B, C_out, F, H', W')``, ``H' = (H - 1) *
    stride - 2 * padding + dilation * (k - 1) + output_padding + 1`` (``F.conv_transpose2d``'s
    argument order).

    ``weight`` and the group arguments as :func:`~equilayers.functional.lifting_conv2d`'s
    (pixel ``(C_out, C_in // groups, k, k)`` or steerable ``(C_out, C_in // groups,
    num_basis)`` with ``kernel_size=k``): the same expanded filter, run by
    ``F.conv_transpose2d``. Exact on the group's grid subgroup with ``output_padding=0``, at
    any input size (:func:`~equilayers.functional.exactness_problems`)."""
    what = "lifting_conv_transpose2d"
    pad = _padding(padding, what)
    filt, bias, f_out, _ = G._lifting_filter(x, weight, bias, stride, dilation, groups, "zeros",
                                             group, kernel_size, max_order,
                                             G._settings(sigma, frequencies_cutoff, rings), what)
    op = check_output_padding(output_padding, stride, dilation, what)
    return conv_transpose_expanded(x, transpose_filter(filt, groups), bias, f_out, stride, pad,
                                   op, dilation, groups, what=what)


def group_conv_transpose2d(x: torch.Tensor, weight: torch.Tensor,
                           bias: torch.Tensor | None = None, stride=1, padding=0,
                           output_padding=0, groups: int = 1, dilation=1, *,
                           group: GroupLike = "p4", kernel_size: int | None = None,
                           max_order: int | None = None, in_max_order: int | None = None,
                           sigma: float | Sequence[float] | None = None,
                           frequencies_cutoff: Cutoff | None = None,
                           rings: Sequence[float] | None = None) -> torch.Tensor:
    """Transposed group conv ``(B, C_in, F_in, H, W) -> (B, C_out, F_out, H', W')``, sizes as
    :func:`lifting_conv_transpose2d`.

    ``weight`` and the group arguments as :func:`~equilayers.functional.group_conv2d`'s (pixel
    ``(C_out, C_in // groups, |G|, k, k)``, the group axis in the group's Fourier basis, or
    steerable ``(C_out, C_in // groups, num_basis)`` with ``kernel_size=k``): the same
    expanded filter, run by ``F.conv_transpose2d``. Exactness as
    :func:`lifting_conv_transpose2d`."""
    what = "group_conv_transpose2d"
    pad = _padding(padding, what)
    filt, bias, f_out, _ = G._group_filter(x, weight, bias, stride, dilation, groups, "zeros",
                                           group, kernel_size, max_order, in_max_order,
                                           G._settings(sigma, frequencies_cutoff, rings), what)
    op = check_output_padding(output_padding, stride, dilation, what)
    return conv_transpose_expanded(x, transpose_filter(filt, groups), bias, f_out, stride, pad,
                                   op, dilation, groups, what=what)
