"""The harmonic analysis of SO(3) and O(3), computed here: real spherical harmonics, real
Wigner-D matrices of any rotation, real Clebsch-Gordan coefficients (torch, float64).

Conventions (used by the SO(3)/O(3) field types, the steerable 3-D convs and their tests):

* Coordinates ``(x, y, z)`` are the volume's (:mod:`equilayers.groups._cubic`): ``x`` along
  the width, ``y`` up (against the height index), ``z`` along the depth index.
* Real spherical harmonics ``Y_l^m``, ``m = -l .. l`` in that order (slot ``m + l`` of an
  order-``l`` block), with ``z`` the polar axis, orthonormal on the unit sphere
  (``int Y_l^m Y_l'^m' dOmega = delta``: the "integral" normalisation), and no
  Condon-Shortley phase:

      Y_l^m = N_lm P_l^|m|(z) cos(m phi) (m > 0),   N_l0 P_l(z) (m = 0),
      Y_l^m = N_lm P_l^|m|(z) sin(|m| phi) (m < 0),
      N_lm = sqrt((2l + 1) / (4 pi) * (l - |m|)! / (l + |m|)!) * (sqrt 2 if m != 0),

  ``P_l^m`` the associated Legendre functions without the ``(-1)^m`` phase. Order 1 is
  ``sqrt(3 / (4 pi)) (y, z, x)``: the vector's components in the order ``m = -1, 0, 1``
  (escnn's real basis is the same: for the same rotation matrix, ``wigner_d(l, R)`` equals
  escnn 1.0.11's ``so3_group().irrep(l)``, and ``o3_group().irrep(l % 2, l)`` with the
  inversion, entry for entry, ``tests/test_escnn_so3.py``; e3nn's is not checked here).
* The real Wigner-D matrix ``D_l(R)`` of any orthogonal ``R`` is defined by
  ``Y_l(R u) = D_l(R) Y_l(u)`` for every unit vector ``u``: an orthogonal representation
  (``D(R1 R2) = D(R1) D(R2)``, ``D(R^T) = D(R)^T``). It is computed by least squares from
  the harmonics at fixed probe points (exact to float64 rounding, since ``Y_l(R u)`` lies in
  the span exactly). For ``R`` with ``det R = -1`` (O(3)) it gives ``D_l(-I) = (-1)^l``: a
  harmonic field of order ``l`` has the parity of ``Y_l``, ``(-1)^l`` (e3nn's ``0e + 1o +
  2e + ...``, escnn's ``irrep(l % 2, l)`` of ``o3_group()``: a function on the sphere).
* The real Clebsch-Gordan tensor ``Q[a, m, b]`` (``(2 l_out + 1, 2 J + 1, 2 l_in + 1)``,
  Frobenius norm 1, its first entry larger than ``1e-9`` in magnitude positive) is the
  intertwiner ``Y_J x V_l_in -> V_l_out``: ``D_out(R) Q(v, w) = Q(D_J(R) v, D_in(R) w)``.
  It is the complex one (Racah's formula) in the real basis above; it exists for
  ``|l_in - l_out| <= J <= l_in + l_out``.

Everything is computed lazily and cached per order (the probe points and their
pseudo-inverse, the Clebsch-Gordan tensors): arguments are ints, results CPU float64.
"""

from __future__ import annotations

import math

import torch

from .. import _checks as C
from .._cpu_cache import cpu_cache

__all__ = ["spherical_harmonics", "wigner_d", "wigner_blocks", "clebsch_gordan",
           "harmonic_slices"]

_CPU = torch.device("cpu")


def _check_order(value, name: str, what: str) -> int:
    return C.check_order(value, name, what, fix="a rotation order l, 2l+1 slots")


def harmonic_slices(max_order: int) -> list[slice]:
    """The slots of each order ``l = 0 .. max_order`` in a harmonic fiber of SO(3)/O(3):
    ``slice(l^2, (l + 1)^2)``."""
    return [slice(l * l, (l + 1) * (l + 1)) for l in range(max_order + 1)]


def spherical_harmonics(max_order: int, points: torch.Tensor) -> torch.Tensor:
    """Real spherical harmonics of orders ``0 .. max_order`` of the directions of ``points``.

    Args:
        max_order: ``L >= 0``.
        points: ``(..., 3)`` vectors ``(x, y, z)``, normalised here (a zero vector has no
            direction: its orders ``l >= 1`` are 0, order 0 is the constant).

    Returns:
        ``(..., (L + 1)^2)`` in the points' dtype: order ``l`` in slots ``l^2 .. (l+1)^2 - 1``,
        ``m = -l .. l`` (conventions in the module docstring).

    Example:
        >>> import math
        >>> y = spherical_harmonics(1, torch.tensor([0.0, 0.0, 2.0], dtype=torch.float64))
        >>> torch.allclose(y * math.sqrt(4 * math.pi), torch.tensor(
        ...     [1.0, 0.0, math.sqrt(3), 0.0], dtype=torch.float64))
        True
    """
    what = "spherical_harmonics"
    big = _check_order(max_order, "max_order", what)
    if not isinstance(points, torch.Tensor) or points.shape[-1:] != (3,):
        shape = tuple(points.shape) if isinstance(points, torch.Tensor) else type(points)
        raise ValueError(f"{what}: points must be a (..., 3) tensor of (x, y, z); got {shape}")
    if not points.is_floating_point():
        raise TypeError(f"{what}: points must be floating point; got {points.dtype}")
    norm = torch.linalg.vector_norm(points, dim=-1, keepdim=True)
    zero = norm == 0
    u = points / torch.where(zero, torch.ones_like(norm), norm)
    x, y, z = u.unbind(-1)
    out: list[torch.Tensor | None] = [None] * ((big + 1) ** 2)
    # cos(m phi) and sin(m phi) times sin(theta)^m: the real and imaginary parts of (x + i y)^m
    re, im = torch.ones_like(x), torch.zeros_like(x)
    pmm = torch.ones_like(x)  # P_m^m(z) / sin(theta)^m = (2m - 1)!!
    for m in range(big + 1):
        if m > 0:
            re, im = re * x - im * y, re * y + im * x
            pmm = pmm * (2 * m - 1)
        p_prev, p = torch.zeros_like(x), pmm  # P_{l-1}^m, P_l^m over sin^m, from l = m
        for l in range(m, big + 1):
            if l == m + 1:
                p_prev, p = p, z * (2 * m + 1) * pmm
            elif l > m + 1:
                p_prev, p = p, ((2 * l - 1) * z * p - (l + m - 1) * p_prev) / (l - m)
            n = math.sqrt((2 * l + 1) / (4 * math.pi) * math.factorial(l - m)
                          / math.factorial(l + m))
            if m == 0:
                out[l * l + l] = n * p
            else:
                n *= math.sqrt(2.0)
                out[l * l + l + m] = n * p * re
                out[l * l + l - m] = n * p * im
    y_all = torch.stack([t for t in out if t is not None], dim=-1)
    if bool(zero.any()):  # no direction: only the constant survives
        keep = torch.zeros((big + 1) ** 2, dtype=torch.bool, device=points.device)
        keep[0] = True
        y_all = torch.where(zero & ~keep, torch.zeros_like(y_all), y_all)
    return y_all


def _fibonacci(n: int) -> torch.Tensor:
    """``n`` well-spread unit vectors (a Fibonacci lattice), float64 CPU."""
    i = torch.arange(n, dtype=torch.float64, device=_CPU) + 0.5
    z = 1 - 2 * i / n
    phi = i * math.pi * (3 - math.sqrt(5))
    s = torch.sqrt(1 - z * z)
    return torch.stack([s * torch.cos(phi), s * torch.sin(phi), z], dim=-1)


@cpu_cache(maxsize=64)
def _probe(order: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Probe points ``P`` ``(N, 3)`` and ``pinv(Y_l(P))`` ``(2l+1, N)`` for :func:`wigner_d`."""
    pts = _fibonacci(2 * (2 * order + 1) ** 2 + 8)
    y = spherical_harmonics(order, pts)[:, order * order:]
    return pts, torch.linalg.pinv(y)


def _matrix(rotation, what: str) -> torch.Tensor:
    from ._so3 import orthogonal_matrix  # one check for every entry taking a rotation

    return orthogonal_matrix(rotation, "rotation", what)


def wigner_d(order: int, rotation) -> torch.Tensor:
    """The real Wigner-D matrix ``D_l(R)``, ``(2l+1, 2l+1)`` float64: ``Y_l(R u) = D_l(R)
    Y_l(u)`` (module docstring). ``rotation``: a ``3 x 3`` orthogonal matrix (a tensor or
    nested lists); ``det = -1`` gives O(3)'s action, with parity ``(-1)^l``.

    Example:
        >>> quarter = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
        >>> (wigner_d(1, quarter).round(decimals=12) + 0.0).tolist()  # (y, z, x) -> (x, z, -y)
        [[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]]
    """
    order = _check_order(order, "order", "wigner_d")
    r = _matrix(rotation, "wigner_d")
    if order == 0:
        return torch.ones(1, 1, dtype=torch.float64, device=_CPU)
    pts, pinv = _probe(order)
    moved = spherical_harmonics(order, pts @ r.T)[:, order * order:]  # (N, 2l+1)
    return (pinv @ moved).T.contiguous()


def wigner_stack(order: int, rotations: torch.Tensor) -> torch.Tensor:
    """:func:`wigner_d` of each of ``rotations`` ``(G, 3, 3)`` (float64 CPU, checked by the
    caller: a group's matrices) at once, ``(G, 2l+1, 2l+1)``: one spherical-harmonics call for
    all the moved probe points."""
    n = rotations.shape[0]
    if order == 0:
        return torch.ones(n, 1, 1, dtype=torch.float64, device=_CPU)
    pts, pinv = _probe(order)
    moved = torch.matmul(pts, rotations.transpose(1, 2))  # (G, N, 3)
    y = spherical_harmonics(order, moved.reshape(-1, 3))[:, order * order:]
    return torch.matmul(pinv, y.view(n, len(pts), -1)).transpose(1, 2).contiguous()


def wigner_blocks(max_order: int, rotation) -> torch.Tensor:
    """The block-diagonal ``((L+1)^2, (L+1)^2)`` matrix ``diag(D_0(R), ..., D_L(R))``: how
    ``R`` acts on a harmonic fiber of SO(3)/O(3) of orders ``0 .. L``."""
    big = _check_order(max_order, "max_order", "wigner_blocks")
    r = _matrix(rotation, "wigner_blocks")
    return torch.block_diag(*[wigner_d(l, r) for l in range(big + 1)])


def _cg_complex(j1: int, m1: int, j2: int, m2: int, j: int, m: int) -> float:
    """``<j1 m1 j2 m2 | j m>`` by Racah's formula: ``sqrt(pre) * total`` with ``pre`` and
    ``total`` exact rationals (Python integers over a common denominator), each rounded to
    float once."""
    if m1 + m2 != m or abs(m1) > j1 or abs(m2) > j2 or abs(m) > j:
        return 0.0
    f = math.factorial
    pre_num = ((2 * j + 1) * f(j + j1 - j2) * f(j - j1 + j2) * f(j1 + j2 - j) * f(j + m)
               * f(j - m) * f(j1 - m1) * f(j1 + m1) * f(j2 - m2) * f(j2 + m2))
    terms = []
    for k in range(j1 + j2 - j + 1):
        args = (k, j1 + j2 - j - k, j1 - m1 - k, j2 + m2 - k, j - j2 + m1 + k, j - j1 - m2 + k)
        if min(args) >= 0:
            terms.append((-1 if k % 2 else 1, math.prod(f(a) for a in args)))
    common = math.lcm(*(d for _, d in terms)) if terms else 1
    total = sum(sign * (common // d) for sign, d in terms)
    # int / int is correctly rounded: the same floats as the reduced fractions would give
    return math.sqrt(pre_num / f(j1 + j2 + j + 1)) * (total / common)


def _to_real(order: int) -> list[list[tuple[int, complex]]]:
    """``U`` with ``Y_real = U Y_complex`` (complex harmonics with the Condon-Shortley phase),
    rows and columns ``m = -l .. l``, as its rows' non-zero entries ``(column, value)``: at
    most two per row."""
    rows: list[list[tuple[int, complex]]] = [[] for _ in range(2 * order + 1)]
    s = 1 / math.sqrt(2)
    rows[order].append((order, 1 + 0j))
    for m in range(1, order + 1):
        rows[order + m] += [(order + m, (-1) ** m * s + 0j), (order - m, s + 0j)]
        rows[order - m] += [(order - m, 1j * s), (order + m, -1j * (-1) ** m * s)]
    return rows


def _sparse_apply(rows: list[list[tuple[int, complex]]], t: dict[tuple[int, int, int], complex],
                  axis: int, conj: bool) -> dict[tuple[int, int, int], complex]:
    """``sum_x U[r, x] t[..x..]`` (``conj(U)`` with ``conj``) over ``axis`` of the sparse
    3-tensor ``t``. Every entry of ``U`` and of ``t`` here is real or imaginary, so each
    product is one real multiplication and each output entry a sum of at most two of them:
    it rounds exactly as the dense complex product does."""
    by_col: dict[int, list[tuple[int, complex]]] = {}
    for r, row in enumerate(rows):
        for x, u in row:
            by_col.setdefault(x, []).append((r, u.conjugate() if conj else u))
    out: dict[tuple[int, int, int], complex] = {}
    for key, v in t.items():
        for r, u in by_col.get(key[axis], ()):
            new = ((r, key[1], key[2]) if axis == 0 else (key[0], r, key[2]) if axis == 1
                   else (key[0], key[1], r))
            out[new] = out.get(new, 0j) + u * v
    return out


@cpu_cache(maxsize=512)
def _clebsch_gordan(l_out: int, order: int, l_in: int) -> torch.Tensor:
    d_out, d_j, d_in = 2 * l_out + 1, 2 * order + 1, 2 * l_in + 1
    # the complex coefficients C[a, m, b] (real; 0 unless b = a - m), then Q[a, m, b] = sum
    # U_out[a, x] C[x, y, z] conj(U_J[m, y]) conj(U_in[b, z]), in plain Python on the
    # non-zero entries (a few hundred at most), one tensor at the end: per-entry torch calls
    # would cost more than the arithmetic
    c: dict[tuple[int, int, int], complex] = {}
    for a in range(-l_out, l_out + 1):
        for m in range(-order, order + 1):
            if abs(a - m) <= l_in:
                v = _cg_complex(order, m, l_in, a - m, l_out, a)
                if v:
                    c[a + l_out, m + order, a - m + l_in] = complex(v)
    q = _sparse_apply(_to_real(l_out), c, 0, False)
    q = _sparse_apply(_to_real(l_in), q, 2, True)
    q = _sparse_apply(_to_real(order), q, 1, True)
    # Q is real or imaginary: the two parts are both real intertwiners, of one line; keep the
    # larger, normalise it, make its first entry above 1e-9 positive and zero the rest below
    # 1e-15 (the norm in torch, the rest exact: a sign flip and a selection)
    imag = sum(v.imag ** 2 for v in q.values()) > sum(v.real ** 2 for v in q.values())
    full = torch.tensor([[[q.get((a, m, b), 0j) for b in range(d_in)] for m in range(d_j)]
                         for a in range(d_out)], dtype=torch.complex128, device=_CPU)
    part = full.imag if imag else full.real  # a strided view, whose norm rounds as before
    values = (part / part.norm()).flatten().tolist()
    sign = math.copysign(1.0, next(v for v in values if abs(v) > 1e-9))
    return torch.tensor([v * sign if abs(v) >= 1e-15 else 0.0 for v in values],
                        dtype=torch.float64, device=_CPU).view(d_out, d_j, d_in)


def clebsch_gordan(l_out: int, order: int, l_in: int) -> torch.Tensor:
    """The real Clebsch-Gordan tensor ``Q[a, m, b]`` coupling a harmonic of order ``J =
    order`` and an input of order ``l_in`` into ``l_out``: ``(2 l_out + 1, 2 J + 1,
    2 l_in + 1)`` float64, Frobenius norm 1 (module docstring). ``ValueError`` unless
    ``|l_in - l_out| <= order <= l_in + l_out``.

    Example:
        >>> clebsch_gordan(1, 1, 1).shape  # the cross product, up to scale
        torch.Size([3, 3, 3])
    """
    what = "clebsch_gordan"
    lo = _check_order(l_out, "l_out", what)
    j = _check_order(order, "order", what)
    li = _check_order(l_in, "l_in", what)
    if not abs(li - lo) <= j <= li + lo:
        raise ValueError(f"{what}: order={j} cannot couple l_in={li} to l_out={lo}: it must lie "
                         f"in |l_in - l_out| .. l_in + l_out = {abs(li - lo)} .. {li + lo}")
    return _clebsch_gordan(lo, j, li).clone()
