"""Per-pixel consistency and equivariance error of dense predictions (segmentation maps), on
images and volumes."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Literal

import torch

from .. import _checks as C
from ..groups import FieldType, Group, GroupElement, GroupLike, get
from ..groups._actions import check_rep
from ..testing._fields import act_on, resolve_field_type
from ..testing._harness import kept_buffers, resolve_elements
from ._common import check_batch, check_model, choice, no_top1, tensor_output

__all__ = ["pixel_consistency", "pixel_equivariance_error"]

#: The named groups of ``transforms``; any group (a name or a Group) is accepted too.
_GROUP_OF = {"rot90": "c4", "flip": "d1"}
ShiftsArg = int | Sequence[tuple[int, ...]]
_TUPLES = {2: "integer pairs (dy, dx)", 3: "integer triples (dz, dy, dx)"}


def _shift_dims(shifts: object, x: torch.Tensor, model: object, labels: bool) -> int:
    """The spatial dims the shifts move: the length of the listed tuples; else the model's
    declared input type's; else the labels' (``(B, K, H, W)`` or ``(B, K, D, H, W)``, decided
    after the first run: 0 here); else 2."""
    if isinstance(shifts, Sequence) and shifts and isinstance(shifts[0], (tuple, list)):
        return 3 if len(shifts[0]) == 3 else 2
    declared = getattr(model, "in_type", None)
    if isinstance(declared, FieldType) and declared.spatial_dims in (2, 3):
        return declared.spatial_dims
    return 0 if labels else 2


def _shift_list(shifts: object, ratio: tuple[int, ...], size: tuple[int, ...], what: str
                ) -> list[tuple[int, ...]]:
    """The distinct circular shifts asked for, each reduced modulo the input size, the
    identity left out (a shift by the whole size compares the model with itself); a
    ``ValueError`` when none is left."""
    nd = len(ratio)
    if C.is_int(shifts):
        n = C.check_int(shifts, "shifts", what, minimum=2,
                        fix="n gives every shift (i, j) * output pixel, 0 <= i, j < n")
        out = [tuple(i * r for i, r in zip(t, ratio, strict=True))
               for t in itertools.product(range(n), repeat=nd)]
        return _distinct(out, size, shifts, what)
    if isinstance(shifts, (str, bytes)) or not isinstance(shifts, Sequence):
        raise TypeError(f"{what}: shifts={shifts!r} must be an integer n >= 2 or a list of "
                        f"{_TUPLES[nd]}")
    out = []
    for s in C.check_shift_list(shifts, "shifts", what):
        if not (isinstance(s, (tuple, list)) and len(s) == nd and all(C.is_int(v) for v in s)):
            raise ValueError(f"{what}: shifts must be {_TUPLES[nd]} on this input (all of one "
                             f"length); got {s!r}")
        out.append(tuple(int(v) for v in s))
    for t in out:
        if any(v % r for v, r in zip(t, ratio, strict=True)):
            raise ValueError(f"{what}: shift {t} is not a multiple of the output's pixel "
                             f"{ratio} (input size / output size), so it cannot be undone "
                             "on the output; pass multiples of it")
    return _distinct(out, size, shifts, what)


def _distinct(shifts: list[tuple[int, ...]], size: tuple[int, ...], asked: object, what: str
              ) -> list[tuple[int, ...]]:
    out = list(dict.fromkeys(tuple(v % n for v, n in zip(t, size, strict=True))
                             for t in shifts))
    out = [t for t in out if any(t)]
    if not out:
        raise ValueError(f"{what}: shifts={asked!r} on an input of spatial size "
                         f"{'x'.join(map(str, size))} leave only the identity (every shift is a "
                         "multiple of the size, or of the output's pixel that covers it): "
                         "nothing to compare; use a larger input or a model with a larger "
                         "output")
    return out


def _group_of(transforms: object, what: str) -> Group:
    if isinstance(transforms, Group):
        return transforms
    if not isinstance(transforms, str):
        raise TypeError(f"{what}: transforms={transforms!r} must be 'shifts', 'rot90', 'flip', "
                        "a group name or a Group")
    try:
        return get(_GROUP_OF.get(transforms, transforms))
    except ValueError as exc:
        raise ValueError(f"{what}: transforms={transforms!r} must be 'shifts', 'rot90', 'flip' "
                         f"or a group name ({exc})") from None


def _outputs(model: Callable[[torch.Tensor], torch.Tensor | tuple[torch.Tensor, ...]],
             x: torch.Tensor, transforms: object, shifts: object, in_rep: str | FieldType | None,
             out_rep: str | FieldType | None, elements: object, what: str, labels: bool = False
             ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(f(x), T^{-1} f(T x))`` for each transform ``T`` (the identity excluded)."""
    check_model(model, what)
    x = check_batch(x, what, min_dim=4)
    b = x.shape[0]

    def run(t: torch.Tensor) -> torch.Tensor:
        y = tensor_output(model(t), what)
        if y.dim() < 3 or y.shape[0] != b:
            raise ValueError(f"{what}: the model must return a dense map (B, K, H', W') or "
                             f"(B, K, D', H', W') with B={b}; got shape {tuple(y.shape)}")
        return y

    if transforms == "shifts":
        if in_rep is not None or out_rep is not None or elements is not None:
            raise ValueError(f"{what}: in_rep, out_rep and elements are for group transforms; "
                             "transforms='shifts' moves every field the same way")
        nd = _shift_dims(shifts, x, model, labels)
        with torch.no_grad():
            y = run(x)
            nd = nd or (3 if y.dim() == 5 else 2)
            if x.dim() < nd + 2 or y.dim() < nd + 1:
                raise ValueError(f"{what}: {nd}-D shifts need an input (B, C, ...) and an "
                                 f"output with {nd} spatial dims; got input shape "
                                 f"{tuple(x.shape)}, output shape {tuple(y.shape)}")
            size, out = tuple(x.shape[-nd:]), tuple(y.shape[-nd:])
            if any(n % m for n, m in zip(size, out, strict=True)):
                raise ValueError(f"{what}: the output's spatial size {'x'.join(map(str, out))} "
                                 f"must divide the input's {'x'.join(map(str, size))} for a "
                                 f"shift to be undone; got output shape {tuple(y.shape)}")
            ratio = tuple(n // m for n, m in zip(size, out, strict=True))
            dims = tuple(range(-nd, 0))
            for t in _shift_list(4 if shifts is None else shifts, ratio, size, what):
                moved = run(torch.roll(x, t, dims))
                undo = tuple(-v // r for v, r in zip(t, ratio, strict=True))
                yield y, torch.roll(moved, undo, dims)
        return
    grp = _group_of(transforms, what)
    if shifts is not None:
        raise ValueError(f"{what}: shifts={shifts!r} is for transforms='shifts'; a group moves "
                         "the input by its elements")
    # by default the grid elements, also of a finite group with others (c8, ico): only they
    # map the pixels onto themselves; elements passed by name are checked below
    els = [g for g in (grp.grid_elements() if elements is None
                       else resolve_elements(grp, elements, what)) if g != grp.identity]
    if not els:
        raise ValueError(f"{what}: the elements leave only the identity of {grp.name}: nothing "
                         "to compare")
    off = [g for g in els if not g.is_grid]
    if off:
        raise ValueError(f"{what}: {off[0]!r} does not map the pixel grid onto itself, so a "
                         "per-pixel comparison is not defined; use grid elements (multiples of "
                         "90 degrees, flips)")
    in_type, declared = resolve_field_type(x, in_rep, model, "in", grp, what)
    if declared:
        in_type.check(x, "x", what)
    if out_rep is not None and not isinstance(out_rep, FieldType):
        check_rep(out_rep, "out_rep", what)
    with torch.no_grad():
        y = run(x)
        out_type, declared = resolve_field_type(y, "trivial" if labels else out_rep, model,
                                                "out", grp, what)
        if declared:
            out_type.check(y, "model(x)", what)
        for g in els:
            gx = act_on(in_type, g, x)
            try:
                moved = run(gx)
            except (RuntimeError, ValueError) as e:
                if gx.shape == x.shape:
                    raise
                nd = in_type.spatial_dims
                a, c = "x".join(map(str, x.shape[-nd:])), "x".join(map(str, gx.shape[-nd:]))
                raise ValueError(f"{what}: {g!r} turns the {a} input into {c}, which the"
                                 f" model rejects ({type(e).__name__}: "
                                 f"{str(e).splitlines()[0][:200]}); pass a "
                                 f"{'square' if nd == 2 else 'cubic'} input, or a model that "
                                 "takes both orientations") from e
            back = act_on(out_type, g.inverse(), moved)
            if back.shape != y.shape:
                raise ValueError(f"{what}: the output of a transformed input has shape "
                                 f"{tuple(moved.shape)}, the output of x {tuple(y.shape)}")
            yield y, back


def _labels(y: torch.Tensor, what: str) -> torch.Tensor:
    if y.dim() not in (4, 5):
        raise ValueError(f"{what}: the model must return per-pixel logits (B, K, H', W') or "
                         f"per-voxel logits (B, K, D', H', W'); got shape {tuple(y.shape)}")
    return y[:, 0] > 0 if y.shape[1] == 1 else y.argmax(dim=1)


def pixel_consistency(
    model: Callable[[torch.Tensor], torch.Tensor | tuple[torch.Tensor, ...]],
    x: torch.Tensor,
    transforms: str | GroupLike = "shifts",
    *,
    shifts: ShiftsArg | None = None,
    in_rep: str | FieldType | None = None,
    elements: Sequence[GroupElement | int] | None = None,
) -> float:
    """The share of pixels whose predicted label survives a transform of the input, undone.

    .. math::
        \\mathrm{PC} = \\frac{1}{|T|\\,B\\,H'W'} \\sum_{t \\in T} \\sum_{b,\\,p}
        \\mathbf{1}\\big[\\arg\\max_k (T_t^{-1} f(T_t x_b))_{k,p} =
        \\arg\\max_k f(x_b)_{k,p}\\big]

    The per-pixel counterpart of :func:`consistency`, in the spirit of mASSC (Zou et al. 2020,
    "Delving Deeper into Anti-aliasing in ConvNets"), here against the untransformed prediction
    and with circular shifts, so that no pixel leaves the image and an exactly equivariant
    segmentation model scores 1.0. A model with a single output channel is read as binary
    (label ``logit > 0``). Volumes work alike, per voxel: logits ``(B, K, D', H', W')``,
    shifts ``(dz, dy, dx)``, and the cube's groups (``"o"``, ``"oh"``, ``"c4z"``, ``"d4z"``).

    Transforms ``T`` (the identity excluded):

    * ``"shifts"``: integer circular shifts (:func:`~equilayers.groups.circular_shift`).
      ``shifts=n`` gives every ``(i r_y, j r_x)`` with ``0 <= i, j < n``, ``(r_y, r_x)`` the
      input size over the output size (1 for a full-resolution output): pass the model's total
      stride to cover every phase. Or a list of pairs ``(dy, dx)``, multiples of ``(r_y, r_x)``:
      one shift is ``shifts=[(1, 2)]``; a flat ``shifts=(1, 2)`` raises ``TypeError`` (it is
      not read as the two shifts ``(1, 1)`` and ``(2, 2)``). On volumes: triples ``(dz, dy,
      dx)``, or ``n`` for every ``(i, j, l)``; the per-voxel logits say that the input is a
      volume.
    * ``"rot90"`` (``c4``), ``"flip"`` (``d1``), or any group (a name or a
      :class:`~equilayers.groups.Group`): its grid elements, also of a finite group with
      others (``"c8"``, ``"ico"``: the others do not map the pixels onto themselves; passed
      in ``elements`` they raise) (a quarter turn runs the model on
      the ``W x H`` input of an ``H x W`` one), acting on the input
      by ``in_rep`` (declared or inferred, as in :func:`equivariance_error`) and on the output's
      pixels (a trivial field).

    Args:
        model: maps ``x`` to per-pixel logits ``(B, K, H', W')`` or per-voxel logits ``(B, K,
            D', H', W')`` (any module or callable; a ``(logits, ...)`` tuple is accepted).
        x: the batch ``(B, C, H, W)`` (or ``(B, C, F, H, W)``), or volumes ``(B, C, D, H,
            W)``, on the model's device.
        transforms: ``"shifts"``, ``"rot90"``, ``"flip"`` or a group.
        shifts: for ``"shifts"``, see above (default 4); None for a group.
        in_rep, elements: for a group, as in :func:`equivariance_error`.

    Returns:
        The consistency in ``[0, 1]``; NaN when a logit is NaN or a pixel's maximum is an
        infinity two classes share (that pixel has no label).

    Example:
        >>> import torch
        >>> pixel_consistency(lambda t: 2 * t, torch.randn(2, 5, 8, 8))  # pointwise: exact
        1.0
    """
    what = "pixel_consistency"
    agree = total = 0
    with kept_buffers(model):
        for y, back in _outputs(model, x, transforms, shifts, in_rep, None, elements, what,
                                labels=True):
            ref = _labels(y, what)
            if no_top1(y) or no_top1(back):
                return math.nan  # no label: a NaN logit, a tied infinite maximum (argmax: 0)
            agree += int((_labels(back, what) == ref).sum())
            total += ref.numel()
    return agree / total if total else 1.0


def pixel_equivariance_error(
    model: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    transforms: str | GroupLike = "shifts",
    *,
    shifts: ShiftsArg | None = None,
    reduction: Literal["max", "mean"] = "max",
    in_rep: str | FieldType | None = None,
    out_rep: str | FieldType | None = None,
    elements: Sequence[GroupElement | int] | None = None,
) -> float:
    """The absolute per-pixel change of the output under a transform of the input, undone.

    .. math::
        e = \\operatorname{max\\ or\\ mean}_{t,\\,b,\\,k,\\,p}\\;
        \\big| (T_t^{-1} f(T_t x))_{b,k,p} - f(x)_{b,k,p} \\big|

    in float64, over the transforms of :func:`pixel_consistency` (the output may be any dense
    map: ``(B, K, H', W')``, or a group map acted on by ``out_rep``, declared or inferred).
    Shifts of volumes: pass triples ``(dz, dy, dx)`` (an integer ``shifts=n`` moves the last
    two dims only, unless the model declares a volume ``in_type``, as
    :class:`~equilayers.models.UNet3d` does: a 5-D input may be a planar group map).
    0 for an exactly equivariant model; unlike the harness's relative error it keeps the
    output's units, so it can be compared with a decision margin.

    Args:
        model, x, transforms, shifts, in_rep, elements: as in :func:`pixel_consistency`.
        reduction: ``"max"`` (the worst pixel) or ``"mean"``.
        out_rep: for a group, the output's rep (default: declared or inferred).

    Returns:
        The error, a float >= 0.

    Example:
        >>> import torch
        >>> strided = torch.nn.Conv2d(3, 3, 3, stride=2, padding=1)
        >>> up = lambda t: torch.nn.functional.interpolate(strided(t), scale_factor=2.0)
        >>> pixel_equivariance_error(up, torch.randn(1, 3, 8, 8), shifts=[(1, 0)]) > 0
        True
    """
    what = "pixel_equivariance_error"
    reduction = choice(reduction, "reduction", ("max", "mean"), what)
    worst = 0.0
    total = 0.0
    count = 0
    with kept_buffers(model):
        for y, back in _outputs(model, x, transforms, shifts, in_rep, out_rep, elements,
                                what):
            diff = (back.to(torch.float64) - y.to(torch.float64)).abs()
            if not torch.isfinite(diff).all():
                return float("nan")
            worst = max(worst, float(diff.max())) if diff.numel() else worst
            total += float(diff.sum())
            count += diff.numel()
    if reduction == "max":
        return worst
    return total / count if count else 0.0
