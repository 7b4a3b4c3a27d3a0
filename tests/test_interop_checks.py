"""equilayers.interop.from_escnn's checks of what it is given: each convention its group probes
compare with escnn's is needed, a filter or bias that no escnn conv builds is refused, fields
that have no layout here are refused by name, options escnn sets are kept; and
``EscnnRestrictedBasis``.

Needs escnn (optional extra; run with an environment that has it, e.g.
``.venv-peers/bin/python -m pytest tests/test_interop_checks.py``); skipped elsewhere, except
the ``EscnnRestrictedBasis`` test.
"""

import pytest
import torch
from _interop_common import (
    _escnn,
    _ftype,
    _randomize,
    _refused_when_broken,
    _run_escnn,
    _so3_space,
    _space,
)
from conftest import seeded_rng

from equilayers.groups import get
from equilayers.interop import from_escnn
from equilayers.nn import LiftingConv3d


def test_escnn_restricted_basis_commutes_with_rotations_and_checks_input(gen):
    """``EscnnRestrictedBasis`` (no escnn needed): ``Q^T`` on every field, a map that commutes
    with every rotation of the restricted fields (so they stay C_N fields) and not with the
    flip they lost (the control); a group without flips and a fiber of the wrong size raise
    ``ValueError`` naming them."""
    from equilayers.groups import act_fiber
    from equilayers.interop import EscnnRestrictedBasis, escnn_field_matrix

    layer = EscnnRestrictedBasis("d8", 2)
    x = torch.randn(2, 3, 5, 4, 4, generator=gen, dtype=torch.float64)
    want = torch.einsum("ji,bcjyx->bciyx", escnn_field_matrix("d8", 2), x)
    torch.testing.assert_close(layer(x), want)
    d8 = get("d8")
    for k in range(8):
        g = d8.element(k)
        torch.testing.assert_close(layer(act_fiber(x, g, "harmonic")),
                                   act_fiber(layer(x), g, "harmonic"))
    flip = d8.element(0, True)
    assert not torch.allclose(layer(act_fiber(x, flip, "harmonic")),
                              act_fiber(layer(x), flip, "harmonic"))
    assert repr(layer) == "EscnnRestrictedBasis(group='d8', max_order=2)"
    with pytest.raises(ValueError, match="group must be 'o2' or 'dN'.*got 'c8'"):
        EscnnRestrictedBasis("c8", 2)
    with pytest.raises(ValueError, match="max_order"):
        EscnnRestrictedBasis("d8", -1)
    with pytest.raises(ValueError, match=r"EscnnRestrictedBasis\(group='d8', max_order=2\) "
                                         r"expects a fiber of 5 slots .*max_order=1"):
        layer(torch.randn(2, 3, 3, 4, 4))


def _patched(monkeypatch, gs, which):
    """Break one of the conventions ``_group_name`` checks, leaving the others (and escnn's
    built filters) as they are: ``"plane"`` transposes the plane matrix of the elements off
    the pixel grid only (so the image probe cannot see it), ``"regular"`` makes the regular
    representation act by ``(g . f)[h] = f[g h]``, ``"image"`` moves images by the inverse
    element (the plane matrices untouched)."""
    import numpy as np
    if which == "image":
        move = gs._interpolate_transform_basespace
        monkeypatch.setattr(gs, "_interpolate_transform_basespace",
                            lambda x, e, order=2: move(x, ~e, order=order))
    elif which == "plane":
        action = gs.basespace_action

        def plane(e):
            mat = action(e)
            on_grid = np.allclose(mat, np.round(mat), atol=1e-9)
            return mat if on_grid else mat.T

        monkeypatch.setattr(gs, "_base_action", plane)
    else:
        fg = gs.fibergroup
        regular = fg.regular_representation
        monkeypatch.setattr(type(fg), "regular_representation",
                            property(lambda self: (lambda e: regular(e).T)))


@pytest.mark.parametrize("name,which", [("c8", "plane"), ("d8", "plane"), ("c4", "regular"),
                                        ("d4", "regular"), ("c8", "regular"),
                                        ("c4", "image"), ("d4", "image")])
def test_each_convention_the_group_probe_checks_is_needed(name, which, monkeypatch):
    """``_group_name`` compares escnn's plane matrices, regular representations and image
    transforms with ours; each one alone must refuse a mismatch (the conv's filter check cannot
    see these: escnn's filter was built before the patch), and the unpatched gspace converts
    (the control)."""
    _escnn()
    from escnn import nn as enn
    gs = _space(name)
    conv = enn.R2Conv(_ftype(gs, 1, "regular"), _ftype(gs, 1, "regular"), 3, padding=1)
    pool = enn.GroupPooling(_ftype(gs, 2, "regular"))
    from_escnn(conv), from_escnn(pool)  # the control
    _patched(monkeypatch, gs, which)
    for m in (conv, pool):
        with pytest.raises(ValueError, match="acts on images differently"):
            from_escnn(m)


def test_pointwise_layers_on_quotient_fields_are_refused_by_name():
    """escnn's pointwise layers also take quotient fields, which have no layout here: ReLU and
    the adaptive pools refuse them by name (the layers around them would not convert); the
    same layers on regular fields convert (the control)."""
    _escnn()
    from escnn import nn as enn
    gs = _space("c4")
    quotient = enn.FieldType(gs, 2 * [gs.quotient_repr(2)])
    for build in (enn.ReLU, lambda t: enn.PointwiseAdaptiveAvgPool2D(t, 2)):
        from_escnn(build(_ftype(gs, 2, "regular")))
        with pytest.raises(ValueError, match="only regular or trivial fields"):
            from_escnn(build(quotient))


@pytest.mark.parametrize("name", ["c4", "d2"])
def test_a_pixel_filter_escnn_did_not_build_is_refused(name, monkeypatch):
    """The pixel route (c1, c2, c4, d1, d2, d4) checks that our layer reproduces escnn's
    expanded filter: a filter that is not one pixel filter moved by the group (here escnn's
    own with one output slot's filter negated) is refused, not converted into another
    function; escnn's filter as it is converts (the control)."""
    _escnn()
    from escnn import nn as enn
    gs = _space(name)
    conv = enn.R2Conv(_ftype(gs, 1, "regular"), _ftype(gs, 2, "regular"), 3, padding=1)
    _randomize(conv)
    _refused_when_broken(conv, monkeypatch, "is not reproduced by GroupConv2d", filt_slot=1)


def test_c1_regular_fields_pool_as_fields_not_as_images():
    """C_1's regular representation is trivial too: escnn's pointwise pools on C_1 regular
    fields convert to our group pools on ``(B, C, 1, H, W)``, not to ``torch.nn``'s image
    pools (as on trivial fields), and compute escnn's outputs."""
    _escnn()
    from escnn import nn as enn

    from equilayers.nn import GroupAvgPool2d, GroupMaxPool2d
    gs = _space("c1")
    t = _ftype(gs, 3, "regular")
    x = torch.randn(2, 3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    for theirs, cls in ((enn.PointwiseMaxPool2D(t, 2), GroupMaxPool2d),
                        (enn.PointwiseAvgPool2D(t, 3, 1, 1), GroupAvgPool2d)):
        ours = from_escnn(theirs)
        assert isinstance(ours, cls)
        torch.testing.assert_close(ours(x).flatten(1, 2), _run_escnn(theirs, x, t))


def test_so3_bias_on_non_scalar_slots_is_refused(monkeypatch):
    """SteerableConv3d holds a bias on the order-0 slot only: an expanded bias with entries on
    order 1 (which no escnn R3Conv builds) is refused, not dropped; escnn's converts (the
    control)."""
    _escnn()
    from escnn import nn as esc

    gs, irreps = _so3_space("so3")
    t = esc.FieldType(gs, irreps[:2])
    with seeded_rng(0):
        theirs = esc.R3Conv(t, esc.FieldType(gs, 2 * irreps[:2]), 3, padding=1)
    _refused_when_broken(theirs, monkeypatch, "not zero on the non-scalar slots",
                         bias_at=(2, 0.5, False))  # field 0, order 1


def test_so3_norm_layers_on_the_cubes_irreps_are_refused_by_name():
    """NormNonLinearity and GNormBatchNorm convert on SO(3)/O(3) fields of volumes only: on
    the cube group's irreps (``octaOnR3``, named as SO(3)'s: its ``irrep_2`` is 2-D) they are
    refused by name, not read as SO(3) fields."""
    _escnn()
    from escnn import gspaces
    from escnn import nn as esc

    gs = gspaces.octaOnR3()
    fg = gs.fibergroup
    t = esc.FieldType(gs, 2 * [fg.irrep(0), fg.irrep(1), fg.irrep(2)])  # SO(3)'s names
    for build in (esc.NormNonLinearity, esc.GNormBatchNorm):
        with pytest.raises(ValueError, match=r"only SO\(3\)/O\(3\) fields of volumes"):
            from_escnn(build(t))


@pytest.mark.parametrize("name,sid,sub", [("d4", (None, 4), "c4"), ("c8", 4, "c4")])
def test_restricted_layout_is_checked_against_escnns_representation(name, sid, sub,
                                                                     monkeypatch):
    """The conversion of a restriction checks our slot permutation against escnn's restricted
    representation: with a wrong permutation (the right one reversed, standing in for a
    changed convention) it refuses, naming the subgroup; with the right one it converts (the
    control)."""
    _escnn()
    from escnn import nn as enn

    from equilayers import _interop_tools as T
    res = enn.RestrictionModule(_ftype(_space(name), 2, "regular"), sid)
    from_escnn(res)
    right = T.restriction_index
    monkeypatch.setattr(T, "restriction_index", lambda g, h: right(g, h).flip(0))
    with pytest.raises(ValueError, match=f"restricted to {sub} do not match our layout"):
        from_escnn(res)


def test_cube_probe_checks_escnns_regular_representation(monkeypatch):
    """``escnn_slot_order`` matches escnn's cube elements to ours by their voxel action, then
    checks the regular representations under that matching: one that acts by ``(g . f)[h] =
    f[g h]`` (the voxel action untouched) is refused; unpatched, it converts (the control)."""
    _escnn()
    from escnn import gspaces
    from escnn import nn as esc

    gs = gspaces.octaOnR3()
    pool = esc.GroupPooling(esc.FieldType(gs, 2 * [gs.regular_repr]))
    from_escnn(pool)
    fg = gs.fibergroup
    regular = fg.regular_representation
    monkeypatch.setattr(type(fg), "regular_representation",
                        property(lambda self: (lambda e: regular(e).T)))
    with pytest.raises(ValueError, match="permutes slots unlike equilayers' o"):
        from_escnn(pool)


def test_twice_restricted_fields_are_refused():
    """escnn names D_8's regular fields restricted to C_8 and then to C_4 ``"C8:D8:regular"``
    (16 channels, not C_8's 8): they are not C_8 regular fields restricted, and the layers on
    them refuse by name; once restricted (``"D8:regular"``), they convert (the control)."""
    _escnn()
    from escnn import nn as enn

    once = enn.RestrictionModule(_ftype(_space("d8"), 2, "regular"), (None, 8))
    twice = enn.RestrictionModule(once.out_type, 4)
    from_escnn(enn.ReLU(once.out_type)), from_escnn(enn.PointwiseMaxPool2D(once.out_type, 2))
    with pytest.raises(ValueError, match="only regular or trivial fields"):
        from_escnn(enn.ReLU(twice.out_type))
    with pytest.raises(ValueError, match="has non-regular fields"):
        from_escnn(enn.PointwiseMaxPool2D(twice.out_type, 2))


@pytest.mark.parametrize("name", ["c4", "c8"])
def test_a_bias_that_varies_over_a_regular_field_is_refused(name, monkeypatch):
    """Our group convs hold one bias per regular field: an expanded bias that differs between
    a field's slots (which no escnn conv builds) is refused, not read off its first slot;
    escnn's own converts (the control)."""
    _escnn()
    from escnn import nn as enn
    gs = _space(name)
    conv = enn.R2Conv(_ftype(gs, 1, "trivial"), _ftype(gs, 2, "regular"), 5, padding=2)
    _refused_when_broken(conv, monkeypatch, "not constant over each regular field",
                         bias_at=(1, 0.5, True))  # field 0, slot 1


def test_r3conv_filter_escnn_did_not_build_is_refused(monkeypatch):
    """The cube conversion fits the identity slot's filter, then checks every slot against
    escnn's expanded filter: one slot's filter negated (no escnn filter) is refused; escnn's
    own converts (the control)."""
    _escnn()
    from escnn import gspaces
    from escnn import nn as esc

    gs = gspaces.octaOnR3()
    conv = esc.R3Conv(esc.FieldType(gs, [gs.trivial_repr]),
                      esc.FieldType(gs, [gs.regular_repr]), 3, padding=1)
    _refused_when_broken(conv, monkeypatch, "is not reproduced by LiftingConv3d", filt_slot=5)


@pytest.mark.parametrize("eps", [0.0, 1e-3])
def test_r3conv_filter_just_outside_the_harmonic_span_keeps_voxel_filters(eps, monkeypatch, gen):
    """The cube conversion takes ``basis="harmonic"`` only when escnn's filter lies in the
    harmonic span to float32 rounding: escnn's lifting filter plus ``eps`` times an
    equivariant filter outside it (any voxel filter moved by each element: the cube acts
    exactly on the grid), relative residual about ``2 eps``, converts with free voxel
    filters that reproduce it; with a loose tolerance it would take the harmonic fit and
    fail the final check. The control (``eps=0``): escnn's own filter is harmonic."""
    _escnn()
    from escnn import gspaces
    from escnn import nn as esc

    from equilayers.interop import escnn_slot_order

    gs = gspaces.octaOnR3()
    with seeded_rng(0):
        conv = esc.R3Conv(esc.FieldType(gs, [gs.trivial_repr]),
                          esc.FieldType(gs, [gs.regular_repr]), 3, padding=1)
    filt, bias = conv.expand_parameters()
    free = LiftingConv3d(1, 1, 3, padding=1, group="o", basis="voxel")
    with torch.no_grad():
        free.weight.copy_(torch.randn(free.weight.shape, generator=gen))
        off = free.expanded_filter().reshape(24, 1, 3, 3, 3)  # in our slot order
    off = off[escnn_slot_order(gs).argsort()] * filt.detach().abs().max() / off.abs().max()
    target = filt.detach() + eps * off
    monkeypatch.setattr(conv, "expand_parameters", lambda: (target, bias))
    ours = from_escnn(conv)
    assert ours.basis == ("harmonic" if eps == 0 else "voxel")
    torch.testing.assert_close(ours.expanded_filter().reshape(target.shape).detach(),
                               target[escnn_slot_order(gs)], rtol=0, atol=1e-6)


def test_r3conv_to_trivial_fields_of_the_cube_is_refused_by_name():
    """R3Conv on the cube's groups converts to regular output fields only: to trivial fields
    (an invariant map escnn builds) it is refused by name, not failed in a reshape."""
    _escnn()
    from escnn import gspaces
    from escnn import nn as esc

    gs = gspaces.octaOnR3()
    conv = esc.R3Conv(esc.FieldType(gs, [gs.regular_repr]),
                      esc.FieldType(gs, 2 * [gs.trivial_repr]), 3)
    with pytest.raises(ValueError, match="is trivial; only regular output fields"):
        from_escnn(conv)


@pytest.mark.parametrize("name", ["c8", "d8"])
def test_an_off_grid_filter_that_is_not_equivariant_is_refused(name, monkeypatch):
    """Off the pixel grid a filter outside our steerable span is held densely, after a check
    that it is equivariant on the grid subgroup: one output slot's filter negated (no escnn
    filter) fails it and is refused; escnn's own converts (the control)."""
    _escnn()
    from escnn import nn as enn
    gs = _space(name)
    conv = enn.R2Conv(_ftype(gs, 1, "trivial"), _ftype(gs, 1, "regular"), 5, padding=2)
    _randomize(conv)
    _refused_when_broken(conv, monkeypatch, "is not equivariant under", filt_slot=2)


@pytest.mark.parametrize("space", ["c4", "c8", "so2", "octa"])
def test_a_conv_between_two_equal_gspaces_converts(space, gen):
    """escnn builds a conv between field types of two equal gspaces made separately (e.g.
    ``rot2dOnR2(4)`` called per block: ``==``, not the same object): it converts, with
    escnn's outputs, on the pixel, steerable, SO(2) and cube routes."""
    _escnn()
    from escnn import gspaces
    from escnn import nn as enn

    make = {"c4": lambda: gspaces.rot2dOnR2(4), "c8": lambda: gspaces.rot2dOnR2(8),
            "so2": lambda: gspaces.rot2dOnR2(-1, maximum_frequency=4),
            "octa": gspaces.octaOnR3}[space]
    a, b = make(), make()
    assert a is not b and a == b
    if space == "so2":
        t_in, t_out = (enn.FieldType(g, 2 * [g.irrep(0), g.irrep(1)]) for g in (a, b))
    else:
        t_in, t_out = enn.FieldType(a, 2 * [a.trivial_repr]), enn.FieldType(b, [b.regular_repr])
    cls = enn.R3Conv if space == "octa" else enn.R2Conv
    with seeded_rng(0):
        theirs = cls(t_in, t_out, 3, padding=1).eval()
    ours = from_escnn(theirs)
    x = torch.randn(1, t_in.size, *(5,) * (3 if space == "octa" else 2), generator=gen)
    with torch.no_grad():
        want = theirs(enn.GeometricTensor(x, t_in)).tensor
        got = ours(x.unflatten(1, (2, 3)) if space == "so2" else x)
    if space == "octa":
        from equilayers.interop import escnn_slot_order
        want = want.unflatten(1, (1, 24))[:, :, escnn_slot_order(b)]
    torch.testing.assert_close(got.flatten(1), want.flatten(1), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("case", ["transposed_output_padding", "so3_stride"])
def test_conv_options_escnn_sets_are_kept(case, gen):
    """Options that change the output size reach our layer: ``R2ConvTransposed``'s
    ``output_padding`` (c4, stride 2: 14 x 14 from 7 x 7, 13 without it) and an SO(3)
    ``R3Conv``'s stride (read through ``NormPool``, free of escnn's field signs)."""
    _escnn()
    from escnn import gspaces
    from escnn import nn as enn

    if case == "so3_stride":
        gs = gspaces.rot3dOnR3(maximum_frequency=1)
        t_in = enn.FieldType(gs, 2 * [gs.trivial_repr])
        t_mid = enn.FieldType(gs, 2 * [gs.irrep(0), gs.irrep(1)])
        with seeded_rng(0):
            theirs = enn.SequentialModule(enn.R3Conv(t_in, t_mid, 3, padding=1, stride=2),
                                          enn.NormPool(t_mid)).eval()
        x = torch.randn(1, 2, 7, 7, 7, generator=gen)
        size = 4
    else:
        gs = _space("c4")
        t_in = _ftype(gs, 2, "trivial")
        with seeded_rng(0):
            theirs = enn.R2ConvTransposed(t_in, _ftype(gs, 1, "regular"), 3, stride=2,
                                          padding=1, output_padding=1).eval()
        x = torch.randn(1, 2, 7, 7, generator=gen)
        size = 14
    ours = from_escnn(theirs)
    with torch.no_grad():
        want = theirs(enn.GeometricTensor(x, t_in)).tensor
        if case == "so3_stride":
            got = ours(x)
        else:  # ours says that output_padding puts the output grid off-centre
            with pytest.warns(UserWarning, match="output_padding=1 pads the height"):
                got = ours(x)
    assert want.shape[-1] == got.shape[-1] == size
    torch.testing.assert_close(got.reshape(want.shape), want, rtol=0, atol=1e-5)


def test_from_escnn_leaves_the_global_generator_alone():
    """The converted modules' initialisers drew from torch's global generator (their weights
    are then overwritten): a seeded script that converted a model drew other batches after.
    The control: building the same escnn model does draw."""
    _escnn()
    from escnn import gspaces
    from escnn import nn as nn_e

    space = gspaces.rot2dOnR2(4)
    ins, mid = nn_e.FieldType(space, [space.trivial_repr]), nn_e.FieldType(space,
                                                                           [space.regular_repr])
    model = nn_e.SequentialModule(nn_e.R2Conv(ins, mid, 3), nn_e.R2Conv(mid, mid, 3)).eval()
    before = torch.random.get_rng_state()
    from_escnn(model)
    assert torch.equal(torch.random.get_rng_state(), before)
    nn_e.R2Conv(ins, mid, 3)
    assert not torch.equal(torch.random.get_rng_state(), before)
