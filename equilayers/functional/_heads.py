"""Invariant heads: pool a group feature map over the fiber and over space, then a linear map."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..groups import GroupLike, get
from ._group_pool import group_pool

__all__ = ["fiber_pool", "spatial_pool", "fiber_pose", "invariant_head", "POOLS", "SPATIAL"]

POOLS = ("max", "mean")
SPATIAL = ("mean", "max")


def _check_pool(pool: str, spatial: str | None = None) -> None:
    if pool not in POOLS:
        raise ValueError(f"pool={pool!r} is not a fiber pooling; valid: "
                         + ", ".join(map(repr, POOLS)))
    if spatial is not None and spatial not in SPATIAL:
        raise ValueError(f"spatial={spatial!r} is not a spatial pooling; valid: "
                         + ", ".join(map(repr, SPATIAL)))


def _check_regular(x: torch.Tensor, group: GroupLike, what: str) -> int:
    grp = get(group)
    if not grp.is_finite:
        raise ValueError(f"{what}: group {grp.name!r} is continuous and has no regular fiber; "
                         "use a finite group such as 'p4' or 'p4m'")
    if x.dim() != 5:
        raise ValueError(f"{what} expects a regular group feature map (B, C, |G|, H, W); got "
                         f"shape {tuple(x.shape)}")
    if x.shape[2] != grp.order:
        raise ValueError(f"{what}: a regular fiber of {grp.name} has |G|={grp.order} slots; got "
                         f"F={x.shape[2]} in shape {tuple(x.shape)} (is group= right?)")
    return int(grp.order)


def fiber_pool(x: torch.Tensor, pool: str = "max") -> torch.Tensor:
    """Pool ``(B, C, F, H, W)`` over the fiber dim to ``(B, C, H, W)`` (max or mean): every
    permutation of the slots leaves the result unchanged, so a regular field becomes a trivial
    (plain) one."""
    _check_pool(pool)
    if x.dim() != 5:
        raise ValueError(f"fiber_pool expects (B, C, F, H, W); got shape {tuple(x.shape)}")
    return group_pool(x, pool)  # amax's values and gradients, with a faster backward


def spatial_pool(x: torch.Tensor, spatial: str = "mean") -> torch.Tensor:
    """Global pooling of ``(B, C, H, W)`` over ``H, W`` to ``(B, C)`` (mean or max)."""
    _check_pool("max", spatial)
    if x.dim() != 4:
        raise ValueError(f"spatial_pool expects (B, C, H, W); got shape {tuple(x.shape)}")
    return x.mean(dim=(-2, -1)) if spatial == "mean" else x.amax(dim=(-2, -1))


def fiber_pose(x: torch.Tensor, group: GroupLike = "p4") -> torch.Tensor:
    """The pose of a regular feature map: per sample, the slot with the largest energy,

    .. math:: \\mathrm{pose}(x)_b = \\arg\\max_{i} \\frac{1}{C H W} \\sum_{c,h,w} x_{b,c,i,h,w}^2

    Because ``(g.x)[h] = g.x[g^-1 h]`` and the spatial move preserves the sum over space,
    the energies are permuted, ``E(g.x)[h] = E(x)[g^-1 h]``, so
    ``pose(g.x) = g * pose(x)`` (slot of the product in :meth:`Group.elements` order) whenever
    the maximum is unique. Returns an int64 ``(B,)`` tensor; ``group.elements()[pose[b]]`` is
    the element. Apply its inverse to canonicalize.
    """
    _check_regular(x, group, "fiber_pose")
    energy = x.detach().pow(2).mean(dim=(1, 3, 4))  # (B, F)
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
    ``(B, C, H, W)`` (no fiber to pool). ``weight`` is ``(K, C)``, ``bias`` ``(K,)``.
    Exactly invariant to every element of ``group`` acting on the input and to integer
    circular shifts, because both poolings are symmetric functions of what they pool.
    """
    _check_pool(pool, spatial)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"invariant_head expects a tensor; got {type(x).__name__}")
    if x.dim() == 5:
        _check_regular(x, group, "invariant_head")
        x = fiber_pool(x, pool)
    elif x.dim() != 4:
        raise ValueError(f"invariant_head expects (B, C, |G|, H, W) or (B, C, H, W); got shape "
                         f"{tuple(x.shape)}")
    if x.shape[1] != weight.shape[1]:
        raise ValueError(f"invariant_head: the input has C={x.shape[1]} channels but the head "
                         f"expects in_channels={weight.shape[1]}")
    return F.linear(spatial_pool(x, spatial), weight, bias)
