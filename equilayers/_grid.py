"""check_grid: find the layers whose sampling grid breaks exact equivariance at an input size."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from . import _checks as C
from ._grid_runs import (
    SIZED_PADDING_FIX,
    _pad_params,
    _record_sizes,
    _sized_params,
    _spatial_params,
    _volume_windows,
    fibers_alone,
)
from .functional._grid_law import DimBreak, dim_breaks
from .groups import FieldType, GroupLike, get
from .groups._actions import grid_moves

__all__ = ["Finding", "check_grid"]


def _padding_text(mode: str) -> str:
    """How a finding names a layer's padding: its ``padding_mode``, or for a pool (which has
    none) the pool's own padding."""
    return ("the pool's own padding (-inf for a max pool, zeros for an average pool)"
            if mode == "pool" else f"padding_mode={mode!r}")

@dataclass(frozen=True)
class Finding:
    """One reason why a model is not exactly equivariant at an input size.

    Attributes:
        layer: the module's qualified name (``"(input)"`` / ``"(group)"`` for model-level ones).
        kind: the module's class name.
        problem: ``"stride-parity"``, ``"asymmetric-padding"``, ``"anisotropic"``,
            ``"output-padding"``, ``"non-circular-padding"``, ``"no-padding"``,
            ``"circular-padding-size"``,
            ``"transposed-border"``, ``"non-square"``, ``"non-cubic"``, ``"off-grid-group"``,
            ``"group-mismatch"``, ``"type-mismatch"``, ``"upsample-size"``, ``"upsample-grid"``,
            ``"even-blur"`` or ``"unsupported-size"`` (:func:`check_grid` says what each is).
        breaks: what it breaks: ``"rotations"``, ``"flips"``, ``"shifts"`` or ``"group"``.
        input_size: the ``(H, W)`` (``(D, H, W)`` on volumes) that reaches the layer.
        message: why.
        fix: how to make it exact.
    """

    layer: str
    kind: str
    problem: str
    breaks: str
    input_size: tuple[int, ...]
    message: str
    fix: str

    def __str__(self) -> str:
        return f"{self.layer} ({self.kind}): {self.message}. Fix: {self.fix}"


def _rotated_runs(model: nn.Module, shape: Sequence[int], sizes,
                  perms: Sequence[tuple[int, ...]]) -> list[Finding]:
    """A rotation permutes a non-square (non-cubic) input's sizes with its dims (``H x W`` to
    ``W x H``): exact when, for each permutation ``perm`` the group makes (``perm[k]``: the dim
    whose size lands at ``k``), every layer sees on the rotated input its first run's sizes
    permuted alike (then the per-dim rules judge its windows). A finding where the model
    rejects a rotated input or a layer sees other sizes (``nn.Upsample(size=...)``)."""
    nd = len(perms[0]) if perms else 2
    size = tuple(shape[-nd:])
    fix = (f"use an input of equal sizes ({'x'.join([str(max(size))] * nd)}), or a model whose "
           "layers take the rotated shape (e.g. global pooling, not a fixed-size layer)")
    done = {size}
    for perm in (q for q in perms if tuple(size[i] for i in q) not in done):
        new = tuple(size[i] for i in perm)
        done.add(new)
        where, kind, why = "(input)", "input", ""
        turned: list = []
        try:
            turned = _record_sizes(model, (*shape[:-nd], *new), nd)
        except (ValueError, RuntimeError) as e:
            why = (f"which the model rejects ({type(e).__name__}: "
                               f"{str(e).splitlines()[0][:160]})")
        if not why and len(turned) != len(sizes):
            why = "on which the model calls other layers"
        pairs = [] if why else zip(sizes, turned, strict=True)
        bad = [(n, m, a, b) for (n, m, a), (_, _, b) in pairs
               if tuple(b) != tuple(a[i] for i in perm)]
        if bad:
            where, mod, seen, got = bad[0]
            kind = type(mod).__name__
            why = (f"on which this layer sees {'x'.join(map(str, got))}, where a rotation of "
                   f"its {'x'.join(map(str, seen))} is " + "x".join(str(seen[i]) for i in perm))
        if why:
            return [Finding(where, kind, "non-square" if nd == 2 else "non-cubic", "rotations",
                            size, f"a rotation maps the input to {'x'.join(map(str, new))}, "
                            + why, fix)]
    return []


def _axes(group) -> tuple[bool, bool, bool]:
    """(needs symmetric rows, needs symmetric columns, needs square) for the grid elements."""
    moved, swaps = grid_moves(group)
    return -2 in moved, -1 in moved, swaps


def output_padding_finding(name: str, kind: str, breaks: str, size: tuple[int, ...],
                           ops: list[str]) -> Finding:
    """A transposed conv's ``output_padding`` on a dim the group moves (2-D and 3-D)."""
    return Finding(
        name, kind, "output-padding", breaks, size,
        f"output_padding ({'; '.join(ops)}) adds pixels at the end only, so the "
        "transposed conv's output grid is not centred on the input's",
        "use output_padding=0 (k=3, stride 2, padding 1 maps n -> 2n-1, the inverse of "
        "the stride-2 conv on an odd size; k=4, stride 2, padding 1 doubles)")


def transposed_border_finding(name: str, kind: str, size: tuple[int, ...]) -> Finding:
    """A transposed conv under circular shifts: what falls past the border is dropped."""
    return Finding(
        name, kind, "transposed-border", "shifts", size,
        "a transposed conv whose footprints overlap (kernel > stride) or are cropped "
        "(padding) drops, rather than wraps, what falls past the border, so circular "
        "shifts are not exact there",
        "kernel_size == stride and padding=0 (non-overlapping), or measure the border "
        "error with equilayers.metrics.layerwise_shift_equivariance")


def file_break(b: DimBreak, label: str, asym: list[str], ops: list[str],
               parity: list[str]) -> None:
    """File one dim's break (of ``dim_breaks``) under its finding, ``label`` naming the dim;
    shared by the 2-D and 3-D ``check_grid``."""
    if b.problem == "asymmetric-padding":
        asym.append(f"{label}: {b.lo} before, {b.hi} after")
    elif b.problem == "output-padding":  # exact at any size but for the end's output padding
        ops.append(f"{label}: {b.output_padding}")
    else:
        parity.append(f"{label}: ({b.n} + {b.lo + b.hi} - {b.extent}) % {b.stride} = "
                      f"{b.remainder}")


def _grid_findings(sizes, rows: bool, cols: bool, shifts: bool, square: bool = False
                   ) -> list[Finding]:
    from ._grid_shifts import ShiftWindows  # (it builds on this module)

    out: list[Finding] = []
    windows = ShiftWindows(2)
    outputs = getattr(sizes, "outputs", None) or [None] * len(sizes)
    for (name, mod, (h, w)), got in zip(sizes, outputs, strict=True):
        prm = _sized_params(mod, (h, w)) or _spatial_params(mod, (h, w)) or _pad_params(mod)
        if prm is None:
            out += windows.other((h, w), got) if shifts else []
            continue
        reach, content = windows.step(name, mod, prm, (h, w))
        out += reach if shifts else []
        kind = type(mod).__name__
        top, bottom, left, right = prm["sides"]
        checks = [(0, h, top, bottom, rows, "rows"), (1, w, left, right, cols, "columns")]
        rot_what = "rotations" if rows and cols else "flips"
        asym: list[str] = []
        parity: list[str] = []
        transposed = prm.get("transposed", False)
        ops: list[str] = []
        for axis, n, lo, hi, needed, label in checks:
            if not needed:
                continue
            breaks = dim_breaks(n, prm["k"][axis], prm["s"][axis], lo, hi, trim=True,
                                output_padding=prm["op"][axis] if transposed else None,
                                padding_mode=prm.get("reads"), taps=prm.get("taps"))
            if breaks:  # the first: an asymmetric padding hides the rest
                file_break(breaks[0], label, asym, ops, parity)
        if ops:
            out.append(output_padding_finding(name, kind, rot_what, (h, w), ops))
        if transposed and shifts and (prm["k"] != prm["s"] or top or left):
            out.append(transposed_border_finding(name, kind, (h, w)))
        if square and (prm["k"][0], prm["s"][0], top, prm.get("op", (0, 0))[0]) != (
                prm["k"][1], prm["s"][1], left, prm.get("op", (0, 0))[1]):
            out.append(Finding(
                name, kind, "anisotropic", "rotations", (h, w),
                "90-degree rotations swap height and width, but kernel/stride/padding differ "
                f"between them (kernel {prm['k']}, stride {prm['s']}, padding {(top, left)})",
                "use the same kernel size, stride, dilation and padding on both dims"))
        if asym:
            out.append(Finding(
                name, kind, "asymmetric-padding", rot_what, (h, w),
                f"asymmetric padding ({'; '.join(asym)}), so the output grid is not centred "
                "on the input's",
                prm.get("fix") or (SIZED_PADDING_FIX if prm.get("sized") else "use symmetric "
                "padding (an odd kernel with padding=kernel_size//2 instead of padding='same' "
                "with an even kernel)")))
        if parity:
            s_txt = "x".join(map(str, prm["s"])) if prm["s"][0] != prm["s"][1] else prm["s"][0]
            out.append(Finding(
                name, kind, "stride-parity", rot_what, (h, w),
                f"stride {s_txt} on a {h}x{w} input samples a grid that is not symmetric about "
                f"the centre ((size + 2*padding - effective kernel) % stride must be 0; "
                f"{'; '.join(parity)})",
                "make (size + 2*padding - effective kernel) divisible by the stride at this "
                "layer"))
        out += content if shifts else []
    return out + (windows.end() if shifts else [])


def _unsupported_size(model: nn.Module, shape: tuple, error: Exception,
                      search: int, nd: int = 2) -> Finding:
    """The finding for an input size the model's forward rejects (a U-Net's levels must
    halve evenly), with the nearest larger size it runs at (the comment below); re-raises
    ``error`` when no such size exists (wrong channels, not a size problem)."""
    size, text = tuple(shape[-nd:]), "x".join(map(str, shape[-nd:]))
    # the same size added to each dim; each dim, or one (24x8 runs at 24x16), rounded up to a
    # multiple of m or the next (a U-Net's 2**depth: 15x16 runs at 16x16), smallest first
    tried = {tuple(n + extra for n in size) for extra in range(1, search + 1)}
    m = 2
    while m <= max(size) + search:
        for up in (0, m):
            tried.add(new := tuple(-(-n // m) * m + up for n in size))
            tried |= {(*size[:d], new[d], *size[d + 1:]) for d in range(nd)}
        m *= 2
    tried = {t for t in tried if t != size and all(0 <= a - n <= search
                                                   for a, n in zip(t, size, strict=True))}
    for new_size in sorted(tried, key=lambda t: (sum(t), t)):
        cand = (*shape[:-nd], *new_size)
        try:
            _record_sizes(model, cand, nd)
        except (ValueError, RuntimeError):
            continue
        new = cand[-nd:]
        fits = str(new[0]) if len(set(new)) == 1 else "x".join(map(str, new))
        return Finding("(input)", type(model).__name__, "unsupported-size", "group", size,
                       f"the model rejects a {text} input ({error})",
                       f"use an input size of {fits}")
    raise error


def check_declared_rank(shape: tuple[int, ...], declared: FieldType,
                        bound: FieldType | None = None) -> None:
    """``input_shape`` has the rank of the model's declared input type (``bound``: that type
    bound to the checked group, when it is another)."""
    want = bound or declared
    if len(shape) != want.tensor_ndim:
        raise ValueError(f"check_grid: input_shape={shape!r} must have {want.tensor_ndim} dims "
                         f"{want.layout}: the model's input is {declared!r}")


def _mismatches(sizes, grp) -> list[Finding]:
    """The group and type mismatches of the recorded layers (``_grid_calls``, ``_grid_types``:
    they build on this module)."""
    from ._grid_calls import group_findings
    from ._grid_types import pointwise_findings, type_findings

    return (group_findings(sizes, grp) + type_findings(sizes, grp)
            + pointwise_findings(sizes, grp))


def _off_grid(grp, size: tuple[int, ...]) -> Finding:
    """The finding of a group with rotations off the pixel (voxel) grid."""
    if len(size) == 3 and grp.spatial_dim == 3:  # SO(3), O(3), the icosahedral groups
        return Finding("(group)", grp.name, "off-grid-group", "group", size,
                       f"{grp.name} has rotations that are not quarter turns about the axes; "
                       "no voxel grid carries them exactly (exact: its elements in "
                       f"{grp.grid_subgroup().name!r})",
                       "measure the approximate error (equilayers.metrics), or use o/oh for "
                       "exactness")
    return Finding("(group)", grp.name, "off-grid-group", "group", size,
                   f"{grp.name} has rotations that are not multiples of 90 degrees; no pixel "
                   "grid carries them exactly",
                   "measure the approximate error (equilayers.metrics), or use c4/d4 for "
                   "exactness")


def check_grid(
    model: nn.Module,
    input_shape: Sequence[int],
    group: GroupLike = "p4",
    *,
    shifts: bool = True,
    search: int = 64,
) -> list[Finding]:
    """List the layers that break exact equivariance at ``input_shape``, and the fix for each.

    No training and no random data: one forward pass with hooks records the size that reaches
    every leaf module, on the meta device (shapes only: the parameters stand in as meta
    tensors, the model is untouched) or, where a module cannot run there, on zeros; conv- and
    pool-like modules are recognised by their attributes (``kernel_size``, ``stride``,
    ``padding``, ``dilation``, ``padding_mode``): torch's and equilayers' convs, pools and
    ``nn.*Pad2d`` are all checked. The conditions (necessary for exactness; the weights must
    also be equivariant, which this does not inspect beyond their layers' declared types):

    * **group / type mismatch** (``"group-mismatch"``, ``"type-mismatch"``): a layer whose
      declared ``in_type``/``out_type`` belongs to a group that does not contain ``group``,
      or that is fed a field ``group`` acts on otherwise (followed from layer to layer; a
      tensor made in a ``forward``, a ``torch.cat``, carries no type): a ``d2`` conv after a
      ``p4`` lifting conv, a ``c4`` conv after ``CosetPool("c8", "c2")`` run (4 slots each);
      and one of torch's activations (``nn.ReLU``...) fed harmonic fields that ``group``
      turns (order >= 1: a map of each coefficient alone does not follow the turn; odd maps
      such as ``nn.Tanh`` pass where the group only permutes and negates them).
    * **stride parity** (rotations by 90/180 degrees and flips): a layer with stride ``s``,
      effective kernel ``k_eff = dilation*(k-1)+1`` and padding ``p`` on ``N`` pixels samples
      a grid symmetric about the centre iff ``(N + 2p - k_eff) % s == 0``. The fix names the
      smallest larger input size for which every layer passes ("use an input size of 65"):
      check_grid itself finds nothing there that the size decides (a stride's parity, an even
      blur's built-in asymmetric padding, a ``ceil_mode`` window, an upsampling's size) nor
      anything it did not find at ``input_shape``; where none is found within ``search``,
      no size is named. Even kernels with symmetric padding are symmetric and pass.
    * **output padding** of transposed convs (``nn.ConvTranspose2d`` and equilayers' own,
      recognised by ``transposed``/``output_padding``): their output grid is centred on the
      input's at any size and stride iff ``output_padding == 0``
      (:func:`equilayers.functional.exactness_problems`), also the one a call's
      ``output_size`` implies (read from the output); under ``shifts``, overlapping or
      cropped footprints are not circular at the border.
    * **upsampling** (``nn.Upsample``, ``GroupUpsample2d``/``3d``; ``"upsample-size"``):
      a nearest mode whose index map does not commute with the flip (``"nearest"`` at a
      ratio that is not an integer, ``"nearest-exact"`` at some sizes: ``4 -> 9``), a linear
      mode whose ``scale_factor`` does not give the output size exactly, or dims a rotation
      swaps resized differently: ``size=`` giving them different output sizes (their input
      sizes may differ), or different scale factors (the law the module's warning asks
      too).
    * **a layer's own settings** that break exactness at every size (``"upsample-grid"``: a
      :class:`~equilayers.nn.BlurUpsample2d`/``3d`` other than the U-Net's pair, whose samples
      land off the centre; ``"even-blur"``: a polyphase pool or upsampling with an even
      ``blur_size``; under ``shifts``, their blur padded other than circularly).
    * **anisotropic options** under 90-degree rotations: kernel, stride or padding that differ
      between height and width.
    * **asymmetric padding** (``padding="same"`` with an even kernel, ``nn.ZeroPad2d((0, 1,
      0, 1))``): the output grid is off-centre. An even blur pool (``BlurPool2d(kernel_size=4)``)
      pads itself so, but its windows read only the padding they reach, which the size
      decides: its fix is an input size (at stride 1, where none helps, an odd blur size). A
      reflect/replicate/circular padding whose samples make every window read what its mirror
      reads (weighted by the blur's fixed taps) is exact, and not listed.
    * **non-circular padding** (integer circular shifts, when ``shifts``): zeros, reflect or
      replicate padding, and pooling padding, do not move with a circularly shifted image;
      nor does a window wider than its stride with no padding at all (``"no-padding"``: a
      "valid" conv or pool crops at the border), unless a circular pad module comes first.
      Circular padding must be what the windows consume (``"circular-padding-size"``): in
      all per dim from ``k_eff - s`` to ``k_eff - 1`` (``padding=(k_eff - 1) // 2``), a
      circular pad module's pixels counted through the stride-1 windows after it; less
      crops, more enlarges the output (``nn.Conv2d(k=5, padding=1, padding_mode="circular")``,
      ``nn.CircularPad2d(2)`` before a valid 3x3 conv). A layer of windows in turn is read
      window by window: ``MaxBlurPool2d``'s max pads with ``-inf`` or not at all, never
      circularly, whatever its blur's ``padding_mode``.
      Subsampling by a stride ``s`` is equivariant only to shifts by multiples of ``s``, and
      on a torus only when ``s`` divides the size (so under stride 2, exact rotations want odd
      sizes and exact circular shifts even ones); that is inherent aliasing, not a grid
      defect, and is measured (not listed) by
      :func:`equilayers.metrics.layerwise_shift_equivariance`.
    * **non-square input** that the model cannot take rotated: a quarter turn maps ``H x W``
      to ``W x H``, where every layer must see its sizes rotated (not so a fixed-size
      ``nn.Upsample`` or ``nn.LayerNorm`` over ``(C, H, W)``; convs and pools are exact on
      rectangles by the per-dim rules); groups with off-grid rotations (``"c8"``).
    * **fibers alone**: a model on fibers with no spatial dims (an equivariant MLP of
      :class:`equilayers.nn.GroupLinear` on ``(B, C, F)``) has no grid: only its layers'
      group and type mismatches are listed (``input_shape`` must have the fibers' rank).
    * **unsupported size**: a model whose forward rejects the size (``ValueError`` or
      ``RuntimeError``: a :class:`equilayers.models.UNet` needs multiples of ``2**depth``)
      gets one finding naming the nearest larger size it runs at; when no larger size runs,
      the error is raised (it was not about the size).

    The cube's groups (``"o"``, ``"oh"``, ``"c4z"``, ``"d4z"``) are checked on volumes ``(..., D, H,
    W)`` by the same rules per dim (``nn.Conv3d``, ``nn.MaxPool3d``, ``nn.*Pad3d``, the 3-D group
    convs and pools, ``BlurPool3d``): every dim some element flips needs symmetric padding and
    stride parity, the dims it trades (all three for o/oh, ``H, W`` for c4z/d4z) equal options, and
    a **non-cubic** input is a finding only where a layer does not see its sizes permuted on the
    rotated volume (as non-square above); stride 2 is exact on odd sizes (``k=3, p=1``) and a
    finding on even ones. See :mod:`equilayers._grid3d`. ``"so3"``, ``"o3"``, ``"ico"`` and ``"ih"``
    are checked as their grid subgroups (``"o"``, ``"oh"``, ``"t"``, ``"th"``), plus the off-grid
    finding of their other rotations (as ``"c8"`` on images). A model of planar fields on volumes
    (``SteerableConv3d(..., group="so2")`` and the harmonic layers with ``spatial_dims=3``) is
    checked with its planar group too: a group whose grid elements are ``c4`` / ``d4`` (``"so2"``,
    ``"o2"``, ``"c8"``, ``"d8"``, ...) is read as ``"c4z"`` / ``"d4z"`` on the volume (the depth
    free), plus the off-grid finding of its other rotations. Any other planar group on a model with
    windows over volumes (``nn.Conv3d``, the 3-D group convs and pools, ``*Pad3d``...) is refused
    with a ``ValueError`` naming them, as a cube group on an image shape is (torch's 3-D layers
    whose window does not reach across dim -3, such as a ``(1, k, k)`` conv on a planar group map,
    are allowed).

    Args:
        model: the network.
        input_shape: the full input shape, e.g. ``(1, 3, 64, 64)``.
        group: the rotation/flip group (``"c1"`` to check shifts only).
        shifts: also check circular-shift exactness.
        search: how many larger input sizes to try when suggesting one.

    Returns:
        The findings; an empty list means the grid allows exact equivariance.

    Example:
        >>> net = nn.Conv2d(3, 8, 3, stride=2, padding=1, padding_mode="circular")
        >>> [f.fix for f in check_grid(net, (1, 3, 64, 64))]
        ['use an input size of 65']
        >>> check_grid(net, (1, 3, 65, 65))
        []
    """
    C.check_module(model, "model", "check_grid")
    C.check_int(search, "search", "check_grid", minimum=0,
                fix="how many larger input sizes to try")
    C.check_flag(shifts, "shifts", "check_grid", fix="True also checks circular shifts")
    shape = tuple(input_shape) if isinstance(input_shape, (tuple, list, torch.Size)) else None
    if shape is None or len(shape) < 3 or not all(C.is_int(v) and v > 0 for v in shape):
        raise ValueError(f"check_grid: input_shape must be a full shape of positive ints such "
                         f"as (1, 3, 64, 64); got {input_shape!r}")
    shape = tuple(int(v) for v in shape)  # numpy ints too
    grp = get(group)
    alone = fibers_alone(model)
    if alone is not None:  # an equivariant MLP: nothing moves on a grid, but its layers'
        check_declared_rank(shape, alone)  # groups and types must still agree
        return _mismatches(_record_sizes(model, shape), grp)
    if grp.spatial_dim == 3:
        # the cube's groups on volumes (imported here: _grid3d builds on this module)
        from ._grid3d import check_grid3d

        return check_grid3d(model, shape, grp, shifts=shifts, search=search)
    volume = _volume_windows(model)
    if volume:  # a model of planar fields on volumes is checked as c4z / d4z; else refused
        from ._grid3d import check_planar_on_volumes

        found = check_planar_on_volumes(model, shape, grp, shifts=shifts, search=search)
        if found is not None:
            return found
        # the planar checks read (H, W) windows only: they would find nothing
        more = f" and {len(volume) - 3} more" if len(volume) > 3 else ""
        raise ValueError(
            f"check_grid: group={grp.name!r} acts on images (H, W), but the model slides "
            f"windows over volumes ({', '.join(volume[:3])}{more}): check it with a cube "
            "group on its volume input_shape, 'c4z' or 'd4z' for the rotations (and flip) "
            "about the depth axis, 'o' or 'oh' for all the cube's (a model of planar fields "
            "on volumes, such as SteerableConv3d(..., group='so2'), may also be checked with "
            "its planar group, whose grid elements are then c4z's or d4z's)")
    declared = getattr(model, "in_type", None)
    if isinstance(declared, FieldType):
        check_declared_rank(shape, declared)
    rows, cols, square = _axes(grp)
    findings: list[Finding] = []
    h, w = shape[-2:]
    if not grp.pixel_exact:
        findings.append(_off_grid(grp, (h, w)))
    try:
        sizes = _record_sizes(model, shape)
    except (ValueError, RuntimeError) as e:  # a size the model rejects: say which one it takes
        return findings + [_unsupported_size(model, shape, e, search)]
    if square and h != w:
        findings += _rotated_runs(model, shape, sizes, [(1, 0)])
    from ._grid_calls import call_findings, module_findings  # (they build on this module)
    from ._grid_sizes import with_size_fix  # (it builds on this module)

    breaks = "rotations" if rows and cols else "flips"

    def layer(sizes) -> list[Finding]:
        found = _grid_findings(sizes, rows, cols, shifts, square)
        found += call_findings(sizes, [i for i, on in enumerate((rows, cols)) if on],
                               [(0, 1)] if square else [], breaks)
        found += module_findings(sizes, rows or cols, shifts, breaks)
        return _mismatches(sizes, grp) + found

    return findings + with_size_fix(layer(sizes), shape, (rows, cols), lambda cand: layer(
        _record_sizes(model, cand)), search)
