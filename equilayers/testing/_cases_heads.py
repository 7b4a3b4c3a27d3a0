"""Invariant-head cases, and a toy lifting backbone built from the group actions."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..groups import GroupLike, act_spatial, get
from ..nn import InvariantHead
from ._case import Case
from ._case import seeded as _seeded


class ToyLifting(nn.Module):
    """A lifting convolution built from the group actions (a test fixture, not a layer):
    ``out[:, :, i] = x star (g_i . w)`` for ``g_i = group.elements()[i]``, with circular
    padding, so ``lift(g . x) = g . lift(x)`` (regular action) for the grid elements and every
    integer circular shift. ``padding_mode="zeros"`` breaks the shifts (a control)."""

    in_rep, out_rep = "trivial", "regular"

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 group: GroupLike = "p4", padding_mode: str = "circular",
                 dtype: torch.dtype = torch.float64) -> None:
        super().__init__()
        self.group = get(group)
        self.padding_mode = padding_mode
        self.kernel_size = kernel_size
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size,
                                               kernel_size, dtype=dtype) / kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.kernel_size // 2
        xp = F.pad(x, (p, p, p, p), mode="circular" if self.padding_mode == "circular"
                   else "constant")
        return torch.stack([F.conv2d(xp, act_spatial(self.weight, g))
                            for g in self.group.elements()], dim=2)


def toy_invariant_net(group: GroupLike = "p4", in_channels: int = 2, width: int = 4,
                      num_classes: int = 5, *, padding_mode: str = "circular",
                      pool: str = "max", spatial: str = "mean") -> nn.Sequential:
    """Lifting (circular) -> ReLU -> InvariantHead, float64: exactly invariant to ``group``
    and to integer circular shifts."""
    return nn.Sequential(
        ToyLifting(in_channels, width, 3, group, padding_mode),
        nn.ReLU(),
        InvariantHead(width, num_classes, group=group, pool=pool, spatial=spatial,
                      dtype=torch.float64),
    )


class _NoFiberPoolHead(nn.Module):
    """Negative control: reads the fiber slots as separate channels (no pooling over it)."""

    in_rep, out_rep = "regular", "invariant"

    def __init__(self, in_channels: int, order: int, num_classes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_channels * order, num_classes, dtype=torch.float64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.mean(dim=(-2, -1)).flatten(1))


def _head(group, **kw):
    return _seeded(lambda: InvariantHead(3, 5, group=group, dtype=torch.float64, **kw))


CASES = [
    Case("heads/invariant-head-p4", _head("p4"), (2, 3, 4, 7, 7), "p4"),
    Case("heads/invariant-head-p4m", _head("p4m"), (2, 3, 8, 7, 7), "p4m"),
    Case("heads/invariant-head-mean-max-p4m", _head("p4m", pool="mean", spatial="max"),
         (2, 3, 8, 6, 6), "p4m"),
    Case("heads/invariant-head-trivial-p4m", _head("p4m"), (2, 3, 7, 7), "p4m",
         in_rep="trivial"),
    Case("heads/invariant-head-shift", _head("p4"), (2, 3, 4, 8, 8), kind="shift",
         invariant=True),
    Case("heads/toy-lifted-net-p4", _seeded(lambda: toy_invariant_net("p4")),
         (2, 2, 8, 8), "p4"),
    Case("heads/toy-lifted-net-p4m", _seeded(lambda: toy_invariant_net("p4m")),
         (2, 2, 9, 9), "p4m"),
    Case("heads/toy-lifted-net-shift", _seeded(lambda: toy_invariant_net("p4m")),
         (2, 2, 8, 8), kind="shift", invariant=True),
    # negative controls
    Case("heads/no-fiber-pool-p4-fails", _seeded(lambda: _NoFiberPoolHead(3, 4, 5)),
         (2, 3, 4, 7, 7), "p4", expect="fail"),
    Case("heads/toy-lifted-net-zero-padding-shift-fails",
         _seeded(lambda: toy_invariant_net("p4", padding_mode="zeros", spatial="max")),
         (2, 2, 8, 8), kind="shift", invariant=True, expect="fail", fail_above=1e-6),
    Case("heads/plain-conv-head-p4-fails", _seeded(lambda: nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1, padding_mode="circular", dtype=torch.float64),
        nn.ReLU(), nn.Flatten(2), nn.Linear(64, 3, dtype=torch.float64), nn.Flatten(1))),
        (2, 2, 8, 8), "p4", out_rep="invariant", expect="fail"),
]
