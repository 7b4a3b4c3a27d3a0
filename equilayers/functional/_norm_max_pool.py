"""Spatial max pooling of harmonic fields by magnitude (escnn's ``NormMaxPool``), on images and
on volumes."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .. import _checks as C
from ..groups import GroupLike
from ._group_pool import check_max_windows
from ._harmonic import _low_precision, _volume_fields, check_harmonic
from ._harmonic3d import check_harmonic3d, order_blocks
from ._pool3d import _check_window3d, check_pool3d_args

__all__ = ["norm_max_pool2d", "norm_max_pool3d", "PER"]

PER = ("field", "order")


def check_pool_args(kernel_size, stride, padding, dilation, what: str = "norm_max_pool2d"):
    """``nn.MaxPool2d``'s arguments as pairs (:func:`equilayers._checks.check_pool_args`)."""
    return C.check_pool_args(kernel_size, stride, padding, dilation, what, max_pool=True)


def norm_max_pool2d(
    x: torch.Tensor,
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int] | None = None,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    ceil_mode: bool = False,
    *,
    max_order: int | None = None,
    per: str = "field",
) -> torch.Tensor:
    """Max pooling by magnitude: in every window keep the vector with the largest norm.

    ``per="field"`` (default): one location per field, the one of largest ``|v|^2 = a_0^2 +
    sum_m (c_m^2 + s_m^2)``, and the whole fiber is copied from it (escnn's ``NormMaxPool`` on
    a field of type ``irrep(0) + ... + irrep(M)``). ``per="order"``: one location per field and
    order, the one of largest ``|v_m|`` (escnn's ``NormMaxPool`` with one field per irrep).
    The squared norms are compared (float32 for float16/bfloat16 inputs); the vectors are
    gathered unchanged, so gradients flow to the chosen ones only. ``max_order`` defaults to
    the one the fiber implies (``F = 2M + 1``). The other arguments are ``F.max_pool2d``'s
    (padding is never chosen). Volumes: :func:`norm_max_pool3d`.

    Ties: order 0 alone (``per="order"``, or ``M = 0``) is chosen by value, ``+a`` over
    ``-a`` where ``|a_0|`` ties (order 0 is invariant, so this is equivariant; in float32
    and float64, ``+a`` and ``-b`` one or two ulps apart in magnitude may still tie). Other
    ties of the largest norm (a vector order, or a whole fiber) go to the first location in
    the window, as ``max_pool2d``'s, so a rotation or flip that reorders them picks another
    vector. On
    ``randn`` fibers (16 x 16 x 5 x 64 x 64, ``kernel_size=2``, ``per="order"``), order 0
    tied in 0.41% of the windows after rounding to bfloat16 (half of them ``+a``/``-a``, which
    flipped the output's sign before), 0.05% in float16 and none in float32; orders 1-2 in
    0.002% (bfloat16) and 0.0004% (float32: one window); ``per="field"`` in none. Choosing
    order 0 by value cost 3-11% of a ``per="order"`` call (forward or training step, ``M =
    1, 2``), 3% at ``M = 0`` (CPU thread time at 16 x 16 x F x 64 x 64, torch 2.13, 1 thread).
    """
    what = "norm_max_pool2d"
    if isinstance(x, torch.Tensor) and x.dim() == 6:
        raise ValueError(f"{what} expects a harmonic field (B, C, 2M+1, H, W); got a 6-D "
                         f"tensor of shape {tuple(x.shape)}: pool volumes with norm_max_pool3d")
    if max_order is None:
        max_order = _implied_order(x, False, what)
    check_harmonic(x, max_order, what)
    C.check_choice(per, "per", PER, what, fix=_PER_FIX)
    k, s, p, d = check_pool_args(kernel_size, stride, padding, dilation)
    C.check_flag(ceil_mode, "ceil_mode", what)
    # torch's "Output size is too small" (ceil_mode takes a window overhanging the end)
    C.check_window(x, (d[0] * (k[0] - 1) + 1, d[1] * (k[1] - 1) + 1),
                   (p[1], p[1], p[0], p[0]), what, ceil_stride=s if ceil_mode else None)
    check_max_windows(x, k, s, p, d, ceil_mode, what)
    return _pool_by_norm(x, max_order, False, per, F.max_pool2d, (k, s, p, d, ceil_mode))


def norm_max_pool3d(
    x: torch.Tensor,
    kernel_size: int | tuple[int, ...],
    stride: int | tuple[int, ...] | None = None,
    padding: int | tuple[int, ...] = 0,
    dilation: int | tuple[int, ...] = 1,
    ceil_mode: bool = False,
    *,
    max_order: int | None = None,
    group: GroupLike | None = None,
    per: str = "field",
) -> torch.Tensor:
    """:func:`norm_max_pool2d` on volumes: ``F.max_pool3d``'s windows over ``(D, H, W)``.

    ``group="so3"``/``"o3"``: SO(3)/O(3) fields ``(B, C, (M+1)^2, D, H, W)``, whose order
    ``l`` fills slots ``l^2 .. (l+1)^2 - 1``: ``per="field"`` keeps the fiber of largest
    ``sum_l |v_l|^2``, ``per="order"`` the order ``l`` block of largest ``|v_l|``. ``group=None``
    or a planar group: volumes of planar fields ``(B, C, 2M+1, D, H, W)`` (as from
    ``SteerableConv3d(..., group="so2")``). ``max_order`` defaults to the one the fiber implies.

    Example:
        >>> norm_max_pool3d(torch.randn(1, 2, 9, 4, 4, 4), 2, group="so3").shape
        torch.Size([1, 2, 9, 2, 2, 2])
    """
    what = "norm_max_pool3d"
    volume = _volume_fields(group, what)
    if max_order is None:
        max_order = _implied_order(x, volume, what)
    if volume:
        check_harmonic3d(x, max_order, what)
    else:
        check_harmonic(x, max_order, what)
        if x.dim() != 6:
            raise ValueError(f"{what} expects a volume of harmonic fields (B, C, 2M+1, D, H, "
                             f"W) (or, with group='so3'/'o3', (B, C, (M+1)^2, D, H, W)); got "
                             f"shape {tuple(x.shape)}: pool images with norm_max_pool2d")
    C.check_choice(per, "per", PER, what, fix=_PER_FIX)
    k, s, p, d = check_pool3d_args(kernel_size, stride, padding, dilation, what, max_pool=True)
    C.check_flag(ceil_mode, "ceil_mode", what)
    _check_window3d(x, k, p, d, what, s if ceil_mode else None)
    check_max_windows(x, k, s, p, d, ceil_mode, what)
    return _pool_by_norm(x, max_order, volume, per, F.max_pool3d, (k, s, p, d, ceil_mode))


_PER_FIX = "'field': one location per field, 'order': one per field and rotation order"


def _implied_order(x, volume: bool, what: str) -> int:
    """The ``max_order`` a fiber implies: ``F = 2M + 1`` (planar), ``(M + 1)^2`` (SO(3))."""
    rank = 6 if volume else 5
    f = int(x.shape[2]) if isinstance(x, torch.Tensor) and x.dim() >= 3 else 0
    root = math.isqrt(f)
    if not isinstance(x, torch.Tensor) or x.dim() not in (rank, 6) or (
            (root * root != f or f == 0) if volume else f % 2 == 0):
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        if isinstance(x, torch.fx.Proxy):
            C.check_tensor(x, "x", what)  # the TypeError naming the fx fix
        layout = ("(B, C, (M+1)^2, D, H, W) with a square fiber" if volume else
                  "(B, C, 2M+1, D, H, W) with an odd fiber" if what.endswith("3d") else
                  "(B, C, 2M+1, H, W) with an odd fiber")
        square = isinstance(x, torch.Tensor) and x.dim() == 6 and root * root == f > 1
        hint = ("; SO(3)/O(3) fields (B, C, (max_order+1)^2, D, H, W) need group='so3' or "
                "'o3'" if square and not volume else "")
        raise ValueError(f"{what} expects a harmonic field {layout}; got shape {shape}{hint}")
    return root - 1 if volume else (f - 1) // 2  # int: a traced size is a tensor


def _order_sums(sq: torch.Tensor, max_order: int, volume: bool,
                first: torch.Tensor | None = None) -> torch.Tensor:
    """The squared norm of every order, ``(B, C, M + 1, ...)``, each summed over its slots in
    a fixed order (a rotation or flip of a planar order only swaps or negates its two slots,
    so its sum is bit-exact; an SO(3) order's may change in the last bit); ``first``, if
    given, in place of order 0's."""
    if not max_order:
        return sq if first is None else first
    if volume:
        blocks = [b.sum(2, keepdim=True) for b in order_blocks(sq, max_order)]
    else:
        blocks = [sq[:, :, :1], sq[:, :, 1:].unflatten(2, (-1, 2)).sum(3)]
    return torch.cat([first if first is not None else blocks[0], *blocks[1:]], 2)


def _slot_orders(max_order: int, volume: bool, device) -> torch.Tensor:
    """The order of every slot: ``[0, 1, 1, 2, 2, ...]`` (planar), ``[0, 1, 1, 1, 2 x 5, ...]``
    (SO(3))."""
    starts = torch.arange(1, max_order + 1, device=device)  # the first slot of orders 1..M
    starts = starts * starts if volume else 2 * starts - 1
    slots = torch.arange((max_order + 1) ** 2 if volume else 2 * max_order + 1, device=device)
    # integer ops only (repeat_interleave has no meta kernel without output_size, which the
    # ONNX exporter does not take)
    return (slots[:, None] >= starts).sum(1)


def _pool_by_norm(x: torch.Tensor, max_order: int, volume: bool, per: str, pool,
                  args: tuple) -> torch.Tensor:
    """Pool the squared norms with indices, then gather the vectors they choose; order 0
    alone (``per="order"``, or fields of order 0 only) by :func:`_order0_keys`."""
    b, c, f = x.shape[:3]
    space = x.shape[3:]
    v = x.detach()
    low = _low_precision(v)
    if low:
        v = v.float()
    if per == "field" and max_order:  # orders summed in a fixed order: rotations and flips
        sq = _order_sums(v * v, max_order, volume).sum(2, keepdim=True)  # keep it exact
    else:
        first = _order0_keys(v[:, :, :1], low)
        sq = _order_sums(v * v, max_order, volume, first) if max_order else first
    groups = sq.shape[2]
    # no planes (C = 0): an empty batch instead, which torch's pools take (they refuse 0
    # channels)
    planes = sq.flatten(1, 2) if c else sq.reshape(0, 1, *space)
    _, idx = pool(planes, *args, return_indices=True)
    out = idx.shape[-len(space):]
    idx = idx.view(b, c, groups, math.prod(out))
    if per == "field":
        idx = idx.expand(b, c, f, idx.shape[-1])
    elif max_order:
        idx = idx.index_select(2, _slot_orders(max_order, volume, idx.device))
    return x.flatten(3).gather(3, idx).view(b, c, f, *out)


def _order0_keys(a0: torch.Tensor, low: bool) -> torch.Tensor:
    """Order 0's pooling keys in place of its squares: ``|a_0|``, lifted for ``a_0 > 0`` by
    ``2^-12`` of itself (``low``: float16/bfloat16 values in float32, where that is exact
    and below the next magnitude), one or two ulps in float32 and float64: the window's
    largest ``|a_0|`` wins, and ``+a`` wins a tie with ``-a``.

    Order 0 is invariant (every group here leaves ``a_0`` alone), so this choice by value is
    equivariant where the first location of a tie (the pool's) is not: a rotation that
    reorders ``+a`` and ``-a`` flipped the output's sign (0.2% of the windows of ``randn``
    fibers rounded to bfloat16, where ``|a| = |b|`` often). In float32 and float64, between
    ``+a`` and ``-b`` with ``|b|`` one or two ulps above ``|a|``, ``+a`` may win or the keys
    tie (then the first location wins, as in a tie of another order's squared norms)."""
    lift = 2.0 ** (-12 if low else -23 if a0.dtype == torch.float32 else -52)
    # |a| + lift max(a, 0) (torch.where measured 30x slower on CPU); NaN stays NaN, which
    # max pooling picks, as it does a NaN squared norm
    return torch.add(a0.abs(), a0.clamp_min(0), alpha=lift)
