"""``from_escnn`` of escnn's convs between SO(2)/O(2) and C_N/D_N fields of irreps
(:mod:`equilayers._interop_so2`'s layouts, field matrices and convention checks): ``R2Conv``
/ ``R2ConvTransposed`` to the planar harmonic convs, ``R3Conv`` / ``R3ConvTransposed`` on
``rot2dOnR3()`` to :class:`~equilayers.nn.SteerableConv3d` / its transposed twin, escnn's
filter fitted in our basis and checked."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from . import _interop_modules as M
from . import _interop_so2 as S2
from . import _interop_so3 as S3
from . import _interop_tools as T
from .functional import steerable_basis

__all__ = ["conv"]


def conv(m: Any) -> nn.Module:
    """escnn's ``R2Conv`` on SO(2)/O(2) fields -> :class:`~equilayers.nn.LiftingConv2d`
    (trivial input) or :class:`~equilayers.nn.GroupConv2d` (harmonic input; for
    ``R2ConvTransposed`` their transposed twins) with ``max_order=L`` (``0`` for trivial
    outputs: fields ``(B, C, 1, H, W)``), escnn's filter turned into our field basis, fitted in our
    basis by least squares (float64) and checked elementwise; our default basis settings when
    they give escnn's parameter count and hold its filter, else escnn's own (its rings and
    widths, per ring the largest frequency). ``R3Conv`` on ``rot2dOnR3()`` fields ->
    :class:`~equilayers.nn.SteerableConv3d` (``group="so2"``, its default
    ``basis="shells"``: escnn's space; ``R3ConvTransposed`` ->
    :class:`~equilayers.nn.SteerableConvTranspose3d`), the same way."""
    what = type(m).__name__
    k = T.conv_kernel_size(m, what)
    gname = S2._group(m.out_type.gspace)
    c_out, order = S2._layout(m.out_type, f"{what} output")
    c_in, in_order = S2._layout(m.in_type, f"{what} input")
    order = order or 0
    f_out, f_in = 2 * order + 1, 1 if in_order is None else 2 * in_order + 1
    filt, bias = M.expanded(m)  # what escnn's forward uses (checked in eval mode)
    if T.is_transposed(m):
        filt = filt.transpose(0, 1)  # escnn's forward kernel (out, in, k, k)
    q_out = S2._field_matrices(gname, c_out, order).to(filt)
    q_in = S2._field_matrices(gname, c_in, in_order).to(filt)
    filt = torch.einsum("oi,ij...,jk->ok...", q_out, filt, q_in.T)
    T.check_scalar_bias(m, bias, c_out, f_out)
    if filt.dim() == 5:  # R3Conv: the shells' settings (a shell's cap: its harmonics' J)
        theirs = T.escnn_shell_settings(m)
    else:
        try:  # escnn 1.0.11 names a planar basis element's angular frequency "irrep:frequency"
            theirs = T.escnn_basis_settings(m, lambda attr: abs(int(attr["irrep:frequency"])))
        except (AttributeError, KeyError, TypeError, ValueError):
            theirs = None  # another escnn version's internals
    for settings in ({}, theirs):
        if settings is None:
            continue
        ours = _fit(m, settings, gname, filt, bias, (c_in, in_order, f_in),
                    (c_out, order, f_out), k)
        if ours is not None:
            return ours
    raise ValueError(f"from_escnn: escnn's filter for {m} is not in our {gname} steerable "
                     "basis with our default basis settings or with escnn's (its rings, "
                     "their widths and the largest frequency on each) at escnn's parameter "
                     "count: a basis_filter that keeps other elements has no equivalent here")


def _fit(m: Any, settings: dict, gname: str, filt: torch.Tensor, bias: torch.Tensor | None,
         fields_in: tuple[int, int | None, int], fields_out: tuple[int, int, int], k: int
         ) -> nn.Module | None:
    """Our conv with these basis settings holding escnn's filter, or ``None`` when its
    parameter count is not escnn's or the filter is not in its span."""
    (c_in, in_order, f_in), (c_out, order, f_out) = fields_in, fields_out
    lifting = in_order is None
    if filt.dim() == 5:  # an R3Conv on volumes: a SteerableConv3d on shells
        return S3.fit_conv3d(m, settings, gname, filt, bias, (c_in, in_order),
                             (c_out, order), k)
    cls = T.conv_class(lifting, T.is_transposed(m))
    kw: dict[str, Any] = {} if lifting else {"in_max_order": in_order}
    try:  # dead output orders dropped (escnn's layer has them too), aliasing kept
        ours, caught = T.build_candidate(lambda: cls(
            c_in, c_out, k, bias=bias is not None, device=filt.device, dtype=filt.dtype,
            group=gname, max_order=order, basis="harmonic", **T.conv_options(m), **kw,
            **settings))
    except ValueError:  # settings we refuse (e.g. an empty basis)
        return None
    if ours.weight.numel() != m.weights.numel():
        return None
    basis = steerable_basis(gname, "trivial" if lifting else "harmonic", "harmonic", k,
                            in_order=in_order, out_order=order, dtype=torch.float64,
                            device=filt.device, **settings)  # (J, F_out, F_in, k, k)
    fit = T.load_harmonic_fit(ours, basis, filt, bias, (c_out, f_out), (c_in, f_in))
    if fit is not None:
        T.warn_kept(caught)
    return fit
