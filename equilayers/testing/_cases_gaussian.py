"""Gaussian anti-aliased pooling and the smooth disk mask (escnn's conventions): exact for
rot90/flips on odd sizes at stride 2 (any field type), with negative controls."""

from __future__ import annotations

import torch
from torch import nn

from ..nn import BallMask, DiskMask, GaussianBlurPool2d
from ._case import Case


class _OffCentreMask(nn.Module):
    """A negative control: the disk (ball) mask moved one pixel (voxel) along the width (not
    symmetric)."""

    def __init__(self, size: int = 9, mask: type[DiskMask | BallMask] = DiskMask) -> None:
        super().__init__()
        self.mask = mask(size, sigma=1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.roll(self.mask.mask, 1, dims=-1).to(x.dtype)


CASES = [
    Case("gaussian/blurpool-p4m-33x33-sigma0.66", lambda: GaussianBlurPool2d(0.66),
         (2, 3, 33, 33), "p4m"),
    Case("gaussian/blurpool-regular-d4-9x9-sigma1-pad1", lambda: GaussianBlurPool2d(1.0, 2, 1),
         (2, 3, 8, 9, 9), "d4"),
    Case("gaussian/blurpool-harmonic-o2-13x13-stride3",
         lambda: GaussianBlurPool2d(0.66, stride=3, padding=2), (2, 3, 5, 13, 13), "o2",
         in_rep="harmonic", out_rep="harmonic"),
    Case("gaussian/blurpool-regular-d4-even-size-fails", lambda: GaussianBlurPool2d(0.66),
         (2, 3, 8, 8, 8), "d4", expect="fail"),
    Case("mask/disk-p4m-9x9", lambda: DiskMask(9), (2, 3, 9, 9), "p4m"),
    Case("mask/disk-regular-d4-margin", lambda: DiskMask(9, margin=20.0, sigma=1.0),
         (2, 2, 8, 9, 9), "d4"),
    Case("mask/disk-harmonic-o2", lambda: DiskMask(8), (2, 2, 5, 8, 8), "o2",
         in_rep="harmonic", out_rep="harmonic"),
    Case("mask/off-centre-disk-fails", _OffCentreMask, (2, 3, 9, 9), "p4m", expect="fail"),
]
