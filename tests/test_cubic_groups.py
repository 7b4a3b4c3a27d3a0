"""The cube's groups on voxels (equilayers.groups._cubic): group axioms, orientation and
subgroups, equality, the documented element orders and axes, the actions on volumes and on 6-D
regular fields, and field types on volumes."""

from __future__ import annotations

import pytest
import torch
from _cubic_common import NAMES, ORDERS

from equilayers.groups import CubicGroup, FieldType, act, get
from equilayers.groups._group import is_signed_permutation
from equilayers.groups._subgroups import check_subgroup, coset_representatives


def _elements_x_elements(grp):
    els = grp.elements()
    return [(a, b) for a in els for b in els]


# --- the groups --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_group_axioms(name):
    grp = get(name)
    n = ORDERS[name]
    assert isinstance(grp, CubicGroup) and grp.order == n and len(grp.elements()) == n
    assert grp.spatial_dim == 3 and grp.pixel_exact and grp.grid_subgroup() == grp
    table = grp.cayley_table
    assert table.shape == (n, n)
    ar = torch.arange(n)
    assert all(torch.equal(row.sort().values, ar) for row in table)  # closure, Latin square
    assert all(torch.equal(col.sort().values, ar) for col in table.t())
    a, b, c = torch.meshgrid(ar, ar, ar, indexing="ij")
    assert torch.equal(table[table[a, b], c], table[a, table[b, c]])  # associativity
    e = grp.identity
    assert grp.index(e) == 0 and torch.equal(table[0], ar) and torch.equal(table[:, 0], ar)
    for g in grp.elements():
        assert g * g.inverse() == e == g.inverse() * g
        m = grp.matrix(g)
        assert is_signed_permutation(m) and grp.is_grid(g)
        assert torch.equal(grp.matrix(g.inverse()), m.t())  # inverse = transpose
        assert round(float(torch.linalg.det(m))) == g.det
    for a, b in _elements_x_elements(grp)[:: max(1, n // 4)]:
        assert torch.equal(grp.matrix(a * b), grp.matrix(a) @ grp.matrix(b))


def test_orientation_and_subgroups():
    assert all(g.det == 1 for g in get("o").elements())
    assert all(g.det == 1 for g in get("c4z").elements())
    assert not get("o").has_reflections and get("oh").has_reflections
    assert get("d4z").has_reflections
    for big, small in (("oh", "o"), ("o", "c4z"), ("oh", "d4z"), ("oh", "c4z"), ("d4z", "c4z"),
                       ("o", "t"), ("oh", "t"), ("oh", "th"), ("th", "t")):
        check_subgroup(big, small)
        assert get(small).is_subgroup_of(get(big))
    for big, small in (("o", "d4z"), ("o", "oh"), ("c4z", "d4z"), ("t", "c4z"), ("t", "o"),
                       ("o", "th"), ("th", "o")):
        with pytest.raises(ValueError, match="not a subgroup"):
            check_subgroup(big, small)
    with pytest.raises(ValueError, match="not a subgroup"):
        check_subgroup("o", "c4")  # a planar group acts on 2 dims


def test_equality_by_value():
    assert CubicGroup("o") == get("o") and hash(CubicGroup("o")) == hash(get("o"))
    assert get("o") != get("oh") and get("c4z") != get("c4")
    assert CubicGroup("o").elements()[5] == get("o").elements()[5]
    with pytest.raises(ValueError, match="name='bogus' must be one of"):
        CubicGroup("bogus")


def test_documented_element_orders():
    o, oh, c4z, d4z = (get(n) for n in ("o", "oh", "c4z", "d4z"))
    # c4z/d4z: slot for slot the planar c4/d4 on every depth slice
    assert torch.equal(c4z.cayley_table, get("c4").cayley_table)
    assert torch.equal(d4z.cayley_table, get("d4").cayley_table)
    v = torch.randn(1, 2, 3, 5, 5)
    for g3, g2 in zip(d4z.elements(), get("d4").elements(), strict=True):
        assert torch.equal(act(v, g3), act(v, g2))
    assert repr(c4z.elements()[1]) == "(-y, x, z)"
    assert torch.equal(act(v, d4z.elements()[4]), torch.flip(v, dims=(-1,)))
    # o: slots 4j..4j+3 are t_j C4z, t_j taking z to +z, -z, +x, -x, +y, -y; the first 4 = c4z
    assert [g.rows for g in o.elements()[:4]] == [g.rows for g in c4z.elements()]
    ez = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    targets = [(2, 1), (2, -1), (0, 1), (0, -1), (1, 1), (1, -1)]
    for j, (axis, sign) in enumerate(targets):
        for k in range(4):
            g = o.elements()[4 * j + k]
            want = torch.zeros(3, dtype=torch.float64)
            want[axis] = sign
            assert torch.equal(o.matrix(g) @ ez, want)
    assert coset_representatives("o", "c4z") == [o.elements()[4 * j] for j in range(6)]
    # oh: O first, then the inversion times O; slot 24 is the inversion (flip all 3 dims)
    assert [g.rows for g in oh.elements()[:24]] == [g.rows for g in o.elements()]
    vol = torch.randn(1, 1, 4, 4, 4)
    assert torch.equal(act(vol, oh.elements()[24]), torch.flip(vol, dims=(-3, -2, -1)))
    # t: slot 4j + k = c^j d_k, c the turn x -> y -> z -> x, d_k the identity and the half
    # turns about x, y, z; the rotations of o whose axis permutation is even
    t = get("t")
    c = t.element([[0, 0, 1], [1, 0, 0], [0, 1, 0]])
    assert torch.equal(t.matrix(c) @ torch.tensor([1.0, 0, 0], dtype=torch.float64),
                       torch.tensor([0.0, 1, 0], dtype=torch.float64))
    klein = [torch.diag(torch.tensor(d, dtype=torch.float64))
             for d in ((1, 1, 1), (1, -1, -1), (-1, 1, -1), (-1, -1, 1))]
    for j in range(3):
        for k in range(4):
            assert torch.equal(t.matrix(t.elements()[4 * j + k]),
                               torch.linalg.matrix_power(t.matrix(c), j) @ klein[k])
    even = [g for g in o.elements() if torch.linalg.det(o.matrix(g).abs()) > 0]
    assert sorted(g.rows for g in even) == sorted(g.rows for g in t.elements())
    # th: t, then the inversion times t
    th = get("th")
    assert [g.rows for g in th.elements()[:12]] == [g.rows for g in t.elements()]
    for a, b in zip(th.elements()[12:], t.elements(), strict=True):
        assert torch.equal(th.matrix(a), -t.matrix(b))


def test_axes_convention():
    """x along the width index, y against the height index, z along the depth index."""
    o = get("o")
    vol = torch.zeros(1, 1, 5, 5, 5)
    vol[0, 0, 2, 2, 4] = 1.0  # the point x = +2 (centre at index 2)
    # the quarter turn about y taking z to +x takes x to -z: depth index 2 - 2 = 0
    g = o.element([[0, 0, 1], [0, 1, 0], [-1, 0, 0]])
    moved = act(vol, g)
    assert moved[0, 0, 0, 2, 2] == 1.0 and moved.sum() == 1.0
    # the quarter turn about x taking y to z: y = +1 (height index 1) goes to depth index 3
    vol = torch.zeros(1, 1, 5, 5, 5)
    vol[0, 0, 2, 1, 2] = 1.0
    h = o.element([[1, 0, 0], [0, 0, -1], [0, 1, 0]])
    assert act(vol, h)[0, 0, 3, 2, 2] == 1.0


@pytest.mark.parametrize("name", NAMES)
def test_actions_compose(name, gen):
    grp = get(name)
    size = (3, 5, 5) if name in ("c4z", "d4z") else (4, 4, 4)  # c4z/d4z keep the depth
    vol = torch.randn(2, 2, *size, generator=gen)
    field = torch.randn(1, 2, grp.order, *size, generator=gen)
    for a, b in _elements_x_elements(grp):
        ab = a * b
        assert torch.equal(act(vol, ab), act(act(vol, b), a))
        assert torch.equal(act(field, ab, "regular"), act(act(field, b, "regular"), a, "regular"))


def test_field_types_on_volumes():
    assert FieldType.regular("o").tensor_ndim == 6
    assert FieldType.trivial("o").tensor_ndim == 5
    assert FieldType.regular("o").layout == "(B, C, F, D, H, W)"
    assert FieldType.regular().bind("oh").tensor_ndim == 6
    with pytest.raises(ValueError, match="spatial_dims"):
        FieldType.regular("o", spatial_dims=2)
    with pytest.raises(ValueError, match="planar"):
        FieldType.harmonic("o", 1)
    x = torch.randn(1, 2, 24, 3, 3, 3)
    FieldType.regular("o").check(x)
    with pytest.raises(ValueError, match="6-D"):
        act(x[:, :, :, 0], get("o").elements()[1], "regular")


@pytest.mark.parametrize("name,parent", [("o", "so3"), ("oh", "o3"), ("c4z", "so3"),
                                         ("d4z", "o3")])
def test_act_harmonic_takes_the_cube_groups_elements(name, parent, gen):
    """act(x, g, "harmonic") with an element of the cube's groups acts on SO(3)/O(3) fields,
    as its docstring and FieldType.act say (it refused: "needs an element of a planar
    group"); harmonic_matrix of it is the SO(3)/O(3) element's."""
    from equilayers.groups import harmonic_matrix

    x = torch.randn(1, 2, 9, 3, 3, 3, generator=gen, dtype=torch.float64)
    for g in get(name).elements():
        torch.testing.assert_close(act(x, g, "harmonic"), FieldType.harmonic(parent, 2).act(g, x))
        same = get(parent).element(get(name).matrix(g).double())
        torch.testing.assert_close(harmonic_matrix(g, 2), harmonic_matrix(same, 2))
