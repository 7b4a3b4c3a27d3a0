"""Fourier maps over the fiber: regular C_N/D_N fields <-> harmonic fields, and the Fourier
nonlinearity (sample the fiber on group elements, act pointwise, transform back).

Every matrix here comes from a process-wide cache of float64 **CPU** tensors, built with an
explicit ``device="cpu"`` (so that building a module under ``with torch.device("meta"):``
cannot leave a meta tensor in the cache) from the closed form of the harmonic action
(:func:`equilayers.groups.harmonic_matrix`): a rotation by ``t`` turns ``(c_m, s_m)`` by
``m t``, so ``rho(r_t) e`` for ``e = [1, 1, 0, 1, 0, ...]`` is ``[1, cos(m t), sin(m t), ...]``,
and the flip ``r_t m`` gives ``[1, (-1)^m cos(m t), (-1)^m sin(m t), ...]``. Callers get copies
(or casts) of the cached tensors, never the tensors themselves to write into.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from .. import _checks as C
from .._cpu_cache import cpu_cache
from ..groups import GroupLike, get
from ._fourier3d import fourier_nonlinearity3d, matrix_pair, sample_and_fit
from ._harmonic import _check_function, check_floating, check_harmonic, check_order

__all__ = [
    "fourier_matrix",
    "regular_to_harmonic",
    "harmonic_to_regular",
    "fourier_nonlinearity",
    "fourier_samples",
]


def _default_order(group, max_order: int | None, what: str = "fourier_matrix") -> int:
    """``max_order`` of a Fourier map between regular and harmonic fields of C_N/D_N: by
    default ``N // 2``; at most ``N // 2`` (the exact inverse holds there)."""
    if max_order is None:
        return group.planar_params()[0] // 2
    return check_fourier_order(group, check_order(max_order, what), what)


def check_fourier_order(group, max_order: int, what: str) -> int:
    """Refuse ``max_order > N // 2`` for the Fourier maps of C_N/D_N: on ``N`` rotations order
    ``m`` and ``N - m`` give the same samples, so higher orders alias onto lower ones and
    :func:`harmonic_to_regular` no longer inverts :func:`regular_to_harmonic`."""
    n = group.planar_params()[0]
    if max_order > n // 2:
        raise ValueError(f"{what}: max_order={max_order} is too high for {group.name}: its {n} "
                         f"rotations tell orders 0..{n // 2} apart (order m and {n} - m give "
                         "the same samples, so higher orders alias onto lower ones and the "
                         f"maps no longer invert); use max_order <= {n // 2} (N // 2)")
    return max_order


def _fourier_default_order(group) -> int:
    """The Fourier nonlinearity's default ``max_order`` on C_N/D_N: the highest order that its
    ``N`` rotations sample without loss, ``(N - 1) // 2``."""
    return (group.planar_params()[0] - 1) // 2


def _finite(group: GroupLike, what: str):
    grp = get(group)
    grp.require_finite(what, "use a finite group 'cN'/'dN'")
    return grp


@cpu_cache(maxsize=256)
def _rows_cpu(n: int, reflections: bool, max_order: int) -> torch.Tensor:
    """``(N or 2N, 2M+1)`` float64 on CPU: row ``h`` is ``rho(h) e``, ``e = [1, 1, 0, 1, 0,
    ...]``, for ``h`` in the elements of C_N (D_N: then the flipped ones), in
    :meth:`Group.elements` order."""
    rows = []
    for flip in (False, True) if reflections else (False,):
        for k in range(n):
            t = 2.0 * math.pi * k / n
            row = [1.0]
            for m in range(1, max_order + 1):
                sign = (-1.0) ** m if flip else 1.0
                row += [sign * math.cos(m * t), sign * math.sin(m * t)]
            rows.append(row)
    return torch.tensor(rows, dtype=torch.float64, device="cpu")


def fourier_matrix(group: GroupLike, max_order: int | None = None,
                   dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``E`` with ``E[h] = rho(h) e`` for every element ``h`` of C_N/D_N: ``(|G|, 2M+1)``.

    ``rho`` is the harmonic action and ``e = [1, 1, 0, 1, 0, ...]``; for C_N row ``k`` is
    ``[1, cos(m 2 pi k / N), sin(m 2 pi k / N), ...]``, the real DFT. ``max_order`` defaults to
    ``N // 2``, its largest value (higher orders alias: refused). Returns a new CPU tensor.
    """
    grp = _finite(group, "fourier_matrix")
    m = _default_order(grp, max_order)
    C.check_float_dtype(dtype, "dtype", "fourier_matrix", optional=False)
    return _rows_cpu(*grp.planar_params(), m).to(dtype=dtype, copy=True)


@cpu_cache(maxsize=256)
def _forward_cpu(n: int, reflections: bool, max_order: int) -> torch.Tensor:
    """``E^T``: regular -> harmonic."""
    return _rows_cpu(n, reflections, max_order).t().contiguous()


@cpu_cache(maxsize=256)
def _inverse_cpu(n: int, reflections: bool, max_order: int) -> torch.Tensor:
    """``E diag(w)``: harmonic -> regular (see :func:`harmonic_to_regular`)."""
    w = torch.full((2 * max_order + 1,), 2.0 / n, dtype=torch.float64, device="cpu")
    w[0] = 1.0 / n
    if n % 2 == 0 and max_order >= n // 2:
        w[2 * (n // 2) - 1 : 2 * (n // 2) + 1] = 1.0 / n
    if reflections:
        w = w / 2
    return _rows_cpu(n, reflections, max_order) * w[None, :]


def _fiber_matmul(x: torch.Tensor, mat: torch.Tensor) -> torch.Tensor:
    """``out[:, :, i] = sum_j mat[i, j] x[:, :, j]``: one ``bmm`` of ``mat`` expanded over
    the ``B C`` fibers (4 aten ops; ``einsum`` took 16, with a copy of ``x``)."""
    b, c, f = x.shape[:3]
    mat = mat.to(dtype=x.dtype, device=x.device)
    out = torch.bmm(mat.expand(b * c, *mat.shape), x.reshape(b * c, f, math.prod(x.shape[3:])))
    return out.view(b, c, mat.shape[0], *x.shape[3:])


def _check_matrix(matrix: torch.Tensor, shape: tuple[int, int], what: str,
                  x: torch.Tensor) -> torch.Tensor:
    """A floating ``shape`` matrix (a complex one was cast to its real part, a bool one
    read as 0/1), not on the meta device for a real ``x`` (``Cannot copy out of meta``); it
    is moved to ``x``'s device and dtype (the default one is the CPU cache's)."""
    if not isinstance(matrix, torch.Tensor) or tuple(matrix.shape) != shape:
        got = tuple(matrix.shape) if isinstance(matrix, torch.Tensor) else type(matrix).__name__
        raise ValueError(f"{what}: matrix must be the {shape} transform of this group and "
                         f"max_order (leave matrix=None to build it); got {got}")
    C.check_tensor(matrix, "matrix", what)
    if matrix.is_meta and not x.is_meta:
        raise ValueError(f"{what}: matrix is on the meta device but x is on {x.device}: "
                         "materialize it first (leave matrix=None to build it)")
    return matrix


def regular_to_harmonic(x: torch.Tensor, group: GroupLike, max_order: int | None = None, *,
                        matrix: torch.Tensor | None = None) -> torch.Tensor:
    """Fourier transform over the fiber: regular C_N/D_N fields -> harmonic fields.

    ``out = E^T f`` with :func:`fourier_matrix` ``E``: for C_N ``a_0 = sum_k f_k``,
    ``c_m = sum_k f_k cos(2 pi m k / N)``, ``s_m = sum_k f_k sin(2 pi m k / N)``. Equivariant
    for every element of the group (the harmonic action of ``r^k`` is the rotation by
    ``2 pi k / N``). For even N the Nyquist order ``N/2`` has ``s_{N/2} = 0`` always. With
    ``max_order = N // 2`` (default, and the largest: higher orders alias onto lower ones on
    ``N`` rotations, refused) and C_N, :func:`harmonic_to_regular` inverts it exactly;
    for D_N (``2N`` slots) it is an equivariant projection. ``matrix``: ``E^T``, precomputed
    (:class:`~equilayers.nn.RegularToHarmonic` passes its buffer); default from the
    process-wide cache. ``x`` must be floating point (``TypeError`` otherwise).
    """
    grp = _finite(group, "regular_to_harmonic")
    m = _default_order(grp, max_order, "regular_to_harmonic")
    check_floating(x, "regular_to_harmonic")
    order = int(grp.order)
    if x.dim() != 5 or x.shape[2] != order:
        raise ValueError(f"regular_to_harmonic expects a regular {grp.name} field "
                         f"(B, C, {order}, H, W); got shape {tuple(x.shape)}")
    if matrix is None:
        matrix = _forward_cpu(*grp.planar_params(), m)
    return _fiber_matmul(x, _check_matrix(matrix, (2 * m + 1, order), "regular_to_harmonic",
                                          x))


def harmonic_to_regular(x: torch.Tensor, group: GroupLike, max_order: int | None = None, *,
                        matrix: torch.Tensor | None = None) -> torch.Tensor:
    """Inverse Fourier transform over the fiber: harmonic fields -> regular C_N/D_N fields.

    ``f_h = sum_i w_i (rho(h) e)_i x_i`` with ``w = 1/N`` for order 0 and the Nyquist order
    ``N/2`` (even N), ``2/N`` for the others (``1/(2N)``, ``1/N`` for D_N). For C_N with
    ``max_order = N // 2`` it is the exact inverse of :func:`regular_to_harmonic` (and a right
    inverse on harmonic fields whose ``s_{N/2}`` is 0); equivariant for every element.
    ``matrix``: ``E diag(w)``, precomputed (:class:`~equilayers.nn.HarmonicToRegular` passes
    its buffer); default from the process-wide cache.
    """
    grp = _finite(group, "harmonic_to_regular")
    m = _default_order(grp, max_order, "harmonic_to_regular")
    check_harmonic(x, m, "harmonic_to_regular")
    if matrix is None:
        matrix = _inverse_cpu(*grp.planar_params(), m)
    return _fiber_matmul(x, _check_matrix(matrix, (int(grp.order), 2 * m + 1),
                                          "harmonic_to_regular", x))


def default_samples(max_order: int) -> int:
    """Rotations sampled for SO(2)/O(2) by default: ``8 (M + 1)`` (a multiple of 4, so the grid
    rotations, multiples of 90 degrees, are among the samples)."""
    return 8 * (max_order + 1)


def fourier_samples(group: GroupLike, max_order: int, samples: int | None = None,
                    what: str = "fourier_nonlinearity"):
    """``(n, reflections)``: the sampled subgroup C_n/D_n of :func:`fourier_nonlinearity`
    (C_N/D_N: the group itself; SO(2)/O(2): ``samples`` rotations, default
    :func:`default_samples`)."""
    grp = get(group)
    n, reflections = grp.planar_params()
    if n is not None:
        if samples is not None:
            raise ValueError(f"{what}: {grp.name} is finite, its samples are its {n} "
                             f"rotations (and flips); got samples={samples!r} (leave it None)")
        if 2 * max_order + 1 > n:
            raise ValueError(f"{what}: max_order={max_order} is too high for {grp.name}: its "
                             f"{n} rotations tell orders 0..{(n - 1) // 2} apart (order n/2's "
                             "sine slot vanishes on them and is lost, higher orders alias "
                             f"onto lower ones); use max_order <= {(n - 1) // 2}")
        return n, reflections
    if samples is None:
        return default_samples(max_order), reflections
    m = 2 * max_order + 1
    samples = C.check_int(samples, "samples", what, minimum=m,
                          fix=f"at least 2*max_order+1 = {m} (fewer rotations cannot tell the "
                          "orders apart); a multiple of 4 keeps the 90-degree rotations exact")
    return samples, reflections


def _check_so3(grp, what: str) -> None:
    """A 3-D group with harmonic fields: SO(3)/O(3) (the cube's groups have regular ones)."""
    if grp.is_finite:
        raise ValueError(f"{what}: group={grp.name!r} is a finite 3-D group with regular fields "
                         "(use ELU on its slots); the Fourier nonlinearity of 3-D harmonic "
                         "fields takes 'so3' or 'o3'")


@cpu_cache(maxsize=256)
def _fourier_nl_cpu(n: int, reflections: bool, max_order: int):
    """``(A, A^+)``, float64 on CPU: ``A = rows * w`` samples a harmonic field on the ``n``
    (``2n``) elements, with ``w = [1, sqrt2, sqrt2, ...] / sqrt(2M+1)`` (escnn's normalization:
    unit-variance coefficients give unit-variance samples); ``A^+`` its pseudo-inverse."""
    w = torch.full((2 * max_order + 1,), math.sqrt(2.0), dtype=torch.float64, device="cpu")
    w[0] = 1.0
    a = _rows_cpu(n, reflections, max_order) * (w / math.sqrt(2 * max_order + 1))[None, :]
    return a, torch.linalg.pinv(a, rtol=1e-10)


def fourier_matrices(group: GroupLike, max_order: int, samples: int | None = None):
    """``(A, A^+)`` of :func:`fourier_nonlinearity`, float64 CPU copies."""
    n, refl = fourier_samples(group, max_order, samples)
    a, a_inv = _fourier_nl_cpu(n, refl, max_order)
    return a.clone(), a_inv.clone()


def fourier_nonlinearity(
    x: torch.Tensor,
    group: GroupLike,
    max_order: int | None = None,
    function: Callable[[torch.Tensor], torch.Tensor] = F.elu,
    samples: int | None = None,
    *,
    matrices: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Fourier nonlinearity: ``x -> A^+ function(A x)`` on every harmonic fiber.

    ``A`` evaluates the fiber as a function on sampled group elements, ``(A x)_h = <rho(h) e,
    x>`` (``e = [1, sqrt2, 0, sqrt2, 0, ...] / sqrt(2M+1)``); ``function`` acts on each sample;
    ``A^+`` (pseudo-inverse, least squares) transforms back. See
    :class:`~equilayers.nn.FourierNonlinearity` for the samples, exactness and measured errors.
    ``matrices``: ``(A, A^+)`` precomputed (the module passes its buffers); default from the
    process-wide cache. float16 inputs (and autocast to float16) are sampled in float32 and
    cast back: a sample can pass 65504 where the coefficients and the output do not.
    """
    grp = get(group)
    if max_order is None:
        if not grp.is_finite:
            raise ValueError(f"fourier_nonlinearity: {grp.name} needs max_order (the harmonic "
                             "fields' highest rotation order), e.g. max_order=2")
        max_order = _fourier_default_order(grp)
    if grp.spatial_dim == 3:
        _check_so3(grp, "fourier_nonlinearity")
        function = _check_function(function, "fourier_nonlinearity")
        return fourier_nonlinearity3d(x, max_order, function, samples, matrices=matrices)
    check_harmonic(x, max_order, "fourier_nonlinearity")
    function = _check_function(function, "fourier_nonlinearity")
    if matrices is None:
        n, refl = fourier_samples(grp, max_order, samples)
        matrices = _fourier_nl_cpu(n, refl, max_order)
    a, a_inv = matrix_pair(matrices, 2 * max_order + 1, "fourier_nonlinearity")
    return sample_and_fit(x, a, a_inv, function, lambda mat, v: _fiber_matmul(v, mat))
