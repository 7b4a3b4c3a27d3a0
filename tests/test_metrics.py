"""equilayers.metrics: known values, invariant-by-construction models, controls, bad input."""

import math
import subprocess
import sys
import warnings

import pytest
import torch
from conftest import seeded_rng
from torch import nn

import equilayers.testing as testing
from equilayers import metrics
from equilayers.groups import flip, fractional_shift, get
from equilayers.metrics._lie import _shear_rotate
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


class ChannelMeans(nn.Module):
    """top-1 = the channel with the largest mean: invariant to shifts of every kind."""

    def forward(self, x):
        return x.mean(dim=(-2, -1))


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


def test_lie_derivative_matches_finite_difference(gen):
    net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.Tanh(), nn.Conv2d(4, 3, 3, stride=2),
                        nn.Flatten(), nn.LazyLinear(5)).double()
    x = torch.randn(3, 2, 9, 9, generator=gen, dtype=torch.float64)
    net(x)
    eps = 1e-4
    fd_paths = {
        "translate_x": lambda t: fractional_shift(x, (0.0, t)),
        "translate_y": lambda t: fractional_shift(x, (t, 0.0)),
        "rotate": lambda t: _shear_rotate(x, torch.tensor(t, dtype=x.dtype)),
    }
    for name, path in fd_paths.items():
        with torch.no_grad():
            fd = (net(path(eps)) - net(path(-eps))) / (2 * eps)
        want = fd.pow(2).sum(dim=1)
        got = metrics.lie_derivative(net, x, name, reduction="none")
        torch.testing.assert_close(got, want, rtol=1e-6, atol=0)
        assert metrics.lie_derivative(net, x, name) == pytest.approx(want.mean().item(),
                                                                     rel=1e-6)


def test_lie_derivative_known_and_zero(gen):
    # hand-computed: f(x) = <w, x> on x = cos(2 pi k col / W): d/dt f(x(col - t))
    # = <w, (2 pi k / W) sin(2 pi k col / W)>
    w_, k = 12, 2
    col = torch.arange(w_, dtype=torch.float64)
    x = torch.cos(2 * math.pi * k * col / w_).expand(1, 1, 8, w_).clone()
    weight = torch.randn(1, 1, 8, w_, generator=gen, dtype=torch.float64)
    deriv = (weight * (2 * math.pi * k / w_) * torch.sin(2 * math.pi * k * col / w_)).sum()
    got = metrics.lie_derivative(lambda t: (t * weight).sum(dim=(1, 2, 3))[:, None], x,
                                 "translate_x")
    assert got == pytest.approx(deriv.item() ** 2, rel=1e-9)
    # exactly invariant / equivariant maps have a zero Lie derivative
    x = torch.randn(2, 3, 8, 8, generator=gen, dtype=torch.float64)
    for gname in metrics.GENERATORS:
        assert metrics.lie_derivative(ChannelMeans(), x, gname) < 1e-20
    conv = nn.Conv2d(3, 2, 3, padding=1, padding_mode="circular").double()
    assert metrics.lie_derivative(conv, x, "translate_x") < 1e-20       # equivariant output
    assert metrics.lie_derivative(conv, x, "translate_x", out_rep="invariant") > 1e-2
    sym = symmetrized_conv2d(3, 2, 3, "d4")
    sym.padding_mode = "circular"
    assert metrics.lie_derivative(sym, x, "rotate") < metrics.lie_derivative(conv, x, "rotate")
    # the output moves by t * W_out / W_in along x and t * H_out / H_in along y: a map that
    # doubles the rows (H_out = 2 H_in, W_out = W_in) is exactly equivariant to translate_x
    # with scale 1 (a scale read off the heights, 2, would move its output twice as far)
    def rows_twice(t):
        return t.repeat_interleave(2, dim=-2)

    assert metrics.lie_derivative(rows_twice, x, "translate_x") < 1e-20
    assert metrics.lie_derivative(rows_twice, x, "translate_x", out_rep="invariant") > 1e-2


@pytest.mark.parametrize("dtype,rel", [(torch.float16, 1e-2), (torch.bfloat16, 5e-2)])
def test_lie_derivative_of_a_half_precision_model(dtype, rel, gen):
    """A float16/bfloat16 model and batch: the band-limited shifts run through float32 (torch's
    FFT takes neither dtype on CPU, which raised from inside the metric) and the derivative is
    that of the float32 model to the dtype's precision."""
    with seeded_rng(0):
        net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
                            nn.Conv2d(4, 5, 3, stride=2, padding=1))
    x = torch.randn(2, 3, 7, 8, generator=gen)
    for name in metrics.GENERATORS:
        want = metrics.lie_derivative(net, x, name)
        got = metrics.lie_derivative(net.to(dtype), x.to(dtype), name)
        net.float()
        assert got == pytest.approx(want, rel=rel)


def test_lie_derivative_keeps_torchs_forward_ad_import_quiet():
    """torch's forward-mode AD imports ``torch._decomp.decompositions_for_jvp`` the first time a
    process uses it, and that import calls ``torch.jit.script``: a DeprecationWarning in torch
    2.13, a FutureWarning (shown by default) from 2.15 on, printed to a user of the metric who
    never called TorchScript. A fresh process, since the import happens once; -W error turns
    any warning into a failure on either version."""
    code = ("import torch, equilayers\n"
            "net = torch.nn.Conv2d(1, 2, 3, padding=1, padding_mode='circular').double()\n"
            "x = torch.randn(2, 1, 7, 7, dtype=torch.float64)\n"
            "print(equilayers.metrics.lie_derivative(net, x, 'rotate') > 0)\n")
    out = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True,
                         text=True)
    assert out.returncode == 0 and out.stdout.strip() == "True", out.stdout + out.stderr


def test_lie_derivative_leaves_the_models_own_warnings_alone(gen):
    """Control for the filter above: it matches torch's module only, so the same message
    warned by the model (or any other warning) still reaches the caller."""
    message = "`torch.jit.script` is deprecated. Please switch to `torch.compile`."

    def noisy(t):
        warnings.warn(message, FutureWarning, stacklevel=1)
        warnings.warn("the model's own warning", UserWarning, stacklevel=1)
        return t.sum(dim=(1, 2, 3))[:, None]

    x = torch.randn(2, 1, 6, 6, generator=gen, dtype=torch.float64)
    with pytest.warns(FutureWarning, match=r"`torch\.jit\.script` is deprecated"), \
            pytest.warns(UserWarning, match="the model's own warning"):
        metrics.lie_derivative(noisy, x, "translate_x", out_rep="invariant")


def test_lie_derivative_refuses_fibers_without_a_continuous_action(gen):
    """A rotation by t acts on a regular fiber only for t a multiple of the group's angle,
    and no translation or rotation moves a harmonic fiber here: both are refused by name;
    translations of a regular field's spatial dims are measured."""
    x = torch.randn(1, 2, 8, 8, generator=gen, dtype=torch.float64)

    def regular(t):
        return t.unsqueeze(2).expand(-1, -1, 4, -1, -1)

    with pytest.raises(ValueError, match=r"generator='rotate' has no continuous action on "
                                         r"out_rep='regular'"):
        metrics.lie_derivative(regular, x, "rotate", out_rep="regular")
    assert metrics.lie_derivative(regular, x, "translate_x", out_rep="regular") < 1e-20
    for gname in metrics.GENERATORS:
        with pytest.raises(ValueError, match="no continuous action on out_rep='harmonic'"):
            metrics.lie_derivative(regular, x, gname, out_rep="harmonic")


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


class _Counter(nn.Module):
    """Reassigns its buffer on every call (a new tensor object, not an in-place update)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))

    def forward(self, x):
        self.calls = self.calls + 1
        return x


def _train_mode_models():
    with seeded_rng(0):
        head = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), _Counter(),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten()).double().train()
        dense = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, padding_mode="circular"),
                              nn.BatchNorm2d(4), _Counter()).double().train()
    return head, dense


def _state(model):
    buffers = {k: (v, v.clone()) for k, v in model.named_buffers()}
    params = {k: v.detach().clone() for k, v in model.named_parameters()}
    return buffers, params


def _assert_same_state(model, state, what):
    buffers, params = state
    now = dict(model.named_buffers())
    assert now.keys() == buffers.keys(), what
    for k, (obj, value) in buffers.items():
        assert now[k] is obj, f"{what}: buffer {k} replaced"
        assert torch.equal(now[k], value), f"{what}: buffer {k} changed"
    for k, p in model.named_parameters():
        assert torch.equal(p, params[k]) and p.grad is None, f"{what}: parameter {k}"
    assert model.training, f"{what}: the mode changed"


_ON_HEAD = {
    "consistency": lambda m, x: metrics.consistency(m, x, "rot90", pairs=2),
    "consistency-all": lambda m, x: metrics.consistency(m, x, "flip", pairs="all"),
    "invariance_error": lambda m, x: metrics.invariance_error(m, x, "p4"),
    "equivariance_error": lambda m, x: metrics.equivariance_error(m, x, "p4m"),
    "equivariance_report-offgrid": lambda m, x: testing.equivariance_report(
        m, x, "so2", out_rep="invariant", elements=get("so2").elements_at([30.0])),
    "geed": lambda m, x: metrics.geed(m, x, "p4", "kl", True),
    "lie_derivative": lambda m, x: metrics.lie_derivative(m, x, "rotate"),
    "deformation_stability": lambda m, x: metrics.deformation_stability(m, x, samples=2),
    "layerwise_equivariance": lambda m, x: metrics.layerwise_equivariance(m, x, "p4"),
    "layerwise_shift_equivariance": lambda m, x: metrics.layerwise_shift_equivariance(m, x),
    "capture_outputs": lambda m, x: metrics.capture_outputs(m, x),
    "shift_equivariance_error": lambda m, x: testing.shift_equivariance_error(
        m, x, [(1, 2)], invariant=True),
}
_ON_DENSE = {
    "pixel_consistency": lambda m, x: metrics.pixel_consistency(m, x, shifts=2),
    "pixel_consistency-group": lambda m, x: metrics.pixel_consistency(m, x, "p4m"),
    "pixel_equivariance_error": lambda m, x: metrics.pixel_equivariance_error(m, x, "p4"),
    "lie_derivative-dense": lambda m, x: metrics.lie_derivative(m, x, "translate_y"),
}


def test_metrics_leave_a_train_mode_models_buffers_as_they_found_them(gen):
    x = torch.randn(4, 3, 8, 8, generator=gen, dtype=torch.float64)
    head, dense = _train_mode_models()
    # the control: running the model itself in train mode changes its buffers
    for model in (head, dense):
        state = _state(model)
        with torch.no_grad():
            model(x)
        with pytest.raises(AssertionError, match="changed"):
            _assert_same_state(model, state, "model(x)")
    head, dense = _train_mode_models()
    for table, model in ((_ON_HEAD, head), (_ON_DENSE, dense)):
        for name, metric in table.items():
            state = _state(model)
            metric(model, x)
            _assert_same_state(model, state, name)


NOISE = "training mode with layers that draw random noise .* call model.eval\\(\\) first"


@pytest.mark.parametrize("noise", [lambda: nn.Dropout(0.5), lambda: nn.AlphaDropout(0.2),
                                   lambda: nn.RReLU()])
def test_metrics_warn_on_a_train_mode_model_that_draws_noise(noise, gen):
    """A train-mode model with dropout draws new noise on every forward, so a metric measured
    that noise (invariance_error 0.40 on a p4 net with Dropout(0.5), 7e-8 in eval) in silence.
    Every metric and the harness now warn, at the caller's line; in eval mode, with p=0 and
    on a train-mode BatchNorm (deterministic per batch) they stay quiet."""
    x = torch.randn(4, 3, 8, 8, generator=gen, dtype=torch.float64)
    for table, make in ((_ON_HEAD, lambda: _train_mode_models()[0]),
                        (_ON_DENSE, lambda: _train_mode_models()[1])):
        for name, metric in table.items():
            model = nn.Sequential(make(), noise().double()).train()
            with pytest.warns(UserWarning, match=NOISE) as caught:
                metric(model, x)
            assert caught[0].filename == __file__, name
            with warnings.catch_warnings():
                warnings.simplefilter("error", UserWarning)
                metric(model.eval(), x)  # the control: quiet in eval mode
                metric(nn.Sequential(make(), nn.Dropout(0.0)).train(), x)  # and at p=0


def test_the_learnable_polyphase_pool_draws_noise_only_with_gumbel_in_training(gen):
    import equilayers.nn as enn
    x = torch.randn(2, 3, 8, 8, generator=gen, dtype=torch.float64)
    pool = enn.LearnablePolyphasePool2d(3, dtype=torch.float64)
    assert pool.draws_noise and not pool.eval().draws_noise
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        testing.shift_equivariance_error(pool, x, [(2, 2)], stride=2)  # eval: quiet
    with pytest.warns(UserWarning, match=NOISE + ""):
        testing.shift_equivariance_error(pool.train(), x, [(2, 2)], stride=2)
    quiet = enn.LearnablePolyphasePool2d(3, gumbel=False, dtype=torch.float64)
    assert not quiet.draws_noise


def test_a_meta_batch_is_refused_by_name():
    """A meta tensor has a shape but no values: every metric and the harness name it (they
    failed in torch's .item(), 'cannot be called on meta tensors', or measured nothing)."""
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64, device="meta")
    for table, model in ((_ON_HEAD, _train_mode_models()[0].eval()),
                         (_ON_DENSE, _train_mode_models()[1].eval())):
        for metric in table.values():
            with pytest.raises(ValueError, match="x is on the meta device.*no values"):
                metric(model, x)
