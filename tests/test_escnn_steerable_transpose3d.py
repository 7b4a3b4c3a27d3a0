"""``SteerableConvTranspose3d`` beside escnn's ``R3ConvTransposed`` (peers venv): ``from_escnn``
of SO(3)/O(3) encoder-decoders (a stride-2 ``R3Conv`` down, a stride-2 ``R3ConvTransposed``
up) with escnn's field signs, of ``output_padding`` and escnn's basis settings, and of the
transposed conv on ``rot2dOnR3()`` fields; the same filter space (escnn's parameter count).

Run with the peers venv (``.venv-peers/bin/python -m pytest
tests/test_escnn_steerable_transpose3d.py``); skipped where escnn is missing.
"""

import pytest
import torch
from _interop_common import _so3_space
from _peers import ESCNN_MISSING
from conftest import seeded_rng

escnn = pytest.importorskip("escnn", reason=ESCNN_MISSING)
from escnn import gspaces  # noqa: E402
from escnn import nn as enn  # noqa: E402

from equilayers.interop import escnn_field_signs, from_escnn  # noqa: E402
from equilayers.nn import SteerableConvTranspose3d  # noqa: E402


@pytest.mark.parametrize("space", ["so3", "o3"])
def test_so3_encoder_decoder_matches_escnn(space, gen):
    """R3Conv (volumes -> orders 0..1, stride 2), n_relu, R3ConvTransposed (-> orders 0..2,
    stride 2: ``n -> (n+1)/2 -> n``), NormPool: the converted fields are escnn's times its
    field signs, the pooled norms escnn's as they are; the weight count is escnn's."""
    gs, irreps = _so3_space(space)
    t_in = enn.FieldType(gs, 2 * [gs.trivial_repr])
    t_mid, t_out = enn.FieldType(gs, 3 * irreps[:2]), enn.FieldType(gs, 2 * irreps)
    with seeded_rng(0):
        down = enn.R3Conv(t_in, t_mid, 3, stride=2, padding=1)
        act = enn.NormNonLinearity(t_mid, "n_relu")
        up = enn.R3ConvTransposed(t_mid, t_out, 3, padding=1, stride=2)
    with torch.no_grad():
        up.bias.add_(0.5)  # escnn's bias (order-0 slots) away from 0
    body = enn.SequentialModule(down, act, up).eval()
    ours = from_escnn(body).eval()
    assert isinstance(ours[2], SteerableConvTranspose3d)
    assert ours[2].group.name == space and ours[2].max_order == 2
    assert ours[2].weight.numel() == up.weights.numel()
    x = torch.randn(2, 2, 7, 7, 7, generator=gen)
    with torch.no_grad():
        theirs = body(enn.GeometricTensor(x, t_in)).tensor
        y = ours(x)
    assert y.shape == (2, 2, 9, 7, 7, 7)
    signs = escnn_field_signs(2).float().repeat(2).view(1, -1, 1, 1, 1)
    torch.testing.assert_close(y.flatten(1, 2) * signs, theirs, rtol=0, atol=1e-5)
    assert not torch.allclose(y.flatten(1, 2), theirs, atol=1e-2)  # the signs are needed
    pooled = enn.SequentialModule(body, enn.NormPool(t_out)).eval()
    with torch.no_grad():
        torch.testing.assert_close(from_escnn(pooled).eval()(x),
                                   pooled(enn.GeometricTensor(x, t_in)).tensor,
                                   rtol=0, atol=1e-5)


@pytest.mark.filterwarnings("ignore:SteerableConvTranspose3d .so3. is not exactly")  # op=1
@pytest.mark.parametrize("kw", [{"output_padding": 1, "stride": 2, "padding": 1},
                                {"sigma": 0.8, "stride": 2},
                                {"frequencies_cutoff": 1.0, "dilation": 2},
                                {"kernel_size": 4, "stride": 2, "padding": 1},
                                {"kernel_size": 2, "stride": 2, "rings": [0.75 ** 0.5],
                                 "frequencies_cutoff": lambda r: 1.0}])
def test_options_and_escnns_basis_settings_convert(kw, gen):
    """output_padding, dilation, escnn's own shells (its sigma, a lower cap) and even kernels
    (sampled around the point between the middle voxels, as ours; at k = 2 escnn's default
    basis is empty, and its shell through the eight voxels with cap 1 is our default): the
    converted layer holds escnn's filter with escnn's parameter count."""
    gs, irreps = _so3_space("so3")
    t_in, t_out = enn.FieldType(gs, 2 * irreps[:2]), enn.FieldType(gs, 2 * irreps)
    kw = {"kernel_size": 5, **kw}
    with seeded_rng(0):
        up = enn.R3ConvTransposed(t_in, t_out, **kw).eval()
    ours = from_escnn(up)
    assert isinstance(ours, SteerableConvTranspose3d)
    assert ours.weight.numel() == up.weights.numel()
    assert ours.output_padding == (kw.get("output_padding", 0),) * 3
    x = torch.randn(2, 2, 4, 4, 4, 4, generator=gen)
    s_in = escnn_field_signs(1).float().repeat(2).view(1, -1, 1, 1, 1)
    s_out = escnn_field_signs(2).float().repeat(2).view(1, -1, 1, 1, 1)
    with torch.no_grad():
        theirs = up(enn.GeometricTensor(x.flatten(1, 2) * s_in, t_in)).tensor
        y = ours(x)
    torch.testing.assert_close(y.flatten(1, 2) * s_out, theirs, rtol=0, atol=1e-5)


def test_rot2d_on_r3_transposed_conv_converts(gen):
    """escnn's R3ConvTransposed on ``rot2dOnR3()`` fields (orders 0..2 -> 0..1): our
    ``group="so2"`` transposed conv (the same slots and signs), escnn's parameter count and
    outputs."""
    gs = gspaces.rot2dOnR3()
    field = [gs.fibergroup.irrep(m) for m in range(3)]
    t_in, t_out = enn.FieldType(gs, 2 * field), enn.FieldType(gs, 3 * field[:2])
    with seeded_rng(0):
        up = enn.R3ConvTransposed(t_in, t_out, 3, padding=1, stride=2).eval()
    ours = from_escnn(up)
    assert isinstance(ours, SteerableConvTranspose3d) and ours.group.name == "so2"
    assert ours.weight.numel() == up.weights.numel()
    x = torch.randn(2, 10, 3, 4, 4, generator=gen)
    with torch.no_grad():
        torch.testing.assert_close(ours(x.unflatten(1, (2, 5))).flatten(1, 2),
                                   up(enn.GeometricTensor(x, t_in)).tensor, rtol=0, atol=1e-5)
