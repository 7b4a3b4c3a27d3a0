"""InvariantHead: fiber pooling, global spatial pooling and a linear classifier."""

from __future__ import annotations

import math

import torch
from torch import nn

from .. import _checks as C
from ..functional._heads import (
    _check_nonempty,
    _check_pool,
    _check_spatial,
    check_head_input,
    fiber_pose,
    invariant_head,
)
from ..groups import FieldType, GroupLike, get
from ._derived import parametrized_once
from ._typed import Typed

__all__ = ["InvariantHead"]


class InvariantHead(Typed, nn.Module):
    """Group-invariant classifier head: pool over the fiber, pool over space, then a ``Linear``.

    ``logits = W . spatial_pool(fiber_pool(x)) + b``; ``fiber_pool`` is a max (or mean) over
    the ``|G|`` slots of each regular field, ``spatial_pool`` a global mean (or max).

    Functional twin: :func:`~equilayers.functional.invariant_head`.

    Args:
        in_channels: ``C``, the number of fields.
        num_classes: ``K``, the number of logits.
        group: the group of the regular fields (``"p4"``, ``"p4m"``, ``"c8"``, ...; the cube's
            ``"o"``, ``"oh"``, ``"c4z"``, ``"d4z"`` for 3-D maps ``(B, C, |G|, D, H, W)``).
        pool: fiber pooling, ``"max"`` or ``"mean"``.
        spatial: spatial pooling, ``"mean"`` or ``"max"``.
        return_pose: also return the pose, :func:`equilayers.functional.fiber_pose`: per sample
            the slot whose fiber energy ``mean_{c,h,w} x^2`` is largest.
        bias: learn an additive bias.

    Shape:
        - Input: ``(B, C, |G|, H, W)`` (regular) or ``(B, C, H, W)`` (trivial; no fiber pooling,
          and no pose); for the cube's groups ``(B, C, |G|, D, H, W)`` or ``(B, C, D, H, W)``.
        - Output: ``(B, K)``; with ``return_pose`` a tuple ``(logits (B, K), pose (B,) int64)``.

    Equivariance:
        Exact invariance: ``head(g . x) == head(x)`` for every ``g`` of ``group`` (regular
        action) and every integer circular shift, to float rounding; on a backbone of circular
        convolutions equivariant to ``group`` the logits are exactly invariant. The pose is
        equivariant, ``pose(g . x) = g * pose(x)``, wherever the maximum energy is unique.
        On 3-D maps of ``"o"``/``"oh"``: exactly invariant under all 24/48 elements (measured
        ~1e-16 in float64, ``tests/test_cubic_pools.py``).

    Example:
        >>> head = InvariantHead(16, 10, group="p4m")
        >>> head(torch.randn(2, 16, 8, 9, 9)).shape
        torch.Size([2, 10])
        >>> InvariantHead(4, 3, group="o")(torch.randn(2, 4, 24, 5, 5, 5)).shape
        torch.Size([2, 3])
    """

    #: its logits are a max or mean over the slots and over space: invariant under any
    #: permutation of the slots (check_grid reads it: after a ``CosetPool``, a quotient field
    #: of a larger group, it is invariant under that group too)
    _slot_symmetric = True

    def __init__(self, in_channels: int, num_classes: int, *, group: GroupLike = "p4",
                 pool: str = "max", spatial: str = "mean", return_pose: bool = False,
                 bias: bool = True, device=None, dtype=None) -> None:
        super().__init__()
        what = type(self).__name__
        C.check_int(in_channels, "in_channels", what, minimum=1)
        C.check_int(num_classes, "num_classes", what, minimum=1)
        grp = get(group)
        grp.require_finite(what, "use a finite group such as 'p4' or 'p4m'")
        _check_pool(pool, what)
        _check_spatial(spatial, what)
        C.check_float_dtype(dtype, "dtype", what)
        return_pose = C.check_flag(return_pose, "return_pose", what)
        C.check_flag(bias, "bias", what)
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.group = grp
        self.in_type, self.out_type = FieldType.regular(grp), FieldType.invariant(grp)
        self.pool = pool
        self.spatial = spatial
        self.return_pose = return_pose
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(num_classes, in_channels, **factory))
        self.bias = nn.Parameter(torch.empty(num_classes, **factory)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The ``nn.Linear`` initialisation."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_channels)
            nn.init.uniform_(self.bias, -bound, bound)

    @parametrized_once  # (a parametrized weight: evaluated once per call)
    def forward(self, x: torch.Tensor):
        name = type(self).__name__
        sd = self.group.spatial_dim
        check_head_input(x, self.in_channels, self.group, name,
                         f"the head was built with in_channels={self.in_channels}")
        C.check_dtype_match(x, self.weight, name)
        _check_nonempty(x, 2, name, "fiber or spatial" if x.dim() == 3 + sd else "spatial")
        logits = invariant_head(x, self.weight, self.bias, group=self.group, pool=self.pool,
                                spatial=self.spatial)
        if not self.return_pose:
            return logits
        if x.dim() != 3 + self.group.spatial_dim:
            layout = ("(B, C, |G|, H, W)" if self.group.spatial_dim == 2
                      else "(B, C, |G|, D, H, W)")
            raise ValueError(f"return_pose=True needs a regular {layout} input to read a pose "
                             f"from; got shape {tuple(x.shape)}")
        return logits, fiber_pose(x, self.group)

    def extra_repr(self) -> str:
        text = f"{self.in_channels}, {self.num_classes}, group={self.group.name!r}"
        if self.pool != "max":
            text += f", pool={self.pool!r}"
        if self.spatial != "mean":
            text += f", spatial={self.spatial!r}"
        if self.return_pose:
            text += ", return_pose=True"
        if self.bias is None:
            text += ", bias=False"
        return text
