"""``equilayers.metrics`` on bad input: the arguments each metric checks, flat shift lists and
empty ones, GEED's normalization, a volume group on an image batch, a group the model is not
built for; each refusal names the metric and the fix, with a measured control."""

import math

import pytest
import torch
from _metrics_common import ChannelMeans
from conftest import seeded_rng
from torch import nn

import equilayers.testing as testing
from equilayers import metrics
from equilayers.nn import GroupConv2d, LiftingConv2d


def test_bad_input(gen):
    x = torch.randn(2, 1, 6, 6, generator=gen)
    m = ChannelMeans()
    with pytest.raises(ValueError, match="transform='shear'"):
        metrics.consistency(m, x, "shear")
    with pytest.raises(ValueError, match="pairs=0 must be an integer >= 1"):
        metrics.consistency(m, x, "flip", pairs=0)
    with pytest.raises(TypeError, match="pairs=True must be an integer >= 1"):
        metrics.consistency(m, x, "flip", pairs=True)
    with pytest.raises(ValueError, match="pairs='all' needs a finite transform"):
        metrics.consistency(m, x, "rotate", pairs="all")
    with pytest.raises(ValueError, match="max_shift=6"):
        metrics.consistency(m, x, "crop_shift", max_shift=6)
    with pytest.raises(ValueError, match="logits"):
        metrics.consistency(nn.Identity(), x, "flip")
    with pytest.raises(ValueError, match=r"shape \(6, 6\)"):
        metrics.consistency(m, x[0, 0], "flip")
    with pytest.raises(ValueError, match="distance='cos'"):
        metrics.geed(m, x, "p4", "cos")
    with pytest.raises(ValueError, match="B >= 2"):
        metrics.geed(m, x[:1], "p4", normalized=True)
    with pytest.raises(ValueError, match="generator='shear'"):
        metrics.lie_derivative(m, x, "shear")
    with pytest.raises(ValueError, match="temperature=0 must be a real number > 0"):
        metrics.deformation_stability(m, x, temperature=0)
    with pytest.raises(ValueError, match="do not map the pixel grid"):
        metrics.layerwise_equivariance(nn.Sequential(nn.Identity()), x, "c8", elements=[1])
    with pytest.raises(TypeError, match="must be a tensor"):
        metrics.consistency(m, [1, 2], "flip")


def test_layerwise_shifts_refuse_a_flat_shift_and_an_empty_list(gen):
    # shifts=(1, 2) was read as (1, 1) and (2, 2); shifts=[] gave rows of NaN
    circ = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, padding_mode="circular")).double()
    x = torch.randn(1, 2, 8, 8, generator=gen, dtype=torch.float64)
    with pytest.raises(TypeError, match=r"flat sequence.*shifts=\[\(1, 2\)\]"):
        metrics.layerwise_shift_equivariance(circ, x, shifts=(1, 2))
    with pytest.raises(ValueError, match="shifts is empty"):
        metrics.layerwise_shift_equivariance(circ, x, shifts=[])
    rows = metrics.layerwise_shift_equivariance(circ, x, shifts=[(1, 2)])
    assert [r.worst for r in rows] == ["shift(1, 2)"] * 2


def test_geed_normalized_refuses_a_batch_with_one_output(gen):
    """normalized=True divides by the distance between the outputs of unrelated inputs; a
    model that gives every input the same output makes it 0, a ValueError naming the fix
    (not a division by zero: inf or NaN); unnormalized, the same model scores 0."""
    x = torch.randn(3, 1, 5, 5, generator=gen, dtype=torch.float64)

    def const(t):
        return torch.ones(t.shape[0], 4, dtype=t.dtype)

    for distance in metrics.DISTANCES:
        with pytest.raises(ValueError, match="same output for every input.*normalized=False"):
            metrics.geed(const, x, "p4", distance, True, out_rep="invariant")
        assert metrics.geed(const, x, "p4", distance, out_rep="invariant") == 0.0


@pytest.mark.parametrize("flag", ["yes", 1, None])
def test_geed_normalized_is_a_bool(flag, gen):
    x = torch.randn(2, 1, 5, 5, generator=gen, dtype=torch.float64)
    with pytest.raises(TypeError, match=rf"geed: normalized={flag!r} must be True or False"):
        metrics.geed(ChannelMeans(), x, "p4", normalized=flag)


def _volume_group_metrics():
    pointwise = nn.Conv2d(8, 4, 1).double()
    return {
        "invariance_error": lambda m, x, g: metrics.invariance_error(m, x, g),
        "equivariance_error": lambda m, x, g: metrics.equivariance_error(m, x, g),
        "geed": lambda m, x, g: metrics.geed(m, x, g),
        "pixel_consistency": lambda m, x, g: metrics.pixel_consistency(pointwise, x, g),
        "pixel_equivariance_error": lambda m, x, g: metrics.pixel_equivariance_error(
            pointwise, x, g),
        "layerwise_equivariance": lambda m, x, g: metrics.layerwise_equivariance(m, x, g),
        "assert_invariant": lambda m, x, g: testing.assert_invariant(m, x, g, tol=math.inf),
    }


@pytest.mark.parametrize("group", ["o", "oh", "c4z", "d4z"])
def test_a_volume_group_on_an_image_batch_is_refused(group, gen):
    # C == H == W: the cube's rotations turned (C, H, W) as a volume, silently (1.41 for "o")
    with seeded_rng(0):
        model = nn.Sequential(nn.Conv2d(8, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1),
                              nn.Flatten()).double()
    x = torch.randn(2, 8, 8, 8, generator=gen, dtype=torch.float64)
    for name, metric in _volume_group_metrics().items():
        with pytest.raises(ValueError, match=rf"{name}: group='{group}' acts on volumes.*5-D "
                           r"volume batch \(B, C, D, H, W\).*shape \(2, 8, 8, 8\).*planar"):
            metric(model, x, group)
    # in_rep='trivial' does not make an image a volume either
    with pytest.raises(ValueError, match="acts on volumes"):
        metrics.invariance_error(model, x, group, in_rep="trivial")
    # the control: a volume batch of the same model's 3-D twin is measured
    with seeded_rng(0):
        volume = nn.Sequential(nn.Conv3d(8, 4, 3, padding=1), nn.AdaptiveAvgPool3d(1),
                               nn.Flatten()).double()
    xv = torch.randn(2, 8, 6, 6, 6, generator=gen, dtype=torch.float64)
    assert metrics.invariance_error(volume, xv, group) > 1e-3
    assert metrics.geed(volume, xv, group) > 1e-6


def test_a_group_the_model_is_not_built_for_names_the_metric_and_the_fix(gen):
    from equilayers.nn import GroupConv3d

    with seeded_rng(0):
        conv = GroupConv3d(2, 2, 3, group="o").double()
    x = torch.randn(1, 2, 24, 5, 5, 5, generator=gen, dtype=torch.float64)
    for name, metric in (("equivariance_error", metrics.equivariance_error),
                         ("geed", metrics.geed)):
        for group in ("oh", "c4"):
            with pytest.raises(ValueError, match=rf"{name}: group='{group}' cannot act on the "
                               rf"model's in_type .*{group} is not a subgroup of o.*group='o'"):
                metric(conv, x, group)
    assert metrics.equivariance_error(conv, x, "c4z") < 1e-12  # a subgroup: measured


def test_element_errors_name_the_metric(gen):
    x = torch.randn(2, 1, 6, 6, generator=gen)
    with pytest.raises(ValueError, match=r"^geed: elements\[i\]=7"):
        metrics.geed(lambda t: t.mean((-2, -1)), x, "c4", elements=[7])
    with pytest.raises(ValueError, match="^geed: elements is empty"):
        metrics.geed(lambda t: t.mean((-2, -1)), x, "c4", elements=[])
    # a group argument other than group= is named (the message said only "unknown group",
    # or group= for an in_group= the model's type cannot take)
    fields = torch.randn(1, 1, 4, 5, 5)
    with pytest.raises(ValueError, match=r"^equivariance_report: unknown in_group='bogus'"):
        testing.equivariance_report(nn.Identity(), fields, "p4", in_group="bogus")
    lift = LiftingConv2d(1, 1, 3, group="c4")
    with pytest.raises(ValueError, match=r"in_group='d4' cannot act on the model's in_type.*"
                                         r"Measure with in_group="):
        testing.equivariance_report(GroupConv2d(1, 1, 3, group="c4"), lift(x[:1]), "c4",
                                    in_group="d4")
    # slot indices as a tensor's items, as torch.arange(4) gives them
    assert testing.equivariance_error(nn.Identity(), fields, "p4",
                                      elements=torch.arange(4)) < 1e-6


def test_a_0d_tensor_for_a_list_and_a_2d_batch_for_volumes_are_named(gen):
    """A 0-d tensor where a list goes gave torch's bare "iteration over a 0-d tensor" (it has
    ``__iter__``); a 4-D batch for ``spatial_dims=3`` was told to be the 4-D form it was."""
    from equilayers import antialias

    x = torch.randn(2, 1, 8, 8, generator=gen)
    with pytest.raises(TypeError, match=r"elements=tensor\(1\) must be a list"):
        metrics.equivariance_error(nn.Identity(), x, "p4", elements=torch.tensor(1))
    with pytest.raises(TypeError, match=r"shifts=tensor\(1\) must be a list"):
        metrics.layerwise_shift_equivariance(nn.Conv2d(1, 1, 3), x, shifts=torch.tensor(1))
    with pytest.raises(TypeError, match=r"skip=tensor\(0\) must be a collection"):
        antialias(nn.Sequential(nn.MaxPool2d(2)), skip=torch.tensor(0))
    with pytest.raises(ValueError, match=r"a batch of volumes \(B, C, D, H, W\)"):
        metrics.layerwise_shift_equivariance(nn.Conv3d(1, 1, 3), x, spatial_dims=3)
