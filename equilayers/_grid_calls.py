"""``check_grid``'s findings that a layer's *call* decides beyond its attributes, read from
the output size each call returned (:class:`equilayers._grid_runs.Sizes`): a transposed conv
given an ``output_size`` (which pads the end, as ``output_padding``), and an upsampling whose
output size is not exact under the group's flips and rotations. Shared by the 2-D and 3-D
checks (``_grid.py``, ``_grid3d.py``)."""

from __future__ import annotations

import inspect
from collections.abc import Sequence

from torch import nn

from ._grid import Finding, output_padding_finding
from ._grid_types import contains, slot_symmetric_fed
from .functional._upsample import copies_at, upsample_problem
from .groups import FieldType, Group

__all__ = ["call_findings", "group_findings", "module_findings"]

_DIM_NAMES = {2: ("rows", "columns"), 3: ("depth", "height", "width")}


def _per_dim(v, nd: int) -> tuple[int, ...] | None:
    """``v`` (an int or ``nd`` ints) as ``nd`` ints; ``None`` for anything else."""
    if isinstance(v, int) and not isinstance(v, bool):
        return (v,) * nd
    if isinstance(v, (tuple, list)) and len(v) == nd and all(isinstance(a, int) for a in v):
        return tuple(v)
    return None


def _upsample_break(mod: nn.Module, size: tuple[int, ...], got: tuple[int, ...],
                    moved: Sequence[int], pairs: Sequence[tuple[int, int]]
                    ) -> tuple[str, str] | None:
    """``(why, fix)`` where an upsampling from ``size`` to ``got`` is not exact on the dims the
    group moves, by the one law that ``GroupUpsample2d`` / ``3d``'s warning asks too
    (:func:`~equilayers.functional._upsample.upsample_problem`): each moved dim's resize must
    commute with its flip, and dims a rotation swaps must be resized alike (``size=``: to
    equal output sizes; ``scale_factor``: by equal factors); ``None`` where it is exact."""
    mode, nd = getattr(mod, "mode", None), len(size)
    copied = getattr(mod, "_copies_integer_ratios", False) and copies_at(size, got, mode)
    return upsample_problem(
        size, got, moved, pairs, mode, align_corners=getattr(mod, "align_corners", None),
        sized=getattr(mod, "size", None) is not None, scales=_scales(mod, nd),
        recompute=bool(getattr(mod, "recompute_scale_factor", None)), copied=copied,
        names=_DIM_NAMES[nd], nd=nd)


def _scales(mod: nn.Module, nd: int) -> tuple[float, ...] | None:
    """The ``scale_factor`` per dim (given without ``size``), else ``None``."""
    factor = getattr(mod, "scale_factor", None)
    if getattr(mod, "size", None) is not None or factor is None:
        return None
    if isinstance(factor, (int, float)) and not isinstance(factor, bool):
        return (float(factor),) * nd
    if isinstance(factor, (tuple, list)) and len(factor) == nd:
        return tuple(float(f) for f in factor)
    return None


def _takes_output_size(mod: nn.Module) -> bool:
    """Whether ``mod``'s forward takes an ``output_size`` (a transposed conv's: torch's and
    ours), so that its output is the conv-transpose size of its attributes plus the padding
    the call asks for (not so an upsampling layer that is ``transposed`` in another sense)."""
    try:
        return "output_size" in inspect.signature(mod.forward).parameters
    except (TypeError, ValueError):
        return False


def module_findings(sizes, group: bool, shifts: bool, breaks: str) -> list[Finding]:
    """What a layer breaks at every size, by its own account (``_grid_breaks()``: a blur
    upsampling off the grid's centre, a polyphase pool's even blur, a blur padded other than
    circularly): ``group`` (some element moves pixels) and ``shifts`` select the kinds."""
    out = []
    for name, mod, size in sizes:
        own = getattr(mod, "_grid_breaks", None)
        if not callable(own):
            continue
        for problem, kind, why, fix in own():
            if (group if kind == "group" else shifts):
                out.append(Finding(name, type(mod).__name__, problem,
                                   breaks if kind == "group" else "shifts", tuple(size), why,
                                   fix))
    return out


def group_findings(sizes, group: Group) -> list[Finding]:
    """Layers whose declared field types belong to a group that does not contain ``group``
    (a ``GroupConv2d(group="d2")`` after a p4 lifting conv: both have 4 slots, so the model
    runs, but the d2 layer's weights are not p4-equivariant; measured p4 error 0.64). Types
    of no group, and planar types checked with a cube group (or the reverse: the planar
    fields on volumes have their own check), are left alone."""
    out = []
    seen: set[int] = set()
    for name, mod, size in sizes:
        if id(mod) in seen:
            continue
        seen.add(id(mod))
        for side in ("in_type", "out_type"):
            ft = getattr(mod, side, None)
            own = ft.group if isinstance(ft, FieldType) else None
            if own is None or own == group or own.spatial_dim != group.spatial_dim:
                continue
            assert isinstance(ft, FieldType)  # (it has a group)
            if ft.rep == "invariant" or (
                    side == "in_type" and slot_symmetric_fed(mod, sizes, group)):
                continue  # nothing moves / a head that pools any permuted slots alike
            if not contains(own, group):
                out.append(Finding(
                    name, type(mod).__name__, "group-mismatch", "group", tuple(size),
                    f"its {side} {ft!r} belongs to {own.name}, which does not contain "
                    f"{group.name}: " + ("its weights are" if any(
                        True for _ in mod.parameters(recurse=False)) else "it is")
                    + f" not {group.name}-equivariant (a fiber of the same size runs without "
                    "an error)",
                    f"build it with group={group.name!r} like the layers around it (or check "
                    f"the model with group={own.name!r})"))
                break
    return out


def call_findings(sizes, moved: Sequence[int], pairs: Sequence[tuple[int, int]],
                  breaks: str) -> list[Finding]:
    """What a layer's call decides beyond its attributes, read from the recorded output size
    (``sizes.outputs``, 2-D and 3-D): a transposed conv whose output is larger than its
    attributes give (``forward(x, output_size=...)`` pads the end, as ``output_padding``),
    and an upsampling (``nn.Upsample``, ``GroupUpsample2d`` / ``3d``) that is not exact
    (:func:`_upsample_break`). ``moved``: the spatial dims (0-based) some grid element flips;
    ``pairs``: the dims rotations swap."""
    out = []
    for (name, mod, size), got in zip(sizes, getattr(sizes, "outputs", []), strict=False):
        if got is None or len(got) != len(size):
            continue
        nd, kind = len(size), type(mod).__name__
        if getattr(mod, "transposed", False) is True and _takes_output_size(mod):
            k, s, p, d, op = (_per_dim(getattr(mod, a, v), nd) for a, v in (
                ("kernel_size", 1), ("stride", 1), ("padding", 0), ("dilation", 1),
                ("output_padding", 0)))
            if k is None or s is None or p is None or d is None or op is None:
                continue
            extra = [got[i] - ((size[i] - 1) * s[i] - 2 * p[i] + d[i] * (k[i] - 1) + 1 + op[i])
                     for i in range(nd)]
            ops = [f"{_DIM_NAMES[nd][i]}: {extra[i]} from the call's output_size"
                   for i in moved if extra[i]]
            if ops:
                out.append(output_padding_finding(name, kind, breaks, size, ops))
        elif hasattr(mod, "scale_factor") and hasattr(mod, "mode"):
            problem = _upsample_break(mod, size, got, moved, pairs)
            if problem:
                out.append(Finding(name, kind, "upsample-size", breaks, size, *problem))
    return out
