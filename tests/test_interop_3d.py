"""equilayers.interop.from_escnn on volumes: R3Conv and R3ConvTransposed on the cube's groups
(escnn's octa and full_octa): same outputs as escnn with its slot order, its basis settings,
options, and clear errors for what is unsupported.

Needs escnn (optional extra; run with an environment that has it, e.g.
``.venv-peers/bin/python -m pytest tests/test_interop_3d.py``); skipped elsewhere.
"""

import pytest
import torch
from _interop_common import _escnn, _refused_when_broken
from conftest import seeded_rng

from equilayers.interop import from_escnn
from equilayers.testing import assert_equivariant


# --- volumes: R3Conv on the cube's groups ------------------------------------------------------
@pytest.mark.parametrize("space", ["octa", "full_octa"])
def test_r3conv_stack_matches_escnn_with_its_slot_order(space, gen):
    """A lifting R3Conv, InnerBatchNorm (running statistics moved by a training-mode call),
    ReLU, a regular R3Conv and GroupPooling on ``octaOnR3`` /
    ``fullOctaOnR3``: the converted model reproduces escnn's regular output after
    :func:`escnn_slot_order`'s permutation, and its pooled output as it is. The control: the
    slots in escnn's own order do not match (the permutation is needed and checked)."""
    _escnn()
    from escnn import gspaces
    from escnn import nn as esc

    from equilayers.interop import escnn_slot_order

    gs = gspaces.octaOnR3() if space == "octa" else gspaces.fullOctaOnR3()
    n = gs.fibergroup.order()
    t_in = esc.FieldType(gs, 2 * [gs.trivial_repr])
    t_mid = esc.FieldType(gs, 3 * [gs.regular_repr])
    t_out = esc.FieldType(gs, 2 * [gs.regular_repr])
    body = esc.SequentialModule(esc.R3Conv(t_in, t_mid, 3, padding=1),
                                esc.InnerBatchNorm(t_mid), esc.ReLU(t_mid),
                                esc.R3Conv(t_mid, t_out, 3, padding=1))
    x = torch.randn(2, 2, 5, 5, 5, generator=gen)
    body.train()
    with torch.no_grad():
        body(esc.GeometricTensor(x, t_in))  # running statistics away from their init
    body.eval()
    ours = from_escnn(body).eval()
    assert [type(m).__name__ for m in ours] == ["LiftingConv3d", "GroupBatchNorm3d", "ReLU",
                                                 "GroupConv3d"]
    assert ours[0].group.name == ("o" if space == "octa" else "oh")
    # escnn's default basis is our harmonic one: the same trainable parameters
    for i in (0, 3):
        assert ours[i].basis == "harmonic"
        assert ours[i].weight.numel() == body[i].weights.numel()
    with torch.no_grad():
        theirs = body(esc.GeometricTensor(x, t_in)).tensor.view(2, 2, n, 5, 5, 5)
        y = ours(x)
    perm = escnn_slot_order(gs)
    torch.testing.assert_close(y, theirs[:, :, perm], rtol=0, atol=1e-5)
    assert not torch.allclose(y, theirs, atol=1e-2)  # escnn's slot order is not ours
    pooled = esc.SequentialModule(body, esc.GroupPooling(t_out)).eval()
    with torch.no_grad():
        torch.testing.assert_close(from_escnn(pooled).eval()(x),
                                   pooled(esc.GeometricTensor(x, t_in)).tensor,
                                   rtol=0, atol=1e-5)


@pytest.mark.parametrize("k,settings", [
    (3, {"sigma": 1.2}), (5, {"frequencies_cutoff": 1.0}), (3, {"rings": [0.0, 1.0, 1.5]}),
    (3, {"dilation": 2})])
def test_r3conv_with_other_basis_settings_converts_with_escnns_settings(k, settings, gen):
    """An octahedral ``R3Conv`` with other basis settings: ``basis="harmonic"`` with escnn's
    settings (read from its basis) and its parameter count, and escnn's output after the slot
    permutation. The control: with ``frequencies_cutoff=1.0`` escnn's filters also lie in our
    default harmonic basis, which is larger; the conversion must not take it."""
    _escnn()
    from escnn import gspaces
    from escnn import nn as esc

    from equilayers.interop import escnn_slot_order
    from equilayers.nn import GroupConv3d

    gs = gspaces.octaOnR3()
    t_in = esc.FieldType(gs, [gs.regular_repr])
    t_out = esc.FieldType(gs, 2 * [gs.regular_repr])
    d = settings.get("dilation", 1)
    with seeded_rng(0):
        conv = esc.R3Conv(t_in, t_out, k, padding=k // 2 * d, **settings).eval()
    ours = from_escnn(conv)
    assert ours.basis == "harmonic" and ours.weight.numel() == conv.weights.numel()
    perm = escnn_slot_order(gs)
    x = torch.randn(1, 24, 5, 5, 5, generator=gen)
    with torch.no_grad():
        theirs = conv(esc.GeometricTensor(x, t_in)).tensor.view(1, 2, 24, 5, 5, 5)
        torch.testing.assert_close(ours(x.view(1, 1, 24, 5, 5, 5)[:, :, perm]),
                                   theirs[:, :, perm], rtol=0, atol=1e-5)
    if "frequencies_cutoff" in settings:
        default = GroupConv3d(1, 2, k, padding=k // 2, group="o", basis="harmonic")
        assert default.weight.numel() > ours.weight.numel()


def test_r3conv_outside_our_bases_keeps_voxel_filters(gen):
    """An ``R3Conv`` whose basis no shell settings of ours describe (a ``basis_filter`` that
    drops ``J = 1`` but keeps ``J = 2``): free voxel filters, the same output."""
    _escnn()
    from escnn import gspaces
    from escnn import nn as esc

    from equilayers.interop import escnn_slot_order

    gs = gspaces.octaOnR3()
    t_in = esc.FieldType(gs, [gs.trivial_repr])
    t_out = esc.FieldType(gs, [gs.regular_repr])
    with seeded_rng(0):
        conv = esc.R3Conv(t_in, t_out, 3, padding=1,
                          basis_filter=lambda attr: attr["j"][-1] != 1).eval()
    ours = from_escnn(conv)
    assert ours.basis == "voxel"
    x = torch.randn(1, 1, 5, 5, 5, generator=gen)
    with torch.no_grad():
        theirs = conv(esc.GeometricTensor(x, t_in)).tensor.view(1, 1, 24, 5, 5, 5)
        torch.testing.assert_close(ours(x), theirs[:, :, escnn_slot_order(gs)], rtol=0,
                                   atol=1e-5)


def test_r3conv_unsupported_settings_are_refused_by_name():
    _escnn()
    from escnn import gspaces
    from escnn import nn as esc

    gs = gspaces.octaOnR3()
    reg = esc.FieldType(gs, [gs.regular_repr])
    with pytest.raises(ValueError, match="only trivial inputs and regular fields"):
        from_escnn(esc.R3Conv(esc.FieldType(gs, [gs.fibergroup.irrep(1)]), reg, 3))
    from equilayers.interop import escnn_slot_order

    with pytest.raises(TypeError, match=r"escnn_slot_order expects an escnn gspace .*got "
                                        r"gspace='octa'"):
        escnn_slot_order("octa")
    c6 = gspaces.rot2dOnR3(6)
    with pytest.raises(ValueError, match=r"not one of the cube's groups on volumes; only "
                                         r"octaOnR3 \('o'\), .*conicalOnR3\(4\) \('d4z'\)"):
        from_escnn(esc.R3Conv(esc.FieldType(c6, [c6.trivial_repr]),
                              esc.FieldType(c6, [c6.regular_repr]), 3))
    # order 8 as d4z, but half turns about a horizontal axis in place of d4z's mirrors
    d4 = gspaces.dihedralOnR3(4)
    with pytest.raises(ValueError, match=r"moves voxels unlike any one element of "
                                         r"equilayers' d4z: another group"):
        from_escnn(esc.R3Conv(esc.FieldType(d4, [d4.trivial_repr]),
                              esc.FieldType(d4, [d4.regular_repr]), 3))


@pytest.mark.parametrize("space,group", [("rot2dOnR3", "c4z"), ("conicalOnR3", "d4z")])
@pytest.mark.parametrize("k", [3, 5])
def test_r3conv_on_the_depth_axis_groups_matches_escnn(space, group, k, gen):
    """escnn's groups for anisotropic scans, ``rot2dOnR3(4)`` (quarter turns about the depth
    axis) and ``conicalOnR3(4)`` (and the mirrors through it), are our ``"c4z"`` / ``"d4z"``
    with the same slot order: a lifting conv, ReLU, a regular conv and group pooling give
    escnn's outputs, in our harmonic basis with escnn's parameter count, and are invariant to
    the group (the harness; the control: a quarter turn about the width axis, which is not in
    it, fails); so does a transposed conv."""
    _escnn()
    from escnn import gspaces
    from escnn import nn as esc

    from equilayers.interop import escnn_slot_order

    gs = getattr(gspaces, space)(4)
    n = gs.fibergroup.order()
    t_in, t1 = esc.FieldType(gs, [gs.trivial_repr]), esc.FieldType(gs, 2 * [gs.regular_repr])
    with seeded_rng(0):
        model = esc.SequentialModule(esc.R3Conv(t_in, t1, k, padding=k // 2), esc.ReLU(t1),
                                     esc.R3Conv(t1, t1, k, padding=k // 2),
                                     esc.GroupPooling(t1)).eval()
    ours = from_escnn(model).eval()
    assert torch.equal(escnn_slot_order(gs), torch.arange(n))
    for i in (0, 2):
        assert ours[i].group.name == group and ours[i].basis == "harmonic"
        assert ours[i].weight.numel() == model[i].weights.numel()
    x = torch.randn(2, 1, 7, 8, 9, generator=gen)
    with torch.no_grad():
        want = model(esc.GeometricTensor(x, t_in)).tensor
        got = ours(x)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    cube = x[:, :, :7, :7, :7]
    assert_equivariant(ours, cube, group, in_rep="trivial", out_rep="trivial")
    with pytest.raises(AssertionError):
        assert_equivariant(ours, cube, "o", in_rep="trivial", out_rep="trivial")
    # and the transposed conv on the same fields (a decoder's upsampling)
    up = esc.R3ConvTransposed(t1, t1, k, stride=2, padding=k // 2).eval()
    mine = from_escnn(up).eval()
    assert type(mine).__name__ == "GroupConvTranspose3d" and mine.group.name == group
    h = torch.randn(2, t1.size, 4, 5, 3, generator=gen)
    with torch.no_grad():
        torch.testing.assert_close(mine(h.unflatten(1, (2, n))).flatten(1, 2),
                                   up(esc.GeometricTensor(h, t1)).tensor, rtol=0, atol=1e-5)


# --- volumes: R3ConvTransposed on the cube's groups --------------------------------------------
def _r3t(space: str, lifting: bool, **kw):
    """escnn's float64 ``R3ConvTransposed`` (2 trivial or regular fields -> 2 regular fields,
    3 x 3 x 3) on ``octaOnR3`` / ``fullOctaOnR3``, its gspace and its input type. Built with
    ``recompute=True``: escnn shares one sampled basis between its convs of the same settings
    otherwise, and ``.double()`` on one would turn the others in this process to float64."""
    from escnn import gspaces
    from escnn import nn as esc

    gs = gspaces.octaOnR3() if space == "octa" else gspaces.fullOctaOnR3()
    t_in = esc.FieldType(gs, 2 * [gs.trivial_repr if lifting else gs.regular_repr])
    t_out = esc.FieldType(gs, 2 * [gs.regular_repr])
    with seeded_rng(0):
        conv = esc.R3ConvTransposed(t_in, t_out, 3, recompute=True, **kw).double()
    return conv, gs, t_in


@pytest.mark.parametrize("output_padding", [0, 1])
@pytest.mark.parametrize("lifting", [True, False], ids=["lifting", "group"])
@pytest.mark.parametrize("space", ["octa", "full_octa"])
def test_r3conv_transposed_matches_escnn_with_its_slot_order(space, lifting, output_padding,
                                                             gen):
    """escnn's ``R3ConvTransposed`` at stride 2, padding 1 (4^3 -> 7^3, with
    ``output_padding=1`` 8^3) converts to our transposed 3-D conv in escnn's harmonic basis
    and parameter count, and reproduces escnn's float64 output after
    :func:`escnn_slot_order`'s permutation (on the output and a regular input); without
    ``output_padding`` it is exactly equivariant. The controls: a permutation with two slots
    swapped does not match, and ``output_padding=1`` is warned about (ours, not escnn's)."""
    _escnn()
    from escnn import nn as esc

    from equilayers.interop import escnn_slot_order
    from equilayers.nn import GroupConvTranspose3d, LiftingConvTranspose3d

    conv, gs, t_in = _r3t(space, lifting, stride=2, padding=1, output_padding=output_padding)
    conv.eval()
    ours = from_escnn(conv)
    n = gs.fibergroup.order()
    assert isinstance(ours, LiftingConvTranspose3d if lifting else GroupConvTranspose3d)
    assert ours.group.name == ("o" if space == "octa" else "oh")
    assert ours.basis == "harmonic" and ours.weight.numel() == conv.weights.numel()
    assert (ours.stride, ours.output_padding) == ((2, 2, 2), (output_padding,) * 3)
    assert ours.weight.dtype == torch.float64 and not ours.training
    perm = escnn_slot_order(gs)
    x = torch.randn(1, t_in.size, 4, 4, 4, generator=gen, dtype=torch.float64)
    x_ours = x if lifting else x.view(1, 2, n, 4, 4, 4)[:, :, perm]
    size = 7 + output_padding
    with torch.no_grad():
        theirs = conv(esc.GeometricTensor(x, t_in)).tensor.view(1, 2, n, size, size, size)
        if output_padding:
            with pytest.warns(UserWarning, match=r"adds voxels at the high end only"):
                y = ours(x_ours)
        else:
            y = ours(x_ours)
    assert y.shape == (1, 2, n, size, size, size)
    # escnn samples its basis in float32: its filter is in our span to ~1e-7 of its size
    tol = 1e-6 * theirs.abs().max().item()
    torch.testing.assert_close(y, theirs[:, :, perm], rtol=0, atol=tol)
    wrong = perm.clone()
    wrong[[0, 1]] = perm[[1, 0]]
    assert not torch.allclose(y, theirs[:, :, wrong], rtol=0, atol=1e3 * tol)
    if not output_padding:
        assert_equivariant(ours, x_ours, ours.group.name,
                           in_rep="trivial" if lifting else "regular", out_rep="regular")


def test_r3conv_transposed_keeps_options_mode_dtype_and_frozen_weights(gen):
    """A group ``R3ConvTransposed`` with dilation 2 (escnn's basis settings: our harmonic
    basis with its shells), no bias, frozen weights, in training mode: ours keeps each, and
    escnn's output (slot order permuted) in training mode too; a two-layer escnn decoder
    (lifting, ReLU, group) converts to a model that is exactly equivariant."""
    _escnn()
    from escnn import nn as esc

    from equilayers.interop import escnn_slot_order

    conv, gs, t_in = _r3t("octa", False, stride=2, padding=2, dilation=2, bias=False)
    conv.weights.requires_grad_(False)
    ours = from_escnn(conv)
    assert ours.training and ours.bias is None and not ours.weight.requires_grad
    assert (ours.dilation, ours.padding) == ((2, 2, 2), 2)
    assert ours.basis == "harmonic" and ours.weight.numel() == conv.weights.numel()
    perm = escnn_slot_order(gs)
    x = torch.randn(1, 48, 3, 3, 3, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        theirs = conv(esc.GeometricTensor(x, t_in)).tensor.unflatten(1, (2, 24))
        y = ours(x.view(1, 2, 24, 3, 3, 3)[:, :, perm])
    torch.testing.assert_close(y, theirs[:, :, perm], rtol=0,
                               atol=1e-6 * theirs.abs().max().item())
    lift, _, t_vol = _r3t("octa", True, stride=2, padding=1)
    decoder = esc.SequentialModule(lift, esc.ReLU(lift.out_type), conv).eval()
    model = from_escnn(decoder)
    assert [type(m).__name__ for m in model] == ["LiftingConvTranspose3d", "ReLU",
                                                  "GroupConvTranspose3d"]
    v = torch.randn(1, 2, 3, 3, 3, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        want = decoder(esc.GeometricTensor(v, t_vol)).tensor.unflatten(1, (2, 24))
        got = model(v)
    torch.testing.assert_close(got, want[:, :, perm], rtol=0,
                               atol=1e-6 * want.abs().max().item())
    assert_equivariant(model, v, "o", in_rep="trivial", out_rep="regular")


def test_r3conv_transposed_unsupported_settings_are_refused_by_name(monkeypatch):
    """Refused, each naming ``R3ConvTransposed``: non-regular fields, ``groups=2``, trivial
    output fields, a filter escnn did not build (one input slot negated: not equivariant;
    escnn's own converts, the control); on SO(3) fields (which convert:
    tests/test_escnn_steerable_transpose3d.py) groups=2 and fields out of order."""
    _escnn()
    from escnn import gspaces
    from escnn import nn as esc

    gs = gspaces.octaOnR3()
    reg = esc.FieldType(gs, 2 * [gs.regular_repr])
    with pytest.raises(ValueError, match="R3ConvTransposed input .* only trivial inputs and "
                                         "regular fields are supported for R3ConvTransposed"):
        from_escnn(esc.R3ConvTransposed(esc.FieldType(gs, [gs.fibergroup.irrep(1)]), reg, 3))
    with pytest.raises(ValueError, match="R3ConvTransposed with groups=2 is not supported"):
        from_escnn(esc.R3ConvTransposed(reg, reg, 3, groups=2))
    with pytest.raises(ValueError, match="R3ConvTransposed output .* is trivial"):
        from_escnn(esc.R3ConvTransposed(reg, esc.FieldType(gs, [gs.trivial_repr]), 3))
    conv = esc.R3ConvTransposed(reg, reg, 3, padding=1)
    _refused_when_broken(conv, monkeypatch, "is not reproduced by GroupConvTranspose3d",
                         filt_slot=5)  # escnn's transposed filter: (in, out, k, k, k)
    so3 = gspaces.rot3dOnR3(maximum_frequency=1)
    fields = esc.FieldType(so3, 2 * [so3.irrep(0), so3.irrep(1)])
    with pytest.raises(ValueError, match="R3ConvTransposed with groups=2 is not supported"):
        from_escnn(esc.R3ConvTransposed(fields, fields, 3, groups=2))
    with pytest.raises(ValueError, match=r"R3ConvTransposed output .* must repeat \[irrep_0, "
                                         r"irrep_1\]"):
        from_escnn(esc.R3ConvTransposed(fields, esc.FieldType(
            so3, [so3.irrep(1), so3.irrep(0)]), 3))
