"""Spatial max pooling of harmonic fields by magnitude (escnn's ``NormMaxPool``), on images
and volumes, split from :mod:`._harmonic` (the other harmonic-field modules); the math is
:mod:`equilayers.functional._norm_max_pool`."""

from __future__ import annotations

import torch

from ..functional import _norm_max_pool as NMP
from ..functional import _pool3d as P3
from ..groups import Group, GroupLike
from . import _checks as C
from ._exactness import _WarnsInexact
from ._harmonic import _group_repr, _harmonic, _spatial
from ._pool3d import warn_if_pool3d_inexact
from ._typed import Typed

__all__ = ["NormMaxPool"]


class NormMaxPool(Typed, _WarnsInexact):
    """Spatial max pooling of harmonic fields by magnitude: in every window, per field, keep the
    vector of largest norm (escnn's ``NormMaxPool``); ``nn.MaxPool2d``'s signature
    (``nn.MaxPool3d``'s on volumes).

    ``per="field"`` (default) keeps, per field, the whole fiber at the location of largest
    ``|v|^2 = a_0^2 + sum_m |v_m|^2`` (escnn with one field ``irrep(0) + ... + irrep(M)``);
    ``per="order"`` picks a location per field and rotation order, by ``|v_m|`` (escnn with one
    field per irrep).

    Functional twin: :func:`~equilayers.functional.norm_max_pool2d` (on volumes,
    :func:`~equilayers.functional.norm_max_pool3d`).

    Args:
        kernel_size, stride, padding, dilation, ceil_mode: as ``nn.MaxPool2d`` (``nn.MaxPool3d``
            on volumes: an int or a triple; stride defaults to kernel_size; ``ceil_mode`` is
            keyword-only: ``nn.MaxPool2d``'s fifth positional argument is ``return_indices``,
            which this module does not offer).
        max_order: ``M``, or ``None`` to read it from the input.
        per: ``"field"`` or ``"order"`` (SO(3)/O(3): one location per field and order ``l``,
            by ``|v_l|``).
        group: ``None`` (any planar group), a planar group, or ``"so3"``/``"o3"`` (SO(3)/O(3)
            fields on volumes, ``(B, C, (M+1)^2, D, H, W)``, whose order ``l`` fills slots
            ``l^2 .. (l+1)^2 - 1``; as from :class:`SteerableConv3d`).
        spatial_dims: ``3`` for volumes of planar fields ``(B, C, 2M+1, D, H, W)`` (as from
            ``SteerableConv3d(..., group="so2")``); default ``None``: 2 for planar groups and
            ``None``, 3 for SO(3)/O(3).

    Shape: ``(B, C, 2M+1, H, W) -> (B, C, 2M+1, H', W')`` with ``nn.MaxPool2d``'s ``H' =
    floor((H + 2 p - d (k - 1) - 1) / s) + 1`` (``ceil`` with ``ceil_mode``); on volumes
    ``(B, C, F, D, H, W) -> (B, C, F, D', H', W')``, the same per dim.

    Equivariance: exact for the grid rotations and flips (norms are invariant and the vector is
    moved unchanged; the cube's 24/48 for SO(3)/O(3)) under the same conditions as
    ``nn.MaxPool2d``/``nn.MaxPool3d``: windows that tile the input symmetrically (``(H + 2 p -
    d (k - 1) - 1) % s == 0``, e.g. k=3, s=2, p=1 on odd sizes, k=s=2 on even ones; warns once
    otherwise) and, for the vector orders (and whole fibers with ``per="field"``), a unique
    largest norm per window: their ties go to the first location in the window, as
    ``max_pool2d``'s (0.002% of the windows of bfloat16 ``randn`` fibers, rarer in float32;
    an SO(3) order's norm, summed over slots that a rotation mixes, may change in its last
    bit, so norms equal to rounding can swap). Order 0 alone (``per="order"``, or ``M = 0``)
    is chosen by value, ``+a`` over ``-a``, which is exact for ties too (they were 0.4% of the
    windows in bfloat16, and flipped the output's sign under a rotation;
    :func:`~equilayers.functional.norm_max_pool2d` gives the numbers).

    Example:
        >>> NormMaxPool(2)(torch.randn(2, 3, 5, 8, 8)).shape
        torch.Size([2, 3, 5, 4, 4])
        >>> NormMaxPool(2, group="so3")(torch.randn(2, 3, 9, 8, 8, 8)).shape
        torch.Size([2, 3, 9, 4, 4, 4])
    """

    group: Group | None  # set in __init__ (None: any planar group)

    def __init__(self, kernel_size: int | tuple[int, ...],
                 stride: int | tuple[int, ...] | None = None,
                 padding: int | tuple[int, ...] = 0, dilation: int | tuple[int, ...] = 1, *,
                 ceil_mode: bool = False, max_order: int | None = None,
                 per: str = "field", group: GroupLike | None = None,
                 spatial_dims: int | None = None) -> None:
        super().__init__()
        name = type(self).__name__
        self.max_order = _harmonic(self, max_order, name, group=group,
                                   spatial_dims=spatial_dims)
        if _spatial(self) == 3:
            P3.check_pool3d_args(kernel_size, stride, padding, dilation, name, max_pool=True)
        else:
            NMP.check_pool_args(kernel_size, stride, padding, dilation, name)
        self.kernel_size, self.stride = kernel_size, kernel_size if stride is None else stride
        self.padding, self.dilation = padding, dilation
        self.ceil_mode = C.flag(ceil_mode, "ceil_mode", name)
        self.per = C.choice(per, "per", name, NMP.PER)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        C.harmonic_fiber(x, self)
        args: tuple = (x, self.kernel_size, self.stride, self.padding, self.dilation,
                       self.ceil_mode)
        if _spatial(self) == 3:
            warn_if_pool3d_inexact(self, x, self._window3d)  # once, where the grid breaks it
            return NMP.norm_max_pool3d(*args, max_order=self.max_order, per=self.per,
                                       group=self.group)
        self._warn_if_window_inexact(x)  # once, where the grid breaks it
        return NMP.norm_max_pool2d(*args, max_order=self.max_order, per=self.per)

    def _window3d(self) -> tuple:
        return P3.check_pool3d_args(self.kernel_size, self.stride, self.padding, self.dilation,
                                    type(self).__name__, max_pool=True)

    def _sampling_window(self) -> tuple:
        ph, pw = C.C.check_pair(self.padding, "padding")
        return self.kernel_size, self.stride, (ph, ph, pw, pw), self.dilation

    def extra_repr(self) -> str:
        text = f"kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != 0:
            text += f", padding={self.padding}"
        if self.dilation != 1:
            text += f", dilation={self.dilation}"
        if self.ceil_mode:
            text += ", ceil_mode=True"
        if self.max_order is not None:
            text += f", max_order={self.max_order}"
        return (text + ("" if self.per == "field" else f", per={self.per!r}")
                + _group_repr(self))
