"""Against escnn's R2Conv (optional extra): load its expanded filter into our layers.

Index mapping (checked in ``test_escnn_element_and_slot_order``): escnn's
``rot2dOnR2(4)`` / ``flipRot2dOnR2(4)`` list their elements as ``(flip, k * 90 deg)`` in the
same order as ``equilayers.groups.get("c4"/"d4").elements()`` (rotations first, then the
flipped ones); escnn's rotation by 90 degrees is ``torch.rot90(x, 1, dims=(-2, -1))`` and its
flip (default axis) is ``torch.flip(x, dims=(-1,))``, as ours; and its regular
representation acts by ``(g . f)[h] = f[g^-1 h]`` with slot ``j`` = ``elements[j]``. So the
mapping is the identity: escnn's expanded filter ``(C_out*|G|, C_in*|G|, k, k)`` already has our
layout, and our weight is its identity row block, ``filter.view(C_out, |G|, C_in, |G|, k, k)
[:, 0]`` (``[:, 0]`` of ``(C_out, |G|, C_in, k, k)`` for the lifting conv).

Run with an environment that has escnn (``.venv-peers/bin/python -m pytest
tests/test_escnn_compat.py``); skipped elsewhere.
"""

import pytest
import torch
from _peers import ESCNN_MISSING
from conftest import seeded_rng

escnn = pytest.importorskip("escnn", reason=ESCNN_MISSING)
from escnn import gspaces  # noqa: E402
from escnn import nn as enn  # noqa: E402

from equilayers.groups import act_spatial, get, group_fourier_basis  # noqa: E402
from equilayers.nn import GroupConv2d, LiftingConv2d  # noqa: E402
from equilayers.testing import assert_equivariant  # noqa: E402

SPACES = {"c4": lambda: gspaces.rot2dOnR2(4), "d4": lambda: gspaces.flipRot2dOnR2(4)}


@pytest.mark.parametrize("name", ["c4", "d4"])
def test_escnn_element_and_slot_order(name):
    gs, ours = SPACES[name](), get(name)
    ft = enn.FieldType(gs, [gs.trivial_repr])
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 0, 1], x[0, 0, 1, 1] = 1.0, 2.0  # no symmetry: identifies each element
    elements = list(gs.fibergroup.elements)
    assert len(elements) == ours.order
    for j, e in enumerate(elements):
        g = ours.elements()[j]
        assert torch.equal(enn.GeometricTensor(x, ft).transform(e).tensor, act_spatial(x, g))
        rho = torch.as_tensor(gs.fibergroup.regular_representation(e))
        # (rho f)[i] = f[perm[i]] with perm = our regular permutation
        assert rho.argmax(1).tolist() == ours.regular_permutation(g).tolist()


def _escnn_conv(name, c_in, c_out, k, lifting, **kw):
    gs = SPACES[name]()
    rin = gs.trivial_repr if lifting else gs.regular_repr
    with seeded_rng(0), torch.no_grad():
        conv = enn.R2Conv(enn.FieldType(gs, c_in * [rin]),
                          enn.FieldType(gs, c_out * [gs.regular_repr]), kernel_size=k, **kw)
        conv.weights.normal_()
        if conv.bias is not None:
            conv.bias.normal_()
    return conv.eval()


@pytest.mark.parametrize("name", ["c4", "d4"])
@pytest.mark.parametrize("lifting", [False, True])
@pytest.mark.parametrize("k,kw", [(3, dict(padding=1)), (5, dict(padding=2, stride=2))])
def test_same_outputs_as_escnn(name, lifting, k, kw):
    n, c_in, c_out = get(name).order, 3, 4
    conv = _escnn_conv(name, c_in, c_out, k, lifting, **kw)
    filt, bias = conv.expand_parameters()
    f_in = 1 if lifting else n
    cls = LiftingConv2d if lifting else GroupConv2d
    ours = cls(c_in, c_out, k, group=name, **kw).eval()
    with torch.no_grad():
        per_element = filt.view(c_out, n, c_in, f_in, k, k)[:, 0].reshape(ours.weight.shape)
        if not lifting:  # the group axis of our weight is in the group's Fourier basis
            per_element = torch.einsum("kh,ochxy->ockxy", group_fourier_basis(name).float(),
                                       per_element)
        ours.weight.copy_(per_element)
        bias_fields = bias.view(c_out, n)
        assert torch.allclose(bias_fields, bias_fields[:, :1].expand(-1, n))  # one per field
        ours.bias.copy_(bias_fields[:, 0])
    # escnn's expanded filter lies in our function class, slot for slot
    torch.testing.assert_close(ours._expand(), filt, rtol=1e-6, atol=1e-6)
    x = torch.randn(2, c_in, f_in, 13, 13, generator=torch.Generator().manual_seed(0))
    x = x[:, :, 0] if lifting else x
    with torch.no_grad():
        y_esc = conv(enn.GeometricTensor(x.reshape(2, -1, 13, 13), conv.in_type)).tensor
        y = ours(x)
    torch.testing.assert_close(y.reshape(y_esc.shape), y_esc, rtol=1e-5, atol=1e-5)
    assert_equivariant(ours, x, name)
