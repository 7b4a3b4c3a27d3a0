"""An orthonormal basis of the functions on a finite group (C_N / D_N, the cube's groups O,
O_h, C4z, D4z, T, and the icosahedral I) built from its irreps (the group's Fourier basis):
the parametrization of the group axis of regular-field filters.

Row ``k`` is a real function on the group, evaluated at the elements in their regular-fiber
order (``group.elements()``); the rows are orthonormal, ``F @ F.T = I``. They are, in order:
the constant; for D_N the sign of the flip; for each rotation order ``m = 1 .. floor((N-1)/2)``
the entries of the order-``m`` irrep's matrix ``rho_m(g)`` (2 functions for C_N: ``cos m t``,
``sin m t``; 4 for D_N); for even ``N`` the Nyquist functions ``(-1)^k`` (and ``(-1)^(k+s)``
for D_N). By Schur's orthogonality these are orthogonal; they are scaled to unit norm.

The cube's groups: ``"c4z"`` and ``"d4z"`` list their elements as the planar ``"c4"`` and
``"d4"`` (:mod:`equilayers.groups._cubic`), so they have those rows. ``"o"``: the entries of
its five irreps, each read from an element's matrix ``M`` on ``(x, y, z)``: the constant
(``A1``); the sign of the permutation of the axes, ``det |M|`` (``A2``); ``E = U^T |M| U``,
the permutation of the axes on the plane ``x + y + z = 0`` (``U``: an orthonormal basis of
it, 4 entries); ``M`` itself (``T1``, 9 entries); ``det |M| M`` (``T2``, 9 entries): 24
functions. ``"oh"``: those of ``o``, each read from the rotation ``det(M) M``, and the same
times ``det M`` (the parity): 48. ``"t"``: the constant, ``cos`` and ``sin`` of the turn by
0 or 120 degrees that ``E`` is on T (its complex pair of irreps, one real 2-d one), and ``M``
(9): 12; ``"th"``: those and the same times the parity. ``"ico"``: A, T1, T2, G, H
(:func:`~equilayers.groups._ico.ico_fourier_basis`); ``"ih"``: those and the same times the
parity.

A filter's group axis stored in this basis spans the same functions as the plain (per
element) layout, and an i.i.d. Gaussian weight has the same distribution in both (the basis is
orthonormal); what changes is the coordinates an optimizer such as Adam scales one by one:
escnn and e2cnn parametrize regular fields this way (through the irreps), and on rotated digits
the equilayers accuracy family measured it ahead of the per-element layout (docs/training.md,
"Parametrization").
"""

from __future__ import annotations

import math

import torch

from .. import _checks as C
from .._cpu_cache import cpu_cache
from ._cubic import CubicGroup
from ._group import Group, GroupLike
from ._ico import ICO_ROW_DIMS, IcosahedralGroup, ico_fourier_basis
from ._planar import PlanarGroup
from ._registry import get

__all__ = ["group_fourier_basis"]


@cpu_cache(maxsize=128)
def _basis(group: PlanarGroup) -> torch.Tensor:
    els = group.elements()
    n = group.n
    assert n is not None  # elements() raised for a continuous group
    k = torch.tensor([float(g.rotation) for g in els], dtype=torch.float64)
    s = torch.tensor([1.0 if g.reflection else 0.0 for g in els], dtype=torch.float64)
    t = 2 * math.pi * k / n
    rows = [torch.ones_like(t)]
    if group.reflections:
        rows.append(1 - 2 * s)  # the sign of the flip
    sign = 1 - 2 * s
    for m in range(1, (n - 1) // 2 + 1):
        c, si = torch.cos(m * t), torch.sin(m * t)
        if group.reflections:  # rho_m(r^k m^s) = R(m t) diag(1, -1)^s: its four entries
            rows += [c, -si * sign, si, c * sign]
        else:
            rows += [c, si]
    if n % 2 == 0:
        rows.append(torch.cos(math.pi * k))
        if group.reflections:
            rows.append(torch.cos(math.pi * k) * sign)
    basis = torch.stack(rows)
    return basis / basis.norm(dim=1, keepdim=True)


def _det3(m: torch.Tensor) -> torch.Tensor:
    """The determinants of a stack of 3 x 3 matrices of integers (here +-1 and 0) by the
    rule of Sarrus, exact (LAPACK's first call in a process cost a cold construction
    ~1 ms)."""
    a, b, c = m[:, 0], m[:, 1], m[:, 2]
    return (a * torch.linalg.cross(b, c)).sum(-1)


@cpu_cache(maxsize=8)
def _cubic_basis(group: CubicGroup) -> torch.Tensor:
    if group.name in ("c4z", "d4z"):
        return _basis(get("c4" if group.name == "c4z" else "d4"))
    u = torch.tensor([[1.0, 1.0], [-1.0, 1.0], [0.0, -2.0]], dtype=torch.float64)
    u = u / u.norm(dim=0)  # an orthonormal basis of the plane x + y + z = 0
    # every element at once (an element's column in a Python loop cost ~5 ms of a cold
    # GroupConv3d's construction): the (|G|, 3, 3) matrices, exact in float64
    m = torch.tensor([g.rows for g in group.elements()], dtype=torch.float64)
    det = _det3(m)[:, None, None]
    rot = m * det  # the rotation part (O_h: g = (-I)^s rot)
    perm = rot.abs()
    sign = _det3(perm)[:, None]  # A2
    # E: the axis permutation on the plane x + y + z = 0, one 2-D product per distinct
    # permutation (six; a batched product rounds differently, in the last bit)
    distinct, which = torch.unique(perm.flatten(1), dim=0, return_inverse=True)
    e = torch.stack([u.T @ p.view(3, 3) @ u for p in distinct])[which]
    ones = torch.ones(len(m), 1, dtype=torch.float64)
    if group.name in ("t", "th"):  # a turn by 0 or +-120 degrees there: E's two
        col = torch.cat([ones, e[:, :, 0], rot.flatten(1)], dim=1)
    else:
        col = torch.cat([ones, sign, e.flatten(1), rot.flatten(1), (sign[:, :, None] * rot
                                                                    ).flatten(1)], dim=1)
    cols = torch.cat([col, det[:, :, 0] * col], dim=1) if group.name in ("oh", "th") else col
    basis = cols.T.contiguous()
    return basis / basis.norm(dim=1, keepdim=True)


def _rows_of(grp: Group, what: str) -> torch.Tensor:
    """The cached float64 CPU basis of a group that has one (callers copy, never write)."""
    if isinstance(grp, CubicGroup):
        return _cubic_basis(grp)
    if isinstance(grp, IcosahedralGroup):
        return ico_fourier_basis(grp.has_reflections)
    return _basis(_planar_finite(grp, what))


def isotypic_row_blocks(group: GroupLike) -> list[int]:
    """The sizes of the consecutive blocks of rows of :func:`group_fourier_basis` that span
    one real irrep's isotypic part of the functions on the group (``d^2`` rows for an irrep of
    real type; 2 for a pair of complex ones, C_N's rotation orders and T's ``E``): ``"o"`` 1,
    1, 4, 9, 9; ``"oh"`` twice; ``"t"`` 1, 2, 9; ``"th"`` twice; ``"ico"`` 1, 9, 9, 16, 25,
    ``"ih"`` twice; C_N 1, then 2 per order, 1 (Nyquist); D_N 1, 1, then 4 per order, 1, 1.
    The sum over a block ``sum_r F[r, g] F[r, e]`` is that irrep's central idempotent, ``d /
    |G| chi(g)`` (:mod:`equilayers.functional._white_init`)."""
    grp = get(group)
    if isinstance(grp, IcosahedralGroup):
        return [1, 9, 9, 16, 25] * (2 if grp.has_reflections else 1)  # A, T1, T2, G, H
    if isinstance(grp, CubicGroup) and grp.name in ("o", "oh", "t", "th"):
        sizes = [1, 2, 9] if grp.name in ("t", "th") else [1, 1, 4, 9, 9]
        return sizes * (2 if grp.name in ("oh", "th") else 1)
    if isinstance(grp, CubicGroup):
        grp = get("c4" if grp.name == "c4z" else "d4")
    grp = _planar_finite(grp, "isotypic_row_blocks")
    n = int(grp.order) // (2 if grp.reflections else 1)
    sizes = [1, 1] if grp.reflections else [1]
    sizes += [4 if grp.reflections else 2] * ((n - 1) // 2)
    if n % 2 == 0:
        sizes += [1, 1] if grp.reflections else [1]
    return sizes


def fourier_row_dims(group: GroupLike) -> torch.Tensor:
    """The dimension of the irrep each row of :func:`group_fourier_basis` belongs to (1 for
    the constant, the sign and the Nyquist functions, 2 for the rows of a rotation order; for
    ``"o"`` 1, 1, 2 (E), 3 (T1, T2), ``"oh"`` the same twice; ``"t"`` 1, 2, 3, ``"th"``
    twice; ``"ico"`` 1, 3, 3, 4, 5, ``"ih"`` twice)."""
    grp = get(group)
    if isinstance(grp, IcosahedralGroup):
        return torch.tensor(ICO_ROW_DIMS * (2 if grp.has_reflections else 1),
                            dtype=torch.float64, device="cpu")
    if isinstance(grp, CubicGroup) and grp.name in ("t", "th"):
        dims = [1, 2, 2] + [3] * 9
        return torch.tensor(dims * (2 if grp.name == "th" else 1), dtype=torch.float64,
                            device="cpu")
    if isinstance(grp, CubicGroup) and grp.name in ("o", "oh"):
        dims = [1, 1] + [2] * 4 + [3] * 18
        return torch.tensor(dims * (2 if grp.name == "oh" else 1), dtype=torch.float64,
                            device="cpu")
    if isinstance(grp, CubicGroup):
        grp = get("c4" if grp.name == "c4z" else "d4")
    grp = _planar_finite(grp, "fourier_row_dims")
    n = int(grp.order) // (2 if grp.reflections else 1)
    dims = [1] + ([1] if grp.reflections else [])
    dims += [2] * ((4 if grp.reflections else 2) * ((n - 1) // 2))
    if n % 2 == 0:
        dims += [1] * (2 if grp.reflections else 1)
    return torch.tensor(dims, dtype=torch.float64, device="cpu")


def group_fourier_basis(group: GroupLike, *, dtype: torch.dtype = torch.float64,
                        device: torch.device | str | None = None) -> torch.Tensor:
    """The orthonormal ``(|G|, |G|)`` Fourier basis of a finite group (module docstring): row
    ``k`` is a function on the group, column ``h`` the element ``group.elements()[h]``.

    Example:
        >>> F = group_fourier_basis("d4")
        >>> torch.allclose(F @ F.T, torch.eye(8, dtype=torch.float64))
        True
    """
    C.check_float_dtype(dtype, "dtype", "group_fourier_basis", optional=False)
    return _rows_of(get(group), "group_fourier_basis").to(dtype=dtype, device=device,
                                                          copy=True)


def weight_basis(group: GroupLike, *, dtype: torch.dtype = torch.float64,
                 device: torch.device | str | None = None) -> torch.Tensor:
    """The orthonormal basis in which a regular group conv stores its weight's group axis:
    :func:`group_fourier_basis` for C_N/D_N and the cube's groups; for another finite group
    (a family registered with :func:`~equilayers.groups.register_group`, whose irreps are not
    written here) the identity, one slot per element (the same functions, in per-element
    coordinates)."""
    grp = get(group)
    if isinstance(grp, (CubicGroup, IcosahedralGroup)) or (isinstance(grp, PlanarGroup)
                                                           and grp.n is not None):
        return group_fourier_basis(grp, dtype=dtype, device=device)
    grp.require_finite("weight_basis", "regular fields need a finite group")
    return torch.eye(int(grp.order), dtype=dtype, device=device)


def _planar_finite(grp: Group, what: str) -> PlanarGroup:
    """``grp`` as a finite planar group (the families whose irreps are written here), or a
    ``ValueError`` that says which groups have a basis."""
    grp.require_finite(what, "a finite group 'cN' or 'dN' has a Fourier basis of |G| "
                       "functions")
    if not isinstance(grp, PlanarGroup) or grp.n is None:
        raise ValueError(f"{what}: group={grp.name!r} has no Fourier basis here (the planar "
                         "groups 'cN' and 'dN', the cube's 'o', 'oh', 'c4z', 'd4z', 't', 'th', "
                         "and 'ico', 'ih' do; a group registered with register_group has "
                         "none)")
    return grp
