"""equilayers.interop.from_escnn on planar groups off the pixel grid (c3, c6, c8, c16, d3, d8)
and with escnn's basis settings: same outputs as escnn, filters outside our steerable span held
densely, the off-grid bound, clear errors for what is unsupported.

Needs escnn (optional extra; run with an environment that has it, e.g.
``.venv-peers/bin/python -m pytest tests/test_interop_2d_off_grid.py``); skipped elsewhere.
"""

import pytest
import torch
from _interop_common import _escnn, _ftype, _grid, _randomize, _run_escnn, _space
from conftest import seeded_rng

from equilayers.groups import get
from equilayers.interop import from_escnn
from equilayers.nn import ExpandedGroupConv2d, GroupConv2d, LiftingConv2d
from equilayers.testing import assert_equivariant, equivariance_report

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

    from equilayers import _interop_regular2d
    monkeypatch.setattr(_interop_regular2d, "_escnn_basis_settings", lambda m: {})
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
