"""Helpers of the U-Net tests (``test_models.py``, ``test_unet3d.py``,
``test_steerable_unet.py``): a U-Net built twice alike from a seed, and one whose batch-norm
running statistics are off their init."""

from __future__ import annotations

import torch
from conftest import seeded_rng
from torch import nn


def seeded_unet(cls: type[nn.Module], defaults: dict, seed: int = 0, **kw) -> nn.Module:
    """``cls(in_channels=2, out_channels=3, **defaults, **kw)`` built under ``seeded_rng(seed)``
    (``kw`` overrides the defaults and may set the channels)."""
    kw = {**defaults, **kw}
    with seeded_rng(seed):
        return cls(kw.pop("in_channels", 2), kw.pop("out_channels", 3), **kw)


def warm(net: nn.Module, x: torch.Tensor) -> nn.Module:
    """One train-mode forward on ``x`` (running statistics off their init), then eval mode."""
    with torch.no_grad():
        net.train()(x)
    return net.eval()
