"""Spatial interpolation of images, volumes and group feature maps (``nn.Upsample`` on the
spatial dims only; escnn's ``R2Upsampling`` / ``R3Upsampling``).

On a group map ``(B, C, F, H, W)`` every slot is interpolated alone, as escnn interpolates its
``(B, C * F, H, W)`` tensor. (``nn.Upsample`` on the 5-D map itself would take ``F`` for a
spatial dim and interpolate across the fiber.)

Exactness on the grid: with an integer ``scale_factor`` an output pixel ``i`` reads the input
around ``(i + 1/2) / s - 1/2`` (``"nearest"``: ``floor(i / s)``; ``align_corners=True``:
``i (n - 1) / (s n - 1)``), which a flip of the output maps to the flip of that position, and
the interpolation weights are symmetric: so flips and quarter turns commute with it exactly,
on every field type (it acts on each channel alike). Off the grid it is as accurate as the
interpolation.

Given ``size=``, the output box is fixed: a rotation that swaps two dims needs them to get
the same output size (their input sizes may differ; :func:`upsample_problem`). Along each dim
the linear modes are exact (their sample positions ``(i + 1/2) n / o - 1/2``, or ``i (n - 1)
/ (o - 1)``, are symmetric at any ``n -> o``), but the nearest modes copy
the input pixel torch's index rule picks, which a flip maps onto the mirror pixel only at some
``n -> o`` (``"nearest"``: integer ratios; ``"nearest-exact"``: also some others, and not
e.g. ``4 -> 9``). :func:`resize_break` is the one per-dim law that the module warning and
:func:`equilayers.check_grid` ask: it reads torch's actual index map (:func:`nearest_maps`).
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence
from fractions import Fraction

import torch
import torch.nn.functional as F

from .. import _checks as C

__all__ = ["group_upsample2d", "group_upsample3d", "check_upsample_args", "nearest_maps",
           "resize_break", "resize_fix", "upsample_problem", "copies_at", "copy_factors"]

#: the interpolation modes per spatial rank (``F.interpolate``'s names)
MODES = {2: ("nearest", "nearest-exact", "bilinear", "bicubic"),
         3: ("nearest", "nearest-exact", "trilinear")}
_LINEAR = {"bilinear", "bicubic", "trilinear"}
#: F.interpolate's modes that interpolate (any spatial rank)
_LINEAR_ANY = ("linear", "bilinear", "bicubic", "trilinear")


@functools.lru_cache(maxsize=1024)
def nearest_maps(n: int, o: int, mode: str, scale: float | None = None
                 ) -> tuple[tuple[int, ...], ...]:
    """The input index each of the ``o`` output samples of ``F.interpolate(mode=mode)``
    (``"nearest"`` or ``"nearest-exact"``) copies from ``n`` samples, once per rule that torch
    follows: the exact rule in rational arithmetic (``floor(j n / o)``, ``"nearest-exact"``:
    ``floor((j + 1/2) n / o)``) and torch's own CPU kernels, read off ``F.interpolate`` of
    ``arange(n)`` in float32 and float64, contiguous and channels_last (their float rounding
    differs where ``j n / o`` is an integer: ``"nearest"`` from 2 to 82 samples rounds
    ``41 * float32(2 / 82)`` below 1 in float32 only). ``scale``: the ``scale_factor`` that
    ``F.interpolate`` passes on (given without ``recompute_scale_factor``; its step is ``1 /
    scale``), ``None`` where the output size decides (``size=``, step ``n / o``). Distinct
    maps only, cached."""
    step = Fraction(n, o) if scale is None else 1 / Fraction(scale)
    half = Fraction(1, 2) if mode == "nearest-exact" else 0
    maps = {tuple(min(math.floor((j + half) * step), n - 1) for j in range(o))}
    with torch.no_grad():
        for dtype, layout in itertools.product((torch.float32, torch.float64),
                                               (torch.contiguous_format, torch.channels_last)):
            ramp = torch.arange(n, dtype=dtype).expand(1, 2, 1, n).contiguous(
                memory_format=layout)
            kw = ({"size": (1, o)} if scale is None else
                  {"scale_factor": (1.0, float(scale)), "recompute_scale_factor": False})
            got = F.interpolate(ramp, mode=mode, **kw)[0, 1, 0]
            if got.numel() == o:  # (a scale_factor's size: floor(n * scale), as o)
                maps.add(tuple(int(v) for v in got.tolist()))
    return tuple(sorted(maps))


def resize_break(n: int, o: int, mode: str | None, *, align_corners: bool | None = None,
                 scale: float | None = None, dim: str = "", copies: bool = False
                 ) -> str | None:
    """Why ``F.interpolate`` from ``n`` to ``o`` samples along one dim does not commute with
    the flip of that dim (``None``: it does, up to float rounding). The one law of the module
    warning of :class:`~equilayers.nn.GroupUpsample2d` / ``3d`` and of
    :func:`equilayers.check_grid` (``"upsample-size"``). ``scale``: as
    :func:`nearest_maps`; ``dim``: the dim's name for the message.

    The nearest modes are exact iff the index map commutes with the flip, ``src(o - 1 - j) ==
    n - 1 - src(j)`` for every ``j``, under every rule of :func:`nearest_maps` (a size that
    only some dtype or layout rounds onto the mirror is reported): at integer ratios (but for
    float32 rounding at large ones), and ``"nearest-exact"`` at some others too (not ``4 ->
    9``: the middle output 4 reads input ``floor((4 + 1/2) 4 / 9) = 2``, off the input's
    middle 1.5). The linear modes sample at ``(j + 1/2) / r - 1/2`` with ``r = o / n`` when
    the output size decides (symmetric), or ``r = scale`` (symmetric only where ``o == n *
    scale``); ``align_corners=True`` samples at ``j (n - 1) / (o - 1)``, symmetric at any
    size. Other modes (``"area"``: adaptive average
    windows, symmetric) are exact. ``copies``: the library's upsampling, which copies each
    sample itself at an integer ratio in the nearest modes (:func:`copy_factors`): exact there
    at any factor."""
    where = f" ({dim})" if dim else ""
    if copies and mode is not None and copy_factors((n,), (o,), None, mode) is not None:
        return None
    if mode in ("nearest", "nearest-exact"):
        for src in nearest_maps(n, o, mode, scale):
            bad = next((j for j in range(o) if src[o - 1 - j] != n - 1 - src[j]), None)
            if bad is not None:
                break
        else:
            return None
        what = (f"the middle output {bad} copies input {src[bad]}, not the input's middle"
                if 2 * bad == o - 1 else
                f"output {bad} copies input {src[bad]}, but its mirror output {o - 1 - bad} "
                f"copies input {src[o - 1 - bad]}, not the mirror input {n - 1 - src[bad]}")
        return (f"mode={mode!r} from {n} to {o} samples{where}: {what}, so a flip does not "
                "commute with it")
    if (mode in _LINEAR_ANY and not align_corners and scale is not None
            and abs(o - n * float(scale)) > 1e-9):
        return (f"scale_factor={scale:g} on {n} samples{where} gives {o}, not "
                f"{n * float(scale):g}, so the samples are not centred on the input's")
    return None


def resize_fix(sizes: Sequence[tuple[int, int]], mode: str | None, nd: int, *,
               scales: Sequence[float] | None = None) -> str:
    """What to do about an upsampling from ``n`` to ``o`` samples per dim (``sizes``: the dims
    the group moves) that :func:`resize_break` finds inexact on some dim; it names only what
    the same law calls exact: an output size that is an integer multiple of the input's on
    every moved dim (exact in every mode), a linear mode given ``size=`` (exact at any size),
    ``"nearest-exact"`` where it is exact at these sizes. ``scales``: the ``scale_factor``
    per dim that ``F.interpolate`` passes on (``nn.Upsample``'s), ``None`` for ``size=``.
    (Dims a rotation swaps also need equal output sizes: :func:`upsample_problem`.)"""
    mults = ", ".join(sorted({f"{n} -> " + " or ".join(
        str(m) for m in sorted({n * max(o // n, 1), n * (o // n + 1)})) for n, o in sizes
        if o % n}))
    out = ("an output size that is an integer multiple of the input's on every dim "
           + (f"({mults}) " if mults else "") + "or scale_factor=an integer")
    per_dim = any(resize_break(n, o, mode, scale=None if scales is None else scales[i])
                  for i, (n, o) in enumerate(sizes))
    linear = " or ".join(repr(m) for m in (("bilinear", "bicubic") if nd == 2 else
                                            ("trilinear",)))
    if per_dim and mode in _LINEAR_ANY:  # (a scale_factor that misses the output size)
        out += ", or size= (any output size) instead of scale_factor"
    elif per_dim:
        out += f", or mode={linear} given size= (any output size)"
    if per_dim and mode == "nearest" and scales is None and all(
            resize_break(n, o, "nearest-exact") is None for n, o in sizes):
        out += ", or mode='nearest-exact' (exact at these sizes)"
    return out


def copies_at(sizes: Sequence[int], got: Sequence[int], mode: str | None) -> bool:
    """Whether the library's upsampling copied samples on a call from ``sizes`` to ``got``
    (:func:`copy_factors`: a nearest mode, every dim at an integer ratio)."""
    return mode in ("nearest", "nearest-exact") and all(
        n >= 1 and o >= n and o % n == 0 for n, o in zip(sizes, got, strict=True))


def upsample_problem(size: Sequence[int], got: Sequence[int], moved: Sequence[int],
                     pairs: Sequence[tuple[int, int]], mode: str | None, *,
                     align_corners: bool | None = None, sized: bool,
                     scales: Sequence[float] | None = None, recompute: bool = False,
                     copied: bool = False, names: Sequence[str], nd: int
                     ) -> tuple[str, str] | None:
    """``(why, fix)`` where an upsampling from ``size`` to ``got`` (one entry per spatial dim)
    is not exact under flips of the ``moved`` dims and rotations that swap the ``pairs``;
    ``None`` where it is. The one law of :func:`equilayers.check_grid`'s
    ``"upsample-size"`` and of ``GroupUpsample2d`` / ``3d``'s warning.

    ``F.interpolate`` resizes each dim alone, by a rule ``R_i`` that maps ``n`` samples to
    ``o = R_i(n)`` samples at given positions. An element that flips dim ``i`` commutes with
    it iff ``R_i`` on ``size[i]`` commutes with the flip (:func:`resize_break`). An element
    that moves dim ``b`` to dim ``a`` feeds dim ``a`` the ``size[b]`` samples of dim ``b``:
    it commutes iff ``R_a(size[b])`` is ``R_b(size[b])``, the same output size at the same
    positions. ``sized`` (``size=``): ``R_i`` gives ``got[i]`` from any input, at
    positions that depend only on ``n`` and ``o``, so the output sizes of swapped dims must be
    equal (their input sizes need not be: a rotation permutes them with the dims), and not
    their ratios (``4 x 4 x 8 -> 8 x 8 x 16`` comes out ``8 x 8 x 16`` from the rotated
    input too). ``scales`` (``scale_factor`` per dim): ``R_i(n) = floor(n s_i)`` samples at
    positions of step ``1 / s_i`` (``recompute``: of step ``n / o``; ``align_corners=True``
    in a linear mode: ``(n - 1) / (o - 1)``; ``"area"``: adaptive windows of ``n`` and
    ``o``; the nearest modes: the index map of :func:`nearest_maps`); one input sample gives
    a constant output at any positions. ``copied``: the library's upsampling copied samples
    on this call (:func:`copies_at`). ``names``: the dims' names, ``nd``: the spatial rank
    (for the advice)."""
    dim_why = next((b for b in (resize_break(
        size[i], got[i], mode, align_corners=align_corners,
        scale=None if scales is None or recompute else scales[i], dim=names[i],
        copies=copied) for i in moved) if b), None)

    def rule(i: int, n: int):
        if sized or scales is None:
            return got[i], None
        o = math.floor(float(n) * float(scales[i]))
        if n == 1 or recompute or mode not in _LINEAR_ANY + ("nearest", "nearest-exact") or (
                mode in _LINEAR_ANY and align_corners):
            return o, None
        if mode in _LINEAR_ANY:
            return o, float(scales[i])
        return o, nearest_maps(n, o, mode, float(scales[i])) if o >= 1 else None

    pair_why = None
    for a, b in pairs:
        if any(rule(dst, size[src]) != rule(src, size[src]) for src, dst in ((a, b), (b, a))):
            pair_why = (
                f"size= gives the {names[a]} and {names[b]}, which a rotation swaps, different "
                f"output sizes ({got[a]} and {got[b]}): a rotated input comes out in the same "
                "box, not the rotated one" if sized or scales is None else
                f"scale_factor resizes the {names[a]} and {names[b]}, which a rotation swaps, "
                f"differently ({scales[a]:g} and {scales[b]:g})")
            break
    if dim_why is None and pair_why is None:
        return None
    fixes = []
    if dim_why is not None:
        fixes.append(resize_fix([(size[i], got[i]) for i in moved], mode, nd,
                                scales=None if recompute else scales))
    if pair_why is not None:
        fixes.append(_swap_fix(size, got, pairs, mode, sized or scales is None, names, nd))
    return "; ".join(w for w in (dim_why, pair_why) if w), "; and ".join(fixes)


def _swap_fix(size: Sequence[int], got: Sequence[int], pairs: Sequence[tuple[int, int]],
              mode: str | None, sized: bool, names: Sequence[str], nd: int) -> str:
    """The advice for swapped dims resized differently: equal output sizes there (an example
    that :func:`resize_break` calls exact on each of their input sizes: in a nearest mode a
    common multiple of them, else the linear mode at the largest output size), or one integer
    ``scale_factor``."""
    if not sized:
        return "the same scale_factor on the dims a rotation swaps"
    dims = sorted({i for pair in pairs for i in pair})
    where = ", ".join(names[i] for i in dims[:-1]) + f" and {names[dims[-1]]}"
    ins, top = [size[i] for i in dims], max(got[i] for i in dims)
    example = f"e.g. {top} there"
    if mode in ("nearest", "nearest-exact"):
        step = math.lcm(*ins)
        start = -(-top // step) * step
        ok = next((o for o in range(start, 4 * top + 1, step)
                   if all(resize_break(n, o, mode) is None for n in ins)), None)
        linear = "'bilinear'" if nd == 2 else "'trilinear'"
        example = f"e.g. {ok} there" if ok is not None else f"{example} with mode={linear}"
    return (f"the same output size on the {where} (a rotation swaps them; {example}) or "
            "scale_factor=an integer")


def check_upsample_args(size, scale_factor, mode, align_corners, nd: int,
                        what: str) -> tuple[tuple[int, ...] | None, int | None, str, bool | None]:
    """``(size, scale_factor, mode, align_corners)``: exactly one of ``size`` (an int or one
    int per spatial dim, >= 1) and ``scale_factor`` (an int >= 1: equal on every dim, as
    escnn's, so the quarter turns commute), a mode of :data:`MODES`, and ``align_corners``
    a bool for the (bi/tri)linear and bicubic modes, ``None`` for the nearest ones."""
    if (size is None) == (scale_factor is None):
        raise ValueError(f"{what}: give exactly one of size and scale_factor; got size={size!r}, "
                         f"scale_factor={scale_factor!r} (as nn.Upsample)")
    if size is not None:  # the output's spatial size, as the conv arguments' pairs/triples
        check = C.check_pair if nd == 2 else C.check_triple
        size = check(size, "size", what, minimum=1)
    else:
        scale_factor = C.check_int(
            scale_factor, "scale_factor", what, minimum=1,
            fix="an integer factor, the same on every dim, keeps rot90 and flips exact; for "
                "another output size pass size=")
    C.check_choice(mode, "mode", MODES[nd], what)
    if mode in _LINEAR:
        align_corners = C.check_bool(align_corners, "align_corners", what, optional=True,
                                     fix="as F.interpolate; None is False")
    elif align_corners is not None:
        raise ValueError(f"{what}: align_corners={align_corners!r} needs an interpolating mode "
                         f"({', '.join(m for m in MODES[nd] if m in _LINEAR)}); with "
                         f"mode={mode!r} leave it None (as F.interpolate)")
    return size, scale_factor, mode, align_corners


def copy_factors(sizes: Sequence[int], size: tuple[int, ...] | None,
                 scale_factor: int | None, mode: str) -> tuple[int, ...] | None:
    """The integer factor per dim where a nearest mode copies each sample ``s`` times (an
    integer ``scale_factor``, or a ``size`` that is an integer multiple of every input dim),
    else ``None``. There both nearest modes are that copy (``floor(j / s)``), but torch's
    ``"nearest"`` computes the source index in float and misses at some factors (``s = 41``:
    488 of 15,129 samples of a 3 x 3 input, which broke rot90 exactness), so the library
    copies itself (:func:`_copy`); ``check_grid`` and the module warning read the same rule
    (``resize_break(..., copies=True)``)."""
    if mode not in ("nearest", "nearest-exact"):
        return None
    if scale_factor is not None:
        return (int(scale_factor),) * len(sizes)
    if size is None or any(n < 1 or o < n or o % n for n, o in zip(sizes, size, strict=True)):
        return None
    return tuple(o // n for n, o in zip(sizes, size, strict=True))


def _copy(flat: torch.Tensor, factors: tuple[int, ...]) -> torch.Tensor:
    """Each sample of ``flat`` ``(N, C, *spatial)`` copied ``factors[i]`` times along spatial
    dim ``i``: one expand and one reshape (a copy), exported by every ONNX exporter; a
    channels_last input keeps its layout, as ``F.interpolate`` keeps it."""
    n, c, *spatial = flat.shape
    v = flat
    for i in range(len(spatial)):
        v = v.unsqueeze(3 + 2 * i)
    y = v.expand(n, c, *[d for pair in zip(spatial, factors, strict=True) for d in pair])
    y = y.reshape(n, c, *[d * s for d, s in zip(spatial, factors, strict=True)])
    fmt = {4: torch.channels_last, 5: torch.channels_last_3d}.get(flat.dim())
    if fmt is not None and not flat.is_contiguous() and flat.is_contiguous(memory_format=fmt):
        y = y.contiguous(memory_format=fmt)
    return y


def _upsample(x, size, scale_factor, mode, align_corners, nd: int, what: str) -> torch.Tensor:
    size, scale_factor, mode, align_corners = check_upsample_args(
        size, scale_factor, mode, align_corners, nd, what)
    image, group_map = ("(B, C, H, W)", "(B, C, F, H, W)") if nd == 2 else (
        "(B, C, D, H, W)", "(B, C, F, D, H, W)")
    C.check_tensor(x, "x", what, ndim=(nd + 2, nd + 3),
                   layout=f"{image} or a group feature map {group_map}")
    flat = x.flatten(1, 2) if x.dim() == nd + 3 else x  # escnn's layout (a view)
    if flat.shape[1] == 0:  # F.interpolate refuses 0 channels; it takes an empty batch
        flat = flat.reshape(0, 1, *flat.shape[2:])
    factors = copy_factors(flat.shape[2:], size, scale_factor, mode)
    if factors is not None:
        y = _copy(flat, factors)
    else:
        y = F.interpolate(flat, size=size, scale_factor=scale_factor, mode=mode,
                          align_corners=align_corners)
    return y.reshape(*x.shape[:-nd], *y.shape[-nd:])


def group_upsample2d(x: torch.Tensor, size: int | tuple[int, ...] | None = None,
                     scale_factor: int | None = None, mode: str = "nearest",
                     align_corners: bool | None = None) -> torch.Tensor:
    """Interpolate an image ``(B, C, H, W)`` or a group map ``(B, C, F, H, W)`` along ``H, W``
    only, every channel and slot alone (``F.interpolate``).

    See :class:`equilayers.nn.GroupUpsample2d`.

    Example:
        >>> group_upsample2d(torch.randn(2, 3, 8, 5, 5), scale_factor=2, mode="bilinear").shape
        torch.Size([2, 3, 8, 10, 10])
    """
    return _upsample(x, size, scale_factor, mode, align_corners, 2, "group_upsample2d")


def group_upsample3d(x: torch.Tensor, size: int | tuple[int, ...] | None = None,
                     scale_factor: int | None = None, mode: str = "nearest",
                     align_corners: bool | None = None) -> torch.Tensor:
    """Interpolate a volume ``(B, C, D, H, W)`` or a cube-group map ``(B, C, F, D, H, W)``
    along ``D, H, W`` only, every channel and slot alone (``F.interpolate``).

    See :class:`equilayers.nn.GroupUpsample3d`.

    Example:
        >>> group_upsample3d(torch.randn(1, 2, 24, 3, 3, 3), scale_factor=2).shape
        torch.Size([1, 2, 24, 6, 6, 6])
    """
    return _upsample(x, size, scale_factor, mode, align_corners, 3, "group_upsample3d")
