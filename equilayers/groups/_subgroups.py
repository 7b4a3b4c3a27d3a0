"""Subgroups of the plane groups, their cosets, and the slot tables for restriction and coset
pooling.

A subgroup ``H`` of ``G`` is one of our groups whose elements are elements of ``G`` with the
same rotation angle and the same flip (``m``: ``x -> -x``): ``C_M`` and ``D_M`` in ``D_N``
(``M | N``), ``C_M`` in ``C_N``, and any ``C_M``, ``D_M``, SO(2) in O(2) (``C_M``, SO(2) in
SO(2)). This is escnn's subgroup ``(None, M)`` (rotations) and ``(0, M)`` (the flip of axis 0
kept) of its ``D_N`` and ``M`` of its ``C_N``; ``D_1`` is ``{e, m}``, the flips.

Cosets of a finite subgroup ``K`` of a finite ``G = C_N / D_N`` (``K = C_M`` or ``D_M``,
``n = N / M``) are listed with the representatives

    t_j = r^(j mod n) m^(j // n),   j = 0 .. |G| / |K| - 1

(``j // n`` is 0 unless ``G`` has flips and ``K`` has none). For ``K = C_M`` (a normal
subgroup) the coset of ``t_j`` is the element ``j`` of the quotient group ``C_n`` / ``D_n`` in
its regular order; for ``K = D_M`` the ``n`` cosets ``r^j K`` are indexed by the rotation
``j mod n``. Right cosets ``K t_j`` serve restriction (a regular ``G`` field restricted to
``K`` is one regular ``K`` field per right coset), left cosets ``t_j K`` coset pooling (the
pooled field is a function on ``G / K``, on which ``G`` acts by ``u . t_j K = (u t_j) K``).

For groups of other families (the cube's), ``H`` is a subgroup of ``G`` when its matrices are
among ``G``'s, and ``t_j`` is the first element (in ``G``'s slot order) of each left coset
``t_j H``, which is also what the rule above gives for the planar groups. Restriction needs
right-coset representatives: those same ``t_j`` wherever they also represent the right cosets
``H t_j`` (for a normal ``H``, for every built-in pair, and for the planar rule), else the
first element of each right coset (:func:`right_coset_representatives`; a registered
subgroup that is not normal, such as the 4 rotations about the x axis in ``"o"``).
"""

from __future__ import annotations

import functools
import math

import torch

from .._cpu_cache import cpu_cache
from ._group import Element, Group, GroupLike
from ._planar import GroupElement, PlanarGroup
from ._registry import get
from ._so3 import SO3Group

__all__ = ["check_subgroup", "embed", "coset_representatives", "right_coset_representatives",
           "restriction_index",
           "coset_index", "coset_permutation", "quotient_size", "parse_quotient"]


def check_subgroup(group: GroupLike, subgroup: GroupLike, what: str = "subgroup"
                   ) -> tuple[Group, Group]:
    """``(G, H)``, or ``ValueError`` naming both when ``H`` is not a subgroup of ``G`` in our
    embedding (same angles, same flip); a ``subgroup`` that is no group at all raises
    :func:`get`'s error, naming the argument."""
    grp = get(group, "group", what)
    sub = get(subgroup, "subgroup", what)
    if not (isinstance(grp, PlanarGroup) and isinstance(sub, PlanarGroup)):
        return _check_by_matrix(grp, sub, what)
    ok = not (sub.reflections and not grp.reflections)
    if grp.n is not None:  # finite
        ok = ok and sub.n is not None and grp.n % sub.n == 0
    if not ok:
        hint = ("a dihedral subgroup needs a dihedral group" if sub.reflections
                and not grp.reflections else
                f"the subgroups of {grp.name} here are {_planar_subgroups(grp)}"
                if grp.n is not None else "")
        raise ValueError(f"{what}: {sub.name} is not a subgroup of {grp.name} ({hint}; "
                         f"subgroups here keep the angles and the flip x -> -x)")
    return grp, sub


def _planar_subgroups(grp: PlanarGroup) -> str:
    """``"c1, c2, c4, d1, d2, d4"`` for ``d4``: the names :func:`check_subgroup` accepts."""
    assert grp.n is not None
    orders = [m for m in range(1, grp.n + 1) if grp.n % m == 0]
    kinds = "cd" if grp.reflections else "c"
    return ", ".join(f"{k}{m}" for k in kinds for m in orders)


def _check_by_matrix(grp: Group, sub: Group, what: str) -> tuple[Group, Group]:
    """Groups of other families (the cube's): ``sub`` is a subgroup of ``grp`` when both act
    on the same space and every matrix of ``sub`` is one of ``grp``'s; in SO(2)/O(2) and
    SO(3)/O(3) every finite group of orthogonal matrices (of det 1 without the flips), and
    SO(3) in O(3)."""
    if grp.spatial_dim != sub.spatial_dim:
        ok = False
    elif isinstance(grp, (SO3Group, PlanarGroup)) and not grp.is_finite:
        ok = _in_continuous(grp, sub)
    else:
        ok = grp.is_finite and sub.is_finite and _matrices(sub) <= _matrices(grp)
    if not ok:
        raise ValueError(f"{what}: {sub.name} is not a subgroup of {grp.name} (subgroups of "
                         f"{grp.name} have the matrices of some of its elements, on the same "
                         f"{grp.spatial_dim} spatial dims)")
    return grp, sub


def _in_continuous(grp: Group, sub: Group) -> bool:
    """Whether ``sub`` (same spatial dims) is in the continuous ``grp`` (SO(2)/O(2) or
    SO(3)/O(3)): itself, SO(3) in O(3), or a finite group of orthogonal matrices, rotations
    only unless ``grp`` has the flips."""
    if sub == grp:
        return True
    if not sub.is_finite:  # (SO(2) in O(2) is the planar rule's)
        return (isinstance(grp, SO3Group) and isinstance(sub, SO3Group)
                and (grp.has_reflections or not sub.has_reflections))
    eye = torch.eye(grp.spatial_dim, dtype=torch.float64)
    for h in sub.elements():
        m = sub.matrix(h).to(torch.float64)
        if not torch.allclose(m @ m.T, eye, rtol=0, atol=1e-9):
            return False
        if not grp.has_reflections and float(torch.linalg.det(m)) < 0:
            return False
    return True


@functools.lru_cache(maxsize=64)
def _matrices(group: Group) -> frozenset:
    return frozenset(_rows(group, g) for g in group.elements())


def _rows(group: Group, g) -> tuple:
    return tuple(tuple(v) for v in group.matrix(g).tolist())


def embed(h: Element, group: GroupLike) -> Element:
    """The element of ``group`` that the subgroup element ``h`` is (same angle, same flip;
    for groups of other families, the same matrix)."""
    grp = get(group)
    check_subgroup(grp, h.group, "embed")
    if isinstance(grp, SO3Group):
        return grp.element(h.group.matrix(h))
    if isinstance(grp, PlanarGroup) and not grp.is_finite and not isinstance(h, GroupElement):
        return _planar_element_of(grp, h.group.matrix(h))
    if not (isinstance(grp, PlanarGroup) and isinstance(h, GroupElement)):
        # (a registered group inside a planar one, such as a diagonal flip in d4, is checked by
        # its matrices, finite groups only: it is found by them too)
        rows = _rows(h.group, h)
        return next(g for g in grp.elements() if _rows(grp, g) == rows)
    if grp.n is None:
        return grp.element(h.angle, h.reflection)
    if h.group.n is None:  # pragma: no cover - excluded by check_subgroup
        raise ValueError(f"{h.group.name} is not a subgroup of {grp.name}")
    return grp.element(int(h.rotation) * (grp.n // h.group.n), h.reflection)


def _planar_element_of(grp: PlanarGroup, matrix: torch.Tensor) -> GroupElement:
    """The element of SO(2)/O(2) with the orthogonal ``matrix`` ``R(angle) diag(-1, 1)^s``
    (:meth:`PlanarGroup.matrix`; :func:`check_subgroup` checked it is one of ``grp``'s)."""
    m = matrix.to(torch.float64)
    reflection = float(torch.linalg.det(m)) < 0
    angle = math.atan2(-float(m[0, 1]), float(m[1, 1]))
    return grp.element(angle, reflection)


def quotient_size(group: GroupLike, subgroup: GroupLike) -> int:
    """``|G| / |K|``, the number of cosets (finite groups)."""
    grp, sub = check_subgroup(group, subgroup)
    if not grp.is_finite:
        raise ValueError(f"{grp.name} is continuous: its cosets are not finitely many slots; "
                         "use a finite group (cN, dN)")
    return int(grp.order) // int(sub.order)


def coset_representatives(group: GroupLike, subgroup: GroupLike) -> list[Element]:
    """``t_j = r^(j mod n) m^(j // n)`` (see the module docstring), ``j < |G| / |K|``."""
    grp, sub = check_subgroup(group, subgroup)
    count = quotient_size(grp, sub)
    if not (isinstance(grp, PlanarGroup) and isinstance(sub, PlanarGroup)):
        return _first_of_each_coset(grp, sub, left=True)
    # check_subgroup and quotient_size: sub is a finite planar subgroup of a finite grp
    assert grp.n is not None and sub.n is not None
    n = grp.n // sub.n
    return [grp.element(j % n, bool(j // n)) for j in range(count)]


def right_coset_representatives(group: GroupLike, subgroup: GroupLike) -> list[Element]:
    """``t_j`` with the right cosets ``H t_j`` all different (restriction's): the
    :func:`coset_representatives` where they represent the right cosets too (always for the
    planar rule, a normal ``H`` and every built-in pair, whose tables they keep), else the
    first element (in ``G``'s slot order) of each right coset."""
    grp, sub = check_subgroup(group, subgroup)
    reps = coset_representatives(grp, sub)
    members = [embed(h, grp) for h in sub.elements()]
    if len({frozenset(h * t for h in members) for t in reps}) == len(reps):
        return reps
    return _first_of_each_coset(grp, sub, left=False)


def _first_of_each_coset(grp: Group, sub: Group, *, left: bool) -> list[Element]:
    """The first element (in ``grp``'s slot order) of each left coset ``t H`` (``left``) or
    right coset ``H t``."""
    members = [embed(h, grp) for h in sub.elements()]
    reps: list[Element] = []
    seen: set[Element] = set()
    for t in grp.elements():
        if t not in seen:
            reps.append(t)
            seen.update((t * h) if left else (h * t) for h in members)
    return reps


@cpu_cache(maxsize=256)
def _tables(grp: Group, sub: Group) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    reps = coset_representatives(grp, sub)
    els = [embed(h, grp) for h in sub.elements()]
    # field j, slot h: h t_j (t_j a right-coset representative)
    right = [(h * t).index for t in right_coset_representatives(grp, sub) for h in els]
    left = [(t * h).index for t in reps for h in els]  # coset j, member h: t_j h
    for name, table in (("restriction", right), ("coset", left)):
        if sorted(table) != list(range(int(grp.order))):  # an internal error, not the user's
            raise RuntimeError(f"the {name} index of {sub.name} in {grp.name} is not a "
                               f"permutation of the {int(grp.order)} slots: {table}; please "
                               "report this (the groups' compose or elements disagree)")
    label = [0] * int(grp.order)
    for j, t in enumerate(reps):
        for h in els:
            label[(t * h).index] = j
    return (torch.tensor(right, dtype=torch.long, device="cpu"),
            torch.tensor(left, dtype=torch.long, device="cpu"),
            torch.tensor(label, dtype=torch.long, device="cpu"))


def restriction_index(group: GroupLike, subgroup: GroupLike) -> torch.Tensor:
    """``idx`` (``(|G|,)``, int64): slot ``j * |H| + i`` of the restricted fibers is input slot
    ``idx[j * |H| + i]`` = the slot of ``h_i t_j`` (``h_i`` the ``i``-th element of ``H`` in
    its regular order, ``t_j`` the :func:`right_coset_representatives`), so ``x[:, :, idx]``
    viewed as ``(|G| / |H|, |H|)`` holds one regular ``H`` field per right coset ``H t_j``: a
    permutation of the slots."""
    grp, sub = check_subgroup(group, subgroup)
    quotient_size(grp, sub)
    return _tables(grp, sub)[0].clone()


def coset_index(group: GroupLike, subgroup: GroupLike) -> torch.Tensor:
    """``idx`` (``(|G|,)``, int64): ``x[:, :, idx]`` viewed as ``(|G| / |K|, |K|)`` lists the
    members ``t_j k`` of each left coset ``t_j K`` (``k`` in ``K``'s regular order)."""
    grp, sub = check_subgroup(group, subgroup)
    quotient_size(grp, sub)
    return _tables(grp, sub)[1].clone()


def coset_permutation(g: Element, subgroup: GroupLike) -> torch.Tensor:
    """``perm`` with ``(g . f)[j] = f[perm[j]]`` for a function ``f`` on the left cosets of
    ``subgroup`` in ``g``'s group: ``perm[j]`` = the coset of ``g^-1 t_j``."""
    grp, sub = check_subgroup(g.group, subgroup)
    quotient_size(grp, sub)
    label = _tables(grp, sub)[2]
    gi = g.inverse()
    return torch.stack([label[(gi * t).index] for t in coset_representatives(grp, sub)])


def parse_quotient(rep: str) -> Group | None:
    """The subgroup ``K`` of a ``"quotient:K"`` rep name (e.g. ``"quotient:d1"``), else None."""
    if not isinstance(rep, str) or not rep.startswith("quotient:"):
        return None
    return get(rep.split(":", 1)[1])
