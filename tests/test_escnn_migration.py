"""``from_escnn`` on what a user migrating a trained escnn model has: pixel-group convs with
a dilation or a high frequency cutoff.

Run with the peers venv (``.venv-peers/bin/python -m pytest tests/test_escnn_migration.py``);
skipped where escnn is missing.
"""

import pytest
import torch
from _peers import ESCNN_MISSING
from conftest import seeded_rng

escnn = pytest.importorskip("escnn", reason=ESCNN_MISSING)
from escnn import gspaces  # noqa: E402
from escnn import nn as esc  # noqa: E402

from equilayers.interop import from_escnn  # noqa: E402
from equilayers.nn import GroupConv2d, LiftingConv2d  # noqa: E402


def _regular(gs, c):
    return esc.FieldType(gs, c * [gs.regular_repr])


def _trivial(gs, c):
    return esc.FieldType(gs, c * [gs.trivial_repr])


def _rel(got, want):
    return float((got - want).abs().max() / want.abs().max())


@pytest.mark.parametrize("space", ["c4", "d4"])
@pytest.mark.parametrize("lifting", [True, False])
@pytest.mark.parametrize("kw", [dict(padding=4, dilation=2),
                                dict(padding=2, frequencies_cutoff=lambda r: 3 * r)],
                         ids=["dilation", "high_cutoff"])
def test_pixel_group_conv_with_many_basis_elements_converts(space, lifting, kw, monkeypatch):
    """escnn samples each output slot's filter on its own in float32; with a dilation or a high
    frequency cutoff its slots agree only to ~2e-6 of the largest entry, which the pixel
    conversion refused as a convention mismatch. The control: a filter off by 1e-3 in one
    slot is still refused."""
    gs = gspaces.rot2dOnR2(4) if space == "c4" else gspaces.flipRot2dOnR2(4)
    t_in = _trivial(gs, 2) if lifting else _regular(gs, 2)
    with seeded_rng(0):
        conv = esc.R2Conv(t_in, _regular(gs, 3), 5, **kw).eval()
    ours = from_escnn(conv)
    assert isinstance(ours, LiftingConv2d if lifting else GroupConv2d)
    x = torch.randn(2, t_in.size, 15, 15, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got = ours(x if lifting else x.unflatten(1, (2, -1))).flatten(1, 2)
        assert _rel(got, conv(esc.GeometricTensor(x, t_in)).tensor) < 1e-5
    expand = conv.expand_parameters

    def bent():
        filt, bias = expand()
        filt = filt.clone()
        filt[1] += 1e-3 * filt.abs().max()
        return filt, bias

    monkeypatch.setattr(conv, "expand_parameters", bent)
    with pytest.raises(ValueError, match="is not reproduced by"):
        from_escnn(conv)
