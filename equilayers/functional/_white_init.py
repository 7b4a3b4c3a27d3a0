"""The init of the 3-D group convs' response to a slot-constant input: drawn "white" over the
isotypic components of the output's regular fiber.

Why. A filter ``psi`` of a lifting conv gives the output slots ``g . psi``; its part that the
group leaves alone (the centre voxel, each shell's average) gives every slot the same value,
which is the output's invariant part (the constant function on the fiber). Drawn i.i.d. in the
voxel or harmonic basis, that part holds far more than its share: 4 of 27 voxel dimensions and
2 of 10 harmonic ones are invariant, where a regular field of i.i.d. slots holds ``1/|G|`` of
its energy there (``1/24`` for ``"o"``). On smooth inputs (occupancy, blurred and
post-ReLU maps, whose slot-constant part is large) the invariant response dominates more: at
init the measured invariant share of the 3-D U-Net's conv outputs was 0.3-0.9 (escnn's
U-Net of the same shape: 0.06-0.7), and the O U-Nets of ``benchmarks/bench_segmentation3d.py``
were stuck predicting background at 300 steps where escnn's were not (docs/training.md,
"3-D init and parametrization"). escnn's ``generalized_he_init`` balances its basis over the
output's irreps and so avoids it.

What. The component of the filter in each isotypic subspace of the filter space (the sum of
the copies of one irrep of the group acting on filters) is rescaled so that, for coefficients
drawn i.i.d., its expected energy share is that irrep's share of the regular representation,
``d_j^2 / |G|`` (renormalized over the irreps the filter space holds), with the expected
total energy unchanged; for ``"o"`` and the harmonic ``k = 3`` basis the two invariant
coefficients shrink by about 0.44, the factor escnn's init gives them. The subspaces are found
without character tables: a generic combination of the group's class sums (symmetric, as
every element of the cube groups is conjugate to its inverse) acts on each isotypic subspace
as one scalar, the same scalar as on the regular representation's subspace of that irrep,
whose dimension ``d_j^2`` gives the share. The map is a linear function of the group, the
kernel size and the basis only, cached.

A group conv's response to a slot-constant input is ``sum_h psi[h]``, the weight's constant
Fourier row (times ``sqrt(|G|)``): it is drawn white the same way, and the other rows (whose
output is already white on i.i.d. slots) are left as drawn.
"""

from __future__ import annotations

import torch

from .._cpu_cache import cpu_cache
from ..groups import Group
from . import _gconv3d as G3
from ._basis_settings import BasisSpec
from ._voxel_basis import voxel_basis

__all__ = ["white_map"]

_TOL = 1e-6


def _classes(table: torch.Tensor) -> list[list[int]]:
    """The conjugacy classes (slot lists) from a Cayley table."""
    n = table.shape[0]
    inverse = (table == 0).int().argmax(dim=1)  # slot 0 is the identity
    # conj[i][h] = the slot of h i h^-1, every pair in one gather (not |G|^2 Python reads)
    conj = table[table, inverse[:, None].expand(n, n)].T.tolist()
    seen: set[int] = set()
    out = []
    for i in range(n):
        if i in seen:
            continue
        cls = sorted(set(conj[i]))
        seen.update(cls)
        out.append(cls)
    return out


def _class_operator(mats: torch.Tensor, classes: list[list[int]], coef: torch.Tensor
                    ) -> torch.Tensor:
    """``sum_c coef[c] sum_{g in c} mats[g]``, symmetrized."""
    z = sum(coef[c] * mats[cls].sum(0) for c, cls in enumerate(classes))
    assert isinstance(z, torch.Tensor)
    return z + z.T


def _perm_class_operator(perm: torch.Tensor, classes: list[list[int]], coef: torch.Tensor
                         ) -> torch.Tensor:
    """:func:`_class_operator` of the permutation matrices ``P_g`` of the rows of ``perm``
    (``(P_g)[p, perm[g, p]] = 1``), each class's sum counted by one scatter: the dense
    ``(|G|, n, n)`` stack of the matrices cost a cold construction ~10 ms at k = 5; the
    counts are the same exact integers, summed in the same order (the same matrix, bit for
    bit)."""
    n = perm.shape[1]
    z: torch.Tensor | int = 0
    for c, cls in enumerate(classes):
        counts = torch.zeros(n, n, dtype=torch.float64)
        cols = perm[cls].reshape(-1)
        rows = torch.arange(n).repeat(len(cls))
        counts.index_put_((rows, cols), torch.ones(len(cols), dtype=torch.float64),
                          accumulate=True)
        z = z + coef[c] * counts
    assert isinstance(z, torch.Tensor)
    return z + z.T


@cpu_cache(maxsize=64)
def white_map(group: Group, kernel_size: int, spec: BasisSpec | None, harmonic: bool
              ) -> torch.Tensor:
    """The ``(n, n)`` float64 CPU matrix ``M`` (module docstring): coefficients ``c`` of a
    ``k x k x k`` filter (``n = k^3`` voxels, or ``n`` rows of the harmonic basis of ``spec``)
    drawn i.i.d. become ``c @ M``, whose filter's isotypic parts have the regular fiber's
    energy shares, with the same expected total energy. Callers copy, never write."""
    k = int(kernel_size)
    n_g = int(group.order)
    table = group.cayley_table
    # the filter's action, from the gather table the convs use: (g . psi)[p] = psi[t[g, p]]
    perm = G3.expansion_table(group, k, lifting=True).reshape(n_g, k ** 3)
    eye = torch.eye(k ** 3, dtype=torch.float64)
    # the regular action on a fiber, per element: (g . f)[h] = f[g^-1 h] (regular_permutation)
    regular = table[(table == 0).int().argmax(dim=1)]
    basis = voxel_basis(k, spec) if harmonic else eye
    # an orthonormal basis of the filter space, (k^3, n) (the voxel basis is one already: the
    # QR of the identity, and its pseudo-inverse below, are the identity, exactly)
    q = torch.linalg.qr(basis.T)[0] if harmonic else eye
    classes = _classes(table)
    gen = torch.Generator().manual_seed(0)
    for _ in range(8):  # a combination that tells every irrep apart (the first one does)
        coef = torch.rand(len(classes), generator=gen, dtype=torch.float64) + 0.5
        ev_reg = torch.linalg.eigvalsh(_perm_class_operator(regular, classes, coef))
        levels = torch.unique(ev_reg.round(decimals=8))
        if levels.numel() < 2 or torch.diff(levels).min() > 1e-3:
            break
    ev_f, vec = torch.linalg.eigh(q.T @ _perm_class_operator(perm, classes, coef) @ q)
    parts, assigned = [], torch.zeros_like(ev_f, dtype=torch.bool)
    for level in levels:
        share = float(((ev_reg - level).abs() < _TOL).sum()) / n_g
        sel = (ev_f - level).abs() < _TOL
        if sel.any():
            parts.append((q @ vec[:, sel], share))
            assigned |= sel
    assert bool(assigned.all()), "an isotypic subspace of the filters not in the regular rep"
    total = sum(share for _, share in parts)
    n = basis.shape[0]
    proj = sum((share / total * n / part.shape[1]) ** 0.5 * (part @ part.T)
               for part, share in parts)
    assert isinstance(proj, torch.Tensor)
    m = basis @ proj @ torch.linalg.pinv(basis) if harmonic else proj  # coefficients -> same
    # the same expected energy of the filter c @ basis for i.i.d. c
    before = (basis @ basis.T).trace()
    after = (m @ basis @ basis.T @ m.T).trace()
    return m * (before / after).sqrt()
