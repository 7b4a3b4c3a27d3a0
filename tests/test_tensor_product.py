"""TensorProductNonlinearity: the quadratic nonlinearity of harmonic fields.

The shared case table (``tensor-product/*``) checks exactness with negative controls; here:
the basis reaches every equivariant symmetric bilinear map (its size against the dimension
computed independently from characters), SO(3)'s maps are the Clebsch-Gordan products, the
basis does not depend on how it was computed (so weights mean the same map anywhere), the
init scale, module == functional, meta-device init, and a training loop.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from conftest import seeded_rng
from torch import nn

from equilayers.functional import _tensor_product as TP
from equilayers.functional import tensor_product_basis, tensor_product_nonlinearity
from equilayers.groups import clebsch_gordan, get
from equilayers.groups._actions import harmonic_matrix
from equilayers.nn import GroupLinear, OnFibers, TensorProductNonlinearity
from equilayers.testing import equivariance_error

PLANAR = [("so2", 2, 2), ("so2", 3, 3), ("so2", 1, 3), ("o2", 3, 3), ("o2", 2, 1),
          ("c4", 3, 3), ("c3", 2, 2), ("c8", 3, 2), ("d4", 3, 3), ("d6", 2, 2), ("d3", 2, 3)]
SPHERE = [("so3", 1, 1), ("so3", 2, 2), ("so3", 1, 2), ("so3", 3, 3), ("o3", 2, 2),
          ("o3", 2, 1), ("o3", 3, 3)]


def _planar_dim(group: str, m_in: int, m_out: int) -> int:
    """dim Hom_G(Sym^2 V, W) = mean over G of chi_W(g) (chi_V(g)^2 + chi_V(g^2)) / 2, the
    characters read off the fiber action; SO(2)/O(2) averaged over C_K/D_K with K = 64, more
    than every frequency in the integrand (so the average is the Haar integral)."""
    grp = get(group)
    if grp.is_finite:
        els = grp.elements()
    else:
        els = [grp.element(2 * math.pi * k / 64) for k in range(64)]
        if grp.has_reflections:
            els += [grp.element(2 * math.pi * k / 64, reflection=True) for k in range(64)]
    total = 0.0
    for g in els:
        chi_v = float(harmonic_matrix(g, m_in).trace())
        chi_v2 = float(harmonic_matrix(g * g, m_in).trace())
        chi_w = float(harmonic_matrix(g, m_out).trace())
        total += chi_w * (chi_v ** 2 + chi_v2) / 2
    return round(total / len(els))


def _sphere_dim(group: str, m_in: int, m_out: int) -> int:
    """The same for SO(3)/O(3) by Weyl's integration formula over the rotation angle,
    ``chi_l(t) = sin((l + 1/2) t) / sin(t / 2)``, density ``(1 - cos t) / pi`` on ``[0, pi]``
    (O(3): half of it on the inversions, where order ``l`` gains ``(-1)^l``)."""
    t = torch.linspace(0, math.pi, 4001, dtype=torch.float64)[1:]

    def chi(orders: int, angle: torch.Tensor, parity: bool = False) -> torch.Tensor:
        out = torch.zeros_like(angle)
        for l in range(orders + 1):
            out += (-1.0) ** (l if parity else 0) * torch.sin((l + 0.5) * angle) / torch.sin(
                angle / 2)
        return out

    weight = (1 - torch.cos(t)) / math.pi
    cosets = [False, True] if group == "o3" else [False]
    total = 0.0
    for inv in cosets:
        f = chi(m_out, t, inv) * (chi(m_in, t, inv) ** 2 + chi(m_in, 2 * t)) / 2 * weight
        total += float(torch.trapezoid(f, t)) + 0.0  # (the integrand vanishes at t = 0)
    return round(total / len(cosets))


@pytest.mark.parametrize("group, m_in, m_out", PLANAR + SPHERE,
                         ids=[f"{g}-{a}-{b}" for g, a, b in PLANAR + SPHERE])
def test_basis_reaches_every_symmetric_equivariant_map(group, m_in, m_out):
    """The basis is as large as the space of equivariant symmetric bilinear maps (computed
    from characters alone) and linearly independent: nothing a field's square can give is
    missing."""
    want = (_sphere_dim if group in ("so3", "o3") else _planar_dim)(group, m_in, m_out)
    basis = tensor_product_basis(group, m_in, m_out)
    assert basis.shape[0] == want
    assert int(torch.linalg.matrix_rank(basis.flatten(1))) == want
    assert torch.equal(basis, basis.transpose(2, 3))  # symmetric forms


def test_completeness_measure_can_fail():
    """Control: the character count tells O(2) from SO(2) (each order m >= 1 pairing has two
    maps for SO(2), one for O(2)) and the basis of one is not the size of the other."""
    assert _planar_dim("so2", 2, 2) == tensor_product_basis("so2", 2).shape[0] == 11
    assert _planar_dim("o2", 2, 2) == tensor_product_basis("o2", 2).shape[0] == 7
    assert _sphere_dim("o3", 2, 2) == 8 < _sphere_dim("so3", 2, 2) == 9


def test_so3_maps_are_the_symmetrised_clebsch_gordan_products():
    """Each SO(3) basis map couples one pair of orders l1 <= l2 into one L, and equals the
    Clebsch-Gordan tensor of that coupling (symmetrised, normalised) up to sign; the pairs are
    exactly those with |l1 - l2| <= L <= l1 + l2 and, for l1 = l2, L even."""
    basis = tensor_product_basis("so3", 2, 2)
    found = set()
    for b in basis:
        nz = b.abs() > 1e-12
        lo = {int(math.isqrt(o)) for o in nz.any(2).any(1).nonzero().flatten().tolist()}
        li = sorted({int(math.isqrt(i)) for i in nz.any(0).any(0).nonzero().flatten().tolist()})
        assert len(lo) == 1 and len(li) in (1, 2)
        big, l1, l2 = lo.pop(), li[0], li[-1]
        cg = clebsch_gordan(big, l1, l2)  # (2L+1, 2l1+1, 2l2+1)
        full = torch.zeros_like(b)
        full[big ** 2:(big + 1) ** 2, l1 ** 2:(l1 + 1) ** 2, l2 ** 2:(l2 + 1) ** 2] = cg
        full = full + full.transpose(1, 2)
        full = full / full.norm()
        assert abs(abs(float((full * b).sum())) - 1) < 1e-12
        found.add((big, l1, l2))
    want = {(big, l1, l2) for big in range(3) for l1 in range(3) for l2 in range(l1, 3)
            if abs(l1 - l2) <= big <= l1 + l2 and (l1 != l2 or big % 2 == 0)}
    assert found == want


@pytest.mark.parametrize("group, m_in, m_out", [("so2", 3, 3), ("o2", 2, 3), ("so3", 2, 2),
                                                ("o3", 2, 2), ("c4", 3, 3)])
def test_basis_is_canonical(monkeypatch, group, m_in, m_out):
    """The same basis from other generating elements (other rotations, a larger K): it
    depends on the space of maps alone, so a checkpoint means the same map on any machine."""
    first = TP._basis_cpu.__wrapped__(get(group), m_in, m_out)
    grp = get(group)
    if grp.spatial_dim == 3:
        other = [grp.from_axis_angle((0.3, -1.0, 0.2), 2.5),
                 grp.from_axis_angle((1.0, 0.1, 0.7), 0.9)]
        if grp.has_reflections:
            other.append(grp.from_axis_angle((1.0, 0.0, 0.0), 1.0, inversion=True))
    elif grp.is_finite:
        n, _ = grp.planar_params()
        assert n is not None
        other = [grp.element(k, bool(s)) for s in range(2 if grp.has_reflections else 1)
                 for k in range(n)]
    else:
        other = [grp.element(2 * math.pi / 31), grp.element(2 * math.pi / 29)]
        if grp.has_reflections:
            other.append(grp.element(1.0, reflection=True))
    monkeypatch.setattr(TP, "_generators", lambda group, top: other)
    second = TP._basis_cpu.__wrapped__(get(group), m_in, m_out)
    assert first.shape == second.shape
    assert torch.allclose(first, second, atol=1e-10)


@pytest.mark.parametrize("group, m_in, m_out, dims", [
    ("so2", 3, 3, 2), ("o2", 2, 3, 2), ("c4", 3, 3, 2), ("so3", 2, 2, 3), ("o3", 1, 2, 3)])
def test_unit_second_moment_at_init(gen, group, m_in, m_out, dims):
    """On unit normal fibers every output order has second moment about 1 per slot at init
    (averaged over 256 fields, each with its own weights)."""
    with seeded_rng(0):
        m = TensorProductNonlinearity(256, group, m_in, m_out, dtype=torch.float64)
    f = m.in_type.fiber_size
    assert f is not None
    x = torch.randn(64, 256, f, *([2] * dims), generator=gen, dtype=torch.float64)
    with torch.no_grad():
        y = m(x)
    slots = TP._slots(get(group), m_out)
    for a, d in slots:
        moment = float(y[:, :, a:a + d].square().mean())
        assert 0.7 < moment < 1.4, (a, d, moment)


def test_module_equals_functional_and_every_rotation_exactly(gen):
    """The module is its functional twin with its weight; on fibers alone (OnFibers) every
    SO(3) rotation is exact, off the cube's too."""
    m = TensorProductNonlinearity(3, "so3", 2, 1, dtype=torch.float64)
    x = torch.randn(4, 3, 9, 2, 2, 2, generator=gen, dtype=torch.float64)
    ref = tensor_product_nonlinearity(x, m.weight, "so3", 2, 1)
    assert torch.equal(m(x), ref)
    fib = OnFibers(m)
    els = [get("so3").random_element(gen) for _ in range(5)]
    assert equivariance_error(fib, x[..., 0, 0, 0], "so3", elements=els) < 1e-12
    # the functional takes fibers alone (no spatial dims), as its docstring says
    for group, f in (("so3", 9), ("so2", 5)):
        w = torch.randn(3, tensor_product_basis(group, 2, 1).shape[0], generator=gen,
                        dtype=torch.float64)
        v = x[:, :, :f, 0, 0, 0]
        alone = tensor_product_nonlinearity(v, w, group, 2, 1)
        assert alone.shape == (4, 3, get(group).harmonic_size(1))
        torch.testing.assert_close(alone, tensor_product_nonlinearity(
            v[..., None, None], w, group, 2, 1)[..., 0, 0], rtol=0, atol=1e-14)


def test_gradcheck(gen):
    m = TensorProductNonlinearity(2, "o2", 2, dtype=torch.float64)
    x = torch.randn(2, 2, 5, 3, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, w: tensor_product_nonlinearity(a, w, "o2", 2),
                                    (x, m.weight.detach().clone().requires_grad_()))


def test_meta_init_then_load_and_dtype_moves(gen):
    """Built on the meta device, materialised and loaded: the basis buffer is refilled, the
    output equals a fresh layer's; ``.double()`` refills it from the float64 cache."""
    ref = TensorProductNonlinearity(3, "so3", 1)
    with torch.device("meta"):
        m = TensorProductNonlinearity(3, "so3", 1)
    assert m(torch.empty(2, 3, 4, 2, 2, 2, device="meta")).shape == (2, 3, 4, 2, 2, 2)
    m = m.to_empty(device="cpu")
    m.load_state_dict(ref.state_dict())
    assert list(ref.state_dict()) == ["weight"]  # the basis is derived, not saved
    x = torch.randn(2, 3, 4, 2, 2, 2, generator=gen)
    assert torch.equal(m(x), ref(x))
    m = m.double()
    assert m.basis.dtype == torch.float64
    assert torch.equal(m.basis, TP.pair_basis(get("so3"), 1, 1))


def test_unreached_orders_warn_and_extra_repr():
    with pytest.warns(UserWarning, match=r"no product of orders 0..1 of so3 reaches output "
                                         r"order\(s\) \[3\]"):
        m = TensorProductNonlinearity(2, "so3", 1, 3)
    assert repr(m) == "TensorProductNonlinearity(2, group='so3', max_order=1, out_max_order=3)"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        TensorProductNonlinearity(2, "so3", 1, 2)
    assert "spatial_dims=3" in repr(TensorProductNonlinearity(2, "so2", 1, spatial_dims=3))


@pytest.mark.parametrize("kwargs, err, match", [
    (dict(channels=2, group=None, max_order=1), ValueError, "group=None; the maps depend"),
    (dict(channels=2, group="o", max_order=1), ValueError, "harmonic"),
    (dict(channels=2, group="so3", max_order=1, spatial_dims=0), ValueError, "OnFibers"),
])
def test_refusals_at_construction(kwargs, err, match):
    with pytest.raises(err, match=match):
        TensorProductNonlinearity(**kwargs)


def test_an_mlp_learns_a_product_of_fields(gen):
    """Training loop: an SO(3) MLP (linear -> tensor product -> linear) fits ``s v`` and
    ``|v|^2`` from a scalar field ``s`` and a vector field ``v`` (products, which a linear map
    cannot make) to 1% of the target's energy, and stays exact while training."""
    x = torch.randn(512, 2, 4, generator=gen)
    s, v = x[:, 0, 0], x[:, 1, 1:]
    target = torch.cat([v.square().sum(1, keepdim=True), s[:, None] * v], 1)[:, None]
    with seeded_rng(0):
        mlp = nn.Sequential(GroupLinear(2, 8, group="so3", max_order=1),
                            OnFibers(TensorProductNonlinearity(8, "so3", 1)),
                            GroupLinear(8, 1, group="so3", max_order=1))
    opt = torch.optim.Adam(mlp.parameters(), lr=1e-2)
    for _ in range(400):
        loss = (mlp(x) - target).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.01 * float(target.square().mean())
    els = [get("so3").random_element(gen) for _ in range(4)]
    assert equivariance_error(mlp, x[:16], "so3", elements=els) < 1e-5
