"""Groups a user writes (ARCHITECTURE.md's "a new group") beside the built-in ones: a finite
group of matrices listed in its own order, its name kept on the instance as the cube groups
keep theirs. What worked for the built-ins and broke for such a group, each with its control."""

from __future__ import annotations

import copy
import pickle
from dataclasses import dataclass

import pytest
import torch

from equilayers.groups import Element, FieldType, Group, get, register_group

E, SWAP, ANTI, HALF = ((1, 0), (0, 1)), ((0, 1), (1, 0)), ((0, -1), (-1, 0)), ((-1, 0), (0, -1))
FLIP_Y, FLIP_X = ((1, 0), (0, -1)), ((-1, 0), (0, 1))


def _mul(a, b):
    return tuple(tuple(sum(a[i][k] * b[k][j] for k in range(2)) for j in range(2))
                 for i in range(2))


@dataclass(frozen=True)
class _M(Element):
    group: Group
    rows: tuple


class Matrices(Group):
    """A finite group of 2 x 2 signed permutations, in the order given; name on the instance."""

    def __init__(self, name, mats):
        self._name, self._els = name, [_M(self, m) for m in mats]
        self._by = {g.rows: g for g in self._els}

    name = property(lambda self: self._name)
    spatial_dim = 2
    order = property(lambda self: len(self._els))
    identity = property(lambda self: self._by[E])

    def elements(self):
        return list(self._els)

    def compose(self, a, b):
        return self._by[_mul(a.rows, b.rows)]

    def inverse(self, a):
        return self._by[tuple(zip(*a.rows, strict=True))]

    def matrix(self, g):
        return torch.tensor(g.rows, dtype=torch.float64)

    def grid_subgroup(self):
        return self

    def _key(self):
        return (self._name,)


@pytest.fixture
def diagonals():
    """``{e, the diagonal flip}`` and ``{e, both diagonal flips, r180}`` (subgroups of d4 that
    are not of the planar family's form) and a Klein group in d2's matrices."""
    regs = [register_group(r"diag1", lambda: Matrices("diag1", [E, SWAP]), form="'diag1'"),
            register_group(r"diag4", lambda: Matrices("diag4", [E, SWAP, ANTI, HALF]),
                           form="'diag4'"),
            register_group(r"klein", lambda: Matrices("klein", [E, FLIP_Y, FLIP_X, HALF]),
                           form="'klein'")]
    yield
    for r in regs:
        r.remove()


def test_a_used_user_group_pickles_and_copies(diagonals):
    """``Group.index`` kept its ``{element: slot}`` dict on the instance; unpickling it hashed
    elements that reach back into the group before its name was restored (AttributeError
    '_name' from deepcopy, AveragedModel, export and torch.load of a whole model)."""
    from equilayers.nn import GroupConv2d

    grp = get("klein")
    assert grp.index(grp.elements()[2]) == 2  # fills the slot cache
    for twin in (pickle.loads(pickle.dumps(grp)), copy.deepcopy(grp)):
        assert twin == grp and twin.index(twin.elements()[3]) == 3
    conv = GroupConv2d(2, 2, 3, group="klein")
    conv(torch.randn(1, 2, 4, 5, 5))
    twin = copy.deepcopy(conv)
    assert torch.equal(twin.weight, conv.weight) and twin.group == conv.group


def test_a_user_subgroup_of_a_planar_group_restricts_and_pools(diagonals, gen):
    """``check_subgroup('d4', 'diag1')`` accepted the pair by matrices, then ``Restrict`` and
    ``CosetPool`` failed a bare ``assert`` (the planar branch assumed a planar subgroup).
    Both now run and are exactly equivariant; the control is a slot shuffle."""
    from equilayers.nn import CosetPool, Restrict
    from equilayers.testing import equivariance_error

    x = torch.randn(2, 3, 8, 5, 5, generator=gen, dtype=torch.float64)
    for sub in ("diag1", "diag4"):
        restrict, pool = Restrict("d4", sub), CosetPool("d4", sub)
        assert restrict(x).shape == (2, 3 * 8 // get(sub).order, get(sub).order, 5, 5)
        assert pool(x).shape == (2, 3, 8 // get(sub).order, 5, 5)
        assert equivariance_error(pool, x, "d4") < 1e-12
        assert FieldType.regular("d4").act(get(sub).elements()[1], x).shape == x.shape
    shuffled = torch.nn.Sequential(CosetPool("d4", "diag1"),
                                   torch.nn.Unflatten(1, (3, 1)), torch.nn.Flatten(1, 2))
    shuffled.out_type = CosetPool("d4", "diag1").out_type  # a slot shuffle after the pool
    roll = torch.nn.Sequential(CosetPool("d4", "diag1"))
    roll.register_forward_hook(lambda m, i, o: o.roll(1, 2))
    roll.in_type, roll.out_type = FieldType.regular("d4"), CosetPool("d4", "diag1").out_type
    assert equivariance_error(roll, x, "d4") > 0.1


def test_a_group_whose_name_looks_up_another_is_refused_by_name(gen):
    """A factory registered for 'flipy' returned a group named 'd1': layers store the name and
    look it up again, so ``CosetPool``'s output type acted with the built-in d1 (x flips) and
    the harness scored a correct layer 1.13. ``get`` now refuses such a group."""
    with register_group(r"flipy", lambda: Matrices("d1", [E, FLIP_Y]), form="'flipy'"):
        with pytest.raises(ValueError, match=r"returned a group named 'd1' for 'flipy', but "
                                             r"get\('d1'\) is Group\('d1'\)"):
            get("flipy")
    with register_group(r"flipy", lambda: Matrices("flipy", [E, FLIP_Y]), form="'flipy'"):
        assert get("flipy").name == "flipy"  # the control: its own name


def test_an_unregistered_group_recorded_by_name_is_refused_at_construction():
    """An unregistered instance passed ``get``; ``Restrict`` and a quotient type stored its
    name, and the harness later failed 'unknown in_group=...' naming a string never given."""
    from equilayers.nn import Restrict

    klein = Matrices("klein", [E, FLIP_Y, FLIP_X, HALF])
    with pytest.raises(ValueError, match="Restrict: group=.*klein.*register it first"):
        Restrict(klein, Matrices("fy", [E, FLIP_Y]))
    with pytest.raises(ValueError, match="subgroup=.*'fy'.*register it first"):
        FieldType.quotient("d2", Matrices("fy", [E, FLIP_Y]))
    with register_group(r"klein", lambda: klein, form="'klein'"):
        assert Restrict(klein, "d1").in_group == "klein"


def test_export_keeps_a_volume_group_pool_without_a_3d_conv():
    """A head after ``Restrict('oh', 'o')`` (no 3-D conv in the model): the ``GroupPool``
    became a 5-D-only pool and the exported model failed at its first call on 6-D maps. A
    planar model's pool is still converted (the control)."""
    import equilayers
    from equilayers.nn import GroupPool, LiftingConv2d, Restrict

    v = torch.randn(1, 2, 48, 3, 3, 3)
    for model in (torch.nn.Sequential(Restrict("oh", "o"), GroupPool("max")),
                  torch.nn.Sequential(Restrict("oh", "o"), GroupPool("mean"),
                                      torch.nn.Flatten(2))):
        assert torch.equal(equilayers.export(model)(v), model(v))
    planar = torch.nn.Sequential(LiftingConv2d(1, 2, 3, group="p4"), GroupPool("max")).eval()
    assert not any(isinstance(m, GroupPool) for m in equilayers.export(planar).modules())


def test_a_shared_planar_group_is_read_only():
    """``get('c4').n = 8`` made every c4 (and its field types) c8 for the process."""
    grp = get("c4")
    with pytest.raises(AttributeError, match="read-only"):
        grp.n = 8
    with pytest.raises(AttributeError, match="read-only"):
        grp.reflections = True
    assert get("c4").order == 4 and copy.deepcopy(grp) == grp


def test_a_registered_3d_group_is_refused_by_the_3d_convs_for_its_reason():
    """The refusal pointed to the 2-D convs; GroupLinear's named GroupConv3d."""
    from equilayers.nn import GroupLinear, LiftingConv3d

    axes = [((1, 0, 0), (0, 1, 0), (0, 0, 1)), ((-1, 0, 0), (0, -1, 0), (0, 0, 1))]

    class Half(Matrices):
        spatial_dim = 3

        def compose(self, a, b):
            rows = tuple(tuple(sum(a.rows[i][k] * b.rows[k][j] for k in range(3))
                               for j in range(3)) for i in range(3))
            return next(g for g in self._els if g.rows == rows)

        identity = property(lambda self: self._els[0])

    with register_group(r"half3", lambda: Half("half3", axes), form="'half3'"):
        for make, who in ((lambda: LiftingConv3d(1, 1, 3, group="half3"), "LiftingConv3d"),
                          (lambda: GroupLinear(2, 2, group="half3"), "GroupLinear")):
            with pytest.raises(ValueError, match=f"{who}: .*registered group of 3-D matrices"):
                make()


def test_a_lookup_that_ran_across_a_removal_is_not_kept():
    """Another thread's ``remove()`` while a lookup's factory runs (here the factory removes
    the registration itself, deterministically): the lookup's answer was cached after the
    cache was cleared, and ``get`` kept returning the removed group. The control: before the
    removal the name looks up."""
    calls = []

    def factory():
        calls.append(1)
        if len(calls) == 2:
            reg.remove()  # mid-lookup
        return Matrices("klein", [E, HALF, FLIP_X, FLIP_Y])

    reg = register_group(r"klein", factory, form="'klein'")
    assert get("klein").name == "klein"  # the control (first lookup: cached)
    reg2 = register_group(r"kleen", lambda: None, form="'kleen'")  # clears the cache
    reg2.remove()
    with pytest.raises(ValueError, match="unknown group='klein'"):
        get("klein")  # the lookup removed its own registration: looked up again
    with pytest.raises(ValueError, match="unknown group='klein'"):
        get("klein")


def test_an_unknown_name_says_registrations_are_per_process():
    """A model of a user's quotient type sent to a spawned worker: the worker has not run the
    registration, and the error named only the valid forms."""
    with pytest.raises(ValueError, match="register it again in spawned workers"):
        get("klein")


# --- subgroups by matrices: restriction to a non-normal registered subgroup, the continuous
# groups' finite subgroups -------------------------------------------------------------------
R90X = ((1, 0, 0), (0, 0, -1), (0, 1, 0))  # a quarter turn about the x axis


def _mul3(a, b):
    return tuple(tuple(sum(a[i][k] * b[k][j] for k in range(3)) for j in range(3))
                 for i in range(3))


class Matrices3(Matrices):
    """:class:`Matrices` of 3 x 3 signed permutations."""

    spatial_dim = 3
    identity = property(lambda self: self._els[0])

    def compose(self, a, b):
        return self._by[_mul3(a.rows, b.rows)]


def _turns_x():
    out = [((1, 0, 0), (0, 1, 0), (0, 0, 1))]
    for _ in range(3):
        out.append(_mul3(out[-1], R90X))
    return out


#: d4's matrices in another slot order (identity first): r, r^3 m, r^2 m, ...
_D4 = [E, ((0, -1), (1, 0)), HALF, ((0, 1), (-1, 0)), FLIP_X, SWAP, FLIP_Y, ANTI]
_SCRAMBLED = [_D4[i] for i in (0, 5, 3, 6, 1, 7, 2, 4)]


@pytest.fixture
def not_normal():
    """``"c4x"`` (the quarter turns about the x axis: in ``"o"``, not normal there) and
    ``"scr4"`` (d4 listed in another slot order, so d1 is a subgroup found by matrices)."""
    regs = [register_group(r"c4x", lambda: Matrices3("c4x", _turns_x()), form="'c4x'"),
            register_group(r"scr4", lambda: Matrices("scr4", _SCRAMBLED), form="'scr4'")]
    yield
    for r in regs:
        r.remove()


@pytest.mark.parametrize("group,sub", [("o", "c4x"), ("oh", "c4x"), ("scr4", "d1")])
def test_restriction_to_a_subgroup_that_is_not_normal_is_a_permutation(not_normal, group,
                                                                       sub, gen):
    """The right cosets ``H t_j`` were built from the first element of each *left* coset:
    ``Restrict('o', 'c4x')`` dropped input slots 12-15 and repeated a field. Now a
    permutation, and exactly ``H``-equivariant (the controls: the left-coset table is not a
    permutation for these pairs; a layer that weighs the slots fails the harness)."""
    from equilayers.groups._subgroups import coset_representatives, embed, restriction_index
    from equilayers.nn import Restrict
    from equilayers.testing import equivariance_error

    grp, hh = get(group), get(sub)
    idx = restriction_index(grp, hh)
    assert sorted(idx.tolist()) == list(range(grp.order))
    members = [embed(h, grp) for h in hh.elements()]
    left = [(h * t).index for t in coset_representatives(grp, hh) for h in members]
    assert sorted(left) != list(range(grp.order))  # the old table: the negative control
    spatial = (3, 3, 3) if grp.spatial_dim == 3 else (5, 5)
    x = torch.randn(2, 2, grp.order, *spatial, generator=gen, dtype=torch.float64)
    restrict = Restrict(grp, hh)
    assert equivariance_error(restrict, x, sub) < 1e-12
    y = restrict(torch.arange(float(grp.order)).view(1, 1, -1, *[1] * grp.spatial_dim))
    assert sorted(y.flatten().tolist()) == list(range(grp.order))  # no slot lost or repeated
    # (the old table's fields were H-equivariant too, only not a permutation: the harness's
    # control is a layer that weighs the slots of each field unequally)
    broken = Restrict(grp, hh)
    weights = torch.arange(1.0, hh.order + 1, dtype=torch.float64)
    broken.register_forward_hook(lambda m, i, o: o * weights.view(-1, *[1] * grp.spatial_dim))
    assert equivariance_error(broken, x, sub) > 0.1


def test_restriction_tables_of_the_built_in_pairs_are_unchanged():
    """The fix of the non-normal registered subgroups keeps every built-in pair's slot order:
    their right cosets are still those of :func:`coset_representatives` (a built-in pair
    that is not normal, such as c4z in o, among them), and each is a permutation."""
    from equilayers.groups._subgroups import (
        check_subgroup,
        coset_representatives,
        embed,
        restriction_index,
        right_coset_representatives,
    )

    names = ([f"{k}{n}" for k in "cd" for n in range(1, 13)]
             + ["o", "oh", "c4z", "d4z", "t", "th", "ico", "ih"])
    pairs = 0
    for group in names:
        for sub in names:
            try:
                grp, hh = check_subgroup(group, sub)
            except ValueError:
                continue
            pairs += 1
            reps = coset_representatives(grp, hh)
            assert right_coset_representatives(grp, hh) == reps
            members = [embed(h, grp) for h in hh.elements()]
            assert restriction_index(grp, hh).tolist() == [
                (h * t).index for t in reps for h in members]
    assert pairs == 126


def test_a_non_permutation_table_is_an_internal_error(not_normal, monkeypatch):
    """The table builder checks that its index is a permutation (the tables before the fix
    are the control: a silent loss of slots becomes a RuntimeError)."""
    from equilayers.groups import _subgroups

    monkeypatch.setattr(_subgroups, "right_coset_representatives",
                        _subgroups.coset_representatives)
    with pytest.raises(RuntimeError, match="restriction index of c4x in o is not a "
                                           "permutation"):
        _subgroups._tables.__wrapped__(get("o"), get("c4x"))
    monkeypatch.undo()
    assert _subgroups._tables.__wrapped__(get("o"), get("c4x"))[0].numel() == 24


def test_the_continuous_groups_hold_their_finite_and_continuous_subgroups(not_normal, diagonals,
                                                                         gen):
    """``_check_by_matrix`` refused SO(3) in O(3) (so ``FieldType.harmonic('o3', 1).act`` of a
    rotation, ``bind('so3')``, the harness with ``'so3'``) and a registered finite group in
    O(2). Controls: a flip is not in SO(2)/SO(3), O(3) not in SO(3), a non-orthogonal finite
    group in nothing continuous, and a model that is not equivariant is flagged."""
    from equilayers.groups._subgroups import check_subgroup, embed
    from equilayers.nn import Restrict, SteerableConv3d
    from equilayers.testing import equivariance_error

    for group, sub in (("o3", "so3"), ("o2", "scr4"), ("o2", "diag1"), ("so3", "c4x"),
                       ("o3", "c4x")):
        check_subgroup(group, sub)
    for group, sub in (("so3", "o3"), ("so2", "scr4"), ("so3", "oh"), ("o3", "o2")):
        with pytest.raises(ValueError, match=f"{sub} is not a subgroup of {group}"):
            check_subgroup(group, sub)
    with register_group(r"shear", lambda: Matrices("shear", [E, ((-1, 1), (0, 1))]),
                        form="'shear'"):  # (an involution, not orthogonal)
        with pytest.raises(ValueError, match="shear is not a subgroup of o2"):
            check_subgroup("o2", "shear")
    for h in get("scr4").elements():  # the element of O(2) with the same matrix
        assert torch.equal(get("o2").matrix(embed(h, "o2")), get("scr4").matrix(h))
    rot = get("so3").from_axis_angle([0.0, 0.0, 1.0], 0.5)
    x = torch.randn(1, 2, 4, 3, 3, 3, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(FieldType.harmonic("o3", 1).act(rot, x),
                               FieldType.harmonic("so3", 1).act(rot, x))
    assert FieldType.harmonic("o3", 1).bind("so3").group == get("o3")
    conv = SteerableConv3d(1, 1, 3, padding=1, group="o3", max_order=1).double()
    v = torch.randn(1, 1, 5, 5, 5, generator=gen, dtype=torch.float64)
    assert equivariance_error(conv, v, "so3") < 1e-10
    plain = torch.nn.Conv3d(1, 4, 3, padding=1).double()  # a plain filter: the control
    plain.register_forward_hook(lambda m, i, o: o.unsqueeze(1))
    plain.in_type, plain.out_type = conv.in_type, conv.out_type
    assert equivariance_error(plain, v, "so3") > 0.1
    assert Restrict("o3", "so3", rep="harmonic").out_type.group == get("so3")


def test_a_unet_of_a_registered_group_names_itself_and_the_basis(diagonals):
    """``UNet(group='kdiag')`` failed with LiftingConv2d's error: its default basis is the
    steerable one, which needs a planar group. The U-Net names itself and basis='pixel', which
    builds (the control)."""
    from equilayers.models import UNet

    with pytest.raises(ValueError, match=r"UNet: group='diag4' is not a planar group .*\(the "
                                         r"default\); use basis='pixel'"):
        UNet(1, 2, group="diag4")
    net = UNet(1, 2, group="diag4", basis="pixel", depth=1, width=2)
    assert net(torch.randn(1, 1, 8, 8)).shape == (1, 2, 8, 8)
