"""Known-good and known-bad layers for checking the harness and user test suites."""

from __future__ import annotations

import torch
from torch import nn

from ..groups import GroupLike, act_spatial, get

__all__ = ["symmetrized_conv2d"]


def symmetrized_conv2d(in_channels: int, out_channels: int, kernel_size: int,
                       group: GroupLike = "d4", *, dtype=torch.float64) -> nn.Conv2d:
    """A random ``nn.Conv2d`` (odd kernel, 'same' zero padding) whose every filter is averaged
    over the grid elements of ``group``: invariant filters, so the conv is exactly
    equivariant for those elements on trivial (plain image) fields."""
    if kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd for a centred symmetric filter; got "
                         f"{kernel_size}")
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2,
                     dtype=dtype)
    grp = get(group)
    with torch.no_grad():
        w = conv.weight
        els = grp.grid_elements()
        conv.weight.copy_(sum(act_spatial(w, g) for g in els) / len(els))
    return conv
