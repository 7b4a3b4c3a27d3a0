"""equilayers.interop.from_escnn for escnn's spherical SO(3)/O(3) models: fields of one
representation each (escnn's ``spectral_quotient_representation`` of the sphere, irreps
``0..L`` with no change of basis: our harmonic fields) through ``R3Conv``, and
``QuotientFourierELU`` / ``QuotientFourierPointwise`` -> ``EscnnSphereFourier`` (escnn's own
sampling matrices, times the field signs). A whole spherical model converts with escnn's
outputs; the refusals name the layer.

Needs escnn for the comparisons (run in the peers venv: ``make test-peers``); the module's own
checks run everywhere."""

import pytest
import torch
import torch.nn.functional as F
from _interop_common import _escnn
from conftest import seeded_rng

from equilayers.interop import EscnnSphereFourier, escnn_field_signs, from_escnn
from equilayers.nn import FourierNonlinearity


def _sphere(space):
    _escnn()
    from escnn import gspaces
    from escnn import nn as esc

    gs = gspaces.rot3dOnR3() if space == "so3" else gspaces.flipRot3dOnR3()
    sub = (False, -1) if space == "so3" else ("cone", -1)
    return gs, sub, esc


@pytest.mark.parametrize("space", ["so3", "o3"])
@pytest.mark.parametrize("function", ["elu", "relu"])
def test_quotient_fourier_matches_escnn(space, function, gen):
    gs, sub, esc = _sphere(space)
    G = gs.fibergroup
    with seeded_rng(0):
        if function == "elu":
            m = esc.QuotientFourierELU(gs, sub, 3, G.bl_irreps(2), grid=G.sphere_grid(
                "thomson", N=30))
        else:
            m = esc.QuotientFourierPointwise(gs, sub, 3, G.bl_irreps(2), function="p_relu",
                                             grid=G.sphere_grid("thomson", N=30))
    ours = from_escnn(m)
    assert isinstance(ours, EscnnSphereFourier)
    assert (ours.group.name, ours.max_order, ours.a.shape[0]) == (space, 2, 30)
    assert ours.function is (F.elu if function == "elu" else F.relu)
    x = torch.randn(2, 3, 9, 4, 3, 5, generator=gen)
    signs = escnn_field_signs(2).float().repeat(3).view(1, -1, 1, 1, 1)
    with torch.no_grad():
        want = m(esc.GeometricTensor(x.flatten(1, 2) * signs, m.in_type)).tensor * signs
    torch.testing.assert_close(ours(x).flatten(1, 2), want, rtol=1e-5, atol=1e-5)
    # the control: the signs matter (escnn's matrices as they are give another map)
    raw = EscnnSphereFourier(m.A, m.Ainv, ours.function, space)
    assert not torch.allclose(raw(x).flatten(1, 2), want, atol=1e-3)


@pytest.mark.parametrize("space", ["so3", "o3"])
def test_spherical_model_converts_whole(space, gen):
    """R3Conv from volumes to spherical fields, IID batch norm (its statistics moved by a
    training step), the Fourier ELU on the sphere, an R3Conv
    between spherical fields, escnn's antialiased pool, an R3Conv to fields of orders 0 and 1
    and their norms: escnn's outputs (invariants, so as they are)."""
    gs, sub, esc = _sphere(space)
    G = gs.fibergroup
    t_in = esc.FieldType(gs, [gs.trivial_repr])
    with seeded_rng(0):
        act1 = esc.QuotientFourierELU(gs, sub, 2, G.bl_irreps(2),
                                      grid=G.sphere_grid("thomson", N=30))
        act2 = esc.QuotientFourierELU(gs, sub, 2, G.bl_irreps(2),
                                      grid=G.sphere_grid("thomson", N=30))
        irreps = ([G.irrep(0), G.irrep(1)] if space == "so3"
                  else [G.irrep(0, 0), G.irrep(1, 1)])
        t_sep = esc.FieldType(gs, 3 * irreps)  # each irrep its own field, for the norms
        model = esc.SequentialModule(
            esc.R3Conv(t_in, act1.in_type, 3, padding=1), esc.IIDBatchNorm3d(act1.in_type),
            act1,
            esc.R3Conv(act1.in_type, act2.in_type, 3, padding=1), act2,
            esc.PointwiseAvgPoolAntialiased3D(act2.in_type, sigma=0.6, stride=2),
            esc.R3Conv(act2.in_type, t_sep, 1), esc.NormPool(t_sep)).eval()
    ours = from_escnn(model).eval()
    assert [type(c).__name__ for c in ours] == [
        "SteerableConv3d", "HarmonicBatchNorm", "EscnnSphereFourier", "SteerableConv3d",
        "EscnnSphereFourier", "GaussianBlurPool3d", "SteerableConv3d", "NormPool"]
    assert ours[1].statistics == "field"
    for i in (0, 3, 6):
        assert ours[i].weight.numel() == model[i].weights.numel()
    x = torch.randn(2, 1, 7, 7, 7, generator=gen)
    model.train()
    with torch.no_grad():  # the batch norm's running statistics away from their init
        model(esc.GeometricTensor(3 * x + 1, t_in))
    model.eval()
    ours = from_escnn(model).eval()
    with torch.no_grad():
        want = model(esc.GeometricTensor(x, t_in)).tensor
        got = ours(x)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_refusals_name_the_layer():
    gs, sub, esc = _sphere("so3")
    G = gs.fibergroup
    m = esc.QuotientFourierELU(gs, sub, 2, G.bl_irreps(2), out_irreps=G.bl_irreps(1),
                               grid=G.sphere_grid("thomson", N=20))
    with pytest.raises(ValueError, match="QuotientFourierELU with out_irreps other than its "
                                         "input's has no equivalent"):
        from_escnn(m)
    # escnn's Fourier ELU on SO(3) itself holds each irrep 2l + 1 times: no field of ours
    with pytest.raises(ValueError, match="FourierELU"):
        from_escnn(esc.FourierELU(gs, 2, G.bl_irreps(1), type="thomson", N=20))


def test_module_checks_and_state():
    """Without escnn: the matrices are checked at construction and kept as persistent
    buffers (a state dict round trip, a dtype change); the forward is
    fourier_nonlinearity's with these matrices."""
    ref = FourierNonlinearity("so3", 1)
    a, a_inv = ref.sample_matrix, ref.inverse_matrix
    layer = EscnnSphereFourier(a, a_inv, F.elu, "so3")
    assert set(layer.state_dict()) == {"a", "a_inv"}
    x = torch.randn(2, 3, 4, 3, 3, 3)
    torch.testing.assert_close(layer(x), ref(x))
    twin = EscnnSphereFourier(torch.zeros_like(a), torch.zeros_like(a_inv), F.elu, "so3")
    twin.load_state_dict(layer.state_dict())
    torch.testing.assert_close(twin(x), layer(x))
    assert layer.double()(x.double()).dtype == torch.float64
    assert "samples=" in repr(layer) and "function=elu" in repr(layer)
    with pytest.raises(ValueError, match=r"a must be \(S, \(L \+ 1\)\^2\)"):
        EscnnSphereFourier(a[:, :3], a_inv[:3], F.elu)
    with pytest.raises(ValueError, match="group must be 'so3' or 'o3'; got 'so2'"):
        EscnnSphereFourier(a, a_inv, F.elu, "so2")
    with pytest.raises(TypeError, match="a must be a tensor"):
        EscnnSphereFourier(a.tolist(), a_inv, F.elu)


@pytest.mark.parametrize("space", ["so3", "o3"])
@pytest.mark.parametrize("source", ["spherical", "irreps", "volume"])
def test_r3conv_to_scalar_fields_converts(space, source, gen):
    """escnn's ``R3Conv`` to trivial (scalar) fields, from spherical fields, separate irreps or
    volumes -> a ``SteerableConv3d`` with ``max_order=0`` (fields ``(B, C, 1, D, H, W)``),
    escnn's parameter count and outputs; the control: the input's field signs matter."""
    gs, sub, esc = _sphere(space)
    G = gs.fibergroup
    irreps = ([G.irrep(ell) for ell in range(3)] if space == "so3"
              else [G.irrep(ell % 2, ell) for ell in range(3)])
    if source == "spherical":
        t_in = esc.FieldType(gs, 2 * [G.spectral_quotient_representation(sub, *irreps)])
    elif source == "irreps":
        t_in = esc.FieldType(gs, 2 * irreps)
    else:
        t_in = esc.FieldType(gs, [gs.trivial_repr])
    t_out = esc.FieldType(gs, 3 * [gs.trivial_repr])
    with seeded_rng(0):
        m = esc.R3Conv(t_in, t_out, 3, padding=1).eval()
    ours = from_escnn(m).eval()
    assert type(ours).__name__ == "SteerableConv3d" and ours.max_order == 0
    assert ours.weight.numel() == m.weights.numel()
    x = torch.randn(2, t_in.size, 5, 4, 6, generator=gen)
    fields = source != "volume"
    signs = (escnn_field_signs(2).float().repeat(2).view(1, -1, 1, 1, 1) if fields
             else torch.ones(()))
    with torch.no_grad():
        want = m(esc.GeometricTensor(x * signs, t_in)).tensor
        got = ours(x.unflatten(1, (2, 9)) if fields else x)
    assert got.shape == (2, 3, 1, 5, 4, 6)
    torch.testing.assert_close(got.squeeze(2), want, rtol=1e-5, atol=1e-5)
    if fields:
        with torch.no_grad():
            unsigned = m(esc.GeometricTensor(x, t_in)).tensor
        assert not torch.allclose(got.squeeze(2), unsigned, atol=1e-3)
