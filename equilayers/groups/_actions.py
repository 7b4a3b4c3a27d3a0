"""How a group element acts on a tensor: the one definition layers, tests and metrics share.

A *rep* names how the non-spatial part of a tensor transforms:

* ``"trivial"``: plain images/feature maps ``(B, C, H, W)`` (any rank >= 2): they only move
  spatially.
* ``"regular"``: group feature maps ``(B, C, F, H, W)`` with ``F = |G|`` slots, one per group
  element in :meth:`Group.elements` order; ``(g . f)[h] = g . f[g^-1 h]`` (spatial move plus a
  permutation of the slots).
* ``"harmonic"``: ``(B, C, F, H, W)`` with ``F = 2M + 1`` slots ``[a_0, c_1, s_1, ..., c_M, s_M]``
  (rotation orders 0..M). A rotation by ``t`` turns each pair ``(c_m, s_m)`` by ``m t``; the
  flip maps ``(c_m, s_m) -> ((-1)^m c_m, -(-1)^m s_m)`` (how ``x -> -x`` acts on
  ``(cos m phi, sin m phi)``); order 0 is invariant.
* ``"invariant"``: no spatial dims to move and nothing to permute (logits, pooled features).
* ``"quotient:K"`` (e.g. ``"quotient:d1"``): ``(B, C, F, H, W)`` with ``F = |G| / |K|`` slots,
  functions on the left cosets ``t_j K`` of a subgroup ``K`` (representatives and order in
  :mod:`equilayers.groups._subgroups`); ``(g . f)[j] = g . f[coset of g^-1 t_j]``. What
  pooling a regular field over ``K`` gives (``"quotient:c1"`` is ``"regular"``).

Because ``C`` and ``F`` are separate dims, ``nn.BatchNorm3d`` (statistics per field over
``F, H, W``), ``nn.Dropout3d`` (one mask per field) and pointwise activations commute with
every regular action; on harmonic fibers only pointwise maps of the order-0 slot and norm
nonlinearities do.
"""

from __future__ import annotations

import functools
import math

import torch

from .. import _checks as C
from ._group import Element, Group
from ._planar import GroupElement
from ._registry import get
from ._so3 import SO3Element, rotate3d
from ._spherical import wigner_blocks
from ._subgroups import (
    check_subgroup,
    coset_permutation,
    embed,
    parse_quotient,
    quotient_size,
)
from ._transforms import _check_spatial, apply_grid_ops, element_rows, flip, grid_ops, rotate

__all__ = ["REPS", "act", "act_spatial", "act_fiber", "fiber_size", "harmonic_matrix"]

REPS = ("trivial", "regular", "harmonic", "invariant")
"""The field kinds a ``rep=`` argument names (and ``"quotient:K"`` for the cosets of ``K``)."""


def check_rep(rep: str, name: str = "rep", what: str = "") -> str:
    if isinstance(rep, str) and rep.startswith("quotient:"):
        try:
            parse_quotient(rep)
        except ValueError as e:
            where = f"{what}: " if what else ""
            raise ValueError(f"{where}{name}={rep!r}: {e}") from None
        return rep
    return C.check_choice(rep, name, REPS, what,
                          "or 'quotient:K' for a subgroup K (e.g. 'quotient:d1')")


def _check_element(g, what: str) -> Element:
    if not isinstance(g, Element):
        raise TypeError(f"{what}: g={g!r} must be a group element (a GroupElement or "
                        "CubicElement, from group.elements() or group.element(...))")
    return g


def _rotation_element(g: Element) -> Element:
    """An element of the cube's groups as the same rotation (or rotoinversion) of SO(3) /
    O(3), whose harmonic fields it then acts on (``act(x, g, "harmonic")`` on 6-D maps, as
    :meth:`FieldType.act` does); any other element as it is."""
    if isinstance(g, (SO3Element, GroupElement)) or g.group.spatial_dim != 3:
        return g
    return embed(g, "o3" if g.group.has_reflections else "so3")


def _planar_element(g: Element, what: str) -> GroupElement:
    """``g`` if it is an element of a planar group (the harmonic reps and the interpolated
    rotations are planar), else ``ValueError`` naming its group."""
    if not isinstance(g, GroupElement):
        raise ValueError(f"{what}: g={g!r} is an element of {g.group.name}, which acts on "
                         f"{g.group.spatial_dim} spatial dims; {what} needs an element of a "
                         "planar group (cN, dN, so2, o2)")
    return g


def fiber_size(group, rep: str, max_order: int | None = None) -> int:
    """Length of the fiber dim for ``rep``: ``|G|`` (regular), ``2M+1`` (harmonic), 1 else."""
    g = get(group)
    check_rep(rep, "rep", "fiber_size")
    if rep.startswith("quotient:"):
        sub = parse_quotient(rep)
        assert sub is not None  # rep starts with "quotient:"
        return quotient_size(g, sub)
    max_order = C.check_optional_int(max_order, "max_order", "fiber_size", minimum=0)
    if rep == "regular":
        g.require_finite("fiber_size", "use rep='harmonic'")
        return int(g.order)
    if rep == "harmonic":
        if max_order is None:
            raise ValueError(f"fiber_size: a harmonic fiber needs max_order >= 0; got "
                             f"max_order={max_order!r}")
        return g.harmonic_size(max_order)
    return 1


def act_spatial(x: torch.Tensor, g: Element, *, mode: str = "bilinear") -> torch.Tensor:
    """Move the last ``g.group.spatial_dim`` dims by ``g`` (two for the planar groups, three,
    ``(D, H, W)``, for the cube's): exact flips and axis permutations for grid elements, else
    interpolated (planar groups only)."""
    what = "act_spatial"
    _check_element(g, what)
    C.check_choice(mode, "mode", ("bilinear", "nearest", "bicubic"), what)
    _check_spatial(x, what)
    d = g.group.spatial_dim
    if x.dim() < d:
        raise ValueError(f"{what}: {g.group.name} acts on the last {d} dims; got a "
                         f"{x.dim()}-D tensor of shape {tuple(x.shape)}")
    ops = _grid_ops_of(g)
    if ops is not None:  # an exact permutation of pixels, read off the element's matrix
        return apply_grid_ops(x, ops)
    if isinstance(g, SO3Element):  # interpolated 3-D rotation (trilinear)
        if mode == "bicubic":
            raise ValueError(f"{what}: mode='bicubic' is for images; volumes rotate with "
                             "mode='bilinear' (trilinear) or 'nearest'")
        _check_spatial(x, what, floating=True)
        return rotate3d(x, g.group.matrix(g), mode=mode)
    g = _planar_element(g, what)
    if g.reflection:
        x = flip(x)
    return rotate(x, g.angle, mode=mode)


@functools.lru_cache(maxsize=1024)
def _grid_ops_of(g: Element) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """:func:`grid_ops` of a grid element's matrix; ``None`` off the grid."""
    return grid_ops(element_rows(g.group, g)) if g.group.is_grid(g) else None


@functools.lru_cache(maxsize=256)
def grid_moves(group: Group) -> tuple[frozenset[int], bool]:
    """``(dims, swaps)`` for the grid subgroup of ``group``: the tensor dims (``-1`` width,
    ``-2`` height) that some grid element flips or moves, and whether some element trades
    dims (needs the same options on them). What a layer's padding and stride must respect to
    be exact."""
    sub = group.grid_subgroup()
    dims, swaps = set(), False
    for g in sub.elements():
        flips, source = grid_ops(element_rows(sub, g))
        moved = {-(k + 1) for k, j in enumerate(source) if j != k}
        dims |= set(flips) | moved
        swaps = swaps or bool(moved)
    return frozenset(dims), swaps


def harmonic_matrix(g: Element, max_order: int, *, dtype: torch.dtype = torch.float64,
                    device: torch.device | str | None = None) -> torch.Tensor:
    """The ``(2M+1) x (2M+1)`` matrix by which ``g`` acts on a harmonic fiber (SO(3)/O(3):
    the ``((M+1)^2, (M+1)^2)`` block-diagonal real Wigner-D matrix, :mod:`._spherical`).
    Planar: order ``m``'s block is exact (entries ``0``, ``+-1``) wherever ``m`` times the
    angle is a multiple of 90 degrees, so the grid elements act exactly."""
    _check_element(g, "harmonic_matrix")
    max_order = C.check_order(max_order, "max_order", "harmonic_matrix")
    C.check_float_dtype(dtype, "dtype", "harmonic_matrix", optional=False)
    g = _rotation_element(g)
    if isinstance(g, SO3Element):
        return wigner_blocks(max_order, g.group.matrix(g)).to(dtype=dtype, device=device)
    g = _planar_element(g, "harmonic_matrix")
    size = 2 * max_order + 1
    rho = torch.zeros(size, size, dtype=torch.float64)
    rho[0, 0] = 1.0
    for m in range(1, max_order + 1):
        c, s = g.cos_sin(m)  # exact 0 and +-1 at quarter turns (the grid elements)
        rot = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
        if g.reflection:
            sign = (-1.0) ** m
            rot = rot @ torch.diag(torch.tensor([sign, -sign], dtype=torch.float64))
        rho[2 * m - 1 : 2 * m + 1, 2 * m - 1 : 2 * m + 1] = rot
    return rho.to(dtype=dtype, device=device)


def act_fiber(x: torch.Tensor, g: Element, rep: str, dim: int = 2) -> torch.Tensor:
    """Transform the fiber dim (``dim``, default 2 of ``(B, C, F, H, W)``) by ``g``."""
    what = "act_fiber"
    _check_element(g, what)
    check_rep(rep, "rep", what)
    C.check_tensor(x, "x", what, floating=False)
    C.check_int(dim, "dim", what, minimum=-max(x.dim(), 1), maximum=max(x.dim(), 1) - 1,
                fix=f"a dim of x (shape {tuple(x.shape)})")
    if rep in ("trivial", "invariant"):
        return x
    size = x.shape[dim]
    if rep.startswith("quotient:"):
        named = parse_quotient(rep)
        assert named is not None  # rep starts with "quotient:"
        sub = check_subgroup(g.group, named, f"rep {rep!r}")[1]
        count = quotient_size(g.group, sub)
        if size != count:
            raise ValueError(f"a {rep!r} fiber of {g.group.name} has |G|/|K|={count} slots; "
                             f"got F={size} in shape {tuple(x.shape)}")
        return x.index_select(dim, coset_permutation(g, sub).to(x.device))
    if rep == "regular":
        group = g.group
        group.require_finite(what, "use rep='harmonic'")
        if size != group.order:
            raise ValueError(f"a regular fiber of {group.name} has F={group.order} slots; got "
                             f"F={size} in dim={dim} of shape {tuple(x.shape)}")
        perm = group.regular_permutation(g).to(x.device)
        return x.index_select(dim, perm)
    g = _rotation_element(g)  # (a cube element acts on SO(3)/O(3) fields)
    if isinstance(g, SO3Element):
        order = math.isqrt(size) - 1
        if (order + 1) ** 2 != size:
            raise ValueError(f"a harmonic fiber of {g.group.name} has F = (max_order + 1)^2 "
                             f"slots; got F={size} in dim={dim} of shape {tuple(x.shape)}")
    elif size % 2 == 0:
        raise ValueError(f"a harmonic fiber has F = 2*max_order + 1 (odd) slots; got F={size} in "
                         f"dim={dim} of shape {tuple(x.shape)}")
    else:
        order = (size - 1) // 2
    C.check_tensor(x, "x", what)  # the harmonic action mixes slots: floating point
    rho = harmonic_matrix(g, order, dtype=x.dtype, device=x.device)
    return torch.movedim(torch.tensordot(rho, torch.movedim(x, dim, 0), dims=1), 0, dim)


def act(
    x: torch.Tensor, g: Element, rep: str = "trivial", *, mode: str = "bilinear"
) -> torch.Tensor:
    """Apply ``g`` to ``x`` as a feature map of type ``rep`` (spatial move and fiber action).

    ``rep="regular"`` and ``"harmonic"`` expect 5-D ``(B, C, F, H, W)`` tensors for planar
    groups, 6-D ``(B, C, F, D, H, W)`` ones for the cube's (``g.group.spatial_dim == 3``).
    """
    if not isinstance(g, Element):
        raise TypeError("act needs a group element (a GroupElement or CubicElement, from "
                        f"group.elements()); got g={g!r}")
    check_rep(rep, "rep", "act")
    C.check_tensor(x, "x", "act", floating=False)
    if rep == "invariant":
        return x
    if x.dim() < 3:  # the fiber action reads dim 2 (act_fiber named its own dim=2 and the
        # already rotated shape)
        raise ValueError(f"act: rep={rep!r} moves the last {g.group.spatial_dim} dims of a map "
                         f"(B, C, H, W); got a {x.dim()}-D tensor of shape {tuple(x.shape)}; a "
                         "vector per sample (logits, an embedding) is rep='invariant'")
    ndim = 3 + g.group.spatial_dim
    if (rep in ("regular", "harmonic") or rep.startswith("quotient:")) and x.dim() != ndim:
        layout = "(B, C, F, H, W)" if ndim == 5 else "(B, C, F, D, H, W)"
        raise ValueError(f"rep={rep!r} of {g.group.name} expects a {ndim}-D {layout} tensor; "
                         f"got shape {tuple(x.shape)}")
    return act_fiber(act_spatial(x, g, mode=mode), g, rep)
