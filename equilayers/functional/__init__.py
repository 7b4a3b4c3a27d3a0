"""Pure functions on tensors: the math behind every module in :mod:`equilayers.nn`."""

from ._blur import (
    binomial_filter,
    blur_conv2d,
    blur_pool1d,
    blur_pool2d,
    blur_pool3d,
    blur_upsample2d,
    max_blur_pool2d,
)
from ._polyphase import polyphase_pool2d, polyphase_upsample2d

__all__: list[str] = [
    "binomial_filter",
    "blur_pool1d",
    "blur_pool2d",
    "blur_pool3d",
    "max_blur_pool2d",
    "blur_conv2d",
    "blur_upsample2d",
    "polyphase_pool2d",
    "polyphase_upsample2d",
]
