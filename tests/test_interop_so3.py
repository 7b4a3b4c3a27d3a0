"""equilayers.interop.from_escnn on SO(3)/O(3) fields of volumes: R3Conv stacks with escnn's
field signs, norm nonlinearities and batch norms with escnn's parametrization, escnn's basis
settings, and clear errors for what is unsupported.

Needs escnn (optional extra; run with an environment that has it, e.g.
``.venv-peers/bin/python -m pytest tests/test_interop_so3.py``); skipped elsewhere.
"""

import pytest
import torch
from _interop_common import _escnn, _so3_space
from conftest import seeded_rng

from equilayers.interop import from_escnn


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


def _documented_sign_formulas() -> list[str]:
    """The formula ``theirs = ours.flatten(1, 2) * ...`` as docs/escnn.md's SO(3) item and
    ``from_escnn``'s docstring give it (one each; inline code, whitespace joined)."""
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "escnn.md").read_text()
    found = []
    for text, quote in ((doc, "`"), (from_escnn.__doc__ or "", "``")):
        hits = re.findall(rf"{quote}(theirs = ours\.flatten\(1, 2\) \*[^`]*){quote}",
                          " ".join(text.split()))
        assert len(hits) == 1, (quote, hits)
        found += hits
    return found


def test_documented_sign_formula_gives_escnns_tensor(gen):
    """The formula the docs and ``from_escnn``'s docstring give for escnn's SO(3) fields, run
    as code on a converted ``R3Conv``'s output (``C = 2`` fields of orders 0..1 on an 8^3
    volume: the width equals ``C (L + 1)^2``, where signs that broadcast over the last axis
    run and are wrong), gives escnn's tensor in its dtype. The formula given before (``ours
    .flatten(1, 2) * escnn_field_signs(L).repeat(C)``) did not (the control)."""
    _escnn()
    from escnn import nn as esc

    from equilayers.interop import escnn_field_signs

    gs, irreps = _so3_space("so3")
    t_in = esc.FieldType(gs, [gs.trivial_repr])
    with seeded_rng(0):
        conv = esc.R3Conv(t_in, esc.FieldType(gs, 2 * irreps[:2]), 3, padding=1).eval()
    x = torch.randn(1, 1, 8, 8, 8, generator=gen)
    with torch.no_grad():
        ours, want = from_escnn(conv)(x), conv(esc.GeometricTensor(x, t_in)).tensor
    assert ours.shape == (1, 2, 4, 8, 8, 8)
    names = {"ours": ours, "escnn_field_signs": escnn_field_signs, "L": 1, "C": 2,
             "s": escnn_field_signs(1)}
    for formula in _documented_sign_formulas():
        space: dict = dict(names)
        exec(formula, space)
        assert space["theirs"].dtype == torch.float32, formula
        torch.testing.assert_close(space["theirs"], want, rtol=0, atol=1e-5, msg=formula)
    before: dict = dict(names)
    exec("theirs = ours.flatten(1, 2) * escnn_field_signs(L).repeat(C)", before)
    assert not torch.allclose(before["theirs"].float(), want, atol=1e-2)
