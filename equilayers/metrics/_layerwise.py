"""Layerwise equivariance through forward hooks: which layer loses the symmetry."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .. import _checks as C
from ..groups import FieldType, GroupElement, GroupLike, circular_shift, get
from ..groups._group import Group
from ..groups._subgroups import check_subgroup
from ..nn import GroupLinear, OnFibers
from ..testing._fields import act_on, resolve_field_type
from ..testing._harness import (
    default_tolerance,
    infer_rep,
    kept_buffers,
    relative_error,
    resolve_elements,
)
from ._common import check_batch, tensor_output

__all__ = ["LayerRow", "layerwise_equivariance", "layerwise_shift_equivariance",
           "capture_outputs"]


@dataclass(frozen=True)
class LayerRow:
    """One layer of a layerwise report.

    Attributes:
        name: the module's qualified name (``"features.3"``; ``"#k"`` appended for the k-th
            call of a module called several times; ``"(output)"`` for the model's output).
        kind: the module's class name.
        shape: the layer's output shape on ``x``.
        rep: the rep its output was compared in.
        error: worst relative error over the elements/shifts
            ``||L(g.x) - g.L(x)|| / max(||g.L(x)||, ||L(g.x)||)`` (float64), NaN when not
            comparable (see ``note``).
        worst: the element or shift with that error.
        lost: True on the first row whose error exceeds ``tol``: where equivariance is lost
            (shifts: on the sub-sampling row before it instead, when the worst shift moves
            that row's output by a fraction of a pixel, where its aliasing starts).
        note: why a row could not be compared.
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    rep: str
    error: float
    worst: str
    lost: bool = False
    note: str = ""


def capture_outputs(model: nn.Module, x: torch.Tensor
                    ) -> list[tuple[str, nn.Module, torch.Tensor]]:
    """Run ``model(x)`` once and return ``(name, module, output)`` for every leaf module call
    in call order (a :class:`~equilayers.nn.GroupLinear` or :class:`~equilayers.nn.OnFibers`
    counts as one, its inner ``1 x 1`` map not recorded), then ``("(output)", model,
    model(x))``; each output a detached copy, which later in-place ops (``out += identity``,
    ``ReLU(inplace=True)``) cannot change."""
    C.check_module(model, "model", "capture_outputs")  # hooks: no TorchScript module either
    # a torch.compile'd module: its cached graph runs without the hooks (after a no_grad
    # call, validation or a metric); record the module it wraps, the same maths
    model = _uncompiled(model)
    check_batch(x, "capture_outputs")
    records: list[tuple[str, nn.Module, torch.Tensor]] = []
    counts: dict[str, int] = {}
    handles = []

    def hook_for(name: str):
        def hook(mod, _inp, out):
            if isinstance(out, (tuple, list)):
                out = next((o for o in out if isinstance(o, torch.Tensor)), None)
            if not isinstance(out, torch.Tensor):
                return
            k = counts.get(name, 0)
            counts[name] = k + 1
            # a copy: a later in-place op (a residual ``out += identity``, ``ReLU(inplace=
            # True)``) would rewrite the recorded output and blame this layer for its change
            records.append((name if k == 0 else f"{name}#{k}", mod, out.detach().clone()))
        return hook

    # GroupLinear and OnFibers run their children on 1 x 1 maps: each is one layer of fibers
    units = [n + "." for n, m in model.named_modules()
             if m is not model and isinstance(m, (GroupLinear, OnFibers))]
    for name, mod in model.named_modules():
        unit = name + "." in units
        if mod is model or any(name.startswith(u) for u in units) or (
                not unit and any(True for _ in mod.children())):
            continue
        handles.append(mod.register_forward_hook(hook_for(name)))
    try:
        with torch.no_grad(), kept_buffers(model):
            y = tensor_output(model(x), "layerwise")
    finally:
        for hd in handles:
            hd.remove()
    records.append(("(output)", model, y.detach()))
    return records


def _uncompiled(model: nn.Module) -> nn.Module:
    inner = getattr(model, "_orig_mod", None)
    return inner if type(model).__name__ == "OptimizedModule" and isinstance(
        inner, nn.Module) else model


def _rep_of(mod: nn.Module, out: torch.Tensor, is_output: bool, nd: int = 2) -> str:
    """The rep name of a layer's output (shifts move every rep alike on its last ``nd``
    dims); an undeclared 5-D output of a volume model is a volume (trivial), not a group map."""
    declared = getattr(mod, "out_type", None)
    if isinstance(declared, FieldType):
        return declared.rep
    declared = getattr(mod, "out_rep", None)
    if isinstance(declared, str):
        return infer_rep(out, declared)
    return "trivial" if nd == 3 and out.dim() == 5 else infer_rep(out, None)


def _type_of(mod: nn.Module, out: torch.Tensor, group: Group, like: FieldType | None
             ) -> FieldType:
    """A layer's output type: declared, else the previous layer's for the same layout, else
    by rank (``ValueError`` for an ambiguous 5-D output)."""
    out_type, declared = resolve_field_type(out, None, mod, "out", group, "layerwise",
                                            like=like)
    if declared:
        out_type.check(out, "the output", f"layerwise: {type(mod).__name__}")
    return out_type


def _check_tol(tol, what: str) -> None:
    if tol is not None:
        C.check_number(tol, "tol", what, minimum=0, finite=False,
                       fix="a relative error (None: 10x default_tolerance of x.dtype)")


def _mark_lost(rows: list[LayerRow], tol: float,
               blame: Callable[[int], int] | None = None) -> list[LayerRow]:
    """Flag the first row whose error exceeds ``tol`` (NaN rows, not compared, never), or
    the earlier row ``blame(i)`` names as where its worst case started."""
    first = next((i for i, r in enumerate(rows) if r.error > tol), None)
    if first is not None and blame is not None:
        first = blame(first)
    if first is None:
        return rows
    i = first
    r = rows[i]
    return [*rows[:i], dataclasses.replace(r, lost=True), *rows[i + 1:]]


def layerwise_equivariance(
    model: nn.Module,
    x: torch.Tensor,
    group: GroupLike = "p4",
    *,
    elements: Sequence[GroupElement | int] | None = None,
    in_rep: str | FieldType | None = None,
    tol: float | None = None,
) -> list[LayerRow]:
    """Equivariance error of every layer's output, in call order, naming the layer where it is
    lost (the harness's definition, applied to the intermediate outputs through forward hooks).

    For layer ``L`` (the sub-network up to that leaf module's output):
    ``err_L = max_g ||L(g.x) - g.L(x)|| / max(||g.L(x)||, ||L(g.x)||)``, with ``g`` acting on
    ``L``'s output by its declared ``out_type`` (or ``out_rep``), else by the previous
    layer's type when the layout matches, else by rank (4-D trivial, 2-D invariant, 5-D
    regular when ``F = |G|``; other 5-D outputs get a note), as
    :func:`equilayers.testing.equivariance_error` does.
    Only elements that map the pixel grid onto itself are used (exact actions).

    Args:
        model: an ``nn.Module`` (leaf modules are hooked; functional ops between them are
            attributed to the next hooked module).
        x: the batch.
        group: the group; elements default to its grid elements.
        elements: restrict to these elements.
        in_rep: the input's rep name or FieldType (default the model's ``in_type``, or by
            rank).
        tol: the error above which a row counts as broken (default 10x
            :func:`~equilayers.testing.default_tolerance` of ``x.dtype``).

    Returns:
        A list of :class:`LayerRow`; the first row with ``lost=True`` names the layer.
    """
    what = "layerwise_equivariance"
    C.check_module(model, "model", what)
    x = check_batch(x, what)
    _check_tol(tol, what)
    grp = get(group)
    els = resolve_elements(grp, elements if elements is not None else grp.grid_elements(),
                           what)
    off = [g for g in els if not g.is_grid]
    if off:
        raise ValueError(f"layerwise_equivariance: elements {off!r} do not map the pixel grid "
                         "onto itself; use grid elements (multiples of 90 degrees, flips)")
    in_type, declared = resolve_field_type(x, in_rep, model, "in", grp, what)
    if declared:
        in_type.check(x, "x", what)
    base = capture_outputs(model, x)
    moved = {g: capture_outputs(model, act_on(in_type, g, x)) for g in els}
    _check_same_layers(base, moved.values(), what)
    rows = []
    like = in_type
    # the first layer declared over a group without grp's elements: where it is lost
    mismatch: int | None = None
    for i, (name, mod, out) in enumerate(base):
        worst, err, note = repr(els[0]), -1.0, ""
        try:
            out_type = _type_of(mod, out, grp, like)
        except ValueError as exc:
            out_type, note, err = None, f"cannot act on this output: {exc}", float("nan")
            if mismatch is None and _declared_elsewhere(mod, grp):
                mismatch = i
        rep = out_type.rep if out_type is not None else _rep_of(mod, out, False)
        like = out_type if out_type is not None else like
        for g in els if out_type is not None else ():
            other = moved[g][i][2] if i < len(moved[g]) else None
            assert out_type is not None  # the loop runs over els only with a type
            try:
                expect = act_on(out_type, g, out)
            except ValueError as exc:
                note, err = f"cannot act on this output: {exc}", float("nan")
                break
            if other is None or other.shape != expect.shape:
                note, err = "output shape changes with the input's orientation", float("nan")
                worst = repr(g)
                break
            e = relative_error(other, expect)
            if e != e or e > err:
                err, worst = e, repr(g)
        rows.append(LayerRow(name, type(mod).__name__, tuple(out.shape), rep, err, worst,
                             note=note))

    def blame(i: int) -> int:
        return i if mismatch is None else min(i, mismatch)
    tol_ = tol if tol is not None else 10 * default_tolerance(x.dtype)
    if mismatch is not None and not any(r.error > tol_ for r in rows[:mismatch]):
        return [*rows[:mismatch], dataclasses.replace(rows[mismatch], lost=True),
                *rows[mismatch + 1:]]
    return _mark_lost(rows, tol_, blame)


def _declared_elsewhere(mod: nn.Module, group: Group) -> bool:
    """Whether ``mod`` declares a field type of a group that does not contain ``group`` (its
    weights are not ``group``-equivariant)."""
    for ft in (getattr(mod, "in_type", None), getattr(mod, "out_type", None)):
        if isinstance(ft, FieldType) and ft.group is not None and ft.group != group:
            try:
                check_subgroup(ft.group, group)
            except ValueError:
                return True
    return False


def layerwise_shift_equivariance(
    model: nn.Module,
    x: torch.Tensor,
    shifts: Sequence[tuple[int, ...]] | None = None,
    *,
    tol: float | None = None,
    spatial_dims: int = 2,
) -> list[LayerRow]:
    """Circular-shift equivariance of every layer's output, naming where it is lost.

    A circular shift ``s`` of the input should shift a layer's output of size ``(h, w)`` by
    ``s * (h, w) / (H, W)``: ``err_L = max_s ||L(roll(x, s)) - roll(L(x), s h / H)|| / ...``;
    outputs without spatial dims (logits) must not change (invariance). Rows where the
    expected shift is not an integer get ``error = NaN`` and a note. A later row's error at a
    shift is laid (``lost``) on the sub-sampling row where that shift stopped being comparable,
    also where the sizes stop dividing there (a stride 2 on 29x29): that row's note says so.

    Args:
        model: an ``nn.Module``.
        x: the batch ``(B, C, H, W)`` (``spatial_dims=3``: volumes ``(B, C, D, H, W)``, or
            6-D group maps; the last three dims are shifted).
        shifts: a list of integer ``(dy, dx)`` input shifts (``(dz, dy, dx)`` on volumes; one
            shift: ``[(1, 2)]``; a flat ``(1, 2)`` raises ``TypeError``); default one
            diagonal shift by the largest integer downsampling factor among the layers (so
            every layer is comparable) and one by 1 pixel (which shows where sub-sampling
            aliasing starts).
        tol: as in :func:`layerwise_equivariance`.
        spatial_dims: 2 (images, default) or 3 (volumes: the depth is shifted too).
    """
    what = "layerwise_shift_equivariance"
    C.check_module(model, "model", what)
    nd = C.check_int(spatial_dims, "spatial_dims", what, minimum=2, maximum=3,
                     fix="2 for images (B, C, H, W), 3 for volumes (B, C, D, H, W)")
    x = check_batch(x, what, min_dim=2 + nd)
    _check_tol(tol, what)
    labels = "(dy, dx)" if nd == 2 else "(dz, dy, dx)"
    if shifts is not None:
        if not C.is_collection(shifts):
            raise TypeError(f"{what}: shifts={shifts!r} must be a list of integer "
                            f"{'pairs' if nd == 2 else 'triples'} {labels}, or None")
        check = C.check_pair if nd == 2 else C.check_triple
        shifts = [check(s, "shifts[i]", what, fix=f"integer {labels}")
                  for s in C.check_shift_list(shifts, "shifts", what)]
    size_in = tuple(x.shape[-nd:])
    base = capture_outputs(model, x)
    if shifts is None:
        factor = 1
        for _, _, out in base:
            size = tuple(out.shape[-nd:]) if out.dim() >= 2 + nd else (0,) * nd
            pairs = list(zip(size_in, size, strict=True))
            if all(n > 1 and a % n == 0 for a, n in pairs):
                factor = max(factor, *(a // n for a, n in pairs))
        shifts = [(factor,) * nd] + ([(1,) * nd] if factor != 1 else [])
    shifts = [tuple(s) for s in shifts]  # (every entry is checked: check_pair's or ours)
    for s in shifts:
        if len(s) != nd or any(int(v) != v for v in s):
            raise ValueError(f"layerwise_shift_equivariance: shifts must be integer {labels}; "
                             f"got {s!r}")

    def roll(t: torch.Tensor, by: tuple) -> torch.Tensor:
        return (circular_shift(t, by) if nd == 2
                else torch.roll(t, tuple(int(v) for v in by), dims=(-3, -2, -1)))

    moved = {s: capture_outputs(model, roll(x, s)) for s in shifts}
    _check_same_layers(base, moved.values(), what)
    rows = []
    # the row where each shift stopped being comparable (a fractional output shift: the
    # sub-sampling where aliasing starts); later rows' errors at that shift start there
    broken: dict[str, int] = {}
    for i, (name, mod, out) in enumerate(base):
        rep = _rep_of(mod, out, name == "(output)", nd)
        spatial = (rep in ("trivial", "regular", "harmonic") and out.dim() >= 1 + nd
                   and out.shape[-nd:] != (1,) * nd)  # a 1x1 map (global pooling): no move
        worst, err, note, compared = "-", 0.0, "", False
        skipped: list[str] = []
        for s in shifts:
            other = moved[s][i][2]
            if other.shape != out.shape:
                note, err = "output shape changes with the shift", float("nan")
                break
            if spatial:
                e_s = [v * n / a for v, n, a in zip(s, out.shape[-nd:], size_in, strict=True)]
                if any(v != int(v) for v in e_s):
                    skipped.append(f"shift{s}")
                    # sub-sampling (not an upscaling resize): a stride whose sizes divide,
                    # or one whose sizes stop dividing (29 -> 15), where no shift compares
                    if all(n <= a for n, a in zip(out.shape[-nd:], size_in, strict=True)):
                        broken.setdefault(f"shift{s}", i)
                    continue  # not comparable at this shift; other shifts may be
                expect = roll(out, tuple(int(v) for v in e_s))
            else:
                expect = out
            e = relative_error(other, expect)
            if not compared or e != e or e > err:
                err, worst = e, f"shift{s}"
            compared = True
        if not compared and not note:
            note, err = "no shift is a multiple of this layer's downsampling", float("nan")
        elif skipped and not note:
            note = (f"not compared at {', '.join(skipped)}: it moves this output by a "
                    "fraction of a pixel (sub-sampling; aliasing at that shift starts here)")
        if err != err and i in broken.values() and note.startswith("no shift"):
            note += ("; shift comparability ends here (its size does not divide the input's), "
                     "so a later layer's shift error starts here")
        rows.append(LayerRow(name, type(mod).__name__, tuple(out.shape), rep, err, worst,
                             note=note))

    def blame(i: int) -> int:
        return min(i, broken.get(rows[i].worst, i))
    return _mark_lost(rows, tol if tol is not None else 10 * default_tolerance(x.dtype),
                      blame)


def _check_same_layers(base: list, moved: Iterable[list], what: str) -> None:
    """Rows are paired by call order: the moved inputs must run the same layers."""
    names = [n for n, _, _ in base]
    for other in moved:
        if [n for n, _, _ in other] != names:
            raise ValueError(f"{what}: the model ran other layers on the moved input "
                             f"({len(other) - 1} recorded, {len(names) - 1} on x): "
                             "data-dependent control flow cannot be compared layer by layer")
