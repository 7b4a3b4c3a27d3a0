"""``from_escnn`` for escnn's spatial pools: ``PointwiseMaxPool2D``, ``PointwiseAvgPool2D``,
``PointwiseMaxPool3D``, ``PointwiseAvgPool3D``, ``PointwiseAvgPoolAntialiased3D``,
``PointwiseAdaptiveAvgPool3D``, ``PointwiseAdaptiveMaxPool3D``, and
``PointwiseMaxPoolAntialiased2D`` / ``3D``; and the per-field ``FieldDropout`` and
``IIDBatchNorm2d`` / ``3d``.

Each acts on every channel alone over the spatial dims, so it commutes with the way our layout
differs from escnn's (regular fields of the cube: a permutation of the slots; SO(3)/O(3) fields:
signs per slot): the converted module gives escnn's outputs in our layout. Max pools are
pointwise maps and escnn builds them, and its adaptive pools, only on regular and trivial
fields; the average and Gaussian pools are linear, so they also take SO(3)/O(3) fields of
irreps ``0..L``.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from . import _interop_modules as M
from . import _interop_so2 as S2
from . import _interop_so3 as S3
from .functional._gaussian import gaussian_filter2d
from .functional._gaussian3d import gaussian_filter3d
from .nn import (
    FieldDropout,
    GaussianBlurPool2d,
    GaussianBlurPool3d,
    GroupAvgPool2d,
    GroupAvgPool3d,
    GroupMaxPool2d,
    GroupMaxPool3d,
)

__all__ = ["NAMES", "classes", "convert", "gaussian_pool", "pool2d", "field_dropout",
           "iid_batch_norm"]

#: the escnn classes :func:`convert` converts (their names: escnn is imported only in a
#: conversion)
NAMES = ("PointwiseMaxPool3D", "PointwiseAvgPool3D", "PointwiseAvgPoolAntialiased3D",
         "PointwiseAdaptiveAvgPool3D", "PointwiseAdaptiveMaxPool3D",
         "PointwiseMaxPoolAntialiased2D", "PointwiseMaxPoolAntialiased3D")


def classes(enn: Any) -> tuple[type, ...]:
    """escnn's classes of :data:`NAMES` (``enn``: ``escnn.nn``)."""
    return tuple(getattr(enn, name) for name in NAMES if hasattr(enn, name))


def convert(m: Any, regular_fields: Callable[[Any, str], object]) -> nn.Module:
    """escnn's pool ``m`` (one of :data:`NAMES`) -> ours. ``regular_fields(ftype, what)``
    checks a regular field type's gspace (``from_escnn``'s own check, which raises on a gspace
    it does not know)."""
    what = type(m).__name__
    kind = _fields(m, what, regular_fields,
                   linear=what in ("PointwiseAvgPool3D", "PointwiseAvgPoolAntialiased3D"))
    if what == "PointwiseAvgPoolAntialiased3D":
        return gaussian_pool(m, GaussianBlurPool3d)
    if what.startswith("PointwiseMaxPoolAntialiased"):
        return _max_antialiased(m, kind, what)
    if what.startswith("PointwiseAdaptive"):
        return _adaptive3d(m, kind, what)
    if what == "PointwiseMaxPool3D":
        if kind == "trivial":
            return nn.MaxPool3d(m.kernel_size, m.stride, m.padding, m.dilation,
                                ceil_mode=m.ceil_mode)
        return GroupMaxPool3d(m.kernel_size, m.stride, m.padding, m.dilation,
                              ceil_mode=m.ceil_mode)
    if kind == "trivial":  # PointwiseAvgPool3D: F.avg_pool3d's defaults otherwise
        return nn.AvgPool3d(m.kernel_size, m.stride, m.padding, m.ceil_mode)
    return GroupAvgPool3d(m.kernel_size, m.stride, m.padding, m.ceil_mode)


def pool2d(m: Any, enn: Any, regular_fields: Callable[[Any, str], object]) -> nn.Module:
    """escnn's ``PointwiseMaxPool2D`` / ``PointwiseAvgPool2D``: on regular (or restricted)
    fields our group pools (``regular_fields(ftype, what)`` checks them), on images (trivial
    fields) ``torch.nn``'s, and the average (a linear map) on harmonic fields too."""
    what = type(m).__name__
    plain = M.trivial_pool(m, enn)
    if plain is not None:
        return plain
    if isinstance(m, enn.PointwiseMaxPool2D):
        regular_fields(m.in_type, what)
        return GroupMaxPool2d(m.kernel_size, m.stride, m.padding, m.dilation,
                              ceil_mode=m.ceil_mode)
    if S2.harmonic_fields(m.in_type):
        S2.harmonic_or_trivial(m.in_type, what)  # linear: any field
    else:
        regular_fields(m.in_type, what)
    return GroupAvgPool2d(m.kernel_size, m.stride, m.padding, m.ceil_mode)


def _fields(m: Any, what: str, regular_fields: Callable[[Any, str], object], *,
            linear: bool) -> str:
    """``"trivial"`` (images, volumes), ``"regular"`` (checked by ``regular_fields``) or, for
    a linear pool on volumes, ``"harmonic"`` (SO(3)/O(3) fields of irreps ``0..L``, checked);
    anything else raises a ``ValueError`` naming the layer and what converts."""
    reps = m.in_type.representations
    if all(r.is_trivial() and r.name != "regular" for r in reps):
        return "trivial"  # (C_1's regular representation is trivial: a regular field)
    if all(r.name == "regular" for r in reps):
        regular_fields(m.in_type, what)
        return "regular"
    if linear and S3.is_so3_space(m.in_type.gspace):
        S3._layout(m.in_type, what, whole=True)  # unless [irrep 0, ..., irrep L] repeated
        return "harmonic"
    also = (", or SO(3)/O(3) fields of irreps 0..L (rot3dOnR3 / flipRot3dOnR3)"
            if linear else "")
    raise ValueError(f"from_escnn: {what} on {m.in_type}: only regular or trivial fields"
                     f"{also} convert")


def gaussian_pool(m: Any, cls: type[GaussianBlurPool2d] | type[GaussianBlurPool3d], *,
                  truncate: float = 3.0, padding=None, stride=None
                  ) -> GaussianBlurPool2d | GaussianBlurPool3d:
    """escnn stores a Gaussian pool's filter, not ``sigma``: recover ``sigma`` from the
    filter's centre and its neighbour (``f(1) / f(0) = exp(-1 / (2 sigma^2))``), moved to the
    nearest value whose size rule gives the filter's tap count (:func:`sigma_for_taps`),
    rebuild ours (``truncate``: the half-width escnn's size rule uses, 3 for its average
    pools, 4 for its max pools) and check the filter."""
    filt = m.filter[0, 0].detach().double().cpu()
    k = filt.shape[-1]
    c = (k // 2,) * filt.dim()
    if k == 1:
        sigma = 0.1  # every sigma < 1/(2 truncate) gives the 1-tap filter [1]
    else:
        ratio = float(filt[c] / filt[c[:-1] + (c[-1] + 1,)])
        if not 1.0 < ratio < math.inf:
            raise ValueError(f"from_escnn: {type(m).__name__}'s filter is not a Gaussian "
                             "(its centre is not above its neighbour); cannot convert")
        sigma = sigma_for_taps(math.sqrt(1.0 / (2.0 * math.log(ratio))), k, truncate)
    ours = cls(sigma, tuple(m.stride) if stride is None else stride,
               tuple(m.padding) if padding is None else padding, truncate=truncate)
    make = gaussian_filter3d if filt.dim() == 3 else gaussian_filter2d
    if ours.kernel_size != k or not torch.allclose(
            make(sigma, truncate=truncate, dtype=torch.float64), filt, rtol=0, atol=1e-6):
        raise ValueError(f"from_escnn: {type(m).__name__}'s filter is not a Gaussian with "
                         "escnn's size rule; cannot convert")
    return ours


def sigma_for_taps(sigma: float, k: int, truncate: float) -> float:
    """``sigma`` if escnn's size rule ``2 round(truncate sigma) + 1`` gives ``k`` taps, else
    the nearest float that does. ``sigma`` read back from a float32 filter is off by ~1e-8,
    which decides the rounding where ``truncate sigma`` is a half-integer (escnn's
    ``sigma=0.5`` average pool: ``3 sigma = 1.5``, 5 taps; its ``sigma=0.625`` max pool: ``4
    sigma = 2.5``, 5 taps): the filters of the two differ by ~1e-8, its tap count by 2.
    A ``sigma`` whose count misses by more than that is returned as it is (the filter check
    then refuses)."""
    size = _taps(sigma, truncate)
    if size == k or abs(size - k) > 2:
        return sigma
    n = (k - 1) // 2  # the half-integer between the two counts, then float steps inward
    s, inward = ((n + 0.5) / truncate, 0.0) if size > k else ((n - 0.5) / truncate, math.inf)
    for _ in range(64):
        if _taps(s, truncate) == k:
            return s
        s = math.nextafter(s, inward)
    return sigma  # pragma: no cover - a few float steps always reach the count


def _taps(sigma: float, truncate: float) -> int:
    """escnn's tap count for ``sigma`` (Python's ``round``: a tie rounds to even)."""
    return 2 * int(round(truncate * sigma)) + 1


def _max_antialiased(m: Any, kind: str, what: str) -> nn.Module:
    """escnn's antialiased max pool: a max pool at stride 1 (its padding, ``-inf``), then a
    Gaussian of ``2 round(4 sigma) + 1`` taps at its stride, zero padded by its padding plus
    ``(k - 1) // 2`` -> ``Sequential(max=..., blur=...)`` of the same two steps."""
    three = what.endswith("3D")
    k_max, pad = tuple(m.kernel_size), tuple(m.padding)
    blur_cls = GaussianBlurPool3d if three else GaussianBlurPool2d
    size = m.filter.shape[-1]
    blur = gaussian_pool(m, blur_cls, truncate=4.0, stride=tuple(m.stride),
                         padding=tuple(p + (size - 1) // 2 for p in pad))
    pool: nn.Module
    if kind == "trivial":
        pool = (nn.MaxPool3d if three else nn.MaxPool2d)(k_max, 1, pad, m.dilation,
                                                         ceil_mode=m.ceil_mode)
    else:
        pool = (GroupMaxPool3d if three else GroupMaxPool2d)(k_max, 1, pad, m.dilation,
                                                              m.ceil_mode)
    return nn.Sequential(OrderedDict(max=pool, blur=blur))


def _adaptive3d(m: Any, kind: str, what: str) -> nn.Module:
    """escnn's 3-D adaptive pools (every channel alone; escnn builds them on regular and
    trivial fields only): ``nn.AdaptiveAvgPool3d`` / ``nn.AdaptiveMaxPool3d`` of its output
    size, on volumes as they are, on our regular fields ``(B, C, |G|, D, H, W)`` between
    ``nn.Flatten(1, 2)`` and ``nn.Unflatten(1, (-1, |G|))`` (``torch.nn`` pools take no 6-D
    input)."""
    size = m.output_size
    size = tuple(size) if isinstance(size, (tuple, list)) else size
    pool: nn.Module = (nn.AdaptiveAvgPool3d(size) if "Avg" in what
                       else nn.AdaptiveMaxPool3d(size))
    if kind == "trivial":
        return pool
    fiber = m.in_type.representations[0].size
    return nn.Sequential(OrderedDict(fields=nn.Flatten(1, 2), pool=pool,
                                     slots=nn.Unflatten(1, (-1, fiber))))


def field_dropout(m: Any, regular_fields: Callable[[Any, str], object]) -> nn.Module:
    """escnn's ``FieldDropout`` (one draw per sample, field and pixel, each representation of
    its field type a field) -> ``nn.Dropout(p)`` on trivial fields (one channel per field:
    one draw per value) and :class:`~equilayers.nn.FieldDropout` ``(p)`` where escnn's fields
    are ours: regular fields (``regular_fields(ftype, what)`` checks them; 2-D and the cube's)
    and SO(2)/O(2), C_N/D_N fields given as one representation per field. Where escnn lists
    a field's irreps separately it draws one mask per irrep, ours one per field of orders
    ``0..L``: a ``ValueError`` says so (the distributions differ)."""
    what = "FieldDropout"
    reps = m.in_type.representations
    p = float(m.p)
    if all(r.is_trivial() and r.name != "regular" for r in reps):
        return nn.Dropout(p)
    if all(r.name == "regular" for r in reps):
        regular_fields(m.in_type, what)
        return FieldDropout(p)
    if S2.harmonic_fields(m.in_type):
        try:
            S2._layout(m.in_type, what, "whole")
        except ValueError:
            pass
        else:
            return FieldDropout(p)
    raise ValueError(f"from_escnn: FieldDropout on {m.in_type}: escnn draws one mask per "
                     "representation of the field type, so where a field's irreps are listed "
                     "separately it drops each irrep alone, while our FieldDropout drops a "
                     "harmonic field of orders 0..L as a whole (another distribution). "
                     "Regular and trivial fields, and SO(2)/O(2), C_N/D_N fields given as one "
                     "representation per field, convert; or place our FieldDropout by hand")


def iid_batch_norm(m: Any, regular_fields: Callable[[Any, str], int]) -> nn.Module:
    """escnn's ``IIDBatchNorm2d`` / ``3d``: on SO(2)/O(2), C_N/D_N fields of irreps
    (:func:`S2.iid_batch_norm`), SO(3)/O(3) ones (each irrep a field: as ``GNormBatchNorm``,
    the same state and eval-mode map; spherical fields, one representation each:
    :func:`M.iid_field_batch_norm`) or regular fields (``regular_fields(ftype, what)`` checks
    them and gives their number; :func:`M.iid_regular_batch_norm`)."""
    what = type(m).__name__
    if S2.harmonic_fields(m.in_type):
        return S2.iid_batch_norm(m)
    M.check_iid_tracked(m)
    if S3.is_so3_space(m.in_type.gspace):
        if all(len(r.irreps) == 1 for r in m.in_type.representations):
            return S3.batch_norm(m)  # each irrep its own field: GNormBatchNorm's state
        c, order = S3._layout(m.in_type, what, whole=True)  # fields of the sphere
        return M.iid_field_batch_norm(m, c, order or 0, S3._group(m.in_type.gspace))
    return M.iid_regular_batch_norm(m, regular_fields(m.in_type, what))
