"""Batch normalization of regular group feature maps with statistics shared over the fiber."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["group_batch_norm"]


def group_batch_norm(x: torch.Tensor, running_mean: torch.Tensor | None,
                     running_var: torch.Tensor | None, weight: torch.Tensor | None = None,
                     bias: torch.Tensor | None = None, training: bool = False,
                     momentum: float = 0.1, eps: float = 1e-5) -> torch.Tensor:
    """``F.batch_norm`` on ``(B, C, F, H, W)``: one mean/variance (and one affine pair) per
    field ``C``, computed over ``B, F, H, W``. Permuting the fiber or moving the image does
    not change the statistics, so the map is exactly equivariant for regular fields."""
    if not isinstance(x, torch.Tensor) or x.dim() != 5:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"group_batch_norm expects a 5-D (B, C, F, H, W) group feature map; got "
                         f"{shape} (use nn.BatchNorm2d for images)")
    return F.batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps)
