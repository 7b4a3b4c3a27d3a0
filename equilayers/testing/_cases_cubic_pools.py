"""The cube's groups on voxels, part 2: spatial pools of 6-D maps (blur, max, average,
polyphase), the invariant head, restriction to subgroups and coset pooling, a small classifier
stack, 3-D circular-shift cases; negative controls (an even size at stride 2, a fixed-phase
subsample, a head that reads one slot, a naive restriction, a fixed-phase subsample under
shifts)."""

from __future__ import annotations

import torch
from torch import nn

from ..groups import get
from ..nn import (
    BallMask,
    BlurPool3d,
    BlurUpsample3d,
    CosetPool,
    GaussianBlurPool3d,
    GroupAvgPool3d,
    GroupConv3d,
    GroupMaxPool3d,
    InvariantHead,
    LiftingConv3d,
    PolyphasePool3d,
    PolyphaseUpsample3d,
    Restrict,
)
from ._case import Case
from ._cases_gaussian import _OffCentreMask
from ._cases_gconv import _seeded

_GROUPS = ("c4z", "d4z", "o", "oh")


def _cases_for(g: str) -> list[Case]:
    n = int(get(g).order)
    p = f"cubic/{g}"
    odd, even = (2, 2, n, 7, 7, 7), (2, 2, n, 6, 6, 6)
    return [
        Case(f"{p}/blurpool3d-map", lambda: BlurPool3d(), odd, g),
        Case(f"{p}/group-max-pool3d-k3s2", lambda: GroupMaxPool3d(3, 2, 1), odd, g),
        Case(f"{p}/group-avg-pool3d-k2", lambda: GroupAvgPool3d(2), even, g),
        Case(f"{p}/gaussian-blur-pool3d", lambda: GaussianBlurPool3d(0.66), odd, g),
        Case(f"{p}/polyphase3d", lambda: PolyphasePool3d(), even, g),
        Case(f"{p}/invariant-head", _seeded(lambda: InvariantHead(2, 3, group=g)),
             (2, 2, n, 5, 5, 5), g),
    ]


def _classifier(g: str):
    """lifting -> group conv -> blur pool -> polyphase pool -> invariant head."""
    return _seeded(lambda: nn.Sequential(
        LiftingConv3d(1, 2, 3, padding=1, group=g), nn.ReLU(),
        GroupConv3d(2, 2, 3, padding=1, group=g), nn.ReLU(),
        BlurPool3d(),                                               # 9 -> 5
        GroupConv3d(2, 2, 3, padding=1, padding_mode="circular", group=g), nn.ReLU(),
        InvariantHead(2, 3, group=g)))


def _circular_shift_stack():
    """Circular convs, a polyphase pool and the head: invariant to every integer shift."""
    return _seeded(lambda: nn.Sequential(
        LiftingConv3d(1, 2, 3, padding=1, padding_mode="circular", group="c4z"), nn.ReLU(),
        PolyphasePool3d(),
        GroupConv3d(2, 2, 3, padding=1, padding_mode="circular", group="c4z"),
        InvariantHead(2, 3, group="c4z")))


class _PoolUnpool3d(nn.Module):
    """The polyphase pair of a 3-D U-Net: pool with the index, put the samples back."""

    def __init__(self, stride: int = 2, blur_size: int = 1, fixed: bool = False) -> None:
        super().__init__()
        self.pool = PolyphasePool3d(stride, return_index=True)
        self.up = PolyphaseUpsample3d(stride, blur_size=blur_size)
        self.fixed = fixed  # a negative control: put the samples back on component 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, index = self.pool(x)
        return self.up(y, torch.zeros_like(index) if self.fixed else index)


def _fixed_phase(x: torch.Tensor) -> torch.Tensor:
    """A negative control: subsampling at the fixed phase 0 (stride 2)."""
    return x[..., ::2, ::2, ::2]


def _one_slot_head(x: torch.Tensor) -> torch.Tensor:
    """A negative control: a 'head' that reads slot 0 only (not a fiber pool)."""
    return x[:, :, 0].mean(dim=(-3, -2, -1))


def _naive_restrict(x: torch.Tensor) -> torch.Tensor:
    """A negative control: O's fields cut into blocks of 4 slots (left cosets t_j C4z), which
    C4z does not permute among themselves."""
    return x.reshape(x.shape[0], x.shape[1] * 6, 4, *x.shape[3:])


_every_stride_shift = tuple((a, b, c) for a in range(0, 8, 2) for b in range(0, 8, 2)
                            for c in range(0, 8, 2))
_every_shift = tuple((a, b, c) for a in range(4) for b in range(4) for c in range(4))

CASES = [c for g in _GROUPS for c in _cases_for(g)] + [
    Case("cubic/d4z/polyphase3d-blur", lambda: PolyphasePool3d(blur_size=3), (2, 2, 8, 6, 6, 6),
         "d4z"),
    Case("cubic/o/polyphase3d-volume", lambda: PolyphasePool3d(), (2, 2, 6, 6, 6), "o"),
    Case("cubic/oh/blurpool3d-volume", lambda: BlurPool3d(), (2, 2, 9, 9, 9), "oh"),
    Case("cubic/oh/ball-mask-map", lambda: BallMask(7, margin=10.0, sigma=1.0),
         (2, 2, 48, 7, 7, 7), "oh"),
    Case("cubic/o/ball-mask-volume-even", lambda: BallMask(6), (2, 3, 6, 6, 6), "o"),
    Case("cubic/oh/gaussian-blur-pool3d-volume-truncate4-stride3",
         lambda: GaussianBlurPool3d(0.5, 3, 1, truncate=4.0), (2, 2, 9, 9, 9), "oh"),
    # the U-Net partner of an even blur pool: exact at every size (an odd blur: fails below)
    Case("cubic/oh/blur-upsample3d-pair", lambda: BlurUpsample3d(2, 4, "circular",
                                                                 transposed=True),
         (2, 2, 48, 3, 3, 3), "oh"),
    Case("cubic/o/blur-upsample3d-pair-volume", lambda: BlurUpsample3d(2, 2, "zeros",
                                                                       transposed=True),
         (2, 2, 4, 5, 4), "o"),
    Case("cubic/oh/polyphase3d-pool-unpool", lambda: _PoolUnpool3d(), (2, 2, 48, 4, 4, 4),
         "oh"),
    Case("cubic/d4z/polyphase3d-pool-unpool-s3-blur3-box",
         lambda: _PoolUnpool3d(3, blur_size=3), (2, 2, 8, 3, 6, 6), "d4z"),
    Case("cubic/o/classifier-lift-gconv-blur-head", _classifier("o"), (2, 1, 9, 9, 9), "o"),
    Case("cubic/oh/restrict-o", lambda: Restrict("oh", "o"), (2, 2, 48, 3, 3, 3), "o",
         in_group="oh"),
    Case("cubic/o/restrict-c4z", lambda: Restrict("o", "c4z"), (2, 2, 24, 3, 3, 3), "c4z",
         in_group="o"),
    Case("cubic/oh/restrict-d4z", lambda: Restrict("oh", "d4z"), (2, 2, 48, 3, 3, 3), "d4z",
         in_group="oh"),
    Case("cubic/o/coset-pool-c4z", lambda: CosetPool("o", "c4z"), (2, 2, 24, 3, 3, 3), "o"),
    # integer circular shifts of volumes
    Case("shift/cubic/polyphase3d-stride-multiples", lambda: PolyphasePool3d(),
         (2, 2, 8, 8, 8), kind="shift", shifts=_every_stride_shift, stride=2),
    Case("shift/cubic/circular-stack-every-shift-invariant", _circular_shift_stack(),
         (2, 1, 4, 4, 4), kind="shift", shifts=_every_shift, invariant=True),
    Case("shift/cubic/polyphase3d-pool-unpool-every-shift", lambda: _PoolUnpool3d(),
         (2, 2, 4, 4, 4), kind="shift", shifts=_every_shift),
    # Negative controls: each must fail the harness.
    Case("shift/cubic/polyphase3d-unpool-fixed-component-fails",
         lambda: _PoolUnpool3d(fixed=True), (2, 2, 4, 4, 4), kind="shift",
         shifts=((1, 0, 0), (0, 1, 1)), expect="fail"),
    Case("cubic/o/polyphase3d-unpool-even-blur-fails", lambda: _PoolUnpool3d(blur_size=2),
         (2, 2, 24, 4, 4, 4), "o", expect="fail"),
    Case("cubic/o/blurpool3d-even-size-fails", lambda: BlurPool3d(), (2, 2, 24, 6, 6, 6), "o",
         expect="fail"),
    Case("cubic/oh/ball-mask-offcentre-fails", lambda: _OffCentreMask(7, BallMask),
         (2, 2, 48, 7, 7, 7), "oh", expect="fail"),
    Case("cubic/oh/gaussian-blur-pool3d-even-size-fails", lambda: GaussianBlurPool3d(0.66),
         (2, 2, 48, 6, 6, 6), "oh", expect="fail"),
    Case("cubic/o/blur-upsample3d-odd-blur-fails", lambda: BlurUpsample3d(2, 3, "circular"),
         (2, 2, 24, 3, 3, 3), "o", expect="fail"),
    Case("cubic/o/group-max-pool3d-k2-odd-fails", lambda: GroupMaxPool3d(2),
         (2, 2, 24, 7, 7, 7), "o", expect="fail"),
    Case("cubic/o/fixed-phase-subsample-fails", lambda: _fixed_phase, (2, 2, 24, 6, 6, 6), "o",
         in_rep="regular", out_rep="regular", expect="fail"),
    Case("cubic/o/one-slot-head-fails", lambda: _one_slot_head, (2, 2, 24, 5, 5, 5), "o",
         in_rep="regular", out_rep="invariant", expect="fail"),
    Case("cubic/o/naive-restrict-c4z-fails", lambda: _naive_restrict, (2, 2, 24, 3, 3, 3),
         "c4z", in_group="o", in_rep="regular", out_rep="regular", expect="fail"),
    Case("shift/cubic/fixed-phase-subsample-fails", lambda: lambda x: _fixed_phase(x).mean(
        dim=(-3, -2, -1)), (2, 2, 8, 8, 8), kind="shift", shifts=((1, 0, 0), (0, 0, 1)),
        invariant=True, expect="fail"),
]
