"""Group convolutions: lifting (image -> group fields) and group (fields -> fields)
correlations, with pixel filters for c1, c2, c4 (p4), d1, d2, d4 (p4m) or with filters in the
steerable basis (:mod:`._steerable`) for cN, dN (any N), so2 and o2.

Math (cross-correlation, as ``F.conv2d``). A filter ``psi`` of a lifting conv is a plain
``k x k`` image per (out field, in channel); a filter of a group conv is a regular field
``(F_in, k, k)`` per (out field, in field). The *expanded* filter stacks, for every group
element ``g`` (the output slot), the filter transformed by ``g`` as a feature map of its kind:

    W[o, g, c] = g . psi[o, c]        (``act(psi, g, "trivial")`` or ``act(psi, g, "regular")``)

so ``out[o, g] = sum_c in[c] * W[o, g, c]`` and, for the regular action
``(u . f)[h] = u . f[u^-1 h]``, ``conv(u . in) = u . conv(in)`` exactly whenever the sampling
grid of the convolution maps onto itself (see :func:`exactness_problems`).

Steerable filters: the weight is ``(C_out, C_in // groups, num_basis)``, coefficients of
:func:`~equilayers.functional.steerable_basis` (regular fields for cN/dN, harmonic fields of
``2M+1`` slots when ``max_order=M`` is given, always for so2/o2); the expanded filter is
``sum_j weight[..., j] * basis[j]`` (:func:`~equilayers.functional.expand_steerable`;
for regular fields computed from the compact ``(|G|, J, k, k)`` table, ``|G|`` times fewer
multiply-adds than the dense basis, see :func:`._steerable_expand.expand_regular`).

Layout: the expanded filter is ``(C_out * F_out, C_in * F_in // groups, k, k)`` with fields
major and slots minor on both sides, so ``F.conv2d`` on ``x.reshape(B, C_in * F_in, H, W)``
followed by ``reshape(B, C_out, F_out, H', W')`` is the group convolution. It is built with
one ``index_select`` along each output field's flattened weight through a precomputed table
of one output field (obtained by applying the group action to ``arange``), so no Python loop
over the group runs per call.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .. import _checks as C
from .._cpu_cache import cpu_cache
from ..groups import Group, GroupLike, act, get
from ..groups._fourier_basis import weight_basis
from ._basis_settings import Cutoff
from ._conv_fields import field_types
from ._fibers import one_pixel
from ._grid_law import exactness_problems, grid_subgroup
from ._steerable import (
    check_basis,
    inverse_cayley_index,
    irrep_scale,
    regular_table,
    steerable_basis,
)
from ._steerable_expand import expand_regular, expand_steerable
from ._unbatched import UNBATCHED_HINT, looks_unbatched

__all__ = [
    "PIXEL_GROUPS",
    "check_pixel_group",
    "field_types",
    "grid_subgroup",
    "expansion_index",
    "expand_lifting_filter",
    "expand_group_filter",
    "lifting_conv2d",
    "group_conv2d",
    "conv_expanded",
    "resolve_padding",
    "exactness_problems",
]

#: The planar groups whose elements all map the pixel grid onto itself, so full ``k x k``
#: pixel filters can be transformed exactly: named in messages; a group is asked
#: (:attr:`~equilayers.groups.Group.pixel_exact`).
PIXEL_GROUPS = ("c1", "c2", "c4", "d1", "d2", "d4")
PADDING_MODES = C.PADDING_MODES


def check_pixel_group(group: GroupLike) -> Group:
    """The group, or ``ValueError`` when pixel filters cannot be transformed exactly by it."""
    grp = get(group)
    if grp.spatial_dim != 2:
        fix = ("use lifting_conv3d/group_conv3d (LiftingConv3d/GroupConv3d)" if grp.is_finite
               else "its harmonic fields take steerable_conv3d (SteerableConv3d)")
        raise ValueError(f"group {grp.name!r} acts on volumes ({grp.spatial_dim} spatial dims): "
                         f"{fix}; pixel-filter groups of images: {', '.join(PIXEL_GROUPS)}")
    if not grp.pixel_exact:
        raise ValueError(
            f"group {grp.name!r} has rotations off the pixel grid: use steerable filters "
            f"(basis='harmonic', a 3-D weight); pixel-filter groups: {', '.join(PIXEL_GROUPS)} "
            "(aliases p4 = c4, p4m = d4)")
    return grp


@cpu_cache(maxsize=256)
def _index_cpu(group: Group, fiber_in: int, k: int) -> torch.Tensor:
    # an explicit CPU device: under ``with torch.device("meta"):`` the cache would keep a meta
    # tensor and break every later layer of this (group, k)
    base = torch.arange(fiber_in * k * k, dtype=torch.long, device="cpu").reshape(
        1, 1, fiber_in, k, k)
    if fiber_in == 1:  # lifting: the filter is a plain image
        moved = [act(base[0, 0], g, "trivial") for g in group.elements()]
    else:
        moved = [act(base, g, "regular")[0, 0] for g in group.elements()]
    return torch.stack(moved).reshape(len(moved), fiber_in, k, k)  # (F_out, F_in, k, k)


def expansion_index(group: GroupLike, in_per_group: int, kernel_size: int, *, lifting: bool,
                    device: torch.device | str | None = None) -> torch.Tensor:
    """The gather table of one output field: ``idx`` of shape ``(F_out, C_in_per_group * F_in,
    k, k)`` with ``expanded[o * F_out + f] = weight[o].reshape(-1)[idx[f]]`` for every output
    field ``o`` of a weight ``(C_out, C_in_per_group, k, k)`` (lifting) or ``(C_out,
    C_in_per_group, |G|, k, k)`` (group conv); :func:`gather_expanded` applies it.

    The table is the same for every output field, so it does not grow with ``C_out``: the
    whole expanded filter's index (``C_out`` times larger, int64: twice the float32 expanded
    filter's memory, 1.2 GB for a p4m 512 -> 512 k3 conv) is never built.
    """
    grp = check_pixel_group(group)
    n = int(grp.order)
    f_in = 1 if lifting else n
    k = int(kernel_size)
    block = _index_cpu(grp, f_in, k)  # (F_out, F_in, k, k) into one (F_in, k, k) filter
    c = torch.arange(in_per_group, device="cpu").view(1, -1, 1, 1, 1)
    idx = (c * (f_in * k * k) + block.view(n, 1, f_in, k, k)).reshape(n, in_per_group * f_in,
                                                                      k, k)
    return idx.to(device) if device is not None else idx


def _check_weight(weight: torch.Tensor, ndim: int, what: str) -> None:
    C.check_tensor(weight, "weight", what, floating=ndim == 5)  # (a lifting one: a gather)
    if weight.dim() != ndim:
        layout = ("(C_out, C_in // groups, k, k)" if ndim == 4
                  else "(C_out, C_in // groups, |G|, k, k)")
        raise ValueError(f"{what} weight must have shape {layout}; got {tuple(weight.shape)}")
    C.check_square_filters(weight, what)


def expand_lifting_filter(weight: torch.Tensor, group: GroupLike = "p4") -> torch.Tensor:
    """``(C_out, C_in/groups, k, k)`` -> expanded ``(C_out*|G|, C_in/groups, k, k)``:
    block ``[o, g, c] = g . weight[o, c]`` (one gather)."""
    _check_weight(weight, 4, "expand_lifting_filter")
    c_out, c_in, k, _ = weight.shape
    idx = expansion_index(group, c_in, k, lifting=True, device=weight.device)
    return gather_expanded(weight, idx)


def gather_expanded(weight: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """The expanded filter ``(C_out * F_out, C_in_per_group * F_in, k, k)`` of ``weight``
    through one output field's table ``index`` (:func:`expansion_index`): one
    ``index_select`` along each output field's flattened weight (3-4x faster on CPU than a
    flat gather at C = 16; its backward is one ``index_add``). The spatial size is the weight's
    (static under ``torch.compile(dynamic=True)``; the table's is symbolic: inductor failed)."""
    c_out, fiber, cols = weight.shape[0], index.shape[0], index.shape[1]
    out = select(weight.reshape(c_out, -1), 1, index.view(-1))
    return out.reshape(c_out * fiber, cols, *weight.shape[-2:])


def select(src: torch.Tensor, dim: int, index: torch.Tensor) -> torch.Tensor:
    """``src.index_select(dim, index)``; where ``src`` has one entry along ``dim`` (every
    index is 0: the bias of one output field, a 1x1 filter of one input field) that entry
    broadcast instead, since inductor's CPU backward of a gather from a one-element dim fails
    (torch 2.13: an ``atomic_add`` codegen assertion under ``torch.compile``, plain
    ``index_select`` too; ``tests/test_compat.py``). A copy, as the gather's: a view would
    hold its parameter (``torch.utils.swap_tensors`` refuses a parameter with views)."""
    if src.shape[dim] == 1:
        shape = list(src.shape)
        shape[dim] = index.numel()
        return src.expand(shape).clone(memory_format=torch.contiguous_format)
    return src.index_select(dim, index)


def from_fourier(weight: torch.Tensor, fourier: torch.Tensor, dim: int = 2) -> torch.Tensor:
    """The per-element group axis ``w[h] = sum_k F[k, h] weight[k]`` of a weight whose axis
    ``dim`` holds coefficients in the group's Fourier basis ``F`` (``(|G|, |G|)``, from
    :func:`~equilayers.groups.group_fourier_basis`; its inverse is ``F`` itself applied the
    other way, ``weight[k] = sum_h F[k, h] w[h]``).

    One ``bmm`` of ``F^T`` (broadcast, no copy) with the ``(before, |G|, after)`` view of the
    weight: its output is contiguous in the weight's layout, so the gather that follows
    (:func:`gather_expanded`) reads it through a view. (An ``einsum`` gave a permuted output
    that the gather copied, with more host work per call and more aten ops per
    forward+backward: ``benchmarks/results/host-conv.md``.)"""
    if fourier.dtype != weight.dtype or fourier.device != weight.device:
        fourier = fourier.to(weight)
    shape = weight.shape
    n, g = math.prod(shape[:dim]), shape[dim]
    w3 = weight.reshape(n, g, math.prod(shape[dim + 1:]))
    return torch.bmm(fourier.t().expand(n, g, g), w3).view(shape)


def expand_group_filter(weight: torch.Tensor, group: GroupLike = "p4", *,
                        what: str = "expand_group_filter") -> torch.Tensor:
    """``(C_out, C_in/groups, |G|, k, k)`` -> expanded ``(C_out*|G|, C_in/groups*|G|, k, k)``:
    block ``[o, g, c] = g . w[o, c]`` with the regular action (one gather), where ``w[o, c, h]
    = sum_k F[k, h] weight[o, c, k]``: the weight's group axis (dim 2) holds coefficients in
    the group's Fourier basis ``F`` (:func:`~equilayers.groups.group_fourier_basis`; escnn's
    parametrization through the irreps), as every ``GroupConv2d`` stores it. ``what``: the
    public function the errors name (the group convs pass theirs)."""
    _check_weight(weight, 5, what)
    grp = check_pixel_group(group)
    check_weight_fiber(weight, grp, what)
    c_out, c_in, f, k, _ = weight.shape
    idx = expansion_index(grp, c_in, k, lifting=False, device=weight.device)
    w = from_fourier(weight, weight_basis(grp, dtype=weight.dtype, device=weight.device))
    return gather_expanded(w, idx)


def resolve_padding(padding, kernel_size: int, dilation, what: str = ""
                    ) -> tuple[int, int, int, int]:
    """``padding`` (int, pair, ``"same"``, ``"valid"``) -> ``(left, right, top, bottom)``
    (:func:`equilayers._checks.conv_padding`: ``"same"`` puts the odd pixel on the right and
    bottom, as ``nn.Conv2d``)."""
    left, right, top, bottom = C.conv_padding(padding, kernel_size, dilation, what)
    return (left, right, top, bottom)


def _pad_and_padding(pad: tuple[int, int, int, int], padding_mode: str):
    """Split into an explicit ``F.pad`` (or None) and the ``padding`` arg of ``F.conv2d``."""
    left, right, top, bottom = pad
    if padding_mode == "zeros" and left == right and top == bottom:
        return None, (top, left)
    return pad, (0, 0)


def conv_expanded(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                  fiber_out: int, stride=1, pad: tuple[int, int, int, int] = (0, 0, 0, 0),
                  dilation=1, groups: int = 1, padding_mode: str = "zeros", *,
                  what: str = "conv", checked: bool = False) -> torch.Tensor:
    """One ``F.conv2d`` (on ``1 x 1`` maps one ``F.linear``, :func:`._fibers.one_pixel`) with an
    expanded filter, ``(B, C_in, [F_in,] H, W) -> (B, C_out, F_out, H', W')``; ``bias`` per
    output field ``(C_out,)`` or per slot ``(C_out * F_out,)``. ``checked``: the caller ran
    :func:`check_conv_fits` on ``x``'s shape with these options (stride, dilation as pairs)."""
    sp, dp = stride, dilation
    if not checked:
        sp, dp = C.check_pair(stride, "stride"), C.check_pair(dilation, "dilation")
        check_conv_fits(x, weight.shape[-1], pad, dp, padding_mode, what)
    # a group map's fields and slots are the conv's channels (one view; an image as it is)
    x4 = x if x.dim() == 4 else x.flatten(1, -3)
    explicit, conv_pad = _pad_and_padding(pad, padding_mode)
    if explicit is not None:
        x4 = F.pad(x4, explicit, mode="constant" if padding_mode == "zeros" else padding_mode)
    if bias is not None and bias.shape[0] != weight.shape[0]:
        bias = bias.repeat_interleave(fiber_out)
    y = one_pixel(x4, weight, bias) if groups == 1 and conv_pad == (0, 0) else None
    y = F.conv2d(x4, weight, bias, sp, conv_pad, dp, groups) if y is None else y
    return y.unflatten(1, (weight.shape[0] // fiber_out, fiber_out))


def check_conv_fits(x: torch.Tensor, k: int, pad: tuple[int, int, int, int],
                    dilation: tuple[int, int], padding_mode: str, what: str) -> None:
    """The checks of :func:`conv_expanded` on ``x``'s size: a known padding mode, at least
    one ``k x k`` (dilated) window in the padded input, and a padding ``F.pad`` can do."""
    C.check_padding_mode(padding_mode, "padding_mode", "", PADDING_MODES)
    C.check_window(x, (dilation[0] * (k - 1) + 1, dilation[1] * (k - 1) + 1), pad, what)
    explicit, _ = _pad_and_padding(pad, padding_mode)
    if explicit is not None:
        C.check_pad_fits(x, explicit, padding_mode, what)


#: ``(spatial dims, lifting)`` -> the input a group conv expects, and the hint for the other
#: rank (the other conv of the pair).
_INPUTS = {(2, True): ("(B, C_in, H, W) images", " (use GroupConv2d for group feature maps)"),
           (2, False): ("(B, C_in, F, H, W) group maps",
                        " (a lifting conv, LiftingConv2d, maps images to group maps)"),
           (3, True): ("(B, C_in, D, H, W) volumes", " (use GroupConv3d for group feature maps)"),
           (3, False): ("(B, C_in, |G|, D, H, W) regular fields",
                        " (a lifting conv, LiftingConv3d, maps volumes to group maps)")}


def check_conv_input(x: torch.Tensor, ndim: int, channels: int, fiber: int | None, what: str,
                     in_order: int | None = None, spatial: int = 2) -> None:
    """The input of a lifting (``ndim = spatial + 2``) or group conv (``spatial + 3``, a fiber
    of ``fiber`` slots: ``|G|``, or with ``in_order`` a harmonic fiber) of ``spatial`` dims:
    the rank, ``channels`` fields, the fiber, floating point; a ``ValueError`` naming the
    shape and the fix (or the unbatched-sample hint) otherwise."""
    C.check_tensor(x, "x", what, floating=False)
    lifting = ndim == spatial + 2
    if x.dim() != ndim:
        layout, hint = _INPUTS[spatial, lifting]
        if looks_unbatched(x, ndim, channels, None if lifting else fiber, fiber_dim=1):
            hint = UNBATCHED_HINT
        raise ValueError(f"{what} expects {ndim}-D {layout}; got shape {tuple(x.shape)}{hint}")
    C.check_channels(x, channels, what)
    if fiber is not None and not lifting and x.shape[2] != fiber:
        if in_order is None:  # (another group's map: the layers of a model share one group)
            raise ValueError(f"{what} expects a regular fiber of |G|={fiber} slots in dim 2; got "
                             f"shape {tuple(x.shape)}: a map of a group of {x.shape[2]} elements"
                             "? build the layers of one model with one group")
        raise ValueError(f"{what} expects a harmonic fiber of 2*in_max_order+1={fiber} slots "
                         f"in dim 2 (in_max_order={in_order}); got shape {tuple(x.shape)}: set "
                         f"in_max_order (default max_order) to the input's order "
                         f"(F - 1) // 2")
    C.check_tensor(x, "x", what)  # floating point


def check_weight_fiber(weight: torch.Tensor, grp: Group, what: str) -> None:
    """A group conv weight ``(C_out, C_in // groups, |G|, k...)``: ``|G|`` slots in dim 2."""
    if weight.shape[2] != grp.order:
        raise ValueError(f"{what}: a group conv weight of {grp.name} has |G|={grp.order} slots "
                         f"in dim 2; got shape {tuple(weight.shape)}")


def _check_conv_args(what: str, weight, bias, stride, dilation, groups, padding_mode,
                     kernel_size, steerable: bool) -> None:
    """The arguments of :func:`lifting_conv2d` / :func:`group_conv2d` (the tensors'
    shapes are checked against them later)."""
    C.check_pair(stride, "stride", what, minimum=1)
    C.check_pair(dilation, "dilation", what, minimum=1)
    C.check_int(groups, "groups", what, minimum=1)
    C.check_padding_mode(padding_mode, "padding_mode", what, PADDING_MODES)
    C.check_tensor(weight, "weight", what)
    if steerable:
        C.check_optional_int(kernel_size, "kernel_size", what, minimum=1,
                             fix="odd, the size the steerable basis is sampled on")
    elif kernel_size is not None and (not C.is_int(kernel_size)
                                      or kernel_size != weight.shape[-1]):
        raise ValueError(f"{what}: kernel_size={kernel_size!r} must be None or the pixel "
                         f"filter's size {weight.shape[-1]} (weight shape "
                         f"{tuple(weight.shape)}); drop it, it is read from the weight")
    if weight.dim():
        C.check_weight_groups(weight, groups, what)
    C.check_bias(bias, (weight.shape[0],) if weight.dim() else (), what, per="output field")


def _check_same_stride(what: str, padding, stride) -> None:
    C.check_same_padding(padding, C.check_pair(stride, "stride", what, minimum=1), what,
                         "F.conv2d")


def _pixel_only(what: str, max_order, in_max_order=None, settings: dict | None = None) -> None:
    """A pixel weight (4-D/5-D) with arguments that only a steerable weight takes."""
    for name, v in (("max_order", max_order), ("in_max_order", in_max_order)):
        if v is not None:
            raise ValueError(f"{what}: {name}={v!r} needs a steerable weight (C_out, C_in // "
                             "groups, num_basis); pixel filters give regular fields")
    if settings:
        name, value = next(iter(settings.items()))
        raise ValueError(f"{what}: {name}={value!r} sets the steerable basis, but the weight is "
                         "a pixel filter (4-D/5-D): pass a steerable weight (C_out, C_in // "
                         f"groups, num_basis) with kernel_size=k, or drop {name}")


def _basis_mismatch(group, in_rep, out_rep, kernel_size, nb, weight, max_order,
                    in_max_order, settings: dict) -> str:
    given = "".join(f", {k}={v!r}" for k, v in settings.items())  # the basis settings set
    return (f"the steerable basis of {get(group).name} {in_rep}->{out_rep} k={kernel_size} "
            f"(kernel_size={kernel_size}, max_order={max_order}, in_max_order={in_max_order}"
            f"{given}) has {nb} elements; got weight {tuple(weight.shape)}: its last dim must "
            "be the number of basis elements")


def _steerable_filter(weight: torch.Tensor, group: GroupLike, lifting: bool, kernel_size,
                      max_order: int | None, in_max_order: int | None, groups: int,
                      settings: dict, what: str):
    """``(expanded filter, F_out, F_in, in_order)`` for a 3-D steerable weight (``settings``:
    the basis settings ``sigma``, ``frequencies_cutoff``, ``rings``; their errors and an
    empty basis named as ``what``)."""
    if kernel_size is None:
        raise ValueError("a steerable weight (C_out, C_in // groups, num_basis) needs "
                         "kernel_size=k (the basis is sampled on k x k)")
    in_rep, out_rep, m_in, m_out = field_types(group, lifting, max_order, in_max_order)
    check_basis(group, in_rep, out_rep, kernel_size, m_in, m_out, settings.get("sigma"),
                settings.get("frequencies_cutoff"), settings.get("rings"), what,
                ("in_max_order", "max_order"))
    if out_rep == "regular":  # the compact table: |G| times less work than the dense basis
        table = regular_table(group, kernel_size, dtype=weight.dtype, device=weight.device,
                              **settings)
        g, j = table.shape[:2]
        nb = j if lifting else g * j
        if weight.shape[-1] != nb:
            raise ValueError(_basis_mismatch(group, in_rep, out_rep, kernel_size, nb, weight,
                                             max_order, in_max_order, settings))
        C.check_weight_groups(weight, groups, what)
        index = None if lifting else inverse_cayley_index(group, weight.device)
        fourier = None if lifting else weight_basis(group, dtype=weight.dtype,
                                                    device=weight.device)
        scale = irrep_scale(group, in_rep, "regular", kernel_size, **settings)
        return (expand_regular(weight, table, index, fourier, scale), g, 1 if lifting else g,
                m_in)
    basis = steerable_basis(group, in_rep, out_rep, kernel_size, in_order=m_in,
                            out_order=m_out, dtype=weight.dtype, device=weight.device,
                            **settings)
    if weight.shape[-1] != basis.shape[0]:
        raise ValueError(_basis_mismatch(group, in_rep, out_rep, kernel_size, basis.shape[0],
                                         weight, max_order, in_max_order, settings))
    return expand_steerable(weight, basis, groups), basis.shape[1], basis.shape[2], m_in


def _settings(sigma, frequencies_cutoff, rings) -> dict:
    """The basis settings that are set, as keyword arguments."""
    return {k: v for k, v in (("sigma", sigma), ("frequencies_cutoff", frequencies_cutoff),
                              ("rings", rings)) if v is not None}


def _bias_slot0(bias: torch.Tensor | None, fiber_out: int) -> torch.Tensor | None:
    """Per-slot bias with ``bias`` on slot 0 (the invariant order 0) of each harmonic field."""
    if bias is None:
        return None
    return F.pad(bias[:, None], (0, fiber_out - 1)).reshape(-1)


def _lifting_filter(x: torch.Tensor, weight: torch.Tensor, bias, stride, dilation, groups: int,
                    padding_mode: str, group: GroupLike, kernel_size, max_order, settings: dict,
                    what: str):
    """The checks of a lifting conv (:func:`lifting_conv2d` and its transpose) and its
    ``(expanded filter, bias per field or slot, F_out, k)``."""
    steerable = isinstance(weight, torch.Tensor) and weight.dim() == 3
    _check_conv_args(what, weight, bias, stride, dilation, groups, padding_mode, kernel_size,
                     steerable)
    C.check_tensors_match(x, what, (("weight", weight), ("bias", bias)))
    if steerable:
        check_conv_input(x, 4, weight.shape[1] * groups, None, what)
        filt, f_out, _, _ = _steerable_filter(weight, group, True, kernel_size, max_order, None,
                                              groups, settings, what)
        assert kernel_size is not None  # _steerable_filter raised on None
        return filt, _bias_slot0(bias, f_out) if max_order is not None else bias, f_out, \
            kernel_size
    _pixel_only(what, max_order, settings=settings)
    grp = check_pixel_group(group)
    _check_weight(weight, 4, what)
    check_conv_input(x, 4, weight.shape[1] * groups, None, what)
    return expand_lifting_filter(weight, grp), bias, int(grp.order), weight.shape[-1]


def _group_filter(x: torch.Tensor, weight: torch.Tensor, bias, stride, dilation, groups: int,
                  padding_mode: str, group: GroupLike, kernel_size, max_order, in_max_order,
                  settings: dict, what: str):
    """The checks of a group conv (:func:`group_conv2d` and its transpose) and its
    ``(expanded filter, bias per field or slot, F_out, k)``."""
    steerable = isinstance(weight, torch.Tensor) and weight.dim() == 3
    _check_conv_args(what, weight, bias, stride, dilation, groups, padding_mode, kernel_size,
                     steerable)
    C.check_tensors_match(x, what, (("weight", weight), ("bias", bias)))
    if steerable:
        filt, f_out, f_in, m_in = _steerable_filter(weight, group, False, kernel_size, max_order,
                                                    in_max_order, groups, settings, what)
        assert kernel_size is not None  # _steerable_filter raised on None
        check_conv_input(x, 5, weight.shape[1] * groups, f_in, what, m_in)
        return filt, _bias_slot0(bias, f_out) if max_order is not None else bias, f_out, \
            kernel_size
    _pixel_only(what, max_order, in_max_order, settings)
    grp = check_pixel_group(group)
    _check_weight(weight, 5, what)
    check_conv_input(x, 5, weight.shape[1] * groups, int(grp.order), what)
    return expand_group_filter(weight, grp, what=what), bias, int(grp.order), weight.shape[-1]


def lifting_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                   stride=1, padding=0, dilation=1, groups: int = 1,
                   padding_mode: str = "zeros", *, group: GroupLike = "p4",
                   kernel_size: int | None = None,
                   max_order: int | None = None, sigma: float | Sequence[float] | None = None,
                   frequencies_cutoff: Cutoff | None = None,
                   rings: Sequence[float] | None = None) -> torch.Tensor:
    """Lifting correlation ``(B, C_in, H, W) -> (B, C_out, F, H', W')``.

    Pixel filters: ``weight`` ``(C_out, C_in // groups, k, k)``, ``F = |G|``. Steerable
    filters: ``weight`` ``(C_out, C_in // groups, num_basis)`` with ``kernel_size=k``; regular
    fields (``F = |G|``) of cN/dN, or harmonic fields (``F = 2M+1``) with ``max_order=M``
    (required for so2/o2); ``sigma``, ``frequencies_cutoff``, ``rings``: the basis settings
    of :func:`~equilayers.functional.steerable_basis`. ``bias`` ``(C_out,)``: one value per
    regular field, or on the order-0 slot of a harmonic field."""
    what = "lifting_conv2d"
    filt, bias, f_out, k = _lifting_filter(x, weight, bias, stride, dilation, groups,
                                           padding_mode, group, kernel_size, max_order,
                                           _settings(sigma, frequencies_cutoff, rings), what)
    _check_same_stride(what, padding, stride)
    pad = resolve_padding(padding, k, dilation, what)
    return conv_expanded(x, filt, bias, f_out, stride, pad, dilation, groups, padding_mode,
                         what=what)


def group_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                 stride=1, padding=0, dilation=1, groups: int = 1,
                 padding_mode: str = "zeros", *, group: GroupLike = "p4",
                 kernel_size: int | None = None, max_order: int | None = None,
                 in_max_order: int | None = None, sigma: float | Sequence[float] | None = None,
                 frequencies_cutoff: Cutoff | None = None,
                 rings: Sequence[float] | None = None) -> torch.Tensor:
    """Group correlation ``(B, C_in, F_in, H, W) -> (B, C_out, F_out, H', W')``.

    Pixel filters: ``weight`` ``(C_out, C_in // groups, |G|, k, k)``, its ``|G|`` axis the
    coefficients in the group's Fourier basis (:func:`~equilayers.groups.group_fourier_basis`;
    one slot per element for a registered group without one), as ``GroupConv2d`` stores it,
    not one filter per group element: a per-element weight ``w`` (another library's) is
    ``w @ F.T`` here (:func:`expand_group_filter` shows the filters). Steerable filters:
    ``weight`` ``(C_out, C_in // groups, num_basis)`` with ``kernel_size=k``; regular fields
    of cN/dN, or harmonic fields with ``max_order=M`` (output) and ``in_max_order`` (input,
    default ``M``); basis settings as in :func:`lifting_conv2d`. ``bias`` ``(C_out,)`` as in
    :func:`lifting_conv2d`."""
    what = "group_conv2d"
    filt, bias, f_out, k = _group_filter(x, weight, bias, stride, dilation, groups,
                                         padding_mode, group, kernel_size, max_order,
                                         in_max_order,
                                         _settings(sigma, frequencies_cutoff, rings), what)
    _check_same_stride(what, padding, stride)
    pad = resolve_padding(padding, k, dilation, what)
    return conv_expanded(x, filt, bias, f_out, stride, pad, dilation, groups, padding_mode,
                         what=what)
