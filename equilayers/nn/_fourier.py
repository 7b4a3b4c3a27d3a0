"""Fourier modules over the fiber: regular <-> harmonic fields.

Their matrices are non-persistent buffers filled once by ``reset_parameters()`` from the
process-wide float64 CPU cache of :mod:`equilayers.functional._fourier`, and refilled (exactly
rounded from float64) whenever the module is moved or cast (``.to()``, ``.double()``,
``.half()``, ``to_empty()`` after a meta-device build), as ``nn.RNNBase`` re-flattens its
weights on ``_apply``. ``forward`` uses the buffer when it has the input's dtype, else the
cached float64 matrix rounded to the input's dtype (a float32 module on float64 input stays
float64-exact).
"""

from __future__ import annotations

import torch
from torch import nn

from ..functional import _fourier as FF
from ..groups import GroupLike, get
from . import _checks as C

__all__ = ["RegularToHarmonic", "HarmonicToRegular"]


class _FiberBuffers(nn.Module):
    """Derived matrices as buffers: built in ``reset_parameters``, rebuilt on ``_apply``."""

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        self.reset_parameters()
        return self

    def _fill(self, name: str, source: torch.Tensor) -> None:
        with torch.no_grad():
            getattr(self, name).copy_(source)

    def _matrix(self, name: str, x: torch.Tensor) -> torch.Tensor | None:
        """The buffer when it matches the input's dtype; else ``None`` (the functional then
        rounds the float64 cache to the input's dtype)."""
        buf = getattr(self, name)
        return buf if isinstance(x, torch.Tensor) and buf.dtype == x.dtype else None


class RegularToHarmonic(_FiberBuffers):
    """Fourier transform over the fiber: regular C_N/D_N fields -> harmonic fields.

    ``out = E^T f`` with ``E[h] = rho(h) [1, 1, 0, 1, 0, ...]`` (for C_N: ``a_0 = sum_k f_k``,
    ``c_m = sum_k f_k cos(2 pi m k / N)``, ``s_m = sum_k f_k sin(2 pi m k / N)``); see
    :func:`~equilayers.functional.regular_to_harmonic`.

    Args:
        group: a finite group ``"cN"``/``"dN"``.
        max_order: ``M`` (default ``N // 2``).
        device, dtype: of the ``matrix`` buffer ``(2M+1, |G|)``.

    Shape: ``(B, C, |G|, H, W) -> (B, C, 2M+1, H, W)``.

    Equivariance: exact for every element of C_N/D_N. Inverted exactly by
    :class:`HarmonicToRegular` for C_N with ``max_order = N // 2``.

    Example:
        >>> RegularToHarmonic("c8")(torch.randn(2, 3, 8, 5, 5)).shape
        torch.Size([2, 3, 9, 5, 5])
    """

    in_rep = "regular"
    out_rep = "harmonic"

    def __init__(self, group: GroupLike, max_order: int | None = None, *, device=None,
                 dtype=None) -> None:
        super().__init__()
        name = type(self).__name__
        self.group = get(group)
        if not self.group.is_finite:
            raise ValueError(f"{name}: {self.group.name} is continuous and has no regular "
                             "fields; use a finite group 'cN'/'dN'")
        self.max_order = self.group.n // 2 if max_order is None else C.order(max_order, name)
        self.register_buffer("matrix", torch.empty(self._shape(), device=device, dtype=dtype),
                             persistent=False)
        self.reset_parameters()

    def _shape(self) -> tuple[int, int]:
        return 2 * self.max_order + 1, int(self.group.order)

    def reset_parameters(self) -> None:
        self._fill("matrix", FF._forward_cpu(self.group.n, self.group.reflections,
                                             self.max_order))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return FF.regular_to_harmonic(x, self.group, self.max_order,
                                      matrix=self._matrix("matrix", x))

    def extra_repr(self) -> str:
        return f"group={self.group.name!r}, max_order={self.max_order}"


class HarmonicToRegular(RegularToHarmonic):
    """Inverse Fourier transform over the fiber: harmonic fields -> regular C_N/D_N fields.

    ``f_h = sum_i w_i (rho(h) e)_i x_i`` with ``w = 1/N`` for order 0 and the Nyquist order,
    ``2/N`` for the others (halved for D_N); see
    :func:`~equilayers.functional.harmonic_to_regular`.

    Args:
        group: a finite group ``"cN"``/``"dN"``.
        max_order: ``M`` (default ``N // 2``).
        device, dtype: of the ``matrix`` buffer ``(|G|, 2M+1)``.

    Shape: ``(B, C, 2M+1, H, W) -> (B, C, |G|, H, W)``.

    Equivariance: exact for every element of C_N/D_N.

    Example:
        >>> HarmonicToRegular("c8")(torch.randn(2, 3, 9, 5, 5)).shape
        torch.Size([2, 3, 8, 5, 5])
    """

    in_rep = "harmonic"
    out_rep = "regular"

    def _shape(self) -> tuple[int, int]:
        return int(self.group.order), 2 * self.max_order + 1

    def reset_parameters(self) -> None:
        self._fill("matrix", FF._inverse_cpu(self.group.n, self.group.reflections,
                                             self.max_order))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return FF.harmonic_to_regular(x, self.group, self.max_order,
                                      matrix=self._matrix("matrix", x))
