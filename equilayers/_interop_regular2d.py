"""``from_escnn`` on 2-D regular fields of C_N / D_N (:mod:`equilayers.interop`): which of
our planar groups an escnn gspace is (checked element by element), and ``R2Conv`` /
``R2ConvTransposed`` between regular fields, loaded into a pixel-basis layer, fitted in our
steerable basis with escnn's settings, or held densely."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from . import _interop3d as I3
from . import _interop_modules as M
from . import _interop_tools as T
from .functional import steerable_basis
from .groups import act_spatial, get
from .groups._subgroups import restriction_index
from .nn._exactness import warn_at_user

__all__: list[str] = []


def group_name(gspace: Any, probed: dict) -> str:
    """Our group for an escnn 2-D gspace, after checking that its elements are ours in the same
    order: the same matrices on the plane (``R(2 pi k / N)``, times ``diag(-1, 1)`` for the
    flipped ones), the same regular-representation permutations, and (exactly, on an image
    probe) the same image transforms for the elements that map the pixel grid onto itself."""
    if getattr(gspace, "dimensionality", 2) == 3:  # the cube's groups on volumes
        return I3.cube_group_name(gspace, probed)
    key = id(gspace)
    if key in probed:
        return probed[key]

    from escnn import group as eg
    from escnn import gspaces
    from escnn import nn as enn

    fg = gspace.fibergroup
    if not isinstance(gspace, gspaces.GSpace2D):
        raise ValueError(f"from_escnn: gspace {gspace.name} is not a 2-D gspace; only "
                         "rot2dOnR2 / flipRot2dOnR2 / flip2dOnR2 are supported")
    if isinstance(fg, eg.DihedralGroup):
        candidates = [f"d{fg.rotation_order}"]
    elif isinstance(fg, eg.CyclicGroup):
        candidates = [f"c{fg.order()}"] + (["d1"] if fg.order() == 2 else [])
    else:
        raise ValueError(f"from_escnn: gspace {gspace.name} has the continuous fiber group "
                         f"{fg.name}; this layer takes only finite C_N / D_N regular "
                         "fields (SO(2)/O(2) fields convert through R2Conv, FourierELU, "
                         "IIDBatchNorm2d, GNormBatchNorm, NormNonLinearity, NormPool and the "
                         "average pools)")
    ft = enn.FieldType(gspace, [gspace.trivial_repr])
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 0, 1], x[0, 0, 1, 1], x[0, 0, 3, 0] = 1.0, 2.0, 3.0  # no symmetry
    elements = list(fg.elements)

    def same(e: Any, g: Any) -> bool:
        plane = grp.matrix(g)  # R(angle) diag(-1, 1)^s on (x, y)
        theirs = torch.as_tensor(gspace.basespace_action(e), dtype=torch.float64)
        perm = torch.as_tensor(fg.regular_representation(e)).argmax(1)
        return (torch.allclose(theirs, plane, atol=1e-9)
                and torch.equal(perm, grp.regular_permutation(g).to(perm.dtype))
                and (not g.is_grid or torch.equal(
                    enn.GeometricTensor(x, ft).transform(e).tensor, act_spatial(x, g))))

    for name in candidates:
        grp = get(name)
        ours = grp.elements()
        if len(ours) == len(elements) and all(
                same(e, g) for e, g in zip(elements, ours, strict=True)):
            probed[key] = name
            return name
    raise ValueError(f"from_escnn: gspace {gspace.name} acts on images differently from "
                     f"equilayers' {candidates[0]} (probably a flip axis other than escnn's "
                     "default, which is our horizontal flip torch.flip(x, dims=(-1,)))")


def regular_fields(ftype: Any, what: str, probed: dict) -> tuple[str, int]:
    """``(group name, number of fields)`` when every field of ``ftype`` is regular."""
    name = group_name(ftype.gspace, probed)
    reps = ftype.representations
    bad = sorted({r.name for r in reps if r.name != "regular"})
    if bad:
        trivial = [r.name for r in reps if r.name != "regular" and r.is_trivial()]
        hint = ("; layers on trivial (invariant) fields of C_N/D_N have no converter "
                "here (their tensors are plain images): port them by hand, a regular -> "
                "trivial conv as a GroupConv2d to regular fields then "
                "GroupPool(reduction='mean'), a batch norm on trivial fields as "
                "nn.BatchNorm2d") if trivial else ""
        raise ValueError(f"from_escnn: {what} on {ftype} has non-regular fields {bad}; only "
                         "regular fields are supported here" + hint)
    return name, len(reps)


def regular_or_trivial(m: Any, what: str) -> None:
    reps = m.in_type.representations
    if not all(r.name == "regular" or r.is_trivial() for r in reps):
        raise ValueError(f"from_escnn: {what} on {m.in_type}: only regular or trivial fields "
                         f"are supported ({what} acts on each channel alone, which is "
                         "equivariant only on those)")


def conv(m: Any, probed: dict) -> nn.Module:
    """``R2Conv`` / ``R2ConvTransposed`` on C_N / D_N regular fields (a transposed conv's
    filter is escnn's forward kernel between the same fields, transposed for
    ``conv_transpose2d``, as ours: so it is fitted as the forward conv's)."""
    what = type(m).__name__
    transposed = T.is_transposed(m)
    gname, c_out = regular_fields(m.out_type, f"{what} output", probed)
    in_reps = m.in_type.representations
    restricted = T.restricted_fields(m.in_type, probed, group_name)
    # regular first: for C_1 the regular representation is also trivial
    if restricted is not None:  # our layout: |G|/|H| regular H fields per escnn field
        parent, _, fields = restricted
        per = int(get(parent).order)
        lifting, c_in = False, fields * per // int(get(gname).order)
    elif all(r.is_trivial() and r.name != "regular" for r in in_reps):
        lifting, c_in = True, len(in_reps)
    else:
        _, c_in = regular_fields(m.in_type, f"{what} input", probed)
        lifting = False
    k = T.conv_kernel_size(m, what)
    n = int(get(gname).order)  # regular fields: a finite group
    filt, bias = M.expanded(m)  # what escnn's forward uses (checked in eval mode)
    if transposed:
        filt = filt.transpose(0, 1)  # escnn's forward kernel (out, in, k, k)
    if restricted is not None:  # escnn's input channels -> our restricted layout
        idx = restriction_index(parent, gname)
        cols = (torch.arange(fields)[:, None] * per + idx[None, :]).reshape(-1)
        filt = filt[:, cols.to(filt.device)]
    # a pixel-exact group's GroupConv2d/LiftingConv2d use full k x k filters (the "pixel"
    # basis): every escnn filter on it lies in our function class
    if not get(gname).pixel_exact:
        steer = _steerable_conv(m, gname, filt, bias, lifting, c_in, c_out)
        if steer is not None:
            return steer
        if transposed:  # no dense fallback for a transposed conv
            raise ValueError(f"from_escnn: escnn's filter for {m} is not in our steerable "
                             f"basis for {gname}; a transposed conv has no dense fallback")
        return T.expanded_conv(m, gname, filt, bias, lifting)
    cls = T.conv_class(lifting, transposed)
    ours = cls(c_in, c_out, k, bias=bias is not None, device=filt.device, dtype=filt.dtype,
               group=gname, basis="pixel", **T.conv_options(m))
    f_in = 1 if lifting else n
    with torch.no_grad():
        per_element = filt.view(c_out, n, c_in, f_in, k, k)[:, 0].reshape(ours.weight.shape)
        # a group conv's weight holds its group axis in the group's Fourier basis
        ours.weight.copy_(per_element if lifting else ours._to_fourier(per_element))
        if bias is not None:
            assert ours.bias is not None  # built with bias=True
            ours.bias.copy_(T.field_bias(bias, c_out, n))
        expanded = T.forward_filter(ours)
    # escnn samples each output slot's filter on its own, in float32: with many basis
    # elements (a dilation, a high frequencies_cutoff) its slots agree with one another only
    # to ~2e-6 of the largest entry; a convention mismatch is an O(1) error
    T.check_reproduced(m, ours, gname, expanded, filt, atol=1e-5)
    return ours


def _escnn_basis_settings(m: Any) -> dict:
    """escnn's basis settings of an ``R2Conv`` in our terms (:func:`T.escnn_basis_settings`;
    a ring's frequency is its elements' ``irrep:frequency``)."""
    return T.escnn_basis_settings(m, lambda attr: abs(int(attr["irrep:frequency"])))


def _steerable_conv(m: Any, gname: str, filt: torch.Tensor, bias: torch.Tensor | None,
                    lifting: bool, c_in: int, c_out: int) -> nn.Module | None:
    """A ``basis="harmonic"`` layer with escnn's basis settings whose weights reproduce escnn's
    filter (least squares in float64, then the expanded filter checked elementwise), or
    ``None`` when the filter is not in our steerable basis's span (or the settings are not
    ours to take)."""
    n, k = int(get(gname).order), m.kernel_size  # regular fields: a finite group
    cls = T.conv_class(lifting, T.is_transposed(m))
    try:
        settings = _escnn_basis_settings(m)
        ours = cls(c_in, c_out, k, bias=bias is not None, device=filt.device,
                   dtype=filt.dtype, group=gname, basis="harmonic", **T.conv_options(m),
                   **settings)
    except (AttributeError, KeyError, TypeError, ValueError):
        return None  # another escnn version's internals, or settings we refuse
    f_in = 1 if lifting else n
    basis = steerable_basis(gname, "trivial" if lifting else "regular", "regular", k,
                            dtype=torch.float64, device=filt.device,
                            **settings)  # (J, n, f_in, k, k)
    target = (filt.detach().double().view(c_out, n, c_in, f_in, k, k)
              .transpose(1, 2).reshape(c_out * c_in, -1))
    coef = torch.linalg.lstsq(basis.reshape(basis.shape[0], -1).T, target.T).solution
    with torch.no_grad():
        ours.weight.copy_(coef.T.reshape(ours.weight.shape))
        if bias is not None:
            assert ours.bias is not None  # built with bias=True
            ours.bias.copy_(T.field_bias(bias, c_out, n))
        expanded = T.forward_filter(ours)
    if not M.relative_close(expanded, filt, 1e-5):
        return None
    if ours.weight.numel() != m.weights.numel():
        warn_at_user(f"from_escnn: {type(m).__name__} on {gname}: escnn's basis has "
                      f"{m.weights.numel()} trainable coefficients (its basis_filter drops "
                      f"elements), ours {ours.weight.numel()} for the same rings and "
                      "frequencies: the converted layer computes escnn's filter, but "
                      "fine-tuning it trains the larger space", )
    return ours
