"""``from_escnn`` on SO(2)/O(2) fields of images (``rot2dOnR2(-1)`` / ``flipRot2dOnR2(-1)``)
and on C_N/D_N fields of irreps 0..L (``rot2dOnR2(N)`` / ``flipRot2dOnR2(N)``): ``R2Conv``,
``FourierELU`` / ``FourierPointwise`` (SO(2), C_N), ``IIDBatchNorm2d``, ``GNormBatchNorm``,
``NormNonLinearity``, ``NormPool`` and the pools, up to escnn's own SO(2) tutorial model
(a disk mask, Fourier-ELU blocks with IID batch norm, an antialiased pool, a 1x1 conv to
invariants) and its C8 twin, converted and compared with escnn output for output.

Run with the peers venv (``.venv-peers/bin/python -m pytest tests/test_escnn_so2.py``);
skipped where escnn is missing.
"""

import pytest
import torch
from _peers import ESCNN_MISSING
from conftest import seeded_rng

escnn = pytest.importorskip("escnn", reason=ESCNN_MISSING)
from escnn import gspaces  # noqa: E402
from escnn import nn as esc  # noqa: E402

from equilayers import _interop_so2 as S2  # noqa: E402
from equilayers.interop import escnn_field_matrix, from_escnn  # noqa: E402
from equilayers.nn import (  # noqa: E402
    FourierNonlinearity,
    GroupConv2d,
    HarmonicBatchNorm,
    LiftingConv2d,
    NormNonlinearity,
)


def _space(space: str):
    """escnn's gspace and its irreps of orders 0..3 in our order (``"so2"``, ``"o2"``,
    ``"cN"``, ``"dN"``; N > 6)."""
    if space in ("so2", "o2"):
        n = -1
        kw = {"maximum_frequency": 8}
    else:
        n, kw = int(space[1:]), {}
    if space[0] in "sc":
        gs = gspaces.rot2dOnR2(n, **kw)
        return gs, [gs.fibergroup.irrep(m) for m in range(4)]
    gs = gspaces.flipRot2dOnR2(n, **kw)
    return gs, [gs.fibergroup.irrep(0, 0)] + [gs.fibergroup.irrep(1, m) for m in range(1, 4)]


def _fields(gs, irreps, c: int, order: int, whole: bool):
    if whole:
        rep = gs.fibergroup.spectral_regular_representation(*[r.id for r in irreps[:order + 1]])
        return esc.FieldType(gs, c * [rep])
    return esc.FieldType(gs, c * irreps[:order + 1])


def _to_ours(t: torch.Tensor, space: str, c: int, order: int) -> torch.Tensor:
    """escnn's ``(B, C F, H, W)`` -> our ``(B, C, F, H, W)`` (``ours = Q theirs`` per field)."""
    q = escnn_field_matrix(space, order).to(t)
    return torch.einsum("ij,bcjyx->bciyx", q, t.unflatten(1, (c, 2 * order + 1)))


def _to_theirs(y: torch.Tensor, space: str, order: int) -> torch.Tensor:
    q = escnn_field_matrix(space, order).to(y)
    return torch.einsum("ji,bcjyx->bciyx", q, y).flatten(1, 2)


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
    with pytest.raises(ValueError, match="kernel_size=4: our steerable .* needs an odd"):
        from_escnn(esc.R2ConvTransposed(t_in, t_out, 4, stride=2, padding=1))


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


@pytest.mark.parametrize("space", ["o2", "d8"])
def test_field_matrix_is_needed(space, monkeypatch):
    """The control: without the quarter turns, escnn's O(2)/D_N irreps do not match ours, so
    the convention check refuses the conversion (it does not load a wrong layer)."""
    gs, irreps = _space(space)
    t_in, t_out = _fields(gs, irreps, 2, 1, False), _fields(gs, irreps, 2, 1, False)
    with seeded_rng(0):
        theirs = esc.R2Conv(t_in, t_out, 5, padding=2)
    assert from_escnn(theirs).weight.numel() == theirs.weights.numel()
    monkeypatch.setattr(S2, "escnn_field_matrix",
                        lambda group, order: torch.eye(2 * order + 1, dtype=torch.float64))
    with pytest.raises(ValueError, match="acts on the plane or on its irreps differently"):
        from_escnn(theirs)


def _tutorial_model(gen):
    """escnn's SO(2) tutorial model, smaller: disk mask, two Fourier-ELU blocks (R2Conv
    without bias, IIDBatchNorm2d, FourierELU on orders 0..3 sampled at 16 rotations), an
    antialiased pool, a 1x1 R2Conv to invariant fields; batch statistics moved by training
    forwards, affine parameters moved off their init."""
    gs = gspaces.rot2dOnR2(-1, maximum_frequency=8)
    g = gs.fibergroup
    t_in = esc.FieldType(gs, [gs.trivial_repr])
    with seeded_rng(0):
        a1 = esc.FourierELU(gs, 4, irreps=g.bl_irreps(3), N=16, inplace=True)
        a2 = esc.FourierELU(gs, 6, irreps=g.bl_irreps(3), N=16, inplace=True)
        model = esc.SequentialModule(
            esc.MaskModule(t_in, 29, margin=1),
            esc.R2Conv(t_in, a1.in_type, 7, padding=1, bias=False),
            esc.IIDBatchNorm2d(a1.in_type), a1,
            esc.R2Conv(a1.in_type, a2.in_type, 5, padding=2, bias=False),
            esc.IIDBatchNorm2d(a2.in_type), a2,
            esc.PointwiseAvgPoolAntialiased2D(a2.in_type, sigma=0.66, stride=2),
            esc.R2Conv(a2.in_type, esc.FieldType(gs, 8 * [gs.trivial_repr]), 1, bias=False))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "weight" in name or "bias" in name:
                p.add_(0.3 * torch.randn(p.shape, generator=gen))
    model.train()
    for _ in range(2):
        model(esc.GeometricTensor(torch.randn(8, 1, 29, 29, generator=gen), t_in))
    return model.eval(), t_in


def test_escnn_so2_tutorial_model_same_outputs(gen):
    model, t_in = _tutorial_model(gen)
    ours = from_escnn(model).eval()
    assert [type(m).__name__ for m in ours] == [
        "DiskMask", "LiftingConv2d", "HarmonicBatchNorm", "FourierNonlinearity", "GroupConv2d",
        "HarmonicBatchNorm", "FourierNonlinearity", "GaussianBlurPool2d", "GroupConv2d"]
    assert ours[2].statistics == "field" and ours[3].samples == 16
    x = torch.randn(3, 1, 29, 29, generator=gen)
    with torch.no_grad():
        want = model(esc.GeometricTensor(x, t_in)).tensor
        got = ours(x)
    assert got.shape == (3, 8, 1, 13, 13)
    torch.testing.assert_close(got.flatten(1, 2), want, rtol=0, atol=2e-5)


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


def test_unsupported_fields_and_layers_are_refused_by_name():
    gs, irreps = _space("so2")
    whole, separate = _fields(gs, irreps, 2, 2, True), _fields(gs, irreps, 2, 2, False)
    triv = esc.FieldType(gs, [gs.trivial_repr])
    with pytest.raises(ValueError, match=r"must repeat \[irrep_0, irrep_1, irrep_2\]"):
        from_escnn(esc.R2Conv(triv, esc.FieldType(gs, [irreps[0], irreps[2], irreps[1]]), 3))
    with pytest.raises(ValueError, match="as one representation per field"):
        from_escnn(esc.IIDBatchNorm2d(separate))
    with pytest.raises(ValueError, match="NormNonLinearity .*as separate irreps"):
        from_escnn(esc.NormNonLinearity(whole, "n_relu"))
    with pytest.raises(ValueError, match="other grids have no equivalent"):
        from_escnn(esc.FourierELU(gs, 2, gs.fibergroup.bl_irreps(2), type="rand", N=12))
    o2, o2_irreps = _space("o2")
    with pytest.raises(ValueError, match="only SO.2. and C_N fields map to FourierNonlinear"):
        from_escnn(esc.FourierELU(o2, 2, o2.fibergroup.bl_irreps(2), N=8))


def test_finite_group_fields_refused_by_name():
    """C_N/D_N: D_N Fourier fields (each 2-D irrep twice), a grid of a subgroup, the order
    N/2 (a 1-D irrep of escnn's), restriction of irrep fields, fields mixing regular and
    irreps: each refused with its reason."""
    d8, _ = _space("d8")
    with pytest.raises(ValueError, match="hold each 2-D irrep twice"):
        from_escnn(esc.FourierELU(d8, 2, d8.fibergroup.bl_irreps(2), type="regular", N=8))
    c8, irreps = _space("c8")
    with pytest.raises(ValueError, match="samples 4 elements; ours samples all 8"):
        from_escnn(esc.FourierELU(c8, 2, c8.fibergroup.bl_irreps(2), type="regular", N=4))
    triv = esc.FieldType(c8, [c8.trivial_repr])
    upto4 = esc.FieldType(c8, irreps + [c8.fibergroup.irrep(4)])
    with pytest.raises(ValueError, match="reach order N/2 = 4"):
        from_escnn(esc.R2Conv(triv, upto4, 3))
    with pytest.raises(ValueError, match=r"RestrictionModule \(0, 4\).*only the restriction "
                       "of D_N to C_N"):
        from_escnn(esc.RestrictionModule(_fields(d8, _space("d8")[1], 2, 2, False), (0, 4)))
    so3 = gspaces.rot3dOnR3()
    with pytest.raises(ValueError, match="only SO.2. and C_N fields of images map"):
        from_escnn(esc.FourierELU(so3, 1, irreps=so3.fibergroup.bl_irreps(1), type="ico"))
    mixed = esc.FieldType(c8, [c8.regular_repr] + irreps[:2])
    with pytest.raises(ValueError, match="non-regular fields"):
        from_escnn(esc.R2Conv(triv, mixed, 3))


def test_escnn_c8_fourier_model_same_outputs(gen):
    """The tutorial model's shape on C8 fields of orders 0..3 (Fourier ELU on the 8 rotations,
    IID batch norm, antialiased pool, 1x1 conv to invariants): converted whole, equal."""
    gs, _ = _space("c8")
    g = gs.fibergroup
    t_in = esc.FieldType(gs, [gs.trivial_repr])
    with seeded_rng(0):
        a1 = esc.FourierELU(gs, 4, irreps=g.bl_irreps(3), type="regular", N=8)
        model = esc.SequentialModule(
            esc.MaskModule(t_in, 21, margin=1),
            esc.R2Conv(t_in, a1.in_type, 5, padding=2, bias=False),
            esc.IIDBatchNorm2d(a1.in_type), a1,
            esc.PointwiseAvgPoolAntialiased2D(a1.in_type, sigma=0.66, stride=2),
            esc.R2Conv(a1.in_type, esc.FieldType(gs, 6 * [gs.trivial_repr]), 1))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "weight" in name or "bias" in name:  # not the mask (a parameter in escnn)
                p.add_(0.3 * torch.randn(p.shape, generator=gen))
    model.train()
    model(esc.GeometricTensor(torch.randn(8, 1, 21, 21, generator=gen), t_in))
    model.eval()
    ours = from_escnn(model).eval()
    assert [type(m).__name__ for m in ours] == [
        "DiskMask", "LiftingConv2d", "HarmonicBatchNorm", "FourierNonlinearity",
        "GaussianBlurPool2d", "GroupConv2d"]
    assert ours[1].group.name == "c8" and ours[3].samples == 8
    x = torch.randn(3, 1, 21, 21, generator=gen)
    with torch.no_grad():
        torch.testing.assert_close(ours(x).flatten(1, 2),
                                   model(esc.GeometricTensor(x, t_in)).tensor, rtol=0,
                                   atol=2e-5)


@pytest.mark.parametrize("which", ["so2 tutorial", "d8 to c8"])
def test_converted_model_fine_tunes_and_checkpoints(which, gen):
    """The converted model in a training loop: Adam steps in train mode lower the loss on a
    fixed batch (every parameter gets a finite gradient), and a checkpoint of the fine-tuned
    model loads into a fresh conversion of escnn's model with the same eval outputs."""
    model, _ = _tutorial_model(gen) if which == "so2 tutorial" else _d8_to_c8_model()
    ours = from_escnn(model)
    head = torch.nn.Linear(8, 3)
    net = torch.nn.Sequential(ours, torch.nn.Flatten(1, 2), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten(), head).train()
    x = torch.randn(16, 1, 29, 29, generator=gen)
    y = torch.randint(0, 3, (16,), generator=gen)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(8):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all()
                   for p in net.parameters())
        opt.step()
        losses.append(loss.item())
    assert all(b < a for a, b in zip(losses[:-1], losses[1:], strict=True)), losses
    # the small D8 model starts near chance (norm-ReLU thresholds at 1 on unit-norm fields)
    assert losses[-1] < (0.85 if which == "so2 tutorial" else 0.95) * losses[0], losses
    fresh = from_escnn(model)
    fresh.load_state_dict(ours.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(fresh.eval()(x), ours.eval()(x))


@pytest.mark.parametrize("space", ["d8", "o2"])
def test_restriction_of_irreps_fields_to_the_rotations(space, monkeypatch, gen):
    """escnn's shape D_N -> C_N (O(2) -> SO(2)) on fields of irreps: conv, norm batch norm,
    norm-ReLU, restriction, conv on the restricted fields, norm pool; converted whole, equal.
    The control: without the quarter turns undone after the restriction (escnn's restricted
    tensor keeps its basis) the outputs differ."""
    gs, irreps = _space(space)
    sub_id = (None, 8) if space == "d8" else (None, -1)
    t0 = esc.FieldType(gs, [gs.trivial_repr])
    t1 = _fields(gs, irreps, 3, 2, False)
    with seeded_rng(0):
        res = esc.RestrictionModule(t1, sub_id)
        sub_gs = res.out_type.gspace  # escnn's convs need this very gspace
        t2 = _fields(sub_gs, [sub_gs.fibergroup.irrep(m) for m in range(3)], 2, 2, False)
        model = esc.SequentialModule(
            esc.R2Conv(t0, t1, 5, padding=2), esc.GNormBatchNorm(t1),
            esc.NormNonLinearity(t1, "n_relu"), res,
            esc.R2Conv(res.out_type, t2, 5, padding=2), esc.NormPool(t2)).eval()
    ours = from_escnn(model).eval()
    assert [type(m).__name__ for m in ours[3]] == ["Restrict", "EscnnRestrictedBasis"]
    x = torch.randn(2, 1, 13, 13, generator=gen)
    with torch.no_grad():
        want = model(esc.GeometricTensor(x, t0)).tensor
        torch.testing.assert_close(ours(x), want, rtol=0, atol=2e-5)
        ours[3][1] = torch.nn.Identity()
        assert not torch.allclose(ours(x), want, atol=1e-3)


def _d8_to_c8_model():
    """escnn's published shape in small: D8 fields of irreps (norm batch norm, norm-ReLU),
    restricted to C8, a Fourier-ELU block with IID batch norm, a 1x1 conv to invariants."""
    gs, irreps = _space("d8")
    t_in = esc.FieldType(gs, [gs.trivial_repr])
    t1 = _fields(gs, irreps, 3, 2, False)
    with seeded_rng(0):
        res = esc.RestrictionModule(t1, (None, 8))
        sub = res.out_type.gspace
        act = esc.FourierELU(sub, 4, irreps=sub.fibergroup.bl_irreps(2), type="regular", N=8)
        model = esc.SequentialModule(
            esc.R2Conv(t_in, t1, 5, padding=2), esc.GNormBatchNorm(t1),
            esc.NormNonLinearity(t1), res, esc.R2Conv(res.out_type, act.in_type, 5, padding=2),
            esc.IIDBatchNorm2d(act.in_type), act,
            esc.R2Conv(act.in_type, esc.FieldType(sub, 8 * [sub.trivial_repr]), 1)).eval()
    return model, t_in


def test_escnn_style_d8_to_c8_fourier_model_converts_and_exports(gen):
    """The D8 -> C8 model converts whole, equal to escnn's outputs, and
    ``equilayers.export`` of the conversion too."""
    import equilayers

    model, t_in = _d8_to_c8_model()
    ours = from_escnn(model).eval()
    x = torch.randn(2, 1, 15, 15, generator=gen)
    with torch.no_grad():
        want = model(esc.GeometricTensor(x, t_in)).tensor
        torch.testing.assert_close(ours(x).flatten(1, 2), want, rtol=0, atol=2e-5)
        torch.testing.assert_close(equilayers.export(ours)(x).flatten(1, 2), want, rtol=0,
                                   atol=2e-5)


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


@pytest.mark.parametrize("space", ["so2", "o2", "c8", "d8"])
def test_a_gspace_that_rotates_the_other_way_is_refused(space, monkeypatch):
    """The convention check looks at rotations other than the identity: a gspace whose plane
    action is the inverse rotation (the same matrix at the identity and at the flip) is
    refused; unpatched, the conv converts (the control). escnn's filter, built before the
    patch, cannot show the mismatch."""
    gs, irreps = _space(space)
    with seeded_rng(0):
        theirs = esc.R2Conv(_fields(gs, irreps, 1, 0, False), _fields(gs, irreps, 1, 2, False),
                            5, padding=2)
    from_escnn(theirs)
    action = gs.basespace_action
    monkeypatch.setattr(gs, "_base_action", lambda e: action(e).T)
    with pytest.raises(ValueError, match="acts on the plane or on its irreps differently"):
        from_escnn(theirs)


@pytest.mark.parametrize("space", ["o2", "c8"])
def test_a_bias_on_non_scalar_slots_is_refused(space, monkeypatch):
    """Our harmonic conv holds a bias on the order-0 slot only; an expanded bias with entries
    on higher orders (which no escnn conv builds) is refused, not dropped silently; escnn's
    own bias converts (the control)."""
    gs, irreps = _space(space)
    with seeded_rng(0):
        theirs = esc.R2Conv(_fields(gs, irreps, 1, 1, False), _fields(gs, irreps, 2, 1, False),
                            3, padding=1)
    from_escnn(theirs)
    filt, bias = theirs.expand_parameters()
    broken = bias.detach().clone()
    broken[1] = 0.5  # field 0, order 1
    monkeypatch.setattr(theirs, "expand_parameters", lambda: (filt, broken))
    with pytest.raises(ValueError, match="not zero on the non-scalar slots"):
        from_escnn(theirs)


@pytest.mark.parametrize("space", ["so2", "d8"])
def test_a_basis_filter_that_drops_a_frequency_is_refused(space):
    """escnn's ``basis_filter`` without frequency 1: its filter lies in our default basis,
    but at another parameter count (fine-tuning would train a larger space), so the
    conversion refuses it by name rather than load a larger layer; without the filter it
    converts at escnn's count (the control)."""
    gs, irreps = _space(space)
    t_in, t_out = _fields(gs, irreps, 1, 1, False), _fields(gs, irreps, 1, 2, False)
    with seeded_rng(0):
        theirs = esc.R2Conv(t_in, t_out, 5, padding=2,
                            basis_filter=lambda a: abs(a["irrep:frequency"]) != 1)
        plain = esc.R2Conv(t_in, t_out, 5, padding=2)
    assert from_escnn(plain).weight.numel() == plain.weights.numel()
    with pytest.raises(ValueError, match="a basis_filter that keeps other elements"):
        from_escnn(theirs)


def test_a_restriction_to_fewer_rotations_is_refused():
    """Of irreps fields only D_N -> C_N converts (our Restrict and the quarter turns undone);
    D_8 -> C_4 (escnn's id ``(None, 4)``) re-labels escnn's irreps and is refused by name;
    ``(None, 8)`` converts (the control)."""
    gs, irreps = _space("d8")
    t = _fields(gs, irreps, 2, 1, False)
    from_escnn(esc.RestrictionModule(t, (None, 8)))
    with pytest.raises(ValueError, match="only the restriction of D_N to C_N"):
        from_escnn(esc.RestrictionModule(t, (None, 4)))
