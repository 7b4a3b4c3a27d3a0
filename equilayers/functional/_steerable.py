"""Steerable filter bases in closed form: circular harmonics times Gaussian rings.

A filter is sampled on the ``k x k`` grid at offsets ``q = (x, y)`` with ``x = column - c`` and
``y = c - row`` (``c = (k - 1) / 2``, the centre pixel, or for an even ``k`` the point between
the four middle ones, as escnn's; ``y`` up, so a positive angle is counter-clockwise as
displayed). Every basis function is a product of a radial ring and an angular harmonic,

    b(q) = exp(-(|q| - r_i)^2 / (2 sigma_i^2)) * e^{i f phi(q)},

on rings ``r_i = 0, 1, ..., k // 2``: the centre "ring" is the centre pixel alone, the inner
rings have ``sigma = 0.6`` and the outer ring ``r = k // 2`` has ``sigma = 0.4`` (a wider one
reaches into the corners, which only the diagonals have). The angular frequency is capped per
ring, ``|f| <= r_i + 1`` inside and ``|f| <= 2`` on the outer ring (only ``f = 0`` at the
centre): higher frequencies alias on the grid (measured errors per element and per output order,
and the input bands they hold for: :mod:`._basis_settings`). The former caps (``2 r`` inside,
``2 r - 1`` outside) let frequencies 3 and 4 onto radius-2 rings (0.6 to 1.9 in one element,
camera image), which made order-2 fields about twice as inexact as escnn's. For kernel sizes 1
to 7 these are escnn's default rings, widths and caps for ``R2Conv`` (the two bases span the
same filters there); from ``k = 9`` escnn allows up to ``2 r`` on inner rings, which we do not
(``f = 6`` on radius 3: error 0.27). Rotating such a function is exact (``phi -> phi - t``), so
a basis built from them obeys the kernel constraint ``K(g q) = rho_out(g) K(q) rho_in(g)^{-1}``
exactly as continuous functions, and on the grid for each element mapping the grid onto itself.

Harmonic fibers (complex notation ``z_m = c_m + i s_m``): a block from order ``n`` to order
``m`` is the real-linear map ``z -> alpha(q) z + beta(q) conj(z)``; rotation-equivariance needs
``alpha`` to carry angular frequencies ``f = m - n`` and ``beta`` ``f = m + n`` (modulo ``N``
for C_N), each with a complex radial coefficient; the flip of O(2)/D_N keeps the coefficients
that are real when ``f + m + n`` is even and imaginary when it is odd. Order 0 is one real slot.

Regular fibers of C_N/D_N: ``K[a, b](q) = psi_{a^-1 b}(a^-1 q)`` with ``psi`` free in the
band-limited space above, i.e. the ``|G|`` rotated (and flipped) copies of continuous filters,
evaluated analytically at the rotated coordinates (no pixel interpolation).

Even ``k``: the default rings are ``1, ..., k/2 - 1`` (escnn's, less its centre ring, which
reaches no tap), and for ``k = 2`` one ring of radius ``sqrt(2)/2`` through the four taps
(escnn's default basis is empty there). From ``k = 6`` the last ring keeps escnn's cap ``k/2``,
above its ``alias_free_cap`` 2 (orders only it reaches warn). Functions zero on every tap: left out.

Everything above describes the default settings; ``sigma``, ``frequencies_cutoff`` and
``rings`` (escnn's ``R2Conv`` settings, same meaning: :mod:`._basis_settings`) move, widen or
band-limit the rings. The constraint holds exactly for any settings; the off-grid error does
not (measured in :func:`steerable_basis`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .. import _checks as C
from .._cpu_cache import cpu_cache, default_device
from ..groups import Group, GroupLike, get
from ..groups._fourier_basis import fourier_row_dims, group_fourier_basis
from ..groups._group import inverse_cayley_table
from ._basis_settings import (
    VANISHING,
    BasisSpec,
    Cutoff,
    basis_frequency_cap,
    default_spec,
    normalize_settings,
    resolve_settings,
    settings_repr,
)

__all__ = ["steerable_basis", "basis_frequency_cap"]

_SUPPORTED = (
    "trivial->trivial, trivial->harmonic, harmonic->trivial and harmonic->harmonic for every "
    "group; trivial->regular and regular->regular for finite groups (cN, dN)"
)


# Everything below that feeds the process-wide caches is built with an explicit
# device="cpu" (float64): under ``with torch.device("meta"):`` a factory call without one would
# store meta tensors in the cache and poison every later layer.
_CPU = torch.device("cpu")


def _grid(k: int) -> tuple[torch.Tensor, torch.Tensor]:
    c = (k - 1) / 2  # the centre pixel of an odd grid; between the four middle ones of an even one
    idx = torch.arange(k, dtype=torch.float64, device=_CPU)
    x = (idx - c)[None, :].expand(k, k)
    y = (c - idx)[:, None].expand(k, k)
    return torch.sqrt(x * x + y * y), torch.atan2(y, x)


def _radials(spec: BasisSpec, r: torch.Tensor) -> torch.Tensor:
    """``(n_rings, k, k)``: ``exp(-(|q| - r_i)^2 / (2 sigma_i^2))`` (the default centre ring,
    sigma 0.005, is the centre pixel alone: exactly 1 there and exactly 0 a pixel away)."""
    return torch.stack([torch.exp(-((r - radius) ** 2) / (2 * sigma * sigma))
                        for radius, sigma, _ in spec])


def _freqs(cap: int, residue: int, n: int | None) -> list[int]:
    """Frequencies ``|f| <= cap`` with ``f == residue`` (SO(2)) or ``f == residue mod n``."""
    if n is None:
        return [residue] if abs(residue) <= cap else []
    return [f for f in range(-cap, cap + 1) if (f - residue) % n == 0]


def _check_kernel_size(kernel_size) -> int:
    if not C.is_int(kernel_size) or kernel_size < 1:
        raise ValueError(f"kernel_size must be an integer >= 1 (the filter's width in taps); got "
                         f"{kernel_size!r}")
    return int(kernel_size)  # numpy ints too


def _check_order(order, rep: str, which: str) -> int:
    if rep != "harmonic":
        return 0
    if order is None:
        raise ValueError(f"{which}_rep='harmonic' needs {which}_order=M (>= 0), the maximal "
                         "rotation order of the fiber; got None")
    return C.check_order(order, f"{which}_order", "steerable_basis")


def _coefs(group: Group, f: int, m: int, n: int) -> list[complex]:
    if not group.has_reflections:
        return [1.0 + 0j, 1j]
    return [1.0 + 0j] if (f + m + n) % 2 == 0 else [1j]


# Patterns (P_u, P_v) of one block: the block is P_u * u + P_v * v with u + i v the complex
# function coef * ring * e^{i f phi}.
_P_ALPHA = (((1, 0), (0, 1)), ((0, -1), (1, 0)))  # z -> w z
_P_BETA = (((1, 0), (0, -1)), ((0, 1), (1, 0)))  # z -> w conj(z)
_P_GAMMA = (((1, 0), (0, 0)), ((0, 0), (1, 0)))  # x -> w x (column)
_P_DELTA = (((1, 0), (0, 0)), ((0, -1), (0, 0)))  # z -> Re(w z) (row)
_P_EPS = (((1, 0), (0, 0)), ((0, 0), (0, 0)))  # x -> Re(w) x


def _block_specs(group: Group, m: int, n: int, spec: BasisSpec) -> list[tuple]:
    """``(ring, f, coef, pattern)`` for the basis of the ``order n -> order m`` block."""
    out = []
    nn_ = group.planar_params()[0]
    for i, (_, _, cap) in enumerate(spec):
        if m == 0 and n == 0:
            terms = [(f, _P_EPS) for f in _freqs(cap, 0, nn_) if f >= 0]
        elif n == 0:
            terms = [(f, _P_GAMMA) for f in _freqs(cap, m, nn_)]
        elif m == 0:
            terms = [(f, _P_DELTA) for f in _freqs(cap, -n, nn_)]
        else:
            terms = [(f, _P_ALPHA) for f in _freqs(cap, m - n, nn_)]
            terms += [(f, _P_BETA) for f in _freqs(cap, m + n, nn_)]
        for f, pat in terms:
            for coef in _coefs(group, f, m, n):
                if pat is _P_EPS and f == 0 and coef.imag:
                    continue  # Re(i) = 0
                out.append((i, f, coef, pat))
    return out


def _ring_table(k: int, spec: BasisSpec) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r, phi = _grid(k)
    return r, phi, _radials(spec, r)


def _harmonic_basis(group: Group, m_out: int, m_in: int, k: int,
                    spec: BasisSpec) -> torch.Tensor:
    f_out, f_in = 2 * m_out + 1, 2 * m_in + 1
    specs = []
    pu: list[list[list[float]]] = []
    pv: list[list[list[float]]] = []
    for m in range(m_out + 1):
        for n in range(m_in + 1):
            for i, f, coef, pat in _block_specs(group, m, n, spec):
                specs.append((i, f, coef))
                for dst, p in ((pu, pat[0]), (pv, pat[1])):
                    full = [[0.0] * f_in for _ in range(f_out)]
                    for a in range(2 if m else 1):
                        for b in range(2 if n else 1):
                            full[(2 * m - 1 if m else 0) + a][(2 * n - 1 if n else 0) + b] = \
                                float(p[a][b])
                    dst.append(full)
    if not specs:
        return torch.zeros(0, f_out, f_in, k, k, dtype=torch.float64, device=_CPU)
    r, phi, rings = _ring_table(k, spec)
    ring = torch.tensor([s[0] for s in specs], device=_CPU)
    freq = torch.tensor([float(s[1]) for s in specs], dtype=torch.float64, device=_CPU)
    cre = torch.tensor([s[2].real for s in specs], dtype=torch.float64,
                       device=_CPU)[:, None, None]
    cim = torch.tensor([s[2].imag for s in specs], dtype=torch.float64,
                       device=_CPU)[:, None, None]
    ang = freq[:, None, None] * phi
    cos, sin = torch.cos(ang), torch.sin(ang)
    radial = rings[ring].masked_fill((freq != 0)[:, None, None] & (r == 0), 0.0)
    u = radial * (cre * cos - cim * sin)
    v = radial * (cre * sin + cim * cos)
    pu_t = torch.tensor(pu, dtype=torch.float64, device=_CPU)
    pv_t = torch.tensor(pv, dtype=torch.float64, device=_CPU)
    basis = (pu_t[:, :, :, None, None] * u[:, None, None]
             + pv_t[:, :, :, None, None] * v[:, None, None])
    return basis[basis.flatten(1).norm(dim=1) > VANISHING]


def _rotated_table(group: Group, k: int, spec: BasisSpec | None = None) -> torch.Tensor:
    """``T[a, j]``: free function ``j`` of the unconstrained band-limited space (ring times
    ``cos f phi`` or ``sin f phi``) evaluated at ``a^-1 q``, for every element ``a``:
    ``(|G|, n_funcs, k, k)``."""
    spec = default_spec(k) if spec is None else spec
    r, phi, rings = _ring_table(k, spec)
    ring, freq, is_sin = [], [], []
    for i, (_, _, cap) in enumerate(spec):
        for f in range(cap + 1):
            for s in ((0, 1) if f > 0 else (0,)):
                ring.append(i)
                freq.append(float(f))
                is_sin.append(bool(s))
    els = group.elements()
    t = torch.tensor([a.angle for a in els], dtype=torch.float64, device=_CPU)[:, None, None]
    refl = torch.tensor([a.reflection for a in els], device=_CPU)[:, None, None]
    # a = r^t m^s; a^-1 q has polar angle phi - t (s = 0) or pi - phi + t (s = 1)
    ang = torch.where(refl, math.pi - phi + t, phi - t)  # (G, k, k)
    freq_t = torch.tensor(freq, dtype=torch.float64, device=_CPU)[None, :, None, None]
    arg = freq_t * ang[:, None]
    is_sin_t = torch.tensor(is_sin, dtype=torch.bool, device=_CPU)[None, :, None, None]
    val = torch.where(is_sin_t, torch.sin(arg), torch.cos(arg))
    radial = rings[torch.tensor(ring, dtype=torch.long, device=_CPU)].masked_fill(
        (freq_t[0] != 0) & (r == 0), 0.0)
    table = val * radial
    return table[:, table[0].flatten(1).norm(dim=1) > VANISHING]


def _regular_table(group: Group, k: int, spec: BasisSpec | None = None) -> torch.Tensor:
    """The ``|G|`` rotated copies ``psi_j(a^-1 q)``, each scaled to the norm that makes the
    expanded basis element unit-norm: ``(|G|, J, k, k)`` float64 (``|G| J k^2`` values; the
    dense basis only places them)."""
    table = _rotated_table(group, k, spec)  # (G, J, k, k)
    # every rotated copy of psi_j has the norm of psi_j (rotations by grid-exact evaluation)
    norms = table[0].flatten(1).norm(dim=1).clamp_min(1e-12)
    return table / (norms[None, :, None, None] * math.sqrt(table.shape[0]))


def _regular_basis(group: Group, table: torch.Tensor, lifting: bool, dtype: torch.dtype,
                   device) -> torch.Tensor:
    """The dense basis from :func:`_regular_table`, written once in ``dtype`` on ``device``
    (the public :func:`steerable_basis` layout; the layers use the compact table instead)."""
    table = table.to(dtype=dtype, device=device)
    g, j, k = table.shape[0], table.shape[1], table.shape[-1]
    if lifting:  # K[a, 0] = psi(a^-1 q)
        return table.permute(1, 0, 2, 3).unsqueeze(2).clone(memory_format=torch.contiguous_format)
    # basis (h, j): K[a, b] = [a^-1 b == h] psi_j(a^-1 q), i.e. b = a h; one scatter of the
    # |G|^2 J k^2 non-zeros (a 1/|G| fraction) through the Cayley table
    cay = group.cayley_table.to(device)  # cay[a, h] = slot of a * h
    out = torch.zeros(g, j, g, g, k, k, dtype=dtype, device=device)
    a_idx = torch.arange(g, device=device)[:, None].expand(g, g)  # [a, h]
    h_idx = torch.arange(g, device=device)[None, :].expand(g, g)
    out[h_idx, :, a_idx, cay] = table[:, None].expand(g, g, j, k, k)
    # element (k, j) = sum_h F[k, h] (h, j): the group axis in the group's Fourier basis, the
    # parametrization of every layer (see equilayers.groups.group_fourier_basis)
    fourier = group_fourier_basis(group, dtype=dtype, device=device)
    out = (fourier @ out.reshape(g, -1)).reshape(g, j, g, g, k, k)
    return out.reshape(g * j, g, g, k, k)


def inverse_cayley_index(group: GroupLike, device=None) -> torch.Tensor:
    """``idx[a * |G| + b]`` = slot of ``a^-1 b`` for the regular fiber order of a finite group
    (int64, ``(|G|^2,)``, on ``device``, default the default device): row ``a^-1`` of the
    Cayley table."""
    device = default_device() if device is None else device
    return inverse_cayley_table(get(group)).reshape(-1).to(device, copy=True)


def regular_table(group: GroupLike, kernel_size: int, *,
                  sigma: float | Sequence[float] | None = None,
                  frequencies_cutoff: Cutoff | None = None, rings: Sequence[float] | None = None,
                  dtype: torch.dtype | None = None,
                  device: torch.device | str | None = None) -> torch.Tensor:
    """The compact form of the regular steerable basis: ``T[a, j] = psi_j(a^-1 q)`` scaled as
    in :func:`steerable_basis`, ``(|G|, J, k, k)`` (a fresh tensor). ``sigma``,
    ``frequencies_cutoff``, ``rings``: the basis settings, as in :func:`steerable_basis`.

    The dense ``trivial->regular`` basis is ``T`` permuted to ``(J, |G|, 1, k, k)``; the dense
    ``regular->regular`` basis element ``(h, j)`` holds ``T[a, j]`` at slot pair ``(a, a h)``
    and zeros elsewhere, so it is ``|G|`` times larger than ``T``. :func:`expand_regular`
    builds the filters from ``T`` directly.
    """
    grp = get(group)
    grp.require_finite("regular_table", "use a harmonic basis (steerable_basis with "
                       "out_rep='harmonic')")
    kernel_size = _check_kernel_size(kernel_size)
    spec = resolve_settings(kernel_size, sigma, frequencies_cutoff, rings, "regular_table")
    return _cached(grp, "trivial", "regular", kernel_size, 0, 0, spec).to(
        dtype=dtype or torch.get_default_dtype(), device=device, copy=True)


def _normalize(basis: torch.Tensor) -> torch.Tensor:
    if basis.shape[0] == 0:
        return basis
    norms = basis.flatten(1).norm(dim=1).clamp_min(1e-12)
    return basis / norms.view(-1, *([1] * (basis.dim() - 1)))


@cpu_cache(maxsize=128)
def _cached(group: Group, in_rep: str, out_rep: str, k: int, m_in: int, m_out: int,
            spec: BasisSpec | None = None) -> torch.Tensor:
    """The float64 CPU basis (or compact regular table), per group, reps, ``k``, orders and
    basis spec (``None``: the default settings). Callers copy it before handing it out."""
    if out_rep == "regular":  # the compact table; the dense basis is placed per call
        return _regular_table(group, k, spec)
    return _normalize(_harmonic_basis(group, m_out, m_in, k,
                                      default_spec(k) if spec is None else spec))


@cpu_cache(maxsize=128)
def _irrep_scale(group: Group, in_rep: str, out_rep: str, k: int, m_in: int, m_out: int,
                 spec: BasisSpec | None = None) -> torch.Tensor:
    """``sqrt(d_j)`` per basis element (float64, CPU): ``d_j`` the dimension of the output
    irrep element ``j`` maps into (averaged by energy when it reaches several), so that the
    elements of the layers' parametrization have norm ``sqrt(d_out)``, escnn's (measured on
    its ``R2Conv``: 1 into one-dimensional output irreps, sqrt 2 into two-dimensional ones).
    With Adam, which steps every coordinate alike, this sets how fast each output irrep
    learns; the init divides it out again (the filters' distribution does not change)."""
    if out_rep == "regular":
        table, dims = _cached(group, "trivial", "regular", k, 0, 0, spec), fourier_row_dims(group)
        energy = _regular_energy(group, table, in_rep == "trivial")
    else:
        basis = _cached(group, in_rep, out_rep, k, m_in, m_out, spec)
        energy = basis.square().sum(dim=(2, 3, 4))  # (nb, F_out)
        # slot 0 (order 0) is one-dimensional; an order m >= 1 pair is two-dimensional, but
        # for C_N/D_N the Nyquist order N/2 is one irrep of dimension 1 (its s-slot carries no
        # irrep of its own: zero for the Fourier transform of a regular field, not for a conv
        # output, where it holds 0.37 of the energy for C4)
        n = group.planar_params()[0]
        nyquist = (n // 2) if n is not None and n % 2 == 0 else -1
        dims = torch.tensor([1.0 if s == 0 or (s + 1) // 2 == nyquist else 2.0
                             for s in range(energy.shape[1])], dtype=torch.float64)
    d = (energy @ dims) / energy.sum(1).clamp_min(1e-300)
    return d.sqrt()


def _regular_energy(group: Group, table: torch.Tensor, lifting: bool) -> torch.Tensor:
    """``E[e, r]``, the energy of regular element ``e = (kk, j)`` (``F[kk, a^-1 b] T[a, j]`` at
    slots ``(a, b)``) in output Fourier row ``r``: ``(F (C_kk * Gram_j) F^T)[r, r]``, ``C_kk[a,
    a'] = sum_h F[kk, h] F[kk, a'^-1 a h]`` (the dense basis took 9 s, 3.7 GB for d16, k 11)."""
    fourier, t = group_fourier_basis(group), table.to(torch.float64).flatten(2)  # T: (g, J, k k)
    g, j = t.shape[0], t.shape[1]
    if lifting:  # element j holds T[a, j] at output slot a
        return (fourier @ t.reshape(g, -1)).reshape(g, j, -1).square().sum(2).t()
    auto = (fourier[:, None, :] * fourier[:, group.cayley_table]).sum(2)  # [kk, u]
    mix = auto[:, inverse_cayley_table(group).t()]  # [kk, a, a']: auto[kk, a'^-1 a]
    gram = torch.einsum("ajq,bjq->jab", t, t)  # [j, a, a']
    return torch.einsum("ra,kjab,rb->kjr", fourier, mix[:, None] * gram, fourier).reshape(-1, g)


def irrep_scale(group: GroupLike, in_rep: str, out_rep: str, kernel_size: int, *,
                in_order: int | None = None, out_order: int | None = None,
                sigma=None, frequencies_cutoff=None, rings=None) -> torch.Tensor:
    """The per-element scale of :func:`steerable_basis` relative to unit norm (``(num_basis,)``,
    float64): see the docstring of :func:`steerable_basis`."""
    grp = get(group)
    spec = resolve_settings(kernel_size, sigma, frequencies_cutoff, rings, "irrep_scale")
    m_in = _check_order(in_order, in_rep, "in")
    m_out = _check_order(out_order, out_rep, "out")
    return _irrep_scale(grp, in_rep, out_rep, kernel_size, m_in, m_out, spec).clone()


def check_basis(group: GroupLike, in_rep: str, out_rep: str, kernel_size: int,
                in_order: int | None, out_order: int | None, sigma, frequencies_cutoff, rings,
                what: str, orders: tuple[str, str] = ("in_order", "out_order")
                ) -> tuple[Group, BasisSpec | None, int, int]:
    """The checks of :func:`steerable_basis` (the reps, the orders, the settings and a
    non-empty basis), named as ``what`` (the function the user called, whose arguments for
    the two orders are ``orders``): ``(group, spec, in_order, out_order)``."""
    grp = get(group)
    for name, rep in (("in_rep", in_rep), ("out_rep", out_rep)):
        if rep not in ("trivial", "regular", "harmonic"):
            raise ValueError(f"{name}={rep!r} is not a steerable field type; use 'trivial', "
                             "'harmonic' or (finite groups) 'regular'")
    kernel_size = _check_kernel_size(kernel_size)
    spec = resolve_settings(kernel_size, sigma, frequencies_cutoff, rings, what)
    m_in = _check_order(in_order, in_rep, "in")
    m_out = _check_order(out_order, out_rep, "out")
    if "regular" in (in_rep, out_rep):
        grp.require_finite(what, "use in_rep/out_rep='harmonic' with a max_order")
        if out_rep != "regular":
            raise ValueError(f"basis {in_rep}->{out_rep} is not supported (supported: "
                             f"{_SUPPORTED}); map regular fields to harmonic ones with "
                             "RegularToHarmonic first")
        if in_rep == "harmonic":
            raise ValueError(f"basis harmonic->regular is not supported (supported: "
                             f"{_SUPPORTED}); use HarmonicToRegular after a harmonic conv")
    if out_rep == "regular":  # compact table (|G|, J, k, k)
        empty = _cached(grp, "trivial", "regular", kernel_size, 0, 0, spec).shape[1] == 0
    else:
        empty = _cached(grp, in_rep, out_rep, kernel_size, m_in, m_out, spec).shape[0] == 0
    if empty:  # only settings empty it: the default rings carry order 0 (on the middle taps)
        given = settings_repr(*normalize_settings(kernel_size, sigma, frequencies_cutoff,
                                                  rings, what))[2:]
        named = "".join(f", {n}={m}" for n, m, rep in ((orders[0], m_in, in_rep),
                                                         (orders[1], m_out, out_rep))
                        if rep == "harmonic")
        raise ValueError(f"{what}: the steerable basis is empty with {given} for {in_rep}->"
                         f"{out_rep} fields of {grp.name} (kernel_size={kernel_size}{named}): "
                         "no ring carries a frequency the constraint allows; raise "
                         "frequencies_cutoff or add rings")
    return grp, spec, m_in, m_out


def steerable_basis(
    group: GroupLike,
    in_rep: str,
    out_rep: str,
    kernel_size: int,
    *,
    in_order: int | None = None,
    out_order: int | None = None,
    sigma: float | Sequence[float] | None = None,
    frequencies_cutoff: Cutoff | None = None,
    rings: Sequence[float] | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The steerable filter basis for ``in_rep -> out_rep`` fields of ``group``.

    Every element ``B[j]`` of the basis is a ``(F_out, F_in, k, k)`` filter that obeys the
    kernel constraint ``K(g q) = rho_out(g) K(q) rho_in(g)^{-1}`` for every ``g`` of the group
    (as a continuous function; on the pixel grid exactly for rotations by multiples of 90
    degrees and the flip), so ``F.conv2d`` with any linear combination is equivariant. Built in
    closed form from circular harmonics on Gaussian rings (see the module docstring). Each
    element has Frobenius norm ``sqrt(d)``, ``d`` the dimension of the output irrep it maps
    into (1 for order 0 and the one-dimensional irreps, 2 for a rotation order; averaged by
    energy where an element reaches several), as escnn's ``R2Conv`` elements: with Adam every
    coordinate takes steps of the same size, so this sets how fast each output irrep learns
    (measured: +1.5 points on the C8 model of the accuracy family, matching e2cnn's).
    For regular -> regular fields the group axis of the element index is in the group's
    Fourier basis (element ``(k, j)`` at ``k * J + j``, see
    :func:`~equilayers.groups.group_fourier_basis`). Results are cached (float64) per
    arguments; a fresh tensor is returned.

    Args:
        group: ``"cN"``, ``"dN"`` (any N), ``"so2"`` or ``"o2"``.
        in_rep, out_rep: ``"trivial"`` (F = 1), ``"harmonic"`` (F = 2M + 1) or, for finite
            groups, ``"regular"`` (F = |G|; supported: trivial->regular, regular->regular).
        kernel_size: ``k >= 1``; an even ``k`` is sampled around the point between the four
            middle pixels (exact on the grid as an odd one; see the module docstring).
        in_order, out_order: the maximal rotation order ``M`` of a harmonic in/out fiber.
        sigma, frequencies_cutoff, rings: the basis settings, with escnn's ``R2Conv`` meaning
            (see :mod:`._basis_settings`): the ring radii in filter taps (default
            ``0..k//2``), their Gaussian widths (a number for all or one per ring; default
            0.6, 0.4 on the last ring, the centre pixel alone at radius 0) and the largest
            angular frequency per ring (``c``: ``|f| <= c * radius``; a callable radius ->
            largest frequency; a list, one per ring; default 0 at the centre, ``r + 1``
            inside, 2 on the outer ring). ``None`` keeps the default, which is escnn's for
            ``k <= 7``. Off-grid errors of a few settings: Equivariance below.
        dtype, device: of the result (default: torch's default dtype, CPU).

    Returns:
        ``(num_basis, F_out, F_in, k, k)``.

    Raises:
        ValueError: settings that leave no basis element (e.g. a cutoff below 0 on every
            ring), named with the fix, as the convs refuse them.

    Equivariance:
        The constraint holds exactly for any settings; off the grid the settings matter.
        Measured (float64, disk-faded 49x49 camera, lifting conv + conv + pool stack, ``k=5``,
        the layers' default (He) init, worst over seeds 0-2; interpolation floors 0.045-0.08;
        the protocol of ``tests/test_basis_settings.py``; torch 2.13, 2026-12-03):

        ====================================  ===================  =============
        settings                              so2 M=2, 15-137 deg  c8, 45 deg
        ====================================  ===================  =============
        default                               0.046                0.044
        ``frequencies_cutoff=1.0``            0.040                0.042
        ``frequencies_cutoff=1.5``            0.057                0.077
        ``frequencies_cutoff=2.0``            0.030                0.083
        ``sigma=0.8`` / ``sigma=0.4``         0.108 / 0.049        0.050 / 0.045
        ``rings=[0, 0.5, 1, 1.5, 2]``         0.033                0.042
        ``rings=[0, 1, 2, 2.5]`` (corners)    0.121                0.098
        ====================================  ===================  =============

        ``NormPool`` hides a wrong direction, and ``M=2`` takes no frequency above 2 from images:
        ``max_order=4`` with ``frequencies_cutoff=2.0`` leaves orders 3, 4 aliasing alone (0.73,
        1.94; a warning, as for c8's irreps 3, 4). Per order: :mod:`._basis_settings`. ``k=9``, c8:
        0.037 with our caps, 0.066 with escnn's (seeds: 0.029-0.037, 0.014-0.066).

    Example:
        >>> steerable_basis("so2", "trivial", "harmonic", 5, out_order=2).shape
        torch.Size([11, 5, 1, 5, 5])
        >>> steerable_basis("so2", "trivial", "harmonic", 5, out_order=2,
        ...                 frequencies_cutoff=1.0).shape  # |f| <= radius
        torch.Size([9, 5, 1, 5, 5])
    """
    C.check_float_dtype(dtype, "dtype", "steerable_basis")
    grp, spec, m_in, m_out = check_basis(group, in_rep, out_rep, kernel_size, in_order,
                                         out_order, sigma, frequencies_cutoff, rings,
                                         "steerable_basis")
    scale = _irrep_scale(grp, in_rep, out_rep, kernel_size, m_in, m_out, spec)
    if out_rep == "regular":  # one compact table serves lifting and group convs
        dense = _regular_basis(grp, _cached(grp, "trivial", "regular", kernel_size, 0, 0, spec),
                               in_rep == "trivial", dtype or torch.get_default_dtype(), device)
        return dense.mul_(scale.to(dense).view(-1, 1, 1, 1, 1))
    basis = _cached(grp, in_rep, out_rep, kernel_size, m_in, m_out, spec) * scale.view(
        -1, 1, 1, 1, 1)
    return basis.to(dtype=dtype or torch.get_default_dtype(), device=device, copy=True)
