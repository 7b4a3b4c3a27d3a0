"""Fourier modules over the fiber: regular <-> harmonic fields, and the Fourier nonlinearity.

Their matrices are non-persistent buffers filled once by ``reset_parameters()`` from the
process-wide float64 CPU cache of :mod:`equilayers.functional._fourier`, and refilled (exactly
rounded from float64) whenever the module is moved or cast (``.to()``, ``.double()``,
``.half()``, ``to_empty()`` after a meta-device build), as ``nn.RNNBase`` re-flattens its
weights on ``_apply``. ``forward`` uses the buffer when it has the input's dtype, else the
cached float64 matrix rounded to the input's dtype (a float32 module on float64 input stays
float64-exact).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import ClassVar

import torch
import torch.nn.functional as F

from ..functional import _fourier as FF
from ..functional import _fourier3d as F3
from ..groups import FieldType, GroupLike, get
from ..groups._fields import field_type
from . import _checks as C
from ._derived import _FixedBuffers
from ._exactness import _quiet, warn_at_user
from ._typed import Typed

__all__ = ["RegularToHarmonic", "HarmonicToRegular", "FourierNonlinearity"]


class _FiberBuffers(Typed, _FixedBuffers):
    """Derived matrices as buffers: built in ``reset_parameters``, rebuilt after conversions
    and loads (:class:`~equilayers.nn._derived._FixedBuffers`)."""

    _fixed_args: ClassVar[tuple[str, ...]] = ("group", "max_order")

    def _fill(self, name: str, source: torch.Tensor) -> None:
        with torch.no_grad():
            getattr(self, name).copy_(source)

    def _matrix(self, name: str, x: torch.Tensor) -> torch.Tensor | None:
        """The buffer when it matches the input's dtype and device; else ``None`` (the
        functional then rounds the float64 CPU cache to the input's dtype and device: also
        the case of a module still on the meta device)."""
        buf = getattr(self, name)
        usable = (isinstance(x, torch.Tensor) and buf.dtype == x.dtype and not buf.is_meta
                  and buf.device == x.device)
        return buf if usable else None


class RegularToHarmonic(_FiberBuffers):
    """Fourier transform over the fiber: regular C_N/D_N fields -> harmonic fields.

    ``out = E^T f`` with ``E[h] = rho(h) [1, 1, 0, 1, 0, ...]`` (for C_N: ``a_0 = sum_k f_k``,
    ``c_m = sum_k f_k cos(2 pi m k / N)``, ``s_m = sum_k f_k sin(2 pi m k / N)``); see
    :func:`~equilayers.functional.regular_to_harmonic`.

    Functional twin: :func:`~equilayers.functional.regular_to_harmonic`.

    Args:
        group: a finite group ``"cN"``/``"dN"``.
        max_order: ``M``, at most and by default ``N // 2`` (higher orders alias on ``N``
            rotations: refused).
        device, dtype: of the ``matrix`` buffer ``(2M+1, |G|)``.

    Shape: ``(B, C, |G|, H, W) -> (B, C, 2M+1, H, W)``.

    Equivariance: exact for every element of C_N/D_N. Inverted exactly by
    :class:`HarmonicToRegular` for C_N with ``max_order = N // 2``.

    Example:
        >>> RegularToHarmonic("c8")(torch.randn(2, 3, 8, 5, 5)).shape
        torch.Size([2, 3, 9, 5, 5])
    """

    def __init__(self, group: GroupLike, max_order: int | None = None, *, device=None,
                 dtype=None) -> None:
        super().__init__()
        name = type(self).__name__
        self.group = get(group)
        self.group.require_finite(name, "use a finite group 'cN'/'dN'")
        if max_order is None:
            n = self.group.planar_params()[0]
            assert n is not None  # a finite planar group
            max_order = n // 2
        harmonic = field_type(self.group, "harmonic", max_order, what=name)
        assert harmonic.max_order is not None  # field_type checked the max_order given
        self.max_order: int = FF.check_fourier_order(self.group, harmonic.max_order, name)
        regular = FieldType.regular(self.group)
        self.in_type, self.out_type = ((harmonic, regular) if self._to_regular
                                       else (regular, harmonic))
        C.dtype(dtype, name)
        self.register_buffer("matrix", torch.empty(self._shape(), device=device, dtype=dtype),
                             persistent=False)
        self.reset_parameters()

    _to_regular = False

    def _shape(self) -> tuple[int, int]:
        return 2 * self.max_order + 1, int(self.group.order)

    def reset_parameters(self) -> None:
        """Refill the derived matrix buffer (a fixed function of the arguments)."""
        self._fill("matrix", FF._forward_cpu(*self.group.planar_params(), self.max_order))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        C.regular_fiber(x, self)
        return FF.regular_to_harmonic(x, self.group, self.max_order,
                                      matrix=self._matrix("matrix", x))

    def extra_repr(self) -> str:
        return f"group={self.group.name!r}, max_order={self.max_order}"


class HarmonicToRegular(RegularToHarmonic):
    """Inverse Fourier transform over the fiber: harmonic fields -> regular C_N/D_N fields.

    ``f_h = sum_i w_i (rho(h) e)_i x_i`` with ``w = 1/N`` for order 0 and the Nyquist order,
    ``2/N`` for the others (halved for D_N); see
    :func:`~equilayers.functional.harmonic_to_regular`.

    Functional twin: :func:`~equilayers.functional.harmonic_to_regular`.

    Args:
        group: a finite group ``"cN"``/``"dN"``.
        max_order: ``M``, at most and by default ``N // 2`` (higher orders alias on ``N``
            rotations: refused).
        device, dtype: of the ``matrix`` buffer ``(|G|, 2M+1)``.

    Shape: ``(B, C, 2M+1, H, W) -> (B, C, |G|, H, W)``.

    Equivariance: exact for every element of C_N/D_N.

    Example:
        >>> HarmonicToRegular("c8")(torch.randn(2, 3, 9, 5, 5)).shape
        torch.Size([2, 3, 8, 5, 5])
    """

    _to_regular = True

    def _shape(self) -> tuple[int, int]:
        return int(self.group.order), 2 * self.max_order + 1

    def reset_parameters(self) -> None:
        """Refill the derived matrix buffer (a fixed function of the arguments)."""
        self._fill("matrix", FF._inverse_cpu(*self.group.planar_params(), self.max_order))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        C.harmonic_fiber(x, self)
        return FF.harmonic_to_regular(x, self.group, self.max_order,
                                      matrix=self._matrix("matrix", x))


class FourierNonlinearity(_FiberBuffers):
    """Fourier nonlinearity (escnn's ``FourierPointwise``/``FourierELU``) for harmonic fields:
    ``x -> A^+ function(A x)``.

    ``A`` samples each fiber as a function on ``S`` group elements, ``(A x)_h = <rho(h) e, x>``
    with ``e = [1, sqrt2, 0, sqrt2, 0, ...] / sqrt(2M+1)`` (unit-variance coefficients give
    unit-variance samples); ``function`` acts on every sample; ``A^+`` (the pseudo-inverse:
    least squares, exact when the samples determine the orders) maps back. Samples: all
    ``N`` (C_N) or ``2N`` (D_N, with the flips) elements of a finite group; for SO(2)/O(2),
    ``samples`` rotations by ``360 / samples`` degrees (O(2): and their flips), default
    ``8 (M + 1)``.

    On SO(3)/O(3) fields (``group="so3"``/``"o3"``, 3-D, fiber ``(M+1)^2``) the fiber is a
    function on the sphere, ``f(u) = sum_l Y_l(u) . v_l``: ``A`` samples it at the points of
    an O_h-invariant quadrature (the cube's 26 face, edge and vertex directions and generic
    orbits of 48; 26, 74, 170, 218 or 362 points) and ``A^+`` fits the orders back by the
    quadrature-weighted least squares (escnn's ``QuotientFourierELU`` on the sphere, with a
    point set chosen to keep the grid rotations exact; :mod:`equilayers.functional._fourier3d`).

    Functional twin: :func:`~equilayers.functional.fourier_nonlinearity`.

    Args:
        group: ``"cN"``, ``"dN"``, ``"so2"``, ``"o2"``, ``"so3"`` or ``"o3"``.
        max_order: ``M`` (required for so2/o2/so3/o3; for cN/dN at most and by default
            ``(N - 1) // 2``, the orders that ``N`` rotations sample without loss: order
            ``N/2``'s sine slot vanishes on them; at most 8 for so3/o3).
        function: any pointwise callable (default ``F.elu``, as escnn's ``FourierELU``).
        samples: rotations sampled for so2/o2 (``>= 2M + 1``; a multiple of 4 keeps the
            90-degree rotations exact: any other number warns once, at construction); for
            so3/o3 the minimum number of sphere points (the smallest set with at least that
            many is used; default: 26 points for ``M = 0``, 74 for 1, 218 for 2, 362 beyond);
            must be ``None`` for finite groups.
        device, dtype: of the buffers ``sample_matrix`` ``(S, F)`` and ``inverse_matrix``
            ``(F, S)``, ``F`` the fiber.
        spatial_dims: ``3`` for volumes of planar fields ``(B, C, 2M+1, D, H, W)`` (a planar
            group turning every depth slice); default ``None``: the group's (2 planar, 3 SO(3)).

    Shape: ``(B, C, 2M+1, H, W)`` -> same; so3/o3: ``(B, C, (M+1)^2, D, H, W)`` -> same.

    Equivariance: exact (float rounding) for every element of the sampled subgroup: C_N/D_N
    themselves, C_S/D_S inside SO(2)/O(2) (so the grid rotations and flips for the default
    ``S``). Off the samples approximate: measured on the fiber action alone (no spatial
    interpolation; 4096 unit-normal fibers, 64 angles off the samples, float64, seed 0), the
    worst relative error of any single order at the default samples is, with ELU, 0.0006,
    0.0010, 0.0010, 0.0013, 0.0014 for M = 1..5 (so2 and o2 alike;
    ``tests/test_nonlinearities.py`` asserts 0.002), with ReLU (a kink) 0.008-0.014. Fewer
    samples cost more: M = 2 with ELU gives 0.0036 at 16 samples, 0.0098 at 12, 0.048 at 8.
    SO(3)/O(3): exact for the cube's 24 rotations (O(3): and their inversions, 48), which
    permute the points and keep the weights; other rotations approximate: measured on the
    Wigner-D action of the fiber alone (256 unit-normal fibers, 20 Haar-random rotations,
    float64, ELU), the relative error over the batch of fibers (``||D f(x) - f(D x)|| /
    ||f(D x)||``, norms over all 256) at the default points, worst over the rotations, is
    0.0007-0.0009, 0.0007-0.0009, 0.0014-0.0016 for M = 1, 2, 3 (5 draws; so3 and o3 alike;
    ``tests/test_fourier3d.py`` asserts 0.001 / 0.001 / 0.002); the worst single fiber is
    3-5 times that (0.0027-0.0041, 0.0023-0.0027, 0.0033-0.0049). Unweighted least squares on
    the same points measured about 10 times worse (their aliasing is coherent).

    Example:
        >>> FourierNonlinearity("so2", 2)(torch.randn(2, 3, 5, 6, 6)).shape
        torch.Size([2, 3, 5, 6, 6])
        >>> FourierNonlinearity("so3", 1)(torch.randn(2, 3, 4, 5, 5, 5)).shape
        torch.Size([2, 3, 4, 5, 5, 5])
    """

    sample_matrix: torch.Tensor  # buffers
    inverse_matrix: torch.Tensor
    _fixed_args = ("group", "max_order", "samples")

    def __init__(self, group: GroupLike, max_order: int | None = None,
                 function: Callable[[torch.Tensor], torch.Tensor] = F.elu,
                 samples: int | None = None, *, device=None, dtype=None,
                 spatial_dims: int | None = None) -> None:
        super().__init__()
        name = type(self).__name__
        self.group = get(group)
        if max_order is None:
            if not self.group.is_finite:
                raise ValueError(f"{name}: {self.group.name} needs max_order (the fields' "
                                 "highest rotation order), e.g. max_order=2")
            if self.group.spatial_dim == 3:
                FF._check_so3(self.group, name)
            max_order = FF._fourier_default_order(self.group)
        if self.group.spatial_dim == 3:
            FF._check_so3(self.group, name)
        self.in_type = self.out_type = field_type(
            self.group, "harmonic", max_order, C.spatial_dims(spatial_dims, name), what=name)
        assert self.in_type.max_order is not None  # field_type checked the max_order given
        self.max_order: int = self.in_type.max_order
        self.function = C.function(function, name)
        C.dtype(dtype, name)
        if self.group.spatial_dim == 3:  # SO(3)/O(3): points on the sphere
            self.samples = F3.sphere_samples(self.max_order, samples, name)
            s, f = self.samples, (self.max_order + 1) ** 2
        else:
            self.samples, _ = FF.fourier_samples(self.group, self.max_order, samples, name)
            s = int(self.samples * (2 if self.group.has_reflections else 1))
            f = 2 * self.max_order + 1
            # SO(2)/O(2) sampled off the quarter turns: warned here, or (built inside
            # quiet_exactness_warnings) at the first forward outside it
            self._samples_warning_due = not self.group.is_finite and self.samples % 4 != 0
            self._warn_samples()
        kw = {"device": device, "dtype": dtype}
        self.register_buffer("sample_matrix", torch.empty(s, f, **kw), persistent=False)
        self.register_buffer("inverse_matrix", torch.empty(f, s, **kw), persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Refill the sampling and inverse matrix buffers (fixed functions of the arguments)."""
        if self.group.spatial_dim == 3:
            a, a_inv = F3._sphere_fourier_cpu(self.max_order, self.samples)
        else:
            a, a_inv = FF._fourier_nl_cpu(self.samples, self.group.has_reflections,
                                          self.max_order)
        self._fill("sample_matrix", a)
        self._fill("inverse_matrix", a_inv)

    _samples_warning_due = False

    def _warn_samples(self) -> None:
        """Warn once that ``samples`` misses the 90-degree rotations (exact equivariance to
        the grid's rotations needs them among the samples); not inside
        ``quiet_exactness_warnings``, under ``torch.compile`` or ``torch.jit.trace``, where
        the warning stays due."""
        if (not self._samples_warning_due or _quiet() or torch.compiler.is_compiling()
                or torch.jit.is_tracing()):
            return
        self._samples_warning_due = False
        n = self.samples
        missing = [a for a in (90, 180, 270) if a * n % 360]
        warn_at_user(
            f"{type(self).__name__} ({self.group.name}) is not exactly equivariant to the "
            f"rotations by {', '.join(map(str, missing))} degrees: samples={n} rotations (every "
            f"{360 / n:g} degrees) do not include them, so these grid rotations"
            f"{' and the flips composed with them' if self.group.has_reflections else ''} are "
            f"approximate; use a multiple of 4, e.g. samples={4 * math.ceil(n / 4)} "
            "(warned once per module)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._samples_warning_due:
            self._warn_samples()
        C.harmonic_fiber(x, self)
        a = self._matrix("sample_matrix", x)
        return FF.fourier_nonlinearity(
            x, self.group, self.max_order, self.function, None if self.group.is_finite
            else self.samples, matrices=None if a is None else (a, self.inverse_matrix))

    def extra_repr(self) -> str:
        text = f"group={self.group.name!r}, max_order={self.max_order}"
        if not self.group.is_finite:
            text += f", samples={self.samples}"
        text += C.function_repr(self.function, F.elu)
        fields = self.in_type
        if fields is not None and fields.spatial_dims == 3 and self.group.spatial_dim == 2:
            text += ", spatial_dims=3"
        return text
