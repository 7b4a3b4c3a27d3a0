"""Batch normalization of regular group feature maps."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["GroupBatchNorm2d"]


class GroupBatchNorm2d(nn.BatchNorm3d):
    """Batch norm of regular fields ``(B, C, F, H, W)`` with statistics shared over the fiber.

    ``y = (x - mean_c) / sqrt(var_c + eps) * gamma_c + beta_c`` with one mean/variance per
    field ``c`` over ``B, F, H, W`` (this is ``nn.BatchNorm3d`` on the 5-D layout, with a
    check that the input is a group feature map; the math is
    :func:`equilayers.functional.group_batch_norm`).

    Args:
        num_features, eps, momentum, affine, track_running_stats, device, dtype: as
            ``nn.BatchNorm2d``; ``num_features`` counts fields ``C``.

    Shape:
        ``(B, C, F, H, W) -> (B, C, F, H, W)``.

    Equivariance:
        Exact for any group acting on regular fields (statistics do not see slot order or
        positions); for harmonic fields it is not (use a norm-based normalization).

    Example:
        >>> import torch
        >>> GroupBatchNorm2d(4)(torch.randn(2, 4, 8, 5, 5)).shape
        torch.Size([2, 4, 8, 5, 5])
    """

    in_rep = "regular"
    out_rep = "regular"

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() != 5:
            raise ValueError(f"GroupBatchNorm2d expects a 5-D (B, C, F, H, W) group feature map;"
                             f" got shape {tuple(input.shape)} (use nn.BatchNorm2d for images)")
        if input.shape[1] != self.num_features:
            raise ValueError(f"GroupBatchNorm2d expects C={self.num_features} fields in dim 1; "
                             f"got shape {tuple(input.shape)}")
