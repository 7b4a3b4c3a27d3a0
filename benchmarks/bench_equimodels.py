"""Whole equivariant models, a training step (forward+backward) and inference, against their
dense floors: the same network built from ``nn.Conv2d`` / ``nn.BatchNorm2d`` with the expanded
channel counts (``C * F`` channels for ``C`` fields of fiber ``F``), so the floor moves the same
activations and does the same convolution arithmetic without the group's filter expansion.

Rows, each in float32 and under bfloat16 autocast (``torch.autocast``; the floor likewise):
- ``p4m resnet``: a lifting conv and three residual blocks of ``GroupConv2d`` +
  ``GroupBatchNorm2d`` (two of them stride 2) on regular p4m fields, an ``InvariantHead``;
- ``so2 cnn``: the demo's SO(2) network (harmonic ``LiftingConv2d``/``GroupConv2d`` of rotation
  orders 0..2, ``HarmonicBatchNorm``, ``NormNonlinearity``, ``NormPool``, a linear head).

Sizes: batch 64 at 64x64 (``--quick``: batch 2 at 17x17). Meant for the GPU session
(``benchmarks/gpu_session.sh``) as much as for the CPU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks._core import BenchCase, infer

FAMILY = "equimodels"


class _Block(nn.Module):
    """``relu(bn(conv(relu(bn(conv(x))))) + shortcut(x))`` from the given conv and norm."""

    def __init__(self, conv, norm, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = conv(c_in, c_out, 3, stride, 1), norm(c_out)
        self.conv2, self.bn2 = conv(c_out, c_out, 3, 1, 1), norm(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(conv(c_in, c_out, 1, stride, 0), norm(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


def p4m_resnet(width: int, dense: bool = False) -> nn.Module:
    """The p4m ResNet (``width`` fields of 8 channels), or its dense floor (``8 * width``
    channels, the same activations)."""
    from equilayers.nn import GroupBatchNorm2d, GroupConv2d, InvariantHead, LiftingConv2d

    if dense:
        w = 8 * width

        def conv(ci, co, k, s, p):
            return nn.Conv2d(ci, co, k, s, p, bias=False)
        return nn.Sequential(
            nn.Conv2d(1, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(),
            _Block(conv, nn.BatchNorm2d, w, w, 1), _Block(conv, nn.BatchNorm2d, w, 2 * w, 2),
            _Block(conv, nn.BatchNorm2d, 2 * w, 2 * w, 2),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * w, 10))

    def gconv(ci, co, k, s, p):
        return GroupConv2d(ci, co, k, s, p, bias=False, group="p4m")
    return nn.Sequential(
        LiftingConv2d(1, width, 3, 1, 1, bias=False, group="p4m"), GroupBatchNorm2d(width),
        nn.ReLU(),
        _Block(gconv, GroupBatchNorm2d, width, width, 1),
        _Block(gconv, GroupBatchNorm2d, width, 2 * width, 2),
        _Block(gconv, GroupBatchNorm2d, 2 * width, 2 * width, 2),
        InvariantHead(2 * width, 10, group="p4m"))


def so2_cnn(width: int, dense: bool = False, max_order: int = 2) -> nn.Module:
    """The demo's SO(2) network (``width`` fields of ``2 * max_order + 1`` channels), or its
    dense floor (plain convs, batch norm and ReLU on the same channel counts)."""
    f = 2 * max_order + 1
    if dense:
        def block(ci, co, **kw):
            return [nn.Conv2d(ci * f, co * f, 5, **kw), nn.BatchNorm2d(co * f), nn.ReLU()]
        return nn.Sequential(
            nn.Conv2d(1, width * f, 5, padding=2), nn.BatchNorm2d(width * f), nn.ReLU(),
            *block(width, 2 * width, stride=2, padding=2),
            *block(2 * width, 2 * width, stride=2, padding=2),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width * f, 10))

    from equilayers.demo import _harmonic_cnn

    return _harmonic_cnn(width, max_order)  # the demo's network itself, not a copy


class Autocast(nn.Module):
    """``model`` under bfloat16 autocast on its input's device; the output in float32."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            return self.model(x).float()


def cases(quick: bool) -> list[BenchCase]:
    b, n, width = (2, 17, 2) if quick else (64, 64, 8)
    out = []
    for model, build in (("p4m resnet", p4m_resnet), ("so2 cnn", so2_cnn)):
        for precision in ("float32", "bf16 autocast"):
            tag = f"{model} {precision} b{b} {n}x{n} w{width}"
            params = {"batch": b, "size": n, "width": width, "precision": precision}

            def make(device=None, build=build, dense=False, precision=precision, mode="train"):
                torch.manual_seed(0)
                m = build(width, dense=dense).to(device)
                if precision != "float32":
                    m = Autocast(m)
                x = torch.randn(b, 1, n, n, generator=torch.Generator().manual_seed(0))
                return (m if mode == "train" else infer(m)), x.to(device)

            floor = f"dense {tag}"
            out += [
                BenchCase(floor, FAMILY, lambda device=None, make=make: make(device, dense=True),
                          params=params),
                BenchCase(f"ours {tag}", FAMILY, make, floor=floor, params=params),
                BenchCase(f"{floor} eval", FAMILY,
                          lambda device=None, make=make: make(device, dense=True, mode="eval"),
                          backward=False, params=params),
                BenchCase(f"ours {tag} eval", FAMILY,
                          lambda device=None, make=make: make(device, mode="eval"),
                          floor=f"{floor} eval", backward=False, params=params),
            ]
    return out
