"""The edge-aware blur (kornia's ``EdgeAwareBlurPool2D``): exact for rot90/flips at any size,
on positive blocky images whose edge map keeps some pixels and blurs others (on a random
normal input the logarithms are NaN wherever a pixel is negative, which is never an edge),
with a negative control that tests edges along one axis only."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..functional import blur_pool2d
from ..nn import EdgeAwareBlurPool2d
from ._case import Case

#: the side of the constant blocks: wide enough that blocks keep blurred interiors
BLOCK = 6


def blocky(shape: tuple[int, ...]):
    """An input builder: positive constant blocks of ``BLOCK`` pixels (steps of up to 5x
    between neighbours: edges) plus 2% noise (so a blurred pixel differs from its input)."""
    def make(gen: torch.Generator) -> torch.Tensor:
        *lead, h, w = shape
        coarse = 0.2 + torch.rand(*lead, -(-h // BLOCK), -(-w // BLOCK), generator=gen,
                                  dtype=torch.float64)
        up = coarse.repeat_interleave(BLOCK, -2).repeat_interleave(BLOCK, -1)[..., :h, :w]
        return up + 0.02 * torch.rand(shape, generator=gen, dtype=torch.float64)
    return make


class AcrossEdgesOnly(nn.Module):
    """A negative control: the edge-aware blur with its edge test along rows only (columns
    are not compared), so a rot90 of the image finds other edges."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        blurred = blur_pool2d(x, 3, stride=1)
        logs = torch.log2(F.pad(x, (2, 2, 2, 2), mode="reflect") + 1e-6)
        across = (logs[..., 2:-2, 4:] - logs[..., 2:-2, :-4]).mean(-3, keepdim=True).abs()
        return torch.where(across > math.log2(1.25), x, blurred)


CASES = [
    Case("edge-aware/p4m-24x24-k3", lambda: EdgeAwareBlurPool2d(3), (2, 3, 24, 24), "p4m",
         input_fn=blocky((2, 3, 24, 24))),
    Case("edge-aware/p4m-18x25-k5-dilation5", lambda: EdgeAwareBlurPool2d(5, 1.5, 5),
         (2, 2, 18, 25), "p4m", input_fn=blocky((2, 2, 18, 25))),
    Case("edge-aware/p4m-17x17-k7-no-dilation", lambda: EdgeAwareBlurPool2d(7, 1.3, 1),
         (2, 2, 17, 17), "p4m", input_fn=blocky((2, 2, 17, 17))),
    Case("edge-aware/edges-along-rows-only-fails", AcrossEdgesOnly, (2, 3, 24, 24), "p4m",
         expect="fail", input_fn=blocky((2, 3, 24, 24))),
]
