"""GroupLinear and OnFibers: equivariant MLPs on fibers alone ``(B, C, F)``.

The shared case table (``linear/*``) checks exactness with negative controls; here: every
rotation of SO(3) and SO(2) (a fiber has no pixels, so off-grid elements are exact too), the
completeness of the basis (the layer reaches every equivariant map, measured against the
commutant's dimension computed independently), export, refusals and the training loop.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn

from equilayers import export
from equilayers.functional import on_fibers
from equilayers.groups import FieldType, get
from equilayers.groups._actions import harmonic_matrix
from equilayers.nn import (
    GroupConv2d,
    GroupLinear,
    GroupPool,
    HarmonicBatchNorm,
    NormNonlinearity,
    NormPool,
    OnFibers,
)
from equilayers.testing import equivariance_error

CONFIGS = [  # (group, max_order, in_max_order, fiber in, fiber out)
    ("p4m", None, None, 8, 8), ("c3", None, None, 3, 3), ("d6", None, None, 12, 12),
    ("o", None, None, 24, 24), ("ico", None, None, 60, 60), ("c4z", None, None, 4, 4),
    ("so2", 3, 3, 7, 7), ("so2", 1, 3, 7, 3), ("o2", 2, 2, 5, 5), ("c4", 3, 3, 7, 7),
    ("c3", 2, 2, 5, 5), ("d4", 3, 3, 7, 7), ("d8", 2, 2, 5, 5), ("so3", 2, 2, 9, 9),
    ("so3", 1, 2, 9, 4), ("o3", 2, 2, 9, 9),
]
IDS = [f"{g}-{m}-{i}" for g, m, i, _, _ in CONFIGS]


def _elements(group: str, gen: torch.Generator, count: int = 6):
    """Elements to test: every element of a finite group; random rotations (and reflections)
    of a continuous one, off the grid."""
    grp = get(group)
    if grp.is_finite:
        return grp.elements()
    if grp.spatial_dim == 3:
        return [grp.random_element(gen) for _ in range(count)]
    angles = (torch.rand(count, generator=gen, dtype=torch.float64) * 360).tolist()
    return grp.elements_at(angles) + (grp.elements_at(angles, reflection=True)
                                      if grp.has_reflections else [])


def _fiber_matrix(ft: FieldType, g) -> torch.Tensor:
    """The matrix by which ``g`` acts on one field of ``ft`` (its columns: the images of the
    unit vectors), in float64."""
    eye = torch.eye(ft.fiber_size, dtype=torch.float64).unsqueeze(0)  # (1, F, F) = (B, C, F)
    return ft.act(g, eye)[0].T.contiguous()


def _commutant_dim(in_type: FieldType, out_type: FieldType, els) -> int:
    """The dimension of {W : rho_out(g) W = W rho_in(g) for the given elements}, computed
    independently of the layer's basis: for a finite group (``els`` all its elements) by
    characters, the mean of ``tr rho_in(g) tr rho_out(g)`` (real representations); else by
    the nullspace of the stacked constraints."""
    if in_type.group is not None and in_type.group.is_finite:
        total = sum(float(_fiber_matrix(in_type, g).trace() * _fiber_matrix(out_type, g).trace())
                    for g in els)
        assert len(els) == in_type.group.order  # the character formula needs every element
        return round(total / len(els))
    f_in, f_out = in_type.fiber_size, out_type.fiber_size
    rows = []
    for g in els:
        r_in, r_out = _fiber_matrix(in_type, g), _fiber_matrix(out_type, g)
        # vec(rho_out W - W rho_in) = (I kron rho_out - rho_in^T kron I) vec(W) (column-major)
        rows.append(torch.kron(torch.eye(f_in, dtype=torch.float64), r_out)
                    - torch.kron(r_in.T.contiguous(), torch.eye(f_out, dtype=torch.float64)))
    s = torch.linalg.svdvals(torch.cat(rows))
    return int((s < 1e-9).sum()) + max(0, f_in * f_out - s.numel())


def _reached_dim(layer: GroupLinear) -> int:
    """The dimension of the maps one field -> one field the layer's weights span: the rank
    of the matrices for each unit weight (bias off)."""
    w = layer.conv.weight
    mats = []
    for j in range(w.numel()):
        with torch.no_grad():
            unit = torch.zeros(w.numel(), dtype=w.dtype)
            unit[j] = 1.0
            w.copy_(unit.view(w.shape))
            eye = torch.eye(layer.in_type.fiber_size, dtype=torch.float64).unsqueeze(1)
            mats.append(layer(eye)[:, 0].flatten())  # (F_in, F_out): the map's columns
    return int(torch.linalg.matrix_rank(torch.stack(mats)))


def _make(group, max_order, in_max_order, c_in=1, c_out=1, **kw) -> GroupLinear:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="GroupLinear: no equivariant linear map")
        return GroupLinear(c_in, c_out, group=group, max_order=max_order,
                           in_max_order=in_max_order, dtype=torch.float64, **kw)


@pytest.mark.parametrize(("group", "max_order", "in_max_order", "f_in", "f_out"), CONFIGS,
                         ids=IDS)
def test_exact_for_every_element_and_shapes(group, max_order, in_max_order, f_in, f_out, gen):
    m = _make(group, max_order, in_max_order, 3, 4)
    assert m.in_type == FieldType(group, m.in_type.rep, in_max_order, spatial_dims=0)
    x = torch.randn(5, 3, f_in, generator=gen, dtype=torch.float64)
    assert m(x).shape == (5, 4, f_out)
    els = _elements(group, gen)
    assert equivariance_error(m, x, group, elements=els) < 1e-12
    # negative control: an unconstrained linear map of the same fibers
    dense = nn.Sequential(nn.Flatten(1), nn.Linear(3 * f_in, 4 * f_out, dtype=torch.float64),
                          nn.Unflatten(1, (4, f_out)))
    assert equivariance_error(dense, x, group, elements=els, in_rep=m.in_type,
                              out_rep=m.out_type) > 0.1


@pytest.mark.parametrize(("group", "max_order", "in_max_order", "f_in", "f_out"), CONFIGS,
                         ids=IDS)
def test_reaches_every_equivariant_map(group, max_order, in_max_order, f_in, f_out, gen):
    """The layer's basis spans the whole commutant: as expressive as escnn's ``Linear``."""
    m = _make(group, max_order, in_max_order, bias=False)
    els = _elements(group, gen, count=3)
    want = _commutant_dim(m.in_type, m.out_type, els)
    assert _reached_dim(m) == want
    if m.in_type.rep == "regular":
        assert want == f_in  # |G|: the right-regular permutations


def test_completeness_measure_can_fail(gen):
    """Negative control of the completeness measure: O(2)'s layer (one number per order)
    reaches less than SO(2)'s commutant of the same fibers (two per order m >= 1)."""
    o2 = _make("o2", 2, 2, bias=False)
    so2 = _make("so2", 2, 2, bias=False)
    commutant = _commutant_dim(so2.in_type, so2.out_type, _elements("so2", gen, 3))
    assert _reached_dim(so2) == commutant == 5
    assert _reached_dim(o2) == 3 < commutant


def test_float32_every_rotation(gen):
    m = GroupLinear(4, 6, group="so3", max_order=3)
    x = torch.randn(8, 4, 16, generator=gen)
    assert equivariance_error(m, x, "so3", elements=_elements("so3", gen, 8)) < 1e-5
    m2 = GroupLinear(4, 6, group="o2", max_order=3)
    x2 = torch.randn(8, 4, 7, generator=gen)
    assert equivariance_error(m2, x2, "o2", elements=_elements("o2", gen, 8)) < 1e-5


def test_so3_action_is_wigner(gen):
    """The SO(3) fiber action the tests use is the Wigner matrices' (order 1: the rotation
    matrix in some basis, so it has determinant 1 and the rotation's trace)."""
    g = get("so3").random_element(gen)
    d1 = harmonic_matrix(g, 1)[1:, 1:]
    r = get("so3").matrix(g)
    assert torch.allclose(torch.linalg.det(d1), torch.tensor(1.0, dtype=torch.float64))
    assert math.isclose(float(d1.trace()), float(torch.as_tensor(r).double().trace()),
                        abs_tol=1e-12)


def test_bias_on_the_invariant_part_only(gen):
    m = GroupLinear(2, 3, group="so3", max_order=2, dtype=torch.float64)
    with torch.no_grad():
        m.conv.weight.zero_()
        m.conv.bias.copy_(torch.tensor([1.0, 2.0, 3.0]))
    y = m(torch.randn(4, 2, 9, generator=gen, dtype=torch.float64))
    assert torch.equal(y[:, :, 0], torch.tensor([1.0, 2.0, 3.0]).expand(4, 3).double())
    assert torch.equal(y[:, :, 1:], torch.zeros(4, 3, 8, dtype=torch.float64))
    r = GroupLinear(2, 3, group="d6", dtype=torch.float64)
    with torch.no_grad():
        r.conv.weight.zero_()
        r.conv.bias.fill_(0.5)
    assert torch.equal(r(torch.randn(4, 2, 12, dtype=torch.float64)),
                       torch.full((4, 3, 12), 0.5, dtype=torch.float64))


@pytest.mark.parametrize("group,kw,fiber", [("p4m", {}, 8), ("so3", {"max_order": 2}, 9),
                                            ("c8", {"max_order": 2}, 5), ("oh", {}, 48)])
def test_export_to_plain_linear(group, kw, fiber, gen):
    m = GroupLinear(3, 4, group=group, dtype=torch.float64, **kw)
    e = export(m)
    assert [type(c) for c in e] == [nn.Flatten, nn.Linear, nn.Unflatten]
    x = torch.randn(5, 3, fiber, generator=gen, dtype=torch.float64)
    assert torch.allclose(e(x), m(x), atol=1e-12)
    net = nn.Sequential(m, nn.ReLU(), GroupLinear(4, 2, group=group, dtype=torch.float64,
                                                  **kw))
    assert torch.allclose(export(net)(x), net(x), atol=1e-12)


def test_state_dict_is_the_convs_and_loads_into_a_fresh_layer(gen):
    a = GroupLinear(3, 4, group="so2", max_order=2)
    assert set(a.state_dict()) == {"conv.weight", "conv.bias"}
    b = GroupLinear(3, 4, group="so2", max_order=2)
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 5, generator=gen)
    assert torch.equal(a(x), b(x))
    assert "GroupLinear(\n  3, 4, group='so2', max_order=2\n" in repr(a)
    assert "in_max_order=2" in repr(GroupLinear(3, 4, group="so2", max_order=1,
                                                in_max_order=2))


def test_unreached_orders_warn_in_the_layers_own_words():
    with pytest.warns(UserWarning, match=r"GroupLinear: no equivariant linear map reaches "
                                         r"output order\(s\) \[2, 3\] of so2 from input "
                                         r"orders 0..1") as record:
        GroupLinear(2, 3, group="so2", max_order=3, in_max_order=1)
    assert not any("kernel_size" in str(w.message) for w in record)
    with pytest.warns(UserWarning, match=r"GroupLinear: .*order\(s\) \[2\] of so3"):
        GroupLinear(2, 3, group="so3", max_order=2, in_max_order=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        GroupLinear(2, 3, group="so2", max_order=1, in_max_order=3)  # fewer orders out: fine


@pytest.mark.parametrize("kwargs,err,match", [
    ({"in_features": 0, "out_features": 2, "group": "p4"}, ValueError, "in_features=0"),
    ({"in_features": 2, "out_features": 2.5, "group": "p4"}, TypeError, "out_features=2.5"),
    ({"in_features": 2, "out_features": 2, "group": "so2"}, ValueError,
     "group='so2' has no regular fields.*give max_order"),
    ({"in_features": 2, "out_features": 2, "group": "p4", "in_max_order": 2}, ValueError,
     "in_max_order=2 .* give max_order too"),
    ({"in_features": 2, "out_features": 2, "group": "o", "max_order": 1}, ValueError,
     "max_order=1 asks for harmonic fields, but group='o' has regular fields"),
    ({"in_features": 2, "out_features": 2, "group": "p5"}, ValueError, "p5"),
    ({"in_features": 2, "out_features": 2, "group": "p4", "bias": 1}, TypeError, "bias"),
])
def test_refusals_at_construction(kwargs, err, match):
    with pytest.raises(err, match=match):
        GroupLinear(**kwargs)


def test_wrong_inputs_name_the_layer_and_the_shape():
    m = GroupLinear(3, 4, group="p4m")
    with pytest.raises(ValueError, match=r"GroupLinear: x must be 3-D \(B, C, F\).*\(2, 3, 8, "
                                         r"5, 5\)"):
        m(torch.randn(2, 3, 8, 5, 5))
    with pytest.raises(ValueError, match=r"GroupLinear: x must have F=8 slots.*\(2, 3, 4\)"):
        m(torch.randn(2, 3, 4))
    with pytest.raises(ValueError, match=r"GroupLinear.*3.*\(2, 5, 8\)"):
        m(torch.randn(2, 5, 8))
    # dtype and device: named as GroupLinear's, not as the conv it runs
    for layer, f in ((m, 8), (GroupLinear(3, 4, group="so3", max_order=1), 4)):
        with pytest.raises(TypeError, match=r"^GroupLinear: x has dtype torch.int64"):
            layer(torch.ones(2, 3, f, dtype=torch.long))
        with pytest.raises(TypeError, match=r"^GroupLinear: x has dtype torch.float64, but the "
                                            r"module's parameters are torch.float32"):
            layer(torch.ones(2, 3, f, dtype=torch.float64))
        with pytest.raises(ValueError, match=r"^GroupLinear: x is on meta but the module's "
                                             r"parameters are on cpu"):
            layer(torch.ones(2, 3, f, device="meta"))
        assert layer(torch.ones(2, 3, f)).shape == (2, 4, f)  # the control


def test_a_group_conv_names_an_input_on_another_device():
    """An input on another device than the conv's parameters: a ValueError naming both (torch
    raised its own device error from inside the expansion); the same device runs."""
    m = GroupConv2d(3, 4, 1, group="p4m")
    with pytest.raises(ValueError, match=r"^GroupConv2d: x is on meta but the module's "
                                         r"parameters are on cpu; move the input"):
        m(torch.ones(2, 3, 8, 1, 1, device="meta"))
    assert m(torch.ones(2, 3, 8, 1, 1)).shape == (2, 4, 8, 1, 1)


def test_on_fibers_types_and_dims():
    bn = OnFibers(HarmonicBatchNorm(3, 1, group="so3"))
    assert bn.spatial_dims == 3
    assert bn.in_type == FieldType("so3", "harmonic", 1, spatial_dims=0)
    pool = OnFibers(GroupPool("max"))
    assert pool.spatial_dims == 2 and pool.in_type == FieldType(None, "regular",
                                                                 spatial_dims=0)
    assert pool(torch.randn(2, 3, 8)).shape == (2, 3)
    assert OnFibers(nn.ReLU()).in_type is None
    assert OnFibers(NormPool(2, group="so3")).out_type.rep == "invariant"
    with pytest.raises(TypeError, match="OnFibers expects an nn.Module as module"):
        OnFibers(torch.relu)
    with pytest.raises(ValueError, match="spatial_dims=4"):
        OnFibers(nn.ReLU(), 4)


def test_on_fibers_refuses_a_map_that_changes_the_size():
    def widen(t: torch.Tensor) -> torch.Tensor:
        return t.expand(*t.shape[:-2], 2, 2)

    with pytest.raises(ValueError, match=r"on_fibers: f turned the 2 unit spatial dims .* "
                                         r"\(2, 3, 5, 2, 2\)"):
        on_fibers(widen, torch.randn(2, 3, 5))
    with pytest.raises(ValueError, match=r"on_fibers: x must be \(B, C, F\)"):
        on_fibers(torch.relu, torch.randn(5))
    with pytest.raises(ValueError, match=r"expects C=3 fields.*\[on_fibers: the input was the "
                                         r"fibers \(4, 2, 5\)"):
        OnFibers(NormNonlinearity(3, 2))(torch.randn(4, 2, 5))
    assert on_fibers(GroupConv2d(3, 5, 1, group="p4"), torch.zeros(2, 3, 4)).shape == (2, 5, 4)


def test_an_so3_mlp_learns_an_equivariant_target(gen):
    """Training loop: an SO(3) MLP on (scalar, vector) fibers fits an equivariant target (each
    output vector a norm-gated mix of the input vectors), stays exact while training, and its
    loss falls by 10x."""
    x = torch.randn(256, 3, 4, generator=gen)
    v = x[:, :, 1:]
    target = (v * torch.sigmoid(v.norm(dim=2, keepdim=True) - 1)).sum(1, keepdim=True)
    target = torch.cat([v.norm(dim=2).mean(1, keepdim=True).unsqueeze(2), target], 2)
    mlp = nn.Sequential(GroupLinear(3, 16, group="so3", max_order=1),
                        OnFibers(NormNonlinearity(16, 1, group="so3")),
                        GroupLinear(16, 16, group="so3", max_order=1),
                        OnFibers(NormNonlinearity(16, 1, group="so3")),
                        GroupLinear(16, 1, group="so3", max_order=1))
    opt = torch.optim.Adam(mlp.parameters(), lr=1e-2)
    first = last = None
    for _ in range(300):
        loss = (mlp(x) - target).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
        last = loss.item()
    assert last < first / 10
    assert equivariance_error(mlp, x[:16], "so3", elements=_elements("so3", gen, 4)) < 1e-5


def test_check_grid_and_layerwise_read_fibers(gen):
    """check_grid: a model of fibers alone has no grid (an empty list, after the rank check);
    layerwise_equivariance: GroupLinear and OnFibers are one layer each, a ReLU and a
    BatchNorm1d between them are read as the fibers they get, and a slot-wise ReLU on
    harmonic fibers is where equivariance is lost (the negative control)."""
    from equilayers import check_grid
    from equilayers.metrics import layerwise_equivariance

    mlp = nn.Sequential(GroupLinear(2, 6, group="p4m"), nn.ReLU(), nn.BatchNorm1d(6),
                        GroupLinear(6, 3, group="p4m"), OnFibers(GroupPool("max"))).eval()
    assert check_grid(mlp, (2, 2, 8), "p4m") == []
    with pytest.raises(ValueError, match=r"input_shape=\(2, 2, 8, 5, 5\) must have 3 dims "
                                         r"\(B, C, F\)"):
        check_grid(mlp, (2, 2, 8, 5, 5), "p4m")
    rows = layerwise_equivariance(mlp, torch.randn(4, 2, 8, generator=gen), "p4m")
    assert [(r.name, r.rep) for r in rows] == [
        ("0", "regular"), ("1", "regular"), ("2", "regular"), ("3", "regular"),
        ("4", "invariant"), ("(output)", "invariant")]
    assert all(r.error < 1e-5 and not r.lost for r in rows)
    bad = nn.Sequential(GroupLinear(2, 6, group="so3", max_order=1), nn.ReLU(),
                        GroupLinear(6, 3, group="so3", max_order=1)).eval()
    rows = layerwise_equivariance(bad, torch.randn(4, 2, 4, generator=gen), "so3")
    assert [r.name for r in rows if r.lost] == ["1"]


def test_the_forward_is_one_matrix_product(gen):
    """On 1 x 1 maps the group convs compute one F.linear with their expanded filter: the same
    map as F.conv2d / F.conv3d on the pixel (the bias on every regular slot, on a harmonic
    field's order-0 slot), in train and eval mode; the eval filter follows an in-place step
    (never stale)."""
    from equilayers.functional._gconv import one_pixel

    for group, kw, fiber in (("d6", {}, 12), ("so2", {"max_order": 2}, 5),
                             ("so3", {"max_order": 1}, 4), ("oh", {}, 48)):
        m = GroupLinear(3, 4, group=group, dtype=torch.float64, **kw)
        with torch.no_grad():
            m.conv.bias.normal_(generator=gen)
        x = torch.randn(5, 3, fiber, generator=gen, dtype=torch.float64)

        def dense(x=x, m=m):
            w = m.conv.expanded_filter().flatten(1)
            out = m.out_type.fiber_size
            b = (m.conv.bias.repeat_interleave(out) if m.out_type.rep == "regular" else
                 torch.nn.functional.pad(m.conv.bias.unsqueeze(1), (0, out - 1)).flatten())
            return torch.einsum("oi,bi->bo", w, x.flatten(1)).add(b).unflatten(1, (4, out))
        assert torch.allclose(m(x), dense(), atol=1e-12)
        m.eval()
        with torch.no_grad():
            first = m(x)
            m.conv.weight.add_(0.5)  # an in-place step, as a fused optimizer's
            after = m(x)
            assert not torch.allclose(after, first)
            assert torch.allclose(after, dense(), atol=1e-12)
    # the fast path is F.conv2d's map; any other shape is left to F.conv2d (None)
    xs = torch.randn(4, 6, 1, 1, generator=gen, dtype=torch.float64)
    w = torch.randn(5, 6, 1, 1, generator=gen, dtype=torch.float64)
    b = torch.randn(5, generator=gen, dtype=torch.float64)
    assert torch.allclose(one_pixel(xs, w, b), torch.nn.functional.conv2d(xs, w, b),
                          atol=1e-12)
    assert one_pixel(torch.randn(4, 6, 2, 1, dtype=torch.float64), w, b) is None
    assert one_pixel(xs, torch.randn(5, 6, 3, 3, dtype=torch.float64), b) is None
