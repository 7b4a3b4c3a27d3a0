"""Field types as data: :class:`FieldType` says how a group acts on a tensor.

A field type is a group, a rep name (:data:`~equilayers.groups.REPS` or ``"quotient:K"``,
see :mod:`equilayers.groups._actions`), the maximal rotation order of a harmonic fiber and
the number of spatial dims. From these follow the tensor's layout, with no guessing from its
rank:

* ``"trivial"``: ``(B, C, *spatial)`` (``(B, C, H, W)`` images, ``(B, C, D, H, W)`` volumes);
* ``"regular"`` / ``"harmonic"`` / ``"quotient:K"``: ``(B, C, F, *spatial)``, ``F`` being
  ``|G|``, ``2M+1`` or ``|G|/|K|``;
* ``"invariant"``: nothing moves (logits ``(B, K)``, nominally 2-D; any shape is accepted).

The group acts on the last ``group.spatial_dim`` dims: (H, W) for the planar groups (a
volume ``(B, C, D, H, W)`` of a planar group turns about its depth axis), (D, H, W) for the
cube's (:mod:`equilayers.groups._cubic`), whose regular fields are 6-D
``(B, C, F, D, H, W)``. ``group=None`` is a type that holds for any
group (``GroupPool`` pools regular fields of whichever group made them; ``NormNonlinearity``
maps harmonic fields of any planar group): :meth:`FieldType.bind` fixes the group, and
``max_order=None`` on a harmonic type reads the order from the tensor (any odd ``F``).

Modules carry ``in_type`` / ``out_type`` attributes of this class; the harness and the
metrics read them instead of guessing a rep from the rank.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from .. import _checks as C
from ._actions import act_fiber, act_spatial, check_rep
from ._group import Element, Group, GroupLike
from ._registry import get, registered_name
from ._subgroups import check_subgroup, embed, parse_quotient, quotient_size

__all__ = ["FieldType"]

_WHAT = "FieldType"
_FIBERED = ("regular", "harmonic")


def _has_fiber(rep: str) -> bool:
    return rep in _FIBERED or rep.startswith("quotient:")


@dataclass(frozen=True, init=False)
class FieldType:
    """How a group acts on a tensor: its group, rep, harmonic order and spatial dims.

    Args:
        group: a group name or :class:`~equilayers.groups.Group`, or ``None`` for "any group"
            (the rep holds for whichever group acts; :meth:`bind` fixes it).
        rep: ``"trivial"``, ``"regular"``, ``"harmonic"``, ``"invariant"`` or
            ``"quotient:K"`` (functions on the cosets of a subgroup ``K``; by the trivial
            subgroup, ``"quotient:c1"``, it is stored as ``"regular"``, which acts alike, so
            the two types are equal and print alike).
        max_order: ``M`` of a harmonic fiber ``[a_0, c_1, s_1, ..., c_M, s_M]`` (``2M+1``
            slots, with or without reflections); ``None`` reads it from the tensor. Only
            for ``rep="harmonic"``.
        spatial_dims: the number of spatial dims (default the group's
            :attr:`~equilayers.groups.Group.spatial_dim`: 2, ``H, W``, for the planar groups
            and for no group, 3, ``D, H, W``, for the cube's; 3 for volumes of a planar
            group); at least the group's. ``"invariant"`` has none (0, its default), and
            a fibered type (regular, harmonic, quotient) may have none: ``spatial_dims=0``
            is a fiber alone, ``(B, C, F)`` (escnn's fields on no base space, the features
            of an equivariant MLP: :class:`~equilayers.nn.GroupLinear`), on which every
            element acts exactly, through the fiber only.

    Raises:
        TypeError: a ``group``, ``rep``, ``max_order`` or ``spatial_dims`` of the wrong type.
        ValueError: an unknown rep, a regular or quotient fiber of a continuous group, a
            quotient by something that is not a subgroup, ``max_order`` on a non-harmonic
            type, too few ``spatial_dims``.

    Example:
        >>> FieldType.regular("p4").fiber_size
        4
        >>> FieldType.harmonic("so2", 2)
        FieldType(so2, harmonic, max_order=2)
        >>> FieldType.trivial("p4", spatial_dims=3).tensor_ndim
        5
        >>> FieldType.regular("o").tensor_ndim
        6
        >>> FieldType.harmonic("so3", 1, spatial_dims=0).layout
        '(B, C, F)'
    """

    group: Group | None
    rep: str
    max_order: int | None
    spatial_dims: int

    def __init__(self, group: GroupLike | None, rep: str, max_order: int | None = None,
                 spatial_dims: int | None = None) -> None:
        values = _validate(group, rep, max_order, spatial_dims, _WHAT, False)
        for name, value in zip(("group", "rep", "max_order", "spatial_dims"), values,
                               strict=True):
            object.__setattr__(self, name, value)

    # --- constructors ----------------------------------------------------------------------
    @classmethod
    def trivial(cls, group: GroupLike | None = None, *,
                spatial_dims: int | None = None) -> FieldType:
        """Images ``(B, C, H, W)`` (volumes with ``spatial_dims=3``): they only move."""
        return cls(group, "trivial", spatial_dims=spatial_dims)

    @classmethod
    def regular(cls, group: GroupLike | None = None, *,
                spatial_dims: int | None = None) -> FieldType:
        """Regular fields ``(B, C, |G|, H, W)``: one slot per group element."""
        return cls(group, "regular", spatial_dims=spatial_dims)

    @classmethod
    def harmonic(cls, group: GroupLike | None = None, max_order: int | None = None, *,
                 spatial_dims: int | None = None) -> FieldType:
        """Harmonic fields ``(B, C, 2M+1, H, W)`` of rotation orders ``0..M`` (SO(3)/O(3):
        ``(B, C, (M+1)^2, D, H, W)``, :mod:`equilayers.groups._so3`)."""
        return cls(group, "harmonic", max_order, spatial_dims=spatial_dims)

    @classmethod
    def quotient(cls, group: GroupLike, subgroup: GroupLike, *,
                 spatial_dims: int | None = None) -> FieldType:
        """Functions on the cosets of ``subgroup``: ``(B, C, |G|/|K|, H, W)``."""
        sub = _group(subgroup, "subgroup")
        name = registered_name(sub, "subgroup", "FieldType.quotient")
        return cls(group, f"quotient:{name}", spatial_dims=spatial_dims)

    @classmethod
    def invariant(cls, group: GroupLike | None = None) -> FieldType:
        """Values nothing moves: logits ``(B, K)``, pooled features."""
        return cls(group, "invariant")

    # --- derived ---------------------------------------------------------------------------
    @property
    def has_fiber(self) -> bool:
        """Whether the tensor has a fiber axis (dim 2): regular, harmonic and quotient."""
        return _has_fiber(self.rep)

    @property
    def fiber_size(self) -> int | None:
        """``F``: ``|G|`` (regular), ``2M+1`` (harmonic, with or without reflections),
        ``|G|/|K|`` (quotient), 1 (trivial, invariant); ``None`` where the type leaves it to
        the tensor (a regular type of no group, a harmonic one of no ``max_order``)."""
        if self.rep == "regular":
            return None if self.group is None else int(self.group.order)
        if self.rep == "harmonic":
            if self.max_order is None:
                return None
            if self.group is None:
                return 2 * self.max_order + 1
            return self.group.harmonic_size(self.max_order)
        if self.rep.startswith("quotient:"):
            if self.group is None:
                return None
            sub = parse_quotient(self.rep)
            assert sub is not None  # the rep starts with "quotient:"
            return quotient_size(self.group, sub)
        return 1

    @property
    def tensor_ndim(self) -> int:
        """The rank of a batched tensor of this type: ``2 + spatial_dims (+ 1 fiber axis)``
        (2 for invariant)."""
        return 2 + self.spatial_dims + (1 if self.has_fiber else 0)

    def bind(self, group: GroupLike) -> FieldType:
        """This type with its group fixed: ``group`` for a type of no group (with at least
        the group's spatial dims: a regular type of any group bound to ``"o"`` is 6-D; a
        fiber alone, ``spatial_dims=0``, stays one), else
        itself (after checking that ``group`` is its group or a subgroup of it)."""
        grp = _group(group, "group", "FieldType.bind")
        if self.group is None:
            dims = (self.spatial_dims if self.rep == "invariant" or self.spatial_dims == 0
                    else max(self.spatial_dims, grp.spatial_dim))
            return FieldType(grp, self.rep, self.max_order, dims)
        if grp != self.group:
            check_subgroup(self.group, grp, "FieldType.bind")
        return self

    # --- tensors ---------------------------------------------------------------------------
    def check(self, x: torch.Tensor, name: str = "x", what: str = "") -> torch.Tensor:
        """``x`` if it is a tensor of this type (rank :attr:`tensor_ndim`, fiber size
        :attr:`fiber_size` in dim 2); ``TypeError`` / ``ValueError`` naming ``name``, the
        shape and the type otherwise. Invariant types take any shape."""
        where = what or _WHAT
        C.check_tensor(x, name, where, floating=False)
        if self.rep == "invariant":
            return x
        if x.dim() != self.tensor_ndim:
            raise ValueError(f"{where}: {name} must be {self.tensor_ndim}-D {self.layout} for "
                             f"{self!r}; got a {x.dim()}-D tensor of shape {tuple(x.shape)}")
        if self.has_fiber:
            size, want = x.shape[2], self.fiber_size
            if want is not None and size != want:
                raise ValueError(f"{where}: {name} must have F={want} slots in dim 2 "
                                 f"({self._fiber_words()}) for {self!r}; got shape "
                                 f"{tuple(x.shape)}")
            if want is None and self.rep == "harmonic" and self.group is not None and (
                    self.group.spatial_dim == 3 and math.isqrt(size) ** 2 != size):
                raise ValueError(f"{where}: {name} must have a square fiber F = "
                                 f"(max_order+1)^2 in dim 2 for {self!r}; got shape "
                                 f"{tuple(x.shape)}")
            planar = self.group is None or self.group.spatial_dim == 2
            if want is None and self.rep == "harmonic" and planar and size % 2 == 0:
                raise ValueError(f"{where}: {name} must have an odd fiber F = 2*max_order+1 in "
                                 f"dim 2 for {self!r}; got shape {tuple(x.shape)}")
        return x

    @property
    def layout(self) -> str:
        """The tensor layout in words, e.g. ``"(B, C, F, H, W)"``."""
        if self.rep == "invariant":
            return "(B, C)"
        named = {0: (), 1: ("W",), 2: ("H", "W"), 3: ("D", "H", "W")}
        space = named.get(self.spatial_dims, tuple(f"S{i}" for i in range(self.spatial_dims)))
        return "(" + ", ".join(("B", "C") + (("F",) if self.has_fiber else ()) + space) + ")"

    def act(self, g: Element, x: torch.Tensor, *, mode: str = "bilinear") -> torch.Tensor:
        """``g . x``: ``x`` moved on its last ``g.group.spatial_dim`` dims and its fiber
        transformed by ``g`` (the actions of :mod:`equilayers.groups._actions`); a fiber
        alone (``spatial_dims=0``) is only transformed, exactly for every element. ``g`` may be
        an element of the type's group or of a subgroup (acting as the element of the group it
        is); a type of no group takes any element."""
        if not isinstance(g, Element):
            raise TypeError(f"FieldType.act: g={g!r} must be a group element (a GroupElement "
                            "or CubicElement, from group.elements() or group.element(...))")
        if self.group is not None and g.group != self.group:
            g = embed(g, self.group)
        self.check(x, "x", "FieldType.act")
        if self.rep == "invariant":
            return x
        moved = x if self.spatial_dims == 0 else act_spatial(x, g, mode=mode)
        return act_fiber(moved, g, self.rep) if self.has_fiber else moved

    # --- identity --------------------------------------------------------------------------
    def _fiber_words(self) -> str:
        if self.rep == "regular":
            return f"|G| of {self.group.name}" if self.group is not None else "|G|"
        if self.rep == "harmonic":
            if self.group is not None and self.group.spatial_dim == 3:
                return f"(max_order+1)^2 for max_order={self.max_order}"
            return f"2*max_order+1 for max_order={self.max_order}"
        return f"|G|/|K| cosets of {self.rep.split(':', 1)[1]}"

    def __repr__(self) -> str:
        parts = [self.group.name if self.group is not None else "any group", self.rep]
        if self.max_order is not None:
            parts.append(f"max_order={self.max_order}")
        if self.spatial_dims != _default_dims(self.rep, self.group):
            parts.append(f"spatial_dims={self.spatial_dims}")
        return f"FieldType({', '.join(parts)})"


def _default_dims(rep: str, grp: Group | None) -> int:
    """The spatial dims a type has unless told: none (invariant), else the group's (2 for no
    group)."""
    if rep == "invariant":
        return 0
    return 2 if grp is None else grp.spatial_dim


def _group(group: Any, name: str = "group", what: str = _WHAT) -> Group:
    return get(group, name, what)


def _spatial_fix(rep: str, grp: Group | None) -> str:
    if rep == "invariant":
        return "an invariant value has no spatial dims"
    alone = "; 0 for a fiber alone (B, C, F)" if _has_fiber(rep) else ""
    if grp is None:
        return "2 for images (H, W), 3 for volumes (D, H, W)" + alone
    kinds = ("2 for images (H, W), 3 for volumes (D, H, W)" if grp.spatial_dim == 2
             else "3 for volumes (D, H, W)")
    return f"{grp.name} acts on {grp.spatial_dim} spatial dims: {kinds}" + alone


def field_type(group: GroupLike | None, rep: str, max_order: int | None = None,
               spatial_dims: int | None = None, *, what: str = _WHAT,
               order_required: bool = False, order_name: str = "max_order") -> FieldType:
    """:class:`FieldType` with its errors prefixed by ``what`` (the module being built), so a
    layer validates its ``max_order`` once, through its field type; ``order_required``: a
    harmonic ``max_order`` of ``None`` is an error (the layer needs the order); ``order_name``:
    the layer's name for it (``"in_max_order"``)."""
    values = _validate(group, rep, max_order, spatial_dims, what, order_required, order_name)
    ft = object.__new__(FieldType)
    for name, value in zip(("group", "rep", "max_order", "spatial_dims"), values, strict=True):
        object.__setattr__(ft, name, value)
    return ft


def _validate(group, rep, max_order, spatial_dims, what: str, order_required: bool,
              order_name: str = "max_order"):
    grp = None if group is None else _group(group, "group", what)
    rep = check_rep(rep, "rep", what)
    invariant = rep == "invariant"
    if spatial_dims is None:
        spatial_dims = _default_dims(rep, grp)
    lowest = 0 if invariant else (grp.spatial_dim if grp is not None else 1)
    spatial_dims = C.check_int(spatial_dims, "spatial_dims", what,
                               minimum=lowest, maximum=0 if invariant else None,
                               fix=_spatial_fix(rep, grp), or_zero=_has_fiber(rep))
    if rep == "harmonic":
        max_order = _check_order(max_order, order_name, what, order_required)
        if grp is not None:
            try:
                grp.harmonic_size(0)
            except ValueError as e:
                raise ValueError(f"{what}: group={grp.name!r} with rep='harmonic': {e}"
                                 ) from None
    elif max_order is not None:
        raise ValueError(f"{what}: {order_name}={max_order!r} is for harmonic fields; got "
                         f"rep={rep!r}: drop {order_name} or use rep='harmonic'")
    if (rep == "regular" or rep.startswith("quotient:")) and grp is not None:
        grp.require_finite(what, f"rep={rep!r} needs a fiber of finitely many slots; use "
                           "rep='harmonic' with a max_order")
        if rep.startswith("quotient:"):
            sub = parse_quotient(rep)
            assert sub is not None  # rep starts with "quotient:"
            check_subgroup(grp, sub, f"{what}: rep={rep!r}")
            rep = f"quotient:{sub.name}"
    sub = parse_quotient(rep)
    if sub is not None and sub.order == 1:  # the cosets of {e} are the elements: one name,
        rep = "regular"  # so that equal types compare equal (the action is the same)
    return grp, rep, max_order, spatial_dims


def _check_order(value, name: str, what: str, required: bool) -> int | None:
    """A harmonic ``max_order`` (:func:`equilayers._checks.check_order`; ``None`` unless
    ``required``: read from the tensor)."""
    return C.check_order(value, name, what, optional=not required, fix=(
        f"a harmonic fiber has 2*{name}+1 slots" + ("" if required else
                                                    "; None reads it from the tensor")))
