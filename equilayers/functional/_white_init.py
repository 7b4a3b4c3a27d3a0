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
coefficients shrink by about 0.44, the factor escnn's init gives them. The subspaces are read
from the group's Fourier basis, whose rows are the irreps' entries: the rows of one irrep give
its central idempotent, a function on the group whose sum of permutations ``sum_g c(g) P_g``
projects the filters onto that irrep's isotypic subspace (:func:`white_map`); the number of
rows over ``|G|`` is the share. The map is a linear function of the group, the kernel size and
the basis only, cached. (The icosahedral groups' map, :mod:`._ico_conv`, still finds the
subspaces as the eigenspaces of a generic combination of class sums, :func:`_class_operator`.)

A group conv's response to a slot-constant input is ``sum_h psi[h]``, the weight's constant
Fourier row (times ``sqrt(|G|)``): it is drawn white the same way, and the other rows (whose
output is already white on i.i.d. slots) are left as drawn.
"""

from __future__ import annotations

import torch

from .._cpu_cache import cpu_cache
from ..groups import Group, group_fourier_basis
from ..groups._fourier_basis import isotypic_row_blocks
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


def _idempotents(group: Group) -> tuple[torch.Tensor, torch.Tensor]:
    """``(c, share)``: ``c[j, g]``, the central idempotent of the group's ``j``-th real irrep
    as a function on the group (``d_j / |G| chi_j(g)``, summed over a complex pair), from the
    Fourier basis's rows of that irrep, ``sum_r F[r, g] F[r, e]`` (the identity is slot 0);
    ``share[j]``, that irrep's share of the regular fiber, its number of rows over ``|G|``."""
    rows = group_fourier_basis(group)
    sizes = isotypic_row_blocks(group)
    c = torch.stack([part.T @ part[:, 0] for part in rows.split(sizes)])
    return c, torch.tensor(sizes, dtype=torch.float64) / int(group.order)


@cpu_cache(maxsize=64)
def white_map(group: Group, kernel_size: int, spec: BasisSpec | None, harmonic: bool
              ) -> torch.Tensor:
    """The ``(n, n)`` float64 CPU matrix ``M`` (module docstring): coefficients ``c`` of a
    ``k x k x k`` filter (``n = k^3`` voxels, or ``n`` rows of the harmonic basis of ``spec``)
    drawn i.i.d. become ``c @ M``, whose filter's isotypic parts have the regular fiber's
    energy shares, with the same expected total energy. Callers copy, never write.

    On the voxels the isotypic projector of irrep ``j`` is ``P_j = sum_g c_j(g) P_g``
    (:func:`_idempotents`; ``P_g`` the permutation that moves a filter by ``g``), of rank
    ``dim_j = sum_g c_j(g) chi(g)`` with ``chi(g)`` the trace of ``g`` on the filter space
    (the voxels it fixes; for the harmonic basis the trace of ``P_g`` times the projector onto
    the basis' span). The map is ``sum_j a_j P_j = sum_g w(g) P_g``, ``a_j = sqrt(share_j /
    total * n / dim_j)`` over the irreps the filter space holds: one scatter of the
    permutations, no eigendecomposition (the eigenspaces of a class operator, the form before,
    cost a cold construction 2-5 ms; tests/test_fourier_weights3d.py compares the two)."""
    k = int(kernel_size)
    n_g, n_v = int(group.order), k ** 3
    # the filter's action, from the gather table the convs use: (g . psi)[p] = psi[t[g, p]]
    perm = G3.expansion_table(group, k, lifting=True).reshape(n_g, n_v)
    voxel = torch.arange(n_v)
    if harmonic:
        basis = voxel_basis(k, spec)
        inverse = torch.linalg.pinv(basis)
        chi = (inverse @ basis)[perm, voxel].sum(1)  # trace of P_g on the basis' span
    else:
        chi = (perm == voxel).sum(1).to(torch.float64)  # the voxels g fixes
    c, share = _idempotents(group)
    dims = c @ chi
    assert bool(((dims - dims.round()).abs() < _TOL).all()), "a non-integer isotypic rank"
    held = dims.round() > 0
    n = basis.shape[0] if harmonic else n_v
    a = torch.zeros_like(dims)
    a[held] = (share[held] / share[held].sum() * n / dims[held].round()).sqrt()
    weights = a @ c  # w(g)
    m = torch.zeros(n_v, n_v, dtype=torch.float64)
    m.index_put_((voxel.repeat(n_g), perm.reshape(-1)), weights.repeat_interleave(n_v),
                 accumulate=True)  # sum_g w(g) P_g, (P_g)[p, t[g, p]] = 1
    if not harmonic:
        return m  # (its expected energy is the identity's: sum_j a_j^2 dim_j = n)
    m = basis @ m @ inverse  # coefficients -> the same
    # the same expected energy of the filter c @ basis for i.i.d. c
    before = (basis @ basis.T).trace()
    after = (m @ basis @ basis.T @ m.T).trace()
    return m * (before / after).sqrt()
