"""equilayers.interop.from_escnn on the planar grid groups (c1, c2, c4, d1, d2, d4): R2Conv and
R2ConvTransposed, sequentials with pointwise nonlinearities and dropout, the toolbox modules
(Gaussian pools, masks, restriction, norm pooling): same outputs as escnn, clear errors for what
is unsupported.

Needs escnn (optional extra; run with an environment that has it, e.g.
``.venv-peers/bin/python -m pytest tests/test_interop_2d.py``); skipped elsewhere, except the
test that a non-escnn argument is refused.
"""

import pytest
import torch
from _interop_common import _escnn, _ftype, _grid, _randomize, _run_escnn, _space
from conftest import seeded_rng
from torch import nn

from equilayers.groups import get
from equilayers.interop import from_escnn
from equilayers.nn import GroupBatchNorm2d, GroupConv2d, GroupPool, LiftingConv2d
from equilayers.testing import assert_equivariant


def test_not_an_escnn_module():
    _escnn()
    with pytest.raises(TypeError, match="expects an escnn.nn.EquivariantModule; got Conv2d"):
        from_escnn(nn.Conv2d(1, 1, 3))


@pytest.mark.parametrize("name", ["c1", "c2", "c4", "d1", "d1r", "d2", "d4"])
@pytest.mark.parametrize("lifting", [True, False])
@pytest.mark.parametrize("kw", [dict(padding=1), dict(padding=2, stride=2, bias=False),
                                dict(padding=1, padding_mode="circular")])
def test_r2conv_same_outputs(name, lifting, kw):
    _escnn()
    from escnn import nn as enn
    gs = _space(name)
    k = 5 if kw.get("stride") == 2 else 3
    conv = _randomize(enn.R2Conv(_ftype(gs, 3, "trivial" if lifting else "regular"),
                                 _ftype(gs, 4, "regular"), k, **kw)).eval()
    ours = from_escnn(conv)
    assert isinstance(ours, LiftingConv2d if lifting else GroupConv2d)
    assert not ours.training
    n = gs.fibergroup.order()
    shape = (2, 3, 13, 13) if lifting else (2, 3, n, 13, 13)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    y = ours(x)
    torch.testing.assert_close(y.flatten(1, 2), _run_escnn(conv, x, conv.in_type),
                               rtol=1e-5, atol=1e-5)
    group = ours.group.name
    assert_equivariant(ours.double(), x.double(), group)


def test_sequential_same_outputs_train_and_eval():
    _escnn()
    from escnn import nn as enn
    gs = _space("d4")
    t_in, t1, t2 = _ftype(gs, 2, "trivial"), _ftype(gs, 4, "regular"), _ftype(gs, 3, "regular")
    model = enn.SequentialModule(
        enn.R2Conv(t_in, t1, 3, padding=1), enn.InnerBatchNorm(t1), enn.ReLU(t1),
        enn.PointwiseMaxPool2D(t1, 2),
        enn.R2Conv(t1, t2, 3, padding=1), enn.ReLU(t2), enn.PointwiseAvgPool2D(t2, 3, 1, 1),
        enn.IdentityModule(t2), enn.GroupPooling(t2),
    )
    x = torch.randn(4, 2, 14, 14, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model.train()(enn.GeometricTensor(x, t_in))  # move the BN running stats
    model.eval()
    ours = from_escnn(model)
    assert isinstance(ours, nn.Sequential)
    assert [type(m).__name__ for m in ours] == [
        "LiftingConv2d", "GroupBatchNorm2d", "ReLU", "GroupMaxPool2d", "GroupConv2d", "ReLU",
        "GroupAvgPool2d", "Identity", "GroupPool"]
    assert isinstance(ours[1], GroupBatchNorm2d) and isinstance(ours[-1], GroupPool)
    assert not ours.training
    with torch.no_grad():
        torch.testing.assert_close(ours(x), _run_escnn(model, x, t_in), rtol=1e-5, atol=1e-5)
    # train mode (batch statistics) too
    model.train()
    ours = from_escnn(model)
    assert ours.training
    with torch.no_grad():
        torch.testing.assert_close(ours(x), _run_escnn(model, x, t_in), rtol=1e-5, atol=1e-5)
    assert_equivariant(ours.eval().double(), x.double(), "d4", in_rep="trivial",
                       out_rep="trivial")


@pytest.mark.parametrize("name", ["c4", "d4"])
def test_pointwise_nonlinearities_and_dropout_same_outputs(name):
    """escnn's ELU (its alpha), LeakyReLU (its slope), PointwiseNonLinearity (each function)
    and PointwiseDropout (identity in eval mode) on regular and trivial fields -> torch.nn's,
    with the same outputs; an unknown function is refused by name."""
    _escnn()
    from escnn import nn as enn
    gs = _space(name)
    t_in, t1 = _ftype(gs, 2, "trivial"), _ftype(gs, 3, "regular")
    with seeded_rng(0):
        model = enn.SequentialModule(
            enn.R2Conv(t_in, t1, 3, padding=1), enn.ELU(t1, alpha=0.7),
            enn.PointwiseDropout(t1, p=0.3), enn.R2Conv(t1, t1, 3, padding=1),
            enn.LeakyReLU(t1, negative_slope=0.2), enn.PointwiseNonLinearity(t1, "p_tanh"),
            enn.R2Conv(t1, t1, 3, padding=1), enn.PointwiseNonLinearity(t1, "p_sigmoid"),
            enn.PointwiseNonLinearity(t1, "p_elu"), enn.PointwiseNonLinearity(t1, "p_relu"),
        ).eval()
    ours = from_escnn(model)
    assert [type(m).__name__ for m in ours][1:] == [
        "ELU", "Dropout", "GroupConv2d", "LeakyReLU", "Tanh", "GroupConv2d", "Sigmoid", "ELU",
        "ReLU"]
    assert ours[1].alpha == 0.7 and ours[2].p == 0.3 and ours[4].negative_slope == 0.2
    x = torch.randn(2, 2, 9, 9, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(ours(x).flatten(1, 2), _run_escnn(model, x, t_in),
                                   rtol=1e-5, atol=1e-6)
    with torch.no_grad():  # the control: the default alpha and slope differ
        bent = nn.Sequential(*ours)
        bent[1], bent[4] = nn.ELU(), nn.LeakyReLU()
        assert not torch.allclose(bent(x).flatten(1, 2), _run_escnn(model, x, t_in),
                                  atol=1e-4)
    odd = enn.PointwiseNonLinearity(t1, "p_relu")
    odd._function = torch.nn.functional.softplus
    with pytest.raises(ValueError, match="PointwiseNonLinearity with function 'softplus'"):
        from_escnn(odd)


_TRANSPOSED = [dict(kernel_size=3, stride=2, padding=1),
               dict(kernel_size=4, stride=2, padding=1, bias=False),
               dict(kernel_size=5, stride=1, padding=2, output_padding=0)]


@pytest.mark.parametrize("name,kw", [(name, kw) for name in ("c4", "d4", "d1")
                                     for kw in _TRANSPOSED]
                         + [("c8", kw) for kw in _TRANSPOSED])
@pytest.mark.parametrize("lifting", [True, False])
def test_r2conv_transposed_same_outputs(name, lifting, kw):
    """``R2ConvTransposed`` -> :class:`LiftingConvTranspose2d` / :class:`GroupConvTranspose2d`
    (pixel filters on c4/d4/d1, the steerable basis on c8, even kernels included) with escnn's
    outputs, exactly equivariant on the grid where the sizes allow (k3 s2 p1 on odd sizes, k4 s2
    p1 on any)."""
    _escnn()
    from escnn import nn as enn

    from equilayers.nn import GroupConvTranspose2d, LiftingConvTranspose2d
    gs = _space(name)
    t_in = _ftype(gs, 2, "trivial" if lifting else "regular")
    t_out = _ftype(gs, 3, "regular")
    with seeded_rng(0):
        theirs = _randomize(enn.R2ConvTransposed(t_in, t_out, **kw)).eval()
    ours = from_escnn(theirs)
    assert isinstance(ours, LiftingConvTranspose2d if lifting else GroupConvTranspose2d)
    assert ours.group.name == name
    n = int(get(name).order)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 2, 7, 7, generator=gen) if lifting else torch.randn(
        2, 2, n, 7, 7, generator=gen)
    with torch.no_grad():
        got = ours(x)
        torch.testing.assert_close(got.flatten(1, 2), _run_escnn(theirs, x, t_in),
                                   rtol=1e-4, atol=1e-4)
    assert_equivariant(ours.double(), x.double(), name,
                       in_rep="trivial" if lifting else "regular", out_rep="regular",
                       elements=_grid(name))


def test_unsupported_layer_named():
    _escnn()
    from escnn import nn as enn
    gs = _space("c4")
    t = _ftype(gs, 2, "regular")
    with pytest.raises(TypeError, match="escnn.nn.VectorFieldNonLinearity has no equilayers"):
        from_escnn(enn.SequentialModule(enn.ReLU(t), enn.VectorFieldNonLinearity(t)))
    with pytest.raises(TypeError, match="VectorFieldNonLinearity has no equilayers"):
        from_escnn(enn.VectorFieldNonLinearity(t))
    # a module that converts on other fields names the fields
    with pytest.raises(ValueError, match="TensorProductModule on .*takes harmonic fields, not "
                                         "regular ones"):
        from_escnn(enn.SequentialModule(enn.ReLU(t), enn.TensorProductModule(t, t)))


def test_unsupported_groups_and_fields():
    _escnn()
    from escnn import gspaces
    from escnn import nn as enn
    so2 = gspaces.rot2dOnR2(-1, maximum_frequency=2)
    conv = enn.R2Conv(enn.FieldType(so2, [so2.trivial_repr]),
                      enn.FieldType(so2, [so2.irrep(1)]), 3)
    with pytest.raises(ValueError, match=r"must repeat \[irrep_0, irrep_1\]"):
        from_escnn(conv)  # SO(2) fields need every order 0..L (tests/test_escnn_so2_refusals.py)
    # another flip axis, on a layer that builds no kernel basis: escnn caches O(2) kernel
    # bases without the axis, so a conv here would make later default-axis convs of the same
    # irreps non-equivariant in this process (docs/escnn.md)
    o2_vertical = gspaces.flipRot2dOnR2(-1, maximum_frequency=2, axis=0.0)
    fg = o2_vertical.fibergroup
    with pytest.raises(ValueError, match="flip axis"):
        from_escnn(enn.NormPool(enn.FieldType(o2_vertical, [fg.irrep(0, 0), fg.irrep(1, 1)])))
    gs = _space("c4")
    irrep = enn.FieldType(gs, [gs.irrep(1)])  # irreps fields need every order 0..L < N/2
    with pytest.raises(ValueError, match=r"must repeat \[irrep_0, irrep_1\]"):
        from_escnn(enn.R2Conv(_ftype(gs, 1, "trivial"), irrep, 3))
    mixed = enn.FieldType(gs, [gs.regular_repr, gs.irrep(1)])
    with pytest.raises(ValueError, match="non-regular fields"):
        from_escnn(enn.R2Conv(_ftype(gs, 1, "trivial"), mixed, 3))
    vertical = gspaces.flip2dOnR2(axis=0.0)  # mirror line along x: a vertical flip
    conv = enn.R2Conv(_ftype(vertical, 1, "trivial"), _ftype(vertical, 2, "regular"), 3)
    with pytest.raises(ValueError, match="flip axis"):
        from_escnn(conv)


# --- the toolbox modules: Gaussian pools, masks, restriction, norm pooling ----------------
@pytest.mark.parametrize("sigma,stride,padding", [(0.66, 2, None), (1.0, 2, 1), (0.4, 1, None),
                                                  (0.1, 2, 0)])
@pytest.mark.parametrize("rep", ["trivial", "regular"])
def test_antialiased_pool_same_outputs(sigma, stride, padding, rep):
    _escnn()
    from escnn import nn as enn

    from equilayers.nn import GaussianBlurPool2d
    gs = _space("d4")
    ft = _ftype(gs, 3, rep)
    pool = enn.PointwiseAvgPoolAntialiased2D(ft, sigma, stride, padding)
    ours = from_escnn(pool)
    assert isinstance(ours, GaussianBlurPool2d)
    assert ours.kernel_size == pool.kernel_size[0]
    if sigma > 1 / 6:
        assert abs(ours.sigma - sigma) < 1e-5
    shape = (2, 3, 13, 13) if rep == "trivial" else (2, 3, 8, 13, 13)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(ours(x).reshape(2, -1, *ours(x).shape[-2:]),
                               _run_escnn(pool, x, ft), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("size,margin,sigma", [(29, 0.0, 2.0), (29, 10.0, 2.0), (16, 5.0, 1.0),
                                               (9, 50.0, 3.0)])
def test_mask_module_same_outputs(size, margin, sigma):
    _escnn()
    from escnn import nn as enn

    from equilayers.nn import DiskMask
    gs = _space("c4")
    ft = _ftype(gs, 2, "regular")
    mask = enn.MaskModule(ft, size, margin=margin, sigma=sigma)
    ours = from_escnn(mask)
    assert isinstance(ours, DiskMask) and ours.size == size and ours.margin == margin
    assert abs(ours.sigma - sigma) < 1e-4
    x = torch.randn(2, 2, 4, size, size, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(ours(x).flatten(1, 2), _run_escnn(mask, x, ft), rtol=1e-5,
                               atol=1e-6)


_RESTRICTIONS = [("d4", (None, 4), "c4"), ("d4", (0, 1), "d1"), ("d4", (0, 2), "d2"),
                 ("c8", 4, "c4"), ("d8", (0, 4), "d4"), ("d8", (None, 2), "c2")]


@pytest.mark.parametrize("name,sid,sub", _RESTRICTIONS)
def test_restriction_module(name, sid, sub):
    """Our Restrict relays escnn's restricted tensor (which escnn leaves as it is) into regular
    subgroup fields: the same channels, permuted per field by restriction_index."""
    _escnn()
    from escnn import nn as enn

    from equilayers.groups._subgroups import restriction_index
    from equilayers.nn import Restrict
    gs = _space(name)
    ft = _ftype(gs, 3, "regular")
    res = enn.RestrictionModule(ft, sid)
    ours = from_escnn(res)
    assert isinstance(ours, Restrict) and ours.subgroup.name == sub
    n = gs.fibergroup.order()
    x = torch.randn(2, 3, n, 7, 7, generator=torch.Generator().manual_seed(0))
    cols = (torch.arange(3)[:, None] * n + restriction_index(name, sub)).reshape(-1)
    torch.testing.assert_close(ours(x).flatten(1, 2), _run_escnn(res, x, ft)[:, cols],
                               rtol=0, atol=0)
    assert_equivariant(ours, x.double(), sub)


@pytest.mark.parametrize("name,sid,sub", [("d4", (None, 4), "c4"), ("d4", (0, 1), "d1"),
                                          ("d8", (0, 4), "d4"), ("c8", 4, "c4")])
def test_restriction_then_subgroup_layers(name, sid, sub):
    """escnn's usual pattern, a D_N/C_N stack continued on a subgroup: restriction, ReLU, pools
    and an R2Conv on the restricted fields (its filter's input channels permuted into our
    layout), then group pooling on the subgroup's regular fields."""
    _escnn()
    from escnn import nn as enn
    gs = _space(name)
    t_in, t1 = _ftype(gs, 1, "trivial"), _ftype(gs, 2, "regular")
    res = enn.RestrictionModule(t1, sid)
    sub_gs = res.out_type.gspace
    t2 = enn.FieldType(sub_gs, 3 * [sub_gs.regular_repr])
    model = enn.SequentialModule(
        enn.R2Conv(t_in, t1, 5, padding=2), enn.ReLU(t1), res, enn.ReLU(res.out_type),
        enn.PointwiseMaxPool2D(res.out_type, 3, 1, 1),
        enn.R2Conv(res.out_type, t2, 3, padding=1), enn.ReLU(t2), enn.GroupPooling(t2))
    _randomize(model).eval()
    ours = from_escnn(model)
    assert [type(m).__name__ for m in ours] == [
        "LiftingConv2d", "ReLU", "Restrict", "ReLU", "GroupMaxPool2d", "GroupConv2d", "ReLU",
        "GroupPool"]
    assert ours[5].group.name == sub and ours[5].in_channels == 2 * int(
        get(name).order) // int(get(sub).order)
    x = torch.randn(2, 1, 13, 13, generator=torch.Generator().manual_seed(0))
    ref = _run_escnn(model, x, t_in)
    torch.testing.assert_close(ours(x), ref, rtol=1e-5, atol=1e-5 * ref.abs().max().item())
    grid = [g for g in get(sub).elements() if g.is_grid]
    assert_equivariant(ours.double(), x.double(), sub, in_rep="trivial", out_rep="trivial",
                       elements=grid)


def test_restriction_refusals():
    _escnn()
    from escnn import nn as enn
    gs = _space("d4")
    t = _ftype(gs, 2, "regular")
    with pytest.raises(ValueError, match=r"restriction \(1, 2\) keeps the flip r\^1 m"):
        from_escnn(enn.RestrictionModule(t, (1, 2)))
    res = enn.RestrictionModule(t, (None, 4))
    with pytest.raises(ValueError, match="InnerBatchNorm on d4 regular fields restricted to c4 "
                                         "does not map"):
        from_escnn(enn.SequentialModule(res, enn.InnerBatchNorm(res.out_type)))
    with pytest.raises(ValueError, match="GroupPooling on d4 regular fields restricted to c4"):
        from_escnn(enn.SequentialModule(res, enn.GroupPooling(res.out_type)))
    with pytest.raises(ValueError, match="FieldDropout on d4 regular fields restricted to c4 "
                                         "does not map.*dropout masks per c4 field"):
        from_escnn(enn.SequentialModule(res, enn.FieldDropout(res.out_type)))


@pytest.mark.parametrize("space", ["so2", "o2", "c8"])
def test_norm_pool_same_outputs(space):
    _escnn()
    from escnn import gspaces
    from escnn import nn as enn

    from equilayers.nn import NormPool
    gs = {"so2": lambda: gspaces.rot2dOnR2(-1, maximum_frequency=3),
          "o2": lambda: gspaces.flipRot2dOnR2(-1, maximum_frequency=3),
          "c8": lambda: gspaces.rot2dOnR2(8)}[space]()
    irreps = ([gs.irrep(0)] + [gs.irrep(m) for m in (1, 2)] if space != "o2" else
              [gs.irrep(0, 0)] + [gs.irrep(1, m) for m in (1, 2)])
    ft = enn.FieldType(gs, 3 * irreps)
    pool = enn.NormPool(ft)
    ours = from_escnn(pool)
    assert isinstance(ours, NormPool) and ours.max_order == 2
    x = torch.randn(2, 3, 5, 7, 7, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(ours(x), _run_escnn(pool, x, ft), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="NormPool on .*repeat"):
        from_escnn(enn.NormPool(enn.FieldType(gs, irreps[::-1])))


def test_norm_pool_on_regular_fields_refused():
    _escnn()
    from escnn import nn as enn
    gs = _space("c4")
    with pytest.raises(ValueError, match="NormPool on .*only fields of one trivial irrep"):
        from_escnn(enn.NormPool(_ftype(gs, 2, "regular")))
