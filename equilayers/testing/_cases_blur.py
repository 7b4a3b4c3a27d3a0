"""Anti-aliasing cases: blur pools, max-blur pool, blur conv, polyphase pooling (and controls)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..groups import act_spatial, get
from ..nn import (
    BlurConv2d,
    BlurPool2d,
    BlurUpsample2d,
    MaxBlurPool2d,
    PolyphasePool2d,
    PolyphaseUpsample2d,
)
from ._case import Case
from ._case import seeded as _seeded
from .controls import symmetrized_conv2d

_ALL_SHIFTS = ((1, 0), (0, 1), (1, 1), (3, 5), (-2, 7))


class GlobalMean(nn.Module):
    """Mean over the spatial dims (and the fiber of 5-D maps): an invariant head."""

    out_rep = "invariant"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2).mean(-1)


class Subsample(nn.Module):
    """Plain strided subsampling ``x[..., ::s, ::s]`` (the aliasing control)."""

    def __init__(self, stride: int = 2) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., :: self.stride, :: self.stride]


class LiftingConv(nn.Module):
    """A regular lifting correlation with circular padding: slot ``g`` correlates with the
    filter moved by ``g``. Exactly equivariant for D4 on square inputs (odd kernel)."""

    in_rep = "trivial"
    out_rep = "regular"

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 group: str = "d4") -> None:
        super().__init__()
        self.group = get(group)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size,
                                               kernel_size, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.weight.shape[-1] // 2
        xp = F.pad(x, (p, p, p, p), mode="circular")
        outs = [F.conv2d(xp, act_spatial(self.weight, g)) for g in self.group.elements()]
        return torch.stack(outs, dim=2)


def _circ_conv(cin: int, cout: int, k: int = 3) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, padding=k // 2, padding_mode="circular").double()


def _stack(pool: type | None, *, stride: int = 2, **kw) -> nn.Module:
    def make_pool():
        if pool is PolyphasePool2d:
            return PolyphasePool2d(stride, **kw)
        if pool is nn.MaxPool2d:
            return nn.MaxPool2d(stride)
        return Subsample(stride)
    return nn.Sequential(_circ_conv(3, 6), nn.ReLU(), make_pool(), _circ_conv(6, 8), nn.ReLU(),
                         make_pool(), GlobalMean())


def _sym_stack() -> nn.Module:
    """D4-symmetric circular convs, polyphase pools, global mean: shift- and p4m-invariant."""
    def conv(cin, cout):
        c = symmetrized_conv2d(cin, cout, 3, "d4")
        c.padding_mode = "circular"
        return c
    return nn.Sequential(conv(3, 6), nn.ReLU(), PolyphasePool2d(2), conv(6, 8), nn.Tanh(),
                         PolyphasePool2d(2), GlobalMean())


def _lift_pool(blur_size: int = 1) -> nn.Module:
    m = nn.Sequential(LiftingConv(3, 4), nn.ReLU(), PolyphasePool2d(2, blur_size=blur_size))
    # torch's stub of Module.__setattr__ takes tensors and modules only; any value is allowed
    m.in_rep, m.out_rep = "trivial", "regular"  # type: ignore[assignment]
    return m


class _PoolUnpool(nn.Module):
    def __init__(self, stride: int = 2, blur_size: int = 1) -> None:
        super().__init__()
        self.pool = PolyphasePool2d(stride, return_index=True)
        self.up = PolyphaseUpsample2d(stride, blur_size=blur_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(*self.pool(x))


CASES = [
    # --- blur pools: shifts by multiples of the stride (circular), negative controls ---------
    Case("blur/blurpool2d-circular-shift-s2", lambda: BlurPool2d(padding_mode="circular"),
         (2, 3, 10, 10), kind="shift", stride=2, shifts=((2, 0), (0, 2), (4, 6), (-2, 8))),
    Case("blur/blurpool2d-circular-shift-s3-k4",
         lambda: BlurPool2d(kernel_size=4, stride=3, padding_mode="circular"), (2, 3, 12, 12),
         kind="shift", stride=3, shifts=((3, 0), (0, 3), (6, 9))),
    Case("blur/blurpool2d-regular-circular-shift",
         lambda: BlurPool2d(kernel_size=5, padding_mode="circular"), (2, 2, 8, 10, 12),
         kind="shift", stride=2, shifts=((2, 0), (0, 2), (4, 6))),
    Case("blur/blurpool2d-zero-padding-shift-fails", lambda: BlurPool2d(padding_mode="zeros"),
         (2, 3, 10, 10), kind="shift", stride=2, shifts=((2, 0), (0, 2)), expect="fail"),
    Case("blur/blurconv2d-circular-shift",
         _seeded(lambda: BlurConv2d(3, 4, 3, padding=1, padding_mode="circular",
                                    dtype=torch.float64)),
         (2, 3, 10, 10), kind="shift", stride=2, shifts=((2, 0), (0, 2), (4, 6))),
    # --- blur pools: rot90 / flips on odd sizes with (N - 1) % stride == 0 -------------------
    Case("blur/blurpool2d-p4m-9x9", lambda: BlurPool2d(), (2, 3, 9, 9), "p4m"),
    Case("blur/blurpool2d-regular-d4-9x9", lambda: BlurPool2d(kernel_size=5,
                                                              padding_mode="circular"),
         (2, 3, 8, 9, 9), "d4"),
    Case("blur/maxblurpool2d-regular-d4-9x9", lambda: MaxBlurPool2d(3, 2, padding=1),
         (2, 3, 8, 9, 9), "d4"),
    # ceil_mode: exact where it adds no window ((9 + 2 - 3) % 2 == 0), not where it adds one
    Case("blur/maxblurpool2d-ceil-regular-d4-9x9",
         lambda: MaxBlurPool2d(3, 2, padding=1, ceil_mode=True), (2, 3, 8, 9, 9), "d4"),
    Case("blur/maxblurpool2d-ceil-regular-d4-8x8-fails",
         lambda: MaxBlurPool2d(3, 2, padding=1, ceil_mode=True), (2, 3, 8, 8, 8), "d4",
         expect="fail"),
    # an even blur is exact at 9x9 in floor mode (its extra pad pixel is unread), where
    # ceil_mode adds a window: the same module and size, ceil_mode alone breaks it
    Case("blur/maxblurpool2d-even-blur-regular-d4-9x9", lambda: MaxBlurPool2d(2, blur_size=2),
         (2, 3, 8, 9, 9), "d4"),
    Case("blur/maxblurpool2d-even-blur-ceil-regular-d4-9x9-fails",
         lambda: MaxBlurPool2d(2, blur_size=2, ceil_mode=True), (2, 3, 8, 9, 9), "d4",
         expect="fail"),
    Case("blur/blurpool2d-regular-d4-even-size-fails", lambda: BlurPool2d(), (2, 3, 8, 8, 8),
         "d4", expect="fail"),
    # --- polyphase: exact invariance to every integer circular shift -------------------------
    Case("polyphase/stack-shift-invariant-s2", _seeded(lambda: _stack(PolyphasePool2d)),
         (2, 3, 12, 12), kind="shift", invariant=True, shifts=_ALL_SHIFTS),
    Case("polyphase/stack-shift-invariant-s3-linf",
         _seeded(lambda: _stack(PolyphasePool2d, stride=3, criterion="linf")),
         (2, 3, 18, 18), kind="shift", invariant=True, shifts=_ALL_SHIFTS),
    Case("polyphase/stack-shift-invariant-blur3",
         _seeded(lambda: _stack(PolyphasePool2d, blur_size=3)),
         (2, 3, 12, 12), kind="shift", invariant=True, shifts=_ALL_SHIFTS),
    Case("polyphase/stack-strided-subsampling-fails", _seeded(lambda: _stack(None)),
         (2, 3, 12, 12), kind="shift", invariant=True, shifts=_ALL_SHIFTS, expect="fail"),
    Case("polyphase/stack-maxpool-fails", _seeded(lambda: _stack(nn.MaxPool2d)),
         (2, 3, 12, 12), kind="shift", invariant=True, shifts=_ALL_SHIFTS, expect="fail"),
    Case("polyphase/pool-unpool-shift-equivariant", lambda: _PoolUnpool(),
         (2, 3, 8, 8), kind="shift", shifts=_ALL_SHIFTS),
    Case("polyphase/pool-unpool-s3-blur3-shift-equivariant",
         lambda: _PoolUnpool(3, blur_size=3), (2, 3, 9, 9), kind="shift", shifts=_ALL_SHIFTS),
    # --- polyphase: rot90 / flips (square, divisible sizes, unique largest norm) -------------
    Case("polyphase/regular-d4-8x8", lambda: PolyphasePool2d(2), (2, 3, 8, 8, 8), "d4"),
    Case("polyphase/regular-d4-9x9-s3", lambda: PolyphasePool2d(3, criterion="l1"),
         (2, 3, 8, 9, 9), "d4"),
    Case("polyphase/lift-pool-d4", _seeded(_lift_pool), (2, 3, 8, 8), "d4"),
    Case("polyphase/lift-pool-blur3-d4", _seeded(lambda: _lift_pool(3)), (2, 3, 8, 8), "d4"),
    Case("polyphase/p4m-symmetric-stack-invariant", _seeded(_sym_stack), (2, 3, 12, 12), "p4m",
         out_rep="invariant"),
    Case("polyphase/p4m-symmetric-stack-shift-invariant", _seeded(_sym_stack), (2, 3, 12, 12),
         kind="shift", invariant=True, shifts=_ALL_SHIFTS),
    Case("polyphase/regular-strided-subsampling-d4-fails", lambda: Subsample(2),
         (2, 3, 8, 8, 8), "d4", expect="fail"),
    # --- blur upsampling: the U-Net partner of an even blur pool, exact at every size --------
    Case("blur/blur-upsample2d-pair-regular-d4", lambda: BlurUpsample2d(2, 4, "circular",
                                                                     transposed=True),
         (2, 3, 8, 5, 5), "d4"),
    Case("blur/blur-upsample2d-nearest-p4m-rectangle", lambda: BlurUpsample2d(
        2, 2, "zeros", transposed=True), (2, 3, 4, 6), "p4m"),
    # an odd blur at an even scale: off centre, the negative control
    Case("blur/blur-upsample2d-odd-blur-d4-fails", lambda: BlurUpsample2d(2, 3, "circular"),
         (2, 3, 8, 5, 5), "d4", expect="fail"),
]
