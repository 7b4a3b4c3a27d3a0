"""Steerable filters on voxels for the planar groups turning every depth slice: harmonic
fields of C_N, D_N, SO(2) and O(2) acting about the depth axis (escnn's ``rot2dOnR3`` and
``conicalOnR3`` groups; anisotropic scans, where the depth is never moved).

A planar group acts on a volume ``(B, C, [F,] D, H, W)`` by moving ``(H, W)`` of every depth
slice (:class:`~equilayers.groups.FieldType`: a volume of a planar group turns about its depth
axis) and on a harmonic fiber ``[a_0, c_1, s_1, ..., c_M, s_M]`` as on images. Its elements
fix the depth offset ``z`` of a filter tap, so a filter ``K(x, y, z)`` obeys the kernel
constraint ``K(g q, z) = rho_out(g) K(q, z) rho_in(g)^-1`` exactly when every depth slice
``K(., ., z)`` obeys the planar one: the basis is the planar steerable basis
(:func:`~equilayers.functional.steerable_basis`, its rings, widths, caps and irrep scales) on
each of the ``k`` depth offsets, element ``j * k + z`` being planar element ``j`` on depth
slice ``z`` alone. Exact where the planar basis is (the quarter turns and the flip, on the
grid), and off the grid exactly as approximate as the planar convs, slice by slice.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .._cpu_cache import cpu_cache
from ..groups import Group, GroupLike, get
from ..groups._planar import PlanarGroup
from ..groups._so3 import SO3Group
from . import _steerable as S
from ._basis_settings import BasisSpec

__all__: list[str] = []


def check_steerable3d_group(group: GroupLike, what: str) -> SO3Group | PlanarGroup:
    """``"so3"``/``"o3"`` or a planar group (about the depth axis), or an error naming
    ``group`` and the groups steerable 3-D filters take."""
    took = ("'so3' or 'o3', or a planar group ('so2', 'o2', 'cN', 'dN': rotations about the "
            "depth axis)")
    try:
        grp = get(group)
    except (TypeError, ValueError) as e:
        raise type(e)(f"{what}: group={group!r} is not a group ({e}); steerable 3-D filters "
                      f"take {took}") from None
    if not isinstance(grp, (SO3Group, PlanarGroup)):
        raise ValueError(f"{what}: group={grp.name!r} has no harmonic fields; steerable 3-D "
                         f"filters take {took} (use GroupConv3d/LiftingConv3d for the cube's "
                         "and the icosahedral groups)")
    return grp


def planar_init_std(group: Group, in_rep: str, k: int, m_in: int, m_out: int,
                    spec: BasisSpec | None, fan_in: int, gain2: float,
                    out_rep: str = "harmonic") -> torch.Tensor:
    """The init std of each element of the planar harmonic-output basis (``(num_basis,)``,
    float64 CPU) for ``fan_in`` input fields (times the depth slices in 3-D) and ``gain^2``.
    Each unit-norm element lies in one block (input order or slot ``n`` -> output order
    ``m``) and puts energy ``1/F_m`` on each of ``m``'s ``F_m`` slots; a block of ``c_nm``
    elements, drawn with ``Var = gain^2 F_m / (fan_in N_m c_nm)``, adds ``gain^2 / N_m`` to
    order ``m``, where ``N_m`` counts the input orders that reach ``m``: every order gets
    ``gain^2``, each input order an equal share (escnn's generalized He init balances its
    irreps the same way). The layers' elements have norm ``sqrt(d_out)``
    (:func:`~equilayers.functional.steerable_basis`), divided out here."""
    basis = S._cached(group, in_rep, out_rep, k, m_in, m_out, spec)  # (nb, F_out, F_in, k, k)

    def order(slot: torch.Tensor) -> torch.Tensor:
        return (slot + 1) // 2
    energy = basis.square().sum(dim=(3, 4))  # (nb, F_out, F_in)
    m = order(energy.sum(2).argmax(1))
    n = order(energy.sum(1).argmax(1))
    f_m = torch.where(m == 0, 1.0, 2.0).double()
    block = m * (n.max() + 1) + n
    c_nm = torch.bincount(block)[block].double()
    n_m = torch.tensor([len(set(n[m == mm].tolist())) for mm in m.tolist()],
                       dtype=torch.float64)
    scale = S._irrep_scale(group, in_rep, out_rep, k, m_in, m_out, spec)
    return (gain2 * f_m / (fan_in * n_m * c_nm)).sqrt() / scale


class AxialBasis(NamedTuple):
    """The basis of a planar group's harmonic fields on voxels (:func:`axial_basis`).

    ``packed``: the planar basis ``(n, F_out, F_in, k, k)`` (the layers' scale, float64 CPU),
    shared by the ``k`` depth slices (the layers keep it flat: a 1-D buffer, which
    ``.to(memory_format=...)`` leaves alone); the 3-D basis has ``n * k`` elements, ``j * k +
    z`` being ``packed[j]`` on depth slice ``z``. ``l_out``: the output order of each 3-D element;
    the rest: what it was built from."""

    packed: torch.Tensor
    l_out: torch.Tensor
    group: PlanarGroup
    in_rep: str
    orders: tuple[int, int]
    spec: BasisSpec | None

    def init_std(self, c_in: int, gain2: float) -> torch.Tensor:
        """Each 3-D element's init std (``(n * k,)``) for ``c_in`` input fields: the planar
        rule (:func:`planar_init_std`) with a fan-in ``k`` times larger (the slices add)."""
        k = self.packed.shape[-1]
        return planar_init_std(self.group, self.in_rep, k, *self.orders, self.spec, c_in * k,
                               gain2).repeat_interleave(k)

    def dense(self, dtype: torch.dtype, device: torch.device | str | None) -> torch.Tensor:
        """The dense 3-D basis ``(n * k, F_out, F_in, k, k, k)``."""
        n, f_out, f_in, k, _ = self.packed.shape
        out = torch.zeros(n, k, f_out, f_in, k, k, k, dtype=dtype,
                          device="cpu" if device is None else device)
        for z in range(k):
            out[:, z, :, :, z] = self.packed.to(out)
        return out.flatten(0, 1)


@cpu_cache(maxsize=64)
def axial_basis(group: PlanarGroup, m_in: int | None, m_out: int, k: int,
                spec: BasisSpec | None) -> AxialBasis:
    """The planar group's basis from volumes (``m_in=None``) or harmonic fields of orders ``0
    .. m_in`` to orders ``0 .. m_out`` on ``k x k x k`` voxels (:class:`AxialBasis`). Computed
    once per arguments; callers copy, never write."""
    in_rep = "trivial" if m_in is None else "harmonic"
    m = m_in or 0
    scale = S._irrep_scale(group, in_rep, "harmonic", k, m, m_out, spec)
    planar = S._cached(group, in_rep, "harmonic", k, m, m_out, spec) * scale.view(-1, 1, 1, 1, 1)
    energy = planar.square().sum(dim=(2, 3, 4))  # (n, F_out)
    orders = (energy.argmax(1) + 1) // 2
    return AxialBasis(planar, orders.repeat_interleave(k), group, in_rep, (m, m_out), spec)


def expand_axial(weight: torch.Tensor, packed: torch.Tensor, f_out: int, f_in: int, k: int
                 ) -> torch.Tensor:
    """``(C_out, C_in // groups, n * k)`` with the planar basis ``packed`` (:class:`AxialBasis`,
    flat or not, any dtype and device) -> the dense ``F.conv3d`` filter ``(C_out * F_out,
    C_in // groups * F_in, k, k, k)``, fields major, in one matmul: coefficient ``j * k + z``
    scales planar element ``j`` on depth slice ``z``."""
    c_out, c_in, nbk = weight.shape
    n = nbk // k
    w = weight.reshape(c_out, c_in, n, k).transpose(2, 3).reshape(c_out * c_in * k, n)
    filt = (w @ packed.reshape(n, -1)).view(c_out, c_in, k, f_out, f_in, k, k)
    return filt.permute(0, 3, 1, 4, 2, 5, 6).reshape(c_out * f_out, c_in * f_in, k, k, k)
