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
