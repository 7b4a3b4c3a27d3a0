"""Edge-aware blur: a binomial blur everywhere but near strong edges, which keep their input
values (kornia's ``edge_aware_blur_pool2d``, the same semantics; written from its documented
convention, see :func:`edge_aware_blur_pool2d`).

It is the one blur of kornia's blur-pool module that equilayers lacked: an image filter, not a
pooling (nothing is subsampled), taking positive images ``(B, C, H, W)``. Exact for the eight
rot90/flip symmetries at any size (the binomial filter, the two edge tests and the square
dilation window are symmetric, the border is reflected alike on every side).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .. import _checks as C
from ._blur import blur_pool2d

__all__ = ["edge_aware_blur_pool2d", "check_edge_aware_args"]

#: kornia's defaults, kept for drop-in calls
EDGE_THRESHOLD = 1.25
EDGE_DILATION = 3
EPSILON = 1e-6

_KERNEL_FIX = "use 1, 3, 5 or 7: the blur is centred on each pixel and keeps the input's size"


def check_edge_aware_args(kernel_size, edge_threshold, edge_dilation_kernel_size, epsilon,
                          what: str) -> tuple[int, float, int, float]:
    """The edge-aware blur's arguments as ``(k, threshold, dilation, epsilon)``: an odd binomial
    size in 1..7 (an int or a pair of equal ones, kornia takes both), a threshold ratio > 1,
    an odd dilation window >= 1 and an epsilon >= 0."""
    a, b = C.check_pair(kernel_size, "kernel_size", what, minimum=1, fix=_KERNEL_FIX)
    if a != b or a % 2 == 0 or a > C.MAX_BLUR_SIZE:
        raise ValueError(f"{what}: kernel_size={kernel_size!r} must be an odd integer in "
                         f"1..{C.MAX_BLUR_SIZE} (or a pair of two equal ones); {_KERNEL_FIX}")
    fix = ("the intensity ratio between pixels 4 apart above which a pixel is an edge; "
           f"kornia's default is {EDGE_THRESHOLD}")
    threshold = C.check_number(edge_threshold, "edge_threshold", what, fix=fix)
    if not threshold > 1:
        raise ValueError(f"{what}: edge_threshold={edge_threshold!r} must be a real number > 1; "
                         f"{fix}")
    d = C.check_int(edge_dilation_kernel_size, "edge_dilation_kernel_size", what, minimum=1,
                    fix="the odd window that widens the edge map (1: no widening)")
    if d % 2 == 0:
        raise ValueError(f"{what}: edge_dilation_kernel_size={edge_dilation_kernel_size!r} must "
                         f"be odd (a window centred on each pixel); use {d - 1} or {d + 1}")
    eps = C.check_number(epsilon, "epsilon", what, minimum=0.0,
                         fix="added to the input before the logarithm of the edge test")
    return a, threshold, d, eps


def _edge_map(x: torch.Tensor, threshold: float, dilation: int, eps: float) -> torch.Tensor:
    """Where the channel mean of ``log2(x + eps)`` changes by more than ``log2(threshold)``
    between the pixels two before and two after, along rows or columns (the border reflected
    by 2), widened by a ``dilation``-wide max window: a bool map ``(..., 1, H, W)``."""
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()  # the logarithms of a half input in float32
    # the channel mean of the differences is the difference of the channel means, and the
    # reflection commutes with both: the differences on one channel (kornia takes them on all)
    logs = torch.add(x, eps).log2_().mean(-3, keepdim=True)
    logs = F.pad(logs, (2, 2, 2, 2), mode="reflect")
    across = (logs[..., 2:-2, 4:] - logs[..., 2:-2, :-4]).abs()
    down = (logs[..., 4:, 2:-2] - logs[..., :-4, 2:-2]).abs()
    bound = math.log2(threshold)
    edges = (across > bound) | (down > bound)  # a NaN (x + eps < 0) is never an edge
    if dilation > 1:
        edges = F.max_pool2d(edges.to(x.dtype), dilation, 1, dilation // 2) > 0
    return edges


def edge_aware_blur_pool2d(x: torch.Tensor, kernel_size: int | tuple[int, int] = 3,
                           edge_threshold: float = EDGE_THRESHOLD,
                           edge_dilation_kernel_size: int = EDGE_DILATION,
                           epsilon: float = EPSILON) -> torch.Tensor:
    """Blur an image with a binomial filter except near its edges, which keep their values.

    kornia's ``edge_aware_blur_pool2d`` (same arguments and semantics; the output has the
    input's size: despite the name, nothing is pooled). A pixel is on an edge when, along rows
    or along columns, the mean over channels of ``log2(x + epsilon)`` differs by more than
    ``log2(edge_threshold)`` between the pixels two before and two after it (the border
    reflected), so scaling the image does not move its edges. The edge map, widened by a max
    window of ``edge_dilation_kernel_size``, keeps ``x``; every other pixel takes ``x``
    blurred at stride 1 with the ``kernel_size`` binomial filter
    (:func:`blur_pool2d` with ``stride=1, padding_mode="reflect"``).

    The input is taken to be positive (intensities): where ``x + epsilon < 0`` the logarithm
    is NaN, which is never an edge, so such pixels are blurred unless a widened edge reaches
    them. The edge map carries no gradient (a comparison); the gradient flows to ``x`` through
    the kept pixels and the blur. Half-precision inputs take their logarithms in float32.

    Differences from kornia: ``kernel_size`` is an odd size in 1..7 (kornia also takes even
    and larger ones); a blur of size 7 on a side of 3 pixels pads it by replication
    (:mod:`equilayers.functional._blur`'s rule) where kornia reflects repeatedly; the edge
    test takes the differences of the channel means of the logarithms (kornia the channel
    means of the differences: equal but for rounding, so a pixel whose test lands within
    rounding of the threshold may go either way; one channel's differences instead of
    ``C``: 0.29-0.40x kornia's forward time at b32 c64 56-112 px, 2 CPU threads,
    ``benchmarks/results/edge-aware``); an equilayers error names the argument and the fix.

    Args:
        x: an image ``(B, C, H, W)`` or ``(C, H, W)``, floating point, ``H, W >= 3``.
        kernel_size: the binomial blur's size (1 keeps ``x``), an int or an equal pair.
        edge_threshold: the intensity ratio between pixels 4 apart above which a pixel is an
            edge, > 1.
        edge_dilation_kernel_size: the odd window that widens the edge map (1: no widening).
        epsilon: added to ``x`` before the logarithm, >= 0.

    Returns:
        A tensor of ``x``'s shape and dtype.

    Equivariance:
        Exact (float rounding) for rot90 and flips of the image, at any ``H, W``; not for
        circular shifts at the border (reflected there, as every reflect-padded filter).

    Example:
        >>> x = torch.ones(1, 3, 8, 8)
        >>> x[..., 4:] = 4.0  # a step: an edge between columns 3 and 4
        >>> y = edge_aware_blur_pool2d(x, 3)
        >>> bool((y == x).all())  # the step's neighbourhood kept, flat parts blur to themselves
        True
    """
    what = "edge_aware_blur_pool2d"
    k, threshold, d, eps = check_edge_aware_args(kernel_size, edge_threshold,
                                                 edge_dilation_kernel_size, epsilon, what)
    C.check_tensor(x, "x", what, ndim=(3, 4), layout="(B, C, H, W) or (C, H, W): an image "
                   "(on a group feature map, use blur_pool2d)")
    if min(x.shape[-2:]) < 3:
        raise ValueError(f"{what}: x of shape {tuple(x.shape)} is too small: the edge test "
                         "compares pixels 4 apart over a border reflected by 2, so H and W "
                         "must be >= 3")
    blurred = blur_pool2d(x, k, stride=1, padding_mode="reflect")
    if x.numel() == 0:  # 0 channels or an empty batch: no pixel to test (F.pad would refuse)
        return blurred
    with torch.no_grad():  # a comparison: no gradient, and no logarithms kept for backward
        edges = _edge_map(x, threshold, d, eps)
    return torch.where(edges, x, blurred)
