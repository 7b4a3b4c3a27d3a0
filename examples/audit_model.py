"""Audit a model's invariance: ``equilayers.check_grid``, the metrics, and the audit CLI.

``build()`` returns an ordinary CNN (the kind found in the wild: stride-2 convs, zero padding, a
max pool). The script lists, without training or data, every layer that breaks exact
equivariance at a given input size and the fix (``check_grid``); measures the p4 and the
circular-shift invariance errors of the logits in float64 and the first layer that loses p4
equivariance (``metrics``), for the plain CNN at 28x28 and a p4 CNN at 29x29 (and at 28x28,
without ``--quick``); and runs the same audit through the command line (``equilayers audit``,
whose report adds the rotation and shift consistency, and says why the consistency of an
untrained model on noise means nothing)::

    equilayers audit examples/audit_model.py:build --input-shape 1,1,28,28 --group p4

    python examples/audit_model.py          # also the p4 model at 28x28, for contrast
    python examples/audit_model.py --quick  # CI: without it
    python examples/audit_model.py --plot audit.png  # also a bar chart (matplotlib)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import torch
from torch import nn

import equilayers
from equilayers import metrics
from equilayers.nn import GroupConv2d, InvariantHead, LiftingConv2d


def build() -> nn.Module:
    """A plain CNN: the audit's subject (``FILE.py:build`` for the CLI)."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, 2, 1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, 2, 1), nn.ReLU(), nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10),
    ).eval()


def build_p4() -> nn.Module:
    """The same layout with p4 group convolutions and an invariant head."""
    torch.manual_seed(0)
    return nn.Sequential(
        LiftingConv2d(1, 4, 3, 2, 1, group="p4"), nn.ReLU(),
        GroupConv2d(4, 8, 3, 2, 1, group="p4"), nn.ReLU(),
        InvariantHead(8, 10, group="p4"),
    ).eval()


def report(name: str, model: nn.Module, size: int, gen: torch.Generator
           ) -> tuple[int, float, float]:
    """Print the audit of ``model`` at ``size``; return its number of check_grid findings, its
    p4 and its circular-shift invariance error."""
    print(f"\n== {name} at {size}x{size} ==")
    findings = equilayers.check_grid(model, (1, 1, size, size), "p4")
    print(f"check_grid: {len(findings)} finding(s)")
    for f in findings[:6]:
        print(f"  {f}")
    x = torch.randn(4, 1, size, size, generator=gen, dtype=torch.float64)
    model.double()
    err = metrics.invariance_error(model, x, "p4")
    rows = metrics.layerwise_equivariance(model, x, "p4")
    lost = next((r for r in rows if r.lost), None)
    shift = metrics.layerwise_shift_equivariance(model, x)[-1]
    model.float()
    print(f"p4 invariance error of the logits: {err:.1e} (float64); "
          + (f"first layer that loses p4 equivariance: {lost.name} ({lost.kind})"
             if lost else "no layer loses p4 equivariance"))
    print(f"circular-shift invariance error of the logits: {shift.error:.1e} ({shift.worst})")
    # (consistency, the share of transformed pairs with the same top-1 class, needs a trained
    #  model and real data: an untrained model predicts one class for noise and scores 100%)
    return len(findings), err, shift.error


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="CI mode: fewer models")
    p.add_argument("--plot", metavar="PATH", help="also write a bar chart of the audits "
                   "(needs matplotlib)")
    args = p.parse_args(argv)
    # here, not at the top: `equilayers audit FILE.py:build` loads this file without examples/
    # on sys.path
    from _plot import grouped_bars, pyplot, run_label, save

    plt = pyplot(args.plot) if args.plot else None
    gen = torch.Generator().manual_seed(0)

    rows = {"plain CNN, 28x28": report("plain CNN", build(), 28, gen)}
    if not args.quick:  # stride parity: 28 is not exact...
        rows["p4 CNN, 28x28"] = report("p4 CNN", build_p4(), 28, gen)
    rows["p4 CNN, 29x29"] = report("p4 CNN", build_p4(), 29, gen)  # ...29 is (check_grid says)

    cmd = [sys.executable, "-m", "equilayers", "audit", f"{Path(__file__)}:build",
           "--input-shape", "1,1,28,28", "--group", "p4"]
    print("\n$ equilayers audit examples/audit_model.py:build --input-shape 1,1,28,28 "
          "--group p4")
    sys.stdout.flush()
    subprocess.run(cmd, check=True)
    if plt is not None:
        fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(8.4, 3.0), width_ratios=[2, 3])
        names = [n.replace(", ", "\n") for n in rows]
        grouped_bars(ax0, names, {"findings": [r[0] for r in rows.values()]}, fmt="%d")
        ax0.set_ylabel("check_grid findings (group p4)")
        ax0.set_ylim(0, max(r[0] for r in rows.values()) + 1.5)
        grouped_bars(ax1, names, {"p4 rotations": [r[1] for r in rows.values()],
                                  "circular shifts": [r[2] for r in rows.values()]},
                     fmt="%.0e", log=True)
        ax1.set_ylabel("logit invariance error (float64)")
        fig.suptitle(f"{run_label('audit_model.py', args.quick)}: untrained models, "
                     "random float64 inputs (4 per audit), no data needed", fontsize=8)
        save(plt, fig, args.plot)


if __name__ == "__main__":
    main()
