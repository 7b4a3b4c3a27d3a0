"""Pure functions on tensors: the math behind every module in :mod:`equilayers.nn`."""

from ._gconv import (
    exactness_problems,
    expand_group_filter,
    expand_lifting_filter,
    group_conv2d,
    lifting_conv2d,
)
from ._group_norm import group_batch_norm
from ._group_pool import group_avg_pool2d, group_max_pool2d, group_pool

__all__: list[str] = [
    # group convolutions (issue 4)
    "lifting_conv2d",
    "group_conv2d",
    "expand_lifting_filter",
    "expand_group_filter",
    "exactness_problems",
    "group_batch_norm",
    "group_pool",
    "group_max_pool2d",
    "group_avg_pool2d",
]
