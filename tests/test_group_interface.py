"""The group interface (``equilayers.groups.Group``) on every planar group, and the registry.

Each property is a function that returns the problems it finds, so the same check runs on the
real groups (no problems) and on a deliberately broken one (its negative control: a wrong
matrix, a wrong product, a wrong grid test must be reported).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch

from equilayers.groups import (
    Element,
    Group,
    PlanarGroup,
    SO3Group,
    act_spatial,
    flip,
    get,
    register_group,
    rot90,
)
from equilayers.groups._group import is_signed_permutation
from equilayers.groups._transforms import apply_grid_matrix

PLANAR = ["c1", "c2", "c3", "c4", "c5", "c6", "c8", "c12", "d1", "d2", "d3", "d4", "d6", "d8",
          "so2", "o2"]
PIXEL_EXACT = {"c1", "c2", "c4", "d1", "d2", "d4"}
GRID_SUBGROUP = {"c1": "c1", "c2": "c2", "c3": "c1", "c4": "c4", "c5": "c1", "c6": "c2",
                 "c8": "c4", "c12": "c4", "d1": "d1", "d2": "d2", "d3": "d1", "d4": "d4",
                 "d6": "d2", "d8": "d4", "so2": "c4", "o2": "d4"}


def sample(group: Group) -> list:
    """All elements of a finite group; grid elements and a few others of a continuous one."""
    if group.is_finite:
        return group.elements()
    if isinstance(group, SO3Group):
        inv = (False, True) if group.has_reflections else (False,)
        return group.grid_elements()[::3] + [
            group.from_axis_angle(axis, t, inversion=s)
            for axis, t in (((1, 2, 3), 0.3), ((0, 0, 1), 1.0), ((1, -1, 0.5), 2.5))
            for s in inv]
    flips = (False, True) if group.has_reflections else (False,)
    return group.grid_elements() + [group.element(t, s) for t in (0.3, 1.0, 2.5, 4.0)
                                    for s in flips]


def _key(m: torch.Tensor) -> tuple:
    return tuple(int(v) for v in m.flatten().tolist())


def matrix_problems(group: Group) -> list[str]:
    """``matrix`` is orthogonal float64 CPU of ``spatial_dim`` and a homomorphism."""
    out = []
    d = group.spatial_dim
    eye = torch.eye(d, dtype=torch.float64)
    els = sample(group)
    for g in els:
        m = group.matrix(g)
        if m.dtype != torch.float64 or m.device.type != "cpu" or tuple(m.shape) != (d, d):
            out.append(f"{g!r}: matrix {m.dtype} {m.device} {tuple(m.shape)}")
        elif not torch.allclose(m.T @ m, eye, atol=1e-12):
            out.append(f"{g!r}: matrix not orthogonal {m.tolist()}")
    if not torch.equal(group.matrix(group.identity), eye):
        out.append("identity's matrix is not I")
    for a in els:
        if not torch.allclose(group.matrix(group.inverse(a)), group.matrix(a).T, atol=1e-12):
            out.append(f"matrix({a!r}^-1) != matrix({a!r})^T")
        for b in els:
            ab, prod = group.matrix(group.compose(a, b)), group.matrix(a) @ group.matrix(b)
            exact = group.is_grid(a) and group.is_grid(b)
            if not (torch.equal(ab, prod) if exact else torch.allclose(ab, prod, atol=1e-12)):
                out.append(f"matrix({a!r} * {b!r}) != matrix({a!r}) @ matrix({b!r})")
    return out


def grid_problems(group: Group) -> list[str]:
    """``is_grid`` iff the matrix is a signed permutation (exact integers), and the grid
    subgroup's elements are exactly the grid elements (compared by their matrices)."""
    out = []
    for g in sample(group):
        m = group.matrix(g)
        if group.is_grid(g) != is_signed_permutation(m):
            out.append(f"{g!r}: is_grid={group.is_grid(g)} but matrix {m.tolist()}")
    grid = {_key(group.matrix(g)) for g in group.grid_elements()}
    sub = group.grid_subgroup()
    if {_key(sub.matrix(h)) for h in sub.elements()} != grid:
        out.append(f"grid_subgroup {sub.name} is not the grid elements of {group.name}")
    if not all(sub.is_grid(h) for h in sub.elements()):
        out.append(f"grid_subgroup {sub.name} has off-grid elements")
    return out


@pytest.mark.parametrize("name", PLANAR)
def test_planar_interface(name):
    group = get(name)
    assert isinstance(group, Group) and isinstance(group, PlanarGroup)
    assert group.spatial_dim == 2 and get(group.name) == group
    assert matrix_problems(group) == []
    assert grid_problems(group) == []
    assert group.grid_subgroup() == get(GRID_SUBGROUP[name])
    assert group.pixel_exact == (name in PIXEL_EXACT)
    assert group.has_reflections == name.startswith(("d", "o"))
    assert group.planar_params() == (group.rotation_order, group.has_reflections)


@pytest.mark.parametrize("name", ["so3", "o3"])
def test_so3_interface(name):
    group = get(name)
    assert isinstance(group, SO3Group) and group.spatial_dim == 3 and get(group.name) == group
    assert matrix_problems(group) == []
    assert grid_problems(group) == []
    assert group.grid_subgroup() == get("oh" if name == "o3" else "o")
    assert not group.pixel_exact and group.has_reflections == (name == "o3")
    with pytest.raises(ValueError, match="not a planar group"):
        group.planar_params()


def test_pixel_exact_set():
    names = [f"{k}{n}" for k in "cd" for n in range(1, 17)] + ["so2", "o2", "p4", "p4m"]
    assert {get(n).name for n in names if get(n).pixel_exact} == PIXEL_EXACT


def test_matrix_convention():
    """x right, y up: a quarter turn sends x to y; the flip negates x; exact integers."""
    r, m = get("d4").elements()[1], get("d4").elements()[4]
    assert get("d4").matrix(r).tolist() == [[0.0, -1.0], [1.0, 0.0]]
    assert get("d4").matrix(m).tolist() == [[-1.0, 0.0], [0.0, 1.0]]
    t = get("c8").elements()[1]
    c = math.sqrt(0.5)
    assert torch.allclose(get("c8").matrix(t), torch.tensor([[c, -c], [c, c]],
                                                             dtype=torch.float64))


@pytest.mark.parametrize("name", ["so2", "o2"])
def test_angles_near_a_quarter_turn_are_off_the_grid(name):
    """An angle a micro-radian from a multiple of 90 degrees is no grid element: its matrix is
    the true rotation (not the rounded signed permutation) and it is interpolated, not rot90'd.
    The grid test must round only float noise (1e-9 of a quarter turn), not real angles."""
    group = get(name)
    for t in (math.pi / 2 + 1e-6, math.pi - 2e-6, 3 * math.pi / 2 + 5e-5, 2e-6):
        g = group.element(t)
        want = torch.tensor([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]],
                            dtype=torch.float64)
        assert g.quarter_turns is None and not group.is_grid(g), t
        assert torch.allclose(group.matrix(g), want, rtol=0, atol=1e-15), t
    # control: float noise on an exact quarter turn stays on the grid
    g = group.element(math.radians(90.0) + 1e-13)
    assert g.quarter_turns == 1 and group.is_grid(g)
    assert group.matrix(g).tolist() == [[0.0, -1.0], [1.0, 0.0]]


def test_is_signed_permutation_needs_unit_entries():
    """One nonzero per row and column is not enough: the entries must be +-1 (a scaled
    permutation does not map the grid onto itself)."""
    assert is_signed_permutation(torch.tensor([[0.0, -1.0], [1.0, 0.0]]))
    assert is_signed_permutation(-torch.eye(3))
    assert not is_signed_permutation(torch.tensor([[0.5, 0.0], [0.0, 1.0]]))
    assert not is_signed_permutation(torch.tensor([[0.0, 2.0], [1.0, 0.0]]))
    assert not is_signed_permutation(torch.tensor([[1.0, 1.0], [0.0, 1.0]]))
    assert not is_signed_permutation(torch.ones(2, 3))


def test_old_constructor_builds_planar_groups():
    assert Group(4, False) == get("c4") and type(Group(None, True)) is PlanarGroup
    with pytest.raises(TypeError):
        Incomplete()


@pytest.mark.parametrize("name", ["d4", "o2", "d8", "c2"])
def test_grid_action_is_the_matrix(name, gen):
    """act_spatial of a grid element equals the rot90/flip it stood for, bit for bit, and
    acting twice is acting by the product."""
    group = get(name)
    x = torch.randn(2, 3, 5, 5, generator=gen)
    for g in group.grid_elements():
        old = flip(x) if g.reflection else x
        old = old if g.quarter_turns == 0 else rot90(old, g.quarter_turns)
        assert torch.equal(act_spatial(x, g), old)
        for h in group.grid_elements():
            assert torch.equal(act_spatial(act_spatial(x, h), g), act_spatial(x, g * h))


# --- negative controls: the same checks catch a broken group --------------------------------
class NoFlipMatrix(PlanarGroup):
    """A wrong matrix: the flip is dropped (not a homomorphism of D_N, N > 2)."""

    def matrix(self, g):
        return get(f"c{self.n}").matrix(get(f"c{self.n}").element(g.rotation))


class CommutingCompose(PlanarGroup):
    """A wrong product: rotations add even after a flip (D_N is not abelian)."""

    def compose(self, a, b):
        return self.element(a.rotation + b.rotation, a.reflection != b.reflection)


class EverythingOnGrid(PlanarGroup):
    def is_grid(self, g):
        return True


class WrongGridSubgroup(PlanarGroup):
    def grid_subgroup(self):
        return get("c8")


def test_negative_controls():
    assert matrix_problems(NoFlipMatrix(4, True))
    assert matrix_problems(CommutingCompose(4, True))
    assert grid_problems(EverythingOnGrid(8, False))
    assert grid_problems(WrongGridSubgroup(8, False))
    scaled = type("Scaled", (PlanarGroup,), {"matrix": lambda s, g: 2 * PlanarGroup.matrix(s, g)})
    assert any("orthogonal" in p for p in matrix_problems(scaled(4, False)))
    assert not is_signed_permutation(torch.tensor([[1.0, 1e-17], [0.0, 1.0]]))
    assert not is_signed_permutation(torch.tensor([[1.0, 0.0], [1.0, 0.0]]))


# --- the registry ---------------------------------------------------------------------------
class Incomplete(Group):
    """No matrix, no product: cannot be built."""


class FlipY(Group):
    """A toy group outside the planar family: ``{e, m_y}``, ``m_y`` the flip ``y -> -y``
    (elements are the ints 0 and 1). Only the abstract members are written; the rest is the
    interface's generic defaults."""

    name = "flipy"
    spatial_dim = 2
    order = 2
    identity = 0

    def elements(self):
        return [0, 1]

    def compose(self, a, b):
        return a ^ b

    def inverse(self, a):
        return a

    def matrix(self, g):
        return torch.diag(torch.tensor([1.0, -1.0 if g else 1.0], dtype=torch.float64))

    def grid_subgroup(self):
        return self

    def _key(self):
        return ()


def test_registered_toy_group(gen):
    with register_group(r"flip(y|x)", lambda axis: FlipY() if axis == "y" else None,
                        form="'flipy'"):
        toy = get(" FlipY ")
        assert toy is get("flipy") and toy == FlipY() and isinstance(toy, Group)
        assert matrix_problems(toy) == [] and grid_problems(toy) == []
        assert toy.pixel_exact and toy.has_reflections and toy.is_finite
        assert toy.cayley_table.tolist() == [[0, 1], [1, 0]]
        assert toy.regular_permutation(1).tolist() == [1, 0]
        x = torch.randn(2, 4, 5, generator=gen)  # y up: the flip of y reverses the rows
        assert torch.equal(apply_grid_matrix(x, toy.matrix(1)), torch.flip(x, dims=(-2,)))
        with pytest.raises(ValueError, match="not a planar group"):
            toy.planar_params()
        with pytest.raises(ValueError, match="valid forms: .*'flipy'"):
            get("flipx")  # matches, but the factory says no such group
        with pytest.raises(ValueError, match="already registered"):
            register_group(r"flip(y|x)", FlipY, form="'flipy'")
    with pytest.raises(ValueError, match="unknown group='flipy'") as info:
        get("flipy")
    assert "'flipy'" not in str(info.value).split("valid forms:")[1]


@dataclass(frozen=True)
class _MirrorElement(Element):
    group: Group
    flip: bool


class Mirror(Group):
    """A registered family with element records, as a user writes one: ``{e, m}``, ``m`` the
    flip ``x -> -x`` (the columns reversed)."""

    name = "mirror"
    spatial_dim = 2
    order = 2

    @property
    def identity(self):
        return _MirrorElement(self, False)

    def elements(self):
        return [_MirrorElement(self, False), _MirrorElement(self, True)]

    def compose(self, a, b):
        return _MirrorElement(self, a.flip != b.flip)

    def inverse(self, a):
        return a

    def matrix(self, g):
        return torch.diag(torch.tensor([-1.0 if g.flip else 1.0, 1.0], dtype=torch.float64))

    def grid_subgroup(self):
        return self

    def _key(self):
        return ()


def test_registered_group_runs_the_group_convs(gen):
    """A registered family needs no edit above floor 1 (ARCHITECTURE.md): a lifting conv, a
    group conv (its weight's group axis one slot per element: no Fourier basis is written for
    the family) and a pool on it are exactly equivariant; the control, a plain conv per fiber
    slot, is not. Before, GroupConv2d refused every group but C_N/D_N."""
    from equilayers.nn import GroupConv2d, GroupPool, LiftingConv2d
    from equilayers.testing import equivariance_error

    with register_group(r"mirror", Mirror, form="'mirror'"):
        net = torch.nn.Sequential(LiftingConv2d(2, 3, 3, padding=1, group="mirror"),
                                  torch.nn.ReLU(), GroupConv2d(3, 3, 3, padding=1, group="mirror"),
                                  GroupPool("max")).double()
        x = torch.randn(2, 2, 7, 7, generator=gen, dtype=torch.float64)
        assert equivariance_error(net, x, "mirror", out_rep="trivial") < 1e-12
        assert torch.equal(net[2].group_basis, torch.eye(2, dtype=torch.float64))
        plain = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3, padding=1), torch.nn.ReLU(),
                                    torch.nn.Conv2d(3, 3, 3, padding=1)).double()
        assert equivariance_error(plain, x, "mirror", in_rep="trivial", out_rep="trivial") > 0.1


def test_registry_rejects_a_factory_that_returns_no_group():
    with register_group(r"notagroup", lambda: "c4", form="'notagroup'"):
        with pytest.raises(TypeError, match="not a Group"):
            get("notagroup")
    # negative control of the cleanup: a registration that is not removed stays visible
    reg = register_group(r"lingers", lambda: get("c2"), form="'lingers'")
    assert get("lingers") == get("c2")
    reg.remove()
    with pytest.raises(ValueError, match="unknown group"):
        get("lingers")


def test_registry_keeps_aliases_and_caches():
    assert get("p4") is get("c4") and get("p4m") is get("d4")
    assert get("so2") is get(" SO2")


def test_registry_refuses_registrations_get_could_never_reach():
    """A literal name an earlier pattern already answers ('c4') would never be reached (get
    tries registrations in order): refused naming the pattern that takes it. A factory that
    cannot take the pattern's groups is refused at registration, not at the first get().
    Patterns match case-insensitively (names are lower-cased): 'UPPER2' is reachable. The
    control: a free literal name registers."""
    with pytest.raises(ValueError, match=r"'c4' is already answered by the registered pattern"):
        register_group(r"c4", lambda: get("d4"), form="'c4' mine")
    with pytest.raises(TypeError, match=r"must take 1 positional argument\(s\), one per group"):
        register_group(r"mine(\d+)", lambda: get("c2"), form="'mineN'")
    with register_group(r"UPPER2", lambda: get("c2"), form="'UPPER2'"):
        assert get("UPPER2") == get("c2") and get("upper2") == get("c2")
    with register_group(r"square", lambda: get("d4"), form="'square'"):
        assert get("square") == get("d4")


def test_registry_warns_when_a_later_pattern_is_shadowed_for_a_name():
    r"""A pattern cannot be checked against the earlier ones at registration (it names many
    groups): r"(t)(\d*)" takes 't2' but 't' stays the tetrahedral group, silently before.
    The lookup of 't' now warns naming both patterns; 't2', which only the new pattern
    answers, does not (the control)."""
    import warnings
    with register_group(r"(t)(\d*)", lambda t, n: get(f"c{n or 1}"), form="'tN' mine"):
        with pytest.warns(UserWarning, match=r"'t' also matches the later registered pattern "
                                             r".*'tN' mine.*answers it: get\('t'\)"):
            assert get("t").order == 12
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert get("t2") == get("c2")


def test_so2_angles_stay_in_range():
    """A tiny negative angle rounds to 2 pi under float modulo; the element is the identity
    (angle 0), as documented ([0, 2 pi))."""
    so2 = get("so2")
    assert so2.element(-1e-17).rotation == 0.0 and so2.element(-1e-17) == so2.identity
    assert so2.inverse(so2.element(1e-17)).rotation < 2 * math.pi
    assert so2.element(-0.5).rotation == pytest.approx(2 * math.pi - 0.5)  # the control


class _Turn3(Mirror):
    """A user's C3: 120-degree turns, off the pixel grid (its grid subgroup is trivial)."""

    name = "turn3"
    order = 3

    def elements(self):
        return [_MirrorElement(self, k) for k in range(3)]  # (the record's field holds k)

    def compose(self, a, b):
        return _MirrorElement(self, (a.flip + b.flip) % 3)

    def inverse(self, a):
        return _MirrorElement(self, -a.flip % 3)

    def matrix(self, g):
        t = 2 * math.pi * g.flip / 3
        return torch.tensor([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]],
                            dtype=torch.float64)

    def grid_subgroup(self):
        return get("c1")


def test_a_registered_group_asks_for_a_basis_it_cannot_have_by_name():
    """Steerable filters read a planar group's angles: a user's group with basis='harmonic',
    or one off the pixel grid (whose default basis was 'harmonic'), failed with
    AttributeError 'no attribute angle'; and the pixel basis told it to use 'harmonic'."""
    from equilayers.nn import GroupConv2d, LiftingConv2d

    with register_group(r"mirror", Mirror, form="'mirror'"):
        with pytest.raises(ValueError, match=r"group 'mirror' is not a planar group.*use "
                                             r"basis='pixel'"):
            GroupConv2d(2, 2, 3, group="mirror", basis="harmonic")
        GroupConv2d(2, 2, 3, group="mirror")  # the control: its pixel basis builds
    with register_group(r"turn3", _Turn3, form="'turn3'"):
        for make in (lambda: LiftingConv2d(1, 2, 3, group="turn3"),
                     lambda: GroupConv2d(1, 2, 3, group="turn3", basis="pixel")):
            with pytest.raises(ValueError, match=r"'turn3' has elements off the pixel grid.*"
                                                 r"use a planar cN / dN"):
                make()
