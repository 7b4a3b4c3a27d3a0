"""Off-grid rotation error of our SO(2) harmonic stack side by side with escnn's (issue 5).

Both stacks have the same shape: a lifting conv from one image channel to 4 fields holding
rotation orders 0..2 (ours: ``LiftingConv2d(group="so2", max_order=2)``; escnn: ``R2Conv``
trivial -> ``4 x [irrep(0), irrep(1), irrep(2)]`` on ``rot2dOnR2(N=-1, maximum_frequency=2)``),
a norm-ReLU, a harmonic -> harmonic conv, and norm pooling to ``4 * 3`` rotation-invariant
maps (ours: channel ``3c + m``; escnn's ``NormPool``: one map per irrep field, in the same
order). Both run in float32 (escnn's basis buffers are float32) on the same disk-faded camera
image, with each library's default random init under the same seed; the norm-ReLU thresholds
are the same fraction (drawn per field and order) of each stack's own lifting-output RMS, so
the nonlinearity cuts a comparable share of both. The harness measures the relative error at
15, 30, 45, 60 and 137 degrees (inside the inscribed disk) beside the interpolation floor.

Run with an environment that has escnn and scikit-image (``/work/venv-peers/bin/python -m
pytest tests/test_escnn_harmonic.py``); skipped elsewhere.
"""

import pytest
import torch
from torch import nn

escnn = pytest.importorskip("escnn", reason="escnn is not installed (optional extra "
                            "`.[escnn]`; it needs gfortran for py3nj)")
pytest.importorskip("skimage", reason="scikit-image is not installed (the test image is "
                    "skimage.data.camera)")
from escnn import gspaces  # noqa: E402
from escnn import nn as esc  # noqa: E402

from equilayers import nn as enn  # noqa: E402
from equilayers.groups import get  # noqa: E402
from equilayers.testing import assert_equivariant, equivariance_report  # noqa: E402
from equilayers.testing._cases_harmonic import _camera  # noqa: E402

M, WIDTH, SEEDS = 2, 4, (0, 1, 2)
ANGLES = (15.0, 30.0, 45.0, 60.0, 137.0)


class _Ours(nn.Sequential):
    in_rep = out_rep = "trivial"

    def __init__(self, k: int) -> None:
        super().__init__(
            enn.LiftingConv2d(1, WIDTH, k, padding=k // 2, group="so2", max_order=M),
            enn.NormNonlinearity(WIDTH, M),
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
    torch.manual_seed(seed)
    ours = _Ours(k).eval()
    torch.manual_seed(seed)
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


# Measured here (float32, disk-faded 49x49 camera), worst relative error over the five angles,
# ours vs escnn (seeds 0/1/2), then per rotation order (maps 3c + m), worst over the angles:
#   k=5: 0.0161/0.0129/0.0316 vs 0.0447/0.0297/0.0336
#        m=0 0.008/0.008/0.023 vs 0.046/0.023/0.026, m=1 0.032/0.033/0.040 vs 0.031/0.033/0.036,
#        m=2 0.083/0.085/0.077 vs 0.073/0.077/0.075
#   k=7: 0.0152/0.0141/0.0434 vs 0.0211/0.0180/0.0345
#        m=0 0.013/0.009/0.054 vs 0.017/0.012/0.022, m=1 0.020/0.019/0.031 vs 0.024/0.020/0.036,
#        m=2 0.057/0.053/0.051 vs 0.062/0.061/0.057
# Before the band limit was escnn's (caps 2r inside, 2r - 1 outside, sigma 0.6 outside), order 2
# was 0.15/0.26/0.15 (k=5) and 0.12/0.12/0.10 (k=7): frequencies 3 and 4 on radius-2 rings
# alias (one element's off-grid error 0.6 to 1.9). With the same filter space the remaining
# differences come from the default inits drawing different filters: over seeds 0..11 the mean
# worst error is 0.026 (ours) vs 0.035 (escnn) at k=5 but 0.030 vs 0.023 at k=7, where seed 2
# loses through order 0 (0.054 vs 0.022). escnn's per-block init rule (variance 1 / (number of
# input orders x elements in the block)) on our basis measured 0.020-0.022 there (not adopted:
# it belongs to GroupConv2d.reset_parameters). The errors are deterministic (CPU, fixed seeds), so
# no slack is allowed.
@pytest.mark.parametrize("k", [5, pytest.param(7, marks=pytest.mark.xfail(
    strict=True, raises=AssertionError, reason=(
        "k=7 seed 2: worst over 15/30/45/60/137 degrees 0.0434 (ours) vs 0.0345 (escnn), "
        "with the same filter space: the default inits differ (see comment)")))])
def test_offgrid_error_no_worse_than_escnn(k):
    x = _image()
    els = get("so2").elements_at(list(ANGLES))
    lines, worse = [], []
    for seed in SEEDS:
        ours, theirs = _stacks(k, seed, x)
        a = equivariance_report(ours, x, "so2", elements=els, in_rep="trivial",
                                out_rep="trivial")
        b = equivariance_report(theirs, x, "so2", elements=els, in_rep="trivial",
                                out_rep="trivial")
        per_angle = ", ".join(f"{g.degrees:g}: {a.errors[g]:.4f} vs {b.errors[g]:.4f}"
                              for g in els)
        lines.append(f"seed {seed}: worst {a.error:.4f} (floor {a.floor:.4f}) vs "
                     f"{b.error:.4f} (floor {b.floor:.4f}); {per_angle}")
        if not a.error <= b.error:
            worse.append(seed)
    assert not worse, (f"k={k}: ours worse than escnn for seeds {worse} (ours vs escnn):\n"
                       + "\n".join(lines))
