"""layerwise_shift_equivariance at input sizes that strides do not divide (the odd sizes the
library recommends for exact rotations): the loss is laid on the stride, not on the head."""

import torch
from conftest import seeded_rng
from torch import nn

from equilayers import metrics
from equilayers.nn import GroupConv2d, InvariantHead, LiftingConv2d


def _p4_even() -> nn.Module:  # the tester's model: two stride-2 group convs, invariant head
    with seeded_rng(0):
        return nn.Sequential(
            LiftingConv2d(1, 4, 3, 2, 1, group="p4"), nn.ReLU(),
            GroupConv2d(4, 8, 3, 2, 1, group="p4"), nn.ReLU(),
            InvariantHead(8, 10, group="p4")).double().eval()


def test_odd_size_lays_the_shift_loss_on_the_first_stride_not_the_head():
    """At 29x29 no shift compares after the stride-2 layer 0 (29 -> 15): the 1-pixel shift's
    error first shows at the exactly invariant head, which was flagged; now layer 0 is, and
    its note says that comparability ends there."""
    x = torch.randn(2, 1, 29, 29, dtype=torch.float64,
                    generator=torch.Generator().manual_seed(0))
    rows = metrics.layerwise_shift_equivariance(_p4_even(), x)
    assert [r.name for r in rows if r.lost] == ["0"]
    assert rows[0].error != rows[0].error  # n/a: not compared
    assert "shift comparability ends here" in rows[0].note
    assert "comparability ends" not in rows[1].note
    assert rows[4].error > 1e-2 and not rows[4].lost  # the head shows it, is not blamed


def test_odd_size_without_a_stride_loses_nothing():  # control: every row compares, exact
    with seeded_rng(0):
        net = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1, padding_mode="circular"), nn.ReLU(),
                            nn.AdaptiveAvgPool2d(1), nn.Flatten()).double()
    x = torch.randn(2, 1, 29, 29, dtype=torch.float64,
                    generator=torch.Generator().manual_seed(0))
    rows = metrics.layerwise_shift_equivariance(net, x)
    assert not any(r.lost for r in rows) and all(r.error < 1e-12 for r in rows)
