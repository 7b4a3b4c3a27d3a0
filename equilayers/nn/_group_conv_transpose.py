"""Transposed lifting and group convolutions as ``nn.ConvTranspose2d`` look-alikes: the
upsampling layers of equivariant decoders (the math is
:mod:`equilayers.functional._gconv_transpose`). Each is a small subclass of the group conv
(``transposed = True``): the same weight, basis and expanded filter, regrouped for one
``F.conv_transpose2d``."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ..functional import _basis_settings as BS
from ..functional import _gconv_transpose as GT
from ..groups import GroupLike
from ._checks import note_output_size
from ._derived import parametrized_once
from ._group_conv import _GroupConvNd

__all__ = ["LiftingConvTranspose2d", "GroupConvTranspose2d"]

_SHARED_DOC = """
    Args:
        in_channels, out_channels, kernel_size, stride, padding, output_padding, groups, bias,
        dilation, device, dtype: as ``nn.ConvTranspose2d`` (its argument order; ``kernel_size``
            square, ``padding`` an int or a pair). Channels count *fields*.
        padding_mode: ``"zeros"`` only, as ``nn.ConvTranspose2d`` (its padding crops).
        group, basis, max_order, in_max_order, sigma, frequencies_cutoff, rings: as
            :class:`~equilayers.nn.GroupConv2d` (pixel filters for c1..d4, the steerable basis
            for any ``cN``/``dN``, ``so2``, ``o2``; regular or harmonic fields).

    The weight is the forward conv's with the same ``(in_channels, out_channels)``: ``(C_out,
    C_in // groups, ...)`` (not ``nn.ConvTranspose2d``'s ``(C_in, C_out // groups, k, k)``,
    which :meth:`expanded_filter` returns for the expanded filter). Its init is the group
    conv's, with the variance times ``stride_h * stride_w`` (a transposed conv at stride ``s``
    sums ``k / s`` taps per output pixel and dim on average): unit second moment per slot.

    Shape:
        ``H' = (H - 1) * stride - 2 * padding + dilation * (k - 1) + output_padding + 1``, the
        same for ``W'`` (as ``nn.ConvTranspose2d``; ``forward(x, output_size=...)`` picks the
        output padding that reaches a size, as there); the fiber ``F`` as the group conv's.

    Equivariance:
        Exact (float rounding) for every element of the group's grid subgroup whenever
        ``output_padding == 0`` (and, for 90-degree rotations, the same options on both dims),
        at any input size and stride: the transposed conv scatters each
        input pixel to ``i * stride + dilation * t``, a grid that a flip about the centre maps
        onto itself, and cropping ``padding`` on both sides keeps it centred, while
        ``output_padding`` adds rows at one end only (measured: exact on all 1268
        non-degenerate flip-symmetric configurations ``k <= 5, stride <= 3, padding <= 3,
        dilation <= 2, n = 3..7`` with ``output_padding = 0``, inexact with any ``> 0``).
        So stride 2 with ``k = 3, padding = 1`` maps ``n -> 2n - 1``, undoing the stride-2
        conv on an odd size exactly (a U-Net whose sizes stay odd is exact end to end), and
        ``k = 4, stride = 2, padding = 1`` doubles any size exactly. The first forward with
        ``output_padding > 0`` warns, once per module
        (:func:`~equilayers.functional.exactness_problems`, :func:`~equilayers.check_grid`).
        Off-grid rotations (c8, so2, ...) are approximate, as for the group conv: measured at
        45 degrees on the disk-faded camera image (49 x 49, float64), two-layer k5 stacks
        (lifting, ReLU, group, ``GroupPool``) of c8 / d8 err 0.017 / 0.024 relative, the same
        as the forward group-conv stacks with the same weights (at stride 1 the transposed
        conv is the group conv of the point-reflected filter). That holds at stride 1 only:
        at stride >= 2 each output pixel's phase (its position modulo the stride) decides
        which filter taps reach it, so the output alternates with pixel parity and an
        off-grid rotation, which mixes the phases, errs on the order of the output itself
        (one c8 / d8 / c6 layer, k3, stride 2, padding 1, random 15 x 15 input, float64:
        0.89-1.05 relative at the off-grid elements, against 0.05-0.08 for k5 at stride 1;
        the two-layer stack above on a random 49 x 49 input: 0.22 at stride 2, against 0.12-0.14
        for the forward stride-2 stack). The grid elements stay exact at every stride, as
        :class:`~equilayers.nn.SteerableConvTranspose3d` says for volumes. Cost: the group
        conv's filter expansion plus one ``F.conv_transpose2d``.
"""


class _GroupConvTransposeNd(_GroupConvNd):
    """The transposed subclass: ``nn.ConvTranspose2d``'s signature and forward, everything
    else (basis, weight, buffers, expansion, state dict) the group conv's."""

    transposed = True

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 output_padding=0, groups: int = 1, bias: bool = True, dilation=1,
                 padding_mode: str = "zeros", device=None, dtype=None, *,
                 group: GroupLike = "p4", basis: str | None = None,
                 max_order: int | None = None, in_max_order: int | None = None,
                 sigma: float | Sequence[float] | None = None,
                 frequencies_cutoff: BS.Cutoff | None = None,
                 rings: Sequence[float] | None = None) -> None:
        self.__dict__["_output_padding_arg"] = output_padding  # read by the base's __init__
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias, padding_mode, device, dtype, group=group, basis=basis,
                         max_order=max_order, in_max_order=in_max_order, sigma=sigma,
                         frequencies_cutoff=frequencies_cutoff, rings=rings)

    def _init_std(self) -> float | torch.Tensor:
        return super()._init_std() * math.sqrt(self.stride[0] * self.stride[1])

    def _expand(self) -> torch.Tensor:
        """The expanded filter in ``F.conv_transpose2d``'s layout ``(C_in * F_in, C_out * F_out
        // groups, k, k)``: the group conv's, regrouped."""
        return GT.transpose_filter(super()._expand(), self.groups)

    def _output_padding(self, x: torch.Tensor, output_size) -> tuple[int, int]:
        """``output_padding``, or the one that reaches ``output_size`` (``nn.ConvTranspose2d``'s
        rule: the last two entries are ``(H', W')``)."""
        if output_size is None:
            return self.output_padding
        op = GT.output_padding_for(x.shape[-2:], output_size, self.kernel_size[0], self.stride,
                                   self._pad[2::-2], self.dilation, type(self).__name__)
        note_output_size(self, op)  # (export warns: its exported form takes no output_size)
        return (op[0], op[1])

    @parametrized_once  # (a parametrized weight: evaluated once per call)
    def forward(self, x: torch.Tensor, output_size: Sequence[int] | None = None
                ) -> torch.Tensor:
        GT.check_zeros_mode(self.padding_mode, type(self).__name__, 2)
        self._check_forward_input(x)
        op = self._output_padding(x, output_size)
        self._check_exact(x, op)
        weight, bias = self._filter_and_bias()
        return GT.conv_transpose_expanded(x, weight, bias, self.fiber_out, self.stride,
                                          (self._pad[2], self._pad[0]), op, self.dilation,
                                          self.groups, what=type(self).__name__)


class LiftingConvTranspose2d(_GroupConvTransposeNd):
    __doc__ = """Transposed lifting convolution: images ``(B, C_in, H, W)`` to group feature
    maps ``(B, C_out, F, H', W')`` at a larger size (regular fields, ``F = |G|``, or harmonic).

    ``out[o, g] = sum_c in[c] (*)^T (g . psi[o, c]) + b[o]``: slot ``g`` scatters the input
    through the filter transformed by ``g`` (``(*)^T`` is ``F.conv_transpose2d``), the
    lifting conv's expanded filter run transposed.

    Functional twin: :func:`~equilayers.functional.lifting_conv_transpose2d`.
    """ + _SHARED_DOC + """
    Example:
        >>> import torch
        >>> from equilayers.nn import LiftingConvTranspose2d
        >>> up = LiftingConvTranspose2d(3, 8, 3, stride=2, padding=1, group="p4m")
        >>> up(torch.randn(2, 3, 9, 9)).shape
        torch.Size([2, 8, 8, 17, 17])
    """
    lifting = True


class GroupConvTranspose2d(_GroupConvTransposeNd):
    __doc__ = """Transposed group convolution between group feature maps
    ``(B, C_in, F_in, H, W) -> (B, C_out, F_out, H', W')`` (regular or harmonic fields).

    ``out[o, g] = sum_{c, h} in[c, h] (*)^T (g . psi[o, c])[h] + b[o]`` with the group conv's
    ``(g . psi)[h] = g . psi[g^-1 h]``: the group conv's expanded filter run by
    ``F.conv_transpose2d``. It is the adjoint of ``F.conv2d`` with the same expanded filter
    (:meth:`expanded_filter`), itself an equivariant group conv from ``out_channels`` to
    ``in_channels`` fields.

    Functional twin: :func:`~equilayers.functional.group_conv_transpose2d`.
    """ + _SHARED_DOC + """
    Example:
        >>> import torch
        >>> from equilayers.nn import GroupConvTranspose2d
        >>> up = GroupConvTranspose2d(8, 4, 4, stride=2, padding=1, group="p4")
        >>> up(torch.randn(2, 8, 4, 8, 8)).shape
        torch.Size([2, 4, 4, 16, 16])
        >>> GroupConvTranspose2d(8, 4, 5, stride=2, padding=2, group="c8")(
        ...     torch.randn(2, 8, 8, 9, 9)).shape
        torch.Size([2, 4, 8, 17, 17])
    """
    lifting = False
