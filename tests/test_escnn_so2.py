"""``from_escnn`` on SO(2)/O(2) fields of images (``rot2dOnR2(-1)`` / ``flipRot2dOnR2(-1)``)
and on C_N/D_N fields of irreps 0..L (``rot2dOnR2(N)`` / ``flipRot2dOnR2(N)``), layer by layer:
``R2Conv`` (and transposed, and with other basis settings), ``FourierELU`` /
``FourierPointwise`` (SO(2), C_N), ``IIDBatchNorm2d``, ``GNormBatchNorm``, ``NormNonLinearity``,
``NormPool`` and the pools, each compared with escnn output for output, and the field matrix.
Whole models (escnn's SO(2) tutorial model and its C8 twin, restrictions D_N -> C_N):
``test_escnn_so2_models.py``; what is refused and the convention checks:
``test_escnn_so2_refusals.py``.

Run with the peers venv (``.venv-peers/bin/python -m pytest tests/test_escnn_so2.py``);
skipped where escnn is missing.
"""

import pytest
import torch
from _peers import ESCNN_MISSING
from conftest import seeded_rng

escnn = pytest.importorskip("escnn", reason=ESCNN_MISSING)
from _escnn_so2_common import _fields, _space, _to_ours, _to_theirs  # noqa: E402
from escnn import nn as esc  # noqa: E402

from equilayers.interop import escnn_field_matrix, from_escnn  # noqa: E402
from equilayers.nn import (  # noqa: E402
    FourierNonlinearity,
    GroupConv2d,
    HarmonicBatchNorm,
    LiftingConv2d,
    NormNonlinearity,
)


@pytest.mark.parametrize("space,whole", [("so2", False), ("so2", True), ("o2", False),
                                         ("c8", False), ("c8", True), ("d8", False),
                                         ("c7", False), ("d10", False)])
@pytest.mark.parametrize("kind", ["lifting", "group", "to_trivial"])
def test_r2conv_same_outputs_and_parameter_count(space, whole, kind, gen):
    """Trivial -> orders 0..2, orders 0..1 -> 0..2, orders 0..2 -> trivial: our conv holds
    escnn's filter with escnn's parameter count (bias on the order-0 slots), and computes its
    outputs through the field matrix (the identity on SO(2) and C_N, quarter turns on O(2) and
    D_N)."""
    gs, irreps = _space(space)
    triv = esc.FieldType(gs, 2 * [gs.trivial_repr])
    t_in, t_out, f_in, f_out = {
        "lifting": (triv, _fields(gs, irreps, 3, 2, whole), None, 2),
        "group": (_fields(gs, irreps, 2, 1, whole), _fields(gs, irreps, 3, 2, whole), 1, 2),
        "to_trivial": (_fields(gs, irreps, 3, 2, whole), triv, 2, None)}[kind]
    with seeded_rng(0):
        theirs = esc.R2Conv(t_in, t_out, 5, padding=2)
    with torch.no_grad():
        theirs.bias.normal_(generator=gen)
    theirs.eval()  # escnn caches its expanded filter and bias here
    ours = from_escnn(theirs)
    assert isinstance(ours, LiftingConv2d if kind == "lifting" else GroupConv2d)
    assert ours.group.name == space and ours.max_order == (f_out or 0)
    assert ours.weight.numel() == theirs.weights.numel()
    x = torch.randn(2, t_in.size, 11, 11, generator=gen)
    with torch.no_grad():
        want = theirs(esc.GeometricTensor(x, t_in)).tensor
        got = ours(x if f_in is None else _to_ours(x, space, t_in.size // (2 * f_in + 1), f_in))
    got = got.flatten(1, 2) if f_out is None else _to_theirs(got, space, f_out)
    torch.testing.assert_close(got, want, rtol=0, atol=2e-5)


@pytest.mark.parametrize("space", ["so2", "o2", "c8", "d8"])
def test_r2conv_transposed_same_outputs(space, gen):
    gs, irreps = _space(space)
    t_in, t_out = _fields(gs, irreps, 2, 1, False), _fields(gs, irreps, 3, 2, False)
    with seeded_rng(0):
        theirs = esc.R2ConvTransposed(t_in, t_out, 3, stride=2, padding=1).eval()
    ours = from_escnn(theirs)
    assert type(ours).__name__ == "GroupConvTranspose2d"
    assert ours.weight.numel() == theirs.weights.numel()
    x = torch.randn(2, t_in.size, 7, 7, generator=gen)
    with torch.no_grad():
        want = theirs(esc.GeometricTensor(x, t_in)).tensor
        got = _to_theirs(ours(_to_ours(x, space, 2, 1)), space, 2)
    assert got.shape[-1] == 13
    torch.testing.assert_close(got, want, rtol=0, atol=2e-5)
    # an even kernel: escnn samples its basis around the grid's half-pixel centre, as ours
    # does; the same outputs. At k = 2 (the U-Net's up-conv) escnn's default basis is empty:
    # given our default's ring through the four taps (and its cap), it is ours.
    ring = {"rings": [0.5 ** 0.5], "frequencies_cutoff": lambda r: 1.0}
    for k, pad, settings in ((4, 1, {}), (6, 2, {}), (2, 0, ring)):
        with seeded_rng(0):
            theirs = esc.R2ConvTransposed(t_in, t_out, k, stride=2, padding=pad,
                                          **settings).eval()
        ours = from_escnn(theirs)
        assert ours.weight.numel() == theirs.weights.numel()
        with torch.no_grad():
            want = theirs(esc.GeometricTensor(x, t_in)).tensor
            got = _to_theirs(ours(_to_ours(x, space, 2, 1)), space, 2)
        torch.testing.assert_close(got, want, rtol=0, atol=2e-5)


@pytest.mark.parametrize("space", ["so2", "o2", "c8", "d8"])
@pytest.mark.parametrize("settings", [dict(dilation=2, padding=2), dict(sigma=0.4),
                                      dict(frequencies_cutoff=1.5), dict(rings=[0.0, 1.3, 2.0])])
def test_r2conv_with_other_basis_settings_converts_with_escnns(space, settings, gen):
    """A dilation or non-default ``sigma`` / ``frequencies_cutoff`` / ``rings`` moves escnn's
    rings and frequency caps off our defaults, so the conversion reads escnn's own (its
    elements' ``irrep:frequency`` per ring): every one was refused before, as though escnn's
    layer had a ``basis_filter``."""
    gs, irreps = _space(space)
    t_in, t_out = _fields(gs, irreps, 2, 1, False), _fields(gs, irreps, 2, 2, False)
    with seeded_rng(0):
        theirs = esc.R2Conv(t_in, t_out, 5, **settings).eval()
    ours = from_escnn(theirs)
    assert isinstance(ours, GroupConv2d)
    assert ours.weight.numel() == theirs.weights.numel()
    x = torch.randn(2, t_in.size, 11, 11, generator=gen)
    with torch.no_grad():
        want = theirs(esc.GeometricTensor(x, t_in)).tensor
        got = _to_theirs(ours(_to_ours(x, space, 2, 1)), space, 2)
    torch.testing.assert_close(got, want, rtol=0, atol=2e-5)


@pytest.mark.parametrize("space", ["so2", "o2", "c8", "d8"])
def test_iid_batch_norm_state_and_training_mode(space, gen):
    """IIDBatchNorm2d on whole fields -> ``statistics="field"``: eval mode equal; one training
    forward on the same batch moves both running statistics alike (escnn's running variance is
    the unbiased one, as ours); the training-mode outputs differ by escnn's Bessel factor only,
    ``sqrt(N / (N - 1))`` on the centred part (``N`` = batch x pixels)."""
    gs, irreps = _space(space)
    if space in ("o2", "d8"):  # one representation per field: a direct sum, no change of basis
        from escnn.group import directsum
        t = esc.FieldType(gs, 3 * [directsum(irreps[:3])])
    else:
        t = _fields(gs, irreps, 3, 2, True)
    theirs = esc.IIDBatchNorm2d(t, eps=1e-12)
    with torch.no_grad():
        for p in theirs.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen))
    ours = from_escnn(theirs)
    assert isinstance(ours, HarmonicBatchNorm) and ours.statistics == "field"
    x = 2 + torch.randn(4, t.size, 6, 6, generator=gen)
    xo = _to_ours(x, space, 3, 2)
    want = theirs(esc.GeometricTensor(x, t)).tensor
    got = _to_theirs(ours(xo), space, 2)
    n = 4 * 6 * 6
    bias = _to_theirs(ours.bias.detach().view(1, 3, 1, 1, 1) * torch.tensor(
        [1.0, 0, 0, 0, 0]).view(1, 1, 5, 1, 1), space, 2)
    torch.testing.assert_close((got - bias) / (n / (n - 1)) ** 0.5, want - bias, rtol=0,
                               atol=1e-4)
    assert not torch.allclose(got, want, atol=1e-3)  # the Bessel factor is visible
    name = t.representations[0].name.replace(".", "^")
    torch.testing.assert_close(ours.running_var, getattr(theirs, f"{name}_running_var"))
    torch.testing.assert_close(ours.running_mean, getattr(theirs, f"{name}_running_mean")[:, 0])
    theirs.eval()
    ours.eval()
    with torch.no_grad():
        torch.testing.assert_close(_to_theirs(ours(xo), space, 2),
                                   theirs(esc.GeometricTensor(x, t)).tensor, rtol=0, atol=1e-5)


@pytest.mark.parametrize("function", ["p_elu", "p_relu"])
@pytest.mark.parametrize("space,samples", [("so2", 12), ("c8", 8), ("c12", 12)])
def test_fourier_pointwise_same_outputs(function, space, samples, gen):
    gs, _ = _space(space)
    theirs = esc.FourierPointwise(gs, 3, gs.fibergroup.bl_irreps(2), function=function,
                                  inplace=False, type="regular", N=samples)
    ours = from_escnn(theirs)
    assert isinstance(ours, FourierNonlinearity) and ours.samples == samples
    assert ours.group.name == space
    x = torch.randn(2, 15, 5, 5, generator=gen)
    want = theirs(esc.GeometricTensor(x, theirs.in_type)).tensor
    torch.testing.assert_close(ours(x.unflatten(1, (3, 5))).flatten(1, 2), want, rtol=0,
                               atol=1e-5)


@pytest.mark.parametrize("space", ["so2", "o2", "c8", "d8"])
def test_norm_layers_same_outputs(space, gen):
    """GNormBatchNorm (its state), NormNonLinearity (escnn's log_bias, moved off its init) and
    NormPool on fields of separate irreps, in eval mode, through the field matrix."""
    gs, irreps = _space(space)
    t = _fields(gs, irreps, 3, 2, False)
    norm, act = esc.GNormBatchNorm(t), esc.NormNonLinearity(t, "n_relu")
    with torch.no_grad():
        act.log_bias.copy_(0.3 * torch.randn(act.log_bias.shape, generator=gen))
        for p in norm.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=gen))
        norm(esc.GeometricTensor(3 * torch.randn(4, t.size, 5, 5, generator=gen), t))
    body = esc.SequentialModule(norm, act, esc.NormPool(t)).eval()
    ours = from_escnn(body).eval()
    assert isinstance(ours[1], NormNonlinearity) and ours[1].bias_form == "exp"
    x = torch.randn(2, t.size, 5, 5, generator=gen)
    with torch.no_grad():
        torch.testing.assert_close(ours(_to_ours(x, space, 3, 2)),
                                   body(esc.GeometricTensor(x, t)).tensor, rtol=0, atol=1e-5)
        mid = esc.SequentialModule(norm, act).eval()(esc.GeometricTensor(x, t)).tensor
        torch.testing.assert_close(_to_theirs(ours[1](ours[0](_to_ours(x, space, 3, 2))),
                                              space, 2), mid, rtol=0, atol=1e-5)


def test_average_pool_on_harmonic_fields(gen):
    gs, irreps = _space("so2")
    t = _fields(gs, irreps, 2, 2, True)
    theirs = esc.PointwiseAvgPool2D(t, 2)
    x = torch.randn(2, t.size, 6, 6, generator=gen)
    torch.testing.assert_close(from_escnn(theirs)(x.unflatten(1, (2, 5))).flatten(1, 2),
                               theirs(esc.GeometricTensor(x, t)).tensor)


@pytest.mark.parametrize("group", ["o2", "d8"])
def test_field_matrix_turns_order_m_by_m_counter_clockwise_quarter_turns(group):
    """``escnn_field_matrix`` is the documented ``Q`` (``ours = Q theirs``): 1, then ``R(m pi /
    2)`` on order ``m``. ``R(-m pi / 2)`` (order ``m`` times ``(-1)^m``) would be an equally
    valid intertwiner, so the conversions alone cannot tell them apart: a user's
    ``Q @ theirs`` must get this one."""
    quarter = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=torch.float64)  # R(pi / 2)
    want = torch.block_diag(torch.ones(1, 1, dtype=torch.float64),
                            *[torch.linalg.matrix_power(quarter, m) for m in (1, 2, 3)])
    torch.testing.assert_close(escnn_field_matrix(group, 3), want, rtol=0, atol=0)
    assert torch.equal(escnn_field_matrix(group.replace("o2", "so2").replace("d", "c"), 3),
                       torch.eye(7, dtype=torch.float64))
