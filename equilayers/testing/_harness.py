"""The equivariance harness: one definition of the error, used by tests, metrics and the CLI.

For a map ``f`` with input rep ``rho_in`` and output rep ``rho_out``, the error of one element is

    err(g) = || f(g . x) - g . f(x) || / max(|| g . f(x) ||, || f(g . x) ||, tiny)

(Frobenius norms over the whole batch, in float64), and the reported error is the worst over
the elements tested. Elements that do not map the pixel grid onto itself (e.g. 45 degrees) are
handled as an approximate check: the input is Gaussian-smoothed, both sides are compared only
inside the inscribed disk of the output (the inscribed ball, for SO(3)/O(3) on volumes, which
rotate by trilinear interpolation), and the *interpolation floor*, the error of rotating
``f(x)`` forth and back, is reported next to the error. The error is at most 2 (reached when
``f(g . x) = -g . f(x)``).

``f`` runs in the mode it is in; an ``nn.Module``'s buffers are put back after the measurement
(:func:`kept_buffers`: a train-mode BatchNorm's running statistics do not move; a train-mode
model with dropout gets a warning, as its noise differs between the passes)."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType

import torch
from torch import nn
from torch.nn.parameter import is_lazy

from .. import _checks as C
from ..groups import Element, FieldType, GroupLike, disk_mask, gaussian_smooth, get
from ..groups._actions import check_rep
from ..groups._so3 import ball_mask, smooth3d
from ..groups._subgroups import check_subgroup, embed
from ._fields import act_on, resolve_field_type

__all__ = [
    "EquivarianceReport",
    "equivariance_report",
    "equivariance_error",
    "invariance_error",
    "assert_equivariant",
    "assert_invariant",
    "shift_equivariance_error",
    "default_tolerance",
    "infer_rep",
    "relative_error",
    "resolve_elements",
    "kept_buffers",
]

_TINY = 1e-300


def default_tolerance(dtype: torch.dtype) -> float:
    """Relative tolerance for exact (grid) equivariance: 1e-10 in float64, 1e-5 in float32,
    1e-2 in half precision."""
    C.check_float_dtype(dtype, "dtype", "default_tolerance", optional=False)
    if dtype == torch.float64:
        return 1e-10
    if dtype == torch.float32:
        return 1e-5
    return 1e-2


def infer_rep(t: torch.Tensor, declared: str | None, *, name: str = "declared",
              what: str = "infer_rep") -> str:
    """The rep of ``t``: the declared one, else by rank (2-D: invariant, 5-D: regular,
    other: trivial). ``name`` and ``what`` are the argument ``declared`` came from and the
    caller (for the error)."""
    C.check_tensor(t, "t", what, floating=False)
    if declared is not None:
        return check_rep(declared, name, what)
    if t.dim() <= 2:
        return "invariant"
    if t.dim() == 5:
        return "regular"
    return "trivial"


@dataclass
class EquivarianceReport:
    """Result of :func:`equivariance_report`.

    Attributes:
        error: the worst relative error over the elements.
        worst: the element with that error.
        errors: relative error per element (in the order tested).
        floors: interpolation floor per element (0 for grid elements).
        approximate: whether off-grid elements were involved.
    """

    error: float
    worst: Element
    errors: dict[Element, float] = field(default_factory=dict)
    floors: dict[Element, float] = field(default_factory=dict)
    approximate: bool = False

    @property
    def floor(self) -> float:
        """The largest error floor over the report's elements (float rounding on the grid, the
        interpolation floor off it)."""
        return max(self.floors.values(), default=0.0)

    def __str__(self) -> str:
        text = f"relative error {self.error:.3g} (worst element {self.worst!r})"
        if self.approximate:
            text += f", interpolation floor {self.floor:.3g}"
        return text


def relative_error(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """``||a - b|| / max(||a||, ||b||, tiny)`` in float64 (Frobenius norms over the whole tensor,
    both sides multiplied by ``mask`` first when given); ``nan`` when either side is not finite.
    The one definition of the error that the harness and the metrics report."""
    a = a.detach().to(torch.float64)
    b = b.detach().to(torch.float64)
    if mask is not None:
        a, b = a * mask, b * mask
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        return float("nan")
    num = torch.linalg.vector_norm(a - b).item()
    den = max(torch.linalg.vector_norm(a).item(), torch.linalg.vector_norm(b).item(), _TINY)
    return num / den


def check_values(x: torch.Tensor, what: str, name: str = "x") -> None:
    """``x`` (``name``) holds values to measure: a meta tensor (no data: it failed in torch's
    ``.item()``) and an empty one (an error of 0 passed any model) are refused by name."""
    if x.numel() == 0:
        raise ValueError(f"{what}: {name} is empty (shape {tuple(x.shape)}): nothing to "
                         "measure; give at least one sample (and a model with outputs)")
    if x.is_meta:
        raise ValueError(f"{what}: {name} is on the meta device: it has a shape "
                         f"{tuple(x.shape)} but no values to measure; pass real data")


def noise_sources(model: object) -> list[str]:
    """The layers of ``model`` that draw random noise on every forward in the mode they are in:
    train-mode dropout with ``p > 0`` (every ``nn.Dropout*``), ``nn.RReLU``, and any module
    whose ``draws_noise`` is true (the learnable polyphase pool's Gumbel noise)."""
    if not isinstance(model, nn.Module):
        return []
    return [f"{name or '(model)'}: {type(m).__name__}" for name, m in model.named_modules()
            if m.training and ((isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0)
                               or isinstance(m, nn.RReLU)
                               or getattr(m, "draws_noise", False) is True)]


def _caller_stacklevel() -> int:
    """The ``stacklevel`` of the first frame outside equilayers (and ``contextlib``)."""
    frame: FrameType | None = sys._getframe(1)
    level = 1
    while frame is not None and (frame.f_globals.get("__name__", "").startswith(
            ("equilayers.", "contextlib")) or frame.f_globals.get("__name__") == "equilayers"):
        frame, level = frame.f_back, level + 1
    return level


@contextmanager
def kept_buffers(model: object) -> Iterator[None]:
    """Run the block, then put every buffer of ``model`` back as it was (for an
    ``nn.Module``; any other callable is left alone): the tensor objects and their values.

    A model in train mode updates its BatchNorm running statistics (``running_mean``,
    ``running_var``, ``num_batches_tracked``) on every forward pass; the metrics and the
    harness run it on transformed copies of the batch, which must not train it. The model
    keeps its mode (a train-mode BatchNorm still normalizes by the batch's statistics), and
    its parameters and their ``.grad`` are not touched. Buffers that a lazy module creates
    in the block (``nn.LazyBatchNorm2d``) are not restored: they did not exist before it.
    A model with layers that draw noise in the mode they are in (:func:`noise_sources`:
    train-mode dropout) gets a warning: each forward draws new noise, so what is measured is
    mostly that noise (measured: ``invariance_error`` 0.40 on a train-mode net with
    ``nn.Dropout(0.5)``, 7e-8 in eval mode)."""
    if not isinstance(model, nn.Module):
        yield
        return
    noisy = noise_sources(model)
    if noisy:
        more = f" and {len(noisy) - 3} more" if len(noisy) > 3 else ""
        warnings.warn(
            f"the model is in training mode with layers that draw random noise on every "
            f"forward ({'; '.join(noisy[:3])}{more}): the transformed and untransformed passes "
            "get different noise, so the error measured is mostly that noise; call "
            "model.eval() first", stacklevel=_caller_stacklevel())
    saved = [(mod, name, buf, buf.detach().clone()) for mod in model.modules()
             for name, buf in mod._buffers.items()
             if buf is not None and not is_lazy(buf) and not buf.is_meta]
    try:
        yield
    finally:
        for mod, name, buf, copy in saved:
            mod._buffers[name] = buf  # the object itself, were it reassigned
            # compared, not version-checked: batch_norm's kernel updates its running
            # statistics without bumping their version counter. Unchanged buffers are not
            # written (an expanded one cannot be; an inference tensor only in inference mode)
            if not torch.equal(buf, copy):
                with torch.inference_mode() if buf.is_inference() else torch.no_grad():
                    buf.copy_(copy)


def resolve_elements(group, elements, what: str = "") -> list[Element]:
    """The elements of ``group`` to test: ``elements`` checked (elements of ``group``, or
    slot indices of a finite group), or, for ``None``, every element of a finite group and the
    grid elements of a continuous one. ``what``: the caller, named in the errors."""
    pre = f"{what}: " * bool(what)
    if elements is None:
        return group.elements() if group.is_finite else group.grid_elements()
    if isinstance(elements, Element) or not C.is_collection(elements):
        raise TypeError(f"{pre}elements={elements!r} must be a list of GroupElements of "
                        f"{group.name} (or slot indices for a finite group), or None for all")
    out = []
    for e in elements:
        if isinstance(e, Element):
            group.check_element(e)
            out.append(e)
        elif (i := C.as_index(e)) is not None and group.is_finite:  # (0-d tensors too)
            C.check_int(i, "elements[i]", what, minimum=-int(group.order),
                        maximum=int(group.order) - 1,
                        fix=f"a slot index of {group.name} (|G|={group.order})")
            out.append(group.elements()[i])
        else:
            raise TypeError(f"{pre}elements must be GroupElements of {group.name} (or slot indices "
                            f"for a finite group); got {e!r}")
    if not out:
        raise ValueError(f"{pre}elements is empty: pass at least one group element")
    return out


def equivariance_report(
    f: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    group: GroupLike,
    *,
    in_rep: str | FieldType | None = None,
    out_rep: str | FieldType | None = None,
    elements: Sequence[Element | int] | None = None,
    smooth: float = 1.0,
    margin: float = 2.0,
    in_group: GroupLike | None = None,
) -> EquivarianceReport:
    """Measure ``f``'s equivariance on ``x`` for each element; see the module docstring.

    Args:
        f: a module or function. Modules declare ``in_type``/``out_type``
            (:class:`~equilayers.groups.FieldType`; or ``in_rep``/``out_rep`` names).
        x: the input batch; ``f`` runs in its dtype, the error is computed in float64.
        group: a group name or :class:`~equilayers.groups.Group`. A group of 3-D
            rotations (the cube's ``"o"``, ``"oh"``, ``"c4z"``, ``"d4z"``;
            ``"so3"``, ``"o3"``) moves volumes: ``x`` must be ``(B, C, D, H, W)`` or
            ``(B, C, F, D, H, W)`` (``ValueError`` for an image batch). A module's
            declared field type must be of ``group`` or of a larger group.
        in_rep, out_rep: override the declared types: a rep name (``"trivial"``,
            ``"regular"``, ``"harmonic"``, ``"invariant"``, ``"quotient:K"``, for the
            tensor's rank; 3-D: fibers alone) or a :class:`~equilayers.groups.FieldType`.
            Undeclared types are read from the rank (``equilayers.testing._fields``): a 5-D
            tensor is regular if ``F = |G|``; else, and for 3-D ones, this asks for it.
        elements: the elements to test; default all elements of a finite group, the grid
            elements (multiples of 90 degrees, flips) of SO(2)/O(2).
        smooth: Gaussian sigma (pixels; voxels on volumes) for the input when off-grid
            elements are tested.
        margin: pixels inside the inscribed disk (ball) that off-grid comparisons ignore.
        in_group: the group acting on the input when it is larger than ``group`` (a map from
            ``in_group``'s fields to a subgroup's, e.g. :class:`~equilayers.nn.Restrict`):
            each tested element of ``group`` acts on the input as the element of
            ``in_group`` it is (same angle and flip). Modules may declare it as an attribute.
    """
    return _report(f, x, group, in_rep=in_rep, out_rep=out_rep, elements=elements,
                   smooth=smooth, margin=margin, in_group=in_group, what="equivariance_report")


def _report(
    f: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    group: GroupLike,
    *,
    in_rep: str | FieldType | None = None,
    out_rep: str | FieldType | None = None,
    elements: Sequence[Element | int] | None = None,
    smooth: float = 1.0,
    margin: float = 2.0,
    in_group: GroupLike | None = None,
    what: str,
) -> EquivarianceReport:
    """:func:`equivariance_report`, its errors naming ``what`` (the public function called)."""
    C.check_callable(f, "f", what)
    C.check_tensor(x, "x", what)
    check_values(x, what)
    C.check_number(smooth, "smooth", what, minimum=0, fix="pixels")
    C.check_number(margin, "margin", what, minimum=0, fix="pixels")
    grp = get(group, "group", what)
    els = resolve_elements(grp, elements, what)
    in_grp = in_group if in_group is not None else getattr(f, "in_group", None)
    in_grp = grp if in_grp is None else get(in_grp, "in_group", what)
    if in_grp != grp:
        check_subgroup(in_grp, grp, "equivariance_report")
    in_type, declared = resolve_field_type(x, in_rep, f, "in", in_grp, what,
                                           group_arg="in_group" * (in_grp != grp) or "group")
    if declared:
        in_type.check(x, "x", what)
    if out_rep is not None and not isinstance(out_rep, FieldType):
        check_rep(out_rep, "out_rep", what)
    # a fiber alone (spatial_dims=0) has no pixels to interpolate: every element acts exactly
    moves = in_type.rep != "invariant" and in_type.spatial_dims > 0
    approximate = moves and any(not g.is_grid for g in els)
    volume = grp.spatial_dim == 3
    if approximate:
        x = smooth3d(x, smooth) if volume else gaussian_smooth(x, smooth)
    with torch.no_grad(), kept_buffers(f):
        y = f(x)
        if not isinstance(y, torch.Tensor):
            raise TypeError(f"{what}: f must return a tensor; got {type(y).__name__}")
        check_values(y, what, "f(x)")
        out_type, declared = resolve_field_type(y, out_rep, f, "out", grp, what,
                                                like=in_type if in_grp == grp else None)
        if declared:
            out_type.check(y, "f(x)", what)
        errors: dict[Element, float] = {}
        floors: dict[Element, float] = {}
        for g in els:
            y_g = f(act_on(in_type, g if in_grp == grp else embed(g, in_grp), x))
            gy = act_on(out_type, g, y)
            mask = None
            floor = 0.0
            if not g.is_grid and out_type.rep != "invariant" and out_type.spatial_dims > 0:
                if volume:  # SO(3)/O(3): the inscribed ball
                    d, h, w = y.shape[-3:]
                    mask = ball_mask(d, h, w, margin, device=y.device)
                else:
                    h, w = y.shape[-2:]
                    mask = disk_mask(h, w, margin, device=y.device)
                if not bool(mask.any()):  # nothing to compare: an error of 0 would pass
                    where = "voxel inside the inscribed ball" if volume else (
                        "pixel inside the inscribed disk")
                    raise ValueError(
                        f"{what}: the output's {'x'.join(map(str, mask.shape))} grid has no "
                        f"{where} (margin={margin:g} px inside it), where the off-grid "
                        f"element {g} is compared; use a larger input or a smaller margin")
                back = act_on(out_type, g.inverse(), gy)
                floor = relative_error(back, y, mask)
            if y_g.shape != gy.shape:
                raise ValueError(f"{what}: f(g.x) has shape {tuple(y_g.shape)} but g.f(x) "
                                 f"has {tuple(gy.shape)}: is out_rep={out_type.rep!r} "
                                 f"({out_type!r}) right?")
            errors[g] = relative_error(y_g, gy, mask)
            floors[g] = floor
    worst = max(els, key=lambda g: (errors[g] != errors[g], errors[g]))  # NaN counts as worst
    return EquivarianceReport(errors[worst], worst, errors, floors, approximate)


def equivariance_error(
    f: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    group: GroupLike,
    *,
    in_rep: str | FieldType | None = None,
    out_rep: str | FieldType | None = None,
    elements: Sequence[Element | int] | None = None,
) -> float:
    """The worst relative equivariance error of ``f`` on ``x`` over ``elements`` (float64).

    Example:
        >>> import torch
        >>> conv = torch.nn.Conv2d(1, 1, 3, padding=1).double()
        >>> equivariance_error(conv, torch.randn(1, 1, 9, 9, dtype=torch.float64), "p4") > 1e-3
        True
    """
    return _report(f, x, group, in_rep=in_rep, out_rep=out_rep, elements=elements,
                   what="equivariance_error").error


def invariance_error(
    f: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    group: GroupLike,
    *,
    in_rep: str | FieldType | None = None,
    elements: Sequence[Element | int] | None = None,
) -> float:
    """The worst relative change ``||f(g.x) - f(x)|| / max(||f(x)||, ||f(g.x)||)`` over
    ``elements`` (in ``[0, 2]``)."""
    return _report(f, x, group, in_rep=in_rep, out_rep="invariant", elements=elements,
                   what="invariance_error").error


def assert_equivariant(
    f: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    group: GroupLike,
    *,
    in_rep: str | FieldType | None = None,
    out_rep: str | FieldType | None = None,
    elements: Sequence[Element | int] | None = None,
    tol: float | None = None,
) -> EquivarianceReport:
    """Raise ``AssertionError`` naming the worst element, its error and ``tol`` when ``f`` is
    not equivariant on ``x``. ``tol`` defaults to :func:`default_tolerance` of the output
    dtype for grid elements; off-grid elements need an explicit ``tol``."""
    _check_tol(tol, "assert_equivariant")
    report = _report(f, x, group, in_rep=in_rep, out_rep=out_rep, elements=elements,
                     what="assert_equivariant")
    _check(report, tol, x.dtype, "equivariant")
    return report


def assert_invariant(
    f: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    group: GroupLike,
    *,
    in_rep: str | FieldType | None = None,
    elements: Sequence[Element | int] | None = None,
    tol: float | None = None,
) -> EquivarianceReport:
    """Like :func:`assert_equivariant` with ``out_rep="invariant"``."""
    _check_tol(tol, "assert_invariant")
    report = _report(f, x, group, in_rep=in_rep, out_rep="invariant", elements=elements,
                     what="assert_invariant")
    _check(report, tol, x.dtype, "invariant")
    return report


def _check_tol(tol, what: str) -> None:
    if tol is not None:
        C.check_number(tol, "tol", what, minimum=0, finite=False,
                       fix="a relative error (None: default_tolerance of the dtype)")


def _check(report: EquivarianceReport, tol: float | None, dtype, what: str) -> None:
    if tol is None:
        if report.approximate:
            raise ValueError("off-grid elements are approximate: pass tol= explicitly "
                             f"(interpolation floor here: {report.floor:.3g})")
        tol = default_tolerance(dtype)
    err = report.error
    if not (err <= tol):  # also catches NaN
        raise AssertionError(
            f"not {what}: relative error {err:.3g} at element {report.worst!r} exceeds "
            f"tol={tol:g}" + (f" (interpolation floor {report.floor:.3g})"
                              if report.approximate else "")
        )


def shift_equivariance_error(
    f: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    shifts: Sequence[tuple[int, ...]],
    *,
    stride: int | tuple[int, ...] = 1,
    invariant: bool = False,
) -> float:
    """Worst relative error of ``f(roll(x, s)) == roll(f(x), s / stride)`` over integer
    circular ``shifts`` (each a multiple of ``stride``); with ``invariant=True`` the output
    must not move at all. ``shifts`` is a list of pairs ``(dy, dx)`` on ``(H, W)``, or of
    triples ``(dz, dy, dx)`` on volumes ``(D, H, W)`` (then ``stride`` is an int or a triple);
    one shift is ``[(1, 2)]`` (a flat ``(1, 2)`` raises ``TypeError``). Triples roll the last
    three dims whatever they hold: on an image batch ``(B, C, H, W)`` they would roll the
    channels, so pass them for volumes only."""
    what = "shift_equivariance_error"
    C.check_callable(f, "f", what)
    C.check_flag(invariant, "invariant", what, fix="True: the output must not move at all")
    shifts = C.check_shift_list(shifts, "shifts", what,
                                form="integer pairs (dy, dx) or triples (dz, dy, dx)")
    nd = 3 if shifts and all(isinstance(s, (tuple, list)) and len(s) == 3 for s in shifts) else 2
    strides: tuple[int, ...]
    if nd == 3:
        C.check_tensor(x, "x", what, min_ndim=4, layout="(B, ..., D, H, W)")
        strides = C.check_triple(stride, "stride", what, minimum=1)
        shifts = [C.check_triple(s, "shifts[i]", what) for s in shifts]
    else:
        C.check_tensor(x, "x", what, min_ndim=2, layout="(..., H, W)")
        strides = C.check_pair(stride, "stride", what, minimum=1)
        shifts = [C.check_pair(s, "shifts[i]", what, fix="integer pairs (dy, dx)")
                  for s in shifts]
    check_values(x, what)
    dims = tuple(range(-nd, 0))
    worst = 0.0
    with torch.no_grad(), kept_buffers(f):
        y = f(x)
        if not isinstance(y, torch.Tensor):
            raise TypeError(f"{what}: f must return a tensor; got {type(y).__name__}")
        check_values(y, what, "f(x)")
        if not invariant and y.dim() < min(x.dim(), nd + 1):  # logits (B, K)?
            raise ValueError(f"{what}: f(x) of shape {tuple(y.shape)} has no {nd} spatial dims "
                             "after a batch dim to shift; pass invariant=True (it must not move)")
        for shift in shifts:
            if not invariant and any(t % s for t, s in zip(shift, strides, strict=True)):
                raise ValueError(f"{what}: shift {tuple(shift)} in shifts is not a multiple "
                                 f"of stride {tuple(strides)}; only those commute with "
                                 "subsampling (use invariant=True for shift-invariant maps)")
            y_s = f(torch.roll(x, tuple(shift), dims=dims))
            ref = y if invariant else torch.roll(
                y, tuple(t // s for t, s in zip(shift, strides, strict=True)), dims=dims)
            e = relative_error(y_s, ref)
            worst = e if e != e else max(worst, e)
            if worst != worst:
                break
    return worst
