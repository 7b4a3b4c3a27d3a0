"""Spatial pooling of 6-D group feature maps ``(B, C, F, D, H, W)`` (the cube groups' regular
fields on volumes, :mod:`equilayers.groups._cubic`): max and average pooling of every slot,
and adaptive polyphase sampling (Chaman & Dokmanic 2021) in 3-D.

Polyphase components in 3-D: the ``s^3`` sub-volumes ``x[..., a::s, b::s, c::s]``, flat index
``a s^2 + b s + c``. :func:`polyphase_pool3d` keeps, per sample, the component of largest
norm (over every non-batch dim, in float64; ties go to the lowest index). A circular shift by
``t = (t_d, t_h, t_w)`` sends component ``(a, b, c)`` to ``((a + t_d) % s, ...)``, rolled by
``((a + t_d) // s, ...)``: the same samples are kept and come out rolled, so polyphase pools
between circular convolutions and a global pool give exact invariance to every integer
circular shift. On a volume whose three sizes are equal and divisible by ``s``, every cube
element (a signed permutation of the axes) permutes the components (a flip of an axis maps
phase ``a`` to ``s - 1 - a``; a permutation of the axes permutes ``(a, b, c)``) and moves the
kept one like the input, so the choice commutes with the whole of O_h whenever the largest
norm is unique (random inputs, almost surely; no rule can commute on exact ties). The sizes
need only be divisible by ``s``: a rotation permutes them with the dims.
"""

from __future__ import annotations

import math
from typing import Literal, cast, overload

import torch
import torch.nn.functional as F

from .. import _checks as C
from ..kernels._reference import CRITERIA, blur_nd
from ._blur import binomial_filter
from ._group_pool import check_max_windows
from ._polyphase import check_index, place_components

__all__ = ["group_max_pool3d", "group_avg_pool3d", "polyphase_pool3d", "polyphase_upsample3d"]


def check_map6d(x: torch.Tensor, what: str) -> None:
    """``x`` is a floating ``(B, C, F, D, H, W)`` group feature map."""
    C.check_group_map(x, what, (3,), " (use nn.MaxPool3d/nn.AvgPool3d for (B, C, D, H, W) "
                      "volumes)")


def check_pool3d_args(kernel_size, stride, padding, dilation, what: str, *, max_pool: bool
                      ) -> tuple[tuple[int, ...], ...]:
    """:func:`equilayers._checks.check_pool_args` of the 3-D pools (triples)."""
    return C.check_pool_args(kernel_size, stride, padding, dilation, what, max_pool=max_pool,
                             dims=3)


def _check_window3d(x: torch.Tensor, k, p, d, what: str, ceil_stride=None) -> None:
    """Every padded dim holds a window (torch's "Output size is too small"); ``ceil_stride``:
    a ``ceil_mode=True`` pool's strides, where torch also takes a padded size short of the
    window by less than the stride (:func:`equilayers._checks.check_window`)."""
    for i, name in enumerate(("depth", "height", "width")):
        extent = d[i] * (k[i] - 1) + 1
        n = x.shape[-3 + i]
        short = extent - n - 2 * p[i]
        if (short > 0 if ceil_stride is None else n == 0 or short >= ceil_stride[i]):
            ceil = ("" if ceil_stride is None else
                    f" by the stride {ceil_stride[i]} or more (ceil_mode=True takes a window "
                    "that overhangs the end by less than the stride)")
            raise ValueError(f"{what}: the input's {name} {n} (+ padding 2 x {p[i]}) is smaller "
                             f"than the pooling window ({extent}){ceil}; got x of shape "
                             f"{tuple(x.shape)}")


def _spatial(x: torch.Tensor, fn, what: str, k, p, d, ceil_mode: bool, *args
             ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    check_map6d(x, what)
    _check_window3d(x, k, p, d, what, args[1] if ceil_mode else None)  # (args: k, s, ...)
    if fn is F.max_pool3d:
        check_max_windows(x, k, args[1], p, d, ceil_mode, what)
    b, c, f = x.shape[:3]
    # no planes (C = 0): an empty batch instead, which torch's pools take (they refuse 0 channels)
    y = fn(x.reshape(b, c * f, *x.shape[-3:]) if c * f else x.reshape(0, 1, *x.shape[-3:]), *args)
    if isinstance(y, tuple):  # (values, indices): both in the group map's layout
        values, indices = y
        return (values.reshape(b, c, f, *values.shape[-3:]),
                indices.reshape(b, c, f, *indices.shape[-3:]))
    return y.reshape(b, c, f, *y.shape[-3:])


@overload
def group_max_pool3d(x: torch.Tensor, kernel_size, stride=..., padding=..., dilation=...,
                     ceil_mode: bool = ..., return_indices: Literal[False] = ...
                     ) -> torch.Tensor: ...


@overload
def group_max_pool3d(x: torch.Tensor, kernel_size, stride=..., padding=..., dilation=...,
                     ceil_mode: bool = ..., *, return_indices: Literal[True]
                     ) -> tuple[torch.Tensor, torch.Tensor]: ...


@overload
def group_max_pool3d(x: torch.Tensor, kernel_size, stride=..., padding=..., dilation=...,
                     ceil_mode: bool = ..., return_indices: bool = ...
                     ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]: ...


def group_max_pool3d(x: torch.Tensor, kernel_size, stride=None, padding=0, dilation=1,
                     ceil_mode: bool = False, return_indices: bool = False
                     ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """``F.max_pool3d`` over the spatial dims of ``(B, C, F, D, H, W)`` (each slot
    separately), with ``F.max_pool3d``'s arguments in its order. See
    :class:`equilayers.nn.GroupMaxPool3d` (``return_indices``: its indices, as there).

    Example:
        >>> group_max_pool3d(torch.randn(1, 2, 24, 4, 4, 4), 2).shape
        torch.Size([1, 2, 24, 2, 2, 2])
    """
    what = "group_max_pool3d"
    k, s, p, d = check_pool3d_args(kernel_size, stride, padding, dilation, what, max_pool=True)
    C.check_flag(ceil_mode, "ceil_mode", what)
    C.check_flag(return_indices, "return_indices", what)
    return _spatial(x, F.max_pool3d, what, k, p, d, ceil_mode, k, s, p, d, bool(ceil_mode),
                    bool(return_indices))


def group_avg_pool3d(x: torch.Tensor, kernel_size, stride=None, padding=0,
                     ceil_mode: bool = False, count_include_pad: bool = True) -> torch.Tensor:
    """``F.avg_pool3d`` over the spatial dims of ``(B, C, F, D, H, W)`` (each slot
    separately). See :class:`equilayers.nn.GroupAvgPool3d`.

    Example:
        >>> group_avg_pool3d(torch.randn(1, 2, 4, 5, 5, 5), 3, 2, 1).shape
        torch.Size([1, 2, 4, 3, 3, 3])
    """
    what = "group_avg_pool3d"
    k, s, p, _ = check_pool3d_args(kernel_size, stride, padding, 1, what, max_pool=False)
    C.check_flag(ceil_mode, "ceil_mode", what)
    C.check_flag(count_include_pad, "count_include_pad", what)
    check_map6d(x, what)
    _check_window3d(x, k, p, (1, 1, 1), what, s if ceil_mode else None)  # a window fits
    if any(n < kk for n, kk in zip(x.shape[-3:], k, strict=True)):
        # torch's avg_pool3d refuses it even where the padding fills the window
        raise ValueError(f"{what}: every spatial size must be at least kernel_size={k} (torch's "
                         f"avg_pool3d refuses a smaller one even with padding, unlike "
                         f"avg_pool2d); got x of shape {tuple(x.shape)}. Zero-pad the input "
                         f"first (F.pad) and pass padding=0, or use a smaller kernel_size")
    args = (k, s, p, bool(ceil_mode), bool(count_include_pad))
    if x.device.type == "cpu" and x.dtype in (torch.float16, torch.bfloat16):
        # torch's CPU avg_pool3d has no half kernel ("avg_pool3d_out_frame" not implemented):
        # average in float32 (as accurate as a half kernel could be) and round once
        return cast(torch.Tensor, _spatial(x.float(), F.avg_pool3d, what, k, p, (1, 1, 1),
                                           ceil_mode, *args)).to(x.dtype)
    return cast(torch.Tensor, _spatial(x, F.avg_pool3d, what, k, p, (1, 1, 1), ceil_mode, *args))


#: The layouts the 3-D polyphase ops take: batched, or one unbatched volume (as torch's pools).
_LAYOUT = ("(B, C, D, H, W), (B, C, F, D, H, W) (any dims between B and D) or an unbatched "
           "(C, D, H, W)")


def check_polyphase_pool3d(x: torch.Tensor, stride: int, criterion: str, blur_size: int,
                           padding_mode: str, what: str = "polyphase_pool3d") -> None:
    """A batch dim and ``(D, H, W)`` divisible by ``stride``; the blur's padding fits."""
    C.check_polyphase_args(stride, criterion, blur_size, padding_mode, what)
    C.check_tensor(x, "x", what, min_ndim=4, layout=_LAYOUT)
    sizes = tuple(x.shape[-3:])
    if any(n % stride for n in sizes):
        raise ValueError(f"{what} needs D, H and W divisible by stride={stride} (circular "
                         f"shifts must permute the components); got (D, H, W)={sizes} (shape "
                         f"{tuple(x.shape)}). Crop or pad the input to a multiple of {stride} "
                         "first")
    C.check_blur_padding(sizes, blur_size, padding_mode, what, x.shape, "blur_size")


@overload
def polyphase_pool3d(x: torch.Tensor, stride: int = ..., *, criterion: str = ...,
                     blur_size: int = ..., padding_mode: str = ...,
                     return_index: Literal[False] = ...) -> torch.Tensor: ...


@overload
def polyphase_pool3d(x: torch.Tensor, stride: int = ..., *, criterion: str = ...,
                     blur_size: int = ..., padding_mode: str = ...,
                     return_index: Literal[True]) -> tuple[torch.Tensor, torch.Tensor]: ...


@overload
def polyphase_pool3d(x: torch.Tensor, stride: int = ..., *, criterion: str = ...,
                     blur_size: int = ..., padding_mode: str = ..., return_index: bool = ...
                     ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]: ...


def polyphase_pool3d(x: torch.Tensor, stride: int = 2, *, criterion: str = "l2",
                     blur_size: int = 1, padding_mode: str = "circular",
                     return_index: bool = False
                     ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Keep the 3-D polyphase component of largest norm, per sample (see the module
    docstring and :class:`equilayers.nn.PolyphasePool3d`).

    Args:
        x: ``(B, C, D, H, W)`` volumes or ``(B, C, F, D, H, W)`` group maps (any leading dims
            after the batch), or an unbatched volume ``(C, D, H, W)`` (as torch's 3-D pools
            read 4-D input: one choice for the whole volume; a 5-D input is always batched,
            so an unbatched group map needs ``x[None]``); ``D``, ``H`` and ``W`` divisible by
            ``stride``.
        stride: integer >= 2.
        criterion: ``"l2"``, ``"l1"`` or ``"linf"`` norm of a component.
        blur_size: binomial blur over ``(D, H, W)`` at stride 1 first, 1..7 (1 = none).
        padding_mode: padding of the blur (``"circular"`` keeps exact shift invariance).
        return_index: also return the chosen flat index ``a s^2 + b s + c`` per sample,
            ``(B,)`` int64 (0-d for an unbatched ``x``).

    Example:
        >>> y, idx = polyphase_pool3d(torch.randn(2, 3, 4, 4, 4), return_index=True)
        >>> y.shape, idx.shape
        (torch.Size([2, 3, 2, 2, 2]), torch.Size([2]))
    """
    what = "polyphase_pool3d"
    check_polyphase_pool3d(x, stride, criterion, blur_size, padding_mode, what)
    C.check_bool(return_index, "return_index", what)
    if x.dim() == 4:  # (C, D, H, W): one unbatched volume, as torch's 3-D pools read it
        y, i = polyphase_pool3d(x[None], stride, criterion=criterion, blur_size=blur_size,
                                padding_mode=padding_mode, return_index=True)
        return (y[0], i[0]) if return_index else y[0]
    s, order = stride, CRITERIA[criterion]
    if blur_size > 1:
        filt = binomial_filter(blur_size, dtype=x.dtype, device=x.device)
        x = blur_nd(x, filt, 1, padding_mode, 3, what, "blur_size")
    b = x.shape[0]
    lead = x.shape[1:-3]
    d, h, w = x.shape[-3:]
    xr = x.reshape(b, math.prod(lead), d // s, s, h // s, s, w // s, s)
    acc = None if x.device.type == "mps" else torch.float64
    crit = torch.linalg.vector_norm(xr, order, dim=(1, 2, 4, 6), dtype=acc)  # (B, s, s, s)
    index = crit.reshape(b, s ** 3).argmax(dim=1)
    rows = torch.arange(b, device=x.device)
    out = xr[rows, :, :, index // (s * s), :, (index // s) % s, :, index % s]
    out = out.reshape(b, *lead, d // s, h // s, w // s)
    return (out, index) if return_index else out


def polyphase_upsample3d(x: torch.Tensor, index: torch.Tensor, stride: int = 2, *,
                         blur_size: int = 1, padding_mode: str = "circular") -> torch.Tensor:
    """Put ``x`` back on the 3-D polyphase component it came from; zeros elsewhere.

    ``y[n, ..., a + s p, b + s q, c + s r] = x[n, ..., p, q, r]`` with ``a s^2 + b s + c =
    index[n]`` (the index returned by :func:`polyphase_pool3d` with ``return_index=True``).
    With ``blur_size > 1`` the result is then blurred at stride 1 over ``(D, H, W)`` with the
    binomial filter scaled by ``s**3`` (keeps the mean, as :func:`blur_upsample3d`), padded
    with ``padding_mode``. Output ``(B, ..., s D, s H, s W)``. An unbatched volume ``x``
    ``(C, D, H, W)`` takes a 0-d ``index`` (as :func:`polyphase_pool3d` returns for it) and
    gives ``(C, s D, s H, s W)``; a 5-D ``x`` is always batched, as in
    :func:`polyphase_pool3d`.

    ``polyphase_upsample3d(*polyphase_pool3d(x, s, return_index=True), s)`` keeps the chosen
    samples of ``x`` in place: exactly equivariant to every integer circular shift, and (an odd
    ``blur_size``, sizes divisible by ``s``, a unique largest norm) to every cube element.

    Example:
        >>> x = torch.randn(2, 3, 4, 4, 4)
        >>> polyphase_upsample3d(*polyphase_pool3d(x, return_index=True)).shape
        torch.Size([2, 3, 4, 4, 4])
    """
    what = "polyphase_upsample3d"
    s = C.check_stride(stride, "stride", what, minimum=2)
    C.check_blur_size(blur_size, "blur_size", what, "polyphase")
    C.check_padding_mode(padding_mode, "padding_mode", what)
    C.check_tensor(x, "x", what, min_ndim=4, layout=_LAYOUT)
    unbatched = x.dim() == 4  # (C, D, H, W), with a 0-d index
    per = ("a 0-d tensor for an unbatched x (C, D, H, W)" if unbatched
           else "one flat component index a*stride**2+b*stride+c per sample")
    check_index(index, () if unbatched else (x.shape[0],), per, "polyphase_pool3d", what)
    if unbatched:
        return place_components(x[None], index[None], s, 3, blur_size, padding_mode, what)[0]
    return place_components(x, index, s, 3, blur_size, padding_mode, what)
