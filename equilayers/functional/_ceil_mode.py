"""torch's ``ceil_mode`` pool size as padding: the one rule that :func:`max_blur_pool2d`'s
``ceil_mode`` and :func:`equilayers.antialias`'s converted ``ceil_mode`` pools use.

A ``ceil_mode=True`` torch pool (window ``k``, stride ``s``, padding ``p``) gives
``ceil((n + 2p - k) / s) + 1`` outputs per dim, less one when that last window would start in
the right padding (``(out - 1) s >= n + p``: torch's rule, so every window starts inside the
input or the left padding). Padding the end of the dim by what that last window reaches past
the floor-mode windows (:func:`ceil_extra`) turns a floor-mode pool of the same window into the
``ceil_mode`` one (:func:`ceil_mode_pad`).

Before a max, the pad replicates the last row and column: every window that reaches past the
input starts inside it (or in the left padding) and so covers that row or column too, whose
pixels come first in the window (the max's first-maximum rule picks them over their copies).
The max and the pixel its gradient goes to are then those of torch's ``ceil_mode`` window over
the pixels it covers, as with a ``-inf`` pad, but every value stays finite (a ``-inf`` sends
the CPU fast path's backward to ``max_pool2d``'s own: 843 against 452 ms for a 16 x 64 x 56 x
56 ``MaxBlurPool2d(3, 2)`` forward+backward padded to 57 x 57, 2-core AMD EPYC, torch 2.13.0,
2026-12-03).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

__all__ = ["ceil_extra", "ceil_mode_pad"]


def ceil_extra(n: int, kernel_size: int, stride: int, padding: int) -> int:
    """How many pixels past the end of a dim of ``n`` (plus ``padding``) the last window of a
    ``ceil_mode=True`` torch pool reaches: 0 where ``ceil_mode`` adds no window, which is
    wherever ``(n + 2 padding - kernel_size) % stride == 0``, else ``stride`` less that
    remainder, or 0 where torch's rule drops the extra window (it would start at ``n +
    padding`` or later: where that reach is ``kernel_size - padding`` or more).

    Integer arithmetic without a branch, so a symbolic size (``torch.export`` with a dynamic
    height or width) gives an expression, not a guard on the size's remainder.

    Example:
        >>> [ceil_extra(n, 2, 2, 0) for n in (8, 9)]  # MaxPool2d(2, ceil_mode=True)
        [0, 1]
    """
    k, s, p = kernel_size, stride, padding
    reach = (k - n - 2 * p) % s  # what the windows lack of tiling n + 2p from both ends
    return reach * (1 // (reach // (k - p) + 1))  # times [reach < k - p] (k - p >= 1)


def ceil_mode_pad(x: torch.Tensor, kernel_size: int, stride: int, padding: int,
                  mode: Literal["replicate", "zeros"]) -> torch.Tensor:
    """``x`` with its last two dims padded at the end (bottom, right) by :func:`ceil_extra`,
    so a floor-mode window op of ``kernel_size``, ``stride``, ``padding`` on it has
    ``ceil_mode``'s output size: ``mode="replicate"`` before a max (see the module's note),
    ``"zeros"`` before a sum. ``x`` itself where ceil_mode adds no window, and where a spatial
    dim is empty (nothing to pad: the op's own check names the size). A 5-D group map is
    padded as the 4-D ``(B, C F, H, W)`` it views, which keeps a channels_last layout
    (``F.pad`` of the 5-D view would make it contiguous)."""
    eh, ew = (ceil_extra(n, kernel_size, stride, padding) for n in x.shape[-2:])
    if 0 in x.shape[-2:] or (isinstance(eh, int) and isinstance(ew, int) and not (eh or ew)):
        return x  # (a symbolic size pads by its symbolic reach, 0 or not: no guard on it)
    flat = x.flatten(1, 2) if x.dim() == 5 else x  # a view for the group maps' layouts
    if mode == "replicate" and flat.numel():  # (F.pad refuses to replicate a 0-channel map)
        out = F.pad(flat, (0, ew, 0, eh), mode="replicate")
    else:
        out = F.pad(flat, (0, ew, 0, eh))
    return out.unflatten(1, x.shape[1:3]) if x.dim() == 5 else out
