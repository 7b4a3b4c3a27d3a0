"""The once-per-module warning of layers whose sampling grid can break exact equivariance (group
convs, spatial pools of group maps), and a scoped switch that silences it without using it up.

A module warns the first time it sees an input size at which it is not exactly equivariant on
its grid subgroup, once per module. Tools that run a model only to inspect it
(:func:`equilayers.check_grid`) do so inside :func:`quiet_exactness_warnings`: nothing is
printed and nothing is recorded, so the model's own later forward at a bad size still warns.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import sys
import threading
import warnings
from collections.abc import Iterator
from types import FrameType
from typing import Any

import torch
from torch import nn

from .. import _checks as C
from ..functional import _gconv as G
from ..functional import _gconv3d as G3
from ..functional._ceil_mode import ceil_extra
from ..functional._grid_law import used_padding
from ..groups import GroupLike, get

__all__ = ["quiet_exactness_warnings", "warn_if_inexact3d"]

_state = threading.local()


@contextlib.contextmanager
def quiet_exactness_warnings() -> Iterator[None]:
    """Inside the block no layer checks or warns about exactness, and none records that it
    did (the once-per-module warning stays armed for later forwards)."""
    depth = getattr(_state, "quiet", 0)
    _state.quiet = depth + 1
    try:
        yield
    finally:
        _state.quiet = depth


def _quiet() -> bool:
    return getattr(_state, "quiet", 0) > 0


class _WarnsInexact(nn.Module):
    """Mixin: ``self._warn_if_inexact(x, group, k, stride, pad, dilation)`` warns once per
    module at the first input size that breaks exactness on ``group``'s grid subgroup
    (``output_padding``: a transposed conv's, ``None`` for a conv or pool)."""

    _warned: bool = False

    def _sampling_window(self) -> tuple:
        """A pool's window grid: ``(kernel_size, stride, (top, bottom, left, right),
        dilation)``."""
        raise NotImplementedError

    def _window_padding_mode(self) -> str | None:
        """The padding mode of :meth:`_sampling_window`'s padding when the window reads it
        directly (a blur's; the law may then find the windows coincide under a flip, see
        :func:`~equilayers.functional._grid_law.windows_coincide`); ``None``: a constant
        padding, or a composite window (max then blur), judged by its grid alone."""
        return None

    def _window_taps(self) -> tuple[int, ...] | None:
        """The fixed weights of :meth:`_sampling_window` along a dim (a blur's binomial row,
        which a flip does not flip), compared window by window with the padding's samples
        (:func:`~equilayers.functional._grid_law.windows_coincide`); ``None``: none."""
        return None

    def _ceil_window(self) -> tuple[int, int, int] | None:
        """``(kernel_size, stride, padding)`` of a ``ceil_mode`` pool whose extra last window
        the law must count (:func:`ceil_extra` of it is how far that window reaches past the
        floor-mode windows of :meth:`_sampling_window`); ``None`` for a floor-mode pool, and
        for one whose floor law already decides its ``ceil_mode`` (a symmetric window: the
        extra window appears only where the floor windows leave a remainder, where they are
        inexact anyway)."""
        return None

    def _ceil_extra(self, size: tuple[int, int]) -> tuple[int, int]:
        """How far the extra window of :meth:`_ceil_window` reaches at input ``size``,
        ``(height, width)``."""
        window = self._ceil_window()
        if window is None:
            return 0, 0
        return ceil_extra(size[0], *window), ceil_extra(size[1], *window)

    def _warn_if_inexact(self, x: torch.Tensor, group: GroupLike, kernel_size, stride,
                         pad: tuple[int, int, int, int], dilation, label: str | None = None,
                         output_padding=None,
                         ceil_extra: tuple[int, int] = (0, 0),
                         padding_mode: str | None = None,
                         taps: tuple[int, ...] | None = None) -> None:
        if self._warned or torch.compiler.is_compiling() or torch.jit.is_tracing():
            return
        size = (x.shape[-2], x.shape[-1])
        if min(size) < 1:  # an empty map: nothing to be exact on (the layer names the size)
            return
        # memo (the check costs ~20 us of Python per call), keyed on everything it reads: an
        # option set on the module after its first call is checked again
        key = (size, output_padding, group, kernel_size, stride, pad, dilation, ceil_extra,
               padding_mode, taps)
        exact = self.__dict__.setdefault("_exact_sizes", set())
        if key in exact or _quiet():
            return
        grp = get(group)
        problems = G.exactness_problems(grp, size, kernel_size, stride, pad, dilation,
                                        output_padding=output_padding, ceil_extra=ceil_extra,
                                        padding_mode=padding_mode, taps=taps)
        if not problems:
            exact.add(key)
            return
        self._warned = True
        sub = G.grid_subgroup(grp)
        what = ("" if sub == grp or label else
                f" even on its grid subgroup {sub.name} (its only elements that can be exact;"
                " other rotations are approximate in any case)")
        warn_at_user(f"{type(self).__name__} ({label or grp.name}) is not exactly equivariant"
                     f"{what} on input of size {size[0]}x{size[1]}: " + "; ".join(problems)
                     + " (warned once per module)")

    def _warn_if_window_inexact(self, x: torch.Tensor) -> None:
        """The check of a spatial pool on group maps: warn once when its windows
        (``self._sampling_window()``: kernel, stride, padding ``(top, bottom, left, right)``,
        dilation; the same that :func:`equilayers.check_grid` reads) break exactness at this
        size. Only 5-D inputs (a group map ``(B, C, F, H, W)``): on images a pool makes no
        group claim (a plain anti-aliased CNN at 224 x 224 is not warned). The pool does not
        know the model's group, so it is checked for flips of both dims and, with the same
        options on both dims (any sizes), for 90-degree rotations (the p4m conditions). An
        asymmetric padding (an even blur) counts only as far as the windows reach it. A
        ``ceil_mode`` pool is judged by the same law: its extra last window appears only
        where the floor windows leave a remainder, which is where a symmetric window is
        inexact, so both grids are exact at the same sizes; a pool whose floor grid can be
        exact there (``MaxBlurPool2d`` with an even blur, whose unread padding is trimmed)
        names its ceil window (:meth:`_ceil_window`), and the law counts its reach.
        Call it from ``forward`` itself (the warning points at the caller of the module)."""
        if (self._warned or not isinstance(x, torch.Tensor) or x.dim() != 5
                or _quiet() or torch.compiler.is_compiling() or torch.jit.is_tracing()):
            return
        kernel_size, stride, sides, dilation = self._sampling_window()
        k, s = C.check_pair(kernel_size, "kernel_size"), C.check_pair(stride, "stride")
        d = C.check_pair(dilation, "dilation")
        size = (x.shape[-2], x.shape[-1])
        extra = self._ceil_extra(size)
        # keyed on the checked pairs: a window given as lists (as nn.MaxPool2d takes) hashes
        mode = self._window_padding_mode()
        taps = self._window_taps()
        key = (size, k, s, tuple(sides), d, extra, mode, taps)
        if key in self.__dict__.get("_exact_windows", ()):
            return  # a size and window found exact before
        top, bottom = used_padding(x.shape[-2], d[0] * (k[0] - 1) + 1, s[0], sides[0], sides[1])
        left, right = used_padding(x.shape[-1], d[1] * (k[1] - 1) + 1, s[1], sides[2], sides[3])
        # a rectangular window is never rot90-exact: its flips are checked, each on its dim
        square = (k[0] == k[1] and s[0] == s[1] and d[0] == d[1]
                  and (top, bottom) == (left, right))
        self._warn_if_inexact(x, "d4" if square else "d2", k, s, (left, right, top, bottom),
                              d, label="flips" + (" and 90-degree rotations" if square else ""),
                              ceil_extra=extra, padding_mode=mode, taps=taps)
        if not self._warned:
            self.__dict__.setdefault("_exact_windows", set()).add(key)


def blur_padding_break(blur_size: int, padding_mode: str) -> list[tuple[str, str, str, str]]:
    """``check_grid``'s shift finding for a blur padded other than circularly (a blur
    upsampling's, a polyphase pool's): ``[(problem, "shifts", why, fix)]`` or ``[]``."""
    if blur_size == 1 or padding_mode == "circular":
        return []
    return [("non-circular-padding", "shifts", f"the blur's padding_mode={padding_mode!r} "
             "fills the border with content that does not move with the image, so circular "
             "shifts are not exact at the borders", "padding_mode='circular'")]


_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # equilayers/
_NN_MODULES = os.path.dirname(os.path.abspath(inspect.getfile(nn.Module)))


def warn_at_user(message: str | Warning, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn(message, category)`` pointed at the first frame outside equilayers and
    torch's ``nn.Module`` call machinery: the user's call of the module, however many frames the
    library's forward takes (a fixed ``stacklevel`` went stale when a decorator added one)."""
    frame: FrameType | None = sys._getframe(1)
    level = 2
    while frame is not None and (frame.f_code.co_filename.startswith(_PACKAGE)
                                 or frame.f_code.co_filename.startswith(_NN_MODULES)):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


def warn_once(module: nn.Module, message: str) -> None:
    """Warn once per module (``"_warned"`` in its ``__dict__``), not under
    :func:`quiet_exactness_warnings`, compiling or tracing, at the user's call of the module
    (:func:`warn_at_user`)."""
    if (module.__dict__.get("_warned", False) or _quiet() or torch.compiler.is_compiling()
            or torch.jit.is_tracing()):
        return
    module.__dict__["_warned"] = True
    warn_at_user(message)


def warn_if_inexact3d(module: Any, x: torch.Tensor, output_padding) -> bool:
    """The check of a 3-D group conv (``module``: a ``_GroupConv3dBase``): warn once per
    module at the first input size (and, transposed, output padding: the module's unless
    given) where the window grid breaks exact equivariance
    (:func:`~equilayers.functional._gconv3d.exactness_problems3d`). Returns whether that is
    settled for this size: ``False`` only while the check is skipped
    (``quiet_exactness_warnings``, compile, trace), so a later call checks again."""
    if module._warned:
        return True
    if torch.compiler.is_compiling() or torch.jit.is_tracing() or _quiet():
        return False
    size = (int(x.shape[-3]), int(x.shape[-2]), int(x.shape[-1]))  # a checked 5-/6-D x
    if not min(size):  # (an empty batch of empty volumes: nothing to warn about)
        return True
    op = (module.output_padding if output_padding is None else output_padding
          ) if module.transposed else None
    window = (module.group, module.kernel_size[0], module.stride, module._pad, module.dilation,
              op, module.padding_mode)
    exact = module.__dict__.setdefault("_exact_sizes", set())
    if (size, window) in exact:  # (sizes alternating between calls: train and eval)
        return True
    problems = G3.exactness_problems3d(module.group.grid_subgroup(), size, *window[1:])
    if not problems:
        exact.add((size, window))
        return True
    module._warned = True
    even = (f" even on its grid subgroup {module.group.grid_subgroup().name}"
            if module._turned else "")
    warn_at_user(f"{type(module).__name__} ({module.group.name}) is not exactly equivariant"
                 f"{even} on input of size {'x'.join(map(str, size))}: " + "; ".join(problems)
                 + " (warned once per module)")
    return True
