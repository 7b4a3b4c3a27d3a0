"""The icosahedral group ``"ico"`` and its 3-D convs: the group, its Fourier basis, the turned
filter basis, exactness on the grid subgroup ``"t"``, the measured off-grid error against a
plain control, and the errors."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from equilayers import check_grid
from equilayers.functional import group_conv3d
from equilayers.functional._ico_conv import ico_white_map
from equilayers.functional._voxel_basis import _terms, rotated_voxel_basis, voxel_basis
from equilayers.groups import IcosahedralGroup, act, get, group_fourier_basis, wigner_d
from equilayers.groups._fourier_basis import fourier_row_dims
from equilayers.groups._subgroups import check_subgroup
from equilayers.nn import GroupConv3d, GroupConvTranspose3d, LiftingConv3d
from equilayers.testing._case import seeded

ICO = get("ico")


def _angles(grp) -> Counter:
    return Counter(round(math.degrees(math.acos(max(-1.0, min(1.0, (float(
        grp.matrix(g).trace()) - 1) / 2))))) for g in grp.elements())


# --- the group ---------------------------------------------------------------------------------
def test_group_axioms_and_classes():
    assert isinstance(ICO, IcosahedralGroup) and ICO.order == 60 and ICO.spatial_dim == 3
    assert not ICO.pixel_exact and not ICO.has_reflections and ICO.grid_subgroup() == get("t")
    table = ICO.cayley_table
    ar = torch.arange(60)
    assert all(torch.equal(row.sort().values, ar) for row in table)
    assert all(torch.equal(col.sort().values, ar) for col in table.t())
    a, b, c = torch.meshgrid(ar, ar, ar, indexing="ij")
    assert torch.equal(table[table[a, b], c], table[a, table[b, c]])
    for g in ICO.elements():
        m = ICO.matrix(g)
        torch.testing.assert_close(m @ m.T, torch.eye(3, dtype=torch.float64))
        assert abs(float(torch.linalg.det(m)) - 1) < 1e-12
        assert g * g.inverse() == ICO.identity
    for g, h in zip(ICO.elements()[::7], ICO.elements()[3::11], strict=False):
        torch.testing.assert_close(ICO.matrix(g * h), ICO.matrix(g) @ ICO.matrix(h))
    # the icosahedron's classes: identity, 12 + 12 five-fold turns, 20 three-fold, 15 half
    assert _angles(ICO) == Counter({0: 1, 72: 12, 144: 12, 120: 20, 180: 15})
    # its vertices (0, +-1, +-phi) and their cyclic permutations are permuted by every element
    phi = (1 + 5 ** 0.5) / 2
    v = [(0.0, s * 1.0, t * phi) for s in (1, -1) for t in (1, -1)]
    verts = torch.tensor([p for a, b, c in v for p in ((a, b, c), (c, a, b), (b, c, a))],
                         dtype=torch.float64)
    for g in ICO.elements():
        moved = verts @ ICO.matrix(g).T
        assert float(torch.cdist(moved, verts).min(1).values.max()) < 1e-12


def test_full_group_is_ico_and_the_inversion():
    ih = get("ih")
    assert ih.order == 120 and ih.has_reflections and ih.grid_subgroup() == get("th")
    assert not ih.pixel_exact and ih != ICO
    for i in (0, 7, 33, 59):  # slot 60 + i: the inversion times slot i of "ico"
        torch.testing.assert_close(ih.matrix(ih.elements()[60 + i]),
                                   -ICO.matrix(ICO.elements()[i]), rtol=0, atol=0)
        assert ih.elements()[i].rows == ICO.elements()[i].rows
    table = ih.cayley_table
    ar = torch.arange(120)
    assert all(torch.equal(row.sort().values, ar) for row in table)
    a, b, c = torch.meshgrid(ar[::3], ar, ar[::5], indexing="ij")
    assert torch.equal(table[table[a, b], c], table[a, table[b, c]])
    th = get("th")
    assert [g.rows for g in ih.grid_elements()] == [
        tuple(tuple(float(v) for v in r) for r in h.rows) for h in th.elements()]
    assert [g for g in ih.elements() if g.is_grid] == ih.elements()[:12] + ih.elements()[60:72]
    check_subgroup("ih", "ico")
    check_subgroup("ih", "th")
    check_subgroup("o3", "ih")
    with pytest.raises(ValueError, match="not a subgroup"):
        check_subgroup("so3", "ih")
    # its Fourier basis: I's rows on the rotation part, then times the parity
    f, fi = group_fourier_basis("ih"), group_fourier_basis("ico")
    torch.testing.assert_close(f @ f.T, torch.eye(120, dtype=torch.float64), rtol=0, atol=1e-13)
    torch.testing.assert_close(f[:60] * 2 ** 0.5, torch.cat([fi, fi], 1))
    torch.testing.assert_close(f[60:] * 2 ** 0.5, torch.cat([fi, -fi], 1))
    assert fourier_row_dims("ih").tolist() == fourier_row_dims("ico").tolist() * 2


@pytest.mark.parametrize("name", ["ico", "ih"])
def test_pickle_and_deepcopy_after_the_slot_cache(name):
    """The group caches its elements' slots (keyed by elements, whose hash needs the group's
    flag): it pickles and deep-copies from the flag, equal to the original."""
    import copy
    import pickle

    grp = get(name)
    g = grp.elements()[37]
    assert grp.index(g) == 37  # fills the cache
    for back in (pickle.loads(pickle.dumps(grp)), copy.deepcopy(grp)):
        assert back == grp and back.order == grp.order and back.index(g) == 37
    h = pickle.loads(pickle.dumps(g))
    assert h == g and h.group.name == name


def test_grid_subgroup_is_the_first_twelve_slots():
    t = get("t")
    grid = [g for g in ICO.elements() if g.is_grid]
    assert grid == ICO.elements()[:12] == ICO.grid_elements()
    assert [g.rows for g in grid] == [tuple(tuple(float(v) for v in r) for r in h.rows)
                                      for h in t.elements()]
    check_subgroup("ico", "t")
    check_subgroup("so3", "ico")
    with pytest.raises(ValueError, match="not a subgroup"):
        check_subgroup("ico", "o")
    # slots 12 j + i = r^j t_i: left cosets of t
    r = ICO.elements()[12]
    for j in range(5):
        for i in (0, 5, 11):
            want = ICO.matrix(r).matrix_power(j) @ ICO.matrix(ICO.elements()[i])
            torch.testing.assert_close(ICO.matrix(ICO.elements()[12 * j + i]), want)
    assert ICO.element(ICO.matrix(ICO.elements()[17])) == ICO.elements()[17]
    with pytest.raises(ValueError, match="not one of the 60 symmetries"):
        ICO.element(get("so3").from_axis_angle((0, 0, 1), 0.3).matrix)


def test_check_grid_reads_the_grid_subgroup_and_names_the_off_grid_rotations():
    """check_grid of an icosahedral model: the grid law of T, plus one off-grid finding for
    the 48 elements no voxel grid carries (which T itself does not get)."""
    net = nn.Sequential(LiftingConv3d(1, 2, 3, padding=1, group="ico", basis="harmonic"))
    for name, grid in (("ico", "t"), ("ih", "th")):
        found = check_grid(net, (1, 1, 7, 7, 7), name, shifts=False)
        # an ico layer asked about ih: no inversion in its weights (group-mismatch)
        assert [f.problem for f in found] == ["off-grid-group"] + (
            ["group-mismatch"] if name == "ih" else [])
        assert f"exact: its elements in {grid!r}" in found[0].message
    assert check_grid(net, (1, 1, 7, 7, 7), "t", shifts=False) == []


def test_fourier_basis_spans_each_irrep():
    f = group_fourier_basis("ico")
    torch.testing.assert_close(f @ f.T, torch.eye(60, dtype=torch.float64), rtol=0, atol=1e-13)
    dims = fourier_row_dims("ico").long().tolist()
    assert dims == [1] + [3] * 18 + [4] * 16 + [5] * 25
    # each irrep's rows span a space that translations on either side keep (two-sided ideal)
    table = ICO.cayley_table
    inv = torch.tensor([ICO.index(g.inverse()) for g in ICO.elements()])

    def leaks(rows: torch.Tensor) -> float:
        proj = rows.T @ rows
        worst = 0.0
        for g in range(0, 60, 7):
            left = rows[:, table[inv[g]]]  # (L_g f)(x) = f(g^-1 x)
            right = rows[:, table[:, g]]  # (R_g f)(x) = f(x g)
            worst = max(worst, float((left - left @ proj).abs().max()),
                        float((right - right @ proj).abs().max()))
        return worst

    start = 0
    for size in (1, 9, 9, 16, 25):
        assert leaks(f[start:start + size]) < 1e-12
        start += size
    # T1: the rotation matrix's entries; control: 9 rows mixed across irreps leak
    torch.testing.assert_close(f[1:10] * (60 / 3) ** 0.5, torch.stack(
        [ICO.matrix(g).flatten() for g in ICO.elements()], 1))
    assert leaks(torch.linalg.qr((f[5:14] + f[30:39]).T)[0].T) > 0.1


# --- the turned filter basis ---------------------------------------------------------------------
@pytest.mark.parametrize("k,name", [(3, "ico"), (5, "ico"), (3, "ih")])
def test_turned_basis_is_the_turned_continuous_filter(k, name):
    group = get(name)
    rotated = rotated_voxel_basis(group, k, None)
    base = voxel_basis(k, None)
    assert torch.equal(rotated[0], base)
    for g, rows in zip(group.elements(), rotated, strict=True):  # the grid: permutations
        if not g.is_grid:
            continue
        moved = act(base.view(-1, k, k, k), g).reshape(len(base), -1)
        assert torch.equal(moved, rows)
    # every element: the Wigner matrices on each shell's Y_J block turn the coefficients
    terms, _ = _terms(k, None)
    norms = torch.tensor([t[4] for t in terms], dtype=torch.float64)
    c = torch.randn(len(terms), generator=torch.Generator().manual_seed(k),
                    dtype=torch.float64)

    def turned(m: torch.Tensor) -> torch.Tensor:
        a = (c / norms).clone()
        i = 0
        while i < len(terms):
            j = terms[i][2]
            a[i:i + 2 * j + 1] = wigner_d(j, m) @ a[i:i + 2 * j + 1]
            i += 2 * j + 1
        return (a * norms) @ base

    for s in (12, 13, 29, 47, 59) + ((72, 99) if name == "ih" else ()):
        m = group.matrix(group.elements()[s])  # (ih: 72, 99 are improper)
        torch.testing.assert_close(c @ rotated[s], turned(m), rtol=0, atol=1e-12)
    # control: the inverse turn (slot 12 is a five-fold turn, not its own inverse)
    assert float((c @ rotated[12] - turned(ICO.matrix(ICO.elements()[12]).T)).abs().max()) > 1e-2


# --- the convs ---------------------------------------------------------------------------------
def _seeded(build, seed=0):
    return seeded(build, seed)()


def test_expansion_is_the_turned_filter_per_slot():
    conv = _seeded(lambda: GroupConv3d(2, 3, 3, padding=1, group="ico", dtype=torch.float64))
    lift = _seeded(lambda: LiftingConv3d(2, 3, 3, padding=1, group="ico", dtype=torch.float64))
    rotated = rotated_voxel_basis(ICO, 3, None)
    w = lift.expanded_filter().view(3, 60, 2, 27)
    torch.testing.assert_close(w[1, 17], lift.weight[1] @ rotated[17])
    inv = torch.tensor([ICO.index(g.inverse()) for g in ICO.elements()])
    per_slot = torch.einsum("ochn,hk->ockn", conv.weight, conv.group_basis)  # per element
    big = conv.expanded_filter().view(3, 60, 2, 60, 27)
    g, h = 23, 41
    s = int(ICO.cayley_table[inv[g], h])  # g^-1 h
    torch.testing.assert_close(big[2, g, 1, h], per_slot[2, 1, s] @ rotated[g])
    x = torch.randn(1, 2, 60, 5, 5, 5, dtype=torch.float64)
    want = F.conv3d(x.flatten(1, 2), conv.expanded_filter(), conv.bias.repeat_interleave(60),
                    padding=1).unflatten(1, (3, 60))
    torch.testing.assert_close(conv(x), want)


@pytest.mark.parametrize("name,dtype,tol", [("ico", torch.float64, 1e-12),
                                            ("ico", torch.float32, 1e-5),
                                            ("ih", torch.float64, 1e-12)])
def test_exact_on_the_grid_subgroup(name, dtype, tol):
    grp = get(name)
    lift = _seeded(lambda: LiftingConv3d(1, 2, 5, padding=2, group=name, dtype=dtype))
    conv = _seeded(lambda: GroupConv3d(2, 2, 3, stride=2, padding=1, group=name, dtype=dtype))
    up = _seeded(lambda: GroupConvTranspose3d(2, 1, 3, 2, 1, group=name, dtype=dtype))
    x = torch.randn(2, 1, 7, 7, 7, generator=torch.Generator().manual_seed(0)).to(dtype)

    def net(v):
        return up(torch.relu(conv(torch.relu(lift(v)))))

    with torch.no_grad():
        y = net(x)
        worst = max(float((net(act(x, g)) - act(y, g, "regular")).abs().max())
                    for g in grp.grid_elements())
    assert len(grp.grid_elements()) == (24 if name == "ih" else 12)
    assert worst < tol * float(y.abs().max())
    # control: an element off the grid, applied by interpolation, is not exact
    g = grp.elements()[20]
    with torch.no_grad():
        assert float((net(act(x, g)) - act(y, g, "regular")).abs().max()) > 1e-2


def _smooth_ball(n: int, seed: int) -> torch.Tensor:
    from benchmarks.bench_equivariance3d import volume

    return volume(n, seed)


@pytest.mark.parametrize("k,bound", [(3, 0.25), (5, 0.12)])
def test_off_grid_error_is_small_against_a_plain_stack(k, bound):
    """The docstring's numbers: three convs on a smooth ball-windowed volume, 25^3, the
    worst of 3 off-grid elements; a plain nn.Conv3d stack of the same shapes errs ~1.4."""
    from benchmarks.bench_equivariance3d import _radius, _rel

    n = 25
    mask = (_radius(n) <= (n - 1) / 2 - 1).double()
    ours = _seeded(lambda: nn.Sequential(
        LiftingConv3d(1, 2, k, padding=k // 2, group="ico"), nn.ReLU(),
        GroupConv3d(2, 2, k, padding=k // 2, group="ico"), nn.ReLU(),
        GroupConv3d(2, 1, k, padding=k // 2, group="ico")))
    plain = _seeded(lambda: nn.Sequential(
        nn.Conv3d(1, 120, k, padding=k // 2), nn.ReLU(), nn.Conv3d(120, 120, k, padding=k // 2),
        nn.ReLU(), nn.Conv3d(120, 60, k, padding=k // 2), nn.Unflatten(1, (1, 60))))
    x = _smooth_ball(n, 0)
    off = [ICO.elements()[i] for i in (14, 33, 50)]
    with torch.no_grad():
        errors = {}
        for name, model in (("ours", ours), ("plain", plain)):
            y = model(x)
            errors[name] = max(_rel(model(act(x, g)), act(y, g, "regular"), mask) for g in off)
    assert errors["ours"] < bound < 1.0 < errors["plain"]


def test_white_init_rescales_whole_irreps():
    """k = 3: shells of J = 0 (two, A), J = 1 (T1), J = 2 (H): i.i.d. coefficients put 2, 3
    and 5 of 10 dims there, a regular field 1, 9 and 25 of 35; the map rescales the blocks."""
    m = ico_white_map(ICO, 3, None)
    terms, _ = _terms(3, None)
    order = torch.tensor([t[2] for t in terms])
    assert (m - torch.diag(m.diag())).abs().max() < 1e-12  # no J block mixes (norms aside)
    share = {j: float((m.diag()[order == j] ** 2).sum()) for j in (0, 1, 2)}
    total = sum(share.values())
    for j, want in ((0, 1 / 35), (1, 9 / 35), (2, 25 / 35)):
        assert abs(share[j] / total - want) < 1e-9
    conv = _seeded(lambda: GroupConv3d(8, 8, 3, padding=1, group="ico", bias=False))
    x = torch.randn(2, 8, 60, 7, 7, 7, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        second = float(conv(x)[..., 2:-2, 2:-2, 2:-2].pow(2).mean())
    assert 0.8 < second < 1.25


def test_errors_name_the_fix():
    with pytest.raises(ValueError, match="basis='harmonic'"):
        GroupConv3d(1, 1, 3, group="ico", basis="voxel")
    with pytest.raises(ValueError, match="group='ico' turns filters off the voxel grid"):
        group_conv3d(torch.randn(1, 1, 60, 3, 3, 3), torch.randn(1, 1, 60, 3, 3, 3), group="ico")
    with pytest.raises(ValueError, match="and the icosahedral 'ico'"):
        LiftingConv3d(1, 1, 3, group="c4")
    with pytest.raises(ValueError, match=r"\|G\|=60 slots"):
        GroupConv3d(1, 1, 3, group="ico")(torch.randn(1, 1, 24, 3, 3, 3))
    conv = GroupConv3d(1, 1, 3, group="ico")
    assert "basis" not in repr(conv) and "group='ico'" in repr(conv)
