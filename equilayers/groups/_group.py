"""The interface every symmetry group of equilayers implements: :class:`Group`.

A group is a set of elements with a product, an identity and inverses, and a faithful action
on the ``spatial_dim``-dimensional space the images live in: :meth:`Group.matrix` gives each
element as an orthogonal ``spatial_dim x spatial_dim`` matrix in the x-right / y-up frame
(see :mod:`equilayers.groups._planar` for the planar conventions). Everything the layers need
beyond that derives from these: the Cayley table and regular permutations of finite groups,
which elements move the pixel grid onto itself (:meth:`Group.is_grid`: those whose matrix is a
signed permutation), the largest such subgroup (:meth:`Group.grid_subgroup`), and whether the
whole group is exact on pixels (:attr:`Group.pixel_exact`).

The planar groups C_N, D_N, SO(2), O(2) are :class:`~equilayers.groups.PlanarGroup`; a new
family is a subclass in its own file that registers its names with
:func:`~equilayers.groups.register_group`.
"""

from __future__ import annotations

import abc
import math
from typing import TYPE_CHECKING, Any

import torch

from .._cpu_cache import cpu_cache

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["Group", "Element", "GroupLike", "is_signed_permutation", "inverse_cayley_table"]


def is_signed_permutation(m: torch.Tensor) -> bool:
    """True when the square matrix ``m`` has exactly one entry ``+1`` or ``-1`` in each row and
    column and zeros elsewhere (compared exactly: a grid element's matrix is built exact)."""
    if m.dim() != 2 or m.shape[0] != m.shape[1]:
        return False
    nonzero = m != 0
    return bool((m.abs()[nonzero] == 1).all() and (nonzero.sum(0) == 1).all()
                and (nonzero.sum(1) == 1).all())


class Element:
    """The base of every group element (a hashable, immutable value with a ``group``).

    What the actions (:func:`~equilayers.groups.act`), field types and the harness need of
    an element; each family's element class (:class:`~equilayers.groups.GroupElement` of the
    planar groups, :class:`~equilayers.groups.CubicElement` of the cube's) derives from it.
    """

    __slots__ = ()
    group: Group

    @property
    def index(self) -> int:
        """The slot of this element in a regular fiber (finite groups only)."""
        return self.group.index(self)

    @property
    def matrix(self) -> torch.Tensor:
        """The element as a ``(spatial_dim, spatial_dim)`` matrix (:meth:`Group.matrix`)."""
        return self.group.matrix(self)

    @property
    def is_grid(self) -> bool:
        """True when the element maps the pixel (voxel) grid onto itself (exact action)."""
        return self.group.is_grid(self)

    def __mul__(self, other: Self) -> Self:
        return self.group.compose(self, other)

    def inverse(self) -> Self:
        """The inverse element."""
        return self.group.inverse(self)


class Group(abc.ABC):
    """A group of rotations (and reflections) of space that equilayers acts with.

    Use :func:`~equilayers.groups.get` to obtain one by name (``"p4"``, ``"d8"``, ``"so2"``,
    ...). ``Group(n, reflections)`` still builds the planar group C_N / D_N (SO(2) / O(2) for
    ``n=None``), as before the interface: it returns a
    :class:`~equilayers.groups.PlanarGroup`.

    A subclass implements :attr:`name`, :attr:`spatial_dim`, :attr:`order`,
    :attr:`identity`, :meth:`elements`, :meth:`compose`, :meth:`inverse`, :meth:`matrix`,
    :meth:`grid_subgroup` and :meth:`_key` (the values that make two groups equal); the rest
    has generic defaults that a subclass may override with a closed form. Elements are
    hashable values; for a finite group :meth:`index` is an element's slot in a regular fiber
    (its position in :meth:`elements`).
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> Group:
        if cls is Group:  # the pre-interface constructor Group(n, reflections)
            from ._planar import PlanarGroup

            return super().__new__(PlanarGroup)
        return super().__new__(cls)

    # --- what a subclass defines ----------------------------------------------------------
    @property
    @abc.abstractmethod
    def name(self) -> str:
        """The canonical name (``get(group.name) == group``)."""

    @property
    @abc.abstractmethod
    def spatial_dim(self) -> int:
        """The dimension of the space the group acts on (2 for images)."""

    @property
    @abc.abstractmethod
    def order(self) -> int | float:
        """``|G|``, or ``math.inf`` for a continuous group."""

    @property
    @abc.abstractmethod
    def identity(self) -> Any:
        """The identity element."""

    @abc.abstractmethod
    def elements(self) -> list[Any]:
        """All elements in regular-fiber order (finite groups; ``ValueError`` otherwise)."""

    @abc.abstractmethod
    def compose(self, a: Any, b: Any) -> Any:
        """The product ``a * b`` (apply ``b`` first, then ``a``)."""

    @abc.abstractmethod
    def inverse(self, a: Any) -> Any:
        """The inverse ``a^-1``."""

    @abc.abstractmethod
    def matrix(self, g: Any) -> torch.Tensor:
        """``g`` as an orthogonal ``(spatial_dim, spatial_dim)`` float64 CPU matrix acting on
        coordinates (x right, y up); exact integer entries for grid elements."""

    @abc.abstractmethod
    def grid_subgroup(self) -> Group:
        """The largest subgroup whose elements all map the pixel grid onto itself."""

    @abc.abstractmethod
    def _key(self) -> tuple:
        """The values that identify the group among those of its class (equality, hash)."""

    # --- generic queries ------------------------------------------------------------------
    @property
    def is_finite(self) -> bool:
        """Whether the group has finitely many elements (C_N, D_N, the cube's groups)."""
        return self.order != math.inf

    @property
    def has_reflections(self) -> bool:
        """Whether some element reverses orientation (``det matrix(g) = -1``)."""
        return any(float(torch.linalg.det(self.matrix(g))) < 0 for g in self._finite_elements(
            "has_reflections"))

    @property
    def pixel_exact(self) -> bool:
        """True when every element maps the pixel grid onto itself, so full pixel filters
        transform exactly (planar: c1, c2, c4, d1, d2, d4)."""
        return self.is_finite and self.grid_subgroup().order == self.order

    def is_grid(self, g: Any) -> bool:
        """True when ``g`` maps the square pixel grid onto itself (its matrix is a signed
        permutation): its action on images is an exact permutation of pixels."""
        return is_signed_permutation(self.matrix(g))

    def grid_elements(self) -> list[Any]:
        """The elements that map the pixel grid onto itself (:meth:`is_grid`)."""
        return [g for g in self._finite_elements("grid_elements") if self.is_grid(g)]

    def index(self, g: Any) -> int:
        """The slot of ``g`` in a regular fiber: its position in :meth:`elements`."""
        slots = self.__dict__.get("_slots")
        if slots is None:
            slots = {h: i for i, h in enumerate(self._finite_elements("index"))}
            self.__dict__["_slots"] = slots
        if g not in slots:
            raise ValueError(f"{g!r} is not an element of {self.name}")
        return slots[g]

    def __getstate__(self) -> dict:
        # without the slot cache: unpickling its {element: slot} dict hashes elements, which
        # reach back into this group before its own attributes are restored
        state = dict(self.__dict__)
        state.pop("_slots", None)
        return state

    def planar_params(self) -> tuple[int | None, bool]:
        """``(N, reflections)`` of a planar group (``N=None`` for SO(2)/O(2)): what the
        harmonic (Fourier) math of planar fields needs. Other groups raise ``ValueError``."""
        raise ValueError(f"{self.name} is not a planar group (cN, dN, so2, o2): harmonic "
                         "fields and their Fourier transforms are defined for planar groups "
                         "(and, in 3-D, for so3 and o3)")

    def harmonic_size(self, max_order: int) -> int:
        """``F``, the slots of a harmonic fiber of rotation orders ``0 .. max_order``: ``2M+1``
        for the planar groups (:meth:`planar_params`), ``(L+1)^2`` for SO(3)/O(3); groups
        without harmonic fields raise ``ValueError``."""
        self.planar_params()
        return 2 * max_order + 1

    #: The class of the group's elements (each family sets its own).
    _element_type: type = Element

    def check_element(self, a: object) -> None:
        """Raise ``TypeError`` unless ``a`` is an element of this group's family and
        ``ValueError`` unless it belongs to this group (not another of the family)."""
        if not (isinstance(a, Element) and isinstance(a, self._element_type)):
            raise TypeError(f"expected a {self._element_type.__name__} of {self.name}; got "
                            f"{type(a).__name__}")
        if a.group != self:
            raise ValueError(f"element {a!r} belongs to {a.group.name}, not {self.name}")

    _check = check_element  # (the families' name for it)

    def require_finite(self, what: str, fix: str) -> None:
        """Raise ``ValueError`` unless the group is finite: a continuous one (SO(2), O(2),
        SO(3), O(3)) has no regular fields (a fiber of ``|G|`` slots). The one message for
        every layer and function that needs regular fields: ``what`` names the caller,
        ``fix`` what to use instead."""
        if not self.is_finite:
            prefix = f"{what}: " if what else ""
            raise ValueError(f"{prefix}group={self.name!r} is continuous and has no regular "
                             f"fields; {fix}")

    def _finite_elements(self, what: str) -> list[Any]:
        self.require_finite(what, f"{what} needs a finite group")
        return self.elements()

    # --- tables for layers (finite groups) ------------------------------------------------
    @property
    def cayley_table(self) -> torch.Tensor:
        """``T[i, j]`` = slot of ``elements()[i] * elements()[j]`` (int64, ``|G| x |G|``, on
        the CPU; built once per group, shared: do not write to it)."""
        return _cayley_table(self)

    def regular_permutation(self, g: Any) -> torch.Tensor:
        """``perm`` with ``(g . f)[i] = f[perm[i]]`` on a regular fiber: ``perm[h] = g^-1 h``."""
        inv = self.index(self.inverse(g))
        return self.cayley_table[inv].clone()

    # --- identity -------------------------------------------------------------------------
    def __repr__(self) -> str:
        return f"Group({self.name!r})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._key()))


GroupLike = str | Group
"""A group name (``"p4m"``, ``"c8"``, ``"so2"``, ``"o"``, ...) or a :class:`Group`: what every
``group=`` argument takes (:func:`~equilayers.groups.get` resolves it)."""


@cpu_cache(maxsize=256)
def _cayley_table(group: Group) -> torch.Tensor:
    els = group.elements()
    return torch.tensor([[group.index(group.compose(a, b)) for b in els] for a in els],
                        dtype=torch.long)


@cpu_cache(maxsize=256)
def inverse_cayley_table(group: Group) -> torch.Tensor:
    """``T[a, b]`` = slot of ``a^-1 * b`` (int64, ``|G| x |G|``, CPU, shared: do not write to
    it): the Cayley table's rows in the order of the inverses."""
    inv = torch.tensor([group.index(group.inverse(a)) for a in group.elements()])
    return group.cayley_table[inv]
