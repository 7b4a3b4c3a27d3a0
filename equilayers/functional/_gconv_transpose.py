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
from .._host import traced_ints
from ..groups import GroupLike
from . import _gconv as G
from ._basis_settings import Cutoff

__all__ = [
    "transpose_filter",
    "check_output_padding",
    "check_transposed3d",
    "transposed_padding",
    "output_padding_for",
    "transposed_size",
    "conv_transpose_expanded",
    "lifting_conv_transpose2d",
    "group_conv_transpose2d",
]


def transpose_filter(weight: torch.Tensor, groups: int = 1) -> torch.Tensor:
    """``F.conv2d``'s weight ``(O, I // groups, *k)`` -> ``F.conv_transpose2d``'s / ``3d``'s
    ``(I, O // groups, *k)`` of the same taps: with ``groups=1`` a transposed view (the conv
    reads it through its strides: one copy fewer in the forward and in the backward, C4z 4 ->
    4 fields k3 stride 2 at 8^3, b4: forward+backward ~1.18 -> ~1.15x the dense
    ``nn.ConvTranspose3d``, one-off interleaved timing), else a transpose per group."""
    if groups == 1:
        return weight.transpose(0, 1)
    o, i = weight.shape[:2]
    return (weight.reshape(groups, o // groups, i, *weight.shape[2:]).transpose(1, 2)
            .reshape(groups * i, o // groups, *weight.shape[2:]))


def transposed_size(n: int, kernel_size: int, stride: int, padding: int, output_padding: int,
                    dilation: int) -> int:
    """``(n - 1) * stride - 2 * padding + dilation * (k - 1) + output_padding + 1``: the output
    size of a transposed conv along one dim (as ``nn.ConvTranspose2d``)."""
    return (n - 1) * stride - 2 * padding + dilation * (kernel_size - 1) + output_padding + 1


def _tuple(value, name: str, what: str, dims: int, minimum: int | None = None,
           fix: str = "") -> tuple[int, ...]:
    """An int or ``dims`` ints (a pair for images, a triple for volumes)."""
    if dims == 3:
        return C.check_triple(value, name, what, minimum=minimum)
    return C.check_pair(value, name, what, minimum=minimum, fix=fix)


def check_output_padding(output_padding, stride, dilation, what: str, dims: int = 2
                         ) -> tuple[int, ...]:
    """``output_padding`` as a pair (``dims=3``: a triple), each ``>= 0`` and smaller than the
    stride or the dilation of its dim (``nn.ConvTranspose2d``'s / ``3d``'s rule)."""
    op = _tuple(output_padding, "output_padding", what, dims, minimum=0,
                fix="smaller than the stride or the dilation; 0 keeps the layer exact")
    s = _tuple(stride, "stride", what, dims, minimum=1)
    d = _tuple(dilation, "dilation", what, dims, minimum=1)
    for o, si, di in zip(op, s, d, strict=True):
        if o >= si and o >= di:
            raise ValueError(f"{what}: output_padding={output_padding!r} must be smaller than "
                             f"the stride or the dilation of its dim (as nn.ConvTranspose{dims}d)"
                             f"; got stride={stride!r}, dilation={dilation!r}")
    return op


def check_transposed3d(padding, padding_mode, output_padding, stride, dilation, what: str
                       ) -> tuple[int, int, int]:
    """The arguments a 3-D transposed conv module takes beyond its forward conv's rules:
    ``padding`` an int or three ints (it crops), ``padding_mode="zeros"`` only, and
    ``output_padding`` (returned as a triple)."""
    transposed_padding(padding, what, 3)
    if padding_mode != "zeros":
        raise ValueError(f"{what}: padding_mode={padding_mode!r}: a transposed conv takes "
                         "'zeros' only (as nn.ConvTranspose3d: its padding crops the output)")
    op = check_output_padding(output_padding, stride, dilation, what, 3)
    return (op[0], op[1], op[2])


def check_zeros_mode(padding_mode, what: str, dims: int) -> None:
    """A transposed module's ``padding_mode`` at forward: ``"zeros"``, as its constructor
    checked (set to another mode afterwards it would be ignored; torch's transposed convs
    raise then too)."""
    if padding_mode != "zeros":
        raise ValueError(f"{what}: padding_mode={padding_mode!r} was set after construction; a "
                         f"transposed conv takes 'zeros' only (as nn.ConvTranspose{dims}d: its "
                         "padding crops the output): set it back to 'zeros'")


def transposed_padding(padding, what: str, dims: int = 2) -> tuple[int, ...]:
    """A transposed conv's ``padding``: an int or ``dims`` ints ``>= 0`` (it crops)."""
    if isinstance(padding, str):
        raise ValueError(f"{what}: padding={padding!r}: a transposed conv takes an int or "
                         f"{'a pair' if dims == 2 else 'three ints'} (as "
                         f"nn.ConvTranspose{dims}d; it crops the output, 'same'/'valid' do not "
                         "apply)")
    return _tuple(padding, "padding", what, dims, minimum=0,
                  fix="an int or a pair" if dims == 2 else "")


def output_padding_for(sizes: Sequence[int], output_size, kernel_size: int | Sequence[int],
                       strides: Sequence[int], pads: Sequence[int], dilations: Sequence[int],
                       what: str) -> tuple[int, ...]:
    """The ``output_padding`` per spatial dim that makes a transposed conv of an input of
    spatial ``sizes`` reach ``output_size`` (``nn.ConvTranspose2d``'s / ``3d``'s rule: its
    last ``len(sizes)`` entries are the output's spatial size; ``kernel_size`` one extent or
    one per dim)."""
    nd = len(sizes)
    if any(isinstance(n, torch.Tensor) for n in sizes):  # (the input's, under jit.trace)
        sizes = traced_ints(*sizes)
    ks = [kernel_size] * nd if isinstance(kernel_size, int) else list(kernel_size)
    size = list(output_size) if isinstance(output_size, (tuple, list, torch.Size)) else []
    # 0-dim integer tensors as ints, as nn.ConvTranspose2d takes them: a size read off a
    # traced input (torch.jit.trace: ``x.shape[-1]`` is one), a constant of the trace there
    size = [traced_ints(v)[0] if isinstance(v, torch.Tensor) and v.dim() == 0
            and not v.is_floating_point() and not v.is_complex() and v.dtype != torch.bool
            else v for v in size]
    names = "(H, W)" if nd == 2 else "(D, H, W)"
    if len(size) < nd or not all(isinstance(v, int) and not isinstance(v, bool)
                                 for v in size[-nd:]):
        raise ValueError(f"{what}: output_size={output_size!r} must end with the output's "
                         f"{names} as ints")
    op = []
    dims = ("H", "W") if nd == 2 else ("D", "H", "W")
    unit = "pixel" if nd == 2 else "voxel"
    for dim, n, want, k, s, p, d in zip(dims, sizes, size[-nd:], ks, strides, pads, dilations,
                                        strict=True):
        low = transposed_size(n, k, s, p, 0, d)
        if not low <= want < low + s:  # torch's output_size rule: up to stride - 1 more
            raise ValueError(f"{what}: output_size={output_size!r}: along {dim}, a {n}-{unit} "
                             f"input reaches sizes {low} to {low + s - 1} only (stride "
                             f"{s}, as nn.ConvTranspose{nd}d)")
        op.append(want - low)
    return tuple(op)


def check_spatial(x: torch.Tensor, nd: int, what: str) -> None:
    """Raise ``ValueError`` on a non-empty batch with an empty spatial size (``F.conv_transpose2d``
    named the internal ``(B, C F, H, W)`` view)."""
    spatial = tuple(x.shape[-nd:])
    if x.shape[0] and min(spatial) == 0:
        raise ValueError(f"{what}: x of shape {tuple(x.shape)} has an empty spatial size "
                         f"{'x'.join(map(str, spatial))}; a transposed conv needs at least "
                         f"{'x'.join('1' * nd)} (as nn.ConvTranspose{nd}d: only an empty batch "
                         "is allowed)")


def conv_transpose_expanded(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                            fiber_out: int, stride=1, padding=0, output_padding=0, dilation=1,
                            groups: int = 1, *, what: str = "conv_transpose") -> torch.Tensor:
    """One ``F.conv_transpose2d`` (a 5-D weight: ``F.conv_transpose3d``) with a transposed
    expanded filter ``(C_in * F_in, C_out * F_out // groups, *k)``: ``(B, C_in, [F_in,]
    *spatial) -> (B, C_out, F_out, *spatial')``. ``bias``: one value per output field
    ``(C_out,)`` or per slot ``(C_out * F_out,)``."""
    nd = weight.dim() - 2
    b, spatial = x.shape[0], tuple(x.shape[-nd:])
    check_spatial(x, nd, what)
    xc = x.reshape(b, math.prod(x.shape[1:-nd]), *spatial)  # no -1: an empty batch is fine
    sp, dp = _tuple(stride, "stride", what, nd), _tuple(dilation, "dilation", what, nd)
    pp = transposed_padding(padding, what, nd)
    op = _tuple(output_padding, "output_padding", what, nd)
    ks = tuple(weight.shape[-nd:])
    size = [transposed_size(n, k, s, p, o, d)
            for n, k, s, p, o, d in zip(spatial, ks, sp, pp, op, dp, strict=True)]
    if min(size) < 1:
        raise ValueError(f"{what}: the output of a {'x'.join(map(str, spatial))} input would "
                         f"be {'x'.join(map(str, size))} ((n - 1) * stride - 2 * padding + "
                         "dilation * (k - 1) + output_padding + 1 with k="
                         f"{ks[0] if len(set(ks)) == 1 else ks}, stride={sp}, "
                         f"padding={pp}, output_padding={op}, dilation={dp}): use a smaller "
                         "padding or a larger input")
    slots = weight.shape[1] * groups
    if bias is not None and bias.shape[0] != slots:
        bias = bias.repeat_interleave(fiber_out)
    conv = F.conv_transpose2d if nd == 2 else F.conv_transpose3d
    y = conv(xc, weight, bias, sp, pp, op, groups, dp)
    return y.reshape(b, slots // fiber_out, fiber_out, *y.shape[-nd:])


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
    pad = transposed_padding(padding, what)
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
    pad = transposed_padding(padding, what)
    filt, bias, f_out, _ = G._group_filter(x, weight, bias, stride, dilation, groups, "zeros",
                                           group, kernel_size, max_order, in_max_order,
                                           G._settings(sigma, frequencies_cutoff, rings), what)
    op = check_output_padding(output_padding, stride, dilation, what)
    return conv_transpose_expanded(x, transpose_filter(filt, groups), bias, f_out, stride, pad,
                                   op, dilation, groups, what=what)
