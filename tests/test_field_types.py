"""FieldType: a tensor's field type as data (groups/_fields.py), every module's
in_type/out_type against the tensors it takes and returns, and the harness acting with the
declared types instead of guessing from the rank (with negative controls)."""

from __future__ import annotations

import pickle

import pytest
import torch
from _zoo import ZOO, build
from torch import nn

import equilayers
from equilayers import nn as enn
from equilayers.groups import FieldType, act, get
from equilayers.testing import equivariance_error, equivariance_report


# --- construction and validation -----------------------------------------------------------
@pytest.mark.parametrize("group,rep,order,fiber", [
    ("p4", "regular", None, 4), ("p4m", "regular", None, 8), ("c8", "regular", None, 8),
    ("d6", "regular", None, 12), ("c1", "regular", None, 1),
    ("p4", "trivial", None, 1), ("so2", "trivial", None, 1), ("o2", "invariant", None, 1),
    ("so2", "harmonic", 0, 1), ("so2", "harmonic", 3, 7), ("o2", "harmonic", 2, 5),
    ("c8", "harmonic", 2, 5), ("d4", "harmonic", 1, 3),
    ("d4", "quotient:d1", None, 4), ("d4", "quotient:c4", None, 2), ("c8", "quotient:c2", None, 4),
    ("d8", "quotient:d8", None, 1), ("c4", "quotient:c1", None, 4),
    (None, "regular", None, None), (None, "harmonic", None, None), (None, "harmonic", 2, 5),
])
def test_fiber_size(group, rep, order, fiber):
    ft = FieldType(group, rep, order)
    assert ft.fiber_size == fiber
    assert ft.has_fiber == (rep not in ("trivial", "invariant"))
    assert ft.tensor_ndim == (2 if rep == "invariant" else 4 + ft.has_fiber)
    if fiber is not None and group is not None and rep != "invariant":
        shape = (2, 3, fiber, 5, 5) if ft.has_fiber else (2, 3, 5, 5)
        ft.check(torch.zeros(shape))


@pytest.mark.parametrize("group", ["c1", "d1", "c4", "d4", "c8", None])
def test_quotient_by_the_trivial_subgroup_is_regular(gen, group):
    """The cosets of {e} are the elements and the two actions agree slot for slot, so
    "quotient:c1" is stored as "regular": the types are equal, hash and print alike (they
    compared unequal, FieldType(d4, quotient:c1) != FieldType(d4, regular)). Controls: a
    proper quotient stays its own type, and the quotient by the whole group keeps its
    one-slot fiber axis (not "trivial", whose tensors have none)."""
    ft, regular = FieldType(group, "quotient:c1"), FieldType(group, "regular")
    assert ft == regular and hash(ft) == hash(regular) and repr(ft) == repr(regular)
    assert ft.rep == "regular" and pickle.loads(pickle.dumps(ft)) == regular
    if group is None:
        return
    assert FieldType.quotient(group, "c1") == regular
    grp = get(group)
    x = torch.randn(2, 3, int(grp.order), 5, 5, generator=gen)
    for g in grp.elements():
        assert torch.equal(ft.act(g, x), regular.act(g, x))
        assert torch.equal(act(x, g, "quotient:c1"), act(x, g, "regular"))
    if grp.order == 1:  # c1: the whole group is the trivial one
        return
    whole = FieldType(group, f"quotient:{grp.name}")
    assert whole.rep == f"quotient:{grp.name}" and whole.tensor_ndim == 5
    if grp.order > 2:
        sub = "c2" if group.startswith("c") else "d1"
        assert FieldType(group, f"quotient:{sub}") != regular


def test_constructors_equality_hash_repr_pickle():
    assert FieldType.regular("p4m") == FieldType("d4", "regular") == FieldType(get("d4"), "regular")
    assert FieldType.harmonic("so2", 2) != FieldType.harmonic("so2", 3)
    assert FieldType.trivial("p4") != FieldType.trivial("p4", spatial_dims=3)
    assert FieldType.quotient("d4", "d1") == FieldType("d4", "quotient:d1")
    assert len({FieldType.regular("p4"), FieldType("c4", "regular"), FieldType.regular()}) == 2
    assert repr(FieldType.harmonic("so2", 2)) == "FieldType(so2, harmonic, max_order=2)"
    assert repr(FieldType.regular()) == "FieldType(any group, regular)"
    assert repr(FieldType.trivial("c4", spatial_dims=3)) == "FieldType(c4, trivial, spatial_dims=3)"
    assert FieldType.invariant("p4").spatial_dims == 0
    assert FieldType.trivial("p4", spatial_dims=3).tensor_ndim == 5
    assert FieldType.regular("p4", spatial_dims=3).tensor_ndim == 6
    ft = FieldType.harmonic("o2", 2)
    assert pickle.loads(pickle.dumps(ft)) == ft
    with pytest.raises(AttributeError):
        ft.rep = "regular"  # frozen
    assert FieldType.regular().bind("p4") == FieldType.regular("p4")
    assert FieldType.harmonic("o2", 2).bind("c4") == FieldType.harmonic("o2", 2)  # a subgroup


def test_binding_a_group_free_type_takes_the_groups_spatial_dims():
    """A type of no group defaults to 2 spatial dims; bound to a cube group it acts on
    volumes, so it takes the group's 3 (a regular type bound to 'o' is 6-D, as documented),
    and the bound type checks and moves a 6-D map. It keeps more dims than the group's (a
    volume of a planar group) and an invariant type keeps none. The control: the unbound
    type refuses the 6-D map."""
    bound = FieldType.regular().bind("o")
    assert bound == FieldType.regular("o") and bound.spatial_dims == 3
    assert bound.tensor_ndim == 6
    assert FieldType.trivial().bind("oh") == FieldType.trivial("oh")
    assert FieldType.trivial().bind("oh").tensor_ndim == 5
    assert FieldType.trivial(spatial_dims=3).bind("c4").spatial_dims == 3
    assert FieldType.invariant().bind("o").spatial_dims == 0
    x = torch.randn(1, 2, 24, 3, 3, 3)
    g = get("o").elements()[5]
    torch.testing.assert_close(bound.act(g, x), act(x, g, "regular"), rtol=0, atol=0)
    with pytest.raises(ValueError, match="must be 5-D"):
        FieldType.regular().check(x)


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(group="bogus", rep="regular"), ValueError, r"FieldType: unknown group='bogus'"),
    (dict(group=3, rep="regular"), TypeError, r"group=3"),
    (dict(group="p4", rep="bogus"), ValueError, r"rep='bogus' must be one of"),
    (dict(group="p4", rep=None), TypeError, r"rep=None"),
    (dict(group="so2", rep="regular"), ValueError, r"'so2' is continuous.*rep='harmonic'"),
    (dict(group="so2", rep="quotient:c1"), ValueError, r"continuous"),
    (dict(group="c4", rep="quotient:d1"), ValueError, r"d1 is not a subgroup of c4"),
    (dict(group="p4", rep="regular", max_order=2), ValueError,
     r"max_order=2 is for harmonic fields.*drop max_order"),
    (dict(group="so2", rep="harmonic", max_order=-1), ValueError,
     r"max_order=-1 must be an integer >= 0"),
    (dict(group="so2", rep="harmonic", max_order=1.5), TypeError, r"max_order=1\.5"),
    (dict(group="so2", rep="harmonic", max_order=True), TypeError, r"max_order=True"),
    (dict(group="p4", rep="trivial", spatial_dims=1), ValueError,
     r"spatial_dims=1 must be an integer >= 2; c4 acts on 2 spatial dims"),
    (dict(group="p4", rep="trivial", spatial_dims=2.0), TypeError, r"spatial_dims=2\.0"),
    (dict(group="p4", rep="invariant", spatial_dims=2), ValueError, r"spatial_dims=2"),
])
def test_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        FieldType(**kwargs)


@pytest.mark.parametrize("ft,shape,match", [
    (FieldType.regular("p4"), (2, 3, 5, 5), r"x must be 5-D \(B, C, F, H, W\).*got a 4-D"),
    (FieldType.regular("p4"), (2, 3, 8, 5, 5), r"F=4 slots in dim 2 \(\|G\| of c4\).*\(2, 3, 8"),
    (FieldType.harmonic("so2", 2), (2, 3, 3, 5, 5), r"F=5 slots.*max_order=2"),
    (FieldType.harmonic(), (2, 3, 4, 5, 5), r"odd fiber"),
    (FieldType.trivial("p4"), (2, 3, 4, 5, 5), r"4-D \(B, C, H, W\)"),
    (FieldType.trivial("p4", spatial_dims=3), (2, 3, 5, 5), r"5-D \(B, C, D, H, W\)"),
    (FieldType.quotient("d4", "d1"), (2, 3, 8, 5, 5), r"F=4 slots.*cosets of d1"),
])
def test_check_errors(ft, shape, match):
    with pytest.raises(ValueError, match=match):
        ft.check(torch.zeros(shape))
    with pytest.raises(TypeError, match="must be a tensor"):
        ft.check([1, 2])


def test_act_is_the_groups_action():
    x = torch.randn(2, 3, 8, 5, 5, dtype=torch.float64)
    h = torch.randn(2, 3, 5, 5, 5, dtype=torch.float64)
    for g in get("d4").elements():
        assert torch.equal(FieldType.regular("d4").act(g, x), act(x, g, "regular"))
        assert torch.equal(FieldType.trivial("d4").act(g, x[:, :, 0]), act(x[:, :, 0], g))
        torch.testing.assert_close(FieldType.harmonic("o2", 2).act(g, h), act(h, g, "harmonic"))
        # a volume turns about its depth axis: each depth slice as an image
        assert torch.equal(FieldType.trivial("d4", spatial_dims=3).act(g, x),
                           act(x, g, "trivial"))
    # an element of a subgroup acts as the element of the group it is
    r = get("c4").elements()[1]
    assert torch.equal(FieldType.regular("d4").act(r, x), act(x, get("d4").elements()[1],
                                                               "regular"))
    with pytest.raises(ValueError, match="not a subgroup"):
        FieldType.regular("c4").act(get("d4").elements()[4], x[:, :, :4])
    with pytest.raises(TypeError, match="GroupElement"):
        FieldType.regular("c4").act(1, x[:, :, :4])


def test_exported():
    assert equilayers.groups.FieldType is FieldType
    assert "FieldType" in equilayers.groups.__all__


# --- every module of the zoo declares types that fit its tensors -----------------------------
def _tensor(out):
    return out[0] if isinstance(out, (tuple, list)) else out


def consistency_problems(module: nn.Module, args, out) -> list[str]:
    """Why ``module``'s ``in_type``/``out_type`` do not describe its input and output."""
    problems = []
    x, y = args[0], _tensor(out)
    for side, ft, t in (("in_type", module.in_type, x), ("out_type", module.out_type, y)):
        if ft is None:
            continue
        if not isinstance(ft, FieldType):
            problems.append(f"{side}={ft!r} is not a FieldType")
            continue
        try:
            ft.check(t)
        except ValueError as e:
            problems.append(f"{side}: {e}")
        if ft.rep == "invariant" and t.dim() != ft.tensor_ndim:
            problems.append(f"{side}={ft!r} but the tensor is {t.dim()}-D")
    if module.in_type is None and module.out_type is None and x.dim() != y.dim():
        problems.append(f"rank-agnostic (no types) but {x.dim()}-D in, {y.dim()}-D out")
    if (module.in_type is None) != (module.out_type is None):
        problems.append("declares one of in_type/out_type only")
    for side in ("in", "out"):
        ft = getattr(module, f"{side}_type")
        if getattr(module, f"{side}_rep") != (None if ft is None else ft.rep):
            problems.append(f"{side}_rep is not {side}_type.rep")
    return problems


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_types_match_tensors(name):
    module, args = build(name)
    assert hasattr(module, "in_type") and hasattr(module, "out_type"), name
    with torch.no_grad():
        out = module(*args)
    assert consistency_problems(module, args, out) == []


def test_wrong_out_type_is_caught():
    """The negative control of the consistency check: a pool that says it keeps regular
    fields (it returns images) and a conv that claims the wrong group."""
    pool = enn.GroupPool()
    pool.out_type = FieldType.regular()
    x = torch.randn(2, 3, 4, 5, 5)
    assert any("out_type" in p for p in consistency_problems(pool, (x,), pool(x)))
    conv = enn.GroupConv2d(3, 4, 3, padding=1, group="p4")
    conv.out_type = FieldType.regular("p4m")
    assert any("F=8 slots" in p for p in consistency_problems(conv, (x,), conv(x)))
    # the harness checks declared types against the tensors too
    with pytest.raises(ValueError, match=r"f\(x\) must have F=8 slots"):
        equivariance_error(conv.double(), x.double(), "p4")


def test_conv_types_and_reps():
    conv = enn.GroupConv2d(3, 4, 5, padding=2, group="so2", max_order=2, in_max_order=1)
    assert conv.in_type == FieldType.harmonic("so2", 1)
    assert conv.out_type == FieldType.harmonic("so2", 2)
    assert (conv.in_rep, conv.out_rep) == ("harmonic", "harmonic")
    lift = enn.LiftingConv2d(3, 4, 3, group="p4m")
    assert (lift.in_type, lift.out_type) == (FieldType.trivial("d4"), FieldType.regular("d4"))
    with pytest.raises(AttributeError):
        lift.in_rep = "regular"  # read-only: derived from in_type
    assert enn.CosetPool("d4", "d1").out_type == FieldType.quotient("d4", "d1")
    assert enn.Restrict("d4", "c4").out_type == FieldType.regular("c4")


# --- the harness acts with the declared types -----------------------------------------------
class _DepthConv(nn.Module):
    """A 3-D conv over depth only: it commutes with rotations and flips of (H, W)."""

    in_type = out_type = FieldType.trivial("d4", spatial_dims=3)

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(2, 3, (3, 1, 1), padding=(1, 0, 0)).double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def test_harness_reads_a_declared_volume():
    """A (B, C, D, H, W) volume with D = |G| would be guessed a regular field (its depth
    slices permuted, a large error); the declared in_type makes it a volume: exact."""
    net = _DepthConv()
    x = torch.randn(2, 2, 8, 7, 7, dtype=torch.float64)
    assert equivariance_error(net, x, "d4") < 1e-12
    plain = net.conv  # the same map without a declaration: guessed regular, misread
    assert equivariance_error(plain, x, "d4") > 0.1
    assert equivariance_error(plain, x, "d4", in_rep="trivial", out_rep="trivial") < 1e-12
    assert equivariance_error(plain, x, "d4", in_rep=FieldType.trivial("d4", spatial_dims=3),
                              out_rep=FieldType.trivial("d4", spatial_dims=3)) < 1e-12


def test_harness_asks_for_in_rep_on_an_ambiguous_volume():
    """Undeclared, with D != |G|: the old guess (regular) is impossible, so the harness asks
    instead of failing deep in the fiber action."""
    plain = nn.Conv3d(2, 3, (3, 1, 1), padding=(1, 0, 0)).double()
    x = torch.randn(2, 2, 5, 7, 7, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"cannot tell what the 5-D x.*pass in_rep="):
        equivariance_report(plain, x, "p4")
    assert equivariance_error(plain, x, "p4", in_rep="trivial", out_rep="trivial") < 1e-12


def test_harness_binds_group_free_types():
    """NormNonlinearity declares harmonic fields of any group: tested with c4 and o2 elements;
    GroupPool's regular fields take the tested group's |G|."""
    x = torch.randn(2, 3, 5, 7, 7, dtype=torch.float64)
    nl = enn.NormNonlinearity(3, 2).double()
    assert equivariance_error(nl, x, "c4") < 1e-12
    assert equivariance_error(nl, x, "o2") < 1e-12
    assert equivariance_error(enn.GroupPool(), torch.randn(2, 3, 8, 7, 7,
                                                           dtype=torch.float64), "d4") < 1e-12
    # a string still works, converted once at the entry
    assert equivariance_error(nn.ReLU(), torch.randn(2, 3, 8, 7, 7, dtype=torch.float64),
                              "d4", in_rep="regular", out_rep="regular") < 1e-12


def test_sequential_declares_its_ends():
    net = nn.Sequential(enn.LiftingConv2d(2, 3, 3, padding=1, group="p4"), nn.ReLU(),
                        enn.GroupConv2d(3, 3, 3, padding=1, group="p4"), nn.ReLU()).double()
    x = torch.randn(2, 2, 7, 7, dtype=torch.float64)
    assert equivariance_error(net, x, "p4") < 1e-10


def test_check_grid_uses_the_models_in_type():
    conv = enn.GroupConv2d(3, 4, 3, padding=1, group="p4")
    assert equilayers.check_grid(conv, (1, 3, 4, 9, 9), "p4", shifts=False) == []
    with pytest.raises(ValueError, match=r"input_shape=\(1, 3, 9, 9\) must have 5 dims"):
        equilayers.check_grid(conv, (1, 3, 9, 9), "p4")


def test_a_fiber_alone_has_no_spatial_dims(gen):
    """spatial_dims=0 on a fibered type: (B, C, F), acted on through the fiber only, exactly
    for any element; a trivial type needs its spatial dims (an image without pixels is an
    invariant vector); a type of no group keeps 0 when bound."""
    ft = FieldType("so2", "harmonic", 2, spatial_dims=0)
    assert (ft.layout, ft.tensor_ndim, repr(ft)) == (
        "(B, C, F)", 3, "FieldType(so2, harmonic, max_order=2, spatial_dims=0)")
    x = torch.randn(4, 3, 5, generator=gen, dtype=torch.float64)
    g = get("so2").elements_at([33.0])[0]
    moved = ft.act(g, x)
    assert torch.allclose(ft.act(g.inverse(), moved), x, atol=1e-14)  # exact off the grid
    assert torch.allclose(moved.norm(dim=2), x.norm(dim=2), atol=1e-14)
    assert not torch.allclose(moved, x)  # negative control: it did move the fiber
    assert FieldType(None, "regular", spatial_dims=0).bind("o") == FieldType(
        "o", "regular", spatial_dims=0)
    with pytest.raises(ValueError, match=r"spatial_dims=0 must be an integer >= 2"):
        FieldType("p4", "trivial", spatial_dims=0)
    with pytest.raises(ValueError, match=r"spatial_dims=1 must be 0 or an integer >= 2; .*"
                       r"0 for a fiber alone \(B, C, F\)"):
        FieldType("p4", "regular", spatial_dims=1)  # the rule names the 0 it allows
    with pytest.raises(ValueError, match=r"spatial_dims=2 must be 0 or an integer >= 3"):
        FieldType("o", "harmonic", 1, spatial_dims=2)
