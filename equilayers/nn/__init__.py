"""Modules: thin shells that own parameters and buffers and call :mod:`equilayers.functional`."""

from ._blur_pool import (
    BlurConv2d,
    BlurPool1d,
    BlurPool2d,
    BlurPool3d,
    BlurUpsample2d,
    MaxBlurPool2d,
)
from ._polyphase import PolyphasePool2d, PolyphaseUpsample2d

__all__: list[str] = [
    "BlurPool1d",
    "BlurPool2d",
    "BlurPool3d",
    "MaxBlurPool2d",
    "BlurConv2d",
    "BlurUpsample2d",
    "PolyphasePool2d",
    "PolyphaseUpsample2d",
]
