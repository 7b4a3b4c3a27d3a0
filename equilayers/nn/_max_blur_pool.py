"""The max-blur pool: a drop-in for ``nn.MaxPool2d`` (max at stride 1, then a blur pool)."""

from __future__ import annotations

import torch

from .. import _checks as C
from ..functional._blur import max_blur_pool2d
from ._blur_pool import _BinomialBuffer
from ._exactness import _WarnsInexact
from ._typed import Typed

__all__ = ["MaxBlurPool2d"]


class MaxBlurPool2d(Typed, _WarnsInexact, _BinomialBuffer):
    """Max-pool at stride 1, then blur-pool at ``stride`` (Zhang 2019's ``MaxBlurPool``).

    A drop-in for ``nn.MaxPool2d(kernel_size, stride, padding, ceil_mode=...)``: the same
    positional arguments (``stride=None`` means ``kernel_size``, as in torch), ``ceil_mode``
    and the same output shape for every input size.

    Functional twin: :func:`~equilayers.functional.max_blur_pool2d`.

    Args:
        kernel_size: max-pool window.
        stride: subsampling factor of the blur pool (default: ``kernel_size``).
        padding: max-pool padding (``-inf``), as in ``nn.MaxPool2d``.
        ceil_mode: ``nn.MaxPool2d``'s output size with ``ceil`` (keyword only:
            ``nn.MaxPool2d``'s fourth and fifth positional arguments are ``dilation`` and
            ``return_indices``, which this module does not offer). The extra last window's
            max is over the pixels it covers, as torch's (the last row and column are
            replicated as far as it reaches, and it covers them). kornia's
            ``MaxBlurPool2D(ceil_mode=True)`` passes it to its stride-1 max, where it changes
            nothing: its output size is this module's with ``ceil_mode=False``.
        blur_size: binomial filter size, 1..7 (keyword only).
        padding_mode: padding of the blur (``"reflect"`` default; keyword only). With
            ``"reflect"``, a dim of the max-pooled map of size ``<= (b-1) - (b-1)//2``
            (``b = blur_size``; too short to reflect) is padded with ``"replicate"`` instead,
            so every input ``nn.MaxPool2d`` takes works (a 1-pixel map blurs to itself).
        device, dtype: of the ``filter`` buffer (the blur's binomial, a copy to inspect:
            the blur does not read it), as in ``torch.nn`` modules.

    Shape:
        ``(B, C, H, W) -> (B, C, H', W')``, unbatched ``(C, H, W) -> (C, H', W')`` (as
        ``nn.MaxPool2d``) or a group map ``(B, C, F, H, W) -> (B, C, F, H', W')``,
        ``H' = floor((H + 2 padding - kernel_size) / stride) + 1``; with ``ceil_mode``,
        ``H' = ceil((H + 2 padding - kernel_size) / stride) + 1``, less one where that last
        window would start at or past ``H + padding`` (torch's rule), as ``nn.MaxPool2d``.

    Equivariance:
        Exact for circular shifts by multiples of ``stride`` only with circular padding of the
        max too (``nn.CircularPad2d`` of ``kernel_size - 1`` pixels per dim in all before it,
        ``padding=0``, ``padding_mode="circular"``: :func:`equilayers.check_grid` names it);
        as a drop-in (``padding_mode="circular"``, ``padding=0``) it is approximately
        shift-equivariant: its error under 1-px shifts is measured below ``nn.MaxPool2d``'s in
        ``tests/test_blur_shifts.py`` (with ``ceil_mode``: ``tests/test_blur_ceil_mode.py``). Exact
        for rot90 and flips (any ``H x W``) when the max window and the blur tile the input
        from both ends, ``(H + 2 padding - kernel_size) % stride == 0`` with an odd
        ``blur_size`` (e.g. ``kernel_size=2`` on even sizes), with or
        without ``ceil_mode`` (which adds a window only where that remainder is not 0, at
        the bottom and right only, so it is exact at the same sizes; an even ``blur_size``
        can be exact in floor mode where ``ceil_mode`` adds a window, and then is not); on
        group maps (5-D) it warns once per module at a size that breaks this.

    Example:
        >>> MaxBlurPool2d()(torch.randn(2, 3, 9, 9)).shape
        torch.Size([2, 3, 4, 4])
        >>> MaxBlurPool2d(3, 2, 1)  # a ResNet stem's nn.MaxPool2d(3, 2, 1)
        MaxBlurPool2d(kernel_size=3, stride=2, padding=1)
        >>> MaxBlurPool2d(3, 2, ceil_mode=True)(torch.randn(2, 3, 8, 8)).shape  # GoogLeNet's
        torch.Size([2, 3, 4, 4])
    """

    _fixed_args = ("blur_size",)

    in_type = out_type = None  # any field type; the output has the input's

    def __init__(self, kernel_size: int = 2, stride: int | None = None, padding: int = 0, *,
                 ceil_mode: bool = False, blur_size: int = 3, padding_mode: str = "reflect",
                 device=None, dtype=None) -> None:
        super().__init__()
        what = type(self).__name__
        # nn.MaxPool2d's equal pairs, (2, 2), as its ints: the windows here are square
        kernel_size, stride, padding = (C.square_int(v, n, what, "nn.MaxPool2d") for v, n in (
            (kernel_size, "kernel_size"), (stride, "stride"), (padding, "padding")))
        stride = kernel_size if stride is None else stride  # as nn.MaxPool2d
        C.check_max_blur_args(kernel_size, stride, blur_size, padding_mode, padding, what)
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.ceil_mode = C.check_flag(ceil_mode, "ceil_mode", what)
        self.blur_size = blur_size
        self.padding_mode = padding_mode
        self._register_filter(blur_size, device, dtype, what)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._warn_if_window_inexact(x)  # on group maps: once, where the grid breaks it
        return max_blur_pool2d(x, self.kernel_size, self.stride, self.padding,
                               ceil_mode=self.ceil_mode, blur_size=self.blur_size,
                               padding_mode=self.padding_mode)

    def _sampling_window(self) -> tuple:
        # the max at stride 1 then the blur at ``stride`` sample the grid as one window of
        # kernel_size + blur_size - 1 pixels
        a = (self.blur_size - 1) // 2
        top, bottom = self.padding + a, self.padding + self.blur_size - 1 - a
        return self.kernel_size + self.blur_size - 1, self.stride, (top, bottom, top, bottom), 1

    def _shift_windows(self) -> list[tuple]:
        # under circular shifts the two windows count apart (check_grid reads them in turn):
        # the max at stride 1, padded by ``padding`` with -inf (never circularly), then the
        # blur at ``stride``, padded by ``padding_mode``: (what, kernel, stride, (top, bottom,
        # left, right), padding mode); blur_size=1 samples the max at ``stride``, one window
        p, a = self.padding, (self.blur_size - 1) // 2
        b = self.blur_size - 1 - a
        if self.blur_size == 1:
            return [("max", self.kernel_size, self.stride, (p, p, p, p), "pool")]
        return [("max", self.kernel_size, 1, (p, p, p, p), "pool"),
                ("blur", self.blur_size, self.stride, (a, b, a, b), self.padding_mode)]

    def _ceil_window(self) -> tuple[int, int, int] | None:
        # the max's window, whose ceil_mode reach the forward pads by: an even blur's floor
        # grid can be exact where the extra window appears, so the law must count it
        return (self.kernel_size, self.stride, self.padding) if self.ceil_mode else None

    def extra_repr(self) -> str:
        parts = [f"kernel_size={self.kernel_size}", f"stride={self.stride}"]
        if self.blur_size != 3:
            parts.append(f"blur_size={self.blur_size}")
        if self.padding_mode != "reflect":
            parts.append(f"padding_mode={self.padding_mode!r}")
        if self.padding:
            parts.append(f"padding={self.padding}")
        if self.ceil_mode:
            parts.append("ceil_mode=True")
        return ", ".join(parts)

