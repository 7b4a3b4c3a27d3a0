"""Spatial interpolation of images, volumes and group maps (``GroupUpsample2d/3d``): exact for
rot90/flips and the cube's symmetries with an integer factor, in every mode and on every
field type, with a fractional factor as the negative control."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..nn import GroupUpsample2d, GroupUpsample3d
from ._case import Case


class FractionalUpsample(nn.Module):
    """A negative control: bilinear interpolation by 1.5 (its sample positions are not
    symmetric about the centre)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=1.5, mode="bilinear")


CASES = [
    Case("upsample/bilinear-regular-d4-7x9-x2",
         lambda: GroupUpsample2d(scale_factor=2, mode="bilinear"), (2, 3, 8, 7, 9), "d4"),
    Case("upsample/bicubic-align-corners-p4m-image-x3",
         lambda: GroupUpsample2d(scale_factor=3, mode="bicubic", align_corners=True),
         (2, 3, 6, 6), "p4m"),
    Case("upsample/nearest-harmonic-o2-x2", lambda: GroupUpsample2d(scale_factor=2),
         (2, 2, 5, 6, 6), "o2", in_rep="harmonic", out_rep="harmonic"),
    Case("upsample/size-regular-c4-5x5-to-15x15",
         lambda: GroupUpsample2d(size=15, mode="bilinear"), (2, 2, 4, 5, 5), "c4"),
    Case("upsample/trilinear-regular-o-x2",
         lambda: GroupUpsample3d(scale_factor=2, mode="trilinear"), (1, 2, 24, 3, 4, 3), "o"),
    Case("upsample/nearest-volume-oh-x2", lambda: GroupUpsample3d(scale_factor=2),
         (2, 3, 3, 3, 3), "oh"),
    Case("upsample/fractional-factor-fails", FractionalUpsample, (2, 3, 7, 7), "p4m",
         expect="fail"),
]
