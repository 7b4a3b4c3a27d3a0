"""from_escnn on escnn's icosahedral gspace (``icoOnR3``, our ``"ico"``): a whole model gives
escnn's outputs after the slot permutation, with escnn's parameter count in our turned
harmonic basis.

Needs escnn (the peers venv, ``make test-peers``); skipped elsewhere. escnn builds its
icosahedral basis slowly (seconds per layer, cached on disk), so one model serves the checks.
"""

import pytest
import torch
from _interop_common import _escnn

from equilayers.groups import act, get
from equilayers.interop import escnn_slot_order, from_escnn


@pytest.fixture(scope="module")
def escnn_model():
    _escnn()
    from escnn import gspaces
    from escnn import nn as esc

    gs = gspaces.icoOnR3()
    t_in = esc.FieldType(gs, [gs.trivial_repr])
    t_mid = esc.FieldType(gs, 2 * [gs.regular_repr])
    body = esc.SequentialModule(esc.R3Conv(t_in, t_mid, 3, padding=1),
                                esc.InnerBatchNorm(t_mid), esc.ELU(t_mid),
                                esc.R3Conv(t_mid, t_mid, 3, padding=1))
    x = torch.randn(2, 1, 5, 5, 5, generator=torch.Generator().manual_seed(0))
    body.train()
    with torch.no_grad():
        body(esc.GeometricTensor(x, t_in))  # running statistics away from their init
    return gs, body.eval(), t_in, t_mid, x


def test_icosahedral_model_matches_escnn_with_its_slot_order(escnn_model):
    """Lifting R3Conv, InnerBatchNorm, ELU, regular R3Conv and GroupPooling on ``icoOnR3``:
    escnn's regular output after :func:`escnn_slot_order`'s permutation, its pooled output as
    it is; our layers have escnn's parameter count. The control: escnn's own slot order does
    not match."""
    from escnn import nn as esc

    gs, body, t_in, t_mid, x = escnn_model
    ours = from_escnn(body).eval()
    assert [type(m).__name__ for m in ours] == ["LiftingConv3d", "GroupBatchNorm3d", "ELU",
                                                 "GroupConv3d"]
    for i in (0, 3):
        assert ours[i].group.name == "ico" and ours[i].basis == "harmonic"
        assert ours[i].weight.numel() == body[i].weights.numel()
    perm = escnn_slot_order(gs)
    assert sorted(perm.tolist()) == list(range(60))
    with torch.no_grad():
        theirs = body(esc.GeometricTensor(x, t_in)).tensor.view(2, 2, 60, 5, 5, 5)
        y = ours(x)
    torch.testing.assert_close(y, theirs[:, :, perm], rtol=0, atol=1e-5)
    assert not torch.allclose(y, theirs, atol=1e-2)  # escnn's slot order is not ours
    pooled = esc.SequentialModule(body, esc.GroupPooling(t_mid)).eval()
    with torch.no_grad():
        torch.testing.assert_close(from_escnn(pooled).eval()(x),
                                   pooled(esc.GeometricTensor(x, t_in)).tensor,
                                   rtol=0, atol=1e-5)


def test_converted_model_is_exact_on_the_grid_subgroup(escnn_model):
    """The converted model is exactly equivariant under the 12 grid elements of ``"ico"``
    and approximately under the others (interpolated): the control."""
    _, body, *_, x = escnn_model
    ours = from_escnn(body).eval().double()
    ico = get("ico")
    v = x.double()
    with torch.no_grad():
        y = ours(v)
        worst = max(float((ours(act(v, g)) - act(y, g, "regular")).abs().max())
                    for g in ico.grid_elements())
        off = float((ours(act(v, ico.elements()[30])) - act(y, ico.elements()[30],
                                                             "regular")).abs().max())
    assert worst < 1e-10 < 1e-2 < off


def test_transposed_icosahedral_conv_matches_escnn(escnn_model):
    """``R3ConvTransposed`` on ``icoOnR3`` regular fields -> ``GroupConvTranspose3d(group=
    "ico")``: escnn's output after the slot permutation (stride 2: 5 -> 9)."""
    from escnn import nn as esc

    gs, _, _, t_mid, _ = escnn_model
    up = esc.R3ConvTransposed(t_mid, t_mid, 3, padding=1, stride=2).eval()
    ours = from_escnn(up).eval()
    assert type(ours).__name__ == "GroupConvTranspose3d" and ours.group.name == "ico"
    perm = escnn_slot_order(gs)
    x = torch.randn(1, 2, 60, 5, 5, 5, generator=torch.Generator().manual_seed(1))
    theirs_in = x[:, :, perm.argsort()].flatten(1, 2)
    with torch.no_grad():
        theirs = up(esc.GeometricTensor(theirs_in, t_mid)).tensor.view(1, 2, 60, 9, 9, 9)
        torch.testing.assert_close(ours(x), theirs[:, :, perm], rtol=0, atol=1e-5)


def test_full_icosahedral_lifting_model_matches_escnn():
    """``fullIcoOnR3`` (our ``"ih"``, 120 slots): a lifting R3Conv, InnerBatchNorm, ELU and
    GroupPooling give escnn's outputs (escnn builds its regular -> regular ``fullIcoOnR3``
    conv in about four minutes, so the group conv is checked on ``"ico"`` above and ours
    against the group in tests/test_ico.py)."""
    _escnn()
    from escnn import gspaces
    from escnn import nn as esc

    gs = gspaces.fullIcoOnR3()
    t_in, t_reg = (esc.FieldType(gs, [gs.trivial_repr]), esc.FieldType(gs, [gs.regular_repr]))
    body = esc.SequentialModule(esc.R3Conv(t_in, t_reg, 3, padding=1), esc.InnerBatchNorm(t_reg),
                                esc.ELU(t_reg)).eval()
    ours = from_escnn(body).eval()
    assert ours[0].group.name == "ih" and ours[0].weight.numel() == body[0].weights.numel()
    x = torch.randn(2, 1, 5, 5, 5, generator=torch.Generator().manual_seed(2))
    perm = escnn_slot_order(gs)
    with torch.no_grad():
        theirs = body(esc.GeometricTensor(x, t_in)).tensor.view(2, 1, 120, 5, 5, 5)
        torch.testing.assert_close(ours(x), theirs[:, :, perm], rtol=0, atol=1e-5)
        pooled = esc.SequentialModule(body, esc.GroupPooling(t_reg)).eval()
        torch.testing.assert_close(from_escnn(pooled).eval()(x),
                                   pooled(esc.GeometricTensor(x, t_in)).tensor, rtol=0,
                                   atol=1e-5)
