"""``from_escnn`` on SO(2)/O(2) and C_N/D_N fields: what it refuses, by name (fields and layers
with no equivalent, other grids, the order N/2, restrictions other than D_N -> C_N, a bias on
non-scalar slots, a basis_filter that drops a frequency), and the convention checks that must
fail without the field matrix or on a gspace that rotates the other way; each with the
conversion that goes through as its control.

Run with the peers venv (``.venv-peers/bin/python -m pytest tests/test_escnn_so2_refusals.py``);
skipped where escnn is missing.
"""

import pytest
import torch
from _peers import ESCNN_MISSING
from conftest import seeded_rng

escnn = pytest.importorskip("escnn", reason=ESCNN_MISSING)
from _escnn_so2_common import _fields, _space  # noqa: E402
from escnn import gspaces  # noqa: E402
from escnn import nn as esc  # noqa: E402

from equilayers import _interop_so2 as S2  # noqa: E402
from equilayers.interop import from_escnn  # noqa: E402


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


def test_unsupported_fields_and_layers_are_refused_by_name():
    gs, irreps = _space("so2")
    whole = _fields(gs, irreps, 2, 2, True)
    triv = esc.FieldType(gs, [gs.trivial_repr])
    with pytest.raises(ValueError, match=r"must repeat \[irrep_0, irrep_1, irrep_2\]"):
        from_escnn(esc.R2Conv(triv, esc.FieldType(gs, [irreps[0], irreps[2], irreps[1]]), 3))
    # (IIDBatchNorm2d on separate irreps converts: tests/test_escnn_iid_batch_norm.py)
    with pytest.raises(ValueError, match=r"IIDBatchNorm2d on .*must repeat"):
        from_escnn(esc.IIDBatchNorm2d(esc.FieldType(gs, [irreps[0], irreps[2], irreps[1]])))
    with pytest.raises(ValueError, match="NormNonLinearity .*as separate irreps"):
        from_escnn(esc.NormNonLinearity(whole, "n_relu"))
    with pytest.raises(ValueError, match="other grids have no equivalent"):
        from_escnn(esc.FourierELU(gs, 2, gs.fibergroup.bl_irreps(2), type="rand", N=12))
    o2, o2_irreps = _space("o2")
    with pytest.raises(ValueError, match="only SO.2. and C_N fields map to FourierNonlinear"):
        from_escnn(esc.FourierELU(o2, 2, o2.fibergroup.bl_irreps(2), N=8))
    act = esc.FourierELU(o2, 2, o2.fibergroup.bl_irreps(2), N=8)
    # the conv into those fields: it named irreps of orders up to 5 (read off the field size)
    with pytest.raises(ValueError, match="a field holds an irrep more than once"):
        from_escnn(esc.R2Conv(esc.FieldType(o2, [o2.trivial_repr]), act.in_type, 3))


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
