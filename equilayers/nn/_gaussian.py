"""Gaussian anti-aliased pooling and the smooth disk mask, escnn's conventions (see
:mod:`equilayers.functional._gaussian`)."""

from __future__ import annotations

import torch

from .. import _checks as C
from ..functional import _gaussian as Gs
from ..functional import _gaussian3d as Gs3
from ._derived import _FixedBuffers
from ._exactness import _WarnsInexact
from ._pool3d import warn_if_pool3d_inexact
from ._typed import Typed

__all__ = ["GaussianBlurPool2d", "GaussianBlurPool3d", "DiskMask", "BallMask"]


class GaussianBlurPool2d(Typed, _WarnsInexact, _FixedBuffers):
    """Gaussian blur, then subsample (escnn's ``PointwiseAvgPoolAntialiased2D``).

    The filter is the normalized 2-D Gaussian of standard deviation ``sigma`` sampled at the
    integer offsets of a ``k x k`` grid, ``k = 2 * round(truncate * sigma) + 1``; the input is zero
    padded by ``padding`` (default ``(k - 1) // 2``) and correlated at ``stride``. e2cnn's
    tutorial uses ``sigma=0.66, stride=2`` (a 5 x 5 filter). Acts on ``H, W`` only.

    Functional twin: :func:`~equilayers.functional.gaussian_blur_pool2d`.

    Args:
        sigma: the Gaussian's standard deviation in pixels, > 0.
        stride: subsampling factor (int or pair; ``None``: the filter size, as escnn).
        padding: zero padding per side (int or pair; ``None``: ``(k - 1) // 2``).
        device, dtype: of the ``filter`` buffer, as in ``torch.nn`` modules.
        truncate: the filter's half-width in standard deviations (keyword; default 3,
            escnn's average pool; its ``PointwiseMaxPoolAntialiased2D`` blurs with 4).

    Shape:
        ``(B, C, H, W) -> (B, C, H', W')`` or ``(B, C, F, H, W) -> (B, C, F, H', W')``,
        ``H' = floor((H + 2 padding - k) / stride) + 1``.

    Equivariance:
        Exact (float rounding) for rot90 and flips, on trivial, regular or harmonic fields,
        when the windows tile the input from both ends, ``(H + 2 padding - k) % stride == 0``
        with a square input: odd sizes at stride 2 with the default padding (a 33 x 33 map
        gives 17 x 17); even sizes at stride 2 do not commute with rot90 (tested as a negative
        control). Off the grid it commutes with rotations up to the sampling of the Gaussian.

    Example:
        >>> import torch
        >>> GaussianBlurPool2d(0.66)(torch.randn(2, 3, 8, 33, 33)).shape
        torch.Size([2, 3, 8, 17, 17])
    """

    _fixed_args = ("sigma", "truncate", "kernel_size")

    # spatial only: the harness infers the rep from the rank (4-D trivial, 5-D regular)
    in_type = out_type = None  # any field type; the output has the input's

    filter: torch.Tensor  # buffer
    _inexact_below_float64 = True  # a float64 input gets the filter built in float64

    def __init__(self, sigma: float = 0.66, stride: int | tuple[int, int] | None = 2,
                 padding: int | tuple[int, int] | None = None, device=None,
                 dtype=None, *, truncate: float = 3.0) -> None:
        super().__init__()
        self.truncate = Gs.check_truncate(truncate, "GaussianBlurPool2d")
        self.sigma, self.stride, self.padding = Gs.check_pool_args(sigma, stride, padding,
                                                                   "GaussianBlurPool2d",
                                                                   self.truncate)
        C.check_float_dtype(dtype, "dtype", "GaussianBlurPool2d")
        self.kernel_size = Gs.gaussian_filter_size(self.sigma, truncate=self.truncate)
        self.register_buffer("filter", torch.empty(self.kernel_size, self.kernel_size,
                                                   device=device, dtype=dtype),
                             persistent=False)
        self._refill()  # not on the meta device: filled when moved off it

    def reset_parameters(self) -> None:
        """Refill the Gaussian filter buffer (a fixed function of the arguments)."""
        with torch.no_grad():
            self.filter.copy_(Gs.gaussian_filter2d(self.sigma, truncate=self.truncate,
                                                   dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._warn_if_window_inexact(x)  # on group maps: once, where the grid breaks it
        return Gs.blur_with(x, self._buffers_for(x).filter, self.stride, self.padding,
                            "GaussianBlurPool2d")

    def _sampling_window(self) -> tuple:
        ph, pw = C.check_pair(self.padding, "padding", type(self).__name__, minimum=0)
        return self.kernel_size, self.stride, (ph, ph, pw, pw), 1

    def extra_repr(self) -> str:
        # a constructor call: kernel_size is derived from sigma and truncate (an attribute)
        s = f"sigma={self.sigma:g}, stride={self.stride}"
        if C.check_pair(self.padding, "padding") != ((self.kernel_size - 1) // 2,) * 2:
            s += f", padding={self.padding}"
        if self.truncate != 3.0:
            s += f", truncate={self.truncate:g}"
        return s


class GaussianBlurPool3d(Typed, _FixedBuffers):
    """Gaussian blur of volumes, then subsample (escnn's ``PointwiseAvgPoolAntialiased3D``).

    The 3-D twin of :class:`GaussianBlurPool2d`: the normalized 3-D Gaussian of standard
    deviation ``sigma`` sampled at the integer offsets of a ``k x k x k`` grid, ``k = 2 *
    round(truncate * sigma) + 1``; the input is zero padded by ``padding`` (default ``(k - 1)
    // 2``) and correlated at ``stride``. Acts on ``D, H, W`` only, every channel and slot
    alike.

    Functional twin: :func:`~equilayers.functional.gaussian_blur_pool3d`.

    Args:
        sigma: the Gaussian's standard deviation in voxels, > 0.
        stride: subsampling factor (int or triple; ``None``: the filter size, as escnn).
        padding: zero padding per side (int or triple; ``None``: ``(k - 1) // 2``).
        device, dtype: of the ``filter`` buffer, as in ``torch.nn`` modules.
        truncate: the filter's half-width in standard deviations (keyword; default 3,
            escnn's average pool; its ``PointwiseMaxPoolAntialiased3D`` blurs with 4).

    Shape:
        ``(B, C, D, H, W) -> (B, C, D', H', W')`` or ``(B, C, F, D, H, W) -> (B, C, F, D', H',
        W')``, ``D' = floor((D + 2 padding - k) / stride) + 1`` (``H'``, ``W'`` alike).

    Equivariance:
        Exact (float rounding) for the cube's rotations and flips, on volumes and on the cube
        groups' regular maps, when the windows tile the input from both ends, ``(n + 2 padding
        - k) % stride == 0`` on each dim with equal sizes and options on the dims the group
        trades: odd sizes at stride 2 with the default padding (9^3 gives 5^3). Even sizes at
        stride 2 are not exact (tested as a negative control; the module warns once on such a
        6-D map, and :func:`equilayers.check_grid` reports it). Off the grid it commutes with
        rotations up to the sampling of the Gaussian.

    Example:
        >>> import torch
        >>> GaussianBlurPool3d(0.66)(torch.randn(2, 3, 24, 9, 9, 9)).shape
        torch.Size([2, 3, 24, 5, 5, 5])
    """

    _fixed_args = ("sigma", "truncate", "kernel_size")

    in_type = out_type = None  # any field type; the output has the input's

    filter: torch.Tensor  # buffer
    _inexact_below_float64 = True  # a float64 input gets the filter built in float64

    def __init__(self, sigma: float = 0.66, stride: int | tuple[int, int, int] | None = 2,
                 padding: int | tuple[int, int, int] | None = None, device=None,
                 dtype=None, *, truncate: float = 3.0) -> None:
        super().__init__()
        what = "GaussianBlurPool3d"
        self.truncate = Gs.check_truncate(truncate, what)
        self.sigma, self.stride, self.padding = Gs3.check_pool3d_args(sigma, stride, padding,
                                                                      what, self.truncate)
        C.check_float_dtype(dtype, "dtype", what)
        self.kernel_size = Gs.gaussian_filter_size(self.sigma, truncate=self.truncate,
                                                   limit=Gs3.MAX_FILTER_SIZE3D)
        k = self.kernel_size
        self.register_buffer("filter", torch.empty(k, k, k, device=device, dtype=dtype),
                             persistent=False)
        self._refill()  # not on the meta device: filled when moved off it

    def reset_parameters(self) -> None:
        """Refill the Gaussian filter buffer (a fixed function of the arguments)."""
        with torch.no_grad():
            self.filter.copy_(Gs3.gaussian_filter3d(self.sigma, truncate=self.truncate,
                                                    dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # on 6-D maps: warn once where the grid breaks exactness
        warn_if_pool3d_inexact(self, x, self._window3d)
        return Gs3.blur_with3d(x, self._buffers_for(x).filter, self.stride, self.padding,
                               "GaussianBlurPool3d")

    def _window3d(self) -> tuple:
        what = type(self).__name__
        return ((self.kernel_size,) * 3, C.check_triple(self.stride, "stride", what),
                C.check_triple(self.padding, "padding", what), (1, 1, 1))

    def extra_repr(self) -> str:
        # a constructor call: kernel_size is derived from sigma and truncate (an attribute)
        s = f"sigma={self.sigma:g}, stride={self.stride}"
        if C.check_triple(self.padding, "padding") != ((self.kernel_size - 1) // 2,) * 3:
            s += f", padding={self.padding}"
        if self.truncate != 3.0:
            s += f", truncate={self.truncate:g}"
        return s


class _SmoothMask(Typed, _FixedBuffers):
    """escnn's ``MaskModule``: a fixed ``mask`` buffer of ``size`` on each of ``_dims`` spatial
    dims (the arguments checked, the buffer filled by :meth:`_weights`)."""

    _fixed_args = ("size", "margin", "sigma")

    in_type = out_type = None  # any field type; the output has the input's
    _dims = 2
    _inexact_below_float64 = True  # a float64 input gets the mask built in float64

    mask: torch.Tensor  # buffer

    def __init__(self, size: int, margin: float = 0.0, sigma: float = 2.0, device=None,
                 dtype=None) -> None:
        super().__init__()
        what = type(self).__name__
        self.size = Gs.check_mask_size(size, what)
        self.margin, self.sigma = Gs.check_mask_args(margin, sigma, what)
        C.check_float_dtype(dtype, "dtype", what)
        self.register_buffer("mask", torch.empty((size,) * self._dims, device=device,
                                                 dtype=dtype), persistent=False)
        self._refill()  # not on the meta device: filled when moved off it

    def _weights(self) -> torch.Tensor:
        raise NotImplementedError

    def reset_parameters(self) -> None:
        """Refill the mask buffer (a fixed function of the arguments)."""
        with torch.no_grad():
            self.mask.copy_(self._weights())

    def extra_repr(self) -> str:
        s = f"{self.size}"
        if self.margin:
            s += f", margin={self.margin:g}"
        if self.sigma != 2.0:
            s += f", sigma={self.sigma:g}"
        return s


class DiskMask(_SmoothMask):
    """Multiply by a smooth disk mask (escnn's ``MaskModule``): 1 inside the disk of radius
    ``(1 - margin / 100) * c``, ``c = (size - 1) / 2``, and ``exp((t - d^2) / sigma^2)``
    outside (``d^2`` the squared distance from the centre, ``t`` the squared radius), so that
    the corners, which rotations move off the grid, carry (almost) nothing.

    Functional twin: :func:`~equilayers.functional.disk_mask2d`.

    Args:
        size: the spatial size ``S`` of the (square) inputs.
        margin: the margin as a percentage of the radius ``c``, in [0, 100] (escnn's
            convention; ``equilayers.groups.disk_mask`` takes pixels instead).
        sigma: how fast the mask decays outside the disk, in pixels (default 2, escnn's).
        device, dtype: of the ``mask`` buffer, as in ``torch.nn`` modules.

    Shape:
        ``(B, C, S, S)`` or ``(B, C, F, S, S)``, unchanged; other sizes raise ``ValueError``.

    Equivariance:
        Exact for rot90 and flips (the mask is symmetric about the centre); for other angles
        it makes rotated and unrotated inputs carry the same information (the point of it).

    Example:
        >>> import torch
        >>> DiskMask(29)(torch.randn(2, 3, 8, 29, 29)).shape
        torch.Size([2, 3, 8, 29, 29])
    """

    _dims = 2

    def _weights(self) -> torch.Tensor:
        return Gs.disk_mask_weights(self.size, self.margin, self.sigma, dtype=torch.float64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return Gs.apply_mask(x, self._buffers_for(x).mask, self.size, "DiskMask")


class BallMask(_SmoothMask):
    """Multiply by a smooth ball mask (escnn's ``MaskModule`` on volumes): the 3-D twin of
    :class:`DiskMask`, 1 inside the ball of radius ``(1 - margin / 100) * c``, ``c = (size -
    1) / 2``, and ``exp((t - d^2) / sigma^2)`` outside (``d^2`` the squared distance from the
    centre, ``t`` the squared radius), so that the corners, which rotations move off the grid,
    carry (almost) nothing.

    Functional twin: :func:`~equilayers.functional.ball_mask3d`.

    Args:
        size: the spatial size ``S`` of the (cubic) inputs.
        margin: the margin as a percentage of the radius ``c``, in [0, 100] (escnn's).
        sigma: how fast the mask decays outside the ball, in voxels (default 2, escnn's).
        device, dtype: of the ``mask`` buffer, as in ``torch.nn`` modules.

    Shape:
        ``(B, C, S, S, S)`` or ``(B, C, F, S, S, S)``, unchanged; other sizes raise
        ``ValueError``.

    Equivariance:
        Exact for the cube's 48 rotations and flips (the mask is symmetric about the centre);
        for other rotations it makes rotated and unrotated inputs carry the same information.

    Example:
        >>> import torch
        >>> BallMask(9)(torch.randn(2, 3, 24, 9, 9, 9)).shape
        torch.Size([2, 3, 24, 9, 9, 9])
    """

    _dims = 3

    def _weights(self) -> torch.Tensor:
        return Gs3.ball_mask_weights(self.size, self.margin, self.sigma, dtype=torch.float64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return Gs3.apply_ball_mask(x, self._buffers_for(x).mask, self.size, "BallMask")
