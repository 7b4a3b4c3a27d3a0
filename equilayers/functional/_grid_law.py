"""The one grid-exactness law of the 2-D convs and pools (plain and transposed): when their
sampling grid maps onto itself under the grid elements of a group, so the layer is exactly
equivariant (:func:`exactness_problems`). The module warnings
(:mod:`equilayers.nn._exactness`) ask it; :func:`equilayers.check_grid` states the same
conditions per layer of any model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .. import _checks as C
from ..groups import Group, GroupLike, get
from ..groups._actions import grid_moves

__all__ = ["grid_subgroup", "exactness_problems", "used_padding", "windows_coincide",
           "DimBreak", "dim_breaks"]


def grid_subgroup(group: GroupLike) -> Group:
    """The elements of ``group`` that map the pixel grid onto itself: rotations by multiples
    of 90 degrees it contains (and its flips), e.g. c8 -> c4, d6 -> d2, so2 -> c4, o2 -> d4."""
    return get(group).grid_subgroup()


def exactness_problems(group: GroupLike, size: Sequence[int], kernel_size, stride,
                       pad: tuple[int, int, int, int], dilation, *,
                       output_padding=None, ceil_extra=(0, 0),
                       padding_mode: str | None = None,
                       taps: Sequence[int] | None = None) -> list[str]:
    """Why a conv/pool window grid with these options is *not* exactly equivariant on an input
    of spatial ``size`` (empty list: exact). ``kernel_size``: an int, or ``(kh, kw)`` (a
    pool's rectangular window: each flip is judged on its own dim, and no 90-degree rotation
    is exact).

    A dim is exact for the flip of that dim iff its padding is symmetric and the windows tile
    the padded length from both ends: ``(n + pad_lo + pad_hi - (d*(k-1)+1)) % stride == 0``
    (stride 1 always does; stride 2 on an odd size with odd ``k`` and symmetric padding does).
    Even kernels are exact with symmetric padding; ``"same"`` padding of an even kernel is
    asymmetric and is not. ``d1`` only flips the width; ``c2``/``d2`` also flip the height;
    ``c4``/``d4`` additionally need the same options on both dims, not the same size: a
    quarter turn maps an ``H x W`` input to a ``W x H`` one, whose height windows are the width
    windows of the first (``torch.rot90`` of a rectangle; every layer here measured exact on
    rectangles, ``tests/test_grid.py``). Other groups are judged on their
    :func:`grid_subgroup` (the only elements that can be exact on the pixel grid).

    A transposed conv (``output_padding`` given, a pair or int as ``F.conv_transpose2d``'s;
    ``None``: a conv or pool) scatters input pixel ``i`` to ``i*s + d*t`` (tap ``t``) of the
    uncropped output ``0 .. (n-1)*s + d*(k-1)``, which a flip maps onto itself at any ``n``;
    the kept window ``[p, (n-1)*s + d*(k-1) - p + output_padding]`` is centred on it iff
    ``output_padding == 0``. So a transposed conv is exact at every input size with
    ``output_padding=0`` and never (but by coincidence) with ``output_padding > 0``.

    ``padding_mode`` (a conv's or blur's: the samples its padding reads, ``None`` for a
    constant such as zeros): where the padded grid is not symmetric (an uneven remainder, an
    asymmetric padding), a ``"reflect"``, ``"replicate"`` or ``"circular"`` padding can still
    make the flip map every window onto its mirror (:func:`windows_coincide`: reflect, ``n=4,
    k=1``, stride 3, padding 1 reads samples 1 and 2); that dim is exact, and not named.
    ``taps``: the fixed weights of a blur's window along a dim (the flip does not flip them),
    compared window by window (:func:`windows_coincide`).

    A ``ceil_mode`` pool passes ``ceil_extra``, ``(height, width)``: how far its extra last
    window reaches past the floor-mode windows at this size (by torch's ``ceil_mode`` rule;
    ``pad`` is then the floor-mode padding). A dim it reaches past is never exact: the extra
    window adds pixels at the end only, and no window mirrors it at the start (it appears
    only where the floor windows leave a remainder ``r``, and reaches ``stride - r``, so the
    sizes ``n + extra`` and ``n + extra - stride`` add none).
    """
    what = "exactness_problems"
    grp = grid_subgroup(group)
    if isinstance(size, (tuple, list, torch.Size)):  # under jit.trace a shape holds 0-d tensors
        size = tuple(int(v) if isinstance(v, torch.Tensor) and v.dim() == 0
                     and not v.is_floating_point() else v for v in size)
    h, w = C.check_pair(size, "size", what, minimum=1, fix="the input's (H, W)")
    kh, kw = C.check_pair(kernel_size, "kernel_size", what, minimum=1)
    sh, sw = C.check_pair(stride, "stride", what, minimum=1)
    dh, dw = C.check_pair(dilation, "dilation", what, minimum=1)
    if not (isinstance(pad, (tuple, list)) and len(pad) == 4 and all(
            C.is_int(p) and p >= 0 for p in pad)):
        raise TypeError(f"{what}: pad={pad!r} must be four integers >= 0 (left, right, top, "
                        f"bottom), e.g. from resolve_padding")
    oph, opw = (0, 0) if output_padding is None else C.check_pair(
        output_padding, "output_padding", what, minimum=0,
        fix="None for a conv, or a transposed conv's output_padding")
    eh, ew = C.check_pair(ceil_extra, "ceil_extra", what, minimum=0,
                          fix="(0, 0) for a floor-mode window, or a ceil_mode pool's reach")
    if padding_mode is not None:
        C.check_padding_mode(padding_mode, "padding_mode", what, C.PADDING_MODES)
    if grp.order == 1:
        return []
    left, right, top, bottom = pad
    moved, swaps = grid_moves(grp)  # d1 flips the width; c2, c4, d2, d4 both dims
    dims = [d for axis, d in ((-2, ("height", h, kh, sh, dh, top, bottom, oph, eh)),
                              (-1, ("width", w, kw, sw, dw, left, right, opw, ew)))
            if axis in moved]
    out = []
    for name, n, kernel, s, d, lo, hi, op, extra in dims:
        if extra:
            down = n + extra - s
            sizes = f"{n + extra}" + (f" or {down}" if down > 0 else "")
            out.append(f"ceil_mode adds a last window reaching {extra} pixel(s) past the "
                       f"{name}'s end, which no window mirrors at its start: use an input "
                       f"{name} of {sizes} (where it adds none), or ceil_mode=False")
            continue
        extent = d * (kernel - 1) + 1
        for b in dim_breaks(n, extent, s, lo, hi, padding_mode=padding_mode, taps=taps,
                            output_padding=None if output_padding is None else op):
            if b.problem == "asymmetric-padding" and taps is not None:  # a blur's own padding
                out.append(f"asymmetric {name} padding ({lo}, {hi}) (an even blur's): use an "
                           f"odd kernel_size, or an input {name} at which the windows do not "
                           "reach the extra padding (equilayers.check_grid names one)")
            elif b.problem == "asymmetric-padding":
                out.append(f"asymmetric {name} padding ({lo}, {hi}) (e.g. padding='same' with "
                           "an even kernel): use an odd kernel or symmetric padding")
            elif b.problem == "output-padding":  # a transposed conv: any n, no output padding
                out.append(f"output_padding={op} pads the {name} at its end only (the output "
                           "grid is off-centre): use output_padding=0 (k=3, stride 2, padding 1"
                           " maps n -> 2n-1, undoing the stride-2 conv on 2n-1)")
            else:
                rem = b.remainder
                up, down = n + s - rem, n - rem
                sizes = f"{up}" + (f" or {down}" if down >= extent - lo - hi and down > 0
                                   else "")
                out.append(f"stride {s} does not tile the padded {name} {n}+{lo}+{hi} from both "
                           f"ends (remainder {rem}): use an input {name} of {sizes} (this layer "
                           f"needs n + {lo} + {hi} - {extent} divisible by {s})")
    if swaps:
        if kh != kw:
            out.append(f"rotations by 90 degrees swap height and width, but the window is "
                       f"{kh}x{kw}: use a square kernel_size")
        elif (sh, dh, top, bottom, oph) != (sw, dw, left, right, opw):
            out.append("rotations by 90 degrees swap height and width, but stride/dilation/"
                       "padding differ between them: use the same value for both")
    return out


def used_padding(n: int, extent: int, stride: int, before: int, after: int) -> tuple[int, int]:
    """An asymmetric padding ``(before, after)`` of a dim of ``n`` pixels as a window grid
    (``extent`` pixels, ``stride``) uses it: the padding past the last window is never read,
    so ``after`` is cut to what the last window reaches; the grid is symmetric, and exact, when
    that equals ``before`` (an even blur at stride 2 on the right sizes). A symmetric padding
    is returned as it is (the law then names the sizes that tile)."""
    if before == after:
        return before, after
    out = (n + before + after - extent) // stride + 1
    return before, min(after, max(0, (out - 1) * stride + extent - n - before))


#: The padding modes whose padded samples are samples of the input (constant padding is not).
SAMPLED_MODES = ("reflect", "replicate", "circular")


def windows_coincide(n: int, extent: int, stride: int, lo: int, hi: int,
                     padding_mode: str | None, taps: Sequence[int] | None = None) -> bool:
    """Whether the flip of a dim of ``n`` samples maps every window a strided conv or blur
    reads (``extent`` taps, ``stride``, padding ``lo``/``hi`` filled by ``padding_mode``)
    onto its mirror window, tap by tap: then the layer is exactly flip-equivariant on that
    dim. With ``"reflect"``, ``"replicate"`` or ``"circular"`` padding it holds wherever the
    padded grid is symmetric (``lo == hi`` and the windows tile the padded length), and can
    hold elsewhere by the padding's samples (reflect, ``n=4``, one tap, stride 3, padding 1:
    the windows read samples 1 and 2, which the flip swaps). For a constant padding (``None``,
    ``"zeros"``, a pool's) it is ``False``: the grid alone decides (:func:`dim_breaks`). Every
    tap of the extent is compared, so a dilated window counts as its full extent
    (sufficient). ``taps``: a fixed filter's weights (a blur's binomial row, which the flip
    does not flip, unlike a conv's weights): then each window's weight on each sample is
    compared with its mirror window's, which a repeated padded sample can match where the
    taps do not (reflect, ``n=4``, blur ``[1, 1]``, stride 3: windows ``(0, 1)`` and ``(3,
    2)``)."""
    if padding_mode not in SAMPLED_MODES or n < 1 or stride < 1:
        return False
    count = (n + lo + hi - extent) // stride + 1
    if count < 1 or (padding_mode == "reflect" and max(lo, hi) >= n):
        return False

    def source(i: int) -> int:
        if padding_mode == "circular":
            return i % n
        if padding_mode == "replicate":
            return min(max(i, 0), n - 1)
        return -i if i < 0 else (2 * (n - 1) - i if i >= n else i)

    if taps is not None and len(taps) == extent:
        def weights(j: int, flip: bool) -> dict[int, int]:
            out: dict[int, int] = {}
            for u in range(extent):
                i = source(j * stride + u - lo)
                i = n - 1 - i if flip else i
                out[i] = out.get(i, 0) + taps[u]
            return out

        return all(weights(j, True) == weights(count - 1 - j, False) for j in range(count))
    return all(n - 1 - source(j * stride + u - lo)
               == source((count - 1 - j) * stride + extent - 1 - u - lo)
               for j in range(count) for u in range(extent))


@dataclass(frozen=True)
class DimBreak:
    """One reason why the window grid along one dim is not mapped onto itself by the flip of
    that dim (:func:`dim_breaks`): ``problem`` is ``"asymmetric-padding"``, ``"output-padding"``
    (a transposed conv's, at the end only) or ``"stride-parity"`` (the windows do not tile the
    padded length from both ends); ``lo``/``hi`` the padding the law read (trimmed to what the
    windows reach, when asked)."""

    problem: str
    n: int
    extent: int
    stride: int
    lo: int
    hi: int
    output_padding: int = 0

    @property
    def remainder(self) -> int:
        """What the windows leave of the padded length: ``(n + lo + hi - extent) % stride``."""
        return (self.n + self.lo + self.hi - self.extent) % self.stride


def dim_breaks(n: int, extent: int, stride: int, lo: int, hi: int, *,
               output_padding: int | None = None, padding_mode: str | None = None,
               trim: bool = False, taps: Sequence[int] | None = None) -> list[DimBreak]:
    """The one grid-exactness law of one dim, which the module warnings
    (:func:`exactness_problems`, ``exactness_problems3d``) and ``check_grid`` (2-D and 3-D)
    all format: why a window grid of ``extent`` pixels at ``stride``, padded ``lo``/``hi``, on
    ``n`` samples is not exact under the flip of the dim (empty: exact). A conv or pool needs
    symmetric padding and ``(n + lo + hi - extent) % stride == 0``, unless its padding's samples
    make every window coincide with its mirror (:func:`windows_coincide`, ``padding_mode``); a
    transposed conv (``output_padding`` given) needs symmetric cropping and no output padding,
    at any ``n``. ``trim``: an asymmetric padding counts only as far as the windows reach it
    (:func:`used_padding`). An asymmetric padding comes first. ``taps``: a blur's fixed
    weights (:func:`windows_coincide`)."""
    transposed = output_padding is not None
    if trim and lo != hi and not transposed:
        lo, hi = used_padding(n, extent, stride, lo, hi)
    out = []
    if lo != hi:
        out.append(DimBreak("asymmetric-padding", n, extent, stride, lo, hi))
    if transposed:
        if output_padding:
            out.append(DimBreak("output-padding", n, extent, stride, lo, hi, output_padding))
    elif (n + lo + hi - extent) % stride:
        out.append(DimBreak("stride-parity", n, extent, stride, lo, hi))
    if out and not transposed and windows_coincide(n, extent, stride, lo, hi, padding_mode,
                                                   taps):
        return []  # exact by the padding's samples, whatever the padded grid
    return out
