"""Restriction of group feature maps to a subgroup, and pooling over a subgroup's cosets.

Subgroups keep the angles and the flip (``C_M``, ``D_M`` in ``D_N`` and ``C_M`` in ``C_N`` for
``M | N``; ``SO(2)`` in ``O(2)``; ``D_1 = {e, m}`` the flips): escnn's subgroup ids
``(None, M)``, ``(0, M)`` and ``M``. Coset representatives ``t_j = r^(j mod n) m^(j // n)``,
``n = N / M`` (see :mod:`equilayers.groups._subgroups`).

* :func:`restrict`: a regular ``G`` field is ``|G| / |H|`` regular ``H`` fields, one per right
  coset ``H t_j``: output field ``c * |G|/|H| + j`` has slot ``i`` = input slot ``h_i t_j``. A
  pure permutation of slots (for ``D_N -> C_N`` the identity: the rotations, then the flipped
  ones). Harmonic fields are unchanged: ``H`` acts on ``[a_0, c_1, s_1, ...]`` by the same
  matrices (a harmonic O(2) or D_N field is a harmonic SO(2) or C_M field; a harmonic SO(3) or
  O(3) field, ``(L+1)^2`` slots on volumes, a harmonic field of any subgroup with harmonic
  fields, ``"so3"``, ``"ico"``, ``"ih"``: its elements act by the same Wigner-D matrices).
  A volume of planar fields ``(B, C, F, D, H, W)`` restricts as an image of them does.
* :func:`coset_pool`: a regular ``G`` field reduced (max or mean) over each left coset
  ``t_j K``: a function on ``G / K`` (rep ``"quotient:K"``), on which ``G`` still acts,
  ``(u . y)[j] = u . y[coset of u^-1 t_j]``. It forgets which element of its coset carried a
  value, i.e. it is invariant to ``f[g] -> f[g k]``; for ``K = C_N`` in ``D_N`` the two slots
  (max over the rotations, max over the flipped ones) form a regular ``D_1`` field of the
  quotient ``D_N / C_N``, for ``K = D_1`` (flips) the ``N`` slots ``max(f[r^j], f[r^j m])``
  rotate like a regular ``C_N`` field and the flip maps slot ``j`` to ``-j``.
"""

from __future__ import annotations

import math

import torch

from .. import _checks as C
from .._host import host_constants
from ..groups import GroupLike, get
from ..groups._subgroups import check_subgroup, coset_index, quotient_size, restriction_index

__all__ = ["restrict", "coset_pool", "RESTRICT_REPS"]

RESTRICT_REPS = ("regular", "harmonic")
_REDUCTIONS = ("max", "mean")


def check_restriction(group: GroupLike, subgroup: GroupLike, rep: str, what: str):
    """``(G, H)`` after validating the pair and the rep (``ValueError`` naming them)."""
    C.check_choice(rep, "rep", RESTRICT_REPS, what, fix="the fields' type")
    grp, sub = check_subgroup(group, subgroup, what)
    if rep == "regular":
        grp.require_finite(what, "use rep='harmonic'")
    else:  # (a group without harmonic fields: no fiber to pass through)
        for name, g in (("group", grp), ("subgroup", sub)):
            try:
                g.harmonic_size(0)
            except ValueError as e:
                raise ValueError(f"{what}: {name}={g.name!r} has no harmonic fields ({e}); "
                                 "use rep='regular' for its regular fields") from None
    return grp, sub


def map_dims(group, spatial_dims: int | None = None) -> tuple[int, ...]:
    """The spatial dims a map of ``group``'s fields may have: ``spatial_dims`` where given,
    else the group's (3 for volume groups) or, for a planar group, 2 or 3 (a volume of planar
    fields, turned about the depth axis)."""
    if spatial_dims is not None:
        return (spatial_dims,)
    return (3,) if group.spatial_dim == 3 else (2, 3)


def check_harmonic(x: torch.Tensor, group, what: str, spatial_dims: int | None = None
                   ) -> None:
    """``x`` is a map (:func:`map_dims`) of harmonic ``group`` fields: ``2M+1`` (odd) slots
    for planar groups, ``(L+1)^2`` for SO(3)/O(3) and the groups inside it."""
    hint = (" (a volume of planar fields (B, C, 2M+1, D, H, W): build it with spatial_dims=3)"
            if group.spatial_dim == 2 and spatial_dims == 2 and isinstance(x, torch.Tensor)
            and x.dim() == 6 else "")
    check_fiber(x, None, what, "harmonic", spatial_dim=map_dims(group, spatial_dims), hint=hint)
    f = int(x.shape[2])
    if group.spatial_dim == 3:
        if math.isqrt(f) ** 2 != f:
            raise ValueError(f"{what} expects a harmonic {group.name} fiber of (L+1)^2 slots "
                             f"(1, 4, 9, ...) in dim 2; got shape {tuple(x.shape)}")
    elif f % 2 == 0:
        raise ValueError(f"{what} expects a harmonic fiber of 2M+1 (odd) slots in dim 2; "
                         f"got shape {tuple(x.shape)}")


def check_fiber(x: torch.Tensor, size: int | None, what: str, kind: str,
                floating: bool = False, spatial_dim: int | tuple[int, ...] = 2,
                hint: str = "") -> None:
    """``x`` is a 5-D map (6-D for ``spatial_dim=3``, the cube groups' maps on volumes; a
    tuple: any of them) with a fiber of ``size`` slots (``None``: any, as harmonic fibers
    before :func:`check_harmonic`'s rule); ``floating``: a floating-point one (``TypeError``
    naming the dtype otherwise)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{what} expects a tensor; got {type(x).__name__}{C.proxy_fix(x)}")
    dims = (spatial_dim,) if isinstance(spatial_dim, int) else spatial_dim
    C.check_group_map(x, what, dims, hint, floating=floating)
    if size is not None and x.shape[2] != size:
        raise ValueError(f"{what} expects a {kind} fiber of {size} slots in dim 2; got shape "
                         f"{tuple(x.shape)}")


def sorted_coset_index(group, subgroup) -> torch.Tensor:
    """:func:`~equilayers.groups._subgroups.coset_index` with each coset's members in slot
    order (a max or mean does not care; ``D_N / C_N`` becomes the identity). A real CPU
    tensor, whatever the default device or a ``FakeTensorMode``
    (:func:`equilayers._host.host_constants`)."""
    grp, sub = check_subgroup(group, subgroup)
    with torch.device("cpu"), host_constants():  # host-side, whatever the default device
        return coset_index(grp, sub).view(-1, int(sub.order)).sort(dim=1).values.reshape(-1)


def is_identity(index: torch.Tensor) -> bool:
    """Whether a real CPU slot index is ``arange``: then the gather is a free view."""
    with host_constants():  # (read as it is under a FakeTensorMode)
        return bool(torch.equal(index.cpu(), torch.arange(index.numel(), device="cpu")))


def gather_fibers(x: torch.Tensor, index: torch.Tensor, identity: bool,
                  groups: int) -> torch.Tensor:
    """``x[:, :, index]`` split into ``groups`` slot groups: ``(B, C, groups, F / groups,
    *spatial)`` (a view when ``identity``)."""
    b, c, f = x.shape[:3]
    if not identity:
        x = x.index_select(2, index)
    return x.reshape(b, c, groups, f // groups, *x.shape[3:])


def restrict_regular(x: torch.Tensor, index: torch.Tensor, identity: bool,
                     count: int) -> torch.Tensor:
    """The regular restriction with a precomputed :func:`restriction_index`."""
    y = gather_fibers(x, index, identity, count)
    return y.reshape(x.shape[0], x.shape[1] * count, x.shape[2] // count, *x.shape[3:])


def pool_cosets(x: torch.Tensor, index: torch.Tensor, identity: bool, count: int,
                reduction: str) -> torch.Tensor:
    """Coset pooling with a precomputed :func:`sorted_coset_index`."""
    y = gather_fibers(x, index, identity, count)
    return y.amax(3) if reduction == "max" else y.mean(3)


def restrict(x: torch.Tensor, group: GroupLike, subgroup: GroupLike,
             rep: str = "regular") -> torch.Tensor:
    """Restrict ``group``'s fields to ``subgroup``'s (see the module docstring).

    Args:
        x: ``(B, C, F, H, W)``: regular fields (``F = |G|``) or harmonic ones (``F = 2M+1``);
            for the cube's groups regular fields ``(B, C, |G|, D, H, W)``.
        group, subgroup: e.g. ``"d4"`` and ``"c4"``, ``"d8"`` and ``"d4"``, ``"d4"`` and
            ``"d1"`` (the flips), ``"c8"`` and ``"c4"``, ``"o2"`` and ``"so2"``; the cube's
            ``"oh"`` and ``"o"``, ``"o"`` and ``"c4z"``, ``"oh"`` and ``"d4z"``.
        rep: ``"regular"`` or ``"harmonic"``.

    Returns:
        Regular: ``(B, C * |G|/|H|, |H|, H, W)``, field ``c * |G|/|H| + j`` = right coset
        ``H t_j`` of input field ``c``. Harmonic: ``x`` itself.

    Example:
        >>> restrict(torch.randn(2, 3, 8, 5, 5), "d4", "c4").shape
        torch.Size([2, 6, 4, 5, 5])
    """
    grp, sub = check_restriction(group, subgroup, rep, "restrict")
    if rep == "harmonic":
        check_harmonic(x, grp, "restrict")
        return x
    check_fiber(x, int(grp.order), "restrict", f"regular {grp.name}",
                spatial_dim=grp.spatial_dim)
    index = restriction_index(grp, sub)
    return restrict_regular(x, index.to(x.device), is_identity(index), quotient_size(grp, sub))


def coset_pool(x: torch.Tensor, group: GroupLike, subgroup: GroupLike,
               reduction: str = "max") -> torch.Tensor:
    """Max or mean of a regular ``group`` field over each left coset of ``subgroup``.

    ``y[c, j] = max_{k in K} x[c, t_j k]`` (or the mean): ``(B, C, |G|, H, W) -> (B, C,
    |G|/|K|, H, W)``, a ``"quotient:K"`` field (see the module docstring).

    Example:
        >>> coset_pool(torch.randn(2, 3, 8, 5, 5), "d4", "d1").shape  # pool the flips
        torch.Size([2, 3, 4, 5, 5])
    """
    grp, sub = check_restriction(group, subgroup, "regular", "coset_pool")
    check_reduction(reduction, "coset_pool")
    check_fiber(x, int(grp.order), "coset_pool", f"regular {get(grp).name}", floating=True,
                spatial_dim=grp.spatial_dim)
    index = sorted_coset_index(grp, sub)
    return pool_cosets(x, index.to(x.device), is_identity(index), quotient_size(grp, sub),
                       reduction)


def check_reduction(reduction: str, what: str) -> str:
    return C.check_choice(reduction, "reduction", _REDUCTIONS, what)
