"""The transposed steerable convolution on voxels: the upsampling twin of
:func:`~equilayers.functional.steerable_conv3d` (``F.conv_transpose3d``'s arguments), for
SO(3)/O(3) harmonic fields and the planar groups' fields turned about the depth axis.

Math, as for the transposed group convs (:mod:`._gconv_transpose3d`): the filter is expanded
exactly as the forward conv with the same ``(in, out)`` fields expands it, ``K[o, c] = sum_j
w[o, c, j] B_j`` with ``K(R q) = D_out(R) K(q) D_in(R)^T``, regrouped to
``F.conv_transpose3d``'s layout ``(C_in * F_in, C_out * F_out // groups, k_d, k, k)``, and one
``F.conv_transpose3d`` runs. A transposed conv correlates the stride-dilated input with the
point-reflected filter; ``K(-q)`` obeys the same constraint (``-I`` commutes with every rotation,
and for O(3) it is the inversion itself), so the layer is a steerable conv of the dilated input:
exact for the cube's rotations (the planar groups' quarter turns and flips of every slice)
wherever its output grid is centred on the input's, at every input size and stride with
``output_padding == 0`` on the dims the group moves.
"""

from __future__ import annotations

import torch

from . import _gconv_transpose as GT
from ._steerable3d import checked_steerable3d, expand_steerable3d, order0_bias

__all__ = ["steerable_conv_transpose3d"]


def steerable_conv_transpose3d(
    x: torch.Tensor,
    weight: torch.Tensor,
    basis: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride=1,
    padding=0,
    output_padding=0,
    groups: int = 1,
    dilation=1,
) -> torch.Tensor:
    """Transposed convolution with filters in a steerable 3-D basis: one
    ``F.conv_transpose3d`` with the expanded filter (the functional twin of
    :class:`~equilayers.nn.SteerableConvTranspose3d`).

    Args:
        x: ``(B, C_in, D, H, W)`` (``F_in = 1``) or ``(B, C_in, F_in, D, H, W)``.
        weight: ``(C_out, C_in // groups, num_basis)``: the forward conv's with the same
            ``(in, out)`` fields (:func:`steerable_conv3d`'s).
        basis: ``(num_basis, F_out, F_in, k_d, k, k)`` from :func:`steerable_basis3d`.
        bias: ``(C_out,)``, added to slot 0 (order 0, invariant) only.
        stride, padding, output_padding, groups, dilation: as ``F.conv_transpose3d`` (its
            argument order; ``padding`` an int or three ints: it crops).

    Shape: ``(B, C_out, F_out, D', H', W')``, per dim ``n' = (n - 1) * stride - 2 * padding +
    dilation * (k - 1) + output_padding + 1``.

    Example:
        >>> from equilayers.functional import steerable_basis3d
        >>> basis = steerable_basis3d("so3", 3, out_order=1)
        >>> w = torch.randn(4, 2, basis.shape[0])
        >>> steerable_conv_transpose3d(torch.randn(1, 2, 5, 5, 5), w, basis, stride=2,
        ...                            padding=1).shape
        torch.Size([1, 4, 4, 9, 9, 9])
    """
    what = "steerable_conv_transpose3d"
    pad = GT.transposed_padding(padding, what, 3)
    op = GT.check_output_padding(output_padding, stride, dilation, what, 3)
    x, f_out, _ = checked_steerable3d(x, weight, basis, bias, stride, dilation, groups, what)
    filt = GT.transpose_filter(expand_steerable3d(weight, basis), groups)
    return GT.conv_transpose_expanded(x, filt, order0_bias(bias, f_out), f_out, stride, pad, op,
                                      dilation, groups, what=what)
