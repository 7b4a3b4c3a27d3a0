"""Lifting and group convolutions on voxels for the icosahedral group I (``"ico"``,
:mod:`equilayers.groups._ico`): the expansion of :class:`~equilayers.nn.LiftingConv3d` /
:class:`~equilayers.nn.GroupConv3d` with ``group="ico"``.

Most of I's rotations leave the voxel grid, so a filter cannot be turned by permuting its
voxels (as the cube groups' are, :mod:`._gconv3d`). Here a filter is a continuous function,
``psi = sum_i c_i f_i`` in the harmonic basis (Gaussian shells times real spherical
harmonics, :mod:`._voxel_basis`), and slot ``g`` of the expanded filter samples the turned
function, ``(g . psi)(q) = sum_i c_i f_i(g^-1 q)``, on the grid
(:func:`~equilayers.functional._voxel_basis.rotated_voxel_basis`, ``(|G|, n, k^3)``):

    lifting:  W[o, g, c]    = sum_i w[o, c, i] R[g, i]
    group:    W[o, g, c, h] = sum_i w[o, c, g^-1 h, i] R[g, i]

(the regular action on the filter's slots, ``(g . psi)[h] = g . psi[g^-1 h]``, as the cube
groups'). One ``index_select`` of the coefficients through the ``(|G|, |G|)`` table of
``g^-1 h`` and one batched matmul over ``g``. For the 12 elements of the grid subgroup
``"t"`` the turned rows are exact permutations of the voxels, so the layer is exactly
equivariant under them (on grids where the windows tile); for the other 48 the sampled turned
filter is the turned continuous filter only at the samples, and the error is the sampling's
and the input's interpolation (approximate, as escnn's ``R3Conv`` on ``icoOnR3``).
"""

from __future__ import annotations

import torch

from .._cpu_cache import cpu_cache
from .._host import host_constants
from ..groups import Group
from ..groups._group import inverse_cayley_table
from ..groups._spherical import wigner_stack
from ._basis_settings import BasisSpec
from ._voxel_basis import _terms, rotated_voxel_basis
from ._white_init import _class_operator, _classes

__all__ = ["ico_slot_table", "ico_expand", "ico_white_map", "ico_energy_scale"]


def ico_slot_table(group: Group, device: torch.device | str | None = None) -> torch.Tensor:
    """``(|G|, |G|)`` int64: entry ``[g, h]`` is the slot of ``g^-1 h`` (the input slot of
    the unturned filter that slot ``h`` of ``g . psi`` reads)."""
    # a copy always: .to() of the shared cached table to its own device returned the table
    # itself, which a module then held as its buffer (an in-place write changed every conv)
    return inverse_cayley_table(group).to(device, copy=True)


def ico_expand(weight: torch.Tensor, rotated: torch.Tensor, table: torch.Tensor | None,
               kernel_size: int) -> torch.Tensor:
    """The expanded filter ``(C_out * |G|, C_in * F_in, k, k, k)`` of per-element
    coefficients ``weight`` (``(C_out, C_in, n)`` lifting, ``(C_out, C_in, |G|, n)`` group,
    ``table`` then :func:`ico_slot_table`) and the turned basis ``rotated`` ``(|G|, n,
    k^3)`` (module docstring)."""
    k = kernel_size
    n_g = rotated.shape[0]
    if table is None:  # lifting: (g, o * c, n) @ (g, n, k^3)
        c_out, c_in, n = weight.shape
        y = torch.matmul(weight.reshape(1, c_out * c_in, n), rotated)  # (g, o c, k^3)
        y = y.view(n_g, c_out, c_in, k ** 3).transpose(0, 1)
        return y.reshape(c_out * n_g, c_in, k, k, k)
    c_out, c_in, _, n = weight.shape
    picked = weight.index_select(2, table.reshape(-1))  # (o, c, g * h, n)
    picked = picked.view(c_out, c_in, n_g, n_g, n).permute(2, 0, 1, 3, 4)  # (g, o, c, h, n)
    y = torch.matmul(picked.reshape(n_g, -1, n), rotated)  # (g, o c h, k^3)
    y = y.view(n_g, c_out, c_in * n_g, k ** 3).transpose(0, 1)
    return y.reshape(c_out * n_g, c_in * n_g, k, k, k)


@cpu_cache(maxsize=16)
def ico_white_map(group: Group, kernel_size: int, spec: BasisSpec | None) -> torch.Tensor:
    """The ``(n, n)`` float64 CPU map of the init (as
    :func:`~equilayers.functional._white_init.white_map` for the cube groups): coefficients
    ``c`` drawn i.i.d. become ``c @ M``, whose filter's isotypic parts under I have the
    regular fiber's energy shares (``d_j^2`` over the irreps present), with the expected
    energy of the turned filters, averaged over the slots, that of the unturned basis's i.i.d.
    draw (so each slot's second moment is near 1, as the cube convs'). The action is exact
    on the continuous functions: each shell's ``Y_J`` block turns by the Wigner matrix
    ``D_J(g)`` (for ``J <= 2`` the blocks are I's irreps A, T1 and H, and the map rescales
    whole blocks). The identity where a block lost some of
    its functions to the grid (:func:`~equilayers.functional._voxel_basis.voxel_basis`
    leaves out functions that vanish or alias there), scaled alike. Callers copy, never
    write."""
    terms, _ = _terms(int(kernel_size), spec)
    n = len(terms)
    blocks: dict[tuple[float, float, int], list[int]] = {}
    for i, (radius, sigma, j, _, _) in enumerate(terms):
        blocks.setdefault((radius, sigma, j), []).append(i)
    if any(len(idx) != 2 * key[2] + 1 for key, idx in blocks.items()):
        return _unit_energy(torch.eye(n, dtype=torch.float64), group, kernel_size, spec)
    n_g = int(group.order)
    rotations = torch.stack([group.matrix(g) for g in group.elements()])
    wigner = {j: wigner_stack(j, rotations) for j in {key[2] for key in blocks}}
    mats = torch.zeros(n_g, n, n, dtype=torch.float64)  # in the unscaled coordinates a = c/norm
    for (_, _, j), idx in blocks.items():
        ix = torch.tensor(idx)
        mats[:, ix[:, None], ix[None, :]] = wigner[j]
    table = group.cayley_table
    eye_g = torch.eye(n_g, dtype=torch.float64)
    regular = torch.stack([eye_g[group.regular_permutation(g)] for g in group.elements()])
    classes = _classes(table)
    gen = torch.Generator().manual_seed(0)
    coef = torch.rand(len(classes), generator=gen, dtype=torch.float64) + 0.5
    ev_reg = torch.linalg.eigvalsh(_class_operator(regular, classes, coef))
    levels = torch.unique(ev_reg.round(decimals=8))
    ev_f, vec = torch.linalg.eigh(_class_operator(mats, classes, coef))
    parts, assigned = [], torch.zeros_like(ev_f, dtype=torch.bool)
    for level in levels:
        sel = (ev_f - level).abs() < 1e-6
        if sel.any():
            parts.append((vec[:, sel], float(((ev_reg - level).abs() < 1e-6).sum()) / n_g))
            assigned |= sel
    assert bool(assigned.all()), "an isotypic subspace of the filters not in the regular rep"
    total = sum(share for _, share in parts)
    proj = sum((share / total * n / part.shape[1]) ** 0.5 * (part @ part.T)
               for part, share in parts)
    assert isinstance(proj, torch.Tensor)
    norms = torch.tensor([t[4] for t in terms], dtype=torch.float64)
    return _unit_energy(proj / norms[:, None] * norms[None, :], group, kernel_size, spec)


def _unit_energy(m: torch.Tensor, group: Group, kernel_size: int, spec: BasisSpec | None
                 ) -> torch.Tensor:
    """``m`` scaled so that i.i.d. unit coefficients ``c`` give turned filters ``c @ m @
    R[g]`` of expected energy ``n`` averaged over the slots ``g`` (the unturned unit rows'
    energy: the sampled turned rows' norms vary, 0.7-1.4 for ``k = 3``)."""
    rotated = rotated_voxel_basis(group, int(kernel_size), spec)
    mr = torch.matmul(m, rotated)  # (|G|, n, k^3)
    return m * (m.shape[0] / mr.pow(2).sum((1, 2)).mean()).sqrt()


@host_constants()  # (a value read: real tensors, also under a FakeTensorMode)
def ico_energy_scale(group: Group, kernel_size: int, spec: BasisSpec | None) -> float:
    """The factor on i.i.d. coefficients that gives the turned filters, averaged over the
    slots, the unturned unit rows' expected energy (:func:`_unit_energy` of the identity)."""
    n = len(_terms(int(kernel_size), spec)[0])
    return float(_unit_energy(torch.eye(n, dtype=torch.float64), group, kernel_size,
                              spec)[0, 0])
