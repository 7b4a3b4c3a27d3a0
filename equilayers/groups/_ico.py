"""The icosahedral rotation group I (60 elements) and the full icosahedral group I_h (120, with
the inversion) acting on voxel volumes.

Conventions (those of :mod:`equilayers.groups._cubic` and :mod:`equilayers.groups._so3`):

* Coordinates ``(x, y, z)`` are the volume's; an element is its ``3 x 3`` rotation matrix on
  them, composition the matrix product (``a * b`` applies ``b`` first), the inverse the
  transpose.
* The icosahedron is the one with vertices at the cyclic permutations of ``(0, +-1, +-phi)``
  (``phi`` the golden ratio): its two-fold axes include ``x``, ``y`` and ``z`` and its
  three-fold axes the diagonals ``(+-1, +-1, +-1)``, so it contains the tetrahedral group
  ``"t"`` (:mod:`equilayers.groups._cubic`), the 12 elements that map the voxel grid onto
  itself (its grid subgroup). The other 48 move a volume by trilinear interpolation about
  its centre (as SO(3)'s do), so a layer on ``"ico"`` is exact on ``"t"`` and approximate on
  the rest (escnn's ``icoOnR3`` is the same on a grid).
* Slot ``12 j + i`` is ``r^j t_i``: ``t_i`` the ``i``-th element of ``"t"`` (slots ``0 ..
  11`` are ``"t"``'s, in its order) and ``r`` the turn by 72 degrees about the vertex ``(0,
  1, phi)`` (right-handed), ``j = 0 .. 4``: the left cosets of ``"t"``.
* ``"ih"``: slot ``60 s + i`` is ``(-I)^s`` times slot ``i`` of ``"ico"`` (I first, then the
  inversion times I). Its grid subgroup is ``"th"`` (T and the inversion: slots 0-11 and
  60-71, in ``"th"``'s order).

Matrices are float64; the grid elements' are exact integers, the others within ``1e-15``
of orthogonal, and products are matched to the nearest element (any two differ by more than
0.5 in some entry).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .. import _checks as C
from .._cpu_cache import cpu_cache
from ._group import Group
from ._registry import get, register_group
from ._so3 import SO3Element, _rows, _snap
from ._spherical import wigner_stack

__all__ = ["IcosahedralGroup", "IcoElement", "ico_fourier_basis", "ICO_ROW_DIMS"]

PHI = (1 + math.sqrt(5)) / 2


@dataclass(frozen=True, repr=False)
class IcoElement(SO3Element):
    """One element of :class:`IcosahedralGroup`: a rotation matrix on ``(x, y, z)`` (``rows``,
    float; exact integers for the 12 grid elements), printed as :class:`SO3Element` is."""

    # an SO3Element whose group is "ico", not SO(3): the field narrows to this group
    group: IcosahedralGroup  # type: ignore[assignment]


def _turn(axis: tuple[float, float, float], angle: float) -> torch.Tensor:
    a = torch.tensor(axis, dtype=torch.float64)
    ax, ay, az = (a / a.norm()).tolist()
    k = torch.tensor([[0.0, -az, ay], [az, 0.0, -ax], [-ay, ax, 0.0]], dtype=torch.float64)
    return torch.eye(3, dtype=torch.float64) + math.sin(angle) * k + (1 - math.cos(angle)) * (
        k @ k)


@cpu_cache(maxsize=2)
def _matrices(inversion: bool = False) -> torch.Tensor:
    """``(60, 3, 3)`` float64: slot ``12 j + i`` is ``r^j t_i`` (module docstring);
    ``inversion``: ``(120, 3, 3)``, those and their negatives."""
    t = get("t")
    tet = torch.stack([t.matrix(g) for g in t.elements()])
    r = _turn((0.0, 1.0, PHI), 2 * math.pi / 5)
    out = [torch.linalg.matrix_power(r, j) @ tet for j in range(5)]
    rot = torch.cat(out).contiguous()
    return torch.cat([rot, -rot]) if inversion else rot


class IcosahedralGroup(Group):
    """The 60 rotations of the icosahedron, ``"ico"``, or its 120 symmetries with the inversion,
    ``"ih"``, acting on volumes ``(..., D, H, W)``.

    Use :func:`~equilayers.groups.get`: ``get("ico")``, ``get("ih")``. Elements, their order
    and the axes are in :mod:`equilayers.groups._ico`. The grid subgroup is the tetrahedral
    ``"t"`` (``"th"`` with the inversion: 12 / 24 elements, exact); the other elements move
    volumes by interpolation. Regular fields are ``(B, C, |G|, D, H, W)``.

    Args:
        inversion: ``False`` for I (``"ico"``), ``True`` for I_h (``"ih"``).

    Example:
        >>> from equilayers.groups import get
        >>> ico = get("ico")
        >>> ico.order, ico.grid_subgroup().name, len(ico.grid_elements()), ico.pixel_exact
        (60, 't', 12, False)
    """

    _element_type = IcoElement

    def __init__(self, inversion: bool = False) -> None:
        self._inversion = C.check_flag(inversion, "inversion", "IcosahedralGroup",
                                       fix="False for 'ico', True for 'ih'")
        self._els = [IcoElement(self, _rows(_snap(m))) for m in _matrices(self._inversion)]

    def __reduce__(self) -> tuple:
        # rebuilt from its flag (pickle, deepcopy): the cached slot table keys elements, whose
        # hash needs the flag before the rest of the state is restored
        return (IcosahedralGroup, (self._inversion,))

    # --- identity -------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return "ih" if self._inversion else "ico"

    def _key(self) -> tuple:
        return (self._inversion,)

    @property
    def spatial_dim(self) -> int:
        return 3

    @property
    def order(self) -> int:
        return len(self._els)

    @property
    def has_reflections(self) -> bool:
        return self._inversion

    def harmonic_size(self, max_order: int) -> int:
        """``(L + 1)^2``: SO(3)'s harmonic fiber of orders ``0 .. L`` restricted to I."""
        return (max_order + 1) ** 2

    # --- elements -------------------------------------------------------------------------
    @property
    def identity(self) -> IcoElement:
        return self._els[0]

    def elements(self) -> list[IcoElement]:
        """All elements in regular-fiber order (:mod:`equilayers.groups._ico`)."""
        return list(self._els)

    def element(self, matrix) -> IcoElement:
        """The element whose matrix on ``(x, y, z)`` is within ``1e-6`` of ``matrix`` (a ``3 x
        3`` tensor or nested lists); ``ValueError`` when none is."""
        try:
            m = torch.as_tensor(matrix, dtype=torch.float64, device="cpu")
        except (TypeError, ValueError):
            raise TypeError(f"{self.name}.element: matrix={matrix!r} must be a 3 x 3 matrix"
                            ) from None
        if m.shape != (3, 3):
            raise ValueError(f"{self.name}.element: matrix must be 3 x 3; got shape "
                             f"{tuple(m.shape)}")
        dist = (_matrices(self._inversion) - m).abs().amax(dim=(1, 2))
        i = int(dist.argmin())
        if float(dist[i]) > 1e-6:
            raise ValueError(f"{self.name}.element: {m.tolist()} is not one of the "
                             f"{self.order} symmetries of the icosahedron (vertices at the "
                             "cyclic permutations of (0, +-1, +-phi))")
        return self._els[i]

    def compose(self, a: IcoElement, b: IcoElement) -> IcoElement:
        """The product ``a * b`` (apply ``b`` first): the Cayley table's entry."""
        table = self.cayley_table
        return self._els[int(table[self.index(a), self.index(b)])]

    @property
    def cayley_table(self) -> torch.Tensor:
        """``T[i, j]`` = slot of ``elements()[i] * elements()[j]`` (int64 ``|G| x |G|`` on the
        CPU, built once, shared: do not write to it), each product matched to the nearest
        element's matrix."""
        return _ico_cayley_table(self._inversion)

    def inverse(self, a: IcoElement) -> IcoElement:
        """``a^-1``: the element whose matrix is the transpose."""
        return self._els[int(_ico_inverse(self._inversion)[self.index(a)])]

    # --- the action on space --------------------------------------------------------------
    def matrix(self, g: IcoElement) -> torch.Tensor:
        """The rotation matrix on ``(x, y, z)``, float64 on the CPU (exact for the grid)."""
        self._check(g)
        return torch.tensor(g.rows, dtype=torch.float64, device="cpu")

    def grid_subgroup(self) -> Group:
        """The tetrahedral group ``"t"`` (``"ih"``: ``"th"``, with the inversion): the
        elements that map the voxel grid onto itself (slots 0 .. 11, and 60 .. 71)."""
        return get("th" if self._inversion else "t")

    def grid_elements(self) -> list[IcoElement]:
        """The elements of :meth:`grid_subgroup`, in its order, as elements of this group."""
        return self._els[:12] + (self._els[60:72] if self._inversion else [])


@cpu_cache(maxsize=2)
def _ico_cayley_table(inversion: bool = False) -> torch.Tensor:
    mats = _matrices(inversion)
    n = len(mats)
    prods = torch.matmul(mats[:, None], mats[None, :]).reshape(-1, 9)  # (n^2, 9)
    # <P, M> = trace(P^T M) is 3 for the element P is, and at most 3 - 0.6 for any other
    best = (prods @ mats.reshape(n, 9).T).max(dim=1)
    if float((3 - best.values).abs().max()) > 1e-9:  # closure: every product is an element
        raise RuntimeError("ico: a product of two elements is not an element")
    return best.indices.reshape(n, n)


@cpu_cache(maxsize=2)
def _ico_inverse(inversion: bool = False) -> torch.Tensor:
    return (_ico_cayley_table(inversion) == 0).long().argmax(dim=1)


register_group(r"(ico|ih)", lambda name: IcosahedralGroup(name == "ih"),
               form="'ico', 'ih' (the 60 rotations of the icosahedron, and its 120 "
                    "symmetries with the inversion, on volumes)")


#: The irreps of I by dimension, in the rows of :func:`ico_fourier_basis`: A (1), T1 (3, the
#: rotation itself), T2 (3), G (4), H (5).
ICO_ROW_DIMS = (1,) + (3,) * 9 + (3,) * 9 + (4,) * 16 + (5,) * 25


def _character_table() -> dict[str, torch.Tensor]:
    """The characters of T2 and G per element, from its turning angle (classes: 0, 72, 144,
    120 and 180 degrees)."""
    mats = _matrices()
    cos = ((mats.diagonal(dim1=1, dim2=2).sum(1) - 1) / 2).clamp(-1, 1)
    angle = torch.rad2deg(torch.arccos(cos)).round()
    t2 = {0: 3.0, 72: 1 - PHI, 144: PHI, 120: 0.0, 180: -1.0}
    g = {0: 4.0, 72: -1.0, 144: -1.0, 120: 1.0, 180: 0.0}
    keys = [int(a) for a in angle.tolist()]
    return {"t2": torch.tensor([t2[a] for a in keys], dtype=torch.float64),
            "g": torch.tensor([g[a] for a in keys], dtype=torch.float64)}


def _orthonormal(rows: torch.Tensor, rank: int) -> torch.Tensor:
    """Gram-Schmidt over ``rows`` in order, keeping those with a part outside the earlier
    ones' span (deterministic up to rounding); ``rank`` rows are expected."""
    kept: list[torch.Tensor] = []
    scale = float(torch.linalg.vector_norm(rows, dim=1).max())
    for f in rows:
        rest = f - sum((torch.dot(q, f) * q for q in kept), torch.zeros_like(f))
        rest = rest - sum((torch.dot(q, rest) * q for q in kept), torch.zeros_like(f))
        size = torch.linalg.vector_norm(rest)
        if size > 1e-6 * scale:
            kept.append(rest / size)
    if len(kept) != rank:
        raise RuntimeError(f"ico: an isotypic part has dimension {len(kept)}, not {rank}")
    return torch.stack(kept)


@cpu_cache(maxsize=2)
def ico_fourier_basis(inversion: bool = False) -> torch.Tensor:
    """The orthonormal ``(60, 60)`` float64 Fourier basis of I (row ``k`` a function on the
    elements in slot order), by irreps (:data:`ICO_ROW_DIMS`); ``inversion``: I_h's
    ``(120, 120)``, I's rows read from each element's rotation part, then the same times its
    parity (``det``), as ``"oh"``'s from ``"o"``'s. I's rows: the constant; the entries of
    the rotation matrix (T1) and of the Wigner matrix ``D_2`` (H), irreducible on I, so
    orthogonal by Schur's relations; and the entries of ``D_3`` (T2 + G on I) projected on
    each irrep by its character, ``P f (x) = d / 60 sum_h chi(x h^-1) f(h)``, then
    orthonormalized in order. Each part spans the functions of its irrep exactly; within T2
    and G the rows are not one basis's matrix entries."""
    mats = _matrices()
    table = _ico_cayley_table()
    inv = _ico_inverse()
    d1 = mats.reshape(60, 9).T
    d2 = wigner_stack(2, mats).reshape(60, 25).T
    d3 = wigner_stack(3, mats).reshape(60, 49).T
    chars = _character_table()
    x_h_inv = table[:, inv]  # slot of x h^-1, (x, h)
    parts = [torch.ones(1, 60, dtype=torch.float64), d1]
    for name, d in (("t2", 3), ("g", 4)):
        proj = d / 60 * chars[name][x_h_inv]  # (x, h)
        parts.append(_orthonormal(d3 @ proj.T, d * d))
    parts.insert(3, d2)  # A, T1, T2, H, G -> reorder below
    a, t1, t2, h, g = parts
    basis = torch.cat([a, t1, t2, g, h])
    basis = basis / basis.norm(dim=1, keepdim=True)
    if not inversion:
        return basis
    both = torch.cat([basis, basis], dim=1)  # slot 60 s + i: (-I)^s times rotation i
    parity = torch.cat([torch.ones(60), -torch.ones(60)]).double()
    out = torch.cat([both, both * parity])
    return out / out.norm(dim=1, keepdim=True)
