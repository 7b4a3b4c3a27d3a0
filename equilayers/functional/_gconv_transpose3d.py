"""Transposed lifting and group convolutions on voxels for the cube's groups: the upsampling
twins of :func:`lifting_conv3d` / :func:`group_conv3d` (``F.conv_transpose3d``'s arguments),
for volumetric decoders (3-D U-Nets).

Math, as in 2-D (:mod:`._gconv_transpose`): the filter is expanded exactly as the forward conv
with the same ``(in, out)`` fields expands it, ``W[o, g, c] = g . psi[o, c]``, regrouped to
``F.conv_transpose3d``'s layout ``(C_in * F_in, C_out * F_out // groups, k, k, k)``, and one
``F.conv_transpose3d`` runs. A transposed conv correlates the stride-dilated input with the
point-reflected filter; the point reflection (``-I``) commutes with every signed permutation
of the axes, so the layer is a group conv of the dilated input, exact for every element of the
group wherever its output grid is centred on the input's: at every input size and stride with
``output_padding == 0`` on the dims the group moves (:func:`exactness_problems3d` with
``output_padding``), even kernels included.
"""

from __future__ import annotations

import torch

from ..groups import GroupLike
from . import _gconv3d as G3
from . import _gconv_transpose as GT

__all__ = ["lifting_conv_transpose3d", "group_conv_transpose3d"]


def _conv_transpose(x, weight, bias, stride, padding, output_padding, groups, dilation, group,
                    lifting: bool, what: str) -> torch.Tensor:
    pad = GT.transposed_padding(padding, what, 3)
    filt, n = G3.checked_filter3d(x, weight, bias, stride, dilation, groups, "zeros", group,
                                  lifting, what)
    op = GT.check_output_padding(output_padding, stride, dilation, what, 3)
    return GT.conv_transpose_expanded(x, GT.transpose_filter(filt, groups), bias, n, stride,
                                      pad, op, dilation, groups, what=what)


def lifting_conv_transpose3d(x: torch.Tensor, weight: torch.Tensor,
                             bias: torch.Tensor | None = None, stride=1, padding=0,
                             output_padding=0, groups: int = 1, dilation=1, *,
                             group: GroupLike = "o") -> torch.Tensor:
    """Transposed lifting conv of volumes ``(B, C_in, D, H, W) -> (B, C_out, |G|, D', H',
    W')`` for a cube group (``"o"``, ``"oh"``, ``"c4z"``, ``"d4z"``), per dim ``n' = (n - 1) *
    stride - 2 * padding + dilation * (k - 1) + output_padding + 1`` (``F.conv_transpose3d``'s
    argument order).

    ``weight`` ``(C_out, C_in // groups, k, k, k)`` and ``bias`` ``(C_out,)`` as
    :func:`~equilayers.functional.lifting_conv3d`'s: the same expanded filter, run by
    ``F.conv_transpose3d``. Exact on every element with ``output_padding=0``, at any input
    size; see :class:`~equilayers.nn.LiftingConvTranspose3d`.

    Example:
        >>> import torch
        >>> lifting_conv_transpose3d(torch.randn(1, 2, 3, 3, 3), torch.randn(4, 2, 3, 3, 3),
        ...                          stride=2, padding=1, group="c4z").shape
        torch.Size([1, 4, 4, 5, 5, 5])
    """
    return _conv_transpose(x, weight, bias, stride, padding, output_padding, groups, dilation,
                           group, True, "lifting_conv_transpose3d")


def group_conv_transpose3d(x: torch.Tensor, weight: torch.Tensor,
                           bias: torch.Tensor | None = None, stride=1, padding=0,
                           output_padding=0, groups: int = 1, dilation=1, *,
                           group: GroupLike = "o") -> torch.Tensor:
    """Transposed group conv of regular fields of a cube group ``(B, C_in, |G|, D, H, W) ->
    (B, C_out, |G|, D', H', W')``, sizes as :func:`lifting_conv_transpose3d`.

    ``weight`` ``(C_out, C_in // groups, |G|, k, k, k)`` and ``bias`` as
    :func:`~equilayers.functional.group_conv3d`'s: the same expanded filter, run by
    ``F.conv_transpose3d``; see :class:`~equilayers.nn.GroupConvTranspose3d`.

    Example:
        >>> import torch
        >>> group_conv_transpose3d(torch.randn(1, 2, 4, 3, 3, 3),
        ...                        torch.randn(3, 2, 4, 4, 4, 4), stride=2, padding=1,
        ...                        group="c4z").shape
        torch.Size([1, 3, 4, 6, 6, 6])
    """
    return _conv_transpose(x, weight, bias, stride, padding, output_padding, groups, dilation,
                           group, False, "group_conv_transpose3d")
