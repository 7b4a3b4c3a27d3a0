"""The 3-D group convs' weights: the group axis in the cube group's Fourier basis (rows: the
entries of its irreps), version-1 checkpoints (one slot per element) converted on load, and the
init's white response to slot-constant inputs (:mod:`equilayers.functional._white_init`)."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from conftest import seeded_rng

from equilayers.functional import _gconv3d as G3
from equilayers.functional._gconv import from_fourier
from equilayers.functional._voxel_basis import voxel_basis
from equilayers.functional._white_init import white_map
from equilayers.groups import get, group_fourier_basis
from equilayers.groups._fourier_basis import fourier_row_dims
from equilayers.nn import GroupConv3d, GroupConvTranspose3d, LiftingConv3d

CUBE = ["o", "oh", "c4z", "d4z", "t", "th"]


def _homomorphism_error(f: torch.Tensor, group, offset: int = 0) -> float:
    """The rows of each irrep, read as ``rho(g)`` (``d x d``, scaled by ``sqrt(|G| / d)``):
    the largest ``|rho(g h) - rho(g) rho(h)|`` over all pairs (``f``: the basis from row
    ``offset`` on)."""
    n = int(group.order)
    table = group.cayley_table
    dims = fourier_row_dims(group).long().tolist()[offset:]
    n_rows = len(dims)
    worst, i = 0.0, 0
    while i < n_rows:
        d = dims[i]
        rho = (f[i:i + d * d] * (n / d) ** 0.5).T.reshape(n, d, d)
        prod = torch.einsum("gab,hbc->ghac", rho, rho)
        worst = max(worst, float((rho[table] - prod).abs().max()))
        i += d * d
    return worst


@pytest.mark.parametrize("name", CUBE)
def test_cubic_fourier_basis_is_orthonormal_irrep_entries(name):
    grp = get(name)
    f = group_fourier_basis(grp)
    n = int(grp.order)
    torch.testing.assert_close(f @ f.T, torch.eye(n, dtype=torch.float64), rtol=0, atol=1e-14)
    torch.testing.assert_close(f[0], torch.full((n,), n ** -0.5, dtype=torch.float64))
    if name in ("o", "oh"):
        assert _homomorphism_error(f, grp) < 1e-12
        # control: the same rows with two elements' columns swapped are no irreps
        assert _homomorphism_error(f[:, [1, 0, *range(2, n)]], grp) > 0.1
    elif name == "t":  # T1 as o's; E's complex pair as one character cos + i sin
        assert _homomorphism_error(f[3:], grp, offset=3) < 1e-12
        z = torch.complex(f[1], f[2]) * (n / 2) ** 0.5
        table = grp.cayley_table
        assert float((z[table] - z[:, None] * z[None, :]).abs().max()) < 1e-12
        torch.testing.assert_close(z[:4], torch.ones(4, dtype=z.dtype))  # trivial on d_k
        swapped = torch.complex(f[1, [4, *range(1, 4), 0, *range(5, n)]], f[2]) * (n / 2) ** 0.5
        assert float((swapped[table] - swapped[:, None] * swapped[None, :]).abs().max()) > 0.1
    elif name == "th":  # t's rows on the rotation part, then the same times the parity
        ft = group_fourier_basis("t")
        torch.testing.assert_close(f[:12] * 2 ** 0.5, torch.cat([ft, ft], 1))
        torch.testing.assert_close(f[12:] * 2 ** 0.5, torch.cat([ft, -ft], 1))
    else:  # listed as the planar c4 / d4, slot for slot
        planar = group_fourier_basis("c4" if name == "c4z" else "d4")
        torch.testing.assert_close(f, planar, rtol=0, atol=0)
    assert fourier_row_dims(grp).numel() == n


def _norms(basis: str, group="o") -> torch.Tensor:
    """The element norms the layers' docstring states: ``sqrt(d / |G|)`` per Fourier row for
    the harmonic basis, 1 for the voxel one (written out here, not read from the layer)."""
    n = int(get(group).order)
    dims = fourier_row_dims(group)
    return (dims / n).sqrt() if basis == "harmonic" else torch.ones(n, dtype=torch.float64)


@pytest.mark.parametrize("basis", ["voxel", "harmonic"])
@pytest.mark.parametrize("cls", [GroupConv3d, GroupConvTranspose3d])
def test_older_checkpoints_are_converted_on_load(cls, basis, gen):
    """State dicts of metadata version 1 (one slot per element) and 2 (unit element norms)
    load into the same filters; one without metadata loads as this version's (3); a lifting
    conv's weight has no group axis to convert."""
    kw = {"group": "o", "basis": basis}
    new = cls(2, 3, 3, padding=1, **kw).double()
    sd = new.state_dict()
    assert sd._metadata[""]["version"] == 3
    unit = sd["weight"] * _norms(basis).view(-1, *[1] * (sd["weight"].dim() - 3))
    per_element = from_fourier(unit, group_fourier_basis("o"))
    for version, weight in ((1, per_element), (2, unit)):
        old = OrderedDict((k, v.clone()) for k, v in sd.items())
        old._metadata = {"": {"version": version}}
        old["weight"] = weight.clone()
        other = cls(2, 3, 3, padding=1, **kw).double()
        other.load_state_dict(old)
        torch.testing.assert_close(other.weight, new.weight, rtol=0, atol=1e-14)
        torch.testing.assert_close(other.expanded_filter(), new.expanded_filter(), rtol=0,
                                   atol=1e-13)
        again = cls(2, 3, 3, padding=1, **kw).double()
        again.load_state_dict(as_new := OrderedDict(old))  # no metadata: this version's
        assert torch.equal(again.weight, as_new["weight"])
        if version == 1 or basis == "harmonic":  # control (voxel: versions 2 and 3 agree)
            assert not torch.allclose(again.expanded_filter(), new.expanded_filter())
    if basis == "voxel":
        torch.testing.assert_close(per_element, new.voxel_filter(), rtol=0, atol=1e-14)
    lift = LiftingConv3d(2, 3, 3, padding=1, **kw).double()
    lsd = lift.state_dict()
    lsd._metadata = {"": {"version": 1}}
    other_lift = LiftingConv3d(2, 3, 3, padding=1, **kw).double()
    other_lift.load_state_dict(lsd)
    assert torch.equal(other_lift.weight, lift.weight)


@pytest.mark.parametrize("name", CUBE)
@pytest.mark.parametrize("basis", ["voxel", "harmonic"])
def test_element_norms(basis, name):
    """One unit Fourier coefficient expands to a filter of norm ``sqrt(d)`` (``d`` its irrep's
    dimension) with the harmonic basis, escnn's ``R3Conv`` element norm, and ``sqrt(|G|)``
    with the voxel basis (as the planar pixel convs); the init divides the norms out, so the
    filters' second moment does not depend on them."""
    conv = GroupConv3d(1, 1, 3, group=name, basis=basis, bias=False).double()
    n = int(conv.group.order)
    dims = fourier_row_dims(name)
    norms = []
    with torch.no_grad():
        for k in range(n):
            conv.weight.zero_()
            conv.weight[0, 0, k].view(-1)[0] = 1.0
            norms.append(float(conv.expanded_filter().norm()))
    want = dims.sqrt() if basis == "harmonic" else torch.full((n,), n ** 0.5, dtype=torch.float64)
    torch.testing.assert_close(torch.tensor(norms, dtype=torch.float64), want,
                               rtol=1e-12, atol=0)
    if basis == "harmonic":  # control: the unit norms differ wherever d < |G|
        assert not torch.allclose(torch.tensor(norms, dtype=torch.float64),
                                  torch.full((n,), n ** 0.5, dtype=torch.float64))


def _orbit_average(group, k: int) -> torch.Tensor:
    """The ``(k^3, k^3)`` projector onto the filters every element leaves alone."""
    n = int(group.order)
    perm = G3.expansion_table(group, k, lifting=True).reshape(n, k ** 3)
    eye = torch.eye(k ** 3, dtype=torch.float64)
    return torch.stack([eye[perm[g]] for g in range(n)]).mean(0)


def _invariant_share(m: torch.Tensor, basis: torch.Tensor, avg: torch.Tensor) -> float:
    """For i.i.d. coefficients ``c``, ``E |avg(c M B)|^2 / E |c M B|^2`` (exact, by traces)."""
    f = m @ basis
    return float((f @ avg.T @ avg @ f.T).trace() / (f @ f.T).trace())


#: ``sum d_j^2`` over the irreps the k = 3 filters hold (voxel, harmonic), by hand: O on the
#: voxels: centre A1, faces A1+E+T1, edges A1+E+T1+T2+T2, corners A1+A2+T1+T2: all five
#: (24); harmonic (l <= 2 on shells): A1, T1 (l = 1), E+T2 (l = 2), no A2 (23). O_h: the
#: same with parities: centre A1g, faces A1g+Eg+T1u, edges A1g+Eg+T1u+T2g+T2u, corners
#: A1g+A2u+T1u+T2g (1+4+9+9+9+1 = 33); harmonic A1g, T1u, Eg+T2g (23). C4z: every slice's
#: 4-cycles hold all of C4's irreps (4, 4). D4z: the 4-point orbits hold A1, one of B1/B2
#: and E each, and no A2; l <= 2 has no A2 either (7, 7). T: A, E (its complex pair, 1 + 1) and
#: T (9) in both: l = 2 is E + T (12, 12). T_h: O_h's restricted, A1g -> Ag, A2u -> Au,
#: Eg -> Eg, T1u and T2u -> Tu, T2g -> Tg: the voxels hold all but Eu (22), the harmonic basis
#: Ag, Tu, Eg, Tg (21).
PRESENT = {"o": (24, 23), "oh": (33, 23), "c4z": (4, 4), "d4z": (7, 7), "t": (12, 12),
           "th": (22, 21)}


@pytest.mark.parametrize("name", CUBE)
@pytest.mark.parametrize("harmonic", [False, True])
def test_white_map_gives_the_invariant_part_its_regular_share(name, harmonic):
    """The invariant part of the whitened filter has the energy share of an i.i.d. regular
    field's, ``1/|G|``, renormalized over the irreps the filter space holds
    (``1 / sum d_j^2`` over them, :data:`PRESENT`); the expected energy is unchanged, and the
    map commutes with the group (it only rescales whole isotypic parts). Control: the i.i.d.
    draw puts more than 1.3 times that share there."""
    grp = get(name)
    n = int(grp.order)
    basis = voxel_basis(3, None) if harmonic else torch.eye(27, dtype=torch.float64)
    m = white_map(grp, 3, None, harmonic)
    avg = _orbit_average(grp, 3)
    assert abs(_invariant_share(m, basis, avg) - 1 / PRESENT[name][harmonic]) < 1e-9
    torch.testing.assert_close((m @ basis @ basis.T @ m.T).trace(), (basis @ basis.T).trace())
    iid = _invariant_share(torch.eye(basis.shape[0], dtype=torch.float64), basis, avg)
    assert iid > 1.3 / PRESENT[name][harmonic]
    # the map on filters, B^+ M B, commutes with every element's permutation of the voxels
    on_filters = torch.linalg.pinv(basis) @ m @ basis
    perm = G3.expansion_table(grp, 3, lifting=True).reshape(n, 27)
    eye = torch.eye(27, dtype=torch.float64)
    q = basis.T @ torch.linalg.pinv(basis.T)  # the projector onto the filter space
    for g in range(n):
        p = q @ eye[perm[g]] @ q
        torch.testing.assert_close(on_filters @ p, p @ on_filters, rtol=0, atol=1e-10)


@pytest.mark.parametrize("basis", ["voxel", "harmonic"])
def test_layers_draw_white_slot_constant_responses(basis, gen):
    """Measured on the layers' own draws (many filters): the lifting filters' and the group
    convs' constant-row filters' invariant share is near ``1/24`` for "o", not the i.i.d.
    draw's (4/27 voxel, 2/10 harmonic)."""
    avg = _orbit_average(get("o"), 3)
    with seeded_rng(0):
        lift = LiftingConv3d(1, 4096, 3, group="o", basis=basis).double()
        conv = GroupConv3d(64, 64, 3, group="o", basis=basis).double()
    for m in (lift, conv):
        w = m.voxel_filter().detach() if m.lifting else _constant_row_filters(m)
        f = w.reshape(-1, 27)
        share = float((f @ avg).square().sum() / f.square().sum())
        target = 1 / PRESENT["o"][basis == "harmonic"]
        assert abs(share - target) < 0.012, (type(m).__name__, share)


def _constant_row_filters(m: GroupConv3d) -> torch.Tensor:
    """The voxel filters of the weight's constant Fourier row (``sum_h psi[h] / sqrt|G|``)."""
    w = m.weight.detach()[:, :, 0]
    return w @ m.filter_basis if m.basis == "harmonic" else w


@pytest.mark.parametrize("name", ["o", "oh", "t", "th"])
def test_fast_construction_tables_equal_their_per_element_definitions(name):
    """The cold construction's tables are built in batched form (the per-element loops cost a
    cold GroupConv3d O k3 ~2-3x its construction time): the same values, bit for bit."""
    from equilayers.functional._white_init import _classes
    from equilayers.groups._fourier_basis import _cubic_basis

    group = get(name)
    u = torch.tensor([[1.0, 1.0], [-1.0, 1.0], [0.0, -2.0]], dtype=torch.float64)
    u = u / u.norm(dim=0)
    cols = []
    for g in group.elements():  # the Fourier basis' definition, one element at a time
        m = group.matrix(g)
        det = float(torch.linalg.det(m).round())
        rot = m * det
        perm = rot.abs()
        sign = torch.linalg.det(perm).round().reshape(1)
        e = u.T @ perm @ u
        one = torch.ones(1, dtype=torch.float64)
        col = (torch.cat([one, e[:, 0], rot.flatten()]) if name in ("t", "th") else
               torch.cat([one, sign, e.flatten(), rot.flatten(), (sign * rot).flatten()]))
        cols.append(torch.cat([col, det * col]) if name in ("oh", "th") else col)
    basis = torch.stack(cols, dim=1)
    assert torch.equal(_cubic_basis(group), basis / basis.norm(dim=1, keepdim=True))
    table = group.cayley_table
    n = table.shape[0]
    inverse = [group.index(group.inverse(g)) for g in group.elements()]
    classes = _classes(table)
    by_definition = {tuple(sorted({int(table[table[h, i], inverse[h]]) for h in range(n)}))
                     for i in range(n)}
    assert {tuple(c) for c in classes} == by_definition


def _white_map_by_eigenspaces(group, k: int, harmonic: bool) -> torch.Tensor:
    """The white map's definition through eigenspaces (its form until 2026-12-07): a generic
    combination of the class sums acts on each isotypic part as one scalar, on the filters and
    on the regular fiber alike; each part is rescaled to its regular share."""
    from equilayers.functional._white_init import _class_operator, _classes

    n_g, n_v = int(group.order), k ** 3
    table = group.cayley_table
    perm = G3.expansion_table(group, k, lifting=True).reshape(n_g, n_v)
    eye_v, eye_g = torch.eye(n_v, dtype=torch.float64), torch.eye(n_g, dtype=torch.float64)
    regular = eye_g[table[(table == 0).int().argmax(dim=1)]]
    basis = voxel_basis(k, None) if harmonic else eye_v
    q = torch.linalg.qr(basis.T)[0]
    classes = _classes(table)
    coef = torch.rand(len(classes), generator=torch.Generator().manual_seed(0),
                      dtype=torch.float64) + 0.5
    ev_reg = torch.linalg.eigvalsh(_class_operator(regular, classes, coef))
    levels = torch.unique(ev_reg.round(decimals=8))
    assert torch.diff(levels).min() > 1e-3  # the combination tells the irreps apart
    ev_f, vec = torch.linalg.eigh(q.T @ _class_operator(eye_v[perm], classes, coef) @ q)
    parts = []
    for level in levels:
        sel = (ev_f - level).abs() < 1e-6
        if sel.any():
            parts.append((q @ vec[:, sel], float(((ev_reg - level).abs() < 1e-6).sum()) / n_g))
    total, n = sum(share for _, share in parts), basis.shape[0]
    proj = sum((share / total * n / p.shape[1]) ** 0.5 * (p @ p.T) for p, share in parts)
    m = basis @ proj @ torch.linalg.pinv(basis)
    ratio = (basis @ basis.T).trace() / (m @ basis @ basis.T @ m.T).trace()
    return m * ratio.sqrt()


@pytest.mark.parametrize("harmonic", [False, True])
@pytest.mark.parametrize("k", [2, 3, 4, 5])
@pytest.mark.parametrize("name", CUBE)
def test_white_map_equals_its_eigenspace_definition(name, k, harmonic, monkeypatch):
    """The white map built from the Fourier basis' central idempotents (one scatter) equals
    the one from the eigenspaces of a class operator; control: with two of the irreps'
    row blocks merged (a wrong split of the Fourier rows) it does not."""
    from equilayers.functional import _white_init as W

    group = get(name)
    want = _white_map_by_eigenspaces(group, k, harmonic)
    torch.testing.assert_close(W.white_map(group, k, None, harmonic), want, rtol=0,
                               atol=1e-12)
    if k == 3:
        blocks = W.isotypic_row_blocks(group)
        merged = [blocks[0] + blocks[1], *blocks[2:]]  # the constant and the next irrep
        monkeypatch.setattr(W, "isotypic_row_blocks", lambda g: merged)
        wrong = W.white_map.__wrapped__(group, k, None, harmonic)  # (uncached)
        assert (wrong - want).abs().max() > 1e-3
