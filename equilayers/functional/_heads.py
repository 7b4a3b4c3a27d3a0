"""Invariant heads: pool a group feature map over the fiber and over space, then a linear map."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import _checks as C
from ..groups import GroupLike, get
from ._group_pool import group_pool
from ._unbatched import UNBATCHED_HINT, looks_unbatched

__all__ = ["fiber_pool", "spatial_pool", "fiber_pose", "invariant_head", "POOLS", "SPATIAL"]

POOLS = ("max", "mean")
SPATIAL = ("mean", "max")


def check_head_input(x: torch.Tensor, in_channels: int, grp, what: str, built: str) -> None:
    """``x`` is a group map of ``grp`` or a plain map (its fibers pooled), floating, with the
    head's ``in_channels`` fields in dim 1 (``built`` says where that count comes from), with
    the unbatched-sample hint where ``x`` looks like one sample."""
    sd = grp.spatial_dim
    plain = "(B, C, H, W)" if sd == 2 else "(B, C, D, H, W)"
    C.check_tensor(x, "x", what, ndim=(2 + sd, 3 + sd), layout=f"{_layout(grp)} or {plain}")
    if x.shape[1] != in_channels:
        hint = (UNBATCHED_HINT if looks_unbatched(x, 3 + grp.spatial_dim, in_channels,
                                                  int(grp.order), fiber_dim=1) else "")
        raise ValueError(f"{what}: x has C={x.shape[1]} channels (shape {tuple(x.shape)}) but "
                         f"{built}{hint}")


def _check_pool(pool: str, what: str = "") -> None:
    C.check_choice(pool, "pool", POOLS, what, fix="the fiber pooling")


def _check_spatial(spatial: str, what: str = "") -> None:
    C.check_choice(spatial, "spatial", SPATIAL, what, fix="the spatial pooling")


def _check_regular(x: torch.Tensor, group: GroupLike, what: str) -> int:
    grp = get(group)
    C.check_tensor(x, "x", what, floating=False)
    grp.require_finite(what, "use a finite group such as 'p4' or 'p4m'")
    if x.dim() != 3 + grp.spatial_dim:
        raise ValueError(f"{what} expects a regular group feature map {_layout(grp)} of "
                         f"{grp.name}; got shape {tuple(x.shape)}")
    if x.shape[2] != grp.order:
        f = int(x.shape[2])
        fits = ("" if grp.spatial_dim != 2 or f < 1 else
                f": F={f} slots are a regular fiber of group='c{f}'"
                + (f" or 'd{f // 2}'" if f % 2 == 0 else "")
                + (" ('p4m')" if f == 8 else "") + "?")
        alias = {"c4": " (group='p4', the default)", "d4": " (group='p4m')"}.get(grp.name, "")
        raise ValueError(f"{what}: a regular fiber of {grp.name}{alias} has |G|={grp.order} "
                         f"slots; got F={f} in shape {tuple(x.shape)} (is group= right{fits})")
    C.check_tensor(x, "x", what)
    return int(grp.order)


def _check_nonempty(x: torch.Tensor, first: int, what: str, dims: str) -> None:
    """Refuse a map whose pooled dims (``first`` on) hold nothing: a mean over them is NaN (as
    ``nn.AdaptiveAvgPool2d`` gives silently), a max has no value."""
    if 0 in x.shape[first:]:
        raise ValueError(f"{what}: x of shape {tuple(x.shape)} has an empty {dims} dim: there "
                         "is nothing to pool (a mean would be NaN); check the input size and the "
                         "strides and pools before the head")


def _layout(grp) -> str:
    return "(B, C, |G|, H, W)" if grp.spatial_dim == 2 else "(B, C, |G|, D, H, W)"


def fiber_pool(x: torch.Tensor, pool: str = "max") -> torch.Tensor:
    """Pool ``(B, C, F, H, W)`` over the fiber dim to ``(B, C, H, W)`` (max or mean), or the
    cube groups' ``(B, C, F, D, H, W)`` to ``(B, C, D, H, W)``: every permutation of the slots
    leaves the result unchanged, so a regular field becomes a trivial (plain) one."""
    _check_pool(pool, "fiber_pool")
    C.check_tensor(x, "x", "fiber_pool", ndim=(5, 6),
                   layout="(B, C, F, H, W) or (B, C, F, D, H, W)")
    _check_nonempty(x, 2, "fiber_pool", "fiber or spatial")
    return group_pool(x, pool)  # amax's values and gradients, with a faster backward


def spatial_pool(x: torch.Tensor, spatial: str = "mean") -> torch.Tensor:
    """Global pooling of ``(B, C, H, W)`` over ``H, W`` (or of volumes ``(B, C, D, H, W)``
    over ``D, H, W``) to ``(B, C)`` (mean or max)."""
    _check_spatial(spatial, "spatial_pool")
    C.check_tensor(x, "x", "spatial_pool", ndim=(4, 5), layout="(B, C, H, W) or (B, C, D, H, W)")
    _check_nonempty(x, 2, "spatial_pool", "spatial")
    dims = tuple(range(2, x.dim()))
    return x.mean(dim=dims) if spatial == "mean" else x.amax(dim=dims)


def fiber_pose(x: torch.Tensor, group: GroupLike = "p4") -> torch.Tensor:
    """The pose of a regular feature map: per sample, the slot with the largest energy,

    .. math:: \\mathrm{pose}(x)_b = \\arg\\max_{i} \\frac{1}{C H W} \\sum_{c,h,w} x_{b,c,i,h,w}^2

    Because ``(g.x)[h] = g.x[g^-1 h]`` and the spatial move preserves the sum over space,
    the energies are permuted, ``E(g.x)[h] = E(x)[g^-1 h]``, so
    ``pose(g.x) = g * pose(x)`` (slot of the product in :meth:`Group.elements` order) whenever
    the maximum is unique. Returns an int64 ``(B,)`` tensor; ``group.elements()[pose[b]]`` is
    the element. Apply its inverse to canonicalize. float16/bfloat16 energies are computed in
    float32 (a float16 square overflows from 256 on, and the infinite energies tied; bfloat16
    energies rounded to 8 bits tied where they differ by less than 0.4%).
    """
    _check_regular(x, group, "fiber_pose")
    v = x.detach()
    if v.dtype in (torch.float16, torch.bfloat16):
        v = v.float()
    energy = v.square().mean(dim=(1, *range(3, x.dim())))  # (B, F)
    return energy.argmax(dim=1)


def invariant_head(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    group: GroupLike = "p4",
    pool: str = "max",
    spatial: str = "mean",
) -> torch.Tensor:
    """Logits invariant to the group: ``linear(spatial_pool(fiber_pool(x)))``.

    Accepts a regular map ``(B, C, |G|, H, W)`` (pooled over the fiber) or a trivial map
    ``(B, C, H, W)`` (no fiber to pool); for the cube's groups (``"o"``, ``"oh"``, ``"c4z"``,
    ``"d4z"``) a regular map ``(B, C, |G|, D, H, W)`` or a volume ``(B, C, D, H, W)``.
    ``weight`` is ``(K, C)``, ``bias`` ``(K,)``. Exactly invariant to every element of
    ``group`` acting on the input and to integer circular shifts, because both poolings are
    symmetric functions of what they pool.
    """
    what = "invariant_head"
    _check_pool(pool, what)
    _check_spatial(spatial, what)
    C.check_tensor(weight, "weight", what, ndim=2, layout="(num_classes, C)")
    C.check_bias(bias, (weight.shape[0],), what)
    grp = get(group)
    sd = grp.spatial_dim
    check_head_input(x, weight.shape[1], grp, what, f"the head expects in_channels="
                     f"{weight.shape[1]} (weight shape {tuple(weight.shape)})")
    C.check_tensors_match(x, what, (("weight", weight), ("bias", bias)))
    _check_nonempty(x, 2, what, "fiber or spatial" if x.dim() == 3 + sd else "spatial")
    if x.dim() == 3 + sd:
        _check_regular(x, group, what)
        x = fiber_pool(x, pool)
    return F.linear(spatial_pool(x, spatial), weight, bias)
