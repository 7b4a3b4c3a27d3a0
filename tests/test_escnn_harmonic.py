"""Off-grid rotation error of our SO(2) harmonic stack side by side with escnn's (issue 5).

Both stacks have the same shape: a lifting conv from one image channel to 4 fields holding
rotation orders 0..2 (ours: ``LiftingConv2d(group="so2", max_order=2)``; escnn: ``R2Conv``
trivial -> ``4 x [irrep(0), irrep(1), irrep(2)]`` on ``rot2dOnR2(N=-1, maximum_frequency=2)``),
a norm-ReLU (ours with ``order0="norm"``: escnn's convention on order 0, which keeps both signs), a
harmonic -> harmonic conv, and norm pooling to ``4 * 3`` rotation-invariant
maps (ours: channel ``3c + m``; escnn's ``NormPool``: one map per irrep field, in the same
order). Both run in float32 (escnn's basis buffers are float32) on the same disk-faded camera
image, with each library's default random init under the same seed; the norm-ReLU thresholds
are the same fraction (drawn per field and order) of each stack's own lifting-output RMS, so
the nonlinearity cuts a comparable share of both. The harness measures the relative error at
15, 30, 45, 60 and 137 degrees (inside the inscribed disk) beside the interpolation floor.

Run with an environment that has escnn and scikit-image (``.venv-peers/bin/python -m
pytest tests/test_escnn_harmonic.py``); skipped elsewhere.
"""

import pytest
import torch
from _peers import ESCNN_MISSING
from conftest import seeded_rng
from torch import nn

escnn = pytest.importorskip("escnn", reason=ESCNN_MISSING)
pytest.importorskip("skimage", reason="scikit-image is not installed (the test image is "
                    "skimage.data.camera)")
from escnn import gspaces  # noqa: E402
from escnn import nn as esc  # noqa: E402

from equilayers import nn as enn  # noqa: E402
from equilayers.groups import get  # noqa: E402
from equilayers.testing import assert_equivariant, equivariance_report  # noqa: E402
from equilayers.testing._cases_harmonic import _camera  # noqa: E402

M, WIDTH, SEEDS = 2, 4, tuple(range(12))
ANGLES = (15.0, 30.0, 45.0, 60.0, 137.0)


class _Ours(nn.Sequential):
    in_rep = out_rep = "trivial"

    def __init__(self, k: int) -> None:
        super().__init__(
            enn.LiftingConv2d(1, WIDTH, k, padding=k // 2, group="so2", max_order=M),
            enn.NormNonlinearity(WIDTH, M, order0="norm"),
            enn.GroupConv2d(WIDTH, WIDTH, k, padding=k // 2, group="so2", max_order=M),
            enn.NormPool(M),
        )


class _Escnn(nn.Module):
    in_rep = out_rep = "trivial"

    def __init__(self, k: int) -> None:
        super().__init__()
        gs = gspaces.rot2dOnR2(N=-1, maximum_frequency=M)
        self.in_type = esc.FieldType(gs, [gs.trivial_repr])
        hid = esc.FieldType(gs, WIDTH * [gs.irrep(m) for m in range(M + 1)])
        self.seq = esc.SequentialModule(
            esc.R2Conv(self.in_type, hid, k, padding=k // 2),
            esc.NormNonLinearity(hid),
            esc.R2Conv(hid, hid, k, padding=k // 2),
            esc.NormPool(hid),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(esc.GeometricTensor(x, self.in_type)).tensor


def _image() -> torch.Tensor:
    return _camera().expand(2, 1, -1, -1).clone().float()


def _stacks(k: int, seed: int, x: torch.Tensor) -> tuple[_Ours, _Escnn]:
    with seeded_rng(seed):
        ours = _Ours(k).eval()
    with seeded_rng(seed):
        theirs = _Escnn(k).eval()
    # norm-ReLU thresholds: 0.2..1.0 x the lifting output's RMS, the same fractions for both
    # (ours adds its bias to the magnitude, escnn subtracts exp(log_bias))
    frac = torch.rand(WIDTH, M + 1, generator=torch.Generator().manual_seed(seed)) * 0.8 + 0.2
    with torch.no_grad():
        rms = ours[0](x).pow(2).mean().sqrt()
        ours[1].bias.copy_(-frac * rms)
        rms = theirs.seq[0](esc.GeometricTensor(x, theirs.in_type)).tensor.pow(2).mean().sqrt()
        theirs.seq[1].log_bias.copy_((frac * rms).log().view(1, -1, 1, 1))
    return ours, theirs


@pytest.mark.parametrize("k", [5, 7])
def test_both_stacks_exactly_invariant_on_the_grid(k):
    # a check of the comparison itself: both stacks are built right (rotation-invariant maps
    # at multiples of 90 degrees, float32 tolerance 1e-5) and their outputs have the same shape
    x = _image()
    ours, theirs = _stacks(k, 0, x)
    with torch.no_grad():
        assert ours(x).shape == theirs(x).shape == (2, WIDTH * (M + 1), 49, 49)
    for f in (ours, theirs):  # default elements of so2: the multiples of 90 degrees
        assert_equivariant(f, x, "so2", in_rep="trivial", out_rep="trivial")


def test_basis_spans_escnns_filters():
    # the band limit is escnn's for k <= 7 (rings 0..k//2, centre pixel, sigma 0.6 inside and
    # 0.4 on the outer ring, caps |f| <= r + 1 inside and 2 outside): every escnn R2Conv filter
    # is a combination of our basis elements and vice versa (all principal cosines 1)
    from equilayers.functional import steerable_basis

    gs = gspaces.rot2dOnR2(N=-1, maximum_frequency=M)
    fiber = esc.FieldType(gs, [gs.irrep(m) for m in range(M + 1)])
    for k in (3, 5, 7):
        for lifting in (True, False):
            conv = esc.R2Conv(esc.FieldType(gs, [gs.trivial_repr]) if lifting else fiber,
                              fiber, k)
            theirs = []
            with torch.no_grad():
                for p in range(conv.weights.numel()):
                    conv.weights.zero_()
                    conv.weights[p] = 1.0
                    theirs.append(conv.expand_parameters()[0].double().flatten())
            ours = steerable_basis("so2", "trivial" if lifting else "harmonic", "harmonic", k,
                                   in_order=None if lifting else M, out_order=M,
                                   dtype=torch.float64).flatten(1)
            q_t = torch.linalg.qr(torch.stack(theirs).T)[0]
            q_o = torch.linalg.qr(ours.T)[0]
            assert q_t.shape == q_o.shape, (k, lifting, q_t.shape, q_o.shape)
            cosines = torch.linalg.svdvals(q_t.T @ q_o)
            assert cosines.min() > 1 - 1e-5, (k, lifting, cosines.min().item())


# The two stacks span the same filters (test above) and draw them alike (per block of input
# order -> output order, the same share of variance: our generalized He init balances the blocks
# as escnn's generalized_he_init does), so a single seed compares two random draws: the worst
# error over the five angles ranges 0.012-0.06 across seeds for both libraries. The criterion is
# therefore the mean over 12 seeds, ours within 5% of escnn's or lower (the standard error of
# such a mean is about 6% here). Measured here (float32, disk-faded 49x49 camera, seeds 0-11,
# both stacks with escnn's norm-ReLU on order 0), 2026-12-01:
#   k=5: mean worst error 0.0317 (ours) vs 0.0348 (escnn), ours lower for 7 of 12 seeds
#   k=7: 0.0236 vs 0.0232, ours lower for 6 of 12 seeds
# (with the former init, uniform and one variance for every element: 0.0228 vs 0.0348 and
# 0.0225 vs 0.0232). Before the band limit was escnn's (caps 2r inside, 2r - 1 outside, sigma
# 0.6 outside), order 2 was 2x escnn's: frequencies 3 and 4 on radius-2 rings alias (one
# element's off-grid error 0.6 to 1.9). With our default order-0 nonlinearity (relu(a_0 + b),
# which drops the negative half) the k=7 means were 0.031 vs 0.023: a different network, not a
# different basis.
@pytest.mark.parametrize("k", [5, 7])
def test_offgrid_error_no_worse_than_escnn(k):
    x = _image()
    els = get("so2").elements_at(list(ANGLES))
    lines, ours_err, theirs_err = [], [], []
    for seed in SEEDS:
        ours, theirs = _stacks(k, seed, x)
        a = equivariance_report(ours, x, "so2", elements=els, in_rep="trivial",
                                out_rep="trivial")
        b = equivariance_report(theirs, x, "so2", elements=els, in_rep="trivial",
                                out_rep="trivial")
        ours_err.append(a.error)
        theirs_err.append(b.error)
        lines.append(f"seed {seed}: worst {a.error:.4f} (floor {a.floor:.4f}) vs "
                     f"{b.error:.4f} (floor {b.floor:.4f})")
        assert a.error < a.floor, lines[-1]  # below the interpolation floor, as escnn's
    mean_ours, mean_theirs = sum(ours_err) / len(SEEDS), sum(theirs_err) / len(SEEDS)
    assert mean_ours <= 1.05 * mean_theirs, (
        f"k={k}: mean worst error over seeds {mean_ours:.5f} (ours) > 1.05 x {mean_theirs:.5f} "
        "(escnn):\n" + "\n".join(lines))
