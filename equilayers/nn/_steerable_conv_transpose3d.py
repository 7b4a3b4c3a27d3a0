"""The transposed steerable convolution on voxels as an ``nn.ConvTranspose3d`` look-alike: the
upsampling layer of SO(3)/O(3) (and about-the-depth-axis SO(2)/O(2)/C_N/D_N) encoder-decoders
(the math is :mod:`equilayers.functional._steerable_transpose3d`). A small subclass of
:class:`~equilayers.nn.SteerableConv3d` (``transposed = True``): the same weight, basis, init
rule and state dict, its expanded filter regrouped for one ``F.conv_transpose3d``."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ..functional import _basis_settings as BS
from ..functional import _gconv_transpose as GT
from ..groups import GroupLike
from ._checks import note_output_size
from ._derived import parametrized_once
from ._steerable_conv3d import SteerableConv3d

__all__ = ["SteerableConvTranspose3d"]


class SteerableConvTranspose3d(SteerableConv3d):
    """Transposed steerable convolution of volumes or harmonic fields to harmonic fields at a
    larger size: ``(B, C_in, [F_in,] D, H, W) -> (B, C_out, F_out, D', H', W')``, SO(3)/O(3)
    fields of orders ``0 .. L`` (``F = (L+1)^2``) or a planar group's turned about the depth
    axis (``F = 2L+1``).

    ``out[o] = sum_c in[c] (*)^T K[o, c] + b[o] e_0`` (``(*)^T`` is ``F.conv_transpose3d``)
    with the :class:`~equilayers.nn.SteerableConv3d` filter of the same ``(in, out)`` fields,
    ``K[o, c] = sum_j w[o, c, j] B_j``: the adjoint of that conv's ``F.conv3d``, itself an
    equivariant steerable conv (the point reflection of a steerable filter is steerable).
    escnn's ``R3ConvTransposed`` on these fields (``from_escnn`` converts it).

    Functional twin: :func:`~equilayers.functional.steerable_conv_transpose3d`.

    Args:
        in_channels, out_channels, kernel_size, stride, padding: as ``nn.ConvTranspose3d``
            (its argument order; channels count *fields*; the kernel as
            :class:`~equilayers.nn.SteerableConv3d`'s: cubic, for a planar group also ``(k_d,
            k, k)``; even sizes too, e.g. the ``2 x 2 x 2`` up-conv of a U-Net; ``padding`` an
            int or three ints).
        output_padding, groups, bias, dilation, device, dtype: as ``nn.ConvTranspose3d``.
        padding_mode: ``"zeros"`` only, as ``nn.ConvTranspose3d`` (its padding crops).
        group, max_order, in_max_order, sigma, frequencies_cutoff, rings, basis: as
            :class:`~equilayers.nn.SteerableConv3d`.

    The weight is the forward conv's ``(C_out, C_in // groups, num_basis)``;
    :meth:`expanded_filter` returns the dense filter in ``nn.ConvTranspose3d``'s layout
    ``(C_in * F_in, C_out * F_out // groups, k_d, k, k)``. The init is the steerable conv's,
    with the variance times ``stride_d * stride_h * stride_w`` (a transposed conv at stride
    ``s`` sums ``k / s`` taps per output voxel and dim on average), as the transposed group
    convs'.

    Shape:
        Per dim ``n' = (n - 1) * stride - 2 * padding + dilation * (k - 1) + output_padding +
        1`` (``forward(x, output_size=...)`` picks the output padding that reaches a size, as
        ``nn.ConvTranspose3d``).

    Equivariance:
        Exact (float rounding) for the cube's 24 rotations (48 symmetries with ``"o3"``; a
        planar group: the quarter turns and flips of every depth slice) composed with the
        fibers' action, whenever ``output_padding`` is 0 on the dims the group moves, at any
        input size and stride: the transposed conv scatters input voxel ``i`` to ``i * stride
        + dilation * t``, a grid every signed permutation of the axes maps onto itself, and
        ``padding`` crops both sides alike (measured at most 1.1e-15 in float64,
        ``equilayers/testing/_cases_so3.py`` / ``_cases_axial.py``). So ``k = 3, stride = 2,
        padding = 1`` maps ``n -> 2n - 1``, undoing the stride-2 ``SteerableConv3d`` on an odd
        size. The first forward that is not exact warns, once per module.

        Other rotations: approximate. Measured as :class:`~equilayers.nn.SteerableConv3d`'s
        (Gaussian-smoothed random volume, trilinear rotation, the output's inscribed ball,
        worst of 5 random rotations, float64, seeds 0 / 1 / 2; 2026-12-06): at stride 1 the
        layer is a steerable conv with the point-reflected filter, off by the forward conv's
        level, 0.023 / 0.016 / 0.022 (volume -> L=1, k=3), 0.014 / 0.020 / 0.022 (volume ->
        L=2, k=5), 0.014 / 0.019 / 0.021 (L=1 -> L=1, k=3) against an interpolation floor of
        0.069-0.093 (21^3 input; escnn's ``R3ConvTransposed`` of the same shapes 0.015-0.024;
        ``tests/test_steerable_transpose3d.py``). At stride 2 every transposed conv's output
        alternates with the parity of the voxel (each output voxel sums another subset of
        the taps), which interpolation mixes: 0.45-1.7 of the output against a floor of
        0.28-0.74 on an 11^3 input, escnn's ``R3ConvTransposed`` 0.33-1.22, the same
        setup. Exactness on the grid does not depend on the stride.

    Example:
        >>> import torch
        >>> from equilayers.nn import SteerableConvTranspose3d
        >>> up = SteerableConvTranspose3d(4, 2, 3, stride=2, padding=1, in_max_order=1,
        ...                               max_order=1)
        >>> up(torch.randn(1, 4, 4, 5, 5, 5)).shape
        torch.Size([1, 2, 4, 9, 9, 9])
        >>> up = SteerableConvTranspose3d(2, 2, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1),
        ...                               group="so2", max_order=2)
        >>> up(torch.randn(1, 2, 3, 4, 4)).shape  # (B, C, 2L+1, D, H, W)
        torch.Size([1, 2, 5, 3, 7, 7])
    """

    #: as torch's ``_ConvNd``
    transposed = True

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 output_padding=0, groups: int = 1, bias: bool = True, dilation=1,
                 padding_mode: str = "zeros", device=None, dtype=None, *,
                 group: GroupLike = "so3", max_order: int = 1, in_max_order: int | None = None,
                 sigma: float | Sequence[float] | None = None,
                 frequencies_cutoff: BS.Cutoff | None = None,
                 rings: Sequence[float] | None = None, basis: str = "shells") -> None:
        name = type(self).__name__
        self.output_padding = GT.check_transposed3d(padding, padding_mode, output_padding,
                                                     stride, dilation, name)
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias, padding_mode, device, dtype, group=group,
                         max_order=max_order, in_max_order=in_max_order, sigma=sigma,
                         frequencies_cutoff=frequencies_cutoff, rings=rings, basis=basis)

    def _init_std(self) -> torch.Tensor:
        return super()._init_std() * math.sqrt(math.prod(self.stride))

    def expanded_filter(self) -> torch.Tensor:
        """The dense filter in ``F.conv_transpose3d``'s layout ``(C_in * F_in, C_out * F_out
        // groups, k_d, k, k)``: the steerable conv's, regrouped (differentiable; nothing
        cached)."""
        return self._expand()

    def _expand(self) -> torch.Tensor:  # (the transposed convs' name, which export reads)
        return GT.transpose_filter(super().expanded_filter(), self.groups)

    @parametrized_once  # (a parametrized weight: evaluated once per call)
    def forward(self, x: torch.Tensor, output_size: Sequence[int] | None = None
                ) -> torch.Tensor:
        name = type(self).__name__
        GT.check_zeros_mode(self.padding_mode, name, 3)
        self._forward_checks(x)
        pads = (self._pad[4], self._pad[2], self._pad[0])  # (D, H, W)
        op: tuple[int, ...] = self.output_padding
        if output_size is not None:
            op = GT.output_padding_for(x.shape[-3:], output_size, self.kernel_size,
                                       self.stride, pads, self.dilation, name)
            note_output_size(self, op)  # (export warns: its exported form takes none)
        self._check_exact(x, op)
        weight, bias = self._filter_and_bias()
        return GT.conv_transpose_expanded(x, weight, bias, self.fiber_out, self.stride, pads,
                                          op, self.dilation, self.groups, what=name)

    def extra_repr(self) -> str:
        s = super().extra_repr()
        if self.output_padding != (0, 0, 0):
            s += f", output_padding={self.output_padding}"
        return s
