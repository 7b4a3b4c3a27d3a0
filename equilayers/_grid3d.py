""":func:`~equilayers.check_grid` for the cube's groups on volumes ``(..., D, H, W)``.

The law is the 3-D group convs' (:func:`equilayers.functional.exactness_problems3d`), applied
to every leaf module with ``kernel_size`` and ``stride`` attributes (``nn.Conv3d``,
``nn.ConvTranspose3d``, ``nn.MaxPool3d``/``nn.AvgPool3d``, ``LiftingConv3d``/``GroupConv3d``,
``GroupMaxPool3d``/``GroupAvgPool3d``, ``BlurPool3d``) and to ``nn.*Pad3d``: on a dim that
some element of the group flips or moves, the padding must be symmetric and the windows must
tile the padded length from both ends, ``(n + lo + hi - (dilation (k - 1) + 1)) % stride ==
0``; the dims the group trades (all three for o/oh, ``H`` and ``W`` for c4z/d4z) need equal
options at every layer (not equal sizes: a rotation permutes them with the dims, and
:func:`equilayers.check_grid` checks that each layer sees them permuted on the rotated
input). ``BlurPool3d`` pads ``(k - 1) // 2`` low
and the rest high, so its condition is ``(n - 1) % stride == 0`` for odd ``k``. A transposed
conv (``transposed = True``: ``nn.ConvTranspose3d`` and equilayers' own) is exact at any size
with ``output_padding == 0`` on the moved dims (its output grid is centred on the input's, as
in 2-D), and under circular shifts only when its footprints neither overlap nor are cropped.
"""

from __future__ import annotations

import math

from torch import nn

from ._grid import (
    Finding,
    _mismatches,
    _off_grid,
    _rotated_runs,
    _unsupported_size,
    check_declared_rank,
    file_break,
    output_padding_finding,
    transposed_border_finding,
)
from ._grid_calls import call_findings, module_findings
from ._grid_runs import SIZED_PADDING_FIX, _record_sizes
from ._grid_shifts import ShiftWindows
from ._grid_sizes import with_size_fix
from .functional._gconv3d import _traded
from .functional._grid_law import dim_breaks
from .groups import CubicGroup, FieldType, Group, get
from .groups._actions import grid_moves
from .groups._transforms import element_rows, grid_ops
from .nn import LearnablePolyphasePool3d

__all__ = ["check_grid3d"]

_NAMES = ("depth", "height", "width")


def _triple(v) -> tuple[int, int, int] | None:
    if isinstance(v, int) and not isinstance(v, bool):
        return (v, v, v)
    if isinstance(v, (tuple, list)) and len(v) == 3 and all(
            isinstance(a, int) and not isinstance(a, bool) for a in v):
        return (int(v[0]), int(v[1]), int(v[2]))
    return None


def _params3d(mod: nn.Module) -> dict | None:
    """Effective kernel, stride, padding per side ``((lo, hi) for D, H, W)`` and padding mode
    of a conv-, pool- or pad-like 3-D module, by its attributes (``None``: not one)."""
    name = type(mod).__name__
    if name.endswith("Pad3d"):
        pad = getattr(mod, "padding", None)
        if not isinstance(pad, (tuple, list)) or len(pad) != 6:
            return None
        w_lo, w_hi, h_lo, h_hi, d_lo, d_hi = (int(v) for v in pad)
        mode = "circular" if "Circular" in name else name.replace("Pad3d", "").lower()
        return {"k": (1, 1, 1), "s": (1, 1, 1), "sides": ((d_lo, d_hi), (h_lo, h_hi),
                                                          (w_lo, w_hi)),
                "mode": mode, "padded_by": "module"}
    if not (hasattr(mod, "kernel_size") and hasattr(mod, "stride")):
        return None
    if isinstance(mod, LearnablePolyphasePool3d):
        # keeps a whole polyphase component (it takes only sizes its stride divides); its
        # kernel_size is the scoring filter's, a circular correlation, not a sampling window
        return None
    k = _triple(mod.kernel_size)
    s = _triple(mod.stride if mod.stride is not None else mod.kernel_size)
    d = _triple(getattr(mod, "dilation", 1))
    if k is None or s is None or d is None:
        return None
    ke = tuple(di * (ki - 1) + 1 for ki, di in zip(k, d, strict=True))
    pad = getattr(mod, "padding", None)
    blur = name.startswith("BlurPool")
    if blur or pad == "same":  # the extra voxel of an even window at the end
        sides = tuple(((e - 1) // 2, e - 1 - (e - 1) // 2) for e in ke)
    elif pad is None or pad == "valid":
        sides = ((0, 0),) * 3
    else:
        p = _triple(pad)
        if p is None:
            return None
        sides = tuple((pi, pi) for pi in p)
    default = "pool" if "pool" in name.lower() and not blur else "zeros"
    transposed = getattr(mod, "transposed", False) is True  # nn.ConvTranspose3d, ours
    op = _triple(getattr(mod, "output_padding", 0)) if transposed else (0, 0, 0)
    if op is None:
        return None
    mode = getattr(mod, "padding_mode", default)
    return {"k": ke, "s": s, "sides": sides, "mode": mode, "padded_by": "layer",
            "transposed": transposed, "op": op, "sized": blur,
            "reads": mode if default == "zeros" and not transposed else None,
            # a blur's fixed binomial row (windows_coincide weighs its padded samples)
            "taps": tuple(math.comb(ke[0] - 1, u) for u in range(ke[0])) if blur else None}


def _permutations(grid: Group) -> list[tuple[int, ...]]:
    """How the grid elements permute a volume's ``(D, H, W)`` sizes: ``perm[i]`` is the dim
    whose size lands at dim ``i`` (identity excluded)."""
    out = []
    for g in grid.elements():
        _, source = grid_ops(element_rows(grid, g))  # coordinate k (dim -(k+1)) from source[k]
        perm = tuple(2 - source[2 - i] for i in range(3))
        if perm != (0, 1, 2) and perm not in out:
            out.append(perm)
    return out


def _findings(sizes, moved: set[int], pairs: list[tuple[int, int]], shifts: bool
              ) -> list[Finding]:
    out = []
    breaks = "rotations" if pairs else "flips"
    windows = ShiftWindows(3)
    outputs = getattr(sizes, "outputs", None) or [None] * len(sizes)
    for (name, mod, size), got in zip(sizes, outputs, strict=True):
        prm = _params3d(mod) if len(size) == 3 else None
        if prm is None:
            out += windows.other(size, got) if shifts else []
            continue
        reach, content = windows.step(name, mod, prm, size)
        out += reach if shifts else []
        kind = type(mod).__name__
        transposed = prm.get("transposed", False)
        asym: list[str] = []
        parity: list[str] = []
        ops: list[str] = []
        for i in range(3):
            if i not in moved:
                continue
            lo, hi = prm["sides"][i]
            found = dim_breaks(size[i], prm["k"][i], prm["s"][i], lo, hi, trim=True,
                               output_padding=prm["op"][i] if transposed else None,
                               padding_mode=prm.get("reads"), taps=prm.get("taps"))
            if found:  # the first: an asymmetric padding hides the rest
                file_break(found[0], _NAMES[i], asym, ops, parity)
        text = "x".join(map(str, size))
        opts = [(prm["k"][i], prm["s"][i], prm["sides"][i], prm.get("op", (0, 0, 0))[i])
                for i in range(3)]
        odd = [f"{_NAMES[a]}/{_NAMES[b]}" for a, b in pairs if opts[a] != opts[b]]
        if odd:
            out.append(Finding(
                name, kind, "anisotropic", "rotations", size,
                f"the group trades {', '.join(odd)}, but kernel/stride/padding differ between "
                f"them (kernel {prm['k']}, stride {prm['s']}, padding {prm['sides']}"
                + (f", output_padding {prm['op']}" if transposed else "") + ")",
                "use the same kernel size, stride, dilation and padding on the traded dims"))
        if asym:
            out.append(Finding(
                name, kind, "asymmetric-padding", breaks, size,
                f"asymmetric padding ({'; '.join(asym)}), so the output grid is not centred "
                "on the input's",
                SIZED_PADDING_FIX if prm.get("sized") else "use symmetric padding (an odd "
                "kernel with padding=kernel_size//2 instead of padding='same' with an even "
                "kernel)"))
        if parity:
            st = prm["s"]
            s_txt = str(st[0]) if len(set(st)) == 1 else "x".join(map(str, st))
            out.append(Finding(
                name, kind, "stride-parity", breaks, size,
                f"stride {s_txt} on a {text} input samples a grid that is not symmetric about "
                "the centre ((size + 2*padding - effective kernel) % stride must be 0; "
                f"{'; '.join(parity)})",
                "make (size + 2*padding - effective kernel) divisible by the stride at this "
                "layer"))
        if ops:
            out.append(output_padding_finding(name, kind, breaks, size, ops))
        padded = any(lo or hi for lo, hi in prm["sides"])
        if transposed and shifts and (prm["k"] != prm["s"] or padded):
            out.append(transposed_border_finding(name, kind, size))
        out += content if shifts else []
    return out + (windows.end() if shifts else [])


def check_grid3d(model: nn.Module, shape: tuple[int, ...], group: Group, *,
                 shifts: bool = True, search: int = 64) -> list[Finding]:
    """:func:`~equilayers.check_grid` on a volume input ``shape`` (``(B, C, D, H, W)`` or
    ``(B, C, |G|, D, H, W)``) for a cube group, or for SO(3)/O(3), whose exact elements are
    their grid subgroup's, plus the off-grid finding of their other rotations (the other
    arguments already validated by ``check_grid``)."""
    grid = group.grid_subgroup()
    if not isinstance(grid, CubicGroup):
        raise ValueError(f"check_grid: group={group.name!r} acts on {group.spatial_dim} "
                         "spatial dims; the volume checks take the cube's groups 'o', 'oh', "
                         "'c4z', 'd4z', 't' and 'so3', 'o3'")
    declared = getattr(model, "in_type", None)
    if isinstance(declared, FieldType):
        try:
            bound = declared.bind(group)
        except ValueError:  # a model of a subgroup (c4z) checked for a larger group (o): the
            bound = declared  # grid law reads its windows all the same, as in 2-D
        check_declared_rank(shape, declared, bound)
    if len(shape) < 5:
        raise ValueError(f"check_grid: {group.name} acts on volumes; input_shape={shape!r} "
                         "must be a full shape such as (1, 2, 9, 9, 9) (B, C, D, H, W)")
    moved_dims, _ = grid_moves(grid)
    moved = {3 + d for d in moved_dims}  # -3 -> 0 (depth), -2 -> 1, -1 -> 2
    pairs = _traded(grid)
    size = tuple(shape[-3:])
    # SO(3), O(3), ico, ih: their other rotations leave the grid (as c8's in 2-D)
    off = [] if group.pixel_exact else [_off_grid(group, size)]
    try:
        sizes = _record_sizes(model, shape, 3)
    except (ValueError, RuntimeError) as e:  # a size the model rejects: say which one it takes
        return off + [_unsupported_size(model, shape, e, search, 3)]
    findings = off + _rotated_runs(model, shape, sizes, _permutations(grid))
    breaks = "rotations" if pairs else "flips"

    def layer(sizes) -> list[Finding]:
        found = _findings(sizes, moved, pairs, shifts)
        found += call_findings(sizes, sorted(d - 3 for d in moved), pairs, breaks)
        found += module_findings(sizes, bool(moved), shifts, breaks)
        return _mismatches(sizes, group) + found

    return findings + with_size_fix(
        layer(sizes), shape, [i in moved for i in range(3)],
        lambda cand: layer(_record_sizes(model, cand, 3)), search)


#: a planar group's grid subgroup -> the cube's group that acts so on every depth slice
_ABOUT_Z = {"c4": "c4z", "d4": "d4z"}


def check_planar_on_volumes(model: nn.Module, shape: tuple[int, ...], group: Group, *,
                            shifts: bool, search: int) -> list[Finding] | None:
    """:func:`~equilayers.check_grid` of a model of planar fields on volumes (its modules
    declare a planar group with ``spatial_dims=3``) for its planar ``group``: a group whose
    grid elements are ``c4`` / ``d4`` is read as ``c4z`` / ``d4z`` on the volume, plus the
    off-grid finding of its other rotations; ``None`` where that does not apply."""
    about_z = _ABOUT_Z.get(group.grid_subgroup().name)
    if about_z is None or len(shape) < 5 or not _planar_on_volumes(model):
        return None
    off = [] if group.pixel_exact else [_off_grid(group, tuple(shape[-3:]))]
    return off + check_grid3d(model, shape, get(about_z), shifts=shifts, search=search)


def _planar_on_volumes(model: nn.Module) -> bool:
    """Whether ``model`` declares planar fields on volumes (a module whose ``in_type`` or
    ``out_type`` is a planar group's with ``spatial_dims=3``)."""
    for m in model.modules():
        for t in (getattr(m, "in_type", None), getattr(m, "out_type", None)):
            if (isinstance(t, FieldType) and t.spatial_dims == 3 and t.group is not None
                    and t.group.spatial_dim == 2):
                return True
    return False
