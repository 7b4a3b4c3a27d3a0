import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from equilayers.groups import Group, get

finite_names = st.builds(lambda kind, n: f"{kind}{n}", st.sampled_from("cd"),
                         st.integers(1, 16))


@settings(max_examples=60, deadline=None)
@given(finite_names, st.data())
def test_group_axioms(name, data):
    g = get(name)
    els = g.elements()
    assert len(els) == g.order == len(set(els))
    pick = st.sampled_from(els)
    a, b, c = data.draw(pick), data.draw(pick), data.draw(pick)
    assert (a * b) * c == a * (b * c)
    assert a * g.identity == a == g.identity * a
    assert a * a.inverse() == g.identity == a.inverse() * a
    assert (a * b) in els


def test_cayley_table_is_latin_square():
    for name in ["c1", "c4", "d1", "d4", "d6"]:
        t = get(name).cayley_table
        n = t.shape[0]
        for row in t:
            assert sorted(row.tolist()) == list(range(n))
        for col in t.T:
            assert sorted(col.tolist()) == list(range(n))


@pytest.mark.parametrize("name,order", [("c1", 1), ("c4", 4), ("p4", 4), ("p4m", 8), ("d1", 2),
                                        ("D8", 16), (" c16 ", 16)])
def test_names_and_aliases(name, order):
    assert get(name).order == order


def test_aliases_are_same_group():
    assert get("p4") == get("c4") and get("p4m") == get("d4")
    assert get(get("d4")) is get("d4")


def test_continuous_groups():
    so2, o2 = get("so2"), get("o2")
    assert so2.order == math.inf and not so2.is_finite and not so2.reflections
    assert o2.reflections
    a, b = so2.element(0.3), so2.element(1.1)
    assert math.isclose((a * b).angle, 1.4)
    assert math.isclose((a * a.inverse()).angle % (2 * math.pi), 0, abs_tol=1e-12)
    f = o2.element(0.5, True)
    assert f * f == o2.identity
    assert len(so2.grid_elements()) == 4 and len(o2.grid_elements()) == 8
    with pytest.raises(ValueError, match="continuous"):
        so2.elements()


@pytest.mark.parametrize("bad", ["c0", "d0", "p5", "foo", "so4", "", "c-1", "c4m"])
def test_unknown_name_lists_valid_forms(bad):
    with pytest.raises(ValueError, match="valid forms") as info:
        get(bad)
    assert repr(bad.strip().lower()) in str(info.value) or bad.strip() == ""


def test_bad_type():
    with pytest.raises(TypeError, match="group=4 must be a group name"):
        get(4)


def test_grid_elements():
    assert [g.is_grid for g in get("c8").elements()] == [True, False] * 4
    assert all(g.is_grid for g in get("d4").elements())
    assert [g.degrees for g in get("c3").grid_elements()] == [0.0]
    assert len(get("d2").grid_elements()) == 4


def test_reflection_in_cyclic_group_rejected():
    with pytest.raises(ValueError, match="no reflections"):
        get("c4").element(1, True)
    with pytest.raises(ValueError, match="not a rotation"):
        get("c8").elements_at([30.0])


def test_elements_of_other_group_rejected():
    with pytest.raises(ValueError, match="belongs to"):
        get("c4").compose(get("c4").identity, get("d4").identity)


def test_regular_permutation_is_homomorphism():
    for name in ["c4", "d4", "d3", "c5"]:
        G = get(name)
        for a in G.elements():
            for b in G.elements():
                pa, pb, pab = (G.regular_permutation(e) for e in (a, b, a * b))
                # acting by b then a: f -> f[pb] -> (f[pb])[pa] = f[pb[pa]]
                assert torch.equal(pb[pa], pab)


def test_group_constructor_validation():
    with pytest.raises(ValueError, match="n=0 must be an integer >= 1"):
        Group(0, False)
    assert Group(np.int64(4), False) == get("c4")  # a numpy int, as torch takes one
    with pytest.raises(TypeError, match="reflections='False' must be True or False"):
        Group(4, "False")  # read by its truth value, it made d4


def test_angles_must_be_finite_and_disk_mask_takes_its_dtype():
    """A NaN or infinite angle is refused where it is given (it made an element whose every
    later use raised Python's bare round() error); disk_mask's dtype is used (it was
    ignored: always bool)."""
    from equilayers.groups import disk_mask

    for make in (lambda: get("so2").element(float("nan")),
                 lambda: get("o2").elements_at([float("inf")]),
                 lambda: get("c4").elements_at([float("nan")])):
        with pytest.raises(ValueError, match="finite"):
            make()
    assert get("so2").element(1.0).is_grid is False
    assert disk_mask(5, 5, dtype=torch.float32).dtype == torch.float32
    assert disk_mask(5, 5).dtype == torch.bool
    assert torch.equal(disk_mask(5, 5, dtype=torch.float32).bool(), disk_mask(5, 5))


@pytest.mark.parametrize("bad", [np.float32(1.5), torch.tensor(1.5), True, "1", None])
def test_element_refuses_what_int_truncated(bad):
    """``int()`` read ``np.float32(1.5)`` and a tensor as rot90, ``True`` and ``"1"`` as 1,
    and gave Python's bare int() error for None: each is refused by name."""
    with pytest.raises(TypeError, match=r"c4.element: rotation=.* must be an integer step"):
        get("c4").element(bad)
    assert get("c4").element(np.int64(5)) == get("c4").element(1)
    assert get("c4").element(2.0) == get("c4").element(2)  # a float equal to a step
    # 0-d tensors by value, as torch users hold angles and steps
    assert get("c4").element(torch.tensor(5)) == get("c4").element(1)
    assert get("c8").elements_at(torch.tensor([45.0])) == [get("c8").element(1)]
    assert get("so2").element(torch.tensor(0.5)).angle == 0.5


@pytest.mark.parametrize("bad", ["False", None, 0])
def test_element_reflection_must_be_a_flag(bad):
    with pytest.raises(TypeError, match=r"d4.element: reflection=.* must be True or False"):
        get("d4").element(1, reflection=bad)
    # numpy's bool and a 0-d bool tensor are flags (refused at first, as bool() took them)
    for flag in (np.array([False, True])[1], torch.tensor(True)):
        assert get("d4").element(1, reflection=flag) == get("d4").element(1, True)
    assert Group(4, np.True_) == get("d4")


def test_group_element_record_is_canonical():
    """``GroupElement(...)`` built by hand was not checked: rot450 and a flip of c4 failed
    deep inside act() and the harness (IndexError), a group name with AttributeError."""
    from equilayers.groups import GroupElement, act

    c4 = get("c4")
    for make in (lambda: GroupElement(c4, 5), lambda: GroupElement(c4, 1, reflection=True),
                 lambda: GroupElement(c4, 1.5)):
        with pytest.raises(ValueError, match="not an element of c4 in canonical form"):
            make()
    with pytest.raises(TypeError, match="group='p4' must be a PlanarGroup"):
        GroupElement("p4", 1)
    g = GroupElement(c4, 1)  # a canonical record is still fine
    x = torch.randn(1, 1, 4, 3, 3)
    assert torch.equal(act(x, g, "regular"), act(x, c4.element(1), "regular"))
    with pytest.raises(TypeError, match="degrees=45 must be a list of angles"):
        get("c8").elements_at(45)
    with pytest.raises(TypeError, match="degrees holds '45'"):
        get("c8").elements_at(["45"])
    with pytest.raises(TypeError, match="so2.element: rotation='1' must be an angle"):
        get("so2").element("1")


def test_modules_store_numpy_flags_as_python_bools():
    """A numpy bool (from a config array) passed the flag check but some modules stored the
    argument itself, so their attributes and reprs held ``np.True_``."""
    import equilayers.nn as el

    flag = np.array([False, True])[1]
    made = [
        (el.GroupMaxPool2d(2, ceil_mode=flag), ("ceil_mode",)),
        (el.GroupAvgPool2d(2, ceil_mode=flag, count_include_pad=flag),
         ("ceil_mode", "count_include_pad")),
        (el.GroupMaxPool3d(2, ceil_mode=flag), ("ceil_mode",)),
        (el.GroupAvgPool3d(2, ceil_mode=flag, count_include_pad=flag),
         ("ceil_mode", "count_include_pad")),
        (el.InvariantHead(4, 3, group="p4", return_pose=flag), ("return_pose",)),
        (el.GroupBatchNorm2d(4, affine=flag, track_running_stats=flag),
         ("affine", "track_running_stats")),
    ]
    for module, names in made:
        for name in names:
            assert type(getattr(module, name)) is bool, (type(module).__name__, name)
