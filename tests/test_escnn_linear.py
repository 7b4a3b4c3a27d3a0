"""escnn's ``Linear`` on ``no_base_space`` (equivariant MLPs) against ``GroupLinear``:
``from_escnn`` converts it to the same map (float32 rounding) for regular fields of C_N, D_N,
the cube's and the icosahedron's groups and harmonic fields of C_N, D_N, SO(2), O(2), SO(3),
O(3), the fibers escnn's moved into our slots as for images and volumes; a whole MLP with
escnn's nonlinearities converts too, and escnn's stale eval-mode matrix is refused.

Run with the peers venv (``.venv-peers/bin/python -m pytest tests/test_escnn_linear.py``);
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
from equilayers.nn import GroupLinear  # noqa: E402


def _group(name: str):
    return {"c8": lambda: eg.cyclic_group(8), "d4": lambda: eg.dihedral_group(4),
            "d6": lambda: eg.dihedral_group(6), "o": eg.octa_group, "oh": eg.full_octa_group,
            "ico": eg.ico_group, "so2": lambda: eg.so2_group(4), "o2": lambda: eg.o2_group(4),
            "so3": lambda: eg.so3_group(3), "o3": lambda: eg.o3_group(3)}[name]()


def _field(fg, name: str, order):
    if order is None:
        return [fg.regular_representation]
    if name == "o3":
        return [fg.irrep(m % 2, m) for m in range(order + 1)]
    if name in ("o2", "d4", "d6"):
        return [fg.irrep(0, 0)] + [fg.irrep(1, m) for m in range(1, order + 1)]
    return [fg.irrep(m) for m in range(order + 1)]


def _types(name: str, c_in: int, c_out: int, l_in, l_out, whole: bool = False):
    fg = _group(name)
    gs = gspaces.no_base_space(fg)

    def ftype(c, order):
        reps = _field(fg, name, order)
        if whole and order is not None:
            reps = [eg.directsum(reps)]
        return esc.FieldType(gs, c * reps)
    return ftype(c_in, l_in), ftype(c_out, l_out)


def _ours(x: torch.Tensor, c: int, q: torch.Tensor) -> torch.Tensor:
    """escnn's flat fibers ``(B, C * F)`` in our slots ``(B, C, F)``."""
    return torch.einsum("ij,bcj->bci", q, x.unflatten(1, (c, -1)))


CASES = [("c8", None, None), ("d6", None, None), ("o", None, None), ("oh", None, None),
         ("ico", None, None), ("c8", 3, 2), ("d4", 1, 1), ("so2", 3, 2), ("o2", 2, 2),
         ("so3", 2, 2), ("so3", 3, 1), ("o3", 2, 1)]


@pytest.mark.parametrize("name, l_in, l_out", CASES,
                         ids=[f"{g}-{a}-{b}" for g, a, b in CASES])
@pytest.mark.parametrize("whole", [False, True], ids=["irreps", "one-rep-per-field"])
def test_from_escnn_linear_is_the_same_map(name, l_in, l_out, whole):
    if whole and l_in is None:
        pytest.skip("regular fields have one form")
    with seeded_rng(0):
        t_in, t_out = _types(name, 3, 2, l_in, l_out, whole)
        theirs = esc.Linear(t_in, t_out)
        with torch.no_grad():
            theirs.bias.normal_() if theirs.bias is not None else None
        x = torch.randn(5, t_in.size)
    ours = from_escnn(theirs)
    assert isinstance(ours, GroupLinear)
    assert (ours.in_features, ours.out_features) == (3, 2)
    from equilayers._interop_linear import _fields

    q_in, q_out = _fields(t_in)[3].float(), _fields(t_out)[3].float()
    with torch.no_grad():
        want = theirs(esc.GeometricTensor(x, t_in)).tensor
        got = ours(_ours(x, 3, q_in))
    ref = _ours(want, 2, q_out)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5 * float(ref.abs().max()))
    # the same parameter count as escnn's (both span the commutant)
    assert sum(p.numel() for p in ours.parameters()) == sum(
        p.numel() for p in theirs.parameters())


def test_the_comparison_can_fail():
    """Control: redrawn weights no longer give escnn's output."""
    t_in, t_out = _types("d6", 2, 2, None, None)
    theirs = esc.Linear(t_in, t_out)
    ours = from_escnn(theirs)
    with torch.no_grad():
        ours.conv.weight.normal_()
    x = torch.randn(4, t_in.size)
    with torch.no_grad():
        want = theirs(esc.GeometricTensor(x, t_in)).tensor.unflatten(1, (2, -1))
        assert (ours(x.unflatten(1, (2, -1))) - want).abs().max() > 1e-2


def test_an_escnn_mlp_converts_whole():
    """An escnn MLP on regular O fields (Linear, ReLU, Linear) converts to ours, the same
    outputs in eval mode."""
    t_in, t_mid = _types("o", 2, 4, None, None)
    _, t_out = _types("o", 4, 3, None, None)
    mlp = esc.SequentialModule(esc.Linear(t_in, t_mid), esc.ReLU(t_mid),
                               esc.Linear(t_mid, t_out)).eval()
    ours = from_escnn(mlp).eval()
    from equilayers._interop_linear import _fields

    q_in, q_out = _fields(t_in)[3].float(), _fields(t_out)[3].float()
    x = torch.randn(6, t_in.size)
    with torch.no_grad():
        want = _ours(mlp(esc.GeometricTensor(x, t_in)).tensor, 3, q_out)
        got = ours(_ours(x, 2, q_in))
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_a_stale_eval_matrix_is_refused():
    """escnn's eval mode multiplies by the matrix it cached at ``.eval()``: weights changed
    after it make escnn's outputs stale; converting them would compute another function."""
    t_in, t_out = _types("c8", 2, 2, None, None)
    m = esc.Linear(t_in, t_out).eval()
    with torch.no_grad():
        m.weights.add_(1.0)
    with pytest.raises(ValueError, match="cached at .eval"):
        from_escnn(m)


def test_refusals_name_the_fields():
    t_reg, _ = _types("c8", 2, 2, None, None)
    _, t_harm = _types("c8", 2, 2, 1, 1)
    with pytest.raises(ValueError, match="regular to harmonic"):
        from_escnn(esc.Linear(t_reg, t_harm))
    gs = gspaces.no_base_space(eg.so3_group(2))
    vectors = esc.FieldType(gs, 2 * [gs.irrep(1)])  # no order 0: not our harmonic field
    with pytest.raises(ValueError, match="orders 0..L"):
        from_escnn(esc.Linear(vectors, vectors))
