"""Shared by the planar group conv tests (``tests/test_gconv*.py``): the groups and seeded
random tensors."""

import torch

GROUPS = ["c1", "c2", "c4", "d1", "d2", "d4"]


def _rand(gen, *shape, dtype=torch.float64):
    return torch.randn(*shape, generator=gen, dtype=dtype)
