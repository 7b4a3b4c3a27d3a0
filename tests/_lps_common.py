"""Shared by the learnable polyphase sampling tests (``tests/test_lps*.py``, not the 3-D
``test_lps3d.py``): a seeded float64 pool in evaluation mode and the polyphase components of a
map."""

import torch
from conftest import seeded_rng

from equilayers.nn import LearnablePolyphasePool2d


def _pool(c=3, s=2, **kw):
    with seeded_rng(0):
        return LearnablePolyphasePool2d(c, s, dtype=torch.float64, **kw).eval()


def _components(x, s):
    return [x[..., i::s, j::s] for i in range(s) for j in range(s)]


class WithIndex(torch.nn.Module):
    """An upsampling that takes ``(x, index)`` bound to a fixed ``index`` (one input, as the
    layout tests of ``tests/test_blur_upsample*.py`` call every module)."""

    def __init__(self, up, index):
        super().__init__()
        self.up, self.index = up, index

    def forward(self, x):
        return self.up(x, self.index)
