"""Symmetry groups, their elements, and how they act on images and group feature maps.

See :mod:`equilayers.groups._group` for the conventions (rotation direction, flip axis,
element order in a regular fiber) and :mod:`equilayers.groups._actions` for the reps.
"""

from ._actions import REPS, act, act_fiber, act_spatial, fiber_size, harmonic_matrix
from ._fourier_basis import group_fourier_basis
from ._group import Group, GroupElement, GroupLike, get
from ._transforms import (
    circular_shift,
    disk_mask,
    flip,
    fractional_shift,
    gaussian_smooth,
    rot90,
    rotate,
    shift,
)

__all__ = [
    "Group",
    "GroupElement",
    "GroupLike",
    "get",
    "REPS",
    "act",
    "act_spatial",
    "act_fiber",
    "fiber_size",
    "harmonic_matrix",
    "group_fourier_basis",
    "rot90",
    "flip",
    "rotate",
    "circular_shift",
    "shift",
    "fractional_shift",
    "gaussian_smooth",
    "disk_mask",
]
