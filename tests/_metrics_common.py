"""Shared by the ``equilayers.metrics`` tests (``tests/test_metrics*.py``): a model invariant
by construction to shifts of every kind."""

from torch import nn


class ChannelMeans(nn.Module):
    """top-1 = the channel with the largest mean: invariant to shifts of every kind."""

    def forward(self, x):
        return x.mean(dim=(-2, -1))
