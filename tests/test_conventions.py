"""The (B, C, F, H, W) layout makes stock torch.nn layers equivariant on regular fields."""

import torch
from conftest import seeded_rng
from torch import nn

from equilayers.testing import assert_equivariant


def test_dropout3d_masks_whole_fields(gen):
    drop = nn.Dropout3d(0.5)
    x = torch.randn(4, 6, 8, 5, 5, generator=gen, dtype=torch.float64)

    def seeded(t):
        with seeded_rng(7):
            return drop(t)

    assert_equivariant(seeded, x, "d4")


def test_pointwise_activations(gen):
    x = torch.randn(2, 3, 4, 6, 6, generator=gen, dtype=torch.float64)
    for act in [nn.ReLU(), nn.GELU(), nn.SiLU(), nn.Tanh(), nn.LeakyReLU(0.1)]:
        assert_equivariant(act, x, "c4")


def test_batchnorm3d_eval_and_train(gen):
    bn = nn.BatchNorm3d(3).double()
    x = torch.randn(4, 3, 8, 5, 5, generator=gen, dtype=torch.float64)
    assert_equivariant(bn, x, "d4")
    bn.eval()
    assert_equivariant(bn, x, "d4")
