"""The cube's groups on voxels (equilayers.groups._cubic) and the 3-D group convs: group
axioms, the documented element orders and axes, the actions on volumes and on 6-D regular
fields, and the exact equivariance of LiftingConv3d -> GroupConv3d -> GroupPool stacks over
every element, with negative controls."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import equilayers.functional as EF
import equilayers.nn as enn
from equilayers.groups import CubicGroup, FieldType, act, get
from equilayers.groups._group import is_signed_permutation
from equilayers.groups._subgroups import check_subgroup, coset_representatives
from equilayers.testing import assert_equivariant, equivariance_error

ORDERS = {"o": 24, "oh": 48, "c4z": 4, "d4z": 8}
NAMES = sorted(ORDERS)
VOLUME = FieldType.trivial  # volumes of a cube group: 5-D


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
    for big, small in (("oh", "o"), ("o", "c4z"), ("oh", "d4z"), ("oh", "c4z"), ("d4z", "c4z")):
        check_subgroup(big, small)
        assert get(small).is_subgroup_of(get(big))
    for big, small in (("o", "d4z"), ("o", "oh"), ("c4z", "d4z")):
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


# --- the convolutions --------------------------------------------------------------------------
def _stack(group: str, c: int = 2, stride: int = 1) -> nn.Module:
    return nn.Sequential(enn.LiftingConv3d(2, c, 3, stride=stride, padding=1, group=group),
                         nn.ReLU(), enn.GroupConv3d(c, c, 3, padding=1, group=group),
                         enn.GroupPool())


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("name", NAMES)
def test_stack_equivariant_every_element(name, stride, gen):
    """Exact over all elements: float64 to 1e-10, float32 to 1e-5 (odd sizes, symmetric
    padding; stride 2 where (n + 2p - k) % 2 == 0)."""
    size = 7 if stride == 2 else 5
    model = _stack(name, stride=stride)
    x = torch.randn(1, 2, size, size, size, generator=gen, dtype=torch.float64)
    report = assert_equivariant(model.double(), x, name)
    assert report.error <= 1e-10 and len(report.errors) == ORDERS[name]
    assert_equivariant(model.float(), x.float(), name, tol=1e-5)
    # the regular fields in between as well
    assert_equivariant(model[0].double(), x, name)


def test_plain_conv3d_fails(gen):
    x = torch.randn(1, 2, 5, 5, 5, generator=gen, dtype=torch.float64)
    conv = nn.Conv3d(2, 2, 3, padding=1).double()
    assert equivariance_error(conv, x, "o", in_rep="trivial", out_rep="trivial") > 1e-2
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(conv, x, "c4z", in_rep="trivial", out_rep="trivial")


@pytest.mark.parametrize("layer", [0, 2])
def test_corrupted_table_fails(layer, gen, monkeypatch):
    """Two filter taps of one group element swapped in the gather table of the lifting or
    the group conv: the module refuses the table by name (nn/_tables.py), and with that check
    switched off the harness sees that the stack is no longer equivariant."""
    import equilayers.nn._group_conv3d as gc3

    model = _stack("o").double()
    x = torch.randn(1, 2, 5, 5, 5, generator=gen, dtype=torch.float64)
    assert_equivariant(model, x, "o")
    table = model[layer].expansion_table.clone()
    table[3, 0, [0, 1]] = table[3, 0, [1, 0]]
    model[layer].expansion_table = table
    with pytest.raises(RuntimeError, match="integer table 'expansion_table'"):
        model(x)
    monkeypatch.setattr(gc3, "check_tables", lambda module, rebuild: None)
    assert equivariance_error(model, x, "o") > 1e-3


def test_wrong_fiber_permutation_fails(gen, monkeypatch):
    """The action on regular fields with g h in place of g^-1 h: the harness must notice (O is
    not abelian)."""
    lift = enn.LiftingConv3d(2, 2, 3, padding=1, group="o").double()
    x = torch.randn(1, 2, 5, 5, 5, generator=gen, dtype=torch.float64)
    assert_equivariant(lift, x, "o")
    monkeypatch.setattr(CubicGroup, "regular_permutation",
                        lambda self, g: self.cayley_table[self.index(g)].clone())
    assert equivariance_error(lift, x, "o") > 1e-2


def _reference(x, weight, bias, group, lifting, padding):
    """The definition, one element at a time: slot g correlates with g . psi."""
    grp = get(group)
    outs = []
    for g in grp.elements():
        if lifting:
            w = act(weight, g, "trivial")
        else:
            w = act(weight, g, "regular").flatten(1, 2)
        outs.append(F.conv3d(x.flatten(1, -4), w, bias, padding=padding))
    return torch.stack(outs, 2)


@pytest.mark.parametrize("name", ["d4z", "o"])
def test_module_functional_and_reference_agree(name, gen):
    n = ORDERS[name]
    lift = enn.LiftingConv3d(2, 3, 3, padding=1, group=name).double()
    conv = enn.GroupConv3d(3, 2, 3, padding=1, group=name).double()
    nn.init.normal_(lift.bias)
    x = torch.randn(2, 2, 5, 5, 5, generator=gen, dtype=torch.float64)
    y = lift(x)
    assert y.shape == (2, 3, n, 5, 5, 5)
    torch.testing.assert_close(y, EF.lifting_conv3d(x, lift.weight, lift.bias, padding=1,
                                                    group=name))
    torch.testing.assert_close(y, _reference(x, lift.weight, lift.bias, name, True, 1))
    z = conv(y)
    torch.testing.assert_close(z, EF.group_conv3d(y, conv.weight, conv.bias, padding=1,
                                                  group=name))
    torch.testing.assert_close(z, _reference(y, conv.weight, conv.bias, name, False, 1))


def test_forward_backward_and_gradcheck(gen):
    model = _stack("c4z")
    x = torch.randn(2, 2, 5, 5, 5, generator=gen, requires_grad=True)
    model(x).square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all()
               for p in model.parameters())
    assert x.grad is not None
    conv = enn.GroupConv3d(1, 1, 3, padding=1, group="c4z").double()
    xi = torch.randn(1, 1, 4, 3, 3, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, w: EF.group_conv3d(a, w, padding=1, group="c4z"),
                                    (xi, conv.weight.detach().clone().requires_grad_()))


def test_shapes_init_repr_and_state_dict(gen):
    lift = enn.LiftingConv3d(4, 3, 3, stride=2, padding=1, dilation=1, group="oh", bias=False)
    assert lift.weight.shape == (3, 4, 3, 3, 3) and lift.bias is None
    assert lift(torch.randn(1, 4, 7, 7, 7)).shape == (1, 3, 48, 4, 4, 4)
    conv = enn.GroupConv3d(3, 5, 3, dilation=2, groups=1, group="d4z")
    assert conv.weight.shape == (5, 3, 8, 3, 3, 3) and conv.bias.shape == (5,)
    assert conv(torch.randn(1, 3, 8, 7, 7, 7)).shape == (1, 5, 8, 3, 3, 3)
    assert conv.in_type == FieldType.regular("d4z") and lift.in_type == FieldType.trivial("oh")
    assert repr(lift) == "LiftingConv3d(4, 3, kernel_size=3, group='oh', stride=(2, 2, 2), " \
                         "padding=1, bias=False)"
    # second moment 1 per output slot on unit-variance input
    big = enn.GroupConv3d(8, 4, 3, group="c4z")
    y = big(torch.randn(4, 8, 4, 7, 7, 7, generator=gen))
    assert 0.7 < y.square().mean().item() < 1.3
    other = enn.GroupConv3d(3, 5, 3, dilation=2, group="d4z")
    other.load_state_dict(conv.state_dict())
    x = torch.randn(1, 3, 8, 7, 7, 7, generator=gen)
    torch.testing.assert_close(other(x), conv(x))
    assert "expansion_table" not in conv.state_dict()


@pytest.mark.parametrize("k", [3, 5])
def test_harmonic_voxel_basis_is_closed_under_the_cube(k, gen):
    """The harmonic basis's span holds every moved filter of the 48 symmetries (so each
    slot's filter is band-limited too, escnn's function space), at escnn's size per filter
    (10 for k = 3, 19 for k = 5); the control: a random voxel filter added to the rows breaks
    the closure."""
    from equilayers.functional._voxel_basis import voxel_basis
    from equilayers.groups import act_spatial

    def outside(rows):
        q, _ = torch.linalg.qr(rows.T)  # an orthonormal basis of the span, (k^3, n)
        moved = torch.cat([act_spatial(rows.view(-1, k, k, k), g).reshape(len(rows), -1)
                           for g in get("oh").elements()])
        return (moved - moved @ q @ q.T).abs().max().item()

    rows = voxel_basis(k, None)
    assert rows.shape == ({3: 10, 5: 19}[k], k ** 3)
    torch.testing.assert_close(rows.norm(dim=1), torch.ones(len(rows), dtype=rows.dtype))
    assert outside(rows) < 1e-10
    noisy = torch.cat([rows, torch.randn(1, k ** 3, generator=gen, dtype=rows.dtype)])
    assert outside(noisy) > 1e-2


def test_harmonic_voxel_basis_leaves_out_dependent_functions():
    """Rings at every voxel distance of a 3x3x3 filter (0, 1, sqrt 2, sqrt 3) with frequencies
    up to 3 or 4 give more shell functions than its 27 voxels: the basis keeps a linearly
    independent 27 (full rank), each of unit norm, so no coefficient of a layer is
    redundant."""
    from equilayers.functional import harmonic_voxel_basis

    for cutoff in (3.0, 4.0):
        rows = harmonic_voxel_basis(3, frequencies_cutoff=cutoff, rings=[0, 1, 2 ** 0.5, 3 ** 0.5],
                                    dtype=torch.float64).flatten(1)
        assert rows.shape == (27, 27) and torch.linalg.matrix_rank(rows) == 27
        torch.testing.assert_close(rows.norm(dim=1), torch.ones(27, dtype=torch.float64))


def test_harmonic_basis_layers(gen):
    """``basis="harmonic"``: coefficient weights, the voxel filters they stand for, He-scaled
    init (second moment about 1), repr, state dict (no basis in it), refused settings."""
    lift = enn.LiftingConv3d(4, 3, 3, padding=1, group="o", basis="harmonic")
    conv = enn.GroupConv3d(8, 4, 3, group="c4z", basis="harmonic", sigma=0.5)
    assert lift.weight.shape == (3, 4, 10) and conv.weight.shape == (4, 8, 4, 10)
    assert lift.voxel_filter().shape == (3, 4, 3, 3, 3)
    assert repr(lift) == ("LiftingConv3d(4, 3, kernel_size=3, group='o', padding=1, "
                          "basis='harmonic')")
    assert "sigma=0.5" in repr(conv) and "filter_basis" not in conv.state_dict()
    y = conv(torch.randn(4, 8, 4, 7, 7, 7, generator=gen))
    assert 0.7 < y.square().mean().item() < 1.3
    other = enn.GroupConv3d(8, 4, 3, group="c4z", basis="harmonic", sigma=0.5)
    other.load_state_dict(conv.state_dict())
    x = torch.randn(1, 8, 4, 5, 5, 5, generator=gen)
    torch.testing.assert_close(other(x), conv(x))
    # the voxel filters are the coefficients times the rows: the same layer in voxels
    voxel = enn.GroupConv3d(8, 4, 3, group="c4z")
    with torch.no_grad():
        voxel.weight.copy_(conv.voxel_filter())
        voxel.bias.copy_(conv.bias)
    torch.testing.assert_close(voxel(x), conv(x))
    with pytest.raises(ValueError, match="basis='voxel' has free"):
        enn.GroupConv3d(2, 2, 3, group="o", sigma=0.5)
    with pytest.raises(ValueError, match="basis='bogus' must be one of 'voxel', 'harmonic'"):
        enn.GroupConv3d(2, 2, 3, group="o", basis="bogus")
    with pytest.raises(ValueError, match="needs an odd kernel_size .*got kernel_size=4"):
        enn.GroupConv3d(2, 2, 4, group="o", basis="harmonic")
    with pytest.raises(ValueError, match="harmonic basis is empty"):
        enn.LiftingConv3d(2, 2, 3, group="o", basis="harmonic", rings=[1.0],
                          frequencies_cutoff=[-1])


@pytest.mark.parametrize("settings", [{}, {"sigma": 0.5}, {"rings": (0.0, 1.0, 1.5)},
                                      {"frequencies_cutoff": 1.0}])
def test_harmonic_layers_are_the_public_functional_of_their_voxel_filters(settings, gen):
    """A ``basis="harmonic"`` layer's forward is "voxel filters from the coefficients through
    the public basis, then the public functional": ``tensordot(weight, harmonic_voxel_basis(k,
    settings), 1)`` into ``lifting_conv3d`` / ``group_conv3d``, with the layer's stored
    (normalized) settings; the basis is the layer's own rows. The control: the basis of
    other shell widths (same size) gives other numbers."""
    lift = enn.LiftingConv3d(2, 3, 3, padding=1, group="d4z", basis="harmonic",
                             dtype=torch.float64, **settings)
    conv = enn.GroupConv3d(3, 2, 3, stride=2, padding=1, group="d4z", basis="harmonic",
                           dtype=torch.float64, **settings)
    for m in (lift, conv):
        nn.init.normal_(m.bias)
    x = torch.randn(2, 2, 5, 5, 5, generator=gen, dtype=torch.float64)

    def basis(m, sigma=None):
        return EF.harmonic_voxel_basis(3, sigma=sigma or m.sigma, rings=m.rings,
                                       frequencies_cutoff=m.frequencies_cutoff,
                                       dtype=torch.float64)

    b = basis(lift)
    assert b.shape == (lift.weight.shape[-1], 3, 3, 3)
    torch.testing.assert_close(b.flatten(1), lift.filter_basis, rtol=0, atol=0)
    y = lift(x)
    torch.testing.assert_close(y, EF.lifting_conv3d(x, torch.tensordot(lift.weight, b, 1),
                                                    lift.bias, padding=1, group="d4z"))
    z = conv(y)
    voxels = torch.tensordot(conv.weight, basis(conv), 1)
    torch.testing.assert_close(z, EF.group_conv3d(y, voxels, conv.bias, stride=2, padding=1,
                                                  group="d4z"))
    other = basis(lift, sigma=0.9)  # the control
    assert other.shape == b.shape
    wrong = EF.lifting_conv3d(x, torch.tensordot(lift.weight, other, 1), lift.bias, padding=1,
                              group="d4z")
    assert (wrong - y).abs().max() > 1e-2


def test_harmonic_voxel_basis_is_checked():
    B = EF.harmonic_voxel_basis
    assert B(5).shape == (19, 5, 5, 5) and B(3).dtype == torch.get_default_dtype()
    assert B((3, 3, 3), dtype=torch.float64).dtype == torch.float64
    torch.testing.assert_close(B(3).flatten(1).norm(dim=1), torch.ones(10))
    with pytest.raises(ValueError, match="kernel_size=4 must be odd"):
        B(4)
    with pytest.raises(ValueError, match=r"kernel_size=\(3, 3, 5\) must be cubic"):
        B((3, 3, 5))
    with pytest.raises(ValueError, match="sigma must be a positive number"):
        B(3, sigma=0.0)
    with pytest.raises(ValueError, match="rings must be a non-empty list"):
        B(3, rings=[])
    with pytest.raises(TypeError, match="dtype=torch.int64 must be a floating-point"):
        B(3, dtype=torch.int64)
    with pytest.raises(ValueError, match="harmonic_voxel_basis: the harmonic basis is empty"):
        B(3, rings=[1.0], frequencies_cutoff=[-1])


def test_group_pool_and_batch_norm_on_volumes(gen):
    x = torch.randn(2, 3, 24, 3, 3, 3, generator=gen, dtype=torch.float64)
    assert enn.GroupPool()(x).shape == (2, 3, 3, 3, 3)
    assert_equivariant(enn.GroupPool(), x, "o")
    bn = enn.GroupBatchNorm3d(3).double()
    y = bn(x)
    torch.testing.assert_close(y.mean(dim=(0, 2, 3, 4, 5)), torch.zeros(3, dtype=y.dtype))
    assert_equivariant(bn, x, "o")
    with pytest.raises(ValueError, match="6-D"):
        bn(x[:, :, :, 0])


def test_errors_are_named(gen):
    lift = enn.LiftingConv3d(2, 3, 3, group="c4z")
    with pytest.raises(ValueError, match=r"C_in=2 channels.*\(1, 3, 5, 5, 5\)"):
        lift(torch.randn(1, 3, 5, 5, 5))
    with pytest.raises(ValueError, match="5-D"):
        lift(torch.randn(1, 2, 4, 5, 5, 5))
    conv = enn.GroupConv3d(2, 3, 3, group="o")
    with pytest.raises(ValueError, match=r"\|G\|=24 slots"):
        conv(torch.randn(1, 2, 4, 5, 5, 5))
    with pytest.raises(ValueError, match="'o', 'oh', 'c4z', 'd4z'"):
        enn.GroupConv3d(2, 3, 3, group="p4")
    with pytest.raises(ValueError, match="kernel_size=.* must be cubic"):
        enn.LiftingConv3d(2, 3, (3, 3, 1), group="o")
    with pytest.raises(ValueError, match="groups=2 must divide"):
        enn.LiftingConv3d(3, 4, 3, groups=2, group="o")
    with pytest.raises(ValueError, match="LiftingConv3d"):
        enn.LiftingConv2d(2, 3, 3, group="o")
    with pytest.raises(ValueError, match="group_conv3d"):
        EF.lifting_conv2d(torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3), group="oh")
    with pytest.raises(ValueError, match="smaller than the dilated kernel"):
        lift(torch.randn(1, 2, 2, 2, 2))


def test_inexact_grid_warns_once(gen):
    conv = enn.LiftingConv3d(1, 1, 3, stride=2, padding=1, group="o")
    with pytest.warns(UserWarning, match="stride 2 does not tile"):
        conv(torch.randn(1, 1, 6, 6, 6))
    assert conv._warned
    c4 = enn.LiftingConv3d(1, 1, 3, padding=1, group="c4z")
    c4(torch.randn(1, 1, 4, 5, 5))  # the depth is never traded by c4z: no warning
    assert not c4._warned
    # o trades all three dims: their options must agree, their sizes need not
    assert EF.exactness_problems3d("o", (5, 5, 7), 3, 1, (1,) * 6, 1) == []
    assert EF.exactness_problems3d("o", (5, 5, 7), 3, 1, (1, 1, 1, 1, 0, 0), 1)


def test_exactness_warning_is_not_skipped_by_the_input_memo(gen):
    """The input checks and the exactness warning share one memo: a call under
    ``quiet_exactness_warnings`` settles nothing (the next call with the same input still
    warns), and a stride changed after an exact call is checked again (the key holds it).
    The warning points at the forward's caller."""
    from equilayers.nn._exactness import quiet_exactness_warnings

    conv = enn.LiftingConv3d(1, 1, 3, stride=2, padding=1, group="o")
    x = torch.randn(1, 1, 6, 6, 6, generator=gen)
    with quiet_exactness_warnings():
        conv(x)
    with pytest.warns(UserWarning, match="stride 2 does not tile") as caught:
        conv(x)
    assert caught[0].filename == __file__
    for exact in (enn.LiftingConv3d(1, 1, 3, padding=1, group="o"),
                  enn.SteerableConv3d(1, 1, 3, padding=1, max_order=1)):
        exact(x)
        exact.stride = (2, 2, 2)
        with pytest.warns(UserWarning, match="stride 2 does not tile"):
            exact(x)


def test_input_checks_are_skipped_only_for_a_like_input(gen):
    """The 3-D convs skip their input checks for an input like the last checked one; the key
    holds everything the checks read, so a different input, a changed option or a weight
    moved to the meta device after a good call is still refused by name (a memo keyed on the
    shape alone passes the padding-mode and meta cases below to F.pad / F.conv3d)."""
    conv = enn.GroupConv3d(2, 3, 3, padding=1, group="c4z")
    x = torch.randn(1, 2, 4, 5, 5, 5, generator=gen)
    conv(x)
    conv(x)  # the memo's path
    with pytest.raises(ValueError, match=r"C_in=2 channels"):
        conv(torch.randn(1, 3, 4, 5, 5, 5, generator=gen))
    with pytest.raises(ValueError, match=r"\|G\|=4 slots"):
        conv(torch.randn(1, 2, 3, 5, 5, 5, generator=gen))
    with pytest.raises(TypeError, match="x"):
        conv(x.to(torch.int64))
    conv(x)
    conv.padding_mode, conv._pad = "reflect", (5,) * 6
    with pytest.raises(ValueError, match="padding_mode='reflect' needs padding < the input"):
        conv(x)
    conv.padding_mode, conv._pad = "zeros", (1,) * 6
    conv(x)
    conv.to_empty(device="meta")
    with pytest.raises(RuntimeError, match="meta device; materialize"):
        conv(x)


_DTYPE_MODULES = {
    "LiftingConv3d": (lambda: enn.LiftingConv3d(2, 2, 3, padding=1, group="c4z"), (1, 2, 5, 5, 5)),
    "GroupConv3d[harmonic]": (lambda: enn.GroupConv3d(2, 2, 3, padding=1, group="c4z",
                                                      basis="harmonic"), (1, 2, 4, 5, 5, 5)),
    "SteerableConv3d": (lambda: enn.SteerableConv3d(2, 2, 3, padding=1, in_max_order=1,
                                                    max_order=1), (1, 2, 4, 5, 5, 5)),
    "GroupBatchNorm3d": (lambda: enn.GroupBatchNorm3d(2), (2, 2, 4, 3, 3, 3)),
}


@pytest.mark.parametrize("name", sorted(_DTYPE_MODULES))
def test_input_of_another_dtype_than_the_module_is_named(name, gen):
    """A float64 input to a float32 module (and the reverse, also after the input memo has
    passed a float32 input) gets a TypeError naming both dtypes and both conversions, as an
    integer input gets one; torch's own errors ("Input type (double) and bias type (float)",
    "mixed dtype (CPU)", "expected scalar type Double") named neither the module nor the fix."""
    make, shape = _DTYPE_MODULES[name]
    m = make()
    x = torch.randn(shape, generator=gen)
    with pytest.raises(TypeError, match=rf"^{name.split('[')[0]}: x has dtype torch.float64, "
                                        r"but the module's parameters are torch.float32; "
                                        r"convert the input \(x.float\(\)\) or the module "
                                        r"\(module.double\(\)\)$"):
        m(x.double())
    m(x)  # passes the checks (and fills the input memo of the convs)
    m.double()
    with pytest.raises(TypeError, match=r"x has dtype torch.float32, but the module's "
                                        r"parameters are torch.float64; convert the input "
                                        r"\(x.double\(\)\) or the module \(module.float\(\)\)"):
        m(x)
    assert m(x.double()).dtype == torch.float64


def test_dtype_check_allows_autocast_and_batch_norm_mixed_precision(gen):
    """Under torch.autocast for the input's device a bfloat16 map may reach float32 convs (the
    autocast casts them), and a group batch norm takes a float16/bfloat16 input with float32
    parameters as nn.BatchNorm3d does; outside autocast the conv refuses it (the control)."""
    conv = enn.GroupConv3d(2, 2, 3, padding=1, group="c4z")
    x = torch.randn(1, 2, 4, 5, 5, 5, generator=gen).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert conv(x).dtype == torch.bfloat16
    with pytest.raises(TypeError, match="x has dtype torch.bfloat16"):
        conv(x)
    bn = enn.GroupBatchNorm3d(2)
    for dtype in (torch.float16, torch.bfloat16):
        assert bn(x.to(dtype)).dtype == dtype
    with pytest.raises(TypeError, match=r"x has dtype torch.float16, but the module's "
                                        r"parameters are torch.float64"):
        bn.double()(x.half())


@pytest.mark.parametrize("kwargs", [
    dict(padding=(0, 1, 2)),  # (D, H, W) as nn.Conv3d
    dict(padding="same"),  # k=4: 3 voxels per dim, the odd one on the high side
    dict(padding="same", dilation=(1, 2, 1)),
    dict(padding=(2, 0, 1), stride=(1, 2, 3)),
    dict(padding=(1, 0, 2), padding_mode="reflect"),
    dict(padding="same", padding_mode="circular"),
])
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
def test_identity_slot_is_nn_conv3d(kwargs, gen):
    """The identity's slot (slot 0) of the lifting and group convs on volumes is ``nn.Conv3d``
    with the unmoved filter and the same options, value for value: which dim each entry of a
    padding, stride or dilation triple goes to, and which side takes the odd voxel of
    ``'same'``. The equivariance tests cannot see a (D, H, W) triple read backwards when the
    options are alike on the dims the group moves."""
    x = torch.randn(2, 3, 9, 10, 11, generator=gen, dtype=torch.float64)
    w, b = (torch.randn(5, 3, 4, 4, 4, generator=gen, dtype=torch.float64),
            torch.randn(5, generator=gen, dtype=torch.float64))
    ref = nn.Conv3d(3, 5, 4, dtype=torch.float64, **kwargs)
    with torch.no_grad():
        ref.weight.copy_(w)
        ref.bias.copy_(b)
    y = EF.lifting_conv3d(x, w, b, group="c4z", **kwargs)
    torch.testing.assert_close(y[:, :, 0], ref(x), rtol=0, atol=1e-12)
    xg = torch.randn(2, 3, 4, 9, 10, 11, generator=gen, dtype=torch.float64)
    wg = torch.randn(5, 3, 4, 4, 4, 4, generator=gen, dtype=torch.float64)
    ref = nn.Conv3d(12, 5, 4, dtype=torch.float64, **kwargs)
    with torch.no_grad():
        ref.weight.copy_(wg.flatten(1, 2))
        ref.bias.copy_(b)
    y = EF.group_conv3d(xg, wg, b, group="c4z", **kwargs)
    torch.testing.assert_close(y[:, :, 0], ref(xg.flatten(1, 2)), rtol=0, atol=1e-12)


def test_exactness_law3d_reads_each_dims_own_padding(gen):
    """The pad is F.pad's ``(w_lo, w_hi, h_lo, h_hi, d_lo, d_hi)``: an asymmetric width pad
    is named as the width's, and c4z (which moves only H and W) ignores an asymmetric depth
    pad but not an asymmetric width or height one. The equivariance tests pad every dim
    alike, so a law that read the triple backwards passed them."""
    law = EF.exactness_problems3d
    assert [p for p in law("o", (9, 9, 9), 3, 1, (0, 2, 1, 1, 1, 1), 1)
            if p.startswith("asymmetric width padding (0, 2)")]
    assert [p for p in law("o", (9, 9, 9), 3, 1, (1, 1, 1, 1, 2, 0), 1)
            if p.startswith("asymmetric depth padding (2, 0)")]
    assert law("c4z", (9, 9, 9), 3, 1, (1, 1, 1, 1, 0, 2), 1) == []  # depth: not moved
    assert [p for p in law("c4z", (9, 9, 9), 3, 1, (0, 2, 1, 1, 1, 1), 1)
            if p.startswith("asymmetric width padding")]
    assert [p for p in law("c4z", (9, 9, 9), 3, 1, (1, 1, 2, 0, 1, 1), 1)
            if p.startswith("asymmetric height padding")]
    # control: the layer agrees with the law on the depth-only case (exact, measured)
    conv = enn.LiftingConv3d(2, 2, 3, group="c4z").double()
    x = torch.randn(1, 2, 9, 9, 9, generator=gen, dtype=torch.float64)

    def f(t):
        return conv(F.pad(t, (1, 1, 1, 1, 0, 2)))

    assert equivariance_error(f, x, "c4z", in_rep="trivial", out_rep="regular") < 1e-12


@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("track", [True, False])
def test_group_batch_norm3d_gives_batch_norm_at_most_5_dims(gen, monkeypatch, momentum, track):
    """cuDNN's batch norm takes 2 to 5 dims: GroupBatchNorm3d on CUDA raised "Expected 2 to 5
    dimensions, but got 6-dimensional tensor" (seen on an H200). Its 6-D map is folded to 5
    dims; outputs, gradients, running statistics and the batch count equal torch's own
    BatchNorm3d forward on the 6-D map (CPU), over training and evaluation steps."""
    from equilayers.functional import group_batch_norm
    from equilayers.nn import GroupBatchNorm3d

    real = F.batch_norm
    dims = []

    def checked(x, *args, **kwargs):
        dims.append(x.dim())
        return real(x, *args, **kwargs)

    ours = GroupBatchNorm3d(3, momentum=momentum, track_running_stats=track)
    with torch.no_grad():
        ours.weight.normal_(generator=gen), ours.bias.normal_(generator=gen)
    theirs = copy.deepcopy(ours)
    for training in (True, True, False):
        ours.train(training), theirs.train(training)
        x = torch.randn(2, 3, 4, 3, 5, 4, generator=gen, requires_grad=True)
        monkeypatch.setattr(F, "batch_norm", checked)
        y = ours(x)
        monkeypatch.setattr(F, "batch_norm", real)
        y_ref = torch.nn.BatchNorm3d.forward(theirs, x)  # torch's forward, fine on CPU
        torch.testing.assert_close(y, y_ref, atol=0, rtol=0)
        g = torch.randn(y.shape, generator=gen)
        torch.testing.assert_close(torch.autograd.grad(y, x, g)[0],
                                   torch.autograd.grad(y_ref, x, g)[0])
        for name, buf in theirs.named_buffers():
            assert torch.equal(dict(ours.named_buffers())[name], buf), name
    assert dims and max(dims) <= 5, dims
    x = torch.randn(2, 3, 4, 3, 5, 4, generator=gen)
    monkeypatch.setattr(F, "batch_norm", checked)
    dims.clear()
    y = group_batch_norm(x, None, None, training=True)
    assert dims == [5] and y.shape == x.shape
