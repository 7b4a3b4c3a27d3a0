"""``check_grid``'s ``type-mismatch`` finding: a layer fed a field of another type than it is
built for, with a fiber of the same size, so that the model runs. Each finding agrees with the
measured equivariance error (float64): large where found, exact for the controls beside it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from equilayers import check_grid
from equilayers.nn import (
    CosetPool,
    GroupConv2d,
    GroupConv3d,
    GroupPool,
    InvariantHead,
    LiftingConv2d,
    LiftingConv3d,
    NormPool,
    RegularToHarmonic,
    Restrict,
)
from equilayers.testing import equivariance_error


def _lift(group, **kw):
    return LiftingConv2d(1, 2, 3, padding=1, group=group, **kw)


# (model, group checked, the layer found or None); each model ends in an invariant pool
_CASES = {
    "p4 into d2": (lambda: [_lift("p4"), nn.ReLU(), GroupConv2d(2, 2, 3, padding=1,
                                                                group="d2"), GroupPool()],
                   "c2", "2"),
    "p4 into p4 (control)": (lambda: [_lift("p4"), nn.ReLU(), GroupConv2d(2, 2, 3, padding=1,
                                                                          group="p4"),
                                      GroupPool()], "c2", None),
    "d4 into c8": (lambda: [_lift("d4"), GroupConv2d(2, 2, 3, padding=1, group="c8"),
                            GroupPool()], "c4", "1"),
    "c8 cosets of c2 into c4": (lambda: [_lift("c8"), CosetPool("c8", "c2"),
                                         GroupConv2d(2, 2, 3, padding=1, group="c4"),
                                         GroupPool()], "c4", "2"),
    "d4 cosets of d1 into c4 (control)": (lambda: [_lift("d4"), CosetPool("d4", "d1"),
                                                   GroupConv2d(2, 2, 3, padding=1,
                                                               group="c4"), GroupPool()],
                                          "c4", None),
    "harmonic into GroupPool": (lambda: [_lift("so2", max_order=2), GroupPool()], "c4", "1"),
    "harmonic into NormPool (control)": (lambda: [_lift("so2", max_order=2), NormPool()],
                                         "c4", None),
    "c8 regular to so2 harmonic (control)": (lambda: [
        _lift("c8"), RegularToHarmonic("c8", 2),
        GroupConv2d(2, 2, 3, padding=1, group="so2", max_order=2), NormPool()], "c4", None),
}


@pytest.mark.parametrize("name", list(_CASES))
def test_a_layer_fed_another_type_is_found_where_the_error_is(name, gen):
    make, group, layer = _CASES[name]
    net = nn.Sequential(*make()).double()
    x = torch.randn(2, 1, 9, 9, generator=gen, dtype=torch.float64)
    err = equivariance_error(net, x, group)
    found = check_grid(net, (1, 1, 9, 9), group=group, shifts=False)
    if layer is None:
        assert found == [] and err < 1e-10, (found, err)
        return
    assert [(f.layer, f.problem, f.breaks) for f in found] == [(layer, "type-mismatch",
                                                                "group")], found
    assert err > 1e-2  # the finding is a measured break
    assert "it is fed FieldType(" in found[0].message and "convert the field" in found[0].fix


def test_volumes_get_the_finding_too(gen):
    net = nn.Sequential(LiftingConv3d(1, 1, 3, padding=1, group="o"),
                        GroupConv3d(1, 1, 3, padding=1, group="th"), GroupPool()).double()
    x = torch.randn(1, 1, 5, 5, 5, generator=gen, dtype=torch.float64)
    assert equivariance_error(net, x, "t") > 1e-2
    found = check_grid(net, (1, 1, 5, 5, 5), group="t", shifts=False)
    assert [(f.layer, f.problem) for f in found] == [("1", "type-mismatch")], found


def test_an_invariant_head_after_a_coset_pool_is_not_a_group_mismatch(gen):
    """The head's max over the slots is invariant under any permutation of them: fed the
    cosets of d4 by d1, it is d4-invariant though built for c4 (it was a group-mismatch); fed
    a c4 field restricted from d4, it is not (still found)."""
    x = torch.randn(2, 1, 9, 9, generator=gen, dtype=torch.float64)
    ok = nn.Sequential(_lift("d4"), CosetPool("d4", "d1"),
                       InvariantHead(2, 3, group="c4")).double()
    assert equivariance_error(ok, x, "d4", out_rep="invariant") < 1e-10
    assert check_grid(ok, (1, 1, 9, 9), group="d4", shifts=False) == []
    bad = nn.Sequential(_lift("d4"), Restrict("d4", "c4"),
                        InvariantHead(4, 3, group="c4")).double()
    assert equivariance_error(bad, x, "d4", out_rep="invariant") > 1e-2
    found = check_grid(bad, (1, 1, 9, 9), group="d4", shifts=False)
    assert [(f.layer, f.problem) for f in found] == [("1", "group-mismatch"),
                                                      ("2", "group-mismatch")]
    assert "it is not d4-equivariant" in found[0].message  # a Restrict has no weights
    assert "its weights are not d4-equivariant" in found[1].message


def test_an_mlp_on_fibers_alone_gets_the_mismatches(gen):
    """A model on fibers with no spatial dims returned [] before any check (no grid): a c4
    GroupLinear into a d2 one, 1.83 off under c2, passed. Its layers' groups and types are
    checked as on images; the control: a c4 MLP is finding-free and exact."""
    from equilayers.groups import FieldType
    from equilayers.nn import GroupLinear

    x = torch.randn(8, 3, 4, generator=gen, dtype=torch.float64)
    ok = nn.Sequential(GroupLinear(3, 4, group="c4"), GroupLinear(4, 2, group="c4")).double()
    assert check_grid(ok, (8, 3, 4), group="c2") == []
    assert equivariance_error(ok, x, "c2") < 1e-12
    bad = nn.Sequential(GroupLinear(3, 4, group="c4"), GroupLinear(4, 2, group="d2")).double()
    found = check_grid(bad, (8, 3, 4), group="c2")
    assert [(f.layer, f.problem) for f in found] == [("1", "type-mismatch")], found
    assert equivariance_error(bad, x, "c2", in_rep=FieldType.regular("c4", spatial_dims=0),
                              out_rep=FieldType.regular("d2", spatial_dims=0)) > 0.1


# (orders of the so2 field, the activation, the group checked, found?): torch's activations
# map each coefficient alone, which commutes with permuting them (order 0, regular fields) and,
# for odd maps, with negating them (c2 and the quarter turns on order 1), not otherwise
_POINTWISE = {
    "order 1 into ReLU under c4": (1, nn.ReLU, "c4", True),
    "order 1 into ReLU under c2": (1, nn.ReLU, "c2", True),
    "order 1 into Tanh under c4 (control: a signed permutation)": (1, nn.Tanh, "c4", False),
    "order 2 into Tanh under c4": (2, nn.Tanh, "c4", False),
    "order 1 into ELU under c2": (1, nn.ELU, "c2", True),
    "order 0 into ReLU (control)": (0, nn.ReLU, "c4", False),
}


@pytest.mark.parametrize("name", list(_POINTWISE))
def test_a_pointwise_activation_on_harmonic_fields_is_found_where_the_error_is(name, gen):
    """A pointwise ReLU on order-1 fields (the classic slip porting Harmonic Networks) passed
    check_grid with [] at rot90 invariance error 0.92; the finding is where the measured
    error is, and the controls beside it are exact."""
    order, act, group, broken = _POINTWISE[name]
    net = nn.Sequential(_lift("so2", max_order=order), act(), NormPool()).double()
    x = torch.randn(2, 1, 9, 9, generator=gen, dtype=torch.float64)
    err = equivariance_error(net, x, group)
    found = check_grid(net, (1, 1, 9, 9), group=group, shifts=False)
    if not broken:
        assert found == [] and err < 1e-10, (found, err)
        return
    assert [(f.layer, f.problem, f.breaks) for f in found] == [("1", "type-mismatch",
                                                                "group")], found
    assert err > 1e-2
    assert "maps each entry of FieldType(so2, harmonic" in found[0].message
    assert "NormNonlinearity" in found[0].fix


def test_a_pointwise_activation_on_regular_fields_is_not_found(gen):
    net = nn.Sequential(_lift("d4"), nn.ReLU(), nn.Sigmoid(), GroupPool()).double()
    x = torch.randn(2, 1, 9, 9, generator=gen, dtype=torch.float64)
    assert equivariance_error(net, x, "d4") < 1e-10
    assert check_grid(net, (1, 1, 9, 9), group="d4", shifts=False) == []
