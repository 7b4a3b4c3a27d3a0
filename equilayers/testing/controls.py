"""Known-good and known-bad layers for checking the harness and user test suites."""

from __future__ import annotations

import torch
from torch import nn

from .. import _checks as C
from ..groups import GroupLike, act_spatial, get

__all__ = ["symmetrized_conv2d"]


def symmetrized_conv2d(in_channels: int, out_channels: int, kernel_size: int,
                       group: GroupLike = "d4", *, dtype=torch.float64) -> nn.Conv2d:
    """A random ``nn.Conv2d`` (odd kernel, 'same' zero padding) whose every filter is averaged
    over the grid elements of ``group``: invariant filters, so the conv is exactly
    equivariant for those elements on trivial (plain image) fields."""
    what = "symmetrized_conv2d"
    C.check_int(in_channels, "in_channels", what, minimum=1)
    C.check_int(out_channels, "out_channels", what, minimum=1)
    C.check_int(kernel_size, "kernel_size", what, minimum=1)
    C.check_float_dtype(dtype, "dtype", what)
    if kernel_size % 2 == 0:
        raise ValueError(f"{what}: kernel_size must be odd for a centred symmetric filter; got "
                         f"kernel_size={kernel_size}")
    grp = get(group)
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2,
                     dtype=dtype)
    with torch.no_grad():
        w = conv.weight
        els = grp.grid_elements()
        conv.weight.copy_(sum((act_spatial(w, g) for g in els), torch.zeros_like(w)) / len(els))
    return conv
