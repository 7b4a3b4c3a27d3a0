"""Restriction to a subgroup and pooling over a subgroup's cosets (see
:mod:`equilayers.functional._restrict` for the slot layouts)."""

from __future__ import annotations

import torch

from .._host import host_constants
from ..functional import _restrict as R
from ..groups import FieldType, GroupLike
from ..groups._fields import field_type
from ..groups._registry import registered_name
from ..groups._subgroups import quotient_size, restriction_index
from . import _checks as NC
from ._derived import _FixedBuffers
from ._tables import table_on
from ._typed import Typed

__all__ = ["Restrict", "CosetPool"]


class Restrict(Typed, _FixedBuffers):
    """Restrict a group's fields to a subgroup's: ``D_N -> C_N``, ``D_N -> D_M`` and
    ``C_N -> C_M`` (``M | N``), ``D_N -> D_1`` (the flips), ``O(2) -> SO(2)``, ...

    Regular fields: a regular ``G`` field is ``|G| / |H|`` regular ``H`` fields, one per right
    coset ``H t_j`` (``t_j = r^(j mod n) m^(j // n)``, ``n = N / M``): output field
    ``c * |G|/|H| + j`` has slot ``i`` = input slot ``h_i t_j``, ``h_i`` the ``i``-th element of
    ``H``. A permutation of the slots; ``D_N -> C_N`` is a plain reshape (the rotations, then
    the flipped ones; escnn's restricted tensor is unchanged and keeps that order too, for the
    other subgroups it keeps ``G``'s slot order under ``H``'s permutation action, so our fields
    are its slots permuted by :func:`equilayers.groups._subgroups.restriction_index`). Harmonic
    fields pass unchanged: ``H`` acts on ``[a_0, c_1, s_1, ...]`` by the same matrices; so do
    SO(3)/O(3) ones (``(L+1)^2`` slots, 6-D maps) restricted to ``"so3"``, ``"ico"`` or
    ``"ih"``, whose elements act by the same Wigner-D matrices.
    The cube's groups too, on 6-D maps ``(B, C, |G|, D, H, W)``: ``"oh" -> "o"`` (a reshape:
    O, then the inversion times O), ``"o" -> "c4z"``, ``"oh" -> "d4z"``, ``"d4z" -> "c4z"``
    (the representatives of
    :func:`equilayers.groups._subgroups.right_coset_representatives`).

    Functional twin: :func:`~equilayers.functional.restrict`.

    Args:
        group: the input fields' group (``"d4"``, ``"c8"``, ``"o2"``, ``"oh"``, ...).
        subgroup: a subgroup with the same angles and flip (``"c4"``, ``"d2"``, ``"d1"``,
            ``"so2"``, ...).
        rep: ``"regular"`` (default) or ``"harmonic"``.
        spatial_dims: ``3`` for volumes of harmonic planar fields ``(B, C, 2M+1, D, H, W)``
            (keyword; default ``None``: the group's, 2 for planar groups, 3 for SO(3)/O(3);
            harmonic fields only).
        device: of the integer index table (keyword; as ``torch.nn`` modules' ``device``, so
            ``torch.nn.utils.skip_init`` and meta-device construction work).

    Shape:
        Regular: ``(B, C, |G|, H, W) -> (B, C * |G|/|H|, |H|, H, W)`` (cube groups: with ``D,
        H, W``). Harmonic: unchanged, ``(B, C, 2M+1, H, W)`` (``spatial_dims=3``: with ``D, H,
        W``) or SO(3)/O(3)'s ``(B, C, (L+1)^2, D, H, W)``.

    Equivariance:
        Exact (a permutation): the output is ``H``-equivariant for every element of ``H``,
        acting on the input as the element of ``G`` it is (``in_group`` for the harness).

    Example:
        >>> import torch
        >>> Restrict("d4", "c4")(torch.randn(2, 3, 8, 5, 5)).shape
        torch.Size([2, 6, 4, 5, 5])
        >>> Restrict("d8", "d1")(torch.randn(2, 3, 16, 5, 5)).shape
        torch.Size([2, 24, 2, 5, 5])
        >>> Restrict("o", "c4z")(torch.randn(2, 3, 24, 5, 5, 5)).shape
        torch.Size([2, 18, 4, 5, 5, 5])
    """

    _fixed_args = ("group", "subgroup", "rep")

    index: torch.Tensor  # the integer table (nn/_tables.py), not a buffer
    _table_names = ("index",)
    # the maps' spatial dims; a Restrict pickled whole before ``spatial_dims`` has none in its
    # ``__dict__`` and reads this default: the group's, as ``spatial_dims=None`` builds today
    _spatial_dims: int | None = None

    def __init__(self, group: GroupLike, subgroup: GroupLike, rep: str = "regular", *,
                 spatial_dims: int | None = None, device=None) -> None:
        super().__init__()
        grp, sub = R.check_restriction(group, subgroup, rep, "Restrict")
        self.group, self.subgroup, self.rep = grp, sub, rep
        dims = NC.spatial_dims(spatial_dims, "Restrict")
        if dims is not None and rep != "harmonic":
            raise ValueError(f"Restrict: spatial_dims={spatial_dims!r} is for harmonic fields "
                             "(volumes of planar ones); regular fields are restricted on their "
                             "group's spatial dims: drop spatial_dims or use rep='harmonic'")
        in_type = field_type(grp, rep, spatial_dims=dims, what="Restrict")
        self._spatial_dims = in_type.spatial_dims  # (the maps' spatial dims)
        self.in_type = in_type
        self.out_type = field_type(sub, rep, spatial_dims=self._spatial_dims, what="Restrict")
        # the harness acts on the input with group elements (of the group named here)
        self.in_group = registered_name(grp, "group", "Restrict")
        self._count = quotient_size(grp, sub) if rep == "regular" else 1
        self._identity = False
        self.index = torch.empty(0, dtype=torch.long, device=device)
        self.reset_parameters()  # (on the meta device too: a meta table of its shape)

    def reset_parameters(self) -> None:
        """Refill the index table (a fixed function of the groups and the field type)."""
        if self.rep == "regular":
            with host_constants():  # a real table, also under a FakeTensorMode
                index = restriction_index(self.group, self.subgroup)
            self._identity = R.is_identity(index)
            self.index = index.to(self.index.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.rep == "harmonic":
            R.check_harmonic(x, self.group, "Restrict", self._map_dims())
            return x
        R.check_fiber(x, int(self.group.order), "Restrict", f"regular {self.group.name}",
                      spatial_dim=self.group.spatial_dim)
        index = table_on(self._buffers_for(x).index, x.device)
        return R.restrict_regular(x, index, self._identity, self._count)

    def extra_repr(self) -> str:
        s = f"{self.group.name!r}, {self.subgroup.name!r}"
        s += f", rep={self.rep!r}" if self.rep != "regular" else ""
        volume = self._map_dims() == 3 and self.group.spatial_dim == 2
        return s + (", spatial_dims=3" if volume else "")

    def _map_dims(self) -> int:
        """The maps' spatial dims: as built, or the group's (pickled before ``spatial_dims``)."""
        dims = self._spatial_dims
        return int(self.group.spatial_dim) if dims is None else dims


class CosetPool(Typed, _FixedBuffers):
    """Max (or mean) of a regular field over each left coset ``t_j K`` of a subgroup ``K``.

    ``y[c, j] = max_{k in K} x[c, t_j k]``: a function on the ``|G|/|K|`` cosets (rep
    ``"quotient:K"``), on which ``G`` still acts, ``(u . y)[j] = u . y[coset of u^-1 t_j]``.
    It forgets which element of a coset carried the value (invariant to ``x[g] -> x[g k]``)
    and stays equivariant to all of ``G``. ``D_N`` over the flips (``"d1"``): ``N`` slots
    ``max(x[r^j], x[r^j m])`` that rotate like a regular ``C_N`` field, the flip sending slot
    ``j`` to ``-j``. ``D_N`` over its rotations (``"cN"``): 2 slots (max over the rotations,
    max over the flipped ones), a regular field of ``D_N / C_N`` that the flip swaps. ``C_N``
    over ``C_M``: ``N/M`` slots, a regular ``C_{N/M}`` field. ``K = G`` is :class:`GroupPool`.
    The cube's groups on 6-D maps too (``CosetPool("o", "c4z")``: 6 slots, one per axis
    direction the depth axis can be turned to).

    Functional twin: :func:`~equilayers.functional.coset_pool`.

    Args:
        group: a finite group (``"d4"``, ``"c8"``, ...).
        subgroup: the subgroup ``K`` whose cosets are pooled.
        reduction: ``"max"`` (default) or ``"mean"``.
        device: of the integer index table (keyword; as in :class:`Restrict`).

    Shape:
        ``(B, C, |G|, H, W) -> (B, C, |G|/|K|, H, W)``.

    Equivariance:
        Exact for every element of ``G``: regular in, ``"quotient:K"`` out.

    Example:
        >>> import torch
        >>> CosetPool("d4", "d1")(torch.randn(2, 3, 8, 5, 5)).shape
        torch.Size([2, 3, 4, 5, 5])
    """

    _fixed_args = ("group", "subgroup")

    index: torch.Tensor  # the integer table (nn/_tables.py), not a buffer
    _table_names = ("index",)

    def __init__(self, group: GroupLike, subgroup: GroupLike, reduction: str = "max", *,
                 device=None) -> None:
        super().__init__()
        grp, sub = R.check_restriction(group, subgroup, "regular", "CosetPool")
        self.group, self.subgroup = grp, sub
        self.reduction = R.check_reduction(reduction, "CosetPool")
        self.in_type, self.out_type = FieldType.regular(grp), FieldType.quotient(grp, sub)
        self._count = quotient_size(grp, sub)
        self._identity = False
        self.index = torch.empty(0, dtype=torch.long, device=device)
        self.reset_parameters()  # (on the meta device too: a meta table of its shape)

    def reset_parameters(self) -> None:
        """Refill the index table (a fixed function of the groups)."""
        index = R.sorted_coset_index(self.group, self.subgroup)
        self._identity = R.is_identity(index)
        self.index = index.to(self.index.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        R.check_fiber(x, int(self.group.order), "CosetPool", f"regular {self.group.name}",
                      floating=True, spatial_dim=self.group.spatial_dim)
        index = table_on(self._buffers_for(x).index, x.device)
        return R.pool_cosets(x, index, self._identity, self._count,
                             self.reduction)

    def extra_repr(self) -> str:
        s = f"{self.group.name!r}, {self.subgroup.name!r}"
        return s + (f", reduction={self.reduction!r}" if self.reduction != "max" else "")
