"""Steerable filters on voxels for SO(3) and O(3) (Weiler et al. 2018, "3D Steerable CNNs"):
the kernel basis and the convolution with it.

A filter is sampled on the ``k x k x k`` grid at offsets ``q = (x, y, z)`` with ``x = w - c``,
``y = c - h``, ``z = d - c`` (``c = (k - 1) / 2``: the middle voxel, or for an even ``k`` the
point between the eight middle ones, as escnn's; the volume's axes,
:mod:`equilayers.groups._cubic`).
A map from harmonic fields of orders ``0 .. L_in`` to orders ``0 .. L_out``
(:mod:`equilayers.groups._so3`: ``(L + 1)^2`` slots) has one block per pair of orders
``l_in -> l_out``, and the block's basis functions are

    K_{i, J}(q) = exp(-(|q| - r_i)^2 / (2 sigma_i^2)) sum_m Q[:, m, :] Y_J^m(q / |q|),
    Q = Q^{l_out, J, l_in}

(a Gaussian shell of radius ``r_i`` times the real spherical harmonics of order ``J`` coupled
by the real Clebsch-Gordan tensor, :mod:`equilayers.groups._spherical`), for ``|l_in - l_out|
<= J <= l_in + l_out`` and ``J <= cap_i``, the shell's frequency cutoff; O(3) keeps only ``J =
l_in + l_out (mod 2)`` (the parity of order ``l`` is ``(-1)^l``). Every such function obeys the
kernel constraint ``K(R q) = D_out(R) K(q) D_in(R)^T`` for every rotation (and the inversion)
as a continuous function, since ``Y_J(R u) = D_J(R) Y_J(u)`` and ``Q`` intertwines; on the grid
the 24 (48) symmetries of the cube permute the sampling points, so the sampled filters obey it
exactly there. At the centre (``r = 0``) only ``J = 0`` is sampled (the direction is undefined).

The shells, their widths and their caps are the planar basis settings
(:mod:`._basis_settings`, escnn's ``sigma`` / ``frequencies_cutoff`` / ``rings``): rings
``0, 1, .., k // 2`` (escnn's ``R3Conv`` default), widths 0.6 (0.4 on the last ring, 0.005 at
the centre: the centre voxel alone; for an even ``k`` the planar defaults, ``1 .. k/2 - 1``,
and for ``k = 2`` one shell of radius ``sqrt(2)/2``, whose Gaussian weighs the eight voxels,
all at ``sqrt(3)/2``, alike) and caps 0 at the centre, ``floor(r + 1)`` inside and at most 2
on the outer shell, which for ``k <= 7`` are escnn's 3-D default caps
(``min(2 r, k // 2 - r + 2)``): higher orders alias on small shells. Each function is
normalised to Frobenius norm ``sqrt(2 l_out + 1)`` (the planar convs' ``sqrt(d_out)``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F

from .. import _checks as C
from .._cpu_cache import cpu_cache
from ..groups import GroupLike
from ..groups._so3 import SO3Group
from ..groups._spherical import clebsch_gordan, spherical_harmonics
from . import _axial3d as AX
from . import _gconv3d as G3
from ._basis_settings import VANISHING, BasisSpec, Cutoff, default_spec, resolve_settings

__all__ = ["steerable_basis3d", "steerable_conv3d"]

_CPU = torch.device("cpu")


def check_kernel_size3d(kernel_size, what: str) -> int:
    """A ``k >= 1`` (an int, or three equal ints): a cubic filter, turned about its centre
    voxel (odd ``k``) or the point between its eight middle voxels (even ``k``)."""
    if isinstance(kernel_size, (tuple, list)):
        kernel_size = C.check_cubic(kernel_size, "kernel_size", what)
    return C.check_int(kernel_size, "kernel_size", what, minimum=1, fix="a cubic k x k x k filter")


def _offsets(k: int) -> torch.Tensor:
    """``(k, k, k, 3)`` offsets ``(x, y, z)`` of the voxels ``[d, h, w]`` from the centre (the
    middle voxel, or the point between the eight middle ones of an even ``k``)."""
    c = (k - 1) / 2
    i = torch.arange(k, dtype=torch.float64, device=_CPU)
    d, h, w = torch.meshgrid(i, i, i, indexing="ij")
    return torch.stack([w - c, c - h, d - c], dim=-1)


def _blocks(grp: SO3Group, m_in: int, m_out: int, spec: BasisSpec):
    """``(l_out, l_in, ring, J)`` of every basis function, in the basis order."""
    out = []
    for lo in range(m_out + 1):
        for li in range(m_in + 1):
            for i, (radius, _, cap) in enumerate(spec):
                top = min(lo + li, cap if radius > 0 else 0)
                for j in range(abs(lo - li), top + 1):
                    if grp.has_reflections and (j + lo + li) % 2:
                        continue
                    out.append((lo, li, i, j))
    return out


class Basis3d(NamedTuple):
    """The steerable 3-D basis stored by blocks of orders (:func:`basis3d_blocks`).

    ``packed`` holds, for every pair of orders ``l_in -> l_out`` in the order of ``pairs``
    (``l_out`` major), the ``(n, 2 l_out + 1, 2 l_in + 1, k, k, k)`` elements of that block,
    flattened one after the other; the basis order is this order. The dense basis element
    ``e`` is its block's element placed at slots ``l_out^2 .. (l_out + 1)^2 - 1`` (out) and
    ``l_in^2 .. (l_in + 1)^2 - 1`` (in) of a ``((L_out + 1)^2, (L_in + 1)^2, k, k, k)`` zero
    filter: the dense basis is mostly zeros, which the blocks leave out."""

    packed: torch.Tensor  # float64 CPU, every block's elements, norm sqrt(2 l_out + 1) each
    l_out: torch.Tensor  # (num_basis,) int64: the output order of each element
    l_in: torch.Tensor  # (num_basis,) int64
    pairs: tuple[tuple[int, int, int], ...]  # (l_out, l_in, n) of every pair, n may be 0


@cpu_cache(maxsize=16)
def _grid(k: int, top: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(r, Y)``: the offsets' radii ``(k, k, k)`` and real spherical harmonics of orders ``0
    .. top`` ``(k, k, k, (top + 1)^2)`` (0 at the centre for orders > 0), float64 CPU."""
    q = _offsets(k)
    return q.norm(dim=-1), spherical_harmonics(top, q)


@cpu_cache(maxsize=128)
def basis3d_blocks(grp: SO3Group, m_in: int, m_out: int, k: int, spec: BasisSpec | None
                   ) -> Basis3d:
    """The float64 CPU basis from orders ``0 .. m_in`` to ``0 .. m_out`` by blocks of orders
    (:class:`Basis3d`), each element normalised to Frobenius norm ``sqrt(2 l_out + 1)`` (the
    layers' parametrization). Functions that vanish on the grid are left out. Computed once
    per arguments (every input of the result is in the key); callers copy, never write."""
    spec = default_spec(k) if spec is None else spec
    elements = _blocks(grp, m_in, m_out, spec)
    r, harmonics = _grid(k, max([j for *_, j in elements], default=0))
    radials = torch.stack([torch.exp(-((r - radius) ** 2) / (2 * sigma * sigma))
                           for radius, sigma, _ in spec])  # (rings, k, k, k)
    off_centre = radials * (r != 0).double()  # order J > 0: 0 at the centre
    chunks: list[torch.Tensor] = []
    orders_out: list[int] = []
    orders_in: list[int] = []
    pairs = []
    for lo in range(m_out + 1):
        for li in range(m_in + 1):
            mine = [(i, j) for o, n, i, j in elements if (o, n) == (lo, li)]
            parts, keys = [], []
            for j in sorted({j for _, j in mine}):  # every ring of one J at once
                rings = [i for i, jj in mine if jj == j]
                cg = clebsch_gordan(lo, j, li)  # (2 lo + 1, 2 J + 1, 2 li + 1)
                angular = torch.einsum("amb,xyzm->abxyz", cg, harmonics[..., j * j:(j + 1) ** 2])
                blocks = angular * (off_centre if j > 0 else radials)[rings, None, None]
                norms = torch.linalg.vector_norm(blocks, dim=(1, 2, 3, 4, 5))
                parts.append(blocks / norms.view(-1, 1, 1, 1, 1, 1) * math.sqrt(2 * lo + 1))
                keys += [(i, j, norm >= VANISHING) for i, norm in zip(rings, norms.tolist(),
                                                                  strict=True)]
            order = sorted((key[:2], e) for e, key in enumerate(keys) if key[2])  # ring, J
            if order:
                chunks.append(torch.cat(parts)[[e for _, e in order]].flatten())
            orders_out += [lo] * len(order)
            orders_in += [li] * len(order)
            pairs.append((lo, li, len(order)))
    packed = torch.cat(chunks) if chunks else torch.zeros(0, dtype=torch.float64, device=_CPU)
    return Basis3d(packed, torch.tensor(orders_out, dtype=torch.long, device=_CPU),
                   torch.tensor(orders_in, dtype=torch.long, device=_CPU), tuple(pairs))


def block_views(packed: torch.Tensor, pairs: Sequence[tuple[int, int, int]], k: int
                ) -> list[tuple[int, int, torch.Tensor | None]]:
    """``(l_out, l_in, block)`` per pair of ``pairs``: the ``(n, 2 l_out + 1, 2 l_in + 1, k,
    k, k)`` view of ``packed`` (a :class:`Basis3d` layout in any dtype and device), ``None``
    where the pair has no element."""
    out: list[tuple[int, int, torch.Tensor | None]] = []
    offset = 0
    for lo, li, n in pairs:
        size = n * (2 * lo + 1) * (2 * li + 1) * k ** 3
        block = packed[offset:offset + size].view(n, 2 * lo + 1, 2 * li + 1, k, k, k) if n \
            else None
        out.append((lo, li, block))
        offset += size
    return out


def dense_basis3d(basis: Basis3d, m_in: int, m_out: int, k: int, dtype: torch.dtype,
                  device: torch.device | str | None) -> torch.Tensor:
    """The dense ``(num_basis, (m_out + 1)^2, (m_in + 1)^2, k, k, k)`` basis of the blocks."""
    dense = torch.zeros(len(basis.l_out), (m_out + 1) ** 2, (m_in + 1) ** 2, k, k, k,
                        dtype=dtype, device=_CPU if device is None else device)
    e = 0
    for lo, li, block in block_views(basis.packed, basis.pairs, k):
        if block is not None:
            dense[e:e + len(block), lo * lo:(lo + 1) ** 2, li * li:(li + 1) ** 2] = block
            e += len(block)
    return dense


def expand_blocks3d(weight: torch.Tensor, packed: torch.Tensor,
                    pairs: Sequence[tuple[int, int, int]], k: int) -> torch.Tensor:
    """``(C_out, C_in // groups, nb)`` x the blocks of ``packed`` (:class:`Basis3d` layout) ->
    the dense ``F.conv3d`` filter ``(C_out * F_out, C_in // groups * F_in, k, k, k)``, fields
    major: :func:`expand_steerable3d` of the dense basis, one matmul per pair of orders."""
    c_out, c_in, nb = weight.shape
    w = weight.reshape(c_out * c_in, nb)
    rows: dict[int, list[torch.Tensor]] = {}
    e = 0
    for lo, li, block in block_views(packed, pairs, k):
        a, b = 2 * lo + 1, 2 * li + 1
        if block is None:
            part = weight.new_zeros(c_out, a, c_in, b, k ** 3)
        else:
            n = len(block)
            part = (w[:, e:e + n] @ block.reshape(n, -1)).view(c_out, c_in, a, b, k ** 3)
            part = part.permute(0, 2, 1, 3, 4)
            e += n
        rows.setdefault(lo, []).append(part)
    f_out = sum(2 * lo + 1 for lo in rows)
    filt = torch.cat([torch.cat(row, dim=3) if len(row) > 1 else row[0]
                      for row in rows.values()], dim=1)
    return filt.reshape(c_out * f_out, -1, k, k, k)


def _order(value, name: str, what: str, optional: bool) -> int | None:
    if value is None and optional:
        return None
    return C.check_int(value, name, what, minimum=0,
                       fix="a rotation order L >= 0 ((L+1)^2 slots)"
                       + ("; or None for a volume (B, C, D, H, W)" if optional else ""))


def steerable_basis3d(
    group: GroupLike,
    kernel_size: int,
    *,
    in_order: int | None = None,
    out_order: int = 1,
    sigma: float | Sequence[float] | None = None,
    frequencies_cutoff: Cutoff | None = None,
    rings: Sequence[float] | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    basis: str = "shells",
) -> torch.Tensor:
    """The steerable filter basis from SO(3)/O(3) harmonic fields of orders ``0 ..
    in_order`` (or volumes, ``in_order=None``) to orders ``0 .. out_order``; or those of a
    planar group turning every depth slice (:mod:`equilayers.functional._axial3d`: ``F =
    2M + 1``; escnn's filters on spherical shells, or with ``basis="slices"`` the planar
    basis on each of the ``k`` depth slices).

    Every element ``B[j]`` is a ``(F_out, F_in, k, k, k)`` filter (``F = (L + 1)^2``; ``F_in =
    1`` for volumes) that obeys ``K(R q) = D_out(R) K(q) D_in(R)^T`` for every rotation of the
    group (exactly on the grid for the cube's 24 / 48 symmetries), built from Gaussian shells,
    real spherical harmonics and Clebsch-Gordan coefficients (module docstring of
    :mod:`equilayers.functional._steerable3d`), with Frobenius norm ``sqrt(2 l_out + 1)``.
    The float64 basis is computed once per arguments and cached; a fresh tensor is returned.

    Args:
        group: ``"so3"`` or ``"o3"``; or ``"so2"``, ``"o2"``, ``"cN"``, ``"dN"`` (rotations
            and flips about the depth axis; the shells are then the planar rings).
        kernel_size: ``k`` (an int or three equal ints; an even ``k`` turns about the point
            between the middle voxels; a planar group also ``(k_d, k, k)``, any depth).
        in_order: ``L_in``, or ``None`` for volumes (one slot: the same basis as ``0``).
        out_order: ``L_out``.
        sigma, frequencies_cutoff, rings: the shells, as the planar ``steerable_basis``
            (:mod:`equilayers.functional._basis_settings`); the cap bounds ``J``.
        dtype, device: of the result (default: torch's default dtype, CPU).
        basis: ``"shells"`` (default; the only one of SO(3)/O(3)) or, for a planar group,
            ``"slices"``.

    Returns:
        ``(num_basis, F_out, F_in, k, k, k)``: ``F = (L + 1)^2`` (SO(3)/O(3)), ``2L + 1`` (a planar
        group), 1 for volumes.

    Example:
        >>> steerable_basis3d("so3", 3, in_order=1, out_order=1).shape
        torch.Size([8, 4, 4, 3, 3, 3])
    """
    what = "steerable_basis3d"
    grp = AX.check_steerable3d_group(group, what)
    if isinstance(grp, SO3Group):
        kd = k = check_kernel_size3d(kernel_size, what)
    else:  # a planar group: (k_d, k, k) too
        kd, k = AX.check_axial_kernel(kernel_size, what)
    m_in = _order(in_order, "in_order", what, True)
    m_out = _order(out_order, "out_order", what, False)
    assert m_out is not None  # not optional
    C.check_float_dtype(dtype, "dtype", what)
    AX.check_basis3d(basis, grp, what)
    if not isinstance(grp, SO3Group):  # a planar group about the depth axis
        if basis == "slices":
            spec = resolve_settings(k, sigma, frequencies_cutoff, rings, what)
            return AX.axial_basis(grp, m_in, m_out, k, spec, kd).dense(
                dtype or torch.get_default_dtype(), device)
        spec = resolve_settings(k, sigma, frequencies_cutoff, rings, what, spatial_dims=3)
        return AX.shell_basis(grp, m_in, m_out, k, spec, kd).packed.to(
            dtype=dtype or torch.get_default_dtype(), device=device, copy=True)
    spec = resolve_settings(k, sigma, frequencies_cutoff, rings, what, spatial_dims=3)
    return dense_basis3d(basis3d_blocks(grp, m_in or 0, m_out, k, spec), m_in or 0, m_out, k,
                         dtype or torch.get_default_dtype(), device)


def expand_steerable3d(weight: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """``(C_out, C_in // groups, nb)`` x ``(nb, F_out, F_in, k, k, k)`` -> the dense
    ``F.conv3d`` filter ``(C_out * F_out, C_in // groups * F_in, k, k, k)``, fields major."""
    c_out, c_in, nb = weight.shape
    _, f_out, f_in, kd, kh, kw = basis.shape
    filt = (weight.reshape(c_out * c_in, nb) @ basis.reshape(nb, -1)).reshape(
        c_out, c_in, f_out, f_in, kd, kh, kw)
    return filt.transpose(1, 2).reshape(c_out * f_out, c_in * f_in, kd, kh, kw)


def order0_bias(bias: torch.Tensor | None, fiber_out: int) -> torch.Tensor | None:
    """The conv's per-slot bias ``(C * F,)`` of a field bias ``(C,)`` on order 0 (slot 0)
    only, zeros on the other slots: added inside the conv, where adding it to the output's
    order-0 slots and joining them to the rest (a ``cat``) cost two output-sized passes forward
    and, through the two slices' backwards, three more backward."""
    if bias is None:
        return None
    return F.pad(bias[:, None], (0, fiber_out - 1)).reshape(-1)


def steerable_conv3d(
    x: torch.Tensor,
    weight: torch.Tensor,
    basis: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride=1,
    padding=0,
    dilation=1,
    groups: int = 1,
    padding_mode: str = "zeros",
) -> torch.Tensor:
    """Convolution with filters in a steerable 3-D basis: one ``F.conv3d`` with the expanded
    filter (the functional twin of :class:`~equilayers.nn.SteerableConv3d`).

    Args:
        x: ``(B, C_in, D, H, W)`` (``F_in = 1``) or ``(B, C_in, F_in, D, H, W)``.
        weight: ``(C_out, C_in // groups, num_basis)``.
        basis: ``(num_basis, F_out, F_in, k, k, k)`` from :func:`steerable_basis3d`.
        bias: ``(C_out,)``, added to slot 0 (order 0, invariant) only.
        stride, padding, dilation, groups, padding_mode: as ``F.conv3d`` / ``nn.Conv3d``
            (``padding`` also ``"same"``/``"valid"``).

    Shape: ``(B, C_out, F_out, D', H', W')``, ``n' = floor((n + 2 p - d (k - 1) - 1) / s) + 1``.

    Example:
        >>> basis = steerable_basis3d("so3", 3, out_order=1)
        >>> w = torch.randn(4, 2, basis.shape[0])
        >>> steerable_conv3d(torch.randn(1, 2, 5, 5, 5), w, basis, padding=1).shape
        torch.Size([1, 4, 4, 5, 5, 5])
    """
    what = "steerable_conv3d"
    C.check_padding_mode(padding_mode, "padding_mode", what, G3.PADDING_MODES)
    x, f_out, kernel = checked_steerable3d(x, weight, basis, bias, stride, dilation, groups, what)
    pad = G3.resolve_padding3d(padding, kernel, dilation, stride, what)
    return G3.conv3d_expanded(x, expand_steerable3d(weight, basis), order0_bias(bias, f_out),
                              f_out, stride, pad, dilation, groups, padding_mode, what=what)


def checked_steerable3d(x: torch.Tensor, weight: torch.Tensor, basis: torch.Tensor,
                        bias: torch.Tensor | None, stride, dilation, groups, what: str
                        ) -> tuple[torch.Tensor, int, tuple[int, int, int]]:
    """The argument checks of :func:`steerable_conv3d` and its transposed twin: ``x`` as
    ``(B, C_in, F_in, D, H, W)`` (volumes get ``F_in = 1``), ``F_out`` and the kernel's
    ``(k_d, k, k)``."""
    C.check_tensor(x, "x", what, floating=False)
    C.check_tensor(weight, "weight", what, ndim=3, layout="(C_out, C_in // groups, num_basis)")
    C.check_tensor(basis, "basis", what, ndim=6, layout="(num_basis, F_out, F_in, k, k, k)")
    C.check_triple(stride, "stride", what, minimum=1)
    C.check_triple(dilation, "dilation", what, minimum=1)
    groups = C.check_int(groups, "groups", what, minimum=1)
    nb, f_out, f_in = basis.shape[0], basis.shape[1], basis.shape[2]
    kernel = (basis.shape[3], basis.shape[4], basis.shape[5])
    if weight.shape[-1] != nb:
        raise ValueError(f"{what}: weight {tuple(weight.shape)} must have num_basis={nb} "
                         f"coefficients in its last dim (basis {tuple(basis.shape)})")
    if basis.shape[-1] != basis.shape[-2]:
        raise ValueError(f"{what}: basis must have a kernel (k_d, k, k) (cubic, or any depth "
                         f"for a planar group's); got shape {tuple(basis.shape)}")
    C.check_weight_groups(weight, groups, what)
    c_in = weight.shape[1] * groups
    if x.dim() == 5 and f_in == 1:
        x = x.unsqueeze(2)
    if x.dim() != 6 or x.shape[1] != c_in or x.shape[2] != f_in:
        raise ValueError(f"{what}: x must be (B, C_in, F_in, D, H, W) = (B, {c_in}, {f_in}, D, "
                         f"H, W) for weight {tuple(weight.shape)} (groups={groups}) and basis "
                         f"{tuple(basis.shape)}" + (" (or (B, C_in, D, H, W) volumes)"
                                                    if f_in == 1 else "")
                         + f"; got shape {tuple(x.shape)}")
    C.check_tensor(x, "x", what)  # floating point
    C.check_bias(bias, (weight.shape[0],), what, per="output field")
    C.check_tensors_match(x, what, (("weight", weight), ("basis", basis), ("bias", bias)))
    return x, f_out, kernel
