"""The cube's symmetry groups acting on voxels: O, O_h, the tetrahedral rotations T and the
4-fold groups about the depth axis, C4z and D4z.

Conventions (used by every 3-D layer, test and metric):

* A volume ``(..., D, H, W)`` has coordinates ``(x, y, z)``: ``x`` along the width (last dim,
  with the index), ``y`` up (against the height index, as for images), ``z`` along the depth
  index (dim -3). Coordinate ``i`` lives on tensor dim ``-(i + 1)``
  (:func:`~equilayers.groups._transforms.axis_signs`), so every slice ``(H, W)`` at fixed
  depth is an image with the planar conventions.
* An element is a 3 x 3 signed permutation matrix ``M`` acting on ``(x, y, z)`` (integer
  exact); it moves a volume by ``out[p] = in[M^-1 p]`` about the volume's centre (flips and a
  permutation of the last three dims, :func:`~equilayers.groups._transforms.grid_ops`).
  Composition is the matrix product (``a * b`` applies ``b`` first), the inverse the transpose.
  Elements print as the image of ``(x, y, z)``: ``(-y, x, z)`` is ``r``, the quarter turn about
  ``z`` (``x -> y``), which turns every depth slice by ``torch.rot90(.., 1, dims=(-2, -1))``.
* ``"c4z"``: ``r^k`` for ``k = 0..3`` (slot ``k``), the rotations about the depth axis: on
  each slice exactly the planar ``"c4"``.
* ``"d4z"``: ``r^k m^s`` (slot ``k + 4 s``) with ``m = diag(-1, 1, 1)`` the flip of ``x``
  (``torch.flip(.., dims=(-1,))``), reflecting first: on each slice exactly the planar
  ``"d4"`` (``"p4m"``), slot for slot. Its flips reverse orientation, so it lies in O_h, not O.
* ``"o"``: the 24 rotations of the cube, slot ``4 j + k`` = ``t_j r^k``, where ``t_j`` turns
  the ``z`` axis to ``+z, -z, +x, -x, +y, -y`` for ``j = 0..5``: ``t_0 = e``, ``t_1`` the half
  turn about ``x``, ``t_2``/``t_3`` the quarter turns about ``y`` taking ``z`` to ``+x``/``-x``,
  ``t_4``/``t_5`` the quarter turns about ``x`` taking ``z`` to ``+y``/``-y``. So the slots
  ``4 j .. 4 j + 3`` are the left coset ``t_j C4z`` and the first four are ``"c4z"``'s.
* ``"oh"``: the 48 symmetries, slot ``24 s + i`` = ``(-I)^s o_i`` with ``o_i`` the ``i``-th
  element of ``"o"`` and ``-I`` the inversion (``torch.flip`` of all three dims): O first.
* ``"t"``: the 12 rotations of the regular tetrahedron inscribed in the cube (the rotations
  of O that permute the axes cyclically), slot ``4 j + k`` = ``c^j d_k`` with ``c`` the
  three-fold turn ``x -> y -> z -> x`` about ``(1, 1, 1)`` and ``d_k`` the identity and the
  half turns about ``x``, ``y``, ``z`` (the Klein group, slots 0-3). The grid subgroup of the
  icosahedral group (:mod:`equilayers.groups._ico`).
* ``"th"``: T and the inversion (24, the pyritohedral group), slot ``12 s + i`` = ``(-I)^s
  t_i``: the grid subgroup of the full icosahedral group ``"ih"``.

Regular fibers list the elements in this order; ``group.regular_permutation(g)`` permutes them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .._cpu_cache import cpu_cache
from ._group import Element, Group
from ._registry import register_group

__all__ = ["CubicGroup", "CubicElement", "CUBIC_GROUPS"]

Rows = tuple[tuple[int, int, int], tuple[int, int, int], tuple[int, int, int]]

#: The names of the cube groups, with their orders.
CUBIC_GROUPS = {"o": 24, "oh": 48, "c4z": 4, "d4z": 8, "t": 12, "th": 24}

_E: Rows = ((1, 0, 0), (0, 1, 0), (0, 0, 1))
_R: Rows = ((0, -1, 0), (1, 0, 0), (0, 0, 1))  # quarter turn about z: x -> y
_M: Rows = ((-1, 0, 0), (0, 1, 0), (0, 0, 1))  # flip of x
_INV: Rows = ((-1, 0, 0), (0, -1, 0), (0, 0, -1))  # inversion
_C3: Rows = ((0, 0, 1), (1, 0, 0), (0, 1, 0))  # three-fold turn about (1, 1, 1): x -> y -> z
#: the Klein four-group: the identity and the half turns about x, y, z
_KLEIN: tuple[Rows, ...] = (_E, ((1, 0, 0), (0, -1, 0), (0, 0, -1)),
                            ((-1, 0, 0), (0, 1, 0), (0, 0, -1)),
                            ((-1, 0, 0), (0, -1, 0), (0, 0, 1)))
#: t_j: z -> +z, -z, +x, -x, +y, -y
_T: tuple[Rows, ...] = (
    _E,
    ((1, 0, 0), (0, -1, 0), (0, 0, -1)),  # half turn about x
    ((0, 0, 1), (0, 1, 0), (-1, 0, 0)),  # quarter turn about y, z -> +x
    ((0, 0, -1), (0, 1, 0), (1, 0, 0)),  # quarter turn about y, z -> -x
    ((1, 0, 0), (0, 0, 1), (0, -1, 0)),  # quarter turn about x, z -> +y
    ((1, 0, 0), (0, 0, -1), (0, 1, 0)),  # quarter turn about x, z -> -y
)


def _rows(m: Callable[[int, int], int]) -> Rows:
    """The 3x3 matrix whose entry ``(i, j)`` is ``m(i, j)``."""
    r0, r1, r2 = ((m(i, 0), m(i, 1), m(i, 2)) for i in range(3))
    return (r0, r1, r2)


def _mul(a: Rows, b: Rows) -> Rows:
    return _rows(lambda i, j: sum(a[i][k] * b[k][j] for k in range(3)))


def _power(a: Rows, n: int) -> Rows:
    out = _E
    for _ in range(n):
        out = _mul(out, a)
    return out


def _transpose(a: Rows) -> Rows:
    return _rows(lambda i, j: a[j][i])


def _det(a: Rows) -> int:
    return (a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1])
            - a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0])
            + a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0]))


def _all_rows(name: str) -> list[Rows]:
    """The elements' matrices in regular-fiber order (see the module docstring)."""
    rot = [_power(_R, k) for k in range(4)]
    if name == "c4z":
        return rot
    if name == "d4z":
        return rot + [_mul(r, _M) for r in rot]
    if name in ("t", "th"):
        t = [_mul(_power(_C3, j), d) for j in range(3) for d in _KLEIN]
        return t if name == "t" else t + [_mul(_INV, g) for g in t]
    o = [_mul(t, r) for t in _T for r in rot]
    return o if name == "o" else o + [_mul(_INV, g) for g in o]


@dataclass(frozen=True)
class CubicElement(Element):
    """One element of a :class:`CubicGroup`: a 3 x 3 signed permutation matrix on
    ``(x, y, z)`` (``rows``, integers), printed as the image of ``(x, y, z)``."""

    group: CubicGroup
    rows: Rows

    @property
    def det(self) -> int:
        """+1 for rotations, -1 for orientation-reversing elements (flips, inversion)."""
        return _det(self.rows)

    def __repr__(self) -> str:
        names = []
        for row in self.rows:
            j = next(j for j in range(3) if row[j])
            names.append(("-" if row[j] < 0 else "") + "xyz"[j])
        return "(" + ", ".join(names) + ")"


class CubicGroup(Group):
    """A symmetry group of the cube acting on voxel volumes ``(..., D, H, W)``.

    Use :func:`~equilayers.groups.get` to obtain one by name: ``"o"`` (the 24 rotations),
    ``"oh"`` (all 48 symmetries, with the inversion), ``"t"`` (the 12 rotations of the
    inscribed tetrahedron), ``"th"`` (those and the inversion, 24), ``"c4z"`` (the 4
    rotations about the depth axis) and ``"d4z"`` (those and the flip of ``x``: the planar
    ``"d4"`` on every depth slice). Elements, their
    order and the axes are in the module docstring of :mod:`equilayers.groups._cubic`. All
    elements map the voxel grid onto itself, so the groups are :attr:`pixel_exact` and act
    exactly.

    Args:
        name: ``"o"``, ``"oh"``, ``"t"``, ``"th"``, ``"c4z"`` or ``"d4z"``.

    Example:
        >>> from equilayers.groups import get
        >>> o = get("o")
        >>> o.order, o.spatial_dim, o.elements()[1]
        (24, 3, (-y, x, z))
        >>> get("c4z").is_subgroup_of(o), get("d4z").is_subgroup_of(o)
        (True, False)
    """

    _element_type = CubicElement

    def __init__(self, name: str) -> None:
        if name not in CUBIC_GROUPS:
            raise ValueError(f"CubicGroup: name={name!r} must be one of "
                             f"{', '.join(map(repr, CUBIC_GROUPS))}")
        self._name = name
        self._els = [CubicElement(self, rows) for rows in _all_rows(name)]
        self._by_rows = {g.rows: g for g in self._els}

    # --- identity -------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._name

    def _key(self) -> tuple:
        return (self._name,)

    @property
    def spatial_dim(self) -> int:
        return 3

    @property
    def order(self) -> int:
        return len(self._els)

    @property
    def has_reflections(self) -> bool:
        return self._name in ("d4z", "oh", "th")

    # --- elements -------------------------------------------------------------------------
    @property
    def identity(self) -> CubicElement:
        return self._els[0]

    def elements(self) -> list[CubicElement]:
        """All elements in regular-fiber order (see :mod:`equilayers.groups._cubic`)."""
        return list(self._els)

    def element(self, matrix) -> CubicElement:
        """The element whose matrix on ``(x, y, z)`` is ``matrix`` (nested lists, a tuple of
        rows or a 3 x 3 tensor of integers); ``ValueError`` when it is not in the group."""
        try:
            rows = tuple(tuple(int(v) for v in row) for row in
                         (matrix.tolist() if isinstance(matrix, torch.Tensor) else matrix))
        except (TypeError, ValueError):
            raise TypeError(f"{self.name}.element: matrix={matrix!r} must be 3 x 3 integers"
                            ) from None
        if rows not in self._by_rows:
            raise ValueError(f"{self.name}.element: {matrix!r} is not an element of "
                             f"{self.name} (its {self.order} signed permutation matrices)")
        return self._by_rows[rows]

    def index(self, g: CubicElement) -> int:
        self._check(g)
        return self._index_of(g)

    def _index_of(self, g: CubicElement) -> int:
        slots = self.__dict__.get("_slots")
        if slots is None:
            slots = self.__dict__["_slots"] = {h.rows: i for i, h in enumerate(self._els)}
        return slots[g.rows]

    def compose(self, a: CubicElement, b: CubicElement) -> CubicElement:
        """The product ``a * b`` (apply ``b`` first, then ``a``): the matrix product."""
        self._check(a)
        self._check(b)
        return self._by_rows[_mul(a.rows, b.rows)]

    @property
    def cayley_table(self) -> torch.Tensor:
        """``T[i, j]`` = slot of ``elements()[i] * elements()[j]`` (int64, ``|G| x |G|``, on
        the CPU; built once per group, shared: do not write to it), from one batched integer
        matrix product (the generic table composes ``|G|^2`` pairs in Python)."""
        return _cubic_cayley_table(self)

    def inverse(self, a: CubicElement) -> CubicElement:
        """``a^-1``: the transpose (the matrices are orthogonal)."""
        self._check(a)
        return self._by_rows[_transpose(a.rows)]


    # --- the action on space --------------------------------------------------------------
    def matrix(self, g: CubicElement) -> torch.Tensor:
        """The signed permutation matrix on ``(x, y, z)``, float64 on the CPU, exact."""
        self._check(g)
        return torch.tensor(g.rows, dtype=torch.float64, device="cpu")

    def is_grid(self, g: CubicElement) -> bool:
        self._check(g)
        return True

    def grid_subgroup(self) -> CubicGroup:
        """The group itself: every element maps the voxel grid onto itself."""
        return self

    def is_subgroup_of(self, other: Group) -> bool:
        """Whether every element's matrix is one of ``other``'s (the embedding by matrix)."""
        if not isinstance(other, CubicGroup):
            return False
        return all(rows in other._by_rows for rows in self._by_rows)

    def embed(self, g: CubicElement, sub: CubicGroup | None = None) -> CubicElement:
        """The element of this group with the matrix of ``g`` (an element of a subgroup)."""
        if not isinstance(g, CubicElement) or g.rows not in self._by_rows:
            raise ValueError(f"{g!r} (of {getattr(getattr(g, 'group', None), 'name', '?')}) "
                             f"is not an element of {self.name}")
        return self._by_rows[g.rows]


def _cubic(name: str) -> CubicGroup:
    return CubicGroup(name)


@cpu_cache(maxsize=8)
def _cubic_cayley_table(group: CubicGroup) -> torch.Tensor:
    """:attr:`CubicGroup.cayley_table`: every product ``a b`` at once, found by its entries (in
    ``{-1, 0, 1}``, read as a base-3 number) among the elements'."""
    mats = torch.tensor([g.rows for g in group.elements()], dtype=torch.long)  # (n, 3, 3)
    n = len(mats)
    products = (mats[:, None, :, :, None] * mats[None, :, None, :, :]).sum(3)  # (n, n, 3, 3)
    digits = 3 ** torch.arange(9)
    codes = ((products.reshape(n, n, 9) + 1) * digits).sum(-1)
    keys = ((mats.reshape(n, 9) + 1) * digits).sum(-1)
    order = keys.argsort()
    table = order[torch.searchsorted(keys[order], codes).clamp(max=n - 1)]
    if not torch.equal(keys[table], codes):  # closure: every product is an element
        raise RuntimeError(f"{group.name}: a product of two elements is not an element")
    return table


register_group(r"(o|oh|t|th|c4z|d4z)", _cubic,
               form="'o', 'oh' (the cube's 24 rotations, its 48 symmetries), 't', 'th' (the "
                    "12 tetrahedral rotations, and with the inversion), 'c4z', 'd4z' "
                    "(rotations about the depth axis, and the flip of x)")
