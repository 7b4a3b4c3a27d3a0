"""Band-limited voxel filters for the cube's groups: the ``basis="harmonic"`` of
:class:`~equilayers.nn.LiftingConv3d` / :class:`~equilayers.nn.GroupConv3d`.

A voxel filter of a cube-group conv is any ``k x k x k`` array (``basis="voxel"``: ``k^3``
numbers per filter). The harmonic basis keeps it in the span of smooth functions sampled on
the grid: Gaussian shells times real spherical harmonics,

    f_{i, J, m}(q) = exp(-(|q| - r_i)^2 / (2 sigma_i^2)) Y_J^m(q / |q|),  J <= cap_i

(``J = 0`` alone at the centre, where the direction is undefined), with the shells, widths and
caps of the SO(3) steerable basis (:mod:`equilayers.functional._basis_settings`; 10 functions
for ``k = 3`` instead of 27). The layer is exactly equivariant with any filter (its expansion
permutes one filter); the span is also closed under the cube's 48 symmetries (each permutes
the sampling points and maps ``Y_J`` into the span of ``Y_J``), so every slot's moved filter
is band-limited too. It is escnn's function space for ``R3Conv`` on ``octaOnR3`` /
``fullOctaOnR3`` regular fields (its filters lie in this span, with the same parameter count;
tests/test_interop_3d.py).

:func:`harmonic_voxel_basis` is the public accessor: with it a ``basis="harmonic"`` layer's
forward is "voxel filter from coefficients, then the public functional",
``group_conv3d(x, torch.tensordot(weight, harmonic_voxel_basis(k, ...), 1), bias, ...)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .. import _checks as C
from .._cpu_cache import cpu_cache
from ..groups import Group
from ..groups._spherical import spherical_harmonics
from ._basis_settings import VANISHING, BasisSpec, Cutoff, default_spec, resolve_settings
from ._steerable3d import _grid, _offsets, check_kernel_size3d

__all__ = ["voxel_basis", "harmonic_voxel_basis", "rotated_voxel_basis"]

#: A function whose part outside the span of the earlier ones is below this (relative to its
#: norm) is left out (the grid aliases high orders on small shells onto lower ones).
_DEPENDENT = 1e-6


@cpu_cache(maxsize=32)
def _terms(kernel_size: int, spec: BasisSpec | None
           ) -> tuple[tuple[tuple[float, float, int, int, float], ...], torch.Tensor]:
    """``(terms, rows)``: the kept functions as ``(radius, sigma, J, m, norm)`` (``m`` the slot
    ``0 .. 2J`` of ``Y_J``, ``norm`` the sampled function's norm before scaling) and their
    ``(n, k^3)`` unit rows (:func:`voxel_basis`)."""
    k = kernel_size
    spec = default_spec(k) if spec is None else spec
    top = max([cap for radius, _, cap in spec if radius > 0] + [0])
    r, harmonics = _grid(k, top)
    terms: list[tuple[float, float, int, int, float]] = []
    ortho: list[torch.Tensor] = []  # an orthonormal basis of the kept rows' span
    for radius, sigma, cap in spec:
        radial = torch.exp(-((r - radius) ** 2) / (2 * sigma * sigma))
        for j in range((cap if radius > 0 else min(cap, 0)) + 1):
            shell = radial if j == 0 else radial * (r != 0).double()
            for m in range(2 * j + 1):
                f = (shell * harmonics[..., j * j + m]).flatten()
                norm = torch.linalg.vector_norm(f)
                if norm < VANISHING:
                    continue
                f = f / norm
                rest = f - sum((torch.dot(q, f) * q for q in ortho), torch.zeros_like(f))
                size = torch.linalg.vector_norm(rest)
                if size < _DEPENDENT:
                    continue
                terms.append((float(radius), float(sigma), j, m, float(norm)))
                ortho.append(rest / size)
    found = tuple(terms)
    return found, _sample(found, top, _offsets(k).reshape(-1, 3))


def _sample(terms, top: int, points: torch.Tensor) -> torch.Tensor:
    """``(n, P)``: the functions ``terms`` (``(radius, sigma, J, m, norm)``) at ``points``
    ``(P, 3)``, divided by their norms; one formula for every set of points, so the same
    point gives the same value bit for bit."""
    if not terms:
        return torch.zeros(0, len(points), dtype=torch.float64)
    r = points.norm(dim=1)
    harmonics = spherical_harmonics(top, points)
    rows = []
    for radius, sigma, j, m, norm in terms:
        shell = torch.exp(-((r - radius) ** 2) / (2 * sigma * sigma))
        if j:
            shell = shell * (r != 0).double()
        rows.append(shell * harmonics[:, j * j + m] / norm)
    return torch.stack(rows)


def voxel_basis(kernel_size: int, spec: BasisSpec | None) -> torch.Tensor:
    """The ``(n, k^3)`` float64 CPU rows ``f_{i, J, m}`` (module docstring), each of unit
    norm, in the order ring, ``J``, ``m``; functions that vanish on the grid or lie in the span
    of the earlier ones are left out (so the rows are linearly independent; the choice is
    deterministic). Computed once per arguments; callers copy, never write."""
    return _terms(kernel_size, spec)[1]


@cpu_cache(maxsize=16)
def rotated_voxel_basis(group: Group, kernel_size: int, spec: BasisSpec | None
                        ) -> torch.Tensor:
    """``(|G|, n, k^3)`` float64 CPU: row ``[g, i]`` is the continuous function of
    :func:`voxel_basis`'s row ``i`` turned by ``g`` and sampled on the grid, ``f_i(g^-1 q)``
    (same scale; ``[identity]`` is :func:`voxel_basis` itself). The radius is unchanged by
    a rotation, so only the spherical harmonic is evaluated at the turned offsets. For an
    element that maps the grid onto itself the rows are a permutation of the voxels of the
    unturned ones, exactly (the same offsets, evaluated alike). The basis of the groups whose
    elements leave the grid (``"ico"``): its expanded filters turn the continuous filter, as
    escnn's do. Callers copy, never write."""
    k = kernel_size
    spec = default_spec(k) if spec is None else spec
    terms, _ = _terms(k, spec)
    top = max([cap for radius, _, cap in spec if radius > 0] + [0])  # as _terms
    q = _offsets(k).reshape(-1, 3)  # (k^3, 3) offsets (x, y, z)
    # row p of q @ M is g^-1 q_p (M orthogonal); grid elements permute the offsets exactly
    mats = torch.stack([group.matrix(g) for g in group.elements()])
    turned = torch.matmul(q, mats).reshape(-1, 3)  # (|G| k^3, 3), element major
    return _sample(terms, top, turned).view(len(terms), len(mats), -1).transpose(0, 1)


def harmonic_voxel_basis(kernel_size: int, *, sigma: float | Sequence[float] | None = None,
                         frequencies_cutoff: Cutoff | None = None,
                         rings: Sequence[float] | None = None, dtype: torch.dtype | None = None,
                         device: torch.device | str | None = None) -> torch.Tensor:
    """The band-limited voxel filters ``(n, k, k, k)`` of ``basis="harmonic"`` in
    :class:`~equilayers.nn.LiftingConv3d` / :class:`~equilayers.nn.GroupConv3d`: Gaussian
    shells times real spherical harmonics sampled on the ``k x k x k`` grid, each of unit
    norm, linearly independent (module docstring of
    :mod:`equilayers.functional._voxel_basis`).

    A weight of such a layer holds ``n`` coefficients per voxel filter, ``(..., n)``; its voxel
    filters are ``torch.tensordot(weight, basis, 1)`` ``(..., k, k, k)``, which
    :func:`~equilayers.functional.lifting_conv3d` / :func:`~equilayers.functional.group_conv3d`
    take as their weight (the layer's forward, to float rounding).

    Args:
        kernel_size: ``k`` (an int, or three equal ints; an even ``k`` is sampled around the
            point between the eight middle voxels).
        sigma, frequencies_cutoff, rings: the shells, as the layers take them (escnn's
            meaning and defaults, :mod:`equilayers.functional._basis_settings`: rings ``0 ..
            k // 2``, for an even ``k`` ``1 .. k/2 - 1``; only ``J = 0`` at the centre).
        dtype, device: of the result (default: torch's default dtype, CPU).

    Example:
        >>> import torch
        >>> from equilayers.functional import group_conv3d, harmonic_voxel_basis
        >>> basis = harmonic_voxel_basis(3)  # 10 filters of 3 x 3 x 3
        >>> coefficients = torch.randn(4, 2, 4, basis.shape[0])  # (C_out, C_in, |G|, n)
        >>> voxels = torch.tensordot(coefficients, basis, 1)  # (4, 2, 4, 3, 3, 3)
        >>> group_conv3d(torch.randn(1, 2, 4, 5, 5, 5), voxels, padding=1, group="c4z").shape
        torch.Size([1, 4, 4, 5, 5, 5])
    """
    what = "harmonic_voxel_basis"
    k = check_kernel_size3d(kernel_size, what)
    C.check_float_dtype(dtype, "dtype", what)
    spec = resolve_settings(k, sigma, frequencies_cutoff, rings, what, spatial_dims=3)
    rows = voxel_basis(k, spec)
    if len(rows) == 0:
        given = ", ".join(f"{a}={v!r}" for a, v in (("sigma", sigma), ("frequencies_cutoff",
                          frequencies_cutoff), ("rings", rings)) if v is not None)
        raise ValueError(f"{what}: the harmonic basis is empty for kernel_size={k} ({given}): "
                         "raise frequencies_cutoff or add rings")
    return rows.to(dtype=dtype or torch.get_default_dtype(), device=device,
                   copy=True).unflatten(1, (k, k, k))
