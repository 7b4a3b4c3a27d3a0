"""Steerable filters on voxels for the planar groups turning every depth slice: harmonic
fields of C_N, D_N, SO(2) and O(2) acting about the depth axis (escnn's ``rot2dOnR3`` and
``conicalOnR3`` groups; anisotropic scans, where the depth is never moved).

A planar group acts on a volume ``(B, C, [F,] D, H, W)`` by moving ``(H, W)`` of every depth
slice (:class:`~equilayers.groups.FieldType`: a volume of a planar group turns about its depth
axis) and on a harmonic fiber ``[a_0, c_1, s_1, ..., c_M, s_M]`` as on images. Its elements
fix the depth offset ``z`` of a filter tap and, in spherical coordinates, the radius and the
polar angle ``theta`` from the depth axis, so a filter obeys the kernel constraint ``K(g q) =
rho_out(g) K(q) rho_in(g)^-1`` when its dependence on the azimuth ``phi`` is the planar
basis's. Two bases do this:

- ``"shells"`` (:func:`shell_basis`, the layers' default): on Gaussian shells, the planar
  angular terms ``e^{i f phi}`` times ``P_J^|f|(cos theta)`` for ``|f| <= J <= cap``: the
  spherical harmonics ``Y_J^{+-f}``, i.e. the SO(3) basis restricted to the turns about
  ``z``, which is escnn's ``R3Conv`` space for these fields (the same number of elements,
  and escnn's filters fit to float rounding: ``tests/test_escnn_axial.py``);
- ``"slices"`` (:func:`axial_basis`): the planar steerable basis
  (:func:`~equilayers.functional.steerable_basis`, its rings, widths, caps and irrep scales)
  on each of the ``k`` depth offsets, element ``j * k + z`` being planar element ``j`` on depth
  slice ``z`` alone.

Both are exact where the planar basis is (the quarter turns and the flip, on the grid); off
the grid both are approximate (measured in :class:`~equilayers.nn.SteerableConv3d`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from .. import _checks as C
from .._cpu_cache import cpu_cache
from .._host import host_constants
from ..groups import Group, GroupLike, get
from ..groups._planar import PlanarGroup
from ..groups._so3 import SO3Group
from . import _steerable as S
from ._basis_settings import VANISHING, BasisSpec, default_spec

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


BASES = ("shells", "slices")


def check_axial_kernel(kernel_size, what: str) -> tuple[int, int]:
    """``(k_d, k)`` of a planar group's 3-D kernel: ``k`` (a cubic ``k x k x k``), or ``(k_d,
    k, k)`` with any depth ``k_d >= 1`` (the depth is never turned); the turned plane's filter
    turns about its centre pixel (odd ``k``) or the point between its four middle ones."""
    fix = "k, or (k_d, k, k) (any depth k_d >= 1)"
    if isinstance(kernel_size, (tuple, list)):
        if len(kernel_size) != 3 or kernel_size[1] != kernel_size[2]:
            raise ValueError(f"{what}: kernel_size={tuple(kernel_size)!r} must be {fix}: the "
                             "turns about the depth axis trade height and width")
        kd = C.check_int(kernel_size[0], "kernel_size", what, minimum=1, fix=fix)
        k = C.check_int(kernel_size[1], "kernel_size", what, minimum=1, fix=fix)
    else:
        kd = k = C.check_int(kernel_size, "kernel_size", what, minimum=1, fix=fix)
    return kd, k


def check_basis3d(basis, group: Group, what: str) -> str:
    """``"shells"`` (escnn's: spherical shells, every group) or ``"slices"`` (the planar basis
    on every depth slice, planar groups only), or an error naming ``basis`` and the fix."""
    if basis not in BASES:
        raise (TypeError if not isinstance(basis, str) else ValueError)(
            f"{what}: basis={basis!r} must be 'shells' (escnn's filters on spherical shells) "
            "or 'slices' (a planar group's planar basis on every depth slice)")
    if basis == "slices" and not isinstance(group, PlanarGroup):
        raise ValueError(f"{what}: basis='slices' is the planar basis on every depth slice, "
                         f"for planar groups about the depth axis; {group.name} turns the "
                         "depth too: use basis='shells'")
    return basis


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
    scale = S._irrep_scale(group, in_rep, out_rep, k, m_in, m_out, spec)
    return init_std_of(basis, scale, fan_in, gain2)


def unreached_orders(group: Group, in_rep: str | None, k: int, m_in: int, m_out: int,
                     spec: BasisSpec | None) -> list[int]:
    """The harmonic output orders of the planar basis (:func:`planar_init_std`'s) that no
    element reaches: their slots are always 0 (read as real tensors, also under a
    ``FakeTensorMode``)."""
    with host_constants():
        basis = S._cached(group, in_rep, "harmonic", k, m_in, m_out, spec)
        energy = basis.square().sum(dim=(0, 2, 3, 4))  # per output slot
        return sorted({(s + 1) // 2 for s in range(energy.shape[0]) if energy[s] == 0})


@host_constants()  # (values read: real tensors, also under a FakeTensorMode)
def init_std_of(basis: torch.Tensor, scale: torch.Tensor, fan_in: int, gain2: float
                ) -> torch.Tensor:
    """:func:`planar_init_std` of a unit-norm basis ``(nb, F_out, F_in, *spatial)`` of planar
    harmonic fields whose layers' elements are ``scale`` times longer (an empty basis: an
    empty tensor, and the layer names the empty basis)."""
    if basis.shape[0] == 0:
        return torch.zeros(0, dtype=torch.float64)

    def order(slot: torch.Tensor) -> torch.Tensor:
        return (slot + 1) // 2
    energy = basis.square().sum(dim=tuple(range(3, basis.dim())))  # (nb, F_out, F_in)
    m = order(energy.sum(2).argmax(1))
    n = order(energy.sum(1).argmax(1))
    f_m = torch.where(m == 0, 1.0, 2.0).double()
    block = m * (n.max() + 1) + n
    c_nm = torch.bincount(block)[block].double()
    n_m = torch.tensor([len(set(n[m == mm].tolist())) for mm in m.tolist()],
                       dtype=torch.float64)
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
    depth: int

    def init_std(self, c_in: int, gain2: float) -> torch.Tensor:
        """Each 3-D element's init std (``(n * k_d,)``) for ``c_in`` input fields: the planar
        rule (:func:`planar_init_std`) with a fan-in ``k_d`` times larger (the slices add)."""
        k = self.packed.shape[-1]
        return planar_init_std(self.group, self.in_rep, k, *self.orders, self.spec,
                               c_in * self.depth, gain2).repeat_interleave(self.depth)

    def dense(self, dtype: torch.dtype, device: torch.device | str | None) -> torch.Tensor:
        """The dense 3-D basis ``(n * k_d, F_out, F_in, k_d, k, k)``."""
        n, f_out, f_in, k, _ = self.packed.shape
        kd = self.depth
        out = torch.zeros(n, kd, f_out, f_in, kd, k, k, dtype=dtype,
                          device="cpu" if device is None else device)
        for z in range(kd):
            out[:, z, :, :, z] = self.packed.to(out)
        return out.flatten(0, 1)


@cpu_cache(maxsize=64)
def axial_basis(group: PlanarGroup, m_in: int | None, m_out: int, k: int,
                spec: BasisSpec | None, depth: int | None = None) -> AxialBasis:
    """The planar group's basis from volumes (``m_in=None``) or harmonic fields of orders ``0
    .. m_in`` to orders ``0 .. m_out`` on ``depth x k x k`` voxels (``depth`` default ``k``;
    :class:`AxialBasis`). Computed once per arguments; callers copy, never write."""
    kd = k if depth is None else depth
    in_rep = "trivial" if m_in is None else "harmonic"
    m = m_in or 0
    scale = S._irrep_scale(group, in_rep, "harmonic", k, m, m_out, spec)
    planar = S._cached(group, in_rep, "harmonic", k, m, m_out, spec) * scale.view(-1, 1, 1, 1, 1)
    energy = planar.square().sum(dim=(2, 3, 4))  # (n, F_out)
    orders = (energy.argmax(1) + 1) // 2
    return AxialBasis(planar, orders.repeat_interleave(kd), group, in_rep, (m, m_out), spec, kd)


def expand_axial(weight: torch.Tensor, packed: torch.Tensor, f_out: int, f_in: int, k: int,
                 depth: int | None = None) -> torch.Tensor:
    """``(C_out, C_in // groups, n * k_d)`` with the planar basis ``packed``
    (:class:`AxialBasis`, flat or not, any dtype and device) -> the dense ``F.conv3d`` filter
    ``(C_out * F_out, C_in // groups * F_in, k_d, k, k)`` (``k_d = depth``, default ``k``),
    fields major, in one matmul: coefficient ``j * k_d + z`` scales planar element ``j`` on
    depth slice ``z``."""
    kd = k if depth is None else depth
    c_out, c_in, nbk = weight.shape
    n = nbk // kd
    w = weight.reshape(c_out, c_in, n, kd).transpose(2, 3).reshape(c_out * c_in * kd, n)
    filt = (w @ packed.reshape(n, -1)).view(c_out, c_in, kd, f_out, f_in, k, k)
    return filt.permute(0, 3, 1, 4, 2, 5, 6).reshape(c_out * f_out, c_in * f_in, kd, k, k)


# ------------------------------------------------------------------------ spherical shells
def _legendre(j: int, f: int, t: torch.Tensor) -> torch.Tensor:
    """The associated Legendre function ``P_j^f(t)`` (``0 <= f <= j``, no Condon-Shortley
    phase, unnormalized) by the standard recurrence in ``j``."""
    p_ff = math.prod(range(1, 2 * f, 2)) * (1 - t * t).clamp_min(0) ** (f / 2)
    if j == f:
        return p_ff
    prev, cur = p_ff, t * (2 * f + 1) * p_ff
    for ell in range(f + 2, j + 1):
        prev, cur = cur, ((2 * ell - 1) * t * cur - (ell + f - 1) * prev) / (ell - f)
    return cur


class ShellBasis(NamedTuple):
    """A planar group's basis on spherical shells (:func:`shell_basis`): ``packed`` the dense
    ``(n, F_out, F_in, k, k, k)`` float64 CPU basis (the layers' scale: norm ``sqrt(d_out)``),
    ``l_out`` each element's output order, ``unit`` the unit-norm elements' init std for one
    input field and ``gain^2 = 1`` (:func:`init_std_of`)."""

    packed: torch.Tensor
    l_out: torch.Tensor
    unit: torch.Tensor

    def init_std(self, c_in: int, gain2: float) -> torch.Tensor:
        """Each element's init std for ``c_in`` input fields and ``gain^2``."""
        return self.unit * math.sqrt(gain2 / c_in)


@cpu_cache(maxsize=64)
def shell_basis(group: PlanarGroup, m_in: int | None, m_out: int, k: int,
                spec: BasisSpec | None, depth: int | None = None) -> ShellBasis:
    """escnn's filters for a planar group on volumes (its ``rot2dOnR3`` / ``conicalOnR3``
    ``R3Conv``: the SO(3) basis restricted to the turns about ``z``): on every shell ``i``
    (radius ``r_i``, width ``sigma_i``, cap ``J_i``) and for every planar angular term of
    frequency ``f`` that the planar basis has (:func:`~equilayers.functional._steerable.
    _block_specs`: the same blocks, patterns and flip rule), the functions ``exp(-(|q| -
    r_i)^2 / (2 sigma_i^2)) P_J^|f|(cos theta) e^{i f phi}`` for ``|f| <= J <= J_i``
    (``theta`` from the depth axis ``z``; ``P_J^|f|(cos theta) e^{+-i f phi}`` are the
    spherical harmonics ``Y_J^{+-f}``, which the turns about ``z`` move as the planar
    ``e^{i f phi}``; only ``J = 0`` at the centre). Exact for the planar group on every shell
    (``r``, ``theta`` fixed), and on the grid for the quarter turns and flips. Elements that
    vanish on the grid are left out; each has norm ``sqrt(d_out)`` as the planar basis's.
    ``depth``: the kernel's depth ``k_d`` (default ``k``; offsets ``z = d - (k_d - 1) / 2``);
    in a box that the shells overhang (``k_d != k``) functions can coincide on the voxels
    (``J`` and ``J + 2`` on one slice): each element is then orthogonalized against the kept
    ones and kept only if something is left (the span, without repeats).
    Computed once per arguments; callers copy, never write."""
    spec = default_spec(k) if spec is None else spec
    kd = k if depth is None else depth
    c = (k - 1) / 2
    i = torch.arange(k, dtype=torch.float64)
    d, h, w = torch.meshgrid(torch.arange(kd, dtype=torch.float64), i, i, indexing="ij")
    x, y, z = w - c, c - h, d - (kd - 1) / 2
    r = (x * x + y * y + z * z).sqrt()
    phi = torch.atan2(y, x)
    cos_t = torch.where(r > 0, z / r.clamp_min(1e-300), torch.zeros_like(r))
    shells = torch.stack([torch.exp(-((r - radius) ** 2) / (2 * sigma * sigma))
                          for radius, sigma, _ in spec])  # (n_shells, k, k, k)
    f_out, f_in = 2 * m_out + 1, 2 * (m_in or 0) + 1
    elements: list[torch.Tensor] = []
    orders: list[int] = []
    for m in range(m_out + 1):
        for n in range(m_in + 1 if m_in is not None else 1):
            for ring, f, coef, pat in S._block_specs(group, m, n, spec):
                for j in range(abs(f), spec[ring][2] + 1):
                    radial = shells[ring] * _legendre(j, abs(f), cos_t)
                    if j > 0:
                        radial = radial.masked_fill(r == 0, 0.0)  # no direction at the centre
                    ang = f * phi
                    u = radial * (coef.real * ang.cos() - coef.imag * ang.sin())
                    v = radial * (coef.real * ang.sin() + coef.imag * ang.cos())
                    e = torch.zeros(f_out, f_in, kd, k, k, dtype=torch.float64)
                    for a in range(2 if m else 1):
                        for b in range(2 if n else 1):
                            slot = ((2 * m - 1 if m else 0) + a, (2 * n - 1 if n else 0) + b)
                            e[slot] = pat[0][a][b] * u + pat[1][a][b] * v
                    if kd != k:  # a box the shells overhang: keep what is new on it
                        for kept in elements:
                            e = e - (e * kept).sum() * kept
                    norm = e.norm()
                    if norm >= VANISHING if kd == k else norm >= 1e-6 * radial.norm().clamp_min(1):
                        elements.append(e / norm)
                        orders.append(m)
    basis = (torch.stack(elements) if elements
             else torch.zeros(0, f_out, f_in, kd, k, k, dtype=torch.float64))
    energy = basis.square().sum(dim=(2, 3, 4, 5))  # (n, F_out)
    nyquist = group.planar_params()[0]
    nyquist = nyquist // 2 if nyquist is not None and nyquist % 2 == 0 else -1
    dims = torch.tensor([1.0 if s == 0 or (s + 1) // 2 == nyquist else 2.0
                         for s in range(f_out)], dtype=torch.float64)
    scale = ((energy @ dims) / energy.sum(1).clamp_min(1e-300)).sqrt()
    unit = init_std_of(basis, scale, 1, 1.0)
    return ShellBasis(basis * scale.view(-1, 1, 1, 1, 1, 1),
                      torch.tensor(orders, dtype=torch.long), unit)
