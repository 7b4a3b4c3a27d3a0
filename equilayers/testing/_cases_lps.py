"""Learnable polyphase sampling cases (evaluation mode): every integer circular shift, D4 on
square regular maps and after a lifting conv, the pool-upsample pair; in 3-D the cube's groups
on volumes and 6-D maps (boxes too); negative controls (plain strided subsampling, a
fixed-phase pool-upsample pair) fail."""

from __future__ import annotations

import torch
from torch import nn

from .._rng import global_rng_from
from ..nn import (
    LearnablePolyphasePool2d,
    LearnablePolyphasePool3d,
    LearnablePolyphaseUpsample2d,
    LearnablePolyphaseUpsample3d,
)
from ._case import Case
from ._cases_blur import GlobalMean, LiftingConv, Subsample, _circ_conv

_ALL_SHIFTS = ((1, 0), (0, 1), (1, 1), (3, 5), (-2, 7))


def _lps(channels: int, stride: int = 2, nd: int = 2, **kw) -> LearnablePolyphasePool2d:
    pool = LearnablePolyphasePool2d if nd == 2 else LearnablePolyphasePool3d
    with global_rng_from(torch.Generator().manual_seed(1)):
        return pool(channels, stride, dtype=torch.float64, **kw).eval()


def _stack(pool: str = "lps", stride: int = 2) -> nn.Module:
    """Circular convs, two pools, a global mean: invariant to every integer shift with LPS."""
    def make(c: int) -> nn.Module:
        return _lps(c, stride) if pool == "lps" else Subsample(stride)
    with global_rng_from(torch.Generator().manual_seed(0)):
        return nn.Sequential(_circ_conv(3, 6), nn.ReLU(), make(6), _circ_conv(6, 8), nn.ReLU(),
                             make(8), GlobalMean()).eval()


class _PoolUp(nn.Module):
    """``up(*pool(x))``; ``fixed=True``: always phase 0 (the aliasing control)."""

    def __init__(self, channels: int = 3, stride: int = 2, fixed: bool = False,
                 nd: int = 2) -> None:
        super().__init__()
        self.pool = _lps(channels, stride, nd, return_index=True)
        self.up = (LearnablePolyphaseUpsample2d if nd == 2 else LearnablePolyphaseUpsample3d)(
            stride)
        self.fixed, self.nd = fixed, nd

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, index = self.pool(x)
        if self.fixed:
            index = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
            s = self.pool.stride
            y = x[..., ::s, ::s] if self.nd == 2 else x[..., ::s, ::s, ::s]
        return self.up(y, index)


def _lift_lps() -> nn.Module:
    with global_rng_from(torch.Generator().manual_seed(0)):
        m = nn.Sequential(LiftingConv(3, 4), nn.ReLU(), _lps(4)).eval()
    # torch's stub of Module.__setattr__ takes tensors and modules only; any value is allowed
    m.in_rep, m.out_rep = "trivial", "regular"  # type: ignore[assignment]
    return m


CASES = [
    # --- every integer circular shift -------------------------------------------------------
    Case("lps/stack-shift-invariant-s2", _stack, (2, 3, 12, 12), kind="shift", invariant=True,
         shifts=_ALL_SHIFTS),
    Case("lps/stack-shift-invariant-s3", lambda: _stack(stride=3), (2, 3, 18, 18),
         kind="shift", invariant=True, shifts=_ALL_SHIFTS),
    Case("lps/pool-shift-equivariant-by-stride", lambda: _lps(3), (2, 3, 8, 8), kind="shift",
         stride=2, shifts=((2, 0), (0, 2), (4, 6), (-2, 8))),
    Case("lps/pool-upsample-shift-equivariant", lambda: _PoolUp(), (2, 3, 8, 8), kind="shift",
         shifts=_ALL_SHIFTS),
    Case("lps/pool-upsample-regular-s3-shift-equivariant", lambda: _PoolUp(3, 3),
         (2, 3, 4, 9, 9), kind="shift", shifts=_ALL_SHIFTS),
    Case("lps/stack-strided-subsampling-fails", lambda: _stack("subsample"), (2, 3, 12, 12),
         kind="shift", invariant=True, shifts=_ALL_SHIFTS, expect="fail"),
    Case("lps/fixed-phase-pool-upsample-fails", lambda: _PoolUp(fixed=True), (2, 3, 8, 8),
         kind="shift", shifts=_ALL_SHIFTS, expect="fail"),
    # --- rot90 / flips: square, divisible sizes, unique largest logit -----------------------
    Case("lps/regular-d4-8x8", lambda: _lps(3), (2, 3, 8, 8, 8), "d4"),
    Case("lps/regular-d4-9x9-s3-k1", lambda: _lps(3, 3, kernel_size=1), (2, 3, 8, 9, 9), "d4"),
    Case("lps/regular-p4-pool-upsample-12x12", lambda: _PoolUp(), (2, 3, 4, 12, 12), "p4"),
    Case("lps/lift-pool-d4", _lift_lps, (2, 3, 8, 8), "d4"),
    Case("lps/regular-strided-subsampling-d4-fails", lambda: Subsample(2), (2, 3, 8, 8, 8),
         "d4", expect="fail"),
    # --- 3-D: the cube's groups (sizes divisible by s; boxes too), every shift --------------
    Case("lps3d/volume-oh", lambda: _lps(3, nd=3), (2, 3, 6, 6, 6), "oh"),
    Case("lps3d/regular-o-4x6x8", lambda: _lps(2, nd=3), (2, 2, 24, 4, 6, 8), "o"),
    Case("lps3d/regular-d4z-box-s3-k1", lambda: _lps(2, 3, 3, kernel_size=1), (2, 2, 8, 3, 6, 6),
         "d4z"),
    Case("lps3d/regular-oh-pool-upsample", lambda: _PoolUp(2, nd=3), (2, 2, 48, 4, 4, 4), "oh"),
    Case("shift/lps3d/pool-upsample-shift-equivariant", lambda: _PoolUp(2, nd=3),
         (2, 2, 4, 4, 6), kind="shift", shifts=((1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 3, 5))),
    Case("shift/lps3d/pool-shift-equivariant-by-stride", lambda: _lps(3, nd=3), (2, 3, 4, 4, 4),
         kind="shift", stride=2, shifts=((2, 0, 0), (0, 2, 4), (-2, 6, 2))),
    Case("lps3d/fixed-phase-pool-upsample-oh-fails", lambda: _PoolUp(2, fixed=True, nd=3),
         (2, 2, 48, 4, 4, 4), "oh", expect="fail"),
    Case("shift/lps3d/fixed-phase-pool-upsample-fails", lambda: _PoolUp(2, fixed=True, nd=3),
         (2, 2, 4, 4, 4), kind="shift", shifts=((1, 0, 0), (0, 0, 1)), expect="fail"),
]
