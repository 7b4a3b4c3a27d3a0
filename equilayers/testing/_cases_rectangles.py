"""Rectangles and boxes: a quarter turn maps an ``H x W`` input to ``W x H`` (a rotation of a
volume permutes its sizes with its dims), and every layer whose windows tile each dim is exact
on it, as on a square. One row per layer family at sizes that differ per dim; negative
controls: the same layers where one dim does not tile (an even size at stride 2), and a plain
U-Net."""

from __future__ import annotations

from torch import nn

from ..models import UNet
from ..nn import (
    BlurPool2d,
    BlurPool3d,
    GroupConv2d,
    GroupConv3d,
    GroupConvTranspose2d,
    GroupMaxPool2d,
    GroupMaxPool3d,
    InvariantHead,
    LearnablePolyphasePool2d,
    LiftingConv2d,
    LiftingConv3d,
    MaxBlurPool2d,
    PolyphasePool2d,
    PolyphasePool3d,
    SteerableConv3d,
)
from ._case import Case
from ._cases_gconv import _seeded


def _unet(group, down):
    return _seeded(lambda: UNet(2, 3, group=group, depth=2, width=2, down=down).eval())


def _planar() -> list[Case]:
    p = "rectangles"
    return [
        Case(f"{p}/lifting-p4m-9x13", _seeded(lambda: LiftingConv2d(2, 3, 3, padding=1,
                                                                    group="p4m")),
             (2, 2, 9, 13), "p4m"),
        Case(f"{p}/lifting-p4m-stride2-9x13", _seeded(
            lambda: LiftingConv2d(2, 3, 3, stride=2, padding=1, group="p4m")), (2, 2, 9, 13),
            "p4m"),
        Case(f"{p}/group-p4-stride2-7x11", _seeded(
            lambda: GroupConv2d(2, 2, 3, stride=2, padding=1, group="p4")), (2, 2, 4, 7, 11),
            "p4"),
        Case(f"{p}/group-so2-harmonic-9x12", _seeded(
            lambda: GroupConv2d(2, 2, 5, padding=2, group="so2", max_order=2)),
            (2, 2, 5, 9, 12), "so2"),
        Case(f"{p}/transposed-p4m-stride2-5x8", _seeded(
            lambda: GroupConvTranspose2d(2, 2, 3, stride=2, padding=1, group="p4m")),
            (2, 2, 8, 5, 8), "p4m"),
        Case(f"{p}/blur-pool-d4-9x13", lambda: BlurPool2d(2), (2, 2, 8, 9, 13), "d4"),
        Case(f"{p}/max-blur-pool-d4-8x12", lambda: MaxBlurPool2d(2), (2, 2, 8, 8, 12), "d4"),
        Case(f"{p}/polyphase-d4-8x12", lambda: PolyphasePool2d(2), (2, 2, 8, 8, 12), "d4"),
        Case(f"{p}/learned-polyphase-p4m-8x12", _seeded(
            lambda: LearnablePolyphasePool2d(2, 2).eval()), (2, 2, 8, 8, 12), "p4m"),
        Case(f"{p}/group-max-pool-p4m-9x13", lambda: GroupMaxPool2d(3, 2, 1),
             (2, 2, 8, 9, 13), "p4m"),
        Case(f"{p}/invariant-head-p4m-9x13", _seeded(lambda: InvariantHead(2, 3, group="p4m")),
             (2, 2, 8, 9, 13), "p4m"),
        *(Case(f"{p}/unet-p4m-{down}-16x24", _unet("p4m", down), (2, 2, 16, 24), "p4m")
          for down in ("blur", "polyphase", "max", "learned")),
        # negative controls: an even height at stride 2 (the width tiles), a plain U-Net
        Case(f"{p}/lifting-p4m-stride2-10x13-fails", _seeded(
            lambda: LiftingConv2d(2, 3, 3, stride=2, padding=1, group="p4m")),
            (2, 2, 10, 13), "p4m", expect="fail"),
        Case(f"{p}/unet-plain-16x24-fails", _unet(None, "blur"), (2, 2, 16, 24), "p4m",
             expect="fail"),
    ]


def _volumes() -> list[Case]:
    p = "rectangles"
    return [
        Case(f"{p}/lifting-o-stride2-7x9x11", _seeded(
            lambda: LiftingConv3d(2, 2, 3, stride=2, padding=1, group="o")), (2, 2, 7, 9, 11),
            "o"),
        Case(f"{p}/group-c4z-5x6x7", _seeded(lambda: GroupConv3d(2, 2, 3, padding=1,
                                                                 group="c4z")),
             (2, 2, 4, 5, 6, 7), "c4z"),
        Case(f"{p}/group-oh-5x6x7", _seeded(lambda: GroupConv3d(1, 1, 3, padding=1,
                                                                group="oh")),
             (1, 1, 48, 5, 6, 7), "oh"),
        Case(f"{p}/steerable-so3-on-o-5x6x7", _seeded(
            lambda: SteerableConv3d(1, 2, 3, padding=1, in_max_order=1, max_order=1)),
            (2, 1, 4, 5, 6, 7), "o"),
        Case(f"{p}/blur-pool3d-o-7x9x11", lambda: BlurPool3d(2), (1, 2, 24, 7, 9, 11), "o"),
        Case(f"{p}/polyphase3d-o-4x6x8", lambda: PolyphasePool3d(2), (1, 2, 24, 4, 6, 8), "o"),
        Case(f"{p}/group-max-pool3d-d4z-7x9x11", lambda: GroupMaxPool3d(3, 2, 1),
             (1, 2, 8, 7, 9, 11), "d4z"),
        # negative control: an even width at stride 2
        Case(f"{p}/lifting-o-stride2-7x9x10-fails", _seeded(
            lambda: LiftingConv3d(2, 2, 3, stride=2, padding=1, group="o")), (2, 2, 7, 9, 10),
            "o", expect="fail"),
        Case(f"{p}/plain-conv3d-o-5x6x7-fails", _seeded(lambda: nn.Conv3d(2, 2, 3, padding=1)),
             (2, 2, 5, 6, 7), "o", in_rep="trivial", out_rep="trivial", expect="fail"),
    ]


CASES: list[Case] = _planar() + _volumes()
