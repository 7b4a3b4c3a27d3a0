"""Shared by the SO(3)/O(3) tests (``tests/test_so3*.py``, ``tests/test_escnn_so3.py``): the
float64 shorthand, a Gaussian smoothing of volumes and the inscribed ball, with which the
off-grid rotations are measured (:func:`off_grid`)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from equilayers.groups import get

D64 = torch.float64


def _smooth(x: torch.Tensor, sigma: float) -> torch.Tensor:
    r = int(math.ceil(3 * sigma))
    t = torch.arange(-r, r + 1, dtype=x.dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    shape = x.shape
    v = x.reshape(-1, 1, *shape[-3:])
    for dim in range(3):
        view = [1, 1, 1, 1, 1]
        view[2 + dim] = -1
        pad = [0] * 6
        pad[2 * (2 - dim)] = pad[2 * (2 - dim) + 1] = r
        v = F.conv3d(F.pad(v, pad, mode="replicate"), k.view(view))
    return v.reshape(shape)


def _ball(n: int, margin: float) -> torch.Tensor:
    c = (n - 1) / 2
    i = torch.arange(n, dtype=D64) - c
    r = torch.sqrt(i[:, None, None] ** 2 + i[None, :, None] ** 2 + i[None, None, :] ** 2)
    return (r <= c - margin).to(D64)


def off_grid(conv: nn.Module, group: str = "so3", n: int = 21, rotations: int = 5,
             seed: int = 0, l_in: int | None = None, margin: float = 2.0
             ) -> tuple[float, float]:
    """``(error, floor)``: the worst relative error of ``conv`` over random rotations on a
    smoothed random volume, inside the output's inscribed ball (``margin`` voxels inside its
    border; a transposed conv's output is larger than its input), and the worst interpolation
    floor (the output rotated forth and back)."""
    gen = torch.Generator().manual_seed(seed)
    shape = (1, 2, n, n, n) if l_in is None else (1, 2, (l_in + 1) ** 2, n, n, n)
    x = _smooth(torch.randn(shape, generator=gen, dtype=D64), 2.0)
    in_type = conv.in_type
    out_type = conv.out_type
    g = get(group)
    err = floor = 0.0
    with torch.no_grad():
        y = conv(x)
        mask = _ball(y.shape[-1], margin)
        for _ in range(rotations):
            e = g.random_element(gen)
            y_g = conv(in_type.act(e, x))
            gy = out_type.act(e, y)
            back = out_type.act(e.inverse(), gy)
            err = max(err, float(((y_g - gy) * mask).norm() / (gy * mask).norm()))
            floor = max(floor, float(((back - y) * mask).norm() / (y * mask).norm()))
    return err, floor
