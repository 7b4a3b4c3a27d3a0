"""Spatial pools of 6-D group feature maps ``(B, C, F, D, H, W)``: max, average and polyphase
(the math is :mod:`equilayers.functional._pool3d`)."""

from __future__ import annotations

import torch
from torch import nn

from .. import _checks as C
from ..functional import _gconv3d as G3
from ..functional import _pool3d as P3
from ..functional._grid_law import used_padding
from ..groups import FieldType
from ._exactness import _quiet, warn_at_user
from ._polyphase import (
    PolyphaseUpsample2d,
    polyphase_grid_breaks,
    polyphase_pool_repr,
    warn_if_polyphase_inexact,
)
from ._typed import Typed

__all__ = ["GroupMaxPool3d", "GroupAvgPool3d", "PolyphasePool3d", "PolyphaseUpsample3d"]


def pool_exactness_problems3d(size: tuple[int, int, int], k, s, p, d,
                              padding_mode: str | None = None,
                              taps: tuple[int, ...] | None = None,
                              slots: int | None = None) -> tuple[str, list[str]]:
    """``(label, problems)`` of a pool with triples ``k, s, d`` and padding ``p`` (a triple,
    symmetric per dim, or six sides in ``F.pad`` order) on a volume of ``size``: the pool does
    not know the model's group, so the map stands for it (a c4z model on an anisotropic scan
    must not be warned about its depth): a map of 4 or 8 slots (``slots``, its fiber) is c4z's
    or d4z's, which never move the depth, one of 24 or 48 the cube groups' (o, oh; th), which
    trade all three dims, on any box; otherwise O_h on cubes (``D == H == W``) and D4z on
    every other box (a quarter turn about the depth axis maps ``H x W`` to ``W x H``, exact
    when the windows tile each dim). Under O_h a window of unequal sizes (``(1, 3, 3)``) is
    inexact (a rotation trades the depth with the height); under D4z only its height and
    width must agree. An asymmetric padding (an even blur) counts only as far as the windows
    reach it; ``padding_mode``: a blur's, whose padded samples may make the windows coincide
    under the flips (``None``: a pool's constant padding); ``taps``: a blur's fixed
    weights."""
    cube = slots in (24, 48) or (size[0] == size[1] == size[2] and slots not in (4, 8))
    group = "oh" if cube else "d4z"
    label = ("the cube's rotations and flips" if cube
             else "flips and quarter turns about the depth axis")
    sides = (p[2], p[2], p[1], p[1], p[0], p[0]) if len(p) == 3 else tuple(p)
    pad: list[int] = []
    for i in range(3):  # F.pad order: width, height, depth
        dim = 2 - i
        pad += used_padding(size[dim], d[dim] * (k[dim] - 1) + 1, s[dim], sides[2 * i],
                            sides[2 * i + 1])
    return label, G3.exactness_problems3d(group, size, tuple(k), s, tuple(pad), d,
                                          padding_mode=padding_mode, taps=taps)


def warn_if_pool3d_inexact(module: nn.Module, x: torch.Tensor, window,
                           padding_mode: str | None = None,
                           taps: tuple[int, ...] | None = None, *,
                           regular: bool = False) -> None:
    """Warn once per module at the first volume size where a pool's windows break exactness
    (:func:`pool_exactness_problems3d`); only 6-D group maps, nothing under
    ``quiet_exactness_warnings``/compile/trace. ``window()``: ``(k, s, p, d)`` triples (``p``:
    a triple or six sides), read on every call (the memo is keyed on it). ``regular``: the map
    is a cube group's regular field, whose fiber names the group (4 or 8 slots: c4z/d4z). Call
    it from ``forward`` itself (the warning points at the user's call: :func:`warn_at_user`)."""
    if (module.__dict__.get("_warned", False) or _quiet() or torch.compiler.is_compiling()
            or torch.jit.is_tracing() or not isinstance(x, torch.Tensor) or x.dim() != 6):
        return
    size = (int(x.shape[-3]), int(x.shape[-2]), int(x.shape[-1]))
    if min(size) < 1:  # an empty volume: nothing to be exact on (the pool names the size)
        return
    slots = int(x.shape[2]) if regular else None
    key = (size, window(), padding_mode, taps, slots)  # the window too: one set later is seen
    exact = module.__dict__.setdefault("_exact_sizes", set())
    if key in exact:
        return
    k, s, p, d = key[1]
    label, problems = pool_exactness_problems3d(size, k, s, p, d, padding_mode=padding_mode,
                                                taps=taps, slots=slots)
    if not problems:
        exact.add(key)
        return
    module.__dict__["_warned"] = True
    warn_at_user(f"{type(module).__name__} ({label}) is not exactly equivariant on input of "
                 f"size {'x'.join(map(str, size))}: " + "; ".join(problems)
                 + " (warned once per module)")


class _Pool3d(Typed, nn.Module):
    in_type = out_type = FieldType.regular(spatial_dims=3)  # of any cube group
    _max = False

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1,
                 ceil_mode: bool = False) -> None:
        super().__init__()
        what = type(self).__name__
        P3.check_pool3d_args(kernel_size, stride, padding, dilation, what, max_pool=self._max)
        ceil_mode = C.check_flag(ceil_mode, "ceil_mode", what)
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding, self.ceil_mode = padding, ceil_mode

    def _check_exact(self, x: torch.Tensor, dilation) -> None:
        """Warn once per module at the first input size where the windows break exactness
        (:func:`warn_if_pool3d_inexact`; a ``ceil_mode`` pool's extra window appears exactly
        where the floor windows are inexact, so the same law judges it)."""
        warn_if_pool3d_inexact(self, x, lambda: P3.check_pool3d_args(
            self.kernel_size, self.stride, self.padding, dilation, type(self).__name__,
            max_pool=self._max), regular=True)

    def _repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
                + (", ceil_mode=True" if self.ceil_mode else ""))


class GroupMaxPool3d(_Pool3d):
    """Spatial max pooling of the cube groups' feature maps, every slot separately
    (``nn.MaxPool3d`` on ``(B, C, F, D, H, W)``).

    ``y[c, g] = max_{window} x[c, g]``: the slots are not mixed, so the fiber action commutes.

    Functional twin: :func:`~equilayers.functional.group_max_pool3d`.

    Args:
        kernel_size, stride, padding, dilation, return_indices, ceil_mode: as
            ``nn.MaxPool3d``, in its order (an int or three ints ``(D, H, W)``).
            ``return_indices=True``: ``forward`` returns ``(y, indices)``, ``indices`` of
            ``y``'s shape (int64): per slot, the flat index ``d H W + h W + w`` into that
            slot's ``D x H x W`` volume that ``nn.MaxPool3d`` gives for it
            (``nn.MaxUnpool3d`` takes ``y.flatten(1, 2)`` and ``indices.flatten(1, 2)``);
            positions in the input, not equivariant as numbers.

    Shape:
        ``(B, C, F, D, H, W) -> (B, C, F, D', H', W')``,
        ``n' = floor((n + 2 p - dilation (k - 1) - 1) / stride) + 1`` per dim.

    Equivariance:
        Exact for every element of the cube groups when the windows tile the input from both
        ends, ``(n + 2 p - dilation (k - 1) - 1) % stride == 0`` (``k=3, stride=2, p=1`` on odd
        sizes; ``k=2, stride=2`` on even ones), with equal options, window sizes included, on
        the dims the group trades (all three for o/oh; height and width for c4z/d4z; the
        sizes may differ: a rotation permutes them with the dims). Warns once per module
        otherwise (the pool does not know the model's group, so the map stands for it: a map
        of 4 or 8 slots is c4z's or d4z's, checked for D4z, so a ``(1, 3, 3)`` window there
        is fine; any other map is checked for O_h on cubic inputs, where ``(1, 3, 3)`` warns,
        and D4z on every other box; ``check_grid`` checks any shape for the group given).

    Example:
        >>> import torch
        >>> GroupMaxPool3d(2)(torch.randn(1, 2, 24, 4, 4, 4)).shape
        torch.Size([1, 2, 24, 2, 2, 2])
    """

    _max = True

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1,
                 return_indices: bool = False, ceil_mode: bool = False) -> None:
        super().__init__(kernel_size, stride, padding, dilation, ceil_mode)
        self.return_indices = C.check_flag(return_indices, "return_indices",
                                           type(self).__name__)
        self.dilation = dilation

    def forward(self, x: torch.Tensor):  # (y, indices) with return_indices, as nn.MaxPool3d
        y = P3.group_max_pool3d(x, self.kernel_size, self.stride, self.padding,
                                self.dilation, self.ceil_mode, self.return_indices)
        self._check_exact(x, self.dilation)  # (after the pool: an input it refuses warns not)
        return y

    def extra_repr(self) -> str:
        return (self._repr() + (f", dilation={self.dilation}" if self.dilation != 1 else "")
                + (", return_indices=True" if self.return_indices else ""))


class GroupAvgPool3d(_Pool3d):
    """Spatial average pooling of the cube groups' feature maps (``nn.AvgPool3d`` on
    ``(B, C, F, D, H, W)``, every slot separately).

    Functional twin: :func:`~equilayers.functional.group_avg_pool3d`.

    Args:
        kernel_size, stride, padding, ceil_mode, count_include_pad: as ``nn.AvgPool3d``.

    Shape:
        ``(B, C, F, D, H, W) -> (B, C, F, D', H', W')``,
        ``n' = floor((n + 2 p - k) / stride) + 1`` per dim. float16/bfloat16 on CPU (where
        ``nn.AvgPool3d`` has no kernel) are averaged in float32 and rounded once.

    Equivariance:
        Exact under the tiling condition of :class:`GroupMaxPool3d` (warns once otherwise).

    Example:
        >>> import torch
        >>> GroupAvgPool3d(3, 2, 1)(torch.randn(1, 2, 4, 5, 5, 5)).shape
        torch.Size([1, 2, 4, 3, 3, 3])
    """

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
                 count_include_pad: bool = True) -> None:
        super().__init__(kernel_size, stride, padding, 1, ceil_mode)
        count_include_pad = C.check_flag(count_include_pad, "count_include_pad",
                                         type(self).__name__)
        self.count_include_pad = count_include_pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = P3.group_avg_pool3d(x, self.kernel_size, self.stride, self.padding,
                                self.ceil_mode, self.count_include_pad)
        self._check_exact(x, 1)  # (after the pool: an input it refuses warns not)
        return y

    def extra_repr(self) -> str:
        return self._repr() + ("" if self.count_include_pad else ", count_include_pad=False")


class PolyphasePool3d(Typed, nn.Module):
    """Adaptive polyphase sampling of volumes and cube-group maps: keep the ``s x s x s``
    polyphase component of largest norm, per sample.

    Component ``(a, b, c)`` is ``x[..., a::s, b::s, c::s]`` (flat index ``a s^2 + b s + c``);
    its norm (``criterion``) is taken over every non-batch dim. An optional binomial blur at
    stride 1 (``blur_size > 1``, padded with ``padding_mode``) comes first.

    Functional twin: :func:`~equilayers.functional.polyphase_pool3d`.

    Args:
        stride: integer >= 2.
        criterion: ``"l2"`` (default), ``"l1"`` or ``"linf"`` (avoid ``"l1"`` with a blur at
            stride 2 on non-negative inputs: every component's l1 norm is then equal).
        blur_size: 1..7; 1 = no blur (the published APS).
        padding_mode: padding of the blur; ``"circular"`` (default) keeps exact invariance.
        return_index: if True, ``forward`` returns ``(y, index)`` with the chosen flat index
            per sample, ``(B,)`` int64 (0-d for an unbatched input).

    Shape:
        ``(B, C, D, H, W) -> (B, C, D / s, H / s, W / s)`` or ``(B, C, F, D, H, W) -> (B, C,
        F, D / s, H / s, W / s)``; ``D``, ``H`` and ``W`` must be divisible by ``stride``
        (else ``ValueError``: crop or pad first). A 4-D input is an unbatched volume ``(C, D,
        H, W) -> (C, D / s, H / s, W / s)``, as for ``nn.AvgPool3d``: one choice for the whole
        volume, a 0-d index; a 5-D input is always batched, so an unbatched group map needs
        ``x[None]``.

    Equivariance:
        Integer circular shifts, exactly: a shift by ``t`` keeps the same samples, so
        ``pool(roll(x, t)) = roll(pool(x), (a + t) // s)`` per axis with ``a`` the kept phase
        (and the index becomes ``(a + t) % s``); shifts by multiples of ``s`` move the output
        by ``t / s``, and circular convs + this pool + a global pool are exactly invariant to
        every integer shift. The cube groups, exactly for every element, on volumes whose
        sizes are divisible by ``s`` (any ``D x H x W``; odd ``blur_size``) when
        the largest norm is unique (random inputs; exact ties go to the lowest index, which
        no rule can make commute with the group). See :mod:`equilayers.functional._pool3d`.

    Example:
        >>> import torch
        >>> PolyphasePool3d()(torch.randn(1, 2, 24, 4, 4, 4)).shape
        torch.Size([1, 2, 24, 2, 2, 2])
    """

    in_type = out_type = None  # any field type; the output has the input's

    def __init__(self, stride: int = 2, *, criterion: str = "l2", blur_size: int = 1,
                 padding_mode: str = "circular", return_index: bool = False) -> None:
        super().__init__()
        what = type(self).__name__
        C.check_polyphase_args(stride, criterion, blur_size, padding_mode, what)
        self.return_index = C.check_bool(return_index, "return_index", what)
        self.stride, self.criterion = stride, criterion
        self.blur_size, self.padding_mode = blur_size, padding_mode

    def forward(self, x: torch.Tensor):
        warn_if_polyphase_inexact(self, x, 3)
        return P3.polyphase_pool3d(x, self.stride, criterion=self.criterion,
                                   blur_size=self.blur_size, padding_mode=self.padding_mode,
                                   return_index=self.return_index)

    def _grid_breaks(self) -> list[tuple[str, str, str, str]]:
        return polyphase_grid_breaks(self)

    def extra_repr(self) -> str:
        return polyphase_pool_repr(self)


class PolyphaseUpsample3d(PolyphaseUpsample2d):
    """Put features back on the 3-D polyphase component :class:`PolyphasePool3d` took them
    from.

    ``forward(x, index)``: ``y[n, ..., a + s p, b + s q, c + s r] = x[n, ..., p, q, r]`` for
    ``index[n] = a s^2 + b s + c``, zeros elsewhere; then an optional binomial blur over
    ``(D, H, W)`` scaled by ``s**3`` (``blur_size > 1``, keeps the mean). For 3-D U-Nets: pair
    it with a ``PolyphasePool3d(return_index=True)``.

    Functional twin: :func:`~equilayers.functional.polyphase_upsample3d`.

    Args:
        stride: integer >= 2, the pool's.
        blur_size: 1..7; 1 = no blur.
        padding_mode: padding of the blur; ``"circular"`` (default) keeps exact shift
            equivariance.

    Shape:
        ``(B, ..., D, H, W), (B,) -> (B, ..., s D, s H, s W)``: volumes ``(B, C, D, H, W)`` and
        the cube groups' maps ``(B, C, F, D, H, W)``; an unbatched volume ``(C, D, H, W)``
        with a 0-d index (the pool's for it) ``-> (C, s D, s H, s W)``.

    Equivariance:
        ``up(*pool(x))`` is exactly equivariant to every integer circular shift of ``x`` (the
        same samples come back to the same, shifted, places), and to every cube element on
        volumes whose sizes are divisible by ``s`` when the pool's largest norm is unique (an
        odd ``blur_size``: the blur is centred).

    Example:
        >>> pool, up = PolyphasePool3d(return_index=True), PolyphaseUpsample3d()
        >>> x = torch.randn(2, 3, 24, 4, 4, 4)
        >>> up(*pool(x)).shape
        torch.Size([2, 3, 24, 4, 4, 4])
    """

    def forward(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        warn_if_polyphase_inexact(self, x, 3)
        return P3.polyphase_upsample3d(x, index, self.stride, blur_size=self.blur_size,
                                       padding_mode=self.padding_mode)
