"""Symmetry groups, their elements, and how they act on images and group feature maps.

:class:`Group` is the interface every group implements (:mod:`equilayers.groups._group`);
the planar groups C_N, D_N, SO(2), O(2) are :class:`PlanarGroup`
(:mod:`equilayers.groups._planar`, with the conventions: rotation direction, flip axis,
element order in a regular fiber), the cube's groups O, O_h, C4z, D4z acting on volumes
are :class:`CubicGroup` (:mod:`equilayers.groups._cubic`, with the axes and element order),
the icosahedral rotations I are :class:`IcosahedralGroup` (:mod:`equilayers.groups._ico`),
SO(3) and O(3) are :class:`SO3Group` (:mod:`equilayers.groups._so3`; their harmonic analysis,
spherical harmonics, Wigner-D matrices and Clebsch-Gordan coefficients, in
:mod:`equilayers.groups._spherical`).
:func:`get` finds a group by name in the registry that :func:`register_group` fills;
:mod:`equilayers.groups._actions` holds the reps and :class:`FieldType`
(:mod:`equilayers.groups._fields`) names a tensor's rep as data.
"""

from ._actions import REPS, act, act_fiber, act_spatial, fiber_size, harmonic_matrix
from ._cubic import CubicElement, CubicGroup
from ._fields import FieldType
from ._fourier_basis import group_fourier_basis
from ._group import Element, Group, GroupLike
from ._ico import IcoElement, IcosahedralGroup
from ._planar import GroupElement, PlanarGroup
from ._registry import get, register_group
from ._so3 import SO3Element, SO3Group, rotate3d
from ._spherical import clebsch_gordan, spherical_harmonics, wigner_blocks, wigner_d
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
    "PlanarGroup",
    "GroupElement",
    "CubicGroup",
    "CubicElement",
    "SO3Group",
    "SO3Element",
    "IcosahedralGroup",
    "IcoElement",
    "Element",
    "GroupLike",
    "FieldType",
    "get",
    "register_group",
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
    "rotate3d",
    "spherical_harmonics",
    "wigner_d",
    "wigner_blocks",
    "clebsch_gordan",
]
