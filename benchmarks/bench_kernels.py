"""The dispatched paths of the anti-aliasing ops against their forced references and floors.

Each op runs twice: as dispatched (the Triton kernel on CUDA; on CPU the fast PyTorch path,
forward and backward, see ``equilayers.kernels._cpu``) and inside
``equilayers.kernels.use_reference()``. Floors: ``MaxPool2d(2)`` and ``AvgPool2d(2)``.

Bandwidth floor: ``copy x[..., ::2, ::2]`` (in each layout) reads the input and writes the
output once; every pool row names it (``bandwidth``) and its forward is reported as a multiple
of it (the ``x bw`` column).

The bandwidth goal (``BlurPool2d`` at >= 80% of the device's copy bandwidth) is read from the
``BlurPool2d forward vs copy`` rows: a stride-2 blur pool reads the input once and writes a
quarter of it (1.25x the input's bytes), ``x.clone()`` reads and writes it (2x), so 80% of the
copy's bandwidth is a forward time of at most 1.25 / (0.8 * 2) = 0.78x the copy's.
"""

from __future__ import annotations

import torch
from torch import nn

from ._core import BenchCase, Subsample
from ._core import pool_sizes as _sizes
from ._core import seeded_input as _input

FAMILY = "kernels"



class _Clone(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clone()


def _forced_reference(module: nn.Module):
    from equilayers import kernels

    def fn(x):
        with kernels.use_reference():
            return module(x)
    return fn


def cases(quick: bool) -> list[BenchCase]:
    from equilayers.nn import BlurPool2d, MaxBlurPool2d, PolyphasePool2d

    out = []
    for b, c, n in _sizes(quick):
        tag = f"b{b} c{c} {n}x{n}"
        params = {"batch": b, "channels": c, "size": n}

        def make(build, wrap=None, b=b, c=c, n=n, fmt=torch.contiguous_format):
            def _make(device=None):
                module = build().to(device)
                x = _input(b, c, n, device).contiguous(memory_format=fmt)
                return (wrap(module) if wrap else module), x
            return _make

        cl = torch.channels_last
        bw_cl, bw = f"copy x[..., ::2, ::2] channels_last {tag}", f"copy x[..., ::2, ::2] {tag}"
        out += [  # channels_last inputs (floors in the same layout)
            BenchCase(bw_cl, FAMILY, make(Subsample, fmt=cl), backward=False, params=params),
            BenchCase(f"MaxPool2d(2) channels_last {tag}", FAMILY,
                      make(lambda: nn.MaxPool2d(2), fmt=cl), params=params),
            BenchCase(f"AvgPool2d(2) channels_last {tag}", FAMILY,
                      make(lambda: nn.AvgPool2d(2), fmt=cl), params=params),
            BenchCase(f"MaxBlurPool2d dispatched channels_last {tag}", FAMILY,
                      make(MaxBlurPool2d, fmt=cl), floor=f"MaxPool2d(2) channels_last {tag}",
                      bandwidth=bw_cl, params=params),
            BenchCase(f"BlurPool2d dispatched channels_last {tag}", FAMILY,
                      make(BlurPool2d, fmt=cl), floor=f"AvgPool2d(2) channels_last {tag}",
                      bandwidth=bw_cl, params=params),
            BenchCase(f"BlurPool2d reference channels_last {tag}", FAMILY,
                      make(BlurPool2d, _forced_reference, fmt=cl),
                      floor=f"AvgPool2d(2) channels_last {tag}", bandwidth=bw_cl, params=params),
        ]

        max_floor, avg_floor = f"MaxPool2d(2) {tag}", f"AvgPool2d(2) {tag}"
        out += [
            BenchCase(bw, FAMILY, make(Subsample), backward=False, params=params),
            BenchCase(max_floor, FAMILY, make(lambda: nn.MaxPool2d(2)), params=params),
            BenchCase(avg_floor, FAMILY, make(lambda: nn.AvgPool2d(2)), params=params),
            BenchCase(f"MaxBlurPool2d dispatched {tag}", FAMILY, make(MaxBlurPool2d),
                      floor=max_floor, bandwidth=bw, params=params, construct=MaxBlurPool2d),
            BenchCase(f"MaxBlurPool2d reference {tag}", FAMILY,
                      make(MaxBlurPool2d, _forced_reference), floor=max_floor, bandwidth=bw,
                      params=params),
            BenchCase(f"BlurPool2d dispatched {tag}", FAMILY, make(BlurPool2d),
                      floor=avg_floor, bandwidth=bw, params=params, construct=BlurPool2d),
            BenchCase(f"BlurPool2d reference {tag}", FAMILY,
                      make(BlurPool2d, _forced_reference), floor=avg_floor, bandwidth=bw,
                      params=params),
            # A ResNet stem's MaxPool2d(3, 2, 1), as antialias() converts it.
            BenchCase(f"MaxPool2d(3, 2, 1) {tag}", FAMILY,
                      make(lambda: nn.MaxPool2d(3, 2, 1)), params=params),
            BenchCase(f"MaxBlurPool2d(3, 2, 1) dispatched {tag}", FAMILY,
                      make(lambda: MaxBlurPool2d(3, 2, 1)),
                      floor=f"MaxPool2d(3, 2, 1) {tag}", bandwidth=bw, params=params),
            BenchCase(f"MaxBlurPool2d(3, 2, 1) reference {tag}", FAMILY,
                      make(lambda: MaxBlurPool2d(3, 2, 1), _forced_reference),
                      floor=f"MaxPool2d(3, 2, 1) {tag}", bandwidth=bw, params=params),
            BenchCase(f"copy x.clone() {tag}", FAMILY, make(lambda: _Clone()), backward=False,
                      params=params),
            BenchCase(f"BlurPool2d forward vs copy {tag}", FAMILY, make(BlurPool2d),
                      floor=f"copy x.clone() {tag}", backward=False, params=params),
        ]
        out += [
            BenchCase(f"PolyphasePool2d dispatched {tag}", FAMILY, make(PolyphasePool2d),
                      floor=max_floor, bandwidth=bw, params=params, construct=PolyphasePool2d),
            BenchCase(f"PolyphasePool2d reference {tag}", FAMILY,
                      make(PolyphasePool2d, _forced_reference), floor=max_floor,
                      bandwidth=bw, params=params),
        ]
    return out
