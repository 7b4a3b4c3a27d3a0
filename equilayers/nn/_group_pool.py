"""Pooling modules for regular group feature maps ``(B, C, F, H, W)``."""

from __future__ import annotations

import torch
from torch import nn

from .. import _checks as C
from ..functional import _group_pool as P
from ..groups import FieldType
from ._exactness import _WarnsInexact
from ._typed import Typed

__all__ = ["GroupPool", "GroupMaxPool2d", "GroupAvgPool2d"]


class GroupPool(Typed, nn.Module):
    """Pool over the fiber: ``(B, C, F, H, W) -> (B, C, H, W)`` (``"max"`` or ``"mean"``),
    and ``(B, C, F, D, H, W) -> (B, C, D, H, W)`` for the cube groups' fields on volumes.

    ``y[c] = max_g x[c, g]`` (or the mean): invariant to any permutation of the slots, so
    regular fields become trivial ones (images) that still move with the input.

    Functional twin: :func:`~equilayers.functional.group_pool`.

    Args:
        reduction: ``"max"`` (``x.amax(2)``, the fastest formulation measured here) or
            ``"mean"``.

    Shape:
        ``(B, C, F, H, W) -> (B, C, H, W)``; ``(B, C, F, D, H, W) -> (B, C, D, H, W)``.

    Equivariance:
        Exact: regular in, trivial out (its types are of any group, and take the group's
        spatial dims when the harness binds them: 6-D in for the cube's groups).

    Example:
        >>> import torch
        >>> GroupPool()(torch.randn(2, 3, 8, 5, 5)).shape
        torch.Size([2, 3, 5, 5])
    """

    in_type = FieldType.regular()  # of any finite group
    out_type = FieldType.trivial()

    def __init__(self, reduction: str = "max") -> None:
        super().__init__()
        self.reduction = C.check_choice(reduction, "reduction", P.REDUCTIONS, "GroupPool")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return P.group_pool(x, self.reduction)

    def extra_repr(self) -> str:
        return "" if self.reduction == "max" else f"reduction={self.reduction!r}"


class _SpatialPool(Typed, _WarnsInexact):
    in_type = out_type = FieldType.regular()  # of any finite group

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1) -> None:
        super().__init__()
        C.check_pool_args(kernel_size, stride, padding, dilation, type(self).__name__,
                          max_pool=isinstance(self, GroupMaxPool2d))
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding = padding

    def _sampling_window(self) -> tuple:
        p = C.check_pair(self.padding, "padding")
        return self.kernel_size, self.stride, (p[0], p[0], p[1], p[1]), getattr(
            self, "dilation", 1)


class GroupMaxPool2d(_SpatialPool):
    """Spatial max pooling of group feature maps, every slot separately (``nn.MaxPool2d`` on
    ``(B, C, F, H, W)``).

    Functional twin: :func:`~equilayers.functional.group_max_pool2d`.

    Args:
        kernel_size, stride, padding, dilation, return_indices, ceil_mode: as
            ``nn.MaxPool2d``, in its order. ``return_indices=True``: ``forward`` returns
            ``(y, indices)``, ``indices`` of ``y``'s shape (int64): per slot, the flat index
            ``h W + w`` into that slot's ``H x W`` plane that ``nn.MaxPool2d`` gives for it
            (``nn.MaxUnpool2d`` takes ``y.flatten(1, 2)`` and ``indices.flatten(1, 2)``). A
            rotation moves the maxima but not the flat indices' meaning, so the indices are
            not equivariant as numbers (they are positions in the input).

    Shape:
        ``(B, C, F, H, W) -> (B, C, F, H', W')``,
        ``H' = floor((H + 2 p - dilation (k - 1) - 1) / stride) + 1``.

    Equivariance:
        Exact when the windows tile the input from both ends,
        ``(H + 2 p - dilation (k - 1) - 1) % stride == 0`` (e.g. k=3, stride=2, p=1 on odd
        sizes; k=2, stride=2 on even sizes), the same options on both dims for 90-degree
        rotations (any ``H x W``: a quarter turn maps it to ``W x H``).

    Example:
        >>> import torch
        >>> GroupMaxPool2d(2)(torch.randn(2, 3, 4, 8, 8)).shape
        torch.Size([2, 3, 4, 4, 4])
    """

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1,
                 return_indices: bool = False, ceil_mode: bool = False) -> None:
        super().__init__(kernel_size, stride, padding, dilation)
        what = type(self).__name__
        self.return_indices = C.check_flag(return_indices, "return_indices", what)
        self.ceil_mode = C.check_flag(ceil_mode, "ceil_mode", what)
        self.dilation = dilation

    def forward(self, x: torch.Tensor):  # (y, indices) with return_indices, as nn.MaxPool2d
        self._warn_if_window_inexact(x)
        return P.group_max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation,
                                  self.ceil_mode, self.return_indices)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
                + (f", dilation={self.dilation}" if self.dilation != 1 else "")
                + (", return_indices=True" if self.return_indices else "")
                + (", ceil_mode=True" if self.ceil_mode else ""))


class GroupAvgPool2d(_SpatialPool):
    """Spatial average pooling of group feature maps (``nn.AvgPool2d`` on ``(B, C, F, H, W)``).

    Functional twin: :func:`~equilayers.functional.group_avg_pool2d`.

    Args:
        kernel_size, stride, padding, ceil_mode, count_include_pad: as ``nn.AvgPool2d``.

    Shape:
        ``(B, C, F, H, W) -> (B, C, F, H', W')``, ``H' = floor((H + 2 p - k) / stride) + 1``.

    Equivariance:
        Exact under the same tiling condition as :class:`GroupMaxPool2d`.

    Example:
        >>> import torch
        >>> GroupAvgPool2d(3, 2, 1)(torch.randn(2, 3, 4, 9, 9)).shape
        torch.Size([2, 3, 4, 5, 5])
    """

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
                 count_include_pad: bool = True) -> None:
        super().__init__(kernel_size, stride, padding)
        ceil_mode = C.check_flag(ceil_mode, "ceil_mode", type(self).__name__)
        count_include_pad = C.check_flag(count_include_pad, "count_include_pad",
                                         type(self).__name__)
        self.ceil_mode, self.count_include_pad = ceil_mode, count_include_pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._warn_if_window_inexact(x)
        return P.group_avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                                  self.count_include_pad)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
                + (", ceil_mode=True" if self.ceil_mode else "")
                + (", count_include_pad=False" if not self.count_include_pad else ""))
