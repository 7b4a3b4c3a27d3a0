"""The settings of the steerable basis: rings, their widths and their frequency caps.

escnn's ``R2Conv`` takes three optional settings that decide where and how its basis is
sampled; :func:`~equilayers.functional.steerable_basis`, ``regular_table`` and the
``basis="harmonic"`` convs take the same three, with escnn's meaning:

* ``rings``: the radii ``r_i`` of the Gaussian rings, in filter taps of the ``k x k`` grid (at
  most ``(k - 1) / 2 * sqrt(2)``, the corner; distinct, any order). Default ``0, 1, ..., k // 2``
  for an odd ``k`` (escnn's default for ``dilation=1``); ``1, ..., k/2 - 1`` for an even ``k``
  (escnn's, less its centre ring, which reaches no tap of an even grid) and ``sqrt(2)/2`` for
  ``k = 2`` (the four taps; escnn's default basis is empty there). Ours are in taps at any
  ``dilation``. escnn's ``R2Conv(dilation=d)`` multiplies its default rings by ``d`` but keeps
  ``sigma`` in pixels: in taps, its rings are ours and its widths ours divided by ``d``, so a
  native ``dilation=d`` layer has wider rings than escnn's (the same parameter count, another
  basis). ``from_escnn`` converts a dilated ``R2Conv`` with escnn's widths in taps
  (``dilation=2``, ``k = 5``: ``sigma=(0.0025, 0.3, 0.2)``).
* ``sigma``: the ring widths: one positive number for every ring, or one per ring. Default
  (escnn's): ``0.6``, ``0.4`` for the last ring listed, ``0.005`` (the centre pixel alone) for
  a ring at radius 0.
* ``frequencies_cutoff``: the largest angular frequency ``|f|`` sampled on each ring. A number
  ``c`` allows ``|f| <= c * r_i`` (escnn's float convention), a callable maps a radius to the
  largest frequency (escnn's callable convention), and a sequence gives the largest frequency
  of each ring (our addition; what a callable is stored as). A non-integer cap is floored; a
  negative one leaves the ring empty. Default: our caps (``basis_frequency_cap``): 0 at the
  centre, ``floor(r + 1)`` inside, ``min(floor(r + 1), 2)`` from ``k // 2`` out; equal to
  escnn's default for ``k <= 7``, lower on the inner rings of ``k >= 9`` (escnn allows up to
  ``2 r`` there; frequency 6 on radius 3 measured 0.27 off-grid error in one element).
  A frequency above its ring's ``alias_free_cap`` folds onto a lower one on the grid: the
  default's ``k / 2`` on the last ring of an even ``k >= 6`` (kept: escnn's, and the parameter
  count of old checkpoints), or a raised cutoff (``2.0`` puts ``f = 3, 4`` on radius 2). The
  convs warn at construction when an output order is reached only through such frequencies
  (``aliasing_warning``); measured per-order errors below.

Measured per output order (float64; one so2 ``LiftingConv2d(1, 8, k, padding=k // 2)``, the
default init, worst over seeds 0-2; the library harness on a noise image smoothed at 2 pixels
and faded by a disk, 30/45/137 degrees; torch 2.13, 2026-12-07). ``*``: orders the construction
warning names (reached only through frequencies above the alias-free cap):

========================================  ================================================
layer                                     error of output orders 0, 1, 2, ...
========================================  ================================================
``k=5`` ``max_order=2`` (default)         0.007  0.018  0.063
``k=7`` ``max_order=3``                   0.007  0.015  0.048  0.062
``k=9`` ``max_order=4``                   0.006  0.015  0.032  0.043  0.055
``k=11`` ``max_order=4``                  0.007  0.011  0.025  0.030  0.040
``k=6`` ``max_order=3``                   0.007  0.017  0.117  1.077*
``k=8`` ``max_order=4``                   0.007  0.021  0.083  0.383  1.355*
``k=10`` ``max_order=5``                  0.008  0.019  0.073  0.178  0.571  0.875*
``k=5`` ``M=4`` ``frequencies_cutoff=2``  0.008  0.018  0.054  0.730*  1.936*
``k=7`` ``M=4`` ``frequencies_cutoff=2``  0.007  0.015  0.046  0.269  0.969*
``k=3`` ``M=3`` ``frequencies_cutoff=3``  0.009  0.026  0.142  1.912*
``k=5`` ``M=2`` ``sigma=0.2`` / ``1.2``   0.010  0.058  0.611 / 0.010  0.059  0.479
``k=5`` ``M=2`` ``rings=[0, 1, 2, 2.8]``  0.028  0.147  0.871
========================================  ================================================

The whole layer's error averages them away (``k=6`` ``max_order=3``: 0.056; ``k=5``
``max_order=4`` ``frequencies_cutoff=2.0``: 0.107). The warning names only the orders no
alias-free frequency reaches: an order that aliased frequencies reach beside alias-free ones
carries part of the error unnamed (order 3 of ``k=8``: 0.383, order 4 of ``k=10``: 0.571), and
a ``sigma`` or ``rings`` that narrows, widens or moves the rings (last two rows) errs as much
without one (the warning reads the frequencies only).
The alias-free caps that the warning suggests as ``frequencies_cutoff`` (with a lower
``max_order`` for a harmonic output) remove the aliased functions (``k=6``: ``[2, 2]``, orders
0-2 0.007 0.016 0.115, order 3 then unreached). The 3-D convs of a planar group warn the same
way: ``basis="slices"`` is this basis on each depth slice and ``"shells"`` puts the same
frequencies on shells (so2 ``max_order=3``, order 3 at 30/45 degrees: ``(1, 6, 6)`` 0.45
slices and shells, ``(6, 6, 6)`` shells 0.31, ``(1, 7, 7)`` 0.10).
Regular fields: a C8 lifting conv at 45/135 degrees measures 0.013 (``k=5``), 0.015 (``k=7``),
0.068 (``k=6``, warns for irrep 3; 0.021 with ``frequencies_cutoff=[2, 2]``) and 0.067
(``k=8``, irrep 4; 0.022 with ``[2, 3, 2]``).

Per basis element, and how smooth the input is: the worst element of the default so2
trivial -> harmonic basis (``max_order=4``), applied at 100 off-grid points to an analytic
field (12 plane waves of frequencies up to ``b`` rad/pixel, Nyquist being pi, under a Gaussian
envelope; no interpolation), relative error at 15/30/45/60/137 degrees, seeds 0-1:

=============  =====  =====  =====  =====  =====
``b``          k=3    k=5    k=7    k=9    k=11
=============  =====  =====  =====  =====  =====
1.5            0.064  0.104  0.067  0.065  0.058
1.0            0.107  0.060  0.056  0.055  0.057
0.6            0.136  0.032  0.049  0.095  0.331
0.3            0.151  0.019  0.057  0.396  1.639
=============  =====  =====  =====  =====  =====

A bound near 0.1 holds for inputs with content up to ``b >= 1`` (a third of Nyquist), and for
``k = 5, 7`` at every band; not on smooth inputs for ``k >= 9``, whose worst elements are the
top frequency of an inner ring (``f = 3`` on radius 2 for ``k = 9``, ``f = 4`` on radius 3 for
``k = 11``): a smooth input excites them weakly, so their aliased part dominates. In a whole
lifting conv (so2, ``max_order=4``, one default init, the same fields) order 4 measures
0.025 / 0.13 / 1.04 for ``k = 11`` at ``b = 1.0 / 0.6 / 0.3`` and 0.017 / 0.056 / 0.32 for
``k = 9``.

Only frequency 0 is sampled at the centre pixel whatever the settings (the angle is undefined
there; escnn does the same). The settings resolve to one hashable spec, a tuple of
``(radius, sigma, max_frequency)`` per ring, which is part of every basis cache key;
``None`` stands for the default spec.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence

__all__ = ["basis_frequency_cap", "default_spec", "resolve_settings", "settings_repr", "VANISHING",
           "normalize_settings", "BasisSpec", "alias_free_cap", "aliasing_warning"]

SIGMA_INNER = 0.6
SIGMA_OUTER = 0.4  # the last ring
SIGMA_CENTRE = 0.005  # a ring at radius 0: the centre pixel alone
#: A basis function whose samples have a norm below this is zero on the grid (a ring that
#: reaches no tap, such as a centre ring on an even grid, or cos 2 phi on the four taps of a
#: 2 x 2 grid): every basis leaves it out, as escnn does, instead of making it a parameter
#: that moves nothing.
VANISHING = 1e-9

BasisSpec = tuple[tuple[float, float, int], ...]
Cutoff = float | Callable[[float], float] | Sequence[float]


def basis_frequency_cap(radius: float, kernel_size: int) -> int:
    """The largest angular frequency sampled on ring ``radius`` of a ``kernel_size`` filter by
    default: 0 at the centre, ``floor(radius + 1)`` on inner rings, ``min(floor(radius + 1),
    2)`` from the outer ring ``kernel_size // 2`` out (whose square support is anisotropic
    beyond its radius)."""
    return _ring_cap(radius, kernel_size // 2)


def alias_free_cap(radius: float, kernel_size: int) -> int:
    """The largest angular frequency that ring ``radius`` carries without aliasing on the
    ``kernel_size`` grid: :func:`basis_frequency_cap` with the outer ring counted from
    ``(kernel_size - 1) // 2``, the last whole radius inside the grid's edge ``(k - 1) / 2``.
    The same caps for every odd ``k`` (and ``k = 2, 4``); 2 instead of the default ``k / 2``
    on the last ring ``k / 2 - 1`` of an even ``k >= 6``, where frequency ``k / 2`` folds
    onto a lower one (``f = 3`` on ring 2 of a 6 x 6 grid turns as ``f = -1``). The default
    keeps ``k / 2`` there: it is escnn's, and changing it would change the parameter count
    of every even-``k`` layer (old checkpoints); the layers warn instead
    (:func:`aliasing_warning`)."""
    return _ring_cap(radius, (kernel_size - 1) // 2)


def _ring_cap(radius: float, outer: int) -> int:
    """0 at the centre, ``floor(radius + 1)`` on inner rings, at most 2 from ``outer`` out."""
    if radius == 0:
        return 0
    cap = math.floor(radius + 1)
    return min(cap, 2) if radius >= outer else cap


def _reaches(caps: Sequence[int], m: int, m_in: int, n: int | None) -> bool:
    """Whether a ring with one of ``caps`` carries a frequency ``f`` (``|f| <= cap``) that maps
    some input order ``0..m_in`` to output order ``m``: ``f = m - i`` or ``m + i`` (modulo
    ``n`` for C_N / D_N; ``n`` None for SO(2) / O(2))."""
    for i in range(m_in + 1):
        for res in (m - i, m + i):
            for cap in caps:
                if (abs(res) <= cap if n is None
                        else any((f - res) % n == 0 for f in range(-cap, cap + 1))):
                    return True
    return False


def aliasing_warning(owner: str, group, kernel_size: int, spec: BasisSpec | None,
                     in_rep: str | None, out_rep: str | None, m_in: int, m_out: int,
                     skip: Sequence[int] = (), kernel_repr: Callable[[int], object] = int
                     ) -> str | None:
    """The warning for the output orders that the basis of ``spec`` (``None``: the default)
    reaches only through angular frequencies above their ring's :func:`alias_free_cap`, or
    ``None`` when there are none (or the group's elements are all on the pixel grid, where
    aliasing does not matter). Such an order is aliasing alone: off the 90-degree grid it does
    not turn with the input (measured per-order errors of 0.7 to 1.9: this module's
    docstring). The orders are the rotation orders ``1..m_out`` of a harmonic output (not in
    ``skip``: the unreached ones), or the irreps ``1..N // 2`` of a regular one.

    Every fix the message names constructs without a warning: ``kernel_size=k + 1`` (an even
    ``k`` with the default rings and caps, where ``k + 1`` is alias-free and, for a harmonic
    output, reaches every order),
    for a harmonic output ``max_order`` below the first warned or unreached order (optionally
    with the alias-free caps, which also drop the aliased functions from the lower orders), and
    for a regular output the alias-free caps as ``frequencies_cutoff``. The caps alone are no
    fix for a harmonic output: the warned orders are exactly those they do not reach (their
    slots would always be 0). ``kernel_repr`` writes a kernel size as the owner takes it
    (a 3-D conv's ``(k_d, k, k)``)."""
    if group.pixel_exact or out_rep not in ("harmonic", "regular"):
        return None
    n = group.planar_params()[0]
    regular = out_rep == "regular"
    if regular:  # a regular field of C_N / D_N holds the irreps of orders 0 .. N // 2
        m_out = n // 2
        m_in = m_out if in_rep == "regular" else 0
    spec = default_spec(kernel_size) if spec is None else spec
    caps = [0 if r == 0 else c for r, _, c in spec]  # only f = 0 at the centre pixel
    safe = [min(c, alias_free_cap(r, kernel_size))
            for (r, _, _), c in zip(spec, caps, strict=True)]
    bad = [m for m in range(1, m_out + 1) if m not in skip
           and _reaches(caps, m, m_in, n) and not _reaches(safe, m, m_in, n)]
    if not bad:
        return None
    what = (f"the irreps of order(s) {bad} in the regular output field" if regular
            else f"output rotation order(s) {bad}")
    fixes = []
    default = default_spec(kernel_size)
    if kernel_size % 2 == 0 and [(r, c) for r, _, c in spec] == [(r, c) for r, _, c in default]:
        up = default_spec(kernel_size + 1)  # odd: its caps are the alias-free caps
        up_caps = [0 if r == 0 else c for r, _, c in up]
        if regular or all(_reaches(up_caps, m, m_in, n) for m in range(1, m_out + 1)):
            fixes.append(f"kernel_size={kernel_repr(kernel_size + 1)}")
    if regular:
        fixes.append(f"frequencies_cutoff={safe} (the alias-free caps)")
    else:
        lower = min([*bad, *(m for m in skip if m > 0)]) - 1
        fixes.append(f"max_order={lower} (optionally with frequencies_cutoff={safe}, the "
                     "alias-free caps, to drop the aliased functions from the lower orders too)")
    return (f"{owner}: {what} of {group.name} (kernel_size={kernel_repr(kernel_size)}) are "
            "reached only through angular frequencies above their ring's alias-free cap "
            f"(rings {[r for r, _, _ in spec]}, caps {caps}, alias-free caps {safe}): off the "
            "90-degree grid they do not turn with the input. Use "
            + (", ".join(fixes[:-1]) + " or " if len(fixes) > 1 else "") + fixes[-1])


def _is_real(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _seq(v) -> bool:
    return isinstance(v, (list, tuple))


def _default_rings(k: int) -> tuple[float, ...]:
    if k % 2:
        return tuple(float(i) for i in range(k // 2 + 1))
    if k == 2:  # escnn's default (a centre ring alone) reaches no tap: the ring of all four
        return (math.sqrt(0.5),)
    return tuple(float(i) for i in range(1, k // 2))  # escnn's, less its empty centre ring


def _default_sigma(rings: Sequence[float]) -> tuple[float, ...]:
    out = [SIGMA_INNER] * (len(rings) - 1) + [SIGMA_OUTER]
    return tuple(SIGMA_CENTRE if r == 0 else s for r, s in zip(rings, out, strict=True))


def default_spec(kernel_size: int) -> BasisSpec:
    """The spec of the default settings for ``kernel_size``."""
    rings = _default_rings(kernel_size)
    return tuple((r, s, basis_frequency_cap(r, kernel_size))
                 for r, s in zip(rings, _default_sigma(rings), strict=True))


def _cap(v, arg: str, what: str = "steerable basis") -> int:
    if not _is_real(v):
        raise TypeError(f"{what}: {arg} must be a finite real number (the largest angular "
                        f"frequency); got {v!r}")
    return math.floor(v) if v >= 0 else -1


def normalize_settings(kernel_size: int, sigma=None, frequencies_cutoff=None, rings=None,
                       what: str = "steerable basis", *, spatial_dims: int = 2):
    """Validate the settings and return them in a canonical, picklable form ``(sigma,
    frequencies_cutoff, rings)``: numbers as ``float``, sequences as tuples of floats, a
    callable cutoff evaluated into the tuple of per-ring caps. ``ValueError``/``TypeError``
    name the argument, the value and the fix. ``spatial_dims``: 2 (rings on the ``k x k``
    grid, radii up to its corner ``(k-1)/2 sqrt(2)``) or 3 (shells on the ``k x k x k`` grid,
    up to ``(k-1)/2 sqrt(3)``, as escnn's ``R3Conv`` allows)."""
    k = kernel_size
    max_radius = (k - 1) / 2 * math.sqrt(spatial_dims)
    grid = "x".join([str(k)] * spatial_dims)
    if rings is not None:
        if not _seq(rings) or len(rings) == 0 or not all(_is_real(r) for r in rings):
            raise ValueError(f"{what}: rings must be a non-empty list of radii (real numbers, "
                             f"in filter taps), or None for the default; got rings={rings!r}")
        rings = tuple(float(r) for r in rings)
        bad = [r for r in rings if not 0 <= r <= max_radius + 1e-9]
        if bad:
            raise ValueError(f"{what}: rings={list(rings)} has radii {bad} outside [0, "
                             f"{max_radius:.4g}] (0 to the corner of the {grid} grid, "
                             f"(k-1)/2*sqrt({spatial_dims})); use radii in that range or a "
                             "larger kernel_size")
        if len(set(rings)) != len(rings):
            raise ValueError(f"{what}: rings={list(rings)} repeats a radius (the basis would "
                             "repeat its functions); list each radius once")
    n = len(rings) if rings is not None else len(_default_rings(k))
    if sigma is not None:
        if _seq(sigma):
            if len(sigma) != n or not all(_is_real(s) and s > 0 for s in sigma):
                raise ValueError(f"{what}: sigma={list(sigma)!r} must list one positive width "
                                 f"per ring ({n} rings), or be one positive number for all, "
                                 "or None for the default (0.6, 0.4 on the last ring)")
            sigma = tuple(float(s) for s in sigma)
        elif _is_real(sigma) and sigma > 0:
            sigma = float(sigma)
        else:
            raise ValueError(f"{what}: sigma must be a positive number, a list of one per ring, "
                             f"or None for the default (0.6, 0.4 on the last ring); got "
                             f"sigma={sigma!r}")
    fco = frequencies_cutoff
    if fco is not None:
        radii = rings if rings is not None else _default_rings(k)
        if callable(fco):
            fco = tuple(float(_cap(fco(r), f"frequencies_cutoff({r})", what)) for r in radii)
        elif _seq(fco):
            if len(fco) != n or not all(_is_real(c) for c in fco):
                raise ValueError(f"{what}: frequencies_cutoff={list(fco)!r} as a list must give "
                                 f"the largest frequency of each of the {n} rings (numbers)")
            fco = tuple(float(c) for c in fco)
        elif _is_real(fco) and fco >= 0:
            fco = float(fco)
        else:
            raise ValueError(f"{what}: frequencies_cutoff must be a number c >= 0 (|f| <= c * "
                             "radius), a callable radius -> largest frequency, a list of one "
                             f"largest frequency per ring, or None for the default caps; got "
                             f"frequencies_cutoff={frequencies_cutoff!r} (escnn's -1/-2/-3 "
                             "policies: pass a callable)")
    return sigma, fco, rings


def resolve_settings(kernel_size: int, sigma=None, frequencies_cutoff=None, rings=None,
                     what: str = "steerable basis", *, spatial_dims: int = 2
                     ) -> BasisSpec | None:
    """The spec ``((radius, sigma, max_frequency), ...)`` of the settings, or ``None`` when it
    equals the default spec (so that equal bases share one cache entry)."""
    k = kernel_size
    sigma, fco, rings = normalize_settings(k, sigma, frequencies_cutoff, rings, what,
                                           spatial_dims=spatial_dims)
    radii = rings if rings is not None else _default_rings(k)
    if sigma is None:
        widths = _default_sigma(radii)
    elif isinstance(sigma, float):
        widths = (sigma,) * len(radii)
    else:
        widths = sigma
    if fco is None:
        caps = tuple(basis_frequency_cap(r, k) for r in radii)
    elif isinstance(fco, float):
        caps = tuple(_cap(fco * r, "frequencies_cutoff * radius", what) for r in radii)
    else:
        caps = tuple(_cap(c, "frequencies_cutoff", what) for c in fco)
    spec = tuple(zip(radii, widths, caps, strict=True))
    return None if spec == default_spec(k) else spec


def settings_repr(sigma, frequencies_cutoff, rings) -> str:
    """``", sigma=..., frequencies_cutoff=..., rings=..."`` for the settings that are set
    (normalized values, as stored by the modules)."""
    def fmt(v):
        return f"{v:g}" if isinstance(v, float) else "(" + ", ".join(f"{x:g}" for x in v) + ")"
    s = ""
    for name, v in (("sigma", sigma), ("frequencies_cutoff", frequencies_cutoff),
                    ("rings", rings)):
        if v is not None:
            s += f", {name}={fmt(v)}"
    return s
