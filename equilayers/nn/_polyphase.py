"""Adaptive polyphase sampling modules (Chaman & Dokmanic 2021)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .. import _checks as C
from ..functional._polyphase import polyphase_pool2d, polyphase_upsample2d
from ._exactness import blur_padding_break, warn_once
from ._typed import Typed

__all__ = ["PolyphasePool2d", "PolyphaseUpsample2d"]


class PolyphasePool2d(Typed, nn.Module):
    """Adaptive polyphase sampling: keep the ``stride x stride`` polyphase component of largest
    norm, per sample.

    Component ``(i, j)`` is ``x[..., i::s, j::s]``; its norm (``criterion``) is taken over every
    non-batch dim (``C, H', W'`` or ``C, F, H', W'``). An optional binomial blur at stride 1
    (``blur_size > 1``, padded with ``padding_mode``) comes first.

    Functional twin: :func:`~equilayers.functional.polyphase_pool2d`.

    Args:
        stride: integer >= 2.
        criterion: ``"l2"`` (default), ``"l1"`` or ``"linf"``. Avoid ``"l1"`` with
            ``blur_size > 1`` at stride 2 on non-negative inputs: the blur makes every
            component's l1 norm equal (exact ties).
        blur_size: 1..7; 1 = no blur (the published APS).
        padding_mode: padding of the blur; ``"circular"`` (default) keeps exact invariance.
        return_index: if True, ``forward`` returns ``(y, index)`` with the chosen flat index
            ``i * stride + j`` per sample (for :class:`PolyphaseUpsample2d`).

    Shape:
        ``(B, C, H, W) -> (B, C, H / s, W / s)`` or ``(B, C, F, H, W) -> (B, C, F, H / s,
        W / s)``, index ``(B,)``; an unbatched ``(C, H, W) -> (C, H / s, W / s)``, index 0-d
        (as torch's pools: the batched result of ``x[None]`` with the batch dim dropped; a
        4-D input is always batched, so an unbatched group map needs ``x[None]``). ``H`` and
        ``W`` must be divisible by ``stride`` (else ``ValueError``: crop or pad first).

    Equivariance:
        Circular convolutions, ``PolyphasePool2d`` and a global pool are exactly invariant to
        every integer circular shift. On inputs with ``H`` and ``W`` divisible by ``s`` the choice
        commutes with rot90 and flips (trivial or regular fields; odd ``blur_size``) whenever the
        largest norm is unique: ties (inputs with symmetric components) go to the lowest index,
        and no rule can commute with D4 on those. See :mod:`equilayers.functional._polyphase`.

    Example:
        >>> PolyphasePool2d()(torch.randn(2, 3, 8, 8)).shape
        torch.Size([2, 3, 4, 4])
    """

    in_type = out_type = None  # any field type; the output has the input's

    def __init__(self, stride: int = 2, *, criterion: str = "l2", blur_size: int = 1,
                 padding_mode: str = "circular", return_index: bool = False) -> None:
        super().__init__()
        what = type(self).__name__
        C.check_polyphase_args(stride, criterion, blur_size, padding_mode, what)
        self.stride, self.criterion = stride, criterion
        self.blur_size, self.padding_mode = blur_size, padding_mode
        self.return_index = C.check_flag(return_index, "return_index", what)

    def forward(self, x: torch.Tensor):
        warn_if_polyphase_inexact(self, x, 2)
        return polyphase_pool2d(x, self.stride, criterion=self.criterion,
                                blur_size=self.blur_size, padding_mode=self.padding_mode,
                                return_index=self.return_index)

    def _grid_breaks(self) -> list[tuple[str, str, str, str]]:
        return polyphase_grid_breaks(self)

    def extra_repr(self) -> str:
        return polyphase_pool_repr(self)


class PolyphaseUpsample2d(Typed, nn.Module):
    """Put features back on the polyphase component :class:`PolyphasePool2d` took them from.

    ``forward(x, index)``: ``y[b, ..., i + s p, j + s q] = x[b, ..., p, q]`` for
    ``index[b] = i * s + j``, zeros elsewhere; then an optional binomial blur scaled by ``s**2``
    (``blur_size > 1``, keeps the mean). For U-Nets: pair it with a
    ``PolyphasePool2d(return_index=True)``.

    Functional twin: :func:`~equilayers.functional.polyphase_upsample2d`.

    Shape:
        ``(B, ..., H, W), (B,) -> (B, ..., s H, s W)``; unbatched ``(C, H, W)``, a 0-d index
        (the pool's for an unbatched input) ``-> (C, s H, s W)``.

    Equivariance:
        ``up(*pool(x))`` is exactly equivariant to every integer circular shift of ``x`` (the
        same samples come back to the same, shifted, places).

    Example:
        >>> pool, up = PolyphasePool2d(return_index=True), PolyphaseUpsample2d()
        >>> x = torch.randn(2, 3, 8, 8)
        >>> up(*pool(x)).shape
        torch.Size([2, 3, 8, 8])
    """

    in_type = out_type = None  # any field type; the output has the input's

    def __init__(self, stride: int = 2, *, blur_size: int = 1,
                 padding_mode: str = "circular") -> None:
        super().__init__()
        what = type(self).__name__
        self.stride = C.check_stride(stride, "stride", what, minimum=2)
        self.blur_size = C.check_blur_size(blur_size, "blur_size", what, "polyphase")
        self.padding_mode = C.check_padding_mode(padding_mode, "padding_mode", what)

    def forward(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        warn_if_polyphase_inexact(self, x, 2)
        return polyphase_upsample2d(x, index, self.stride, blur_size=self.blur_size,
                                    padding_mode=self.padding_mode)

    def _grid_breaks(self) -> list[tuple[str, str, str, str]]:
        return polyphase_grid_breaks(self)

    def extra_repr(self) -> str:
        parts = [f"stride={self.stride}"]
        if self.blur_size != 1:
            parts.append(f"blur_size={self.blur_size}")
        if self.padding_mode != "circular":
            parts.append(f"padding_mode={self.padding_mode!r}")
        return ", ".join(parts)


def polyphase_grid_breaks(m: Any) -> list[tuple[str, str, str, str]]:
    """What a polyphase pool or upsampling breaks at every size, for ``check_grid``:
    ``(problem, "group" | "shifts", why, fix)``. An even blur is centred half a pixel off, so
    the chosen components do not commute with rot90 and flips (measured p4m error 0.86-0.89
    at blur 2 and 4); a blur padded other than circularly does not move with a circularly
    shifted image."""
    out = []
    if m.blur_size % 2 == 0:
        out.append(("even-blur", "group", f"blur_size={m.blur_size} is even: the blur is "
                    "centred half a pixel off, so it does not commute with 90-degree "
                    "rotations and flips", "use an odd blur_size (1, 3 or 5)"))
    return out + blur_padding_break(m.blur_size, m.padding_mode)


def warn_if_polyphase_inexact(m: Any, x: object, nd: int) -> None:
    """Once per module, on a group map (``nd + 3`` dims: images make no group claim): an
    even blur breaks rot90 and flips at every size."""
    if isinstance(x, torch.Tensor) and x.dim() == nd + 3 and m.blur_size % 2 == 0:
        warn_once(m, f"{type(m).__name__}(blur_size={m.blur_size}) on a group map is not "
                  "exactly equivariant to flips and 90-degree rotations at any size: an even "
                  "blur is centred half a pixel off; use an odd blur_size (1, 3 or 5) (warned "
                  "once per module)")


def polyphase_pool_repr(m: nn.Module) -> str:
    """``extra_repr`` of the polyphase pools (2-D and 3-D): the arguments that differ from
    the defaults."""
    parts = [f"stride={m.stride}"]
    if m.criterion != "l2":
        parts.append(f"criterion={m.criterion!r}")
    if m.blur_size != 1:
        parts.append(f"blur_size={m.blur_size}")
    if m.padding_mode != "circular":
        parts.append(f"padding_mode={m.padding_mode!r}")
    if m.return_index:
        parts.append("return_index=True")
    return ", ".join(parts)
