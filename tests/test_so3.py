"""SO(3) and O(3): the groups, their harmonic analysis (real spherical harmonics, Wigner-D,
Clebsch-Gordan), the interpolated rotation and the action on fields (issue 16).

Exact checks run against the analytic identities (orthonormality, the representation
property, the intertwiner equation) and over the cube's rotations on the voxel grid; the
negative control, a Clebsch-Gordan slice of the wrong sign, must fail the same check. The
steerable 3-D basis and ``SteerableConv3d``: ``test_so3_conv.py``; nonlinearities, norm pooling
and batch norm on SO(3) fields: ``test_so3_nonlinearities.py``.
"""

from __future__ import annotations

import math

import pytest
import torch
from _so3_common import D64

from equilayers.groups import (
    FieldType,
    SO3Group,
    act,
    clebsch_gordan,
    get,
    rotate3d,
    spherical_harmonics,
    wigner_blocks,
    wigner_d,
)


def _rand_rot(gen: torch.Generator, group: str = "so3") -> torch.Tensor:
    g = get(group)
    assert isinstance(g, SO3Group)
    return g.matrix(g.random_element(gen))


# --- the groups ------------------------------------------------------------------------------
def test_groups_and_grid_subgroups():
    so3, o3 = get("so3"), get("o3")
    assert isinstance(so3, SO3Group) and so3.name == "so3" and o3.name == "o3"
    assert so3.spatial_dim == 3 and not so3.is_finite and o3.has_reflections
    assert so3.grid_subgroup() == get("o") and o3.grid_subgroup() == get("oh")
    assert len(so3.grid_elements()) == 24 and len(o3.grid_elements()) == 48
    assert all(g.is_grid for g in o3.grid_elements())
    r = so3.from_axis_angle([0, 0, 1], math.pi / 2)
    assert r.is_grid and r == so3.grid_elements()[1]  # the quarter turn about z, x -> y
    off = so3.from_axis_angle([1, 1, 0], 0.3)
    assert not off.is_grid and (off * off.inverse()) == so3.identity
    assert FieldType.harmonic("so3", 2).fiber_size == 9
    assert FieldType.harmonic("o3", 1).tensor_ndim == 6


def test_group_bad_input():
    so3 = get("so3")
    with pytest.raises(ValueError, match="det -1.*use 'o3'"):
        so3.element(-torch.eye(3))
    with pytest.raises(ValueError, match="not orthogonal"):
        so3.element(2 * torch.eye(3))
    with pytest.raises(ValueError, match=r"^so3.from_axis_angle: inversion=True needs 'o3'"):
        so3.from_axis_angle([0, 0, 1], 0.3, inversion=True)
    # orthogonal to 1e-9, as the message says: a rotation scaled by 1 + 1e-6 (M M^T off by
    # 2e-6 on its diagonal) is not one (allclose's default rtol=1e-5 let it through)
    r = so3.matrix(so3.from_axis_angle([1, 2, 3], 0.4))
    bad = r * (1 + 1e-6)
    with pytest.raises(ValueError, match=r"not orthogonal \(M M\^T = I to 1e-9\)"):
        so3.element(bad)
    with pytest.raises(ValueError, match="not orthogonal"):
        rotate3d(torch.zeros(1, 3, 3, 3), bad)
    with pytest.raises(ValueError, match=r"not orthogonal \(M M\^T = I to 1e-9\)"):
        wigner_d(1, bad)
    assert so3.element(r) == so3.from_axis_angle([1, 2, 3], 0.4)  # control: r itself
    # a float32 rotation is orthogonal only to ~1e-7: refused, and the message says why and
    # what to pass (it said "pass a rotation matrix", which it was)
    for call in (so3.element, lambda m: rotate3d(torch.zeros(1, 3, 3, 3), m),
                 lambda m: wigner_d(1, m)):
        with pytest.raises(ValueError, match="a float32 matrix is orthogonal only to its "
                           "precision; pass it in float64"):
            call(r.float())
        call(r)  # the control: the same rotation in float64


def test_o3_random_elements_are_haar_on_both_components(gen):
    """O(3)'s random_element draws the inversion with probability 1/2 (so a test over random
    elements reaches det -1), SO(3)'s never; each is orthogonal with det +-1."""
    so3, o3 = get("so3"), get("o3")
    dets = [o3.random_element(gen).det for _ in range(200)]
    assert set(dets) == {1, -1} and 70 < dets.count(-1) < 130  # binomial(200, 1/2): 6 sigma
    assert all(so3.random_element(gen).det == 1 for _ in range(50))
    with pytest.raises(ValueError, match="harmonic"):
        FieldType.harmonic("o", 1)  # the cube groups have no harmonic fields


def test_ball_mask_keeps_the_voxels_on_its_sphere():
    """ball_mask(7, 7, 7, margin=1) is the ball of radius (7 - 1) / 2 - 1 = 2 about the
    centre, closed (as disk_mask's disk): the 33 offsets with |o|^2 <= 4, the six at distance
    exactly 2 on the axes included; margin=0 gives radius 3 (123 voxels)."""
    from equilayers.groups._so3 import ball_mask

    o = torch.arange(7) - 3
    sq = o[:, None, None] ** 2 + o[None, :, None] ** 2 + o[None, None, :] ** 2
    for margin, r2, count in ((1.0, 4, 33), (0.0, 9, 123)):
        mask = ball_mask(7, 7, 7, margin)
        assert torch.equal(mask, sq <= r2) and int(mask.sum()) == count
    assert ball_mask(7, 7, 7, 1.0)[3, 3, 5] and not ball_mask(7, 7, 7, 1.0)[3, 3, 6]


# --- spherical harmonics, Wigner-D, Clebsch-Gordan --------------------------------------------
def _gauss_legendre(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    k = torch.arange(1, n, dtype=D64)
    beta = k / torch.sqrt(4 * k * k - 1)
    nodes, vecs = torch.linalg.eigh(torch.diag(beta, 1) + torch.diag(beta, -1))
    return nodes, 2 * vecs[0] ** 2


def test_spherical_harmonics_are_orthonormal():
    big = 6
    z, wz = _gauss_legendre(big + 2)
    phi = torch.arange(2 * big + 3, dtype=D64) * (2 * math.pi / (2 * big + 3))
    s = torch.sqrt(1 - z * z)
    pts = torch.stack([s[:, None] * torch.cos(phi), s[:, None] * torch.sin(phi),
                       z[:, None].expand(-1, phi.numel())], -1).reshape(-1, 3)
    w = (wz[:, None] * (2 * math.pi / phi.numel())).expand(-1, phi.numel()).reshape(-1)
    y = spherical_harmonics(big, pts)
    gram = y.T @ (w[:, None] * y)
    torch.testing.assert_close(gram, torch.eye((big + 1) ** 2, dtype=D64), atol=1e-12, rtol=0)


def test_order_one_is_the_vector():
    """Y_1 = sqrt(3 / 4 pi) (y, z, x); D_1(R) is R with the axes in that order."""
    gen = torch.Generator().manual_seed(0)
    u = torch.randn(5, 3, generator=gen, dtype=D64)
    u = u / u.norm(dim=1, keepdim=True)
    torch.testing.assert_close(spherical_harmonics(1, u)[:, 1:],
                               math.sqrt(3 / (4 * math.pi)) * u[:, [1, 2, 0]])
    r = _rand_rot(gen)
    perm = torch.eye(3, dtype=D64)[[1, 2, 0]]
    torch.testing.assert_close(wigner_d(1, r), perm @ r @ perm.T, atol=1e-13, rtol=0)


@pytest.mark.parametrize("order", range(6))
def test_wigner_d_is_an_orthogonal_representation(order):
    gen = torch.Generator().manual_seed(order)
    a, b = _rand_rot(gen, "o3"), _rand_rot(gen, "o3")
    da, db = wigner_d(order, a), wigner_d(order, b)
    eye = torch.eye(2 * order + 1, dtype=D64)
    kw = {"atol": 1e-12, "rtol": 0}
    torch.testing.assert_close(wigner_d(order, a @ b), da @ db, **kw)
    torch.testing.assert_close(da @ da.T, eye, **kw)
    torch.testing.assert_close(wigner_d(order, a.T), da.T, **kw)
    torch.testing.assert_close(wigner_d(order, -torch.eye(3, dtype=D64)), (-1) ** order * eye,
                               **kw)
    # Y(R u) = D(R) Y(u) on fresh points
    u = torch.randn(7, 3, generator=gen, dtype=D64)
    y = spherical_harmonics(order, u)[:, order * order:]
    torch.testing.assert_close(spherical_harmonics(order, u @ a.T)[:, order * order:],
                               y @ da.T, **kw)
    # the character depends on the angle only: sin((2l+1) t / 2) / sin(t / 2)
    rot = a * torch.sign(torch.linalg.det(a))
    t = math.acos(max(-1.0, min(1.0, (float(rot.trace()) - 1) / 2)))
    chi = math.sin((2 * order + 1) * t / 2) / math.sin(t / 2)
    assert abs(float(wigner_d(order, rot).trace()) - chi) < 1e-10


def _cg_problems(lo: int, j: int, li: int, r: torch.Tensor) -> float:
    q = clebsch_gordan(lo, j, li)
    left = torch.einsum("ax,xmb->amb", wigner_d(lo, r), q)
    right = torch.einsum("anc,nm,cb->amb", q, wigner_d(j, r), wigner_d(li, r))
    return float((left - right).abs().max())


def test_clebsch_gordan_intertwines():
    gen = torch.Generator().manual_seed(3)
    r = _rand_rot(gen)
    worst = 0.0
    for lo in range(4):
        for li in range(4):
            for j in range(abs(lo - li), lo + li + 1):
                q = clebsch_gordan(lo, j, li)
                assert abs(float(q.norm()) - 1) < 1e-12
                worst = max(worst, _cg_problems(lo, j, li, r))
    assert worst < 1e-12
    # the odd coupling 1 x 1 -> 1 is the cross product (in the order y, z, x)
    q = clebsch_gordan(1, 1, 1)
    assert torch.allclose(q, -q.permute(0, 2, 1), atol=1e-14)
    assert torch.allclose(q.abs().max(), torch.tensor(6.0, dtype=D64).rsqrt())  # eps / sqrt 6
    with pytest.raises(ValueError, match="cannot couple"):
        clebsch_gordan(0, 2, 1)


def test_negative_control_wrong_sign_clebsch_gordan():
    """One slice of the wrong sign is no intertwiner: the check above reports it."""
    gen = torch.Generator().manual_seed(3)
    r = _rand_rot(gen)
    q = clebsch_gordan(1, 2, 1)
    q[:, 0] = -q[:, 0]
    left = torch.einsum("ax,xmb->amb", wigner_d(1, r), q)
    right = torch.einsum("anc,nm,cb->amb", q, wigner_d(2, r), wigner_d(1, r))
    assert float((left - right).abs().max()) > 1e-2


# --- the interpolated rotation ----------------------------------------------------------------
def test_rotate3d_equals_the_exact_action_on_the_grid(gen):
    x = torch.randn(2, 3, 5, 5, 5, generator=gen, dtype=D64)
    o3 = get("o3")
    for g in o3.grid_elements()[::5]:
        exact = act(x, g, "trivial")
        torch.testing.assert_close(rotate3d(x, o3.matrix(g)), exact, atol=1e-12, rtol=0)


# --- the action on fields ---------------------------------------------------------------------
def test_harmonic_action_on_fields():
    """act() on an SO(3) field: the Wigner blocks on the fiber, exact moves on the grid."""
    so3 = get("so3")
    g = so3.grid_elements()[5]
    x = torch.randn(1, 1, 9, 3, 3, 3, dtype=D64)
    y = act(x, g, "harmonic")
    rho = wigner_blocks(2, so3.matrix(g))
    torch.testing.assert_close(y, torch.einsum("ab,ncbxyz->ncaxyz", rho,
                                               act(x, g, "trivial")))
