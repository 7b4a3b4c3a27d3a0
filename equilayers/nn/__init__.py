"""Modules: thin shells that own parameters and buffers and call :mod:`equilayers.functional`."""

from ._blur_pool import (
    BlurConv2d,
    BlurPool1d,
    BlurPool2d,
    BlurPool3d,
    BlurUpsample2d,
    MaxBlurPool2d,
)
from ._group_conv import (
    GroupConv2d,
    LiftingConv2d,
)
from ._group_norm import (
    GroupBatchNorm2d,
)
from ._group_pool import (
    GroupAvgPool2d,
    GroupMaxPool2d,
    GroupPool,
)
from ._polyphase import (
    PolyphasePool2d,
    PolyphaseUpsample2d,
)

__all__: list[str] = [
    "GroupConv2d",
    "LiftingConv2d",
    "GroupBatchNorm2d",
    "GroupAvgPool2d",
    "GroupMaxPool2d",
    "GroupPool",
    "BlurConv2d",
    "BlurPool1d",
    "BlurPool2d",
    "BlurPool3d",
    "BlurUpsample2d",
    "MaxBlurPool2d",
    "PolyphasePool2d",
    "PolyphaseUpsample2d",
]
