"""The Fourier nonlinearity of SO(3)/O(3) harmonic fields ``(B, C, (L+1)^2, D, H, W)``.

A harmonic fiber of orders ``0 .. L`` is a band-limited function on the sphere, ``f(u) =
sum_l Y_l(u) . v_l`` (real spherical harmonics, :func:`~equilayers.groups.spherical_harmonics`;
a rotation ``R`` acting on the fiber by the Wigner-D matrices rotates the function, ``f ->
f o R^-1``, and O(3)'s inversion acts by ``(-1)^l``, as on ``Y_l``). The nonlinearity samples
``f`` at ``S`` points on the sphere, applies a pointwise function to every sample and fits
the orders back by least squares: ``x -> A^+ function(A x)`` with ``A = Y(points)`` (escnn's
``QuotientFourierPointwise`` on the sphere). The points are unions of orbits of the cube's
full symmetry group O_h (signed permutations of the coordinates): the 6 face centres, 12 edge
midpoints and 8 vertices of the cube, then generic orbits of 48 points each, with one
quadrature weight per orbit (the fit back is weighted by them: unweighted, the symmetric sets'
aliasing made the off-grid error about 10 times larger). A cube symmetry permutes the points
and keeps the weights, so the map commutes with the 24 (48) grid rotations (and inversions)
exactly; other rotations move the points off themselves and are approximate (measured in
:class:`equilayers.nn.FourierNonlinearity`).
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Callable

import torch

from .. import _checks as C
from .._cpu_cache import cpu_cache
from ..groups import spherical_harmonics
from ..groups._spherical import _fibonacci
from ._harmonic3d import check_harmonic3d

__all__ = ["fourier_nonlinearity3d", "sphere_fourier_matrices", "sphere_quadrature",
           "sphere_samples"]

_CPU = torch.device("cpu")
#: The point sets ``(M, points, degree)``: a Fibonacci lattice of ``M`` points, whose points
#: inside the cube's fundamental triangle (x > y > z > 0) seed generic orbits of 48 points,
#: added to the 26 points of the cube's faces, edges and vertices; ``degree``: the highest
#: order the set's orbit weights integrate exactly (every weight positive; both checked in
#: tests/test_fourier3d.py).
_SETS = ((1, 26, 7), (48, 74, 9), (128, 170, 11), (192, 218, 13), (384, 362, 17))


def _signed_permutations(v) -> list[tuple[float, ...]]:
    out: dict[tuple[float, ...], None] = {}
    for p in itertools.permutations(range(3)):
        for s in itertools.product((1.0, -1.0), repeat=3):
            out[tuple(s[i] * float(v[p[i]]) + 0.0 for i in range(3))] = None
    return list(out)


def _orbits(lattice: int) -> list[list[tuple[float, ...]]]:
    units = [torch.tensor(v, dtype=torch.float64) for v in ((1, 0, 0), (1, 1, 0), (1, 1, 1))]
    orbits = [_signed_permutations((u / u.norm()).tolist()) for u in units]
    p = _fibonacci(lattice)
    inside = p[(p[:, 0] > p[:, 1] + 1e-3) & (p[:, 1] > p[:, 2] + 1e-3) & (p[:, 2] > 1e-3)]
    return orbits + [_signed_permutations(v) for v in inside.tolist()]


@cpu_cache(maxsize=16)
def sphere_quadrature(points: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(points (N, 3), weights (N,))`` of the O_h-invariant set of ``points`` points
    (:data:`_SETS`): one weight per orbit, integrating every spherical harmonic up to the
    set's degree exactly (weights sum to ``4 pi``), float64 on the CPU."""
    lattice, _, degree = next(s for s in _SETS if s[1] == points)
    orbits = _orbits(lattice)
    pts = torch.tensor([p for o in orbits for p in o], dtype=torch.float64, device=_CPU)
    which = torch.repeat_interleave(torch.arange(len(orbits)),
                                    torch.tensor([len(o) for o in orbits]))
    y = spherical_harmonics(degree, pts)
    sums = torch.zeros(len(orbits), y.shape[1], dtype=torch.float64).index_add_(0, which, y)
    target = torch.zeros(y.shape[1], 1, dtype=torch.float64)
    target[0] = math.sqrt(4 * math.pi)  # the integral of Y_0 = 1 / sqrt(4 pi)
    w = torch.linalg.lstsq(sums.T, target).solution
    return pts, w[which, 0].contiguous()


def default_sphere_samples(max_order: int) -> int:
    """The default point set for orders ``0 .. L``: the smallest whose quadrature degree is at
    least ``4 L + 4`` (the largest beyond ``L = 3``): 26 points for ``L = 0``, 74 for 1, 218
    for 2, 362 for 3 and above."""
    return next((n for _, n, degree in _SETS if degree >= 4 * max_order + 4), _SETS[-1][1])


def sphere_samples(max_order: int, samples: int | None = None,
                   what: str = "fourier_nonlinearity") -> int:
    """The number of sphere points of the set used for orders ``0 .. max_order``: the smallest
    of 26, 74, 170, 218, 362 with at least ``samples`` points (default
    :func:`default_sphere_samples`) whose quadrature degree is at least ``2 L`` (so that the
    fit back recovers every band-limited fiber exactly)."""
    able = [n for _, n, degree in _SETS if degree >= 2 * max_order]
    if not able:
        raise ValueError(f"{what}: max_order={max_order} is above the SO(3) Fourier "
                         f"nonlinearity's 8 (its largest point set integrates order "
                         f"{_SETS[-1][2]} exactly; 2 max_order is needed)")
    if samples is None:
        samples = default_sphere_samples(max_order)
    else:
        samples = C.check_int(samples, "samples", what, minimum=1, maximum=max(able),
                              fix=f"the minimum number of sphere points; the sets for "
                              f"max_order={max_order} have {able}")
    return min(n for n in able if n >= samples)


@cpu_cache(maxsize=64)
def _sphere_fourier_cpu(max_order: int, samples: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(A, A^+)``, float64 on the CPU: ``A = Y(points) / |Y(u)|`` (unit-variance
    coefficients give unit-variance samples: ``|Y(u)|`` is the same at every ``u``) and the
    quadrature-weighted least-squares fit back, ``A^+ = (A^T W A)^-1 A^T W``."""
    pts, w = sphere_quadrature(samples)
    y = spherical_harmonics(max_order, pts)
    a = y / y.norm(dim=1).mean()
    aw = a.T * w
    return a, torch.linalg.solve(aw @ a, aw)


def sphere_fourier_matrices(max_order: int, samples: int | None = None):
    """``(A, A^+)`` of :func:`fourier_nonlinearity3d`, float64 CPU copies."""
    a, a_inv = _sphere_fourier_cpu(max_order, sphere_samples(max_order, samples))
    return a.clone(), a_inv.clone()


def _fiber(mat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,bcjdhw->bcidhw", mat.to(dtype=x.dtype, device=x.device), x)


def sample_and_fit(x: torch.Tensor, a: torch.Tensor, a_inv: torch.Tensor,
                   function: Callable[[torch.Tensor], torch.Tensor],
                   fiber: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``fiber(a_inv, function(fiber(a, x)))``, the Fourier nonlinearity of both layouts.

    A sample is bounded only by the fiber's norm (each row of ``A`` has norm 1), up to
    ``sqrt(F)`` times the largest coefficient, so a float16 fiber whose coefficients and
    whose output fit in float16 can have samples above its 65504 (measured: coefficients of
    3e4-4e4 gave inf, then NaN). So a float16 input (or ``torch.autocast`` to float16 on its
    device) is sampled, mapped and fitted back in float32, autocast off, and cast back to
    ``x``'s dtype (as :func:`~equilayers.functional.norm_nonlinearity` computes its norms);
    bfloat16 has float32's range and keeps its own (cheaper) path (:func:`float16_guard`)."""
    guard = float16_guard(x)
    if guard is None:
        return fiber(a_inv, function(fiber(a, x)))
    ct, off = guard
    with off:
        y = fiber(a_inv.to(ct), function(fiber(a.to(ct), x.to(ct))))
    return y.to(x.dtype)


def float16_guard(x: torch.Tensor) -> tuple[torch.dtype, contextlib.AbstractContextManager
                                             ] | None:
    """``None`` where ``x``'s op can run as it is, else ``(dtype, context)``: compute in
    ``dtype`` (float32; float64 stays) inside ``context`` (autocast off), then cast back to
    ``x``'s dtype. Guarded: a float16 ``x``, and ``torch.autocast`` to float16 on its device,
    read in eager mode. A compiled graph cannot read the autocast state on torch's floor
    (torch 2.6's dynamo cannot trace ``torch.amp.is_autocast_available``), so it is always
    guarded: autocast off and float32 there (under autocast to bfloat16 the output is then
    float32, not bfloat16; to float16 it was inf and NaN, unguarded)."""
    dev = x.device.type
    if torch.compiler.is_compiling():
        off = (torch.autocast(dev, enabled=False) if dev in ("cpu", "cuda")
               else contextlib.nullcontext())
        return (torch.float64 if x.dtype == torch.float64 else torch.float32), off
    amp = C.autocast_on(dev) and torch.get_autocast_dtype(dev) == torch.float16
    if x.dtype != torch.float16 and not amp:
        return None
    return torch.float32, (torch.autocast(dev, enabled=False) if amp
                           else contextlib.nullcontext())


def fourier_nonlinearity3d(
    x: torch.Tensor,
    max_order: int,
    function: Callable[[torch.Tensor], torch.Tensor],
    samples: int | None = None,
    *,
    matrices: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """``x -> A^+ function(A x)`` on every SO(3)/O(3) harmonic fiber (module docstring);
    ``matrices``: ``(A, A^+)`` precomputed (the module passes its buffers)."""
    what = "fourier_nonlinearity"
    check_harmonic3d(x, max_order, what)
    if matrices is None:
        matrices = _sphere_fourier_cpu(max_order, sphere_samples(max_order, samples, what))
    a, a_inv = matrix_pair(matrices, (max_order + 1) ** 2, what)
    return sample_and_fit(x, a, a_inv, function, _fiber)


def matrix_pair(matrices: object, f: int, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``matrices`` checked as ``(A, A^+)``, two tensors of shapes ``(S, f)`` and ``(f, S)``
    (a string or a list of ints was unpacked and failed on ``.dim()``)."""
    if not (isinstance(matrices, (tuple, list)) and len(matrices) == 2
            and all(isinstance(m, torch.Tensor) for m in matrices)):
        raise TypeError(f"{what}: matrices={matrices!r} must be None or a pair of tensors "
                        f"(A, A^+) of shapes (S, {f}) and ({f}, S), e.g. a FourierNonlinearity's "
                        "(sample_matrix, inverse_matrix)"[:400])
    a, a_inv = matrices
    for name, m in (("matrices[0]", a), ("matrices[1]", a_inv)):
        C.check_tensor(m, name, what)  # floating: a complex one was cast to its real part
    if a.dim() != 2 or a.shape[1] != f or tuple(a_inv.shape) != (f, a.shape[0]):
        raise ValueError(f"{what}: matrices must be (A, A^+) of shapes (S, {f}) and ({f}, S); "
                         f"got {tuple(a.shape)} and {tuple(a_inv.shape)}")
    return a, a_inv
