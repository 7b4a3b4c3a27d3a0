"""Audit a model's invariance: ``equilayers.check_grid``, the metrics, and the audit CLI.

``build()`` returns an ordinary CNN (the kind found in the wild: stride-2 convs, zero padding, a
max pool). The script lists, without training or data, every layer that breaks exact
equivariance at a given input size and the fix (``check_grid``); measures the rotation and
shift consistency and the invariance error of the model; and runs the same audit through the
command line::

    equilayers audit examples/audit_model.py:build --input-shape 1,1,28,28 --group p4

    python examples/audit_model.py          # also an untrained p4 model for contrast
    python examples/audit_model.py --quick  # CI
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


def report(name: str, model: nn.Module, size: int, gen: torch.Generator) -> None:
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


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="CI mode: fewer models")
    args = p.parse_args(argv)
    gen = torch.Generator().manual_seed(0)

    report("plain CNN", build(), 28, gen)
    if not args.quick:
        report("p4 CNN", build_p4(), 28, gen)   # stride parity: 28 is not exact...
    report("p4 CNN", build_p4(), 29, gen)       # ...29 is (check_grid names the size)

    cmd = [sys.executable, "-m", "equilayers", "audit", f"{Path(__file__)}:build",
           "--input-shape", "1,1,28,28", "--group", "p4"]
    print("\n$ equilayers audit examples/audit_model.py:build --input-shape 1,1,28,28 "
          "--group p4")
    sys.stdout.flush()
    subprocess.run(cmd, check=True)


if __name__ == "__main__":
    main()
