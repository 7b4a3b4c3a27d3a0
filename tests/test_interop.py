"""equilayers.interop.from_escnn: same outputs as escnn, clear errors for what is unsupported.

Needs escnn (optional extra; run with an environment that has it, e.g.
``.venv-peers/bin/python -m pytest tests/test_interop.py``); skipped elsewhere, except the
test that a non-escnn argument is refused.
"""

import pytest
import torch
from _peers import ESCNN_MISSING
from conftest import seeded_rng
from torch import nn

from equilayers.groups import get
from equilayers.interop import from_escnn
from equilayers.nn import (
    ExpandedGroupConv2d,
    GroupBatchNorm2d,
    GroupConv2d,
    GroupPool,
    LiftingConv2d,
    LiftingConv3d,
)
from equilayers.testing import assert_equivariant, equivariance_report


def _escnn():
    return pytest.importorskip("escnn", reason=ESCNN_MISSING)


def _space(name):
    from escnn import gspaces
    return {"c1": lambda: gspaces.rot2dOnR2(1), "c2": lambda: gspaces.rot2dOnR2(2),
            "c4": lambda: gspaces.rot2dOnR2(4), "d1": lambda: gspaces.flip2dOnR2(),
            "d1r": lambda: gspaces.flipRot2dOnR2(1), "d2": lambda: gspaces.flipRot2dOnR2(2),
            "d4": lambda: gspaces.flipRot2dOnR2(4), "c8": lambda: gspaces.rot2dOnR2(8),
            "c3": lambda: gspaces.rot2dOnR2(3), "c6": lambda: gspaces.rot2dOnR2(6),
            "d3": lambda: gspaces.flipRot2dOnR2(3), "d8": lambda: gspaces.flipRot2dOnR2(8),
            "c16": lambda: gspaces.rot2dOnR2(16)}[name]()


def _grid(name):
    """The elements of our group that map the pixel grid onto itself (its grid subgroup)."""
    return [g for g in get(name).elements() if g.is_grid]


def _randomize(module):
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(generator=gen)
    return module


def _refused_when_broken(conv, monkeypatch, match: str, *, filt_slot: int | None = None,
                         bias_at: tuple[int, float, bool] | None = None) -> None:
    """``conv`` converts as escnn built it (the control); with its expanded filter's output
    slot ``filt_slot`` negated, or its expanded bias at ``bias_at = (index, value, add)`` set
    (or raised by) ``value`` (a filter or bias no escnn conv builds), it is refused with
    ``match``."""
    from_escnn(conv)
    filt, bias = conv.expand_parameters()
    filt = filt.detach().clone()
    bias = None if bias is None else bias.detach().clone()
    if filt_slot is not None:
        filt[filt_slot] = -filt[filt_slot]
    if bias_at is not None:
        i, value, add = bias_at
        bias[i] = bias[i] + value if add else value
    monkeypatch.setattr(conv, "expand_parameters", lambda: (filt, bias))
    with pytest.raises(ValueError, match=match):
        from_escnn(conv)


def _ftype(gs, c, rep):
    from escnn import nn as enn
    return enn.FieldType(gs, c * [gs.regular_repr if rep == "regular" else gs.trivial_repr])


def _run_escnn(m, x, in_type):
    from escnn import nn as enn
    with torch.no_grad():
        return m(enn.GeometricTensor(x.flatten(1, 2) if x.dim() == 5 else x, in_type)).tensor


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
                         + [("c8", kw) for kw in _TRANSPOSED if kw["kernel_size"] % 2])
@pytest.mark.parametrize("lifting", [True, False])
def test_r2conv_transposed_same_outputs(name, lifting, kw):
    """``R2ConvTransposed`` -> :class:`LiftingConvTranspose2d` / :class:`GroupConvTranspose2d`
    (pixel filters on c4/d4/d1, the steerable basis on c8) with escnn's outputs, exactly
    equivariant on the grid where the sizes allow (k3 s2 p1 on odd sizes, k4 s2 p1 on any)."""
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


def test_r2conv_transposed_even_kernel_off_grid_refused():
    _escnn()
    from escnn import nn as enn
    gs = _space("c8")
    with pytest.raises(ValueError, match="kernel_size=4: our steerable .* needs an odd"):
        from_escnn(enn.R2ConvTransposed(_ftype(gs, 1, "regular"), _ftype(gs, 1, "regular"),
                                        4, stride=2, padding=1))


def test_unsupported_layer_named():
    _escnn()
    from escnn import nn as enn
    gs = _space("c4")
    t = _ftype(gs, 2, "regular")
    with pytest.raises(TypeError, match="escnn.nn.FieldDropout has no equilayers equivalent"):
        from_escnn(enn.SequentialModule(enn.ReLU(t), enn.FieldDropout(t)))
    with pytest.raises(TypeError, match="PointwiseMaxPoolAntialiased2D"):
        from_escnn(enn.PointwiseMaxPoolAntialiased2D(t, 2))


def test_unsupported_groups_and_fields():
    _escnn()
    from escnn import gspaces
    from escnn import nn as enn
    so2 = gspaces.rot2dOnR2(-1, maximum_frequency=2)
    conv = enn.R2Conv(enn.FieldType(so2, [so2.trivial_repr]),
                      enn.FieldType(so2, [so2.irrep(1)]), 3)
    with pytest.raises(ValueError, match=r"must repeat \[irrep_0, irrep_1\]"):
        from_escnn(conv)  # SO(2) fields need every order 0..L (tests/test_escnn_so2.py)
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


_OFF_GRID = [(name, kw) for name in ("c3", "c6", "c8", "d3", "d8", "c16")
             for kw in (dict(padding=2), dict(padding=2, stride=2, bias=False))]
_OFF_GRID += [(name, dict(padding=2, padding_mode="circular")) for name in ("c8", "d8")]


@pytest.mark.parametrize("name,kw", _OFF_GRID)
@pytest.mark.parametrize("lifting", [True, False])
def test_r2conv_off_grid_groups_same_outputs(name, lifting, kw):
    """Groups with rotations off the pixel grid: escnn's default filters lie in our steerable
    basis, so the conversion is a trainable ``basis="harmonic"`` layer giving escnn's outputs,
    exactly equivariant on the grid subgroup (c4 of c8 and c16, d4 of d8, c2 of c6, d1 of d3,
    c1 of c3), as escnn's is."""
    _escnn()
    from escnn import nn as enn
    gs = _space(name)
    conv = _randomize(enn.R2Conv(_ftype(gs, 2, "trivial" if lifting else "regular"),
                                 _ftype(gs, 3, "regular"), 5, **kw)).eval()
    ours = from_escnn(conv)
    assert type(ours) is (LiftingConv2d if lifting else GroupConv2d)
    assert ours.group.name == name and ours.basis == "harmonic"
    assert not ours.training and ours.weight.requires_grad
    n = gs.fibergroup.order()
    shape = (2, 2, 13, 13) if lifting else (2, 2, n, 13, 13)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(ours(x).flatten(1, 2), _run_escnn(conv, x, conv.in_type),
                               rtol=1e-5, atol=1e-5)
    # escnn's filter is float32: exact to float32 rounding (default tolerance of the dtype)
    assert_equivariant(ours, x, name, elements=_grid(name))


def _fco_escnn_default(k):
    """escnn's default frequency policy, as a callable (escnn takes it for granted)."""
    return lambda r: 0 if r == 0 else min(2 * r, 2 if r == k // 2 else 2 * r - (r + 1) % 2)


# escnn's basis settings (fit residual measured here, max |ours - escnn| / max |escnn| over the
# expanded filter, c8/d8/c3, lifting and group convs: 1.3e-7 to 1.3e-6, float32 rounding)
_SETTINGS = [
    ("c8", 5, dict(sigma=0.5)),
    ("d8", 5, dict(frequencies_cutoff=2.0)),
    ("c3", 5, dict(frequencies_cutoff=1.0)),
    ("c8", 5, dict(frequencies_cutoff=lambda r: 1.5 * r)),
    ("d8", 7, dict(rings=[0.0, 1.5, 2.5], sigma=[0.3, 0.5, 0.7])),
    ("c8", 5, dict(rings=[0.0, 0.5, 1.0, 1.5, 2.0])),
    ("c8", 9, {}),  # escnn's default policy allows 2r - 1 / 2r on inner rings from k = 9
    ("d8", 11, {}),
    ("c8", 5, dict(dilation=2)),  # escnn's dilated rings and widths, in our filter taps
]


@pytest.mark.parametrize("name,k,kw", _SETTINGS,
                         ids=[f"{n}-k{k}-{'-'.join(kw) or 'default'}" for n, k, kw in _SETTINGS])
@pytest.mark.parametrize("lifting", [True, False])
def test_r2conv_basis_settings_same_outputs(name, k, kw, lifting):
    """Non-default sigma / frequencies_cutoff / rings (and kernels >= 9, dilation): the
    conversion is a trainable basis="harmonic" layer with escnn's settings, escnn's outputs,
    exactly equivariant on the grid subgroup."""
    _escnn()
    from escnn import nn as enn
    gs = _space(name)
    d = kw.get("dilation", 1)
    conv = _randomize(enn.R2Conv(_ftype(gs, 2, "trivial" if lifting else "regular"),
                                 _ftype(gs, 2, "regular"), k, padding=k // 2 * d, **kw)).eval()
    ours = from_escnn(conv)
    assert type(ours) is (LiftingConv2d if lifting else GroupConv2d)
    assert ours.basis == "harmonic" and ours.weight.requires_grad
    assert ours._basis_spec is not None  # not our default basis
    # the same number of basis elements per field pair: the two bases span the same filters
    assert conv.basisexpansion.dimension() == 2 * 2 * ours.weight.shape[-1]
    n = gs.fibergroup.order()
    size = 2 * k + 3
    shape = (2, 2, size, size) if lifting else (2, 2, n, size, size)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    ref = _run_escnn(conv, x, conv.in_type)  # float32 sums over up to 16 x 11 x 11 taps
    torch.testing.assert_close(ours(x).flatten(1, 2), ref, rtol=1e-5,
                               atol=1e-6 * ref.abs().max().item())
    filt = conv.expand_parameters()[0]
    with torch.no_grad():
        resid = (ours.expanded_filter() - filt).abs().max() / filt.abs().max()
    assert resid < 5e-6, resid.item()
    assert_equivariant(ours, x, name, elements=_grid(name))


def test_r2conv_explicit_escnn_default_policy_at_k9():
    """escnn's callable default policy given explicitly gives the same conversion."""
    _escnn()
    from escnn import nn as enn
    gs = _space("c8")
    a = _randomize(enn.R2Conv(_ftype(gs, 1, "regular"), _ftype(gs, 2, "regular"), 9)).eval()
    b = _randomize(enn.R2Conv(_ftype(gs, 1, "regular"), _ftype(gs, 2, "regular"), 9,
                              frequencies_cutoff=_fco_escnn_default(9))).eval()
    ca, cb = from_escnn(a), from_escnn(b)
    assert ca.frequencies_cutoff == cb.frequencies_cutoff == (0, 2, 3, 6, 2)
    torch.testing.assert_close(ca.weight, cb.weight)


@pytest.mark.parametrize("name", ["c8", "d8"])
@pytest.mark.parametrize("lifting", [True, False])
def test_r2conv_outside_steerable_span_held_densely(name, lifting, monkeypatch):
    """An escnn filter that our basis does not reproduce (here: escnn's k=9 filter against our
    default caps, r + 1 on inner rings, by withholding escnn's settings) is held densely by an
    ExpandedGroupConv2d, frozen, giving escnn's outputs and exactly equivariant on the grid
    subgroup."""
    _escnn()
    from escnn import nn as enn

    from equilayers import interop
    monkeypatch.setattr(interop, "_escnn_basis_settings", lambda m: {})
    gs = _space(name)
    conv = _randomize(enn.R2Conv(_ftype(gs, 1, "trivial" if lifting else "regular"),
                                 _ftype(gs, 2, "regular"), 9, padding=4)).eval()
    ours = from_escnn(conv)
    assert isinstance(ours, ExpandedGroupConv2d)
    assert ours.group.name == name and ours.lifting is lifting
    assert not ours.training and not ours.weight.requires_grad
    assert ours.in_rep == ("trivial" if lifting else "regular") and ours.out_rep == "regular"
    n = gs.fibergroup.order()
    shape = (2, 1, 17, 17) if lifting else (2, 1, n, 17, 17)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(ours(x).flatten(1, 2), _run_escnn(conv, x, conv.in_type),
                               rtol=1e-5, atol=1e-5)
    assert ours.grid_equivariance_error() < 1e-6
    assert_equivariant(ours, x, name, elements=_grid(name))


def test_r2conv_basis_filter_converts_to_a_larger_space_with_a_warning():
    """A ``basis_filter`` that drops frequency 1 on C8: no settings of ours describe escnn's
    basis, so the layer converts with escnn's rings and caps (its filter reproduced) and a
    warning naming both coefficient counts; the control: without the filter, no warning."""
    _escnn()
    import warnings

    from escnn import nn as enn
    gs = _space("c8")
    t = _ftype(gs, 2, "regular")
    with seeded_rng(0):
        theirs = enn.R2Conv(t, t, 5, padding=2,
                            basis_filter=lambda a: abs(a["irrep:frequency"]) != 1).eval()
        plain = enn.R2Conv(t, t, 5, padding=2).eval()
    with pytest.warns(UserWarning, match=r"escnn's basis has 224 trainable .* ours 352"):
        ours = from_escnn(theirs)
    x = torch.randn(2, 2, 8, 9, 9, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(ours(x).flatten(1, 2), _run_escnn(theirs, x, t),
                                   rtol=1e-4, atol=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert from_escnn(plain).weight.numel() == plain.weights.numel()


def test_c8_off_grid_bound():
    """The converted c8 layer is approximate at 45 degrees exactly as escnn's filter is
    (measured here: 5.7% relative error on Gaussian-smoothed noise, sigma 1 px, 41 x 41;
    1.4% at sigma 2 px), below the interpolation floor of rotating the output forth and back,
    and far from exact (the negative control: > 1e-3)."""
    _escnn()
    from escnn import nn as enn
    gs = _space("c8")
    conv = _randomize(enn.R2Conv(_ftype(gs, 2, "regular"), _ftype(gs, 3, "regular"), 5,
                                 padding=2)).eval()
    ours = from_escnn(conv).double()
    x = torch.randn(2, 2, 8, 41, 41, generator=torch.Generator().manual_seed(0),
                    dtype=torch.float64)
    at45 = get("c8").elements_at([45.0])
    for sigma, bound in ((1.0, 0.08), (2.0, 0.03)):
        report = equivariance_report(ours, x, "c8", elements=at45, smooth=sigma)
        assert 1e-3 < report.error < bound, (sigma, report)
        assert report.error < report.floor, (sigma, report)
    assert_equivariant(ours, x, "c8", elements=at45, tol=0.08)


@pytest.mark.parametrize("name", ["c8", "d8"])
def test_sequential_off_grid_group_same_outputs(name):
    _escnn()
    from escnn import nn as enn
    gs = _space(name)
    t_in, t1, t2 = _ftype(gs, 2, "trivial"), _ftype(gs, 3, "regular"), _ftype(gs, 2, "regular")
    model = enn.SequentialModule(
        enn.R2Conv(t_in, t1, 5, padding=2), enn.InnerBatchNorm(t1), enn.ReLU(t1),
        enn.PointwiseMaxPool2D(t1, 2),
        enn.R2Conv(t1, t2, 3, padding=1), enn.ReLU(t2), enn.PointwiseAvgPool2D(t2, 3, 1, 1),
        enn.GroupPooling(t2),
    )
    x = torch.randn(3, 2, 14, 14, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model.train()(enn.GeometricTensor(x, t_in))  # move the BN running stats
    for train in (False, True):
        model.train(train)
        ours = from_escnn(model)
        assert [type(m).__name__ for m in ours] == [
            "LiftingConv2d", "GroupBatchNorm2d", "ReLU", "GroupMaxPool2d",
            "GroupConv2d", "ReLU", "GroupAvgPool2d", "GroupPool"]
        assert ours.training is train
        with torch.no_grad():
            torch.testing.assert_close(ours(x), _run_escnn(model, x, t_in), rtol=1e-5,
                                       atol=1e-5)
    assert_equivariant(ours.eval(), x, name, in_rep="trivial", out_rep="trivial",
                       elements=_grid(name))


def test_off_grid_flip_axis_refused():
    _escnn()
    import math

    from escnn import gspaces
    from escnn import nn as enn
    gs = gspaces.flipRot2dOnR2(8, axis=math.pi / 8)
    conv = enn.R2Conv(_ftype(gs, 1, "trivial"), _ftype(gs, 2, "regular"), 3)
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
    c4 = gspaces.rot2dOnR3(4)
    with pytest.raises(ValueError, match="not one of the cube's groups"):
        from_escnn(esc.R3Conv(esc.FieldType(c4, [c4.trivial_repr]),
                              esc.FieldType(c4, [c4.regular_repr]), 3))


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
    escnn's own converts, the control), and SO(3) fields (only the cube's regular ones)."""
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
    with pytest.raises(ValueError, match="R3ConvTransposed on .* fields is not supported"):
        from_escnn(esc.R3ConvTransposed(esc.FieldType(so3, [so3.trivial_repr]),
                                        esc.FieldType(so3, [so3.irrep(0), so3.irrep(1)]), 3))


# --- volumes: SO(3)/O(3) fields -----------------------------------------------------------------
def _so3_space(space: str):
    """escnn's gspace for ``"so3"`` / ``"o3"`` (maximum frequency 2) and its irreps of
    orders 0..2 (O(3): ``irrep(l % 2, l)``, our parity ``(-1)^l``)."""
    from escnn import gspaces

    if space == "so3":
        gs = gspaces.rot3dOnR3(maximum_frequency=2)
        return gs, [gs.fibergroup.irrep(ell) for ell in range(3)]
    gs = gspaces.flipRot3dOnR3(maximum_frequency=2)
    return gs, [gs.fibergroup.irrep(ell % 2, ell) for ell in range(3)]


@pytest.mark.parametrize("space", ["so3", "o3"])
def test_so3_stack_matches_escnn_with_its_field_signs(space, gen):
    """R3Conv (volumes -> fields of orders 0..1), GNormBatchNorm (running statistics and
    affine parameters moved), NormNonLinearity (its biases moved off their init), R3Conv (->
    orders 0..2), NormPool on ``rot3dOnR3`` / ``flipRot3dOnR3``, in eval mode: the
    converted model's harmonic fields are escnn's times :func:`escnn_field_signs`, and its
    pooled norms are escnn's as they are. The control: the fields without the signs differ."""
    _escnn()
    from escnn import nn as esc

    from equilayers.interop import escnn_field_signs

    gs, irreps = _so3_space(space)
    t_in = esc.FieldType(gs, 2 * [gs.trivial_repr])
    t_mid = esc.FieldType(gs, 3 * irreps[:2])
    t_out = esc.FieldType(gs, 2 * irreps)
    with seeded_rng(0):
        first = esc.R3Conv(t_in, t_mid, 3, padding=1)
        norm = esc.GNormBatchNorm(t_mid)
        act = esc.NormNonLinearity(t_mid, "n_relu")
        second = esc.R3Conv(t_mid, t_out, 3, padding=1)
    x = torch.randn(2, 2, 5, 5, 5, generator=gen)
    with torch.no_grad():
        act.log_bias.copy_(0.3 * torch.randn(act.log_bias.shape, generator=gen))
        first.bias.add_(0.5)  # escnn's bias (order-0 slots) away from 0
        for p in norm.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=gen))
        norm.train()
        norm(first(esc.GeometricTensor(3 * x, t_in)))  # running statistics moved
    body = esc.SequentialModule(first, norm, act, second).eval()
    ours = from_escnn(body).eval()
    assert [type(m).__name__ for m in ours] == ["SteerableConv3d", "HarmonicBatchNorm",
                                                 "NormNonlinearity", "SteerableConv3d"]
    assert ours[0].group.name == space and ours[3].max_order == 2
    with torch.no_grad():
        theirs = body(esc.GeometricTensor(x, t_in)).tensor
        y = ours(x)
        mid = ours[2](ours[1](ours[0](x)))
        mid_theirs = act(norm(first(esc.GeometricTensor(x, t_in)))).tensor
    signs = escnn_field_signs(2).float()
    assert set(signs.tolist()) == {-1.0, 1.0}
    torch.testing.assert_close(y.flatten(1, 2) * signs.repeat(2).view(1, -1, 1, 1, 1), theirs,
                               rtol=0, atol=1e-5)
    torch.testing.assert_close(mid.flatten(1, 2) * signs[:4].repeat(3).view(1, -1, 1, 1, 1),
                               mid_theirs, rtol=0, atol=1e-5)
    assert not torch.allclose(y.flatten(1, 2), theirs, atol=1e-2)  # the signs are needed
    pooled = esc.SequentialModule(body, esc.NormPool(t_out)).eval()
    with torch.no_grad():
        torch.testing.assert_close(from_escnn(pooled).eval()(x),
                                   pooled(esc.GeometricTensor(x, t_in)).tensor,
                                   rtol=0, atol=1e-5)


def test_so3_norm_relu_converts_with_escnns_parametrization_and_trains_as_escnns(gen):
    """escnn's ``NormNonLinearity`` learns ``log_bias`` (``relu(|v| - exp(log_bias))``); the
    converted layer holds the same parameter (``bias_form="exp"``), so the same upstream
    gradient gives the same gradient on it, and after an Adam step on each the two layers
    still agree. The control: the former conversion (an additive bias ``-exp(log_bias)``, the
    same function) agrees before the step but not after it."""
    _escnn()
    from escnn import gspaces
    from escnn import nn as esc

    from equilayers.interop import escnn_field_signs
    from equilayers.nn import NormNonlinearity

    gs = gspaces.rot3dOnR3(maximum_frequency=1)
    t = esc.FieldType(gs, 3 * [gs.fibergroup.irrep(0), gs.fibergroup.irrep(1)])
    theirs = esc.NormNonLinearity(t, "n_relu")
    with torch.no_grad():
        theirs.log_bias.copy_(0.3 * torch.randn(theirs.log_bias.shape, generator=gen))
    ours = from_escnn(theirs)
    assert ours.bias_form == "exp" and ours.bias is None and ours.log_bias is not None
    additive = NormNonlinearity(3, 1, order0="norm", group="so3")
    with torch.no_grad():
        additive.bias.copy_(-ours.log_bias.exp())
    signs = escnn_field_signs(1).repeat(3).float().view(1, -1, 1, 1, 1)
    x = 1.5 * torch.randn(4, 12, 3, 3, 3, generator=gen)
    r = torch.randn(4, 12, 3, 3, 3, generator=gen)  # a fixed upstream gradient

    def step(module, escnn_side):
        opt = torch.optim.Adam(module.parameters(), lr=0.1)
        for _ in range(2):
            opt.zero_grad()
            if escnn_side:
                out = module(esc.GeometricTensor(x, t)).tensor
            else:
                out = module((x * signs).unflatten(1, (3, 4))).flatten(1, 2) * signs
            (out * r).sum().backward()
            opt.step()
        with torch.no_grad():
            if escnn_side:
                return module(esc.GeometricTensor(x, t)).tensor
            return module((x * signs).unflatten(1, (3, 4))).flatten(1, 2) * signs

    with torch.no_grad():  # the same function before training, in both parametrizations
        before = theirs(esc.GeometricTensor(x, t)).tensor
        for m in (ours, additive):
            torch.testing.assert_close(m((x * signs).unflatten(1, (3, 4))).flatten(1, 2) * signs,
                                       before, rtol=0, atol=1e-6)
    want = step(theirs, True)
    torch.testing.assert_close(step(ours, False), want, rtol=0, atol=1e-5)
    torch.testing.assert_close(ours.log_bias, theirs.log_bias.detach().reshape(2, 3).T)
    assert not torch.allclose(step(additive, False), want, atol=1e-3)  # the control


@pytest.mark.parametrize("space,k,settings", [
    ("so3", 5, {"sigma": 1.2}), ("so3", 3, {"rings": [0.0, 1.0, 1.5]}),
    ("so3", 5, {"frequencies_cutoff": 1.0}), ("so3", 3, {"dilation": 2}),
    ("o3", 5, {"rings": [0.5, 1.5], "sigma": [0.5, 0.7]})])
def test_so3_conv_with_escnns_basis_settings_converts_with_its_parameters(space, k, settings,
                                                                          gen):
    """``R3Conv`` with other basis settings (shell widths, shells between the grid's radii up
    to the cube's corner, a frequency cutoff, dilation): converted with escnn's settings read
    from its basis (shells and widths in taps, the largest ``J`` per shell), escnn's parameter
    count and outputs (with the field signs). The control: with ``frequencies_cutoff=1.0``
    escnn's filter also lies in our default basis, which has more elements; the conversion
    must not take that larger space."""
    _escnn()
    from escnn import nn as esc

    from equilayers.interop import escnn_field_signs
    from equilayers.nn import SteerableConv3d

    gs, irreps = _so3_space(space)
    t_in, t_out = esc.FieldType(gs, 2 * irreps[:2]), esc.FieldType(gs, 2 * irreps)
    d = settings.get("dilation", 1)
    with seeded_rng(0):
        theirs = esc.R3Conv(t_in, t_out, k, padding=k // 2 * d, **settings).eval()
    ours = from_escnn(theirs)
    assert ours.weight.numel() == theirs.weights.numel()
    x = torch.randn(2, t_in.size, 7, 7, 7, generator=gen)
    s_in = escnn_field_signs(1).repeat(2).view(1, -1, 1, 1, 1).float()
    s_out = escnn_field_signs(2).repeat(2).view(1, -1, 1, 1, 1).float()
    with torch.no_grad():
        want = theirs(esc.GeometricTensor(x, t_in)).tensor
        got = ours((x * s_in).unflatten(1, (2, 4))).flatten(1, 2) * s_out
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    if settings == {"frequencies_cutoff": 1.0}:
        default = SteerableConv3d(2, 2, k, padding=k // 2, in_max_order=1, max_order=2,
                                  group=space)
        assert default.weight.numel() > ours.weight.numel()


def test_so3_unsupported_fields_and_settings_are_refused_by_name():
    _escnn()
    from escnn import gspaces
    from escnn import nn as esc

    gs = gspaces.rot3dOnR3(maximum_frequency=2)
    fg = gs.fibergroup
    vol = esc.FieldType(gs, [gs.trivial_repr])
    with pytest.raises(ValueError, match=r"must repeat \[irrep_0, irrep_1, irrep_2\]"):
        from_escnn(esc.R3Conv(vol, esc.FieldType(gs, [fg.irrep(0), fg.irrep(2), fg.irrep(1)]),
                              3))
    with pytest.raises(ValueError, match="a basis_filter that keeps other elements"):
        from_escnn(esc.R3Conv(esc.FieldType(gs, [fg.irrep(0), fg.irrep(1)]),
                              esc.FieldType(gs, [fg.irrep(ell) for ell in range(3)]), 5,
                              basis_filter=lambda attr: attr["j"][-1] != 1))
    with pytest.raises(ValueError, match="only function='n_relu'"):
        from_escnn(esc.NormNonLinearity(esc.FieldType(gs, [fg.irrep(0), fg.irrep(1)]),
                                        "n_sigmoid"))


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
