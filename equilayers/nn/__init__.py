"""Modules: thin shells that own parameters and buffers and call :mod:`equilayers.functional`."""

from ._group_conv import GroupConv2d, LiftingConv2d
from ._group_norm import GroupBatchNorm2d
from ._group_pool import GroupAvgPool2d, GroupMaxPool2d, GroupPool

__all__: list[str] = [
    # group convolutions (issue 4)
    "LiftingConv2d",
    "GroupConv2d",
    "GroupBatchNorm2d",
    "GroupPool",
    "GroupMaxPool2d",
    "GroupAvgPool2d",
]
