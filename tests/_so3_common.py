"""Shared by the SO(3)/O(3) tests (``tests/test_so3*.py``, ``tests/test_escnn_so3.py``): the
float64 shorthand, a Gaussian smoothing of volumes and the inscribed ball, with which the
off-grid rotations are measured."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

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
