"""equilayers.interop.from_escnn for escnn's 3-D pools and its antialiased max pools
(``PointwiseMaxPool3D``, ``PointwiseAvgPool3D``, ``PointwiseAvgPoolAntialiased3D``,
``PointwiseMaxPoolAntialiased2D/3D``, ``PointwiseAdaptiveAvgPool3D/MaxPool3D``): escnn's
outputs in our layout on regular fields of the cube (slot order permuted), volumes and SO(3)
fields, a whole escnn octahedral classifier converted, and the refusals.

Needs escnn (run in the peers venv: ``make test-peers``); skipped elsewhere."""

from collections import OrderedDict

import pytest
import torch
from _interop_common import _escnn
from conftest import seeded_rng

from equilayers.interop import escnn_field_signs, escnn_slot_order, from_escnn
from equilayers.testing import assert_equivariant


def _esc():
    _escnn()
    from escnn import gspaces
    from escnn import nn as esc
    return gspaces, esc


def _regular(gs, c):
    from escnn import nn as esc
    return esc.FieldType(gs, c * [gs.regular_repr])


def _trivial(gs, c):
    from escnn import nn as esc
    return esc.FieldType(gs, c * [gs.trivial_repr])


def _ours_regular(x, c, n, perm):
    """escnn's regular tensor ``(B, C * n, ...)`` in our layout ``(B, C, n, ...)``."""
    return x.unflatten(1, (c, n))[:, :, perm]


_POOLS = {
    "max3d-k3s2p1": lambda esc, t: esc.PointwiseMaxPool3D(t, 3, 2, 1),
    "max3d-k2-ceil": lambda esc, t: esc.PointwiseMaxPool3D(t, 2, ceil_mode=True),
    "avg3d-k3s2p1": lambda esc, t: esc.PointwiseAvgPool3D(t, 3, 2, 1),
    "avg3d-k2-ceil": lambda esc, t: esc.PointwiseAvgPool3D(t, 2, ceil_mode=True),
    "avg-aa3d": lambda esc, t: esc.PointwiseAvgPoolAntialiased3D(t, sigma=0.66, stride=2),
    "avg-aa3d-pad0-s1": lambda esc, t: esc.PointwiseAvgPoolAntialiased3D(t, 0.5, 1, 0),
    "max-aa3d": lambda esc, t: esc.PointwiseMaxPoolAntialiased3D(t, 2, sigma=0.66),
    "max-aa3d-k3-p1-s2": lambda esc, t: esc.PointwiseMaxPoolAntialiased3D(t, 3, 2, 1,
                                                                          sigma=0.4),
    "adaptive-avg3d": lambda esc, t: esc.PointwiseAdaptiveAvgPool3D(t, (2, 1, 3)),
    "adaptive-max3d": lambda esc, t: esc.PointwiseAdaptiveMaxPool3D(t, 1),
}


@pytest.mark.filterwarnings("ignore:.*is not exactly equivariant")  # an anisotropic box
@pytest.mark.parametrize("pool", list(_POOLS))
@pytest.mark.parametrize("fields", ["octa-regular", "volume"])
def test_pool3d_matches_escnn(pool, fields, gen):
    """Each pool on regular octahedral fields (escnn's slots permuted into ours) and on
    volumes (trivial fields, the same tensor): escnn's outputs to float rounding."""
    gspaces, esc = _esc()
    gs = gspaces.octaOnR3()
    regular = fields == "octa-regular"
    t = _regular(gs, 2) if regular else _trivial(gs, 3)
    m = _POOLS[pool](esc, t)
    x = torch.randn(2, t.size, 7, 8, 9, generator=gen)  # escnn's filters are float32
    with torch.no_grad():
        want = m(esc.GeometricTensor(x, t)).tensor
    ours = from_escnn(m)
    if regular:
        perm = escnn_slot_order(gs)
        got = ours(_ours_regular(x, 2, 24, perm))
        torch.testing.assert_close(got, _ours_regular(want, 2, 24, perm))
    else:
        torch.testing.assert_close(ours(x), want)


@pytest.mark.parametrize("pool", ["avg3d-k3s2p1", "avg-aa3d"])
@pytest.mark.parametrize("space", ["so3", "o3"])
def test_linear_pools_on_so3_fields_match_escnn(pool, space, gen):
    """The linear pools also take SO(3)/O(3) fields ``[irrep 0, 1, 2]`` (escnn's tensor is ours
    times the field signs per slot, which a spatial pool keeps)."""
    gspaces, esc = _esc()
    gs = gspaces.rot3dOnR3() if space == "so3" else gspaces.flipRot3dOnR3()
    fg = gs.fibergroup
    irreps = ([fg.irrep(ell) for ell in range(3)] if space == "so3"
              else [fg.irrep(ell % 2, ell) for ell in range(3)])
    t = esc.FieldType(gs, 2 * irreps)
    m = _POOLS[pool](esc, t)
    signs = escnn_field_signs(2).repeat(2).float().view(1, -1, 1, 1, 1)
    ours_x = torch.randn(2, 2, 9, 7, 7, 7, generator=gen)
    with torch.no_grad():
        want = m(esc.GeometricTensor(ours_x.flatten(1, 2) * signs, t)).tensor
    got = from_escnn(m)(ours_x)
    torch.testing.assert_close(got.flatten(1, 2) * signs, want)


@pytest.mark.filterwarnings("ignore:.*is not exactly equivariant")  # an 11 x 12 image
@pytest.mark.parametrize("fields", ["c4-regular", "image"])
def test_max_antialiased_2d_matches_escnn(fields, gen):
    """escnn's ``PointwiseMaxPoolAntialiased2D`` (a max at stride 1, then a Gaussian of 4
    sigma at its stride) -> a max pool then ``GaussianBlurPool2d(truncate=4)``; the control:
    the default 3-sigma blur is a different filter and misses escnn's output."""
    gspaces, esc = _esc()
    gs = gspaces.rot2dOnR2(4)
    t = _regular(gs, 2) if fields == "c4-regular" else _trivial(gs, 3)
    m = esc.PointwiseMaxPoolAntialiased2D(t, 3, 2, 1, sigma=1.0)
    x = torch.randn(2, t.size, 11, 12, generator=gen)
    with torch.no_grad():
        want = m(esc.GeometricTensor(x, t)).tensor
    ours = from_escnn(m)
    assert [type(c).__name__ for c in ours] == (
        ["GroupMaxPool2d" if fields == "c4-regular" else "MaxPool2d", "GaussianBlurPool2d"])
    assert ours.blur.truncate == 4.0 and ours.blur.kernel_size == 9
    inp = x.unflatten(1, (2, 4)) if fields == "c4-regular" else x
    got = ours(inp)
    torch.testing.assert_close(got.reshape(want.shape), want)
    from equilayers.nn import GaussianBlurPool2d
    three_sigma = torch.nn.Sequential(ours.max, GaussianBlurPool2d(1.0, 2, 1 + 3))
    assert not torch.allclose(three_sigma(inp).reshape(want.shape), want, atol=1e-5)


def test_octahedral_classifier_converts_whole(gen):
    """An escnn octahedral classifier with every kind of 3-D pool (a ball mask, lifting conv,
    IID batch norm, ELU, the antialiased average pool, a regular conv, the antialiased max
    pool, group pooling, the adaptive pool): from_escnn converts it whole, gives escnn's
    outputs (eval mode, after a training step moved the statistics) and is invariant to the
    cube's rotations (the harness, with a negative control: the model after its mask on an
    even-sized input)."""
    gspaces, esc = _esc()
    gs = gspaces.octaOnR3()
    t_in, t1, t2, t_out = _trivial(gs, 1), _regular(gs, 2), _regular(gs, 2), _trivial(gs, 2)
    with seeded_rng(0):
        model = esc.SequentialModule(OrderedDict([
            ("mask", esc.MaskModule(t_in, 9, margin=10)),
            ("lift", esc.R3Conv(t_in, t1, 3, padding=1)), ("bn", esc.IIDBatchNorm3d(t1)),
            ("elu", esc.ELU(t1)),
            ("blur", esc.PointwiseAvgPoolAntialiased3D(t1, sigma=0.66, stride=2)),
            ("conv", esc.R3Conv(t1, t2, 3, padding=1)), ("relu", esc.ReLU(t2)),
            ("maxblur", esc.PointwiseMaxPoolAntialiased3D(t2, 3, 2, 1, sigma=0.5)),
            ("gpool", esc.GroupPooling(t2)),
            ("adapt", esc.PointwiseAdaptiveAvgPool3D(t_out, 1))]))
    x = torch.randn(3, 1, 9, 9, 9, generator=gen)
    model.train()
    with torch.no_grad():
        model(esc.GeometricTensor(x, t_in))
    model.eval()
    ours = from_escnn(model).eval()
    assert list(dict(ours.named_children())) == ["mask", "lift", "bn", "elu", "blur", "conv",
                                                 "relu", "maxblur", "gpool", "adapt"]
    with torch.no_grad():
        want = model(esc.GeometricTensor(x, t_in)).tensor
        got = ours(x)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    head = torch.nn.Sequential(ours, torch.nn.Flatten())
    assert_equivariant(head, x[:2], "o", in_rep="trivial", out_rep="invariant")
    unmasked = torch.nn.Sequential(ours[1:], torch.nn.Flatten())  # (the mask is 9^3)
    assert_equivariant(unmasked, x[:2], "o", in_rep="trivial", out_rep="invariant")
    with pytest.raises(AssertionError), pytest.warns(UserWarning):  # 8^3 breaks the grid
        assert_equivariant(unmasked, x[:2, :, 1:, 1:, 1:], "o", in_rep="trivial",
                           out_rep="invariant")


def test_refusals_name_the_layer_and_what_converts():
    gspaces, esc = _esc()
    gs = gspaces.rot3dOnR3()
    fg = gs.fibergroup
    mixed = esc.FieldType(gs, [fg.irrep(1), fg.irrep(0)])  # not [irrep 0, ..., irrep L]
    with pytest.raises(ValueError, match=r"PointwiseAvgPool3D on .*: the fields must repeat"):
        from_escnn(esc.PointwiseAvgPool3D(mixed, 2))
    octa = gspaces.octaOnR3()
    irrep = esc.FieldType(octa, [octa.fibergroup.irrep(*octa.fibergroup.irreps()[1].id)])
    with pytest.raises(ValueError, match=r"PointwiseAvgPoolAntialiased3D on .*: only regular "
                                         r"or trivial fields, or SO\(3\)/O\(3\) fields"):
        from_escnn(esc.PointwiseAvgPoolAntialiased3D(irrep, 0.66, 2))


def _escnn_mask(m, t, shape, fields):
    """escnn's train-mode output on ones, per field: (B, fields, field size, *spatial)."""
    from escnn import nn as esc
    with torch.no_grad():
        y = m.train()(esc.GeometricTensor(torch.ones(shape), t)).tensor
    return y.unflatten(1, (fields, -1))


@pytest.mark.parametrize("space", ["c4-regular", "octa-regular", "so2-whole", "image"])
def test_field_dropout_converts_with_escnns_mask_structure(space):
    """escnn's ``FieldDropout`` draws one mask per sample, field and pixel (checked here on
    escnn's own output); ours is built with its ``p`` and draws the same structure (regular
    fields, SO(2) fields as one representation per field: our ``FieldDropout``; trivial
    fields: ``nn.Dropout``), with the same keep rate; both are the identity in eval mode."""
    gspaces, esc = _esc()
    if space == "c4-regular":
        gs = gspaces.rot2dOnR2(4)
        t, fields, spatial = _regular(gs, 3), 3, (16, 16)
    elif space == "octa-regular":
        gs = gspaces.octaOnR3()
        t, fields, spatial = _regular(gs, 2), 2, (6, 6, 6)
    elif space == "so2-whole":
        gs = gspaces.rot2dOnR2(-1)
        rep = gs.fibergroup.spectral_regular_representation(*gs.fibergroup.bl_irreps(2))
        t, fields, spatial = esc.FieldType(gs, 3 * [rep]), 3, (16, 16)
    else:
        gs = gspaces.rot2dOnR2(4)
        t, fields, spatial = _trivial(gs, 3), 3, (16, 16)
    m = esc.FieldDropout(t, 0.3)
    ours = from_escnn(m)
    assert type(ours).__name__ == ("Dropout" if space == "image" else "FieldDropout")
    assert ours.p == pytest.approx(0.3) and ours.training
    shape = (64, t.size, *spatial)
    theirs = _escnn_mask(m, t, shape, fields)
    size = theirs.shape[2]
    x = torch.ones(64, fields, size, *spatial) if space != "image" else torch.ones(shape)
    with seeded_rng(0):
        mine = ours(x).reshape(theirs.shape)
    for y in (theirs, mine):  # one draw per field and pixel, shared by the field's slots
        kept = y != 0
        assert bool((kept == kept[:, :, :1]).all())
        torch.testing.assert_close(y[kept], torch.full_like(y[kept], 1 / 0.7))
        assert abs(kept[:, :, 0].float().mean().item() - 0.7) < 0.01
    eval_x = torch.randn(shape)
    with torch.no_grad():
        same = m.eval()(esc.GeometricTensor(eval_x, t)).tensor
    assert torch.equal(same, eval_x) and ours.eval()(x) is x


def test_field_dropout_on_separate_irreps_is_refused():
    """escnn drops each irrep of a field listed as separate irreps alone; ours would drop the
    field of orders 0..L whole: another distribution, refused by name."""
    gspaces, esc = _esc()
    gs = gspaces.rot2dOnR2(-1)
    t = esc.FieldType(gs, 2 * [gs.irrep(0), gs.irrep(1)])
    with pytest.raises(ValueError, match=r"FieldDropout on .*drops each irrep alone"):
        from_escnn(esc.FieldDropout(t, 0.2))


@pytest.mark.parametrize("margin,sigma", [(0.0, 2.0), (20.0, 1.0)])
def test_mask_module_on_volumes_converts_to_ball_mask(margin, sigma, gen):
    """escnn's ``MaskModule`` on a 3-D gspace -> ``BallMask`` with its size, margin and the
    ``sigma`` read back from its mask: escnn's outputs on regular and trivial fields."""
    gspaces, esc = _esc()
    gs = gspaces.octaOnR3()
    for t, fields in ((_regular(gs, 2), 2), (_trivial(gs, 3), None)):
        m = esc.MaskModule(t, 7, margin=margin, sigma=sigma)
        ours = from_escnn(m)
        assert type(ours).__name__ == "BallMask" and ours.sigma == pytest.approx(sigma)
        x = torch.randn(2, t.size, 7, 7, 7, generator=gen)
        with torch.no_grad():
            want = m(esc.GeometricTensor(x, t)).tensor
        got = ours(x.unflatten(1, (fields, -1)) if fields else x)
        torch.testing.assert_close(got.reshape(want.shape), want)
