"""``from_escnn`` on SO(2)/O(2) fields of images (escnn's ``rot2dOnR2(-1)`` /
``flipRot2dOnR2(-1)``) and on C_N/D_N fields of irreps (``rot2dOnR2(N)`` /
``flipRot2dOnR2(N)``, orders ``0 .. L < N/2``: the same fields restricted to the finite
group, our ``group="cN"``/``"dN"`` harmonic fields): ``R2Conv`` ->
:class:`~equilayers.nn.LiftingConv2d` / :class:`~equilayers.nn.GroupConv2d` on harmonic
fields, ``FourierELU`` / ``FourierPointwise`` -> :class:`~equilayers.nn.FourierNonlinearity`
(SO(2), C_N), ``NormNonLinearity`` -> :class:`~equilayers.nn.NormNonlinearity`
(``order0="norm", bias_form="exp"``), ``GNormBatchNorm`` ->
:class:`~equilayers.nn.HarmonicBatchNorm`, ``NormPool`` -> :class:`~equilayers.nn.NormPool`.

Fields: escnn's field type must list, field after field, the irreps of orders ``0, 1, ..., L``
in order (SO(2), C_N: ``irrep(0), ..., irrep(L)``; O(2), D_N: ``irrep(0, 0), irrep(1, 1),
..., irrep(1, L)``), either as one representation each (as escnn's ``FourierELU`` makes them:
``spectral_regular_representation`` of ``bl_irreps(L)``, no change of basis) or as separate
irreps; that is our harmonic field ``[a_0, c_1, s_1, ..., c_L, s_L]``. SO(2), C_N: escnn's
irrep matrices are ours, so the tensors are the same (``ours = theirs.view(B, C, 2L + 1, H,
W)``). O(2), D_N: escnn's abstract flip is the reflection about the first axis,
``irrep(1, m)(flip) = diag(1, -1)``, while the element its gspace maps to our flip
(``torch.flip(x, (-1,))``) acts by ``diag((-1)^m, -(-1)^m)`` on our order ``m``: our pair of
order ``m`` is escnn's turned by ``m`` quarter turns, ``ours = R(m pi / 2) theirs``
(:func:`escnn_field_matrix`; checked on every conversion against escnn's irreps and plane
action at several rotations and flips).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import _checks as C
from . import _interop_modules as M
from . import _interop_tools as T
from .groups import PlanarGroup, get, harmonic_matrix
from .groups._fields import field_type
from .nn import (
    FourierNonlinearity,
    HarmonicBatchNorm,
    NormMaxPool,
    NormPool,
    Restrict,
)
from .nn import _checks as NC
from .nn._exactness import warn_at_user
from .nn._typed import Typed

__all__ = ["EscnnRestrictedBasis", "escnn_field_matrix", "is_planar_harmonic_space", "on_volumes",
           "harmonic_fields", "fourier", "harmonic_or_trivial", "iid_batch_norm",
           "restriction",
           "norm_nonlinearity", "norm_pool", "norm_max_pool", "batch_norm"]


def is_planar_harmonic_space(gspace: Any) -> bool:
    """Whether ``gspace`` is escnn's ``rot2dOnR2(-1)`` / ``flipRot2dOnR2(-1)`` (SO(2) / O(2)
    on the plane)."""
    fiber = _fiber(gspace)
    return fiber is not None and fiber[2] is None


def on_volumes(gspace: Any) -> bool:
    """Whether ``gspace`` is a planar group acting on volumes (``rot2dOnR3()``,
    ``conicalOnR3()`` and their ``N``): our planar fields with a depth axis."""
    return _fiber(gspace) is not None and _dims(gspace) == 3


def _fiber(gspace: Any) -> tuple[str, bool, int | None] | None:
    """``(our group's name, whether it has flips, N or None)`` of a planar gspace's fiber
    group (SO(2), O(2), C_N, D_N), also on volumes (``rot2dOnR3()`` / ``conicalOnR3()`` and
    their ``N``: the same groups turning every depth slice about ``z``, whose fields are ours
    with a depth axis), else ``None``."""
    from escnn.group import O2, SO2, CyclicGroup, DihedralGroup

    fg = gspace.fibergroup if hasattr(gspace, "fibergroup") else None
    if getattr(gspace, "dimensionality", 0) not in (2, 3):
        return None
    # on volumes, rot2dOnR3() / conicalOnR3() and their N: turns about z and mirrors through
    # planes containing it, which _check_conventions verifies (it refuses escnn's
    # cylindricalOnR3() / dihedralOnR3(N), whose flips move z); their regular fields take
    # the cube's path (c4z / d4z)
    if isinstance(fg, (SO2, O2)):
        return ("o2", True, None) if isinstance(fg, O2) else ("so2", False, None)
    if isinstance(fg, CyclicGroup):
        return f"c{fg.order()}", False, int(fg.order())
    if isinstance(fg, DihedralGroup):
        return f"d{fg.rotation_order}", True, int(fg.rotation_order)
    return None


def _irrep_field(r: Any) -> bool:
    """A representation that is irreps with no change of basis, not trivial and not the
    regular one (a harmonic field, or a part of one)."""
    return (not r.is_trivial() and r.name != "regular" and torch.allclose(
        torch.as_tensor(r.change_of_basis, dtype=torch.float64),
        torch.eye(r.size, dtype=torch.float64)))


def harmonic_fields(*ftypes: Any) -> bool:
    """Whether a layer on these field types converts here: SO(2)/O(2) fields, or C_N/D_N
    fields of irreps (no regular, restricted or other fields; trivial ones may be among
    them)."""
    fiber = _fiber(ftypes[0].gspace)
    if fiber is None:
        return False
    if fiber[2] is None:
        return True
    reps = [r for t in ftypes for r in t.representations]
    return any(_irrep_field(r) for r in reps) and all(
        r.is_trivial() or _irrep_field(r) for r in reps)


def _group(gspace: Any) -> str:
    fiber = _fiber(gspace)
    assert fiber is not None  # checked by the caller (harmonic_fields)
    return fiber[0]


def _dims(gspace: Any) -> int | None:
    """Our modules' ``spatial_dims`` for ``gspace``: 3 for ``rot2dOnR3()`` (planar fields on
    volumes), else ``None`` (the group's: images)."""
    return 3 if getattr(gspace, "dimensionality", 2) == 3 else None


def escnn_field_matrix(group: str, max_order: int) -> torch.Tensor:
    """The orthogonal matrix ``Q`` (float64, ``(2L + 1, 2L + 1)``) with ``ours = Q theirs``
    for one harmonic field of orders ``0 .. L`` of ``group`` (``"so2"`` and ``"cN"``: the
    identity; ``"o2"`` and ``"dN"``: block diagonal, ``R(m pi / 2)`` on order ``m``; module
    docstring)."""
    if get(group).has_reflections:
        return _quarter_turns(max_order)
    return torch.eye(2 * max_order + 1, dtype=torch.float64)


def _quarter_turns(max_order: int) -> torch.Tensor:
    """Block diagonal ``(2L + 1, 2L + 1)`` float64: 1, then ``R(m pi / 2)`` on order ``m``."""
    q = torch.eye(2 * max_order + 1, dtype=torch.float64)
    for m in range(1, max_order + 1):
        c, s = (round(math.cos(m * math.pi / 2)), round(math.sin(m * math.pi / 2)))
        q[2 * m - 1:2 * m + 1, 2 * m - 1:2 * m + 1] = torch.tensor(
            [[c, -s], [s, c]], dtype=torch.float64)
    return q


def _irrep(fg: Any, flips: bool, m: int) -> Any:
    return (fg.irrep(0, 0) if m == 0 else fg.irrep(1, m)) if flips else fg.irrep(m)


def _check_conventions(gspace: Any, max_order: int) -> None:
    """escnn's plane action and irreps against ours (through :func:`escnn_field_matrix`) at
    several rotations, with and without the flip; raises on a mismatch (another flip axis).
    Cheap (a few small matrices), so run on every conversion rather than cached."""
    fiber = _fiber(gspace)
    assert fiber is not None  # a planar gspace (harmonic_fields)
    gname, flips, n = fiber
    fg = gspace.fibergroup
    ours = get(gname)
    assert isinstance(ours, PlanarGroup)  # so2 / o2 / cN / dN
    q = escnn_field_matrix(gname, max_order)
    steps = (0.0, 0.4, math.pi / 2, 2.1) if n is None else sorted({0, 1, 2 % n, n - 1})
    for flip in ((0, 1) if flips else (0,)):
        for step in steps:
            e = fg.element((flip, step)) if flips else fg.element(step)
            plane = torch.as_tensor(gspace.basespace_action(e), dtype=torch.float64)
            if plane.shape == (3, 3):  # rot2dOnR3(): (x, y) turned, z (the depth) fixed
                if not torch.allclose(plane[2], torch.tensor([0.0, 0, 1], dtype=plane.dtype)):
                    raise ValueError(f"from_escnn: gspace {gspace.name} moves z; only turns "
                                     "about z and mirrors through planes containing it "
                                     "(rot2dOnR3, conicalOnR3) map to our planar groups on "
                                     "volumes")
                plane = plane[:2, :2]
            # our element with the same plane matrix R(t) diag(-1, 1)^s
            angle = math.atan2(-float(plane[0, 1]), float(plane[1, 1]))
            g = ours.element(angle if n is None else round(angle * n / (2 * math.pi)) % n,
                             bool(flip))
            theirs = torch.block_diag(*[torch.as_tensor(_irrep(fg, flips, m)(e),
                                                        dtype=torch.float64)
                                        for m in range(max_order + 1)])
            if not (torch.allclose(ours.matrix(g), plane, atol=1e-9) and torch.allclose(
                    q @ theirs @ q.T, harmonic_matrix(g, max_order), atol=1e-9)):
                raise ValueError(f"from_escnn: gspace {gspace.name} acts on the plane or on "
                                 f"its irreps differently from equilayers' {gname} (probably "
                                 "a flip axis other than escnn's default, which is our "
                                 "horizontal flip torch.flip(x, dims=(-1,)))")


def _layout(ftype: Any, what: str, form: str = "any") -> tuple[int, int | None]:
    """``(C, L)`` of a field type that lists the irreps of orders ``0 .. L`` field after
    field, as separate irreps (``form="separate"``), as one representation per field with no
    change of basis (``"whole"``) or either (``"any"``); ``(C, None)`` for trivial fields only
    (images; not for ``"whole"``)."""
    reps = ftype.representations
    if form != "whole" and all(r.is_trivial() for r in reps):
        if _dims(ftype.gspace) == 3:  # the plane and the flip axis matter to scalar filters
            _check_conventions(ftype.gspace, 0)
        return len(reps), None
    fiber = _fiber(ftype.gspace)
    assert fiber is not None  # a planar gspace (harmonic_fields)
    fg, flips, n = ftype.gspace.fibergroup, fiber[1], fiber[2]
    if any(len({tuple(i) for i in r.irreps}) < len(r.irreps) for r in reps):
        raise ValueError(f"from_escnn: {what} on {ftype}: a field holds an irrep more than "
                         "once (escnn's O(2)/D_N Fourier fields hold each 2-D irrep twice, as "
                         "its regular representation does); our harmonic fields hold each "
                         "order once, and have no equivalent of these")
    ids: list[str] = []
    for r in reps:
        if len(r.irreps) > 1 and (form == "separate" or not torch.allclose(
                torch.as_tensor(r.change_of_basis, dtype=torch.float64),
                torch.eye(r.size, dtype=torch.float64))):
            ids = []  # a representation of this form has no field of ours
            break
        ids += [fg.irrep(*i).name for i in r.irreps]
    block = 1  # the length of one field: up to the next scalar
    while ids and block < len(ids) and ids[block] != _irrep(fg, flips, 0).name:
        block += 1
    order = block - 1
    want = [_irrep(fg, flips, m).name for m in range(max(order, 1) + 1)]
    fields = len(ids) // block if ids else 0
    split = any(len(r.irreps) != block for r in reps) if form == "whole" else any(
        1 < len(r.irreps) != block for r in reps)
    if not ids or len(ids) % block or ids != want[:block] * fields or split:
        how = {"separate": "as separate irreps", "whole": "as one representation per field",
               "any": "as separate irreps or one representation per field"}[form]
        raise ValueError(f"from_escnn: {what} on {ftype}: the fields must repeat "
                         f"[{', '.join(want)}] (the irreps of orders 0..L in order, our "
                         f"harmonic fields), {how} with no change of basis; other field types "
                         "are not supported")
    if n is not None and 2 * order >= n:
        raise ValueError(f"from_escnn: {what} on {ftype}: fields of orders 0..{order} of "
                         f"C{n}/D{n} reach order N/2 = {n / 2:g}, a 1-D irrep of escnn's "
                         "where our harmonic fields hold a pair; orders below N/2 map (for "
                         "all of the group's irreps use regular fields)")
    _check_conventions(ftype.gspace, order)
    return fields, order


def _field_matrices(gname: str, fields: int, order: int | None) -> torch.Tensor:
    return torch.block_diag(*[escnn_field_matrix(gname, order or 0)] * fields)


# escnn's pointwise functions by name (in place or not) -> ours (never in place)
_FUNCTIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": F.relu, "relu_": F.relu, "elu": F.elu, "elu_": F.elu, "sigmoid": torch.sigmoid,
    "sigmoid_": torch.sigmoid, "tanh": torch.tanh, "tanh_": torch.tanh}


def fourier(m: Any) -> nn.Module:
    """escnn's ``FourierPointwise`` / ``FourierELU`` on SO(2) fields of orders ``0 .. L``
    sampled at ``N`` rotations -> :class:`FourierNonlinearity` ``("so2", L, function,
    samples=N)``; on C_N fields sampled at the group's ``N`` elements (escnn's ``type=
    "regular", N=N``) -> ``FourierNonlinearity("cN", L, function)``: the same sampling
    vector (``[1, sqrt2, 0, ...] / sqrt(2L + 1)``), the same samples, and the inverse (escnn's
    ``(A^T A + 1e-8 I)^-1 A^T``, ours the pseudo-inverse: they differ by about ``1e-8``
    relative); the rows checked against escnn's."""
    gspace = m.in_type.gspace
    if _fiber(gspace) is None:
        raise ValueError(f"from_escnn: {type(m).__name__} on {m.in_type}: only SO(2) and C_N "
                         "fields of images map to FourierNonlinearity")
    gname = _group(gspace)
    if get(gname).has_reflections:
        raise ValueError(f"from_escnn: {type(m).__name__} on {m.in_type}: only SO(2) and C_N "
                         "fields map to FourierNonlinearity (escnn's O(2)/D_N Fourier fields "
                         "hold each 2-D irrep twice, as its regular representation does; our "
                         "harmonic fields once)")
    if m.out_type != m.in_type:
        raise ValueError(f"from_escnn: {type(m).__name__} with out_irreps other than its "
                         "irreps has no equivalent here")
    _, order = _layout(m.in_type, type(m).__name__, "whole")
    name = getattr(m._function, "__name__", "")
    if name not in _FUNCTIONS or order is None:
        raise ValueError(f"from_escnn: {type(m).__name__} with function {name!r}: only "
                         "p_relu, p_elu, p_sigmoid, p_tanh on fields of orders 0..L map")
    samples = int(m.A.shape[0])
    n = get(gname).order
    if math.isfinite(n) and samples != n:
        raise ValueError(f"from_escnn: {type(m).__name__} on {gname} samples {samples} "
                         f"elements; ours samples all {n} (escnn's type='regular', N={n}): a "
                         "subgroup's grid is not equivariant to the whole group")
    ours = FourierNonlinearity(gname, order, _FUNCTIONS[name], device=m.A.device,
                               samples=None if math.isfinite(n) else samples,
                               spatial_dims=_dims(gspace))
    # the same sampling rows in any order (the map does not depend on their order)
    a = ours.sample_matrix.double().cpu()
    theirs = m.A.detach().double().cpu()
    d = torch.cdist(theirs, a)
    if not (d.min(1).values.max() < 1e-6 and d.min(0).values.max() < 1e-6):
        raise ValueError(f"from_escnn: {type(m).__name__}'s samples are not {samples} "
                         "rotations evenly spaced (escnn's 'regular' grid) with escnn's "
                         "normalization (normalize=True); other grids have no equivalent here")
    return ours


def norm_nonlinearity(m: Any) -> nn.Module:
    """escnn's ``NormNonLinearity`` (``"n_relu"``, each irrep its own field) on SO(2)/O(2)
    fields -> :class:`NormNonlinearity` with ``order0="norm"`` and ``bias_form="exp"``
    (``relu(|v| - exp(log_bias))`` from the same parameter, as on SO(3))."""
    T.check_norm_relu(m)
    c, order = _layout(m.in_type, "NormNonLinearity", "separate")

    def arrange(lb: torch.Tensor) -> torch.Tensor:
        # escnn orders its biases by field size: the order-0 fields, then the 2-D ones (all
        # orders >= 1 share that size, in field order)
        return torch.cat([lb[:c, None], lb[c:].reshape(c, order or 0)], dim=1)

    return T.norm_relu(m, c, order or 0, _group(m.in_type.gspace), arrange,
                       _dims(m.in_type.gspace))


def norm_pool(m: Any) -> nn.Module:
    """escnn's ``NormPool`` on SO(2)/O(2) fields, each irrep its own field -> our
    :class:`NormPool` (channel ``c (L + 1) + l`` in both; a norm ignores the field matrix)."""
    _, order = _layout(m.in_type, "NormPool", "separate")
    return NormPool(order or 0, group=_group(m.in_type.gspace),
                    spatial_dims=_dims(m.in_type.gspace))


def norm_max_pool(m: Any) -> nn.Module:
    """escnn's ``NormMaxPool`` (per field, the vector of largest norm in every window) on
    fields of orders ``0 .. L`` -> our :class:`NormMaxPool`: ``per="order"`` where each irrep
    is its own field, ``per="field"`` where one representation holds orders ``0 .. L``
    (a norm ignores the field matrix, and the vector is moved as it is)."""
    c, order = _layout(m.in_type, "NormMaxPool")
    if order is None:
        raise ValueError(f"from_escnn: NormMaxPool on {m.in_type}: only fields of orders 0..L "
                         "with L >= 1 map to our NormMaxPool (on scalars it is a max pool of "
                         "|x|, which no torch.nn pool computes)")
    per = "order" if all(len(r.irreps) == 1 for r in m.in_type.representations) else "field"
    return NormMaxPool(tuple(m.kernel_size), tuple(m.stride), tuple(m.padding),
                       tuple(m.dilation), ceil_mode=bool(m.ceil_mode), max_order=order, per=per)


def batch_norm(m: Any) -> nn.Module:
    """escnn's ``GNormBatchNorm`` (or ``IIDBatchNorm2d``: the same state and eval-mode map;
    its training-mode variances about the batch mean, ``statistics="order_centred"``) on
    SO(2)/O(2) fields, each irrep its own field ->
    :class:`HarmonicBatchNorm` with its state (the same normalization in eval mode; in training
    mode escnn's Bessel's correction and detached statistics differ, as on SO(3):
    :func:`equilayers._interop_so3.batch_norm`)."""
    c, order = _layout(m.in_type, type(m).__name__, "separate")
    order = order or 0
    names = [r.name for r in m.in_type.representations[:order + 1]]
    ours = HarmonicBatchNorm(c, order, eps=m.eps, momentum=m.momentum, affine=m.affine,
                             group=_group(m.in_type.gspace),
                             spatial_dims=_dims(m.in_type.gspace),
                             statistics=T.gnorm_statistics(m))
    T.copy_gnorm_state(m, ours, names, c)
    return ours


def harmonic_or_trivial(ftype: Any, what: str) -> None:
    """Raise unless ``ftype`` holds harmonic fields of orders ``0 .. L`` or trivial fields
    (for linear maps that act on every channel alike, e.g. average pools)."""
    _layout(ftype, what)


def iid_batch_norm(m: Any) -> nn.Module:
    """escnn's ``IIDBatchNorm2d`` on SO(2)/O(2) fields, one representation per field (as
    ``FourierELU`` makes them; each irrep its own field: as ``GNormBatchNorm``) ->
    :class:`HarmonicBatchNorm` with ``statistics="field"`` and escnn's state: one running
    variance and weight per field, the running mean and bias of its order-0 slot. The same
    normalization in eval mode; in training mode escnn divides by the unbiased variance (``N /
    (N - 1)``, ``N`` = batch x pixels) and detaches its batch statistics, ours (as
    ``nn.BatchNorm``) does neither. With ``track_running_stats=False`` both normalize by the
    batch in eval mode too, so there the outputs differ as well (a warning says so)."""
    if all(len(r.irreps) == 1 for r in m.in_type.representations):
        M.check_iid_tracked(m)  # each irrep its own field: GNormBatchNorm's state and map
        return batch_norm(m)
    c, order = _layout(m.in_type, "IIDBatchNorm2d", "whole")
    if not m.track_running_stats:
        warn_at_user("from_escnn: IIDBatchNorm2d with track_running_stats=False normalizes by "
                      "the batch's statistics in eval mode too, where escnn divides by the "
                      "unbiased variance (N / (N - 1), N = batch x pixels) and ours by the "
                      "biased one (as nn.BatchNorm): the converted layer's outputs differ by "
                      "about sqrt(N / (N - 1)) in every mode", )
    return M.iid_field_batch_norm(m, c, order or 0, _group(m.in_type.gspace),
                                  _dims(m.in_type.gspace))


class EscnnRestrictedBasis(Typed, nn.Module):
    """escnn's basis of ``D_N`` (``O(2)``) harmonic fields restricted to ``C_N`` (``SO(2)``),
    from ours: every field's order-``m`` pair turned back by ``m`` quarter turns, ``y = Q^T x``
    with ``Q =`` :func:`escnn_field_matrix` ``(group, max_order)``.

    Our ``D_N`` field is ``Q`` times escnn's (escnn's flip reflects about another axis), and a
    restriction keeps the tensor in both libraries, so after ``Restrict(group, subgroup,
    rep="harmonic")`` our field is still ``Q`` times escnn's; the ``C_N`` layers that follow
    in escnn's model act on escnn's basis (``C_N`` fields are the same in both), so
    ``from_escnn`` puts this map between them. ``Q`` commutes with every rotation, so the
    result is an equally valid ``C_N`` field. No parameters or buffers (``Q`` is rebuilt per
    call from the two arguments, a ``(2L + 1)^2`` matrix)."""

    def __init__(self, group: str, max_order: int) -> None:
        super().__init__()
        grp = get(group)
        if not (isinstance(grp, PlanarGroup) and grp.has_reflections):
            raise ValueError(f"EscnnRestrictedBasis: group must be 'o2' or 'dN' (the fields "
                             f"before the restriction); got {group!r}")
        self.group = grp.name
        self.max_order = C.check_order(max_order, "max_order", "EscnnRestrictedBasis")
        # the rotations' harmonic fields in and out (the restriction happened before)
        rotations = "so2" if grp.order == math.inf else f"c{grp.order // 2}"
        self.in_type = self.out_type = field_type(rotations, "harmonic", self.max_order,
                                                  what="EscnnRestrictedBasis")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        C.check_tensor(x, "x", "EscnnRestrictedBasis")
        NC.harmonic_fiber(x, self)  # 2M+1 slots, named with the fix
        q = _quarter_turns(self.max_order).to(x)  # escnn_field_matrix of a group with flips
        if x.dim() != 5 or x.shape[2] != q.shape[0]:
            raise ValueError(f"EscnnRestrictedBasis expects harmonic fields (B, C, "
                             f"{q.shape[0]}, H, W) of orders 0..{self.max_order}; got "
                             f"shape {tuple(x.shape)}")
        return torch.einsum("ji,bcjyx->bciyx", q, x)

    def extra_repr(self) -> str:
        return f"group={self.group!r}, max_order={self.max_order}"


def restriction(m: Any) -> nn.Module:
    """escnn's ``RestrictionModule`` from ``D_N`` (``O(2)``) fields of irreps ``0 .. L`` to
    the rotations ``C_N`` (``SO(2)``; escnn's id ``(None, N)`` / ``(None, -1)``) ->
    ``Sequential(Restrict(group, subgroup, rep="harmonic"), EscnnRestrictedBasis(group,
    L))`` (:class:`EscnnRestrictedBasis` says why); other restrictions of irreps fields raise
    (escnn splits or re-labels their irreps)."""
    before, after = _fiber(m.in_type.gspace), _fiber(m.out_type.gspace)
    assert before is not None and after is not None  # harmonic_fields(m.in_type)
    if not (before[1] and not after[1] and before[2] == after[2]):
        raise ValueError(f"from_escnn: RestrictionModule {m._id!r} on {m.in_type}: of fields "
                         "of irreps only the restriction of D_N to C_N (O(2) to SO(2)) is "
                         "converted; other subgroups split or re-label escnn's irreps "
                         "(restrict regular fields instead)")
    c, order = _layout(m.in_type, "RestrictionModule input")
    c_out, out_order = _layout(m.out_type, "RestrictionModule output")
    if (c_out, out_order) != (c, order) or order is None:
        raise ValueError(f"from_escnn: RestrictionModule on {m.in_type}: the restricted fields "
                         f"{m.out_type} are not the same fields of {after[0]}")
    return nn.Sequential(Restrict(before[0], after[0], rep="harmonic"),
                         EscnnRestrictedBasis(before[0], order))
