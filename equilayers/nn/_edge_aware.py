"""Edge-aware blur (kornia's ``EdgeAwareBlurPool2D``): see
:mod:`equilayers.functional._edge_aware`."""

from __future__ import annotations

import torch
from torch import nn

from ..functional._edge_aware import (
    EDGE_DILATION,
    EDGE_THRESHOLD,
    EPSILON,
    check_edge_aware_args,
    edge_aware_blur_pool2d,
)
from ..groups import FieldType
from ._typed import Typed

__all__ = ["EdgeAwareBlurPool2d"]


class EdgeAwareBlurPool2d(Typed, nn.Module):
    """Blur an image with a binomial filter except near its edges (kornia's
    ``EdgeAwareBlurPool2D``; the output has the input's size: nothing is pooled).

    A pixel is on an edge when, along rows or columns, the channel mean of
    ``log2(x + epsilon)`` changes by more than ``log2(edge_threshold)`` between the pixels two
    before and two after it; the edge map, widened by an ``edge_dilation_kernel_size`` max
    window, keeps the input, every other pixel is blurred (stride 1, reflected border). For
    positive images; see :func:`~equilayers.functional.edge_aware_blur_pool2d` for the
    details and the differences from kornia. No parameters or buffers.

    Functional twin: :func:`~equilayers.functional.edge_aware_blur_pool2d`.

    Args:
        kernel_size: the binomial blur's odd size, 1..7 (an int or an equal pair).
        edge_threshold: the intensity ratio between pixels 4 apart above which a pixel is an
            edge, > 1 (kornia's default 1.25).
        edge_dilation_kernel_size: the odd window that widens the edge map (default 3).
        epsilon: added to the input before the logarithm, >= 0. kornia takes it as an
            argument of ``forward``; here it is set at construction, like every option of a
            ``torch.nn`` module.

    Shape:
        ``(B, C, H, W)`` or ``(C, H, W)``, unchanged; ``H, W >= 3``.

    Equivariance:
        Exact (float rounding) for rot90 and flips at any ``H, W``: the filter, the two edge
        tests and the dilation window are symmetric (tested, with a one-directional edge
        test as the negative control). Not for circular shifts at the reflected border.

    Example:
        >>> EdgeAwareBlurPool2d(3)(torch.rand(2, 3, 16, 16)).shape
        torch.Size([2, 3, 16, 16])
    """

    in_type = out_type = FieldType.trivial()  # images of any group

    def __init__(self, kernel_size: int | tuple[int, int] = 3,
                 edge_threshold: float = EDGE_THRESHOLD,
                 edge_dilation_kernel_size: int = EDGE_DILATION, *,
                 epsilon: float = EPSILON) -> None:
        super().__init__()
        k, threshold, d, eps = check_edge_aware_args(
            kernel_size, edge_threshold, edge_dilation_kernel_size, epsilon,
            type(self).__name__)
        self.kernel_size, self.edge_threshold = k, threshold
        self.edge_dilation_kernel_size, self.epsilon = d, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return edge_aware_blur_pool2d(x, self.kernel_size, self.edge_threshold,
                                      self.edge_dilation_kernel_size, self.epsilon)

    def _grid_window(self, size: tuple[int, int]):
        """For ``check_grid``: the window the output reads, a symmetric reflected one of
        radius ``max(k // 2, 2 + d // 2)`` (the blur, or the edge test's 2 pixels widened by
        the dilation) at stride 1: exact for rot90 and flips at any size; a finding under
        circular shifts (its border is reflected, and it has no circular mode)."""
        r = max(self.kernel_size // 2, 2 + self.edge_dilation_kernel_size // 2)
        return ((2 * r + 1,) * 2, (1, 1), (r,) * 4, "reflect",
                "none in this layer (it reflects its border); check shifts=False, or measure "
                "the border's error with equilayers.metrics.layerwise_shift_equivariance")

    def extra_repr(self) -> str:
        s = f"kernel_size={self.kernel_size}, edge_threshold={self.edge_threshold:g}"
        if self.edge_dilation_kernel_size != EDGE_DILATION:
            s += f", edge_dilation_kernel_size={self.edge_dilation_kernel_size}"
        if self.epsilon != EPSILON:
            s += f", epsilon={self.epsilon:g}"
        return s
