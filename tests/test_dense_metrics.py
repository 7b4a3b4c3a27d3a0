"""Per-pixel consistency and equivariance error of dense predictions: exact models score 1 / 0,
aliasing ones do not (negative controls), any callable works, inputs are validated."""

import pytest
import torch
from conftest import seeded_rng
from torch import nn

from equilayers.groups import get
from equilayers.metrics import pixel_consistency, pixel_equivariance_error
from equilayers.nn import LearnablePolyphasePool2d, LearnablePolyphaseUpsample2d
from equilayers.testing._cases_blur import LiftingConv


def _x(gen, *shape):
    return torch.randn(*shape, generator=gen, dtype=torch.float64)


@pytest.mark.parametrize("transforms", ["shifts", "rot90", "flip", "p4m"])
def test_pointwise_model_is_exact(transforms, gen):
    x = _x(gen, 2, 5, 8, 8)
    model = nn.Conv2d(5, 4, 1).double()  # pointwise: commutes with every pixel permutation
    assert pixel_consistency(model, x, transforms) == 1.0
    assert pixel_consistency(lambda t: t, x, transforms) == 1.0
    assert pixel_equivariance_error(model, x, transforms) < 1e-14


@pytest.mark.parametrize("channels", [1, 4])
def test_pixel_consistency_of_nan_logits_is_nan(channels, gen):
    """A NaN logit gives its pixel no label (argmax says 0, ``logit > 0`` says False), so a
    model of NaNs scored 1.0; NaN now, as pixel_equivariance_error already says."""
    x = _x(gen, 2, 5, 8, 8)
    with seeded_rng(0):
        conv = nn.Conv2d(5, channels, 1).double()
    nan_pixel = torch.ones(8, 8, dtype=torch.float64)
    nan_pixel[3, 4] = float("nan")
    for model in [lambda t: conv(t) * float("nan"), lambda t: conv(t) * nan_pixel]:
        assert pixel_consistency(model, x) != pixel_consistency(model, x)  # NaN
        assert pixel_consistency(model, x, "p4m") != pixel_consistency(model, x, "p4m")
    assert pixel_consistency(conv, x, "p4m") == 1.0  # control: the conv alone is exact


def test_circular_conv_is_shift_exact_and_not_rotation_exact(gen):
    with seeded_rng(0):
        conv = nn.Conv2d(3, 6, 3, padding=1, padding_mode="circular").double()
        x = _x(gen, 2, 3, 12, 12)
        assert pixel_consistency(conv, x, shifts=12) == 1.0  # the whole torus
        assert pixel_equivariance_error(conv, x, shifts=[(5, -7)]) < 1e-14
        assert pixel_consistency(conv, x, "rot90") < 0.9  # a generic filter is not rotation-exact
        assert pixel_equivariance_error(conv, x, "rot90") > 0.1


def _strided_net() -> nn.Module:
    with seeded_rng(0):
        return nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, padding_mode="circular"), nn.ReLU(),
                             nn.Conv2d(8, 5, 3, padding=1, padding_mode="circular"),
                             nn.Upsample(scale_factor=2.0)).double()


def test_negative_control_strided_net_scores_below_one(gen):
    net, x = _strided_net(), _x(gen, 2, 3, 16, 16)
    assert pixel_consistency(net, x) < 0.9
    assert pixel_equivariance_error(net, x) > 0.1
    mean = pixel_equivariance_error(net, x, reduction="mean")
    assert 0 < mean < pixel_equivariance_error(net, x, reduction="max")
    # shifts by the stride (2) are exact for it: the metric sees the phase, not the shift
    assert pixel_consistency(net, x, shifts=[(2, 0), (0, 2), (4, 6)]) == 1.0


class _LpsSegmenter(nn.Module):
    """A d4 segmentation toy: lifting conv, learnable polyphase down and up, a regular group
    conv's worth of mixing (1x1), max over the fiber -> per-pixel logits (B, K, H, W)."""

    def __init__(self) -> None:
        super().__init__()
        with seeded_rng(0):
            self.lift = LiftingConv(3, 4)
            self.pool = LearnablePolyphasePool2d(4, return_index=True, dtype=torch.float64)
            self.up = LearnablePolyphaseUpsample2d()
            self.mix = nn.Conv3d(4, 5, 1).double()

    def forward(self, x):
        h = torch.relu(self.lift(x))
        y, index = self.pool(h)
        h = h + self.up(torch.tanh(y), index)
        return self.mix(h).amax(2)


def test_lps_unet_toy_is_exact_for_shifts_and_d4(gen):
    model = _LpsSegmenter().eval()
    x = _x(gen, 2, 3, 12, 12)
    assert pixel_consistency(model, x, shifts=4) == 1.0
    assert pixel_consistency(model, x, "d4") == 1.0
    assert pixel_equivariance_error(model, x, "d4") < 1e-12
    # the same toy with plain strided subsampling instead of LPS is not
    model.pool.forward = lambda h: (h[..., ::2, ::2],  # type: ignore[method-assign]
                                    torch.zeros(h.shape[0], dtype=torch.long))
    assert pixel_consistency(model, x, shifts=4) < 1.0


def test_low_resolution_output_and_binary_labels(gen):
    x = _x(gen, 2, 3, 8, 8)
    low = nn.Conv2d(3, 1, 2, 2).double()  # (B, 1, 4, 4): binary logits, output pixel = 2
    assert pixel_consistency(low, x) == 1.0  # shifts by whole output pixels
    with pytest.raises(ValueError, match="not a multiple of the output's pixel"):
        pixel_consistency(low, x, shifts=[(1, 0)])
    flipped = pixel_consistency(lambda t: -t[:, :1], x, shifts=[(1, 0)])
    assert flipped == 1.0  # labels are logit > 0 for one channel


def test_shifts_are_taken_modulo_the_size_and_the_identity_is_left_out(gen):
    # shifts that wrap round to the identity compared the model with itself: a patch
    # classifier (one output cell per 8x8 image) scored 1.0, and on 6x6 the default shifts
    # (0, 6), (6, 0), (6, 6) counted as perfect agreements
    patch, x = nn.Conv2d(3, 4, 8, stride=8).double(), _x(gen, 2, 3, 8, 8)
    for metric in (pixel_consistency, pixel_equivariance_error):
        with pytest.raises(ValueError, match=r"size 8x8 leave only the identity"):
            metric(patch, x)
        with pytest.raises(ValueError, match="leave only the identity"):
            metric(patch, x, shifts=[(8, 0), (0, 16)])
    with seeded_rng(0):  # output pixel 2 (3x3 on 6x6), zero padding: not shift-exact
        net = nn.Conv2d(3, 4, 3, 2, 1).double()
    x6 = _x(gen, 2, 3, 6, 6)
    distinct = [(a, b) for a in (0, 2, 4) for b in (0, 2, 4) if (a, b) != (0, 0)]
    assert pixel_consistency(net, x6) == pixel_consistency(net, x6, shifts=distinct)
    assert pixel_consistency(net, x6) < 1.0  # the negative control still fails
    assert (pixel_consistency(net, x6, shifts=[(2, 0), (8, 0)])
            == pixel_consistency(net, x6, shifts=[(2, 0)]))


def test_validation(gen):
    x = _x(gen, 2, 3, 8, 8)
    with pytest.raises(ValueError, match="shifts=4 is for transforms='shifts'"):
        pixel_consistency(lambda t: t, x, "p4", shifts=4)
    with pytest.raises(ValueError, match="in_rep, out_rep and elements are for group"):
        pixel_consistency(lambda t: t, x, in_rep="trivial")
    with pytest.raises(ValueError, match="does not map the pixel grid"):
        pixel_consistency(lambda t: t, x, "so2", elements=get("so2").elements_at([45.0]))
    with pytest.raises(ValueError, match=r"dense map \(B, K, H', W'\)"):
        pixel_consistency(lambda t: t.mean((-2, -1)), x)
    with pytest.raises(ValueError, match="transforms='rot45'"):
        pixel_equivariance_error(lambda t: t, x, "rot45")


def test_a_flat_shift_pair_is_refused_not_read_as_two_diagonal_shifts(gen):
    # shifts=(1, 2) reads as one shift by (dy, dx) = (1, 2); it was taken as the two shifts
    # (1, 1) and (2, 2) (each bare int n as (n, n)) and scored silently
    net, x = _strided_net(), _x(gen, 2, 3, 16, 16)
    for metric in (pixel_consistency, pixel_equivariance_error):
        for flat in ((1, 2), [1, 2], [1, (2, 2)]):
            with pytest.raises(TypeError, match=r"not a flat sequence.*shifts=\[\("):
                metric(net, x, shifts=flat)
    # the list of one pair is the one shift: it differs from the two diagonal shifts here
    one = pixel_equivariance_error(net, x, shifts=[(1, 2)], reduction="mean")
    assert one > 0.01
    assert one != pixel_equivariance_error(net, x, shifts=[(1, 1), (2, 2)], reduction="mean")


def test_group_transforms_on_rectangles(gen):
    """A quarter turn runs the model on the ``W x H`` input of an ``H x W`` one: an exact p4m
    U-Net keeps every pixel's label on a 16 x 24 batch (error at rounding), the plain U-Net
    does not, and a model that cannot take the turned shape gets a ValueError naming it."""
    from equilayers.models import UNet

    x = torch.randn(2, 2, 16, 24, generator=gen, dtype=torch.float64)
    with seeded_rng(0):
        net = UNet(2, 3, group="p4m", depth=2, width=2).double().eval()
        plain = UNet(2, 3, group=None, depth=2, width=2).double().eval()
    assert pixel_equivariance_error(net, x, "p4m") < 1e-12
    assert pixel_consistency(net, x, "p4m") == 1.0
    assert pixel_equivariance_error(plain, x, "p4m") > 1e-2
    fixed = nn.Sequential(nn.LayerNorm([2, 16, 24]), nn.Conv2d(2, 3, 1)).double()
    with pytest.raises(ValueError, match=r"turns the 16x24 input into 24x16, which the model"):
        pixel_consistency(fixed, x, "p4")


# --- volumes: per-voxel logits, the cube's groups, 3-D shifts -------------------------------
def test_volumes_cube_groups_and_3d_shifts(gen):
    """A circular Conv3d is exact under every 3-D circular shift (pixel_consistency 1.0, error
    at rounding) and not under the cube's rotations (a generic filter: the negative control);
    the O U-Net is exact under all 24 rotations, per voxel."""
    from equilayers.models import UNet3d

    x = _x(gen, 2, 3, 6, 6, 6)
    with seeded_rng(0):
        conv = nn.Conv3d(3, 5, 3, padding=1, padding_mode="circular").double()
        net = UNet3d(3, 5, group="o", depth=1, width=1, down="polyphase").double().eval()
    every = [(a, b, c) for a in range(3) for b in range(3) for c in range(3)]
    assert pixel_consistency(conv, x, shifts=every) == 1.0
    assert pixel_equivariance_error(conv, x, shifts=[(1, -2, 3)]) < 1e-14
    assert pixel_consistency(conv, x, "o") < 0.9
    assert pixel_equivariance_error(conv, x, "o") > 0.1
    assert len({int(v) for v in net(x).argmax(1).unique()}) > 1  # the labels vary
    assert pixel_consistency(net, x, "o") == 1.0
    assert pixel_equivariance_error(net, x, "o") < 1e-12
    assert pixel_consistency(net, x, shifts=[(1, 0, 0), (0, 1, 5)]) == 1.0


def test_integer_shifts_on_volumes_move_the_depth_too(gen):
    """``shifts=n`` on per-voxel logits gives every (i, j, l): a model that reads the depth
    position fails it (a planar reading of the shifts would have scored 1.0)."""
    x = _x(gen, 2, 3, 4, 6, 6)
    with seeded_rng(0):
        conv = nn.Conv3d(3, 4, 3, padding=1, padding_mode="circular").double()
    ramp = torch.arange(4, dtype=torch.float64).view(4, 1, 1) * 3.0

    def by_depth(t):
        return conv(t) + ramp * torch.tensor([1.0, -1.0, 0.5, 0.0]).view(4, 1, 1, 1).double()

    assert pixel_consistency(by_depth, x, shifts=[(0, 1, 1), (0, 2, 5)]) == 1.0
    assert pixel_consistency(by_depth, x, shifts=2) < 1.0
    assert pixel_consistency(conv, x, shifts=2) == 1.0  # the control


def test_volume_shift_errors_are_named(gen):
    x = _x(gen, 1, 2, 4, 4, 4)
    conv = nn.Conv3d(2, 3, 1).double()
    with pytest.raises(ValueError, match=r"integer triples \(dz, dy, dx\).*got \(1, 2\)"):
        pixel_consistency(conv, x, shifts=[(1, 2, 0), (1, 2)])
    with pytest.raises(ValueError, match=r"per-voxel logits \(B, K, D', H', W'\)"):
        pixel_consistency(lambda t: t[:, :, None], x, "o")


def test_another_librarys_in_type_is_not_a_declaration(gen):
    """escnn modules carry an ``in_type`` of their own (an escnn FieldType): the metrics and
    the harness read it as no declaration (the type is guessed), where they raised a
    TypeError blaming ``in_rep`` (found by the segmentation3d benchmark's escnn row)."""
    from equilayers.testing import equivariance_error

    class Foreign(nn.Module):
        in_type = out_type = object()  # stands in for escnn's FieldType

        def forward(self, t):
            return t * 2.0

    x = _x(gen, 2, 3, 4, 4, 4)
    assert pixel_consistency(Foreign(), x, "o") == 1.0
    assert equivariance_error(Foreign(), x, "o") == 0.0
    assert pixel_consistency(Foreign(), x[:, :, 0], "p4m") == 1.0


def test_a_finite_group_with_off_grid_rotations_is_measured_on_its_grid_elements(gen):
    """``transforms="c8"`` (or ``"ico"`` on volumes) measures the grid elements by default,
    as ``"so2"`` does (the docstring's promise; all eight elements raised before); off-grid
    elements passed by name are still refused. A model that breaks the quarter turns scores
    below 1 (the control)."""
    x = _x(gen, 2, 3, 9, 9)
    assert pixel_consistency(lambda t: 2 * t, x, "c8") == 1.0
    with seeded_rng(0):
        plain = nn.Conv2d(3, 4, 3, padding=1).double()
    assert pixel_consistency(plain, x, "c8") == pixel_consistency(plain, x, "c4") < 1.0
    assert pixel_equivariance_error(plain, x, "c8") == pixel_equivariance_error(plain, x, "c4")
    with pytest.raises(ValueError, match="does not map the pixel grid"):
        pixel_consistency(plain, x, "c8", elements=[1])
    vol = _x(gen, 1, 2, 5, 5, 5)
    assert pixel_consistency(lambda t: t.pow(2), vol, "ico") == 1.0
