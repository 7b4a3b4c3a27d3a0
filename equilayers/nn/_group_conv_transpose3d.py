"""Transposed lifting and group convolutions on voxels as ``nn.ConvTranspose3d`` look-alikes,
for the cube's groups: the upsampling layers of equivariant volumetric decoders (the math is
:mod:`equilayers.functional._gconv_transpose3d`). Each is a small subclass of the 3-D group
conv (``transposed = True``): the same weight, bases, tables and expanded filter, regrouped
for one ``F.conv_transpose3d``."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ..functional import _basis_settings as BS
from ..functional import _gconv_transpose as GT
from ..groups import GroupLike
from ._checks import check_input_once, note_output_size
from ._derived import parametrized_once
from ._eval_filter import eval_filter
from ._group_conv3d import _GroupConv3dBase
from ._tables import check_tables

__all__ = ["LiftingConvTranspose3d", "GroupConvTranspose3d"]

_SHARED_DOC = """
    Args:
        in_channels, out_channels, kernel_size, stride, padding, output_padding, groups, bias,
            dilation, device, dtype: as ``nn.ConvTranspose3d`` (its argument order; the kernel
            is cubic, ``k x k x k``; ``padding`` an int or three ints). Channels count
            *fields*.
        padding_mode: ``"zeros"`` only, as ``nn.ConvTranspose3d`` (its padding crops).
        group, basis, sigma, frequencies_cutoff, rings: as :class:`~equilayers.nn.GroupConv3d`
            (``"o"``, ``"oh"``, ``"c4z"``, ``"d4z"``; free voxel filters, or band-limited
            ones with ``basis="harmonic"``; even kernels too).

    The weight is the forward conv's with the same ``(in_channels, out_channels)``: ``(C_out,
    C_in // groups, [|G|,] k, k, k)`` (not ``nn.ConvTranspose3d``'s ``(C_in, C_out // groups,
    k, k, k)``, which :meth:`expanded_filter` returns for the expanded filter). Its init is
    the group conv's, with the variance times ``stride_d * stride_h * stride_w`` (a transposed
    conv at stride ``s`` sums ``k / s`` taps per output voxel and dim on average): unit second
    moment per slot.

    Shape:
        Per dim ``n' = (n - 1) * stride - 2 * padding + dilation * (k - 1) + output_padding +
        1`` (as ``nn.ConvTranspose3d``; ``forward(x, output_size=...)`` picks the output
        padding that reaches a size, as there); the fiber ``|G|``.

    Equivariance:
        Exact (float rounding) for every element of the group whenever ``output_padding`` is
        0 on the dims the group moves (all three for o/oh, height and width for c4z/d4z) and
        the dims it trades have equal options, at any input size and stride, even kernels
        included: the transposed conv scatters each input voxel to ``i * stride + dilation *
        t``, a grid that every signed permutation of the axes maps onto itself, and cropping
        ``padding`` on both sides keeps it centred, while ``output_padding`` adds voxels at
        the high end only. So stride 2 with ``k = 3, padding = 1`` maps ``n -> 2n - 1``,
        undoing the stride-2 ``GroupConv3d`` on an odd size (a 3-D U-Net whose sizes stay odd
        is exact end to end), and ``k = 4, stride = 2, padding = 1`` doubles any size. The
        first forward that is not exact warns, once per module
        (:func:`~equilayers.functional.exactness_problems3d`, :func:`~equilayers.check_grid`).
        Cost: the group conv's filter expansion plus one ``F.conv_transpose3d``.
"""


class _GroupConvTranspose3dBase(_GroupConv3dBase):
    """The transposed subclass: ``nn.ConvTranspose3d``'s signature and forward, everything
    else (bases, weight, tables, expansion, state dict) the 3-D group conv's."""

    transposed = True

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 output_padding=0, groups: int = 1, bias: bool = True, dilation=1,
                 padding_mode: str = "zeros", device=None, dtype=None, *,
                 group: GroupLike = "o", basis: str | None = None,
                 sigma: float | Sequence[float] | None = None,
                 frequencies_cutoff: BS.Cutoff | None = None,
                 rings: Sequence[float] | None = None) -> None:
        name = type(self).__name__
        self.output_padding = GT.check_transposed3d(padding, padding_mode, output_padding,
                                                     stride, dilation, name)
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias, padding_mode, device, dtype, group=group, basis=basis,
                         sigma=sigma, frequencies_cutoff=frequencies_cutoff, rings=rings)

    def _fan_in(self) -> float:
        return super()._fan_in() / math.prod(self.stride)

    def _expand(self) -> torch.Tensor:
        """The expanded filter in ``F.conv_transpose3d``'s layout ``(C_in * F_in, C_out * F_out
        // groups, k, k, k)``: the group conv's, regrouped."""
        return GT.transpose_filter(super()._expand(), self.groups)

    @parametrized_once  # (a parametrized weight: evaluated once per call)
    def forward(self, x: torch.Tensor, output_size: Sequence[int] | None = None
                ) -> torch.Tensor:
        name = type(self).__name__
        GT.check_zeros_mode(self.padding_mode, name, 3)
        pads = (self._pad[4], self._pad[2], self._pad[0])  # (D, H, W)
        op: tuple[int, ...] = self.output_padding
        if output_size is not None:
            self._input_checks(x)  # (the sizes it reads)
            op = GT.output_padding_for(x.shape[-3:], output_size, self.kernel_size[0],
                                       self.stride, pads, self.dilation, name)
            note_output_size(self, op)  # (export warns: its exported form takes none)
        check_input_once(self, x, (self.in_channels, self.kernel_size, self._pad, self.stride,
                                   self.dilation, self.group, op),
                         lambda: self._forward_checks(x, op))
        check_tables(self, lambda: self._index_tables(self.weight.device))
        weight, bias = eval_filter(self, (self.groups, self.lifting, self.basis),
                                   self._checked_params(), self._filter_and_bias)
        return GT.conv_transpose_expanded(x, weight, bias, self.fiber_out, self.stride, pads, op,
                                          self.dilation, self.groups, what=name)

    def extra_repr(self) -> str:
        s = super().extra_repr()
        if self.output_padding != (0, 0, 0):
            s += f", output_padding={self.output_padding}"
        return s


class LiftingConvTranspose3d(_GroupConvTranspose3dBase):
    __doc__ = """Transposed lifting convolution: volumes ``(B, C_in, D, H, W)`` to regular
    fields of a cube group ``(B, C_out, |G|, D', H', W')`` at a larger size.

    ``out[o, g] = sum_c in[c] (*)^T (g . psi[o, c]) + b[o]``: slot ``g`` scatters the input
    through the filter moved by ``g`` (``(*)^T`` is ``F.conv_transpose3d``), the lifting
    conv's expanded filter run transposed. escnn's ``R3ConvTransposed`` from trivial fields.

    Functional twin: :func:`~equilayers.functional.lifting_conv_transpose3d`.
    """ + _SHARED_DOC + """
    Example:
        >>> import torch
        >>> from equilayers.nn import LiftingConvTranspose3d
        >>> up = LiftingConvTranspose3d(2, 3, 3, stride=2, padding=1, group="o")
        >>> up(torch.randn(1, 2, 5, 5, 5)).shape
        torch.Size([1, 3, 24, 9, 9, 9])
    """
    lifting = True


class GroupConvTranspose3d(_GroupConvTranspose3dBase):
    __doc__ = """Transposed group convolution between regular fields of a cube group
    ``(B, C_in, |G|, D, H, W) -> (B, C_out, |G|, D', H', W')``.

    ``out[o, g] = sum_{c, h} in[c, h] (*)^T (g . psi[o, c])[h] + b[o]`` with the group conv's
    ``(g . psi)[h] = g . psi[g^-1 h]``: the :class:`~equilayers.nn.GroupConv3d` expanded
    filter run by ``F.conv_transpose3d``. It is the adjoint of ``F.conv3d`` with the same
    expanded filter, itself an equivariant group conv from ``out_channels`` to
    ``in_channels`` fields. escnn's ``R3ConvTransposed`` between regular fields.

    Functional twin: :func:`~equilayers.functional.group_conv_transpose3d`.
    """ + _SHARED_DOC + """
    Example:
        >>> import torch
        >>> from equilayers.nn import GroupConvTranspose3d
        >>> up = GroupConvTranspose3d(4, 2, 4, stride=2, padding=1, group="c4z")
        >>> up(torch.randn(1, 4, 4, 6, 6, 6)).shape
        torch.Size([1, 2, 4, 12, 12, 12])
    """
    lifting = False
