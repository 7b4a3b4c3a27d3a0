"""Spatial interpolation of images, volumes and group feature maps (``nn.Upsample`` on the
spatial dims only; escnn's ``R2Upsampling`` / ``R3Upsampling``).

On a group map ``(B, C, F, H, W)`` every slot is interpolated alone, as escnn interpolates its
``(B, C * F, H, W)`` tensor. (``nn.Upsample`` on the 5-D map itself would take ``F`` for a
spatial dim and interpolate across the fiber.)

Exactness on the grid: with an integer ``scale_factor`` an output pixel ``i`` reads the input
around ``(i + 1/2) / s - 1/2`` (``"nearest"``: ``floor(i / s)``; ``align_corners=True``:
``i (n - 1) / (s n - 1)``), which a flip of the output maps to the flip of that position, and
the interpolation weights are symmetric: so flips and quarter turns commute with it exactly,
on every field type (it acts on each channel alike). Off the grid it is as accurate as the
interpolation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import _checks as C

__all__ = ["group_upsample2d", "group_upsample3d", "check_upsample_args"]

#: the interpolation modes per spatial rank (``F.interpolate``'s names)
MODES = {2: ("nearest", "nearest-exact", "bilinear", "bicubic"),
         3: ("nearest", "nearest-exact", "trilinear")}
_LINEAR = {"bilinear", "bicubic", "trilinear"}


def check_upsample_args(size, scale_factor, mode, align_corners, nd: int,
                        what: str) -> tuple[tuple[int, ...] | None, int | None, str, bool | None]:
    """``(size, scale_factor, mode, align_corners)``: exactly one of ``size`` (an int or one
    int per spatial dim, >= 1) and ``scale_factor`` (an int >= 1: equal on every dim, as
    escnn's, so the quarter turns commute), a mode of :data:`MODES`, and ``align_corners``
    a bool for the (bi/tri)linear and bicubic modes, ``None`` for the nearest ones."""
    if (size is None) == (scale_factor is None):
        raise ValueError(f"{what}: give exactly one of size and scale_factor; got size={size!r}, "
                         f"scale_factor={scale_factor!r} (as nn.Upsample)")
    if size is not None:  # the output's spatial size, as the conv arguments' pairs/triples
        check = C.check_pair if nd == 2 else C.check_triple
        size = check(size, "size", what, minimum=1)
    else:
        scale_factor = C.check_int(
            scale_factor, "scale_factor", what, minimum=1,
            fix="an integer factor, the same on every dim, keeps rot90 and flips exact; for "
                "another output size pass size=")
    C.check_choice(mode, "mode", MODES[nd], what)
    if mode in _LINEAR:
        align_corners = C.check_bool(align_corners, "align_corners", what, optional=True,
                                     fix="as F.interpolate; None is False")
    elif align_corners is not None:
        raise ValueError(f"{what}: align_corners={align_corners!r} needs an interpolating mode "
                         f"({', '.join(m for m in MODES[nd] if m in _LINEAR)}); with "
                         f"mode={mode!r} leave it None (as F.interpolate)")
    return size, scale_factor, mode, align_corners


def _upsample(x, size, scale_factor, mode, align_corners, nd: int, what: str) -> torch.Tensor:
    size, scale_factor, mode, align_corners = check_upsample_args(
        size, scale_factor, mode, align_corners, nd, what)
    image, group_map = ("(B, C, H, W)", "(B, C, F, H, W)") if nd == 2 else (
        "(B, C, D, H, W)", "(B, C, F, D, H, W)")
    C.check_tensor(x, "x", what, ndim=(nd + 2, nd + 3),
                   layout=f"{image} or a group feature map {group_map}")
    flat = x.flatten(1, 2) if x.dim() == nd + 3 else x  # escnn's layout (a view)
    if flat.shape[1] == 0:  # F.interpolate refuses 0 channels; it takes an empty batch
        flat = flat.reshape(0, 1, *flat.shape[2:])
    y = F.interpolate(flat, size=size, scale_factor=scale_factor, mode=mode,
                      align_corners=align_corners)
    return y.reshape(*x.shape[:-nd], *y.shape[-nd:])


def group_upsample2d(x: torch.Tensor, size: int | tuple[int, ...] | None = None,
                     scale_factor: int | None = None, mode: str = "nearest",
                     align_corners: bool | None = None) -> torch.Tensor:
    """Interpolate an image ``(B, C, H, W)`` or a group map ``(B, C, F, H, W)`` along ``H, W``
    only, every channel and slot alone (``F.interpolate``).

    See :class:`equilayers.nn.GroupUpsample2d`.

    Example:
        >>> group_upsample2d(torch.randn(2, 3, 8, 5, 5), scale_factor=2, mode="bilinear").shape
        torch.Size([2, 3, 8, 10, 10])
    """
    return _upsample(x, size, scale_factor, mode, align_corners, 2, "group_upsample2d")


def group_upsample3d(x: torch.Tensor, size: int | tuple[int, ...] | None = None,
                     scale_factor: int | None = None, mode: str = "nearest",
                     align_corners: bool | None = None) -> torch.Tensor:
    """Interpolate a volume ``(B, C, D, H, W)`` or a cube-group map ``(B, C, F, D, H, W)``
    along ``D, H, W`` only, every channel and slot alone (``F.interpolate``).

    See :class:`equilayers.nn.GroupUpsample3d`.

    Example:
        >>> group_upsample3d(torch.randn(1, 2, 24, 3, 3, 3), scale_factor=2).shape
        torch.Size([1, 2, 24, 6, 6, 6])
    """
    return _upsample(x, size, scale_factor, mode, align_corners, 3, "group_upsample3d")
