"""Spatial interpolation of images, volumes and group feature maps: ``nn.Upsample`` on the
spatial dims only (see :mod:`equilayers.functional._upsample`)."""

from __future__ import annotations

import torch
from torch import nn

from ..functional._upsample import (
    check_upsample_args,
    copies_at,
    group_upsample2d,
    group_upsample3d,
    upsample_problem,
)
from ._exactness import _quiet, warn_once
from ._typed import Typed

__all__ = ["GroupUpsample2d", "GroupUpsample3d"]


class _GroupUpsample(Typed, nn.Module):
    in_type = out_type = None  # any field type; the output has the input's
    _nd = 2
    #: the nearest modes copy each sample at an integer ratio (for ``check_grid``:
    #: :func:`~equilayers.functional._upsample.copy_factors`)
    _copies_integer_ratios = True

    def __init__(self, size=None, scale_factor: int | None = None, mode: str = "nearest",
                 align_corners: bool | None = None) -> None:
        super().__init__()
        self.size, self.scale_factor, self.mode, self.align_corners = check_upsample_args(
            size, scale_factor, mode, align_corners, self._nd, type(self).__name__)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fn = group_upsample2d if self._nd == 2 else group_upsample3d
        y = fn(x, self.size, self.scale_factor, self.mode, self.align_corners)
        if self.size is not None and not self.__dict__.get("_warned", False) and (
                x.dim() == self._nd + 3):  # on group maps: images make no group claim
            self._warn_if_size_inexact(tuple(x.shape[-self._nd:]), tuple(y.shape[-self._nd:]))
        return y

    def _warn_if_size_inexact(self, size: tuple[int, ...], got: tuple[int, ...]) -> None:
        """Once per module: a ``size`` that is not exact under the flips of ``H`` and ``W``
        and the quarter turn that swaps them, by the law that :func:`~equilayers.check_grid`
        asks (:func:`~equilayers.functional._upsample.upsample_problem`: the nearest modes'
        index map must commute with the flip, and ``H`` and ``W`` must get the same output
        size, whatever their input sizes). The depth of a volume is left to
        :func:`~equilayers.check_grid`, which knows whether the group moves it (``c4z``/``d4z``
        do not). Memoised per module on the sizes."""
        if _quiet() or torch.compiler.is_compiling() or torch.jit.is_tracing():
            return
        key = (size, got, self.mode)
        exact = self.__dict__.setdefault("_exact_sizes", set())
        if key in exact:
            return
        problem = upsample_problem(
            size[-2:], got[-2:], (0, 1), [(0, 1)], self.mode, align_corners=self.align_corners,
            sized=True, copied=copies_at(size, got, self.mode), names=("height", "width"),
            nd=self._nd)
        if problem is None:
            exact.add(key)
            return
        why, fix = problem
        warn_once(self, f"{type(self).__name__}({self.extra_repr()}) on a group map is not "
                  f"exactly equivariant to flips and rotations: {why}; use {fix} (warned "
                  "once per module)")

    def extra_repr(self) -> str:
        s = (f"size={self.size}" if self.size is not None
             else f"scale_factor={self.scale_factor}")
        s += f", mode={self.mode!r}"
        if self.align_corners is not None:
            s += f", align_corners={self.align_corners}"
        return s


class GroupUpsample2d(_GroupUpsample):
    """Interpolate images and group feature maps along ``H, W`` only (``nn.Upsample``'s
    arguments; escnn's ``R2Upsampling``).

    Every channel, and every slot of a group map's fiber, is interpolated alone: a group map
    ``(B, C, F, H, W)`` keeps its ``F`` slots (``nn.Upsample`` on the 5-D tensor would
    interpolate across them). ``from_escnn`` converts escnn's ``R2Upsampling`` to it.

    Functional twin: :func:`~equilayers.functional.group_upsample2d`.

    Args:
        size: the output's ``(H', W')`` (an int for both); or
        scale_factor: an integer factor for both dims (exactly one of the two).
        mode: ``"nearest"`` (default, as ``nn.Upsample``), ``"nearest-exact"``,
            ``"bilinear"`` (escnn's default) or ``"bicubic"``. At an integer ratio
            (``scale_factor``, or a ``size`` that is an integer multiple of the input's)
            both nearest modes copy each pixel ``s`` times, exactly (the library copies
            itself: torch's own ``"nearest"`` misses that copy at some factors, e.g. 41).
        align_corners: as ``F.interpolate``, for ``"bilinear"`` / ``"bicubic"`` only.

    Shape:
        ``(B, C, H, W) -> (B, C, H', W')`` or ``(B, C, F, H, W) -> (B, C, F, H', W')``,
        ``H' = H * scale_factor`` (or ``size``).

    Equivariance:
        With ``scale_factor``, exact (float rounding) for rot90 and flips, on any field type
        and any ``H x W``, in every mode (the interpolation is symmetric about the centre);
        tested, with a fractional-factor interpolation as the negative control. Not exact for
        circular shifts at the border in the interpolating modes (clamped there). With
        ``size``, rot90 needs ``H' == W'`` (the output box is fixed, so a rotated input must
        come out in the same box; ``H`` and ``W`` may differ: ``size=8`` on ``4 x 6`` is
        exact in the linear modes); then the linear modes are exact at any size, and the
        nearest modes where torch's index map commutes with the flip
        (:func:`~equilayers.functional._upsample.resize_break`): at an integer ratio, and for
        ``"nearest-exact"`` at some other sizes (``7 -> 20``) but not all (``4 -> 9``: error
        0.68 on a p4m map). Elsewhere it warns once on a group map, and
        :func:`~equilayers.check_grid` reports it (``"upsample-size"``), by the same law
        (:func:`~equilayers.functional._upsample.upsample_problem`).

    Example:
        >>> GroupUpsample2d(scale_factor=2, mode="bilinear")(torch.randn(2, 3, 8, 5, 5)).shape
        torch.Size([2, 3, 8, 10, 10])
    """

    def _grid_window(self, size: tuple[int, int]):
        """For ``check_grid``: the interpolating modes read each pixel's neighbours with the
        border clamped (a ``replicate`` 3 x 3 window at stride 1: symmetric, so no rotation
        finding; a finding under circular shifts); the nearest modes copy pixels (``None``:
        exact under circular shifts too, by ``scale_factor`` times the shift)."""
        if self.mode.startswith("nearest"):
            return None
        return ((3, 3), (1, 1), (1, 1, 1, 1), "replicate",
                "mode='nearest' (exact under circular shifts), or check shifts=False")


class GroupUpsample3d(_GroupUpsample):
    """Interpolate volumes and cube-group feature maps along ``D, H, W`` only
    (``nn.Upsample``'s arguments; escnn's ``R3Upsampling``).

    A cube-group map ``(B, C, F, D, H, W)`` keeps its ``F`` slots; ``nn.Upsample`` takes no
    6-D tensor. ``from_escnn`` converts escnn's ``R3Upsampling`` to it.

    Functional twin: :func:`~equilayers.functional.group_upsample3d`.

    Args:
        size: the output's ``(D', H', W')`` (an int for all three); or
        scale_factor: an integer factor for every dim (exactly one of the two).
        mode: ``"nearest"`` (default), ``"nearest-exact"`` or ``"trilinear"``; at an
            integer ratio both nearest modes copy each voxel ``s`` times, as in 2-D.
        align_corners: as ``F.interpolate``, for ``"trilinear"`` only.

    Shape:
        ``(B, C, D, H, W) -> (B, C, D', H', W')`` or ``(B, C, F, D, H, W) ->
        (B, C, F, D', H', W')``, ``D' = D * scale_factor`` (or ``size``).

    Equivariance:
        With ``scale_factor``, exact (float rounding) for the cube's 48 symmetries on any field
        type and any ``D x H x W`` (tested on cubes), in every mode. Circular shifts: exact in
        the nearest modes, not at the clamped border with ``"trilinear"`` (which
        :func:`~equilayers.check_grid` reports on images only, not on volumes). With ``size``,
        the dims the group trades need equal output sizes, whatever their input sizes (``size=
        (8, 8, 16)`` on a ``4 x 4 x 8`` ``o`` map breaks 16 of the 24 rotations; ``size=6`` on
        ``9 x 2 x 9`` is exact); then ``"trilinear"`` is exact at any size, and the nearest
        modes where torch's index map commutes with the flip (an integer ratio; for
        ``"nearest-exact"`` some other sizes, not ``4 -> 9``: error 0.76 on a 4^3 ``o`` map).
        Elsewhere it warns once on a group map (it reads ``H, W``, as ``c4z``/``d4z`` move
        them; measured at 5^3 -> 8^3, nearest: relative error 1.3 over the 24 rotations, the
        harness's measure; 5.2 absolute), and :func:`~equilayers.check_grid` reports it
        (``"upsample-size"``, every dim the group moves, the depth too for ``o``/``oh``).

    Example:
        >>> GroupUpsample3d(scale_factor=2)(torch.randn(1, 2, 24, 3, 3, 3)).shape
        torch.Size([1, 2, 24, 6, 6, 6])
    """

    _nd = 3
