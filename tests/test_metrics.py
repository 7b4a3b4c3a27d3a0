"""equilayers.metrics: known values, invariant-by-construction models, controls (consistency,
GEED, deformation stability, layerwise equivariance). The Lie derivative:
``test_metrics_lie.py``; bad input and refused groups: ``test_metrics_inputs.py``; train-mode
models, noise and meta batches over every metric: ``test_metrics_train_mode.py``."""

import math
import warnings

import pytest
import torch
from _metrics_common import ChannelMeans
from conftest import seeded_rng
from torch import nn

import equilayers.testing as testing
from equilayers import metrics
from equilayers.groups import flip
from equilayers.testing import symmetrized_conv2d
from equilayers.testing._cases_heads import toy_invariant_net


def _strided_cnn():
    with seeded_rng(0):
        return nn.Sequential(
            nn.Conv2d(2, 6, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(6, 6, 3, stride=2, padding=1), nn.ReLU(),
            nn.Flatten(), nn.LazyLinear(4, bias=False)).double()


class ParityModel(nn.Module):
    """logits = [s, -s], s = <x, checkerboard>: the class flips on odd circular shifts."""

    def forward(self, x):
        h, w = x.shape[-2:]
        board = (-1.0) ** (torch.arange(h)[:, None] + torch.arange(w)[None, :])
        s = (x * board.to(x)).sum(dim=(1, 2, 3))
        return torch.stack([s, -s], dim=1)


def test_harness_errors_are_reexported():
    assert metrics.invariance_error is testing.invariance_error
    assert metrics.equivariance_error is testing.equivariance_error


def test_invariant_by_construction_scores_one(gen):
    net = toy_invariant_net("p4m")
    x = torch.randn(6, 2, 8, 8, generator=gen, dtype=torch.float64)
    for t in ["circular_shift", "rot90", "flip"]:
        assert metrics.consistency(net, x, t, pairs=4, generator=gen) == 1.0
    assert metrics.consistency(net, x, "rot90", pairs="all") == 1.0
    assert metrics.invariance_error(net, x, "p4m") < 1e-13
    for d in metrics.DISTANCES:
        assert metrics.geed(net, x, "p4m", d) < 1e-13
    assert metrics.geed(net, x, "p4m", normalized=True) < 1e-12
    # channel means: consistent under every transform family, fractional and rotated too
    xm = torch.randn(6, 5, 9, 9, generator=gen, dtype=torch.float64)
    xm = xm + 3 * torch.arange(5, dtype=torch.float64).view(1, 5, 1, 1)  # separated classes
    for t in metrics.TRANSFORMS:
        assert metrics.consistency(ChannelMeans(), xm, t, pairs=4, generator=gen) == 1.0, t


def test_rot90_consistency_on_rectangles(gen):
    """A quarter turn of an ``H x W`` batch is a ``W x H`` one: a model that takes both (global
    pooling) is scored, an invariant one at 1 and the strided control below 1; a model that
    rejects the turned shape gets a ValueError naming the transform and both shapes (it was
    refused as "needs a square input" before any model ran)."""
    net = toy_invariant_net("p4m")
    x = torch.randn(6, 2, 9, 13, generator=gen, dtype=torch.float64)
    assert metrics.consistency(net, x, "rot90", pairs="all") == 1.0
    control = _strided_cnn()
    control(x)  # materialize the lazy layer
    assert metrics.consistency(control, x, "rot90", pairs="all") < 1.0
    fixed = nn.Sequential(nn.LayerNorm([2, 9, 13]), nn.Flatten(), nn.Linear(2 * 9 * 13, 3))
    with pytest.raises(ValueError, match=r"transform='rot90' turns the 9x13 input into 13x9"):
        metrics.consistency(fixed.double(), x, "rot90", pairs="all")
    # a crop the model rejects is named as a crop (it was called a quarter turn)
    with pytest.raises(ValueError, match=r"'crop_shift' crops the 9x13 input to 8x12"):
        metrics.consistency(fixed.double(), x, "crop_shift", max_shift=1)


def test_plain_strided_cnn_is_not_invariant(gen):
    net = _strided_cnn()
    x = torch.randn(16, 2, 8, 8, generator=gen, dtype=torch.float64)
    net(x)  # materialize the lazy layer
    assert metrics.consistency(net, x, "circular_shift", pairs="all") < 0.9
    assert metrics.consistency(net, x, "rot90", pairs="all") < 1.0
    assert metrics.invariance_error(net, x, "p4") > 1e-2
    assert metrics.geed(net, x, "p4", "cosine") > 1e-3
    assert metrics.geed(net, x, "p4", "kl") > 1e-4
    assert metrics.lie_derivative(net, x, "translate_x") > 1e-4


def test_consistency_known_value_parity_model(gen):
    x = torch.randn(8, 1, 6, 6, generator=gen, dtype=torch.float64)
    model = ParityModel()
    # by hand: half of the 36 shifts of the 6x6 torus have odd dy + dx and flip the class,
    # so two independent shifts agree with probability (1/2)^2 + (1/2)^2 = 1/2 exactly
    assert metrics.consistency(model, x, "circular_shift", pairs="all") == 0.5
    # shifts in {0, 1}^2: (0,0), (1,1) keep the class, (0,1), (1,0) flip it: again 1/2
    assert metrics.consistency(model, x, "circular_shift", pairs="all", max_shift=1) == 0.5
    # the flip of a 6-wide board maps it to minus itself: flip draws agree iff equal: 1/2
    assert metrics.consistency(model, x, "flip", pairs="all") == 0.5
    # rot90 on an even board negates it (k odd): 1/2 as well
    assert metrics.consistency(model, x, "rot90", pairs="all") == 0.5
    # the random estimator is unbiased: within 4 sigma of 1/2 over 200 pairs (one draw each)
    est = metrics.consistency(model, x, "circular_shift", pairs=200, generator=gen)
    assert abs(est - 0.5) < 4 * math.sqrt(0.25 / 200)


@pytest.mark.parametrize("pairs", [4, "all"])
def test_consistency_of_nan_logits_is_nan(pairs, gen):
    """A NaN logit has no top-1 class: argmax reads every NaN row as class 0, so a model of
    NaNs (or one NaN sample of a batch) scored 1.0, a perfectly consistent classifier."""
    x = torch.randn(4, 3, 6, 6, generator=gen, dtype=torch.float64)
    parity = ParityModel()
    one_nan = torch.tensor([1.0, math.nan, 1.0, 1.0], dtype=torch.float64)[:, None]
    for model in [lambda t: t.mean((-2, -1)) * math.nan, lambda t: parity(t[:, :1]) * one_nan]:
        assert math.isnan(metrics.consistency(model, x, "rot90", pairs=pairs, generator=gen))
    # control: the same models without the NaN score in [0, 1] (parity: 1/2 on rot90)
    assert metrics.consistency(lambda t: t.mean((-2, -1)), x, "rot90", pairs=pairs) == 1.0
    if pairs == "all":
        assert metrics.consistency(lambda t: parity(t[:, :1]), x, "rot90", pairs="all") == 0.5


def test_geed_cosine_of_zero_outputs_is_zero(gen):
    """Two zero outputs are equal: cosine distance 0. torch's cosine_similarity calls them
    orthogonal (0), so a model whose output is 0 (exactly invariant) scored GEED 1.0."""
    x = torch.randn(4, 3, 5, 5, generator=gen, dtype=torch.float64)
    zero = lambda t: t.mean((-2, -1)) * 0  # noqa: E731
    assert metrics.geed(zero, x, "p4m", "cosine") == 0.0
    # one zero sample of an otherwise varying output: that sample adds 0, not 1
    mask = torch.tensor([0.0, 1.0, 1.0, 1.0], dtype=torch.float64)[:, None]
    assert metrics.geed(lambda t: t.mean((-2, -1)) * mask, x, "p4m", "cosine") < 1e-12
    # control: an output that is zero for x but not for g.x is still at distance 1
    first = lambda t: t[:, :, 0, 0] * (t[:, :, 0, 0] > t[:, :, -1, -1])  # noqa: E731
    assert metrics.geed(first, x, "c2", "cosine") > 0.1


def test_geed_known_values(gen):
    x = torch.randn(4, 1, 5, 5, generator=gen, dtype=torch.float64)
    ident = nn.Identity()
    # the identity is equivariant on images (trivial rep) ...
    assert metrics.geed(ident, x, "p4m", "l2") < 1e-15
    # ... and, read as an invariant output, its d1 deviation is the mean over {e, flip}
    got = metrics.geed(ident, x, "d1", "l2", out_rep="invariant")
    by_hand = 0.5 * (flip(x) - x).flatten(1).norm(dim=1).mean().item()
    assert got == pytest.approx(by_hand, rel=1e-12)
    unrelated = (x - torch.roll(x, 1, dims=0)).flatten(1).norm(dim=1).mean().item()
    assert metrics.geed(ident, x, "d1", "l2", True, out_rep="invariant") == pytest.approx(
        by_hand / unrelated, rel=1e-12)
    # cosine distance of a and -a is 2: an output that a half turn negates
    odd = metrics.geed(lambda t: (t * torch.linspace(-1, 1, 5, dtype=t.dtype)).sum((1, 2, 3))
                       [:, None], x, "c2", "cosine")
    assert odd == pytest.approx(1.0, rel=1e-12)  # mean over {e: 0, r^2: 2}
    # KL(softmax(f(g.x)) || softmax(g.f(x))), in that order (KL is not symmetric): logits
    # that the flip changes, so the d1 deviation is half the mean KL at the flip
    def logits(t):
        return torch.stack([3 * t[:, 0, 0, 0], t[:, 0, 0, -1], t[:, 0, 2, 2]], 1)

    p_gx, p_x = logits(flip(x)).softmax(1), logits(x).softmax(1)
    kl = (p_gx * (p_gx.log() - p_x.log())).sum(1).mean().item()
    reverse = (p_x * (p_x.log() - p_gx.log())).sum(1).mean().item()
    assert abs(kl - reverse) > 0.01 * kl  # the two orders differ on this batch
    assert metrics.geed(logits, x, "d1", "kl", out_rep="invariant") == pytest.approx(
        0.5 * kl, rel=1e-12)


def test_deformation_stability(gen):
    x = torch.randn(3, 2, 16, 16, generator=gen, dtype=torch.float64)
    ident = metrics.deformation_stability(nn.Identity(), x, generator=gen)
    assert ident.relative == pytest.approx(1.0, rel=1e-12)  # ||eta|| = ||tau x - x|| by design
    small = metrics.deformation_stability(ChannelMeans(), x, temperature=1e-3,
                                          generator=torch.Generator().manual_seed(0))
    big = metrics.deformation_stability(ChannelMeans(), x, temperature=1e-1,
                                        generator=torch.Generator().manual_seed(0))
    assert big.displacement == pytest.approx(small.displacement * 10, rel=1e-9)
    assert big.grad_tau > small.grad_tau > 0
    assert big.deformation > small.deformation


def test_layerwise_names_the_breaking_layer(gen):

    def net():
        strided = symmetrized_conv2d(4, 4, 3, "d4")
        strided.stride = (2, 2)
        return nn.Sequential(symmetrized_conv2d(2, 4, 3, "d4"), nn.ReLU(), strided, nn.ReLU())

    model = net()
    odd = metrics.layerwise_equivariance(model, torch.randn(2, 2, 9, 9, generator=gen,
                                                            dtype=torch.float64), "p4m")
    assert [r.name for r in odd] == ["0", "1", "2", "3", "(output)"]
    assert not any(r.lost for r in odd) and max(r.error for r in odd) < 1e-13
    even = metrics.layerwise_equivariance(model, torch.randn(2, 2, 8, 8, generator=gen,
                                                             dtype=torch.float64), "p4m")
    lost = [r for r in even if r.lost]
    assert [r.name for r in lost] == ["2"] and lost[0].kind == "Conv2d"
    assert even[1].error < 1e-13 and even[2].error > 0.1

    circ = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, padding_mode="circular"), nn.ReLU(),
                         nn.Conv2d(3, 3, 3, padding=1), nn.ReLU()).double()
    rows = metrics.layerwise_shift_equivariance(circ, torch.randn(2, 2, 8, 8, generator=gen,
                                                                 dtype=torch.float64))
    assert [r.name for r in rows if r.lost] == ["2"]
    assert rows[0].error < 1e-13 and rows[1].error < 1e-13


class _InPlaceResidual(nn.Module):
    """A rotation-equivariant average pool, then ``out += conv(x)`` in place (torchvision's
    residual idiom) with a conv that is not equivariant."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.AvgPool2d(3, 1, 1), nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        out = self.a(x)
        out += self.b(x)
        return out


def test_layerwise_blames_the_right_layer_when_a_later_op_writes_in_place(gen):
    """The recorded outputs are copies: the in-place sum after the pool does not rewrite the
    pool's row (which named the pool as where equivariance was lost), nor does an in-place
    ReLU the conv's before it (the control: the rows of the same block written out of place)."""
    with seeded_rng(0):
        model = _InPlaceResidual().double()
    x = torch.randn(2, 3, 9, 9, generator=gen, dtype=torch.float64)
    rows = metrics.layerwise_equivariance(model, x, "p4")
    assert [(r.name, r.lost) for r in rows] == [("a", False), ("b", True), ("(output)", False)]
    assert rows[0].error < 1e-13 and rows[1].error > 0.1
    relu = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.ReLU(inplace=True)).double()
    conv_out = metrics.capture_outputs(relu, x)[0][2]
    torch.testing.assert_close(conv_out, relu[0](x).detach())
    assert (conv_out < 0).any()


def test_geed_is_never_negative():
    # a shift- and p4m-invariant model (circular conv, global mean): the distances are 0 up to
    # rounding, which took the cosine distance and the KL divergence to -1e-17 before the clamp
    for seed in range(6):
        with seeded_rng(seed):
            model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, padding_mode="circular"),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten()).double()
        x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(seed),
                        dtype=torch.float64)
        for d in metrics.DISTANCES:
            for normalized in (False, True):
                got = metrics.geed(model, x, "p4m", d, normalized)
                assert got >= 0 and math.copysign(1.0, got) == 1.0, (seed, d, normalized, got)
                assert got < 1e-12


def test_layerwise_shift_equivariance_shifts_the_depth_of_volumes(gen):
    """``spatial_dims=3`` shifts (dz, dy, dx): a conv zero-padded in depth only is where
    equivariance is lost (the 2-D default shifts H and W, where it is circular, and finds
    nothing: what the audit of a volume model had shown); a circular 3-D conv and an average
    pool are exact (the control). Triples are checked, and ``spatial_dims`` too."""
    with seeded_rng(0):
        net = nn.Sequential(nn.CircularPad3d((1, 1, 1, 1, 0, 0)), nn.ZeroPad3d((0, 0, 0, 0, 1, 1)),
                            nn.Conv3d(1, 2, 3)).double()
        exact = nn.Sequential(nn.Conv3d(1, 2, 3, padding=1, padding_mode="circular"),
                              nn.AvgPool3d(2)).double()
    x = torch.randn(1, 1, 8, 8, 8, generator=gen, dtype=torch.float64)
    rows = metrics.layerwise_shift_equivariance(net, x, spatial_dims=3)
    assert [r.name for r in rows if r.lost] == ["2"] and rows[2].error > 0.1
    assert rows[2].worst == "shift(1, 1, 1)"
    assert max(r.error for r in metrics.layerwise_shift_equivariance(net, x)
               if r.error == r.error) < 1e-13
    rows = metrics.layerwise_shift_equivariance(exact, x, spatial_dims=3)
    assert not any(r.lost for r in rows) and max(r.error for r in rows) < 1e-13
    assert rows[0].worst == "shift(2, 2, 2)"
    with pytest.raises(ValueError, match="spatial_dims=4"):
        metrics.layerwise_shift_equivariance(exact, x, spatial_dims=4)
    with pytest.raises((TypeError, ValueError), match="shifts"):
        metrics.layerwise_shift_equivariance(exact, x, [(1, 1)], spatial_dims=3)


def test_layerwise_shift_blames_the_subsampling_not_the_invariant_pool_after_it(gen):
    """A 1-pixel shift moves a stride-2 output by half a pixel: that row is not compared at
    it and says so, and the error the exactly invariant global pool then shows at that shift
    is laid on the stride (it was flagged on the pool, exact alone)."""
    with seeded_rng(0):
        net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, padding_mode="circular"),
                            nn.Conv2d(3, 3, 3, 2, 1, padding_mode="circular"),
                            nn.AdaptiveAvgPool2d(1), nn.Flatten()).double()
    x = torch.randn(2, 2, 8, 8, generator=gen, dtype=torch.float64)
    rows = metrics.layerwise_shift_equivariance(net, x)
    assert [r.name for r in rows if r.lost] == ["1"]
    assert "not compared at shift(1, 1)" in rows[1].note and rows[1].error < 1e-13
    assert rows[2].error > 0.1 and rows[2].worst == "shift(1, 1)" and not rows[2].note
    # the control: at shifts by the stride alone nothing is lost
    assert not any(r.lost for r in metrics.layerwise_shift_equivariance(net, x, [(2, 2)]))


def test_layerwise_sees_the_layers_of_a_compiled_model_after_a_no_grad_call(gen):
    """The cached graph of a compiled module runs without forward hooks: the rows were the
    output alone, compared with a false note; the tools record the module it wraps."""
    with seeded_rng(0):
        net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                            nn.Flatten())
    compiled = torch.compile(net, backend="eager")
    x = torch.randn(2, 1, 8, 8, generator=gen)
    with torch.no_grad():
        compiled(x)
    names = [r.name for r in metrics.layerwise_equivariance(net, x, "p4")]
    assert names == ["0", "1", "2", "3", "(output)"]
    assert [r.name for r in metrics.layerwise_equivariance(compiled, x, "p4")] == names
    assert [r.name for r in metrics.layerwise_shift_equivariance(compiled, x)] == names
    assert [n for n, _, _ in metrics.capture_outputs(compiled, x)] == names


def test_layerwise_refuses_a_model_that_runs_other_layers_on_the_moved_input(gen):
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(1, 1, 3, padding=1), nn.Identity()

        def forward(self, x):  # data-dependent: runs b only for some orientations
            y = self.a(x)
            return self.b(y) if x[..., 0, 0].sum() > 0 else y

    x = torch.zeros(1, 1, 6, 6)
    x[..., 0, 0], x[..., -1, 0] = 1.0, -1.0
    with pytest.raises(ValueError, match="ran other layers on the moved input"):
        metrics.layerwise_equivariance(Branchy(), x, "p4")


def test_consistency_moves_the_fibers_of_a_declared_group_map_input(gen):
    """A p4m-invariant classifier of p4m maps (B, C, 8, H, W) scores 1.0 under quarter turns
    and flips of its input, fibers included (the pixels alone were moved: 0.99); a transform
    outside the declared group, or a continuous one, is refused, and so is a Lie derivative
    by rotation of the declared regular input."""
    from equilayers.nn import GroupConv2d, InvariantHead

    with seeded_rng(2):
        net = nn.Sequential(GroupConv2d(2, 8, 3, padding=1, group="p4m", padding_mode="circular"),
                            nn.ReLU(),
                            InvariantHead(8, 10, group="p4m", bias=False)).double()
    x = torch.randn(64, 2, 8, 9, 9, generator=torch.Generator().manual_seed(2),
                    dtype=torch.float64)
    assert metrics.invariance_error(net, x, "p4m") < 1e-12
    for transform in ("rot90", "flip"):
        assert metrics.consistency(net, x, transform, pairs="all") == 1.0
        assert metrics.consistency(net, x, transform, pairs=8) == 1.0
    # the control: undeclared (a plain callable), the pixels alone move and it disagrees
    assert metrics.consistency(lambda t: net(t), x, "rot90", pairs="all") < 1.0
    # a model declared over p4 takes quarter turns and refuses the flip its group lacks
    with seeded_rng(0):
        p4_only = nn.Sequential(GroupConv2d(2, 8, 3, padding=1, group="p4"), nn.ReLU(),
                                InvariantHead(8, 10, group="p4")).double()
    x4 = x[:, :, :4]
    assert metrics.consistency(p4_only, x4, "rot90", pairs="all") == 1.0
    with pytest.raises(ValueError, match="'flip' is not an element.*c4"):
        metrics.consistency(p4_only, x4, "flip", pairs="all")
    with pytest.raises(ValueError, match="would move its pixels and not its fibers"):
        metrics.consistency(net, x, "rotate")
    with pytest.raises(ValueError, match="declared regular input fibers"):
        metrics.lie_derivative(net, x[:2], "rotate")
    assert metrics.consistency(net, x, "circular_shift", pairs=4) == 1.0  # shifts: all alike


def test_lie_derivative_of_a_volume_output_names_the_trivial_override(gen):
    conv = nn.Conv3d(1, 2, 3, padding=1).double()
    v = torch.randn(2, 1, 4, 6, 6, generator=gen, dtype=torch.float64)
    with pytest.raises(ValueError, match="a volume .* pass out_rep='trivial'"):
        metrics.lie_derivative(conv, v, "rotate")
    assert metrics.lie_derivative(conv, v, "rotate", out_rep="trivial") > 0


def test_layerwise_marks_a_layer_built_for_another_group_as_where_it_is_lost(gen):
    # the d2 conv's row cannot be compared (NaN, noted); the lost marker fell on the pool
    from equilayers.nn import GroupConv2d, GroupPool, LiftingConv2d

    with seeded_rng(0):
        net = nn.Sequential(LiftingConv2d(1, 2, 3, padding=1, group="p4"), nn.ReLU(),
                            GroupConv2d(2, 2, 3, padding=1, group="d2"), GroupPool()).double()
    x = torch.randn(2, 1, 9, 9, generator=gen, dtype=torch.float64)
    rows = metrics.layerwise_equivariance(net, x, "p4")
    assert [r.name for r in rows if r.lost] == ["2"] and "cannot act" in rows[2].note
    assert rows[3].error > 0.1
    with seeded_rng(0):  # the control: p4 throughout loses nothing
        same = nn.Sequential(LiftingConv2d(1, 2, 3, padding=1, group="p4"), nn.ReLU(),
                             GroupConv2d(2, 2, 3, padding=1, group="p4"), GroupPool()).double()
    assert not any(r.lost for r in metrics.layerwise_equivariance(same, x, "p4"))


def test_a_subgroup_measures_through_layers_of_any_group(gen):
    """d4 fields measured with c4 (the harness allows a subgroup): a ``GroupBatchNorm2d`` or
    ``GroupMaxPool2d`` (typed for any group) was bound to c4 and expected 4 slots of its 8, so
    ``equivariance_error(lift + bn, x, "c4")`` raised and ``layerwise_equivariance`` gave NaN
    rows and blamed the exact ``Restrict`` after an inexact pool. They take the field they
    are given. The control: the stride-2 pool at an even size is blamed, not ``Restrict``."""
    from equilayers.nn import (
        GroupBatchNorm2d,
        GroupConv2d,
        GroupMaxPool2d,
        GroupPool,
        LiftingConv2d,
        Restrict,
    )

    x = torch.randn(2, 1, 9, 9, generator=gen, dtype=torch.float64)
    lift = LiftingConv2d(1, 2, 3, padding=1, group="d4")
    assert testing.equivariance_error(nn.Sequential(lift, GroupBatchNorm2d(2)).double().eval(),
                                      x, "c4") < 1e-12
    for size, lost in ((9, None), (8, "1")):
        net = nn.Sequential(lift, GroupMaxPool2d(3, 2, 1), Restrict("d4", "c4"),
                            GroupConv2d(4, 2, 3, padding=1, group="c4"), GroupPool()).double()
        xs = x[..., :size, :size]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # (the pool's own warning at the even size)
            rows = metrics.layerwise_equivariance(net, xs, "c4")
        assert not any(math.isnan(r.error) for r in rows), rows
        assert [r.name for r in rows if r.lost] == ([] if lost is None else [lost]), rows


def test_geed_uses_grid_elements_and_refuses_others(gen):
    """c8's 45-degree elements act by interpolation, which moves even an exactly equivariant
    map's output (a pointwise square scored 0.145 cosine at 45 degrees on 33x33 noise): the
    default is the grid elements, and an element off the grid is refused. The control: a
    plain CNN still scores above 0 on c8's grid elements."""
    from equilayers.groups import get

    x = torch.randn(4, 1, 33, 33, generator=gen, dtype=torch.float64)
    square = lambda t: t**2  # noqa: E731
    assert metrics.geed(square, x, "c8") < 1e-15
    with pytest.raises(ValueError, match="does not map the pixel grid onto itself"):
        metrics.geed(square, x, "so2", elements=[get("so2").element(math.pi / 4)])
    with pytest.raises(ValueError, match="equivariance_report"):
        metrics.geed(square, x, "c8", elements=[1])
    with seeded_rng(0):
        cnn = nn.Conv2d(1, 2, 3, padding=1).double()
    assert metrics.geed(cnn, x, "c8") > 1e-3


def test_geed_kl_normalization_pairs_as_documented(gen):
    """The normalization is the mean ``d(f(x_b), f(x_{b+1 mod B}))``: for the KL divergence
    (not symmetric) the code paired b with b - 1 (0.6074 against the documented 0.6102)."""
    x = torch.randn(3, 1, 5, 5, generator=gen, dtype=torch.float64)

    def logits(t):
        return torch.stack([3 * t[:, 0, 0, 0], t[:, 0, 0, -1], t[:, 0, 2, 2]], 1)

    p_gx, p_x = logits(flip(x)).softmax(1), logits(x).softmax(1)
    dev = 0.5 * (p_gx * (p_gx.log() - p_x.log())).sum(1).mean().item()
    nxt = p_x.roll(-1, 0)
    base = (p_x * (p_x.log() - nxt.log())).sum(1).mean().item()
    prev = p_x.roll(1, 0)
    other = (p_x * (p_x.log() - prev.log())).sum(1).mean().item()
    assert abs(base - other) > 1e-3 * base  # the two pairings differ on this batch
    assert metrics.geed(logits, x, "d1", "kl", True, out_rep="invariant") == pytest.approx(
        dev / base, rel=1e-12)


def test_consistency_of_tied_infinite_logits_is_nan(gen):
    """A float16 head whose logits overflowed to +inf in every class: argmax reads the row as
    class 0, and the model scored 1.0 (the NaN rule's own reason). The control: one +inf
    logit is a defined top-1 class."""
    x = torch.randn(3, 1, 8, 8, generator=gen, dtype=torch.float64)
    all_inf = lambda t: torch.full((t.shape[0], 4), math.inf, dtype=t.dtype)  # noqa: E731
    assert math.isnan(metrics.consistency(all_inf, x, "rot90"))
    assert math.isnan(metrics.consistency(all_inf, x, "rot90", pairs="all"))
    one_inf = lambda t: torch.tensor([[0.0, math.inf, 1.0]], dtype=t.dtype).expand(  # noqa: E731
        t.shape[0], 3)
    assert metrics.consistency(one_inf, x, "rot90") == 1.0
    per_pixel_inf = lambda t: torch.full((t.shape[0], 3, 8, 8), math.inf)  # noqa: E731
    assert math.isnan(metrics.pixel_consistency(per_pixel_inf, x))
    assert metrics.pixel_consistency(lambda t: torch.cat([t, 2 * t], 1), x) == 1.0


def test_deformation_stability_says_what_is_undefined(gen):
    """Constant frames (or 1x1 images): no deformation changes them, and the error asked
    whether the model was constant (it was not); a bad generator named random_deformation,
    which the user did not call, and misstated what None means. The control: a model that
    is constant is still told so."""
    with seeded_rng(0):
        cnn = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                            nn.Flatten()).double()
    for x in (torch.full((2, 1, 16, 16), 0.5, dtype=torch.float64),
              torch.randn(2, 1, 1, 1, generator=gen, dtype=torch.float64)):
        with pytest.raises(ValueError, match="deformations drawn leave x unchanged"):
            metrics.deformation_stability(cnn, x)
    x = torch.randn(2, 1, 16, 16, generator=gen, dtype=torch.float64)
    with pytest.raises(TypeError, match="deformation_stability: generator=0 .*seeded 0"):
        metrics.deformation_stability(cnn, x, generator=0)
    with pytest.raises(ValueError, match="is the model constant"):
        metrics.deformation_stability(lambda t: torch.zeros(t.shape[0], 2), x)
