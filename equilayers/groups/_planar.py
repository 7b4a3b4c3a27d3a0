"""Symmetry groups of the plane that equilayers acts with: C_N, D_N, SO(2) and O(2).

Conventions (used by every layer, test and metric):

* The plane has ``x`` along the image width (column index, to the right) and ``y`` up
  (against the row index). A rotation by a positive angle turns an image counter-clockwise as
  it is displayed; a rotation by 90 degrees is ``torch.rot90(img, 1, dims=(-2, -1))``.
* The reflection ``m`` is the horizontal flip ``x -> -x`` (``torch.flip(img, dims=(-1,))``).
* An element ``g = r^k m^s`` first reflects (if ``s``) and then rotates, so composition is
  ``(k1, s1) * (k2, s2) = (k1 + (-1)^s1 k2, s1 xor s2)``; its matrix is
  ``R(angle) diag(-1, 1)^s`` acting on ``(x, y)``.
* Regular fibers list the elements in the order of :meth:`PlanarGroup.elements`: for D_N the
  rotations ``r^0 .. r^{N-1}`` first, then ``r^0 m .. r^{N-1} m`` (slot ``k + N * s``).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, cast

import torch

from .. import _checks as C
from ._group import Element, Group
from ._registry import get, register_group

__all__ = ["PlanarGroup", "GroupElement"]

# cos and sin of q quarter turns, exact
_COS = (1, 0, -1, 0)
_SIN = (0, 1, 0, -1)


@dataclass(frozen=True)
class GroupElement(Element):
    """One element ``r^rotation m^reflection`` of a :class:`PlanarGroup`.

    ``rotation`` is an integer ``k`` in ``[0, N)`` (angle ``2 pi k / N``) for the finite
    groups and an angle in radians in ``[0, 2 pi)`` for SO(2)/O(2).
    """

    group: PlanarGroup
    rotation: int | float
    reflection: bool = False

    def __post_init__(self) -> None:
        # a record in the canonical form group.element() returns: anything else (rot450, a
        # flip in a rotation group, a name for the group) failed deep inside act() before
        grp = self.group
        if not isinstance(grp, PlanarGroup):
            raise TypeError(f"GroupElement: group={grp!r} must be a PlanarGroup (from "
                            "groups.get(name)); build elements with group.element(...)")
        fine = isinstance(self.reflection, bool) and (grp.reflections or not self.reflection)
        if grp.n is None:
            fine = fine and type(self.rotation) is float and 0 <= self.rotation < 2 * math.pi
        else:
            fine = fine and type(self.rotation) is int and 0 <= self.rotation < grp.n
        if not fine:
            raise ValueError(f"GroupElement(rotation={self.rotation!r}, reflection="
                             f"{self.reflection!r}) is not an element of {grp.name} in "
                             f"canonical form; use {grp.name}.element(rotation, reflection), "
                             "which reduces the rotation and checks both")

    @property
    def angle(self) -> float:
        """The rotation angle in radians, in ``[0, 2 pi)``."""
        if self.group.n is None:
            return float(self.rotation)
        return 2.0 * math.pi * int(self.rotation) / self.group.n

    @property
    def degrees(self) -> float:
        """The rotation angle in degrees (of the rotation part, for a flip)."""
        return math.degrees(self.angle)

    @property
    def quarter_turns(self) -> int | None:
        """The angle as a number of 90-degree turns, or ``None`` when it is not a multiple."""
        if self.group.n is not None:
            k, n = int(self.rotation), self.group.n
            return (4 * k) // n if (4 * k) % n == 0 else None
        q = self.angle / (math.pi / 2)
        r = round(q)
        return r % 4 if abs(q - r) < 1e-9 else None

    def cos_sin(self, m: int = 1) -> tuple[float, float]:
        """``(cos, sin)`` of ``m`` times the angle (order ``m``'s rotation of a harmonic
        fiber): exactly ``0`` and ``+-1`` where ``m * angle`` is a multiple of 90 degrees (by
        the rule of :attr:`quarter_turns`), so that the grid elements act exactly."""
        if self.group.n is not None:
            k4, n = 4 * m * int(self.rotation), self.group.n
            q = (k4 // n) % 4 if k4 % n == 0 else None
        else:
            t = m * self.angle / (math.pi / 2)
            q = round(t) % 4 if abs(t - round(t)) < 1e-9 else None
        if q is not None:
            return float(_COS[q]), float(_SIN[q])
        return math.cos(m * self.angle), math.sin(m * self.angle)

    # is_grid, index and matrix: Element's (the group answers)

    def __mul__(self, other: GroupElement) -> GroupElement:
        return self.group.compose(self, other)

    def inverse(self) -> GroupElement:
        """The inverse element."""
        return self.group.inverse(self)

    def __repr__(self) -> str:
        deg = self.degrees
        text = f"rot{deg:.10g}"
        return text + ("*flip" if self.reflection else "")


def _by_value(v: Any) -> Any:
    """A 0-d real tensor as its Python number (a step or an angle held as a tensor); anything
    else as it is, for the checks that follow."""
    if (isinstance(v, torch.Tensor) and v.dim() == 0 and v.dtype != torch.bool
            and not v.is_complex()):
        return v.item()
    return v


def _rotation(rotation: Any, grp: PlanarGroup) -> int | float:
    """The rotation argument checked: an angle (a float) for SO(2)/O(2), an integer step (or
    a float equal to one) for C_N/D_N; a 0-d real tensor is taken by its value. ``int()``
    alone truncated ``np.float32(1.5)`` and a tensor of 1.5 to ``rot90``, and read ``True``
    and ``"1"`` as 1."""
    value = _by_value(rotation)
    real = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if grp.n is None:
        if not real:
            raise TypeError(f"{grp.name}.element: rotation={rotation!r} must be an angle in "
                            "radians (a real number)")
        return float(value)
    if C.is_int(value):
        return int(value)
    if real and math.isfinite(float(value)) and float(value).is_integer():
        return int(value)
    raise TypeError(f"{grp.name}.element: rotation={rotation!r} must be an integer step k "
                    f"(the angle 2 pi k / {grp.n}); use elements_at(degrees=[...]) for angles")


class PlanarGroup(Group):
    """A group of rotations (and reflections) of the plane: C_N, D_N, SO(2) or O(2).

    Use :func:`~equilayers.groups.get` to obtain one by name (``"p4"``, ``"d8"``, ``"so2"``).

    Attributes:
        n: number of rotations for C_N/D_N, ``None`` for the continuous SO(2)/O(2) (also
            :attr:`rotation_order`).
        reflections: whether the group contains the flip (also :attr:`has_reflections`).
    """

    _element_type = GroupElement

    def __init__(self, n: int | None, reflections: bool) -> None:
        if n is not None:
            C.check_int(n, "n", "PlanarGroup", minimum=1,
                        fix="the number of rotations of C_N / D_N (None: SO(2) / O(2))")
        self.n = n if n is None else int(n)
        self.reflections = C.check_flag(reflections, "reflections", "PlanarGroup",
                                        fix="whether the group has the flip (D_N, O(2))")

    def __setattr__(self, name: str, value: object) -> None:
        # get() hands out one shared instance per name: get("c4").n = 8 turned every c4 (and
        # the field types made from it) into c8 for the whole process
        if name in ("n", "reflections") and name in self.__dict__:
            raise AttributeError(f"PlanarGroup.{name} is read-only: groups are shared (get() "
                                 "returns one instance per name); take another group, e.g. "
                                 "get('c8')")
        super().__setattr__(name, value)

    # --- identity -----------------------------------------------------------------------
    @property
    def name(self) -> str:
        if self.n is None:
            return "o2" if self.reflections else "so2"
        return f"{'d' if self.reflections else 'c'}{self.n}"

    def _key(self) -> tuple:
        return (self.n, self.reflections)

    @property
    def spatial_dim(self) -> int:
        return 2

    @property
    def rotation_order(self) -> int | None:
        """``N`` for C_N/D_N, ``None`` for SO(2)/O(2)."""
        return self.n

    @property
    def has_reflections(self) -> bool:
        return self.reflections

    def planar_params(self) -> tuple[int | None, bool]:
        return self.n, self.reflections

    @property
    def is_finite(self) -> bool:
        """Whether the group is C_N/D_N (finite), not SO(2)/O(2)."""
        return self.n is not None

    @property
    def order(self) -> int | float:
        """``|G|``: ``N`` for C_N, ``2N`` for D_N, ``math.inf`` for SO(2)/O(2)."""
        if self.n is None:
            return math.inf
        return self.n * (2 if self.reflections else 1)

    # --- elements -----------------------------------------------------------------------
    def element(self, rotation: int | float = 0, reflection: bool = False) -> GroupElement:
        """The element ``r^rotation m^reflection`` (an angle in radians for SO(2)/O(2))."""
        reflection = C.check_flag(reflection, "reflection", f"{self.name}.element",
                                  fix="whether the element includes the flip")
        if reflection and not self.reflections:
            raise ValueError(f"{self.name} has no reflections; use a dihedral group ('d{self.n}')"
                             if self.n else "so2 has no reflections; use 'o2'")
        step = _rotation(rotation, self)
        if self.n is None:
            if not math.isfinite(step):
                raise ValueError(f"{self.name}: rotation={rotation!r} must be a finite angle in "
                                 "radians")
            angle = step % (2 * math.pi)
            # (a tiny negative angle rounds up to 2 pi itself: that is the identity's angle 0)
            return GroupElement(self, 0.0 if angle == 2 * math.pi else angle, reflection)
        return GroupElement(self, int(step) % self.n, reflection)

    @property
    def identity(self) -> GroupElement:
        return self.element(0, False)

    def elements(self) -> list[GroupElement]:
        """All elements, in regular-fiber order (rotations, then rotations times the flip)."""
        if self.n is None:
            raise ValueError(
                f"{self.name} is continuous; use grid_elements() or element(angle) / "
                "elements_at(degrees=[...]) to choose finitely many"
            )
        return [self.element(k, bool(s)) for s in range(2 if self.reflections else 1)
                for k in range(self.n)]

    def grid_elements(self) -> list[GroupElement]:
        """The elements that map the pixel grid onto itself (multiples of 90 degrees, flips)."""
        if self.n is None:
            return [self.element(k * math.pi / 2, bool(s))
                    for s in range(2 if self.reflections else 1) for k in range(4)]
        return [g for g in self.elements() if g.is_grid]

    def elements_at(self, degrees: list[float], reflection: bool = False) -> list[GroupElement]:
        """Elements by rotation angle in degrees (must belong to the group)."""
        try:
            angles = list(degrees)
        except TypeError:  # a number, or a 0-d tensor
            raise TypeError(f"{self.name}.elements_at: degrees={degrees!r} must be a list of "
                            "angles in degrees, e.g. [90]") from None
        out: list[GroupElement] = []
        for d in map(_by_value, angles):  # (a tensor of angles, by value)
            if not isinstance(d, numbers.Real) or isinstance(d, bool):
                raise TypeError(f"{self.name}.elements_at: degrees holds {d!r}; each must be "
                                "an angle in degrees (a real number)")
            if not math.isfinite(float(d)):
                raise ValueError(f"{self.name}: degrees must be finite angles; got {d!r}")
            if self.n is None:
                out.append(self.element(math.radians(d), reflection))
                continue
            k = float(d) * self.n / 360.0
            if abs(k - round(k)) > 1e-9:
                raise ValueError(f"{d} degrees is not a rotation of {self.name} "
                                 f"(multiples of {360 / self.n:g} degrees)")
            out.append(self.element(round(k), reflection))
        return out

    def compose(self, a: GroupElement, b: GroupElement) -> GroupElement:
        """The product ``a * b`` (apply ``b`` first, then ``a``)."""
        self._check(a)
        self._check(b)
        sign = -1 if a.reflection else 1
        return self.element(a.rotation + sign * b.rotation, a.reflection != b.reflection)

    def inverse(self, a: GroupElement) -> GroupElement:
        self._check(a)
        if a.reflection:  # reflections are involutions
            return a
        return self.element(-a.rotation, False)

    def index(self, g: GroupElement) -> int:
        """The slot ``k + N * s`` of ``g = r^k m^s`` in a regular fiber (finite groups)."""
        self._check(g)
        if self.n is None:
            raise ValueError(f"{self.name} is continuous: its elements have no fiber slot")
        return int(g.rotation) + self.n * int(g.reflection)


    def angle(self, a: GroupElement) -> float:
        """The rotation angle of ``a`` in radians (its rotation part, for a flip)."""
        return a.angle

    def is_reflection(self, a: GroupElement) -> bool:
        """Whether ``a`` contains a flip."""
        return a.reflection

    # --- the action on the plane --------------------------------------------------------
    def matrix(self, g: GroupElement) -> torch.Tensor:
        """``R(angle) diag(-1, 1)^s`` on ``(x, y)``, float64 on the CPU; exact integers for
        the grid elements (multiples of 90 degrees)."""
        self._check(g)
        q = g.quarter_turns
        if q is not None:
            c, s = float(_COS[q]), float(_SIN[q])
        else:
            c, s = math.cos(g.angle), math.sin(g.angle)
        x = -1.0 if g.reflection else 1.0  # diag(-1, 1) flips the first column
        return torch.tensor([[x * c, -s], [x * s, c]], dtype=torch.float64, device="cpu")

    def is_grid(self, g: GroupElement) -> bool:
        self._check(g)
        return g.quarter_turns is not None

    def grid_subgroup(self) -> PlanarGroup:
        """The rotations by multiples of 90 degrees it contains (and its flips): c8 -> c4,
        d6 -> d2, so2 -> c4, o2 -> d4."""
        n = 4 if self.n is None else math.gcd(self.n, 4)
        return _planar(n, self.reflections)


def _planar(n: int | None, reflections: bool) -> PlanarGroup:
    # the registry answers these names with the planar factory below: a PlanarGroup
    name = ("o2" if reflections else "so2") if n is None else f"{'d' if reflections else 'c'}{n}"
    return cast(PlanarGroup, get(name))


def _finite(kind: str, n: str) -> PlanarGroup | None:
    return PlanarGroup(int(n), kind == "d") if int(n) >= 1 else None


register_group(r"(c|d)(\d+)", _finite, form="'cN' or 'dN' for N >= 1 (e.g. 'c4', 'd8')")
register_group(r"p4(m?)", lambda m: _planar(4, m == "m"),
               form="the aliases 'p4' (= 'c4') and 'p4m' (= 'd4')")
register_group(r"(s?)o2", lambda s: PlanarGroup(None, s == ""), form="'so2' or 'o2'")
