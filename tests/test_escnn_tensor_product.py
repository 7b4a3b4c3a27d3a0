"""escnn's ``TensorProductModule`` against ``TensorProductNonlinearity``: ``from_escnn``
converts it to the same map (float32 rounding) on SO(3)/O(3) fields of volumes and on
SO(2)/O(2)/C_N/D_N fields of images, with fewer weights (escnn's basis spans the whole square
``x x^T``, ours its symmetric part, the only part a square has); and our layer reaches every
map escnn's does.

Run with the peers venv (``.venv-peers/bin/python -m pytest tests/test_escnn_tensor_product.py``);
skipped where escnn is missing.
"""

import pytest
import torch
from _peers import ESCNN_MISSING
from conftest import seeded_rng

escnn = pytest.importorskip("escnn", reason=ESCNN_MISSING)
from escnn import group as eg  # noqa: E402
from escnn import gspaces  # noqa: E402
from escnn import nn as esc  # noqa: E402

from equilayers.interop import from_escnn  # noqa: E402
from equilayers.nn import TensorProductNonlinearity  # noqa: E402


def _space(group: str, order: int):
    top = 4 * order + 2  # (escnn builds the tensor products of the irreps up to it)
    return {"so3": lambda: gspaces.rot3dOnR3(maximum_frequency=top),
            "o3": lambda: gspaces.flipRot3dOnR3(maximum_frequency=top),
            "so2": lambda: gspaces.rot2dOnR2(N=-1, maximum_frequency=top),
            "o2": lambda: gspaces.flipRot2dOnR2(N=-1, maximum_frequency=top),
            "c8": lambda: gspaces.rot2dOnR2(8),
            "d6": lambda: gspaces.flipRot2dOnR2(6)}[group]()


def _field(gs, group: str, order: int):
    fg = gs.fibergroup
    flips = group in ("o2", "d6")
    if group == "o3":
        irreps = [fg.irrep(m % 2, m) for m in range(order + 1)]
    elif flips:
        irreps = [fg.irrep(0, 0)] + [fg.irrep(1, m) for m in range(1, order + 1)]
    else:
        irreps = [fg.irrep(m) for m in range(order + 1)]
    return eg.directsum(irreps)


# invariant outputs (out order 0) on SO(3)/O(3): escnn's scalar fields, our order-0 fields
CASES = [("so3", 1, 1), ("so3", 2, 2), ("so3", 2, 1), ("o3", 2, 2), ("so3", 2, 0),
         ("o3", 1, 0), ("so2", 2, 2),
         ("so2", 1, 2), ("o2", 2, 2), ("c8", 2, 3), ("d6", 2, 2)]


@pytest.mark.parametrize("group, m_in, m_out", CASES, ids=[f"{g}-{a}-{b}" for g, a, b in CASES])
def test_from_escnn_tensor_product_is_the_same_map(group, m_in, m_out):
    with seeded_rng(0):
        gs = _space(group, max(m_in, m_out))
        c = 3
        t_in = esc.FieldType(gs, c * [_field(gs, group, m_in)])
        t_out = esc.FieldType(gs, c * [_field(gs, group, m_out)])
        theirs = esc.TensorProductModule(t_in, t_out)
        x = torch.randn(2, t_in.size, *([3, 3, 3] if gs.dimensionality == 3 else [4, 4]))
    ours = from_escnn(theirs)
    assert isinstance(ours, TensorProductNonlinearity)
    assert (ours.group.name, ours.max_order, ours.out_max_order) == (group, m_in, m_out)
    # escnn's weights span the square, ours its symmetric part: never more weights
    assert ours.weight.shape[1] <= theirs.weights.numel() // c
    with torch.no_grad():
        want = theirs(esc.GeometricTensor(x, t_in)).tensor
    # the tensors in our slots: ours = Q theirs per field (escnn_field_signs / matrix)
    from equilayers._interop_tensor import _fields

    _, _, _, q_in = _fields(t_in, "test")
    _, _, _, q_out = _fields(t_out, "test")
    xo = torch.einsum("ij,bcj...->bci...", q_in.float(), x.unflatten(1, (c, -1)))
    with torch.no_grad():
        got = ours(xo)
    ref = torch.einsum("ij,bcj...->bci...", q_out.float(), want.unflatten(1, (c, -1)))
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4 * float(ref.abs().max()))


def test_the_comparison_can_fail():
    """Control: a converted layer with its weights redrawn no longer gives escnn's output."""
    gs = _space("so3", 1)
    t = esc.FieldType(gs, 2 * [_field(gs, "so3", 1)])
    theirs = esc.TensorProductModule(t, t)
    ours = from_escnn(theirs)
    with torch.no_grad():
        ours.weight.normal_()
    x = torch.randn(2, t.size, 3, 3, 3)
    want = theirs(esc.GeometricTensor(x, t)).tensor.unflatten(1, (2, -1))
    from equilayers._interop_tensor import _fields

    q = _fields(t, "test")[3].float()
    got = ours(torch.einsum("ij,bcj...->bci...", q, x.unflatten(1, (2, -1))))
    assert (got - torch.einsum("ij,bcj...->bci...", q, want)).abs().max() > 1e-2


def test_from_escnn_refuses_other_fields():
    """Separate irreps per field (not one representation each) have no field of ours."""
    gs = _space("so3", 1)
    fg = gs.fibergroup
    t = esc.FieldType(gs, 2 * [fg.irrep(1)])
    with pytest.raises(ValueError, match="TensorProductModule"):
        from_escnn(esc.TensorProductModule(t, t))


def test_a_stale_eval_matrix_is_refused():
    """escnn's eval mode maps by the matrix it cached at ``.eval()``: weights changed after
    it make escnn's outputs stale, and converting them would compute another function."""
    gs = _space("so3", 1)
    t = esc.FieldType(gs, 2 * [_field(gs, "so3", 1)])
    m = esc.TensorProductModule(t, t).eval()
    with torch.no_grad():
        m.weights.add_(1.0)
    with pytest.raises(ValueError, match="cached at .eval"):
        from_escnn(m)
    m.train().eval()  # rebuilt from the weights: converts
    assert isinstance(from_escnn(m), TensorProductNonlinearity)
