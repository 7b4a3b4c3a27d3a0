import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from equilayers.groups import (
    act,
    act_spatial,
    circular_shift,
    fractional_shift,
    get,
    harmonic_matrix,
    rot90,
    rotate,
    shift,
)


def _rep_input(rep, group, gen, size=7):
    if rep == "regular":
        return torch.randn(2, 3, group.order, size, size, generator=gen, dtype=torch.float64)
    if rep == "harmonic":
        return torch.randn(2, 3, 7, size, size, generator=gen, dtype=torch.float64)
    return torch.randn(2, 3, size, size, generator=gen, dtype=torch.float64)


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(["c1", "c2", "c4", "d1", "d2", "d4"]),
       st.sampled_from(["trivial", "regular", "harmonic"]), st.data())
def test_action_is_homomorphism_on_grid(name, rep, data):
    G = get(name)
    gen = torch.Generator().manual_seed(data.draw(st.integers(0, 1000)))
    x = _rep_input(rep, G, gen, size=data.draw(st.sampled_from([5, 6, 9])))
    a = data.draw(st.sampled_from(G.elements()))
    b = data.draw(st.sampled_from(G.elements()))
    # exact: the same floats, moved
    lhs, rhs = act(act(x, b, rep), a, rep), act(x, a * b, rep)
    if rep == "harmonic":
        torch.testing.assert_close(lhs, rhs, rtol=1e-12, atol=1e-12)
    else:
        assert torch.equal(lhs, rhs)
    assert torch.equal(act(act(x, a, rep), a.inverse(), rep), x) or rep == "harmonic"


def test_fiber_action_homomorphism_off_grid():
    # the fiber part is exact for every element, including the off-grid ones of C8/D8/O(2)
    for name in ["c8", "d8", "d6"]:
        G = get(name)
        for a in G.elements():
            for b in G.elements():
                ra, rb, rab = (harmonic_matrix(e, 3) for e in (a, b, a * b))
                torch.testing.assert_close(ra @ rb, rab, rtol=0, atol=1e-12)
                pa, pb, pab = (G.regular_permutation(e) for e in (a, b, a * b))
                assert torch.equal(pb[pa], pab)
    o2 = get("o2")
    a, b = o2.element(0.7, True), o2.element(2.1)
    torch.testing.assert_close(harmonic_matrix(a, 4) @ harmonic_matrix(b, 4),
                               harmonic_matrix(a * b, 4), rtol=0, atol=1e-12)


def test_off_grid_action_is_approximately_homomorphic(gen):
    from equilayers.groups import disk_mask, gaussian_smooth

    x = gaussian_smooth(torch.randn(1, 1, 33, 33, generator=gen, dtype=torch.float64), 2.0)
    G = get("so2")
    a, b = G.element(math.radians(20)), G.element(math.radians(25))
    m = disk_mask(33, 33, 3)
    lhs, rhs = act_spatial(act_spatial(x, b), a), act_spatial(x, a * b)
    err = ((lhs - rhs)[..., m].norm() / rhs[..., m].norm()).item()
    assert err < 0.05


def test_rotate_agrees_with_rot90(gen):
    x = torch.randn(2, 3, 8, 8, generator=gen, dtype=torch.float64)
    for k in range(4):
        torch.testing.assert_close(rotate(x, k * math.pi / 2), rot90(x, k), atol=1e-12, rtol=0)
    # non-square: a half turn is still exact
    y = torch.randn(1, 1, 6, 10, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(rotate(y, math.pi), torch.rot90(y, 2, (-2, -1)), atol=1e-12,
                               rtol=0)


def test_rotation_direction_is_counter_clockwise():
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 2, 4] = 1.0  # a point on the +x axis (right of centre)
    y = rot90(x, 1)
    assert y[0, 0, 0, 2] == 1.0  # moves to +y: up (row 0)


def test_flip_is_horizontal():
    x = torch.arange(6.0).view(1, 1, 2, 3)
    y = act_spatial(x, get("d4").element(0, True))
    assert torch.equal(y, torch.flip(x, (-1,)))


def test_shifts(gen):
    x = torch.randn(2, 3, 8, 9, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(fractional_shift(x, (2, -3)), circular_shift(x, (2, -3)),
                               atol=1e-12, rtol=0)
    s = shift(x, (2, -3))
    assert torch.equal(s[..., 2:, :6], x[..., :6, 3:])
    assert (s[..., :2, :] == 0).all() and (s[..., :, 6:] == 0).all()
    assert (shift(x, (9, 0)) == 0).all()
    assert torch.equal(circular_shift(x, (1, 0))[..., 1, :], x[..., 0, :])


@settings(max_examples=30, deadline=None)
@given(st.floats(-3, 3), st.floats(-3, 3), st.floats(-3, 3), st.floats(-3, 3),
       st.sampled_from([5, 7, 9]))
def test_fractional_shifts_compose(a, b, c, d, size):
    x = torch.randn(1, 2, size, size + 2, generator=torch.Generator().manual_seed(0),
                    dtype=torch.float64)
    lhs = fractional_shift(fractional_shift(x, (a, b)), (c, d))
    torch.testing.assert_close(lhs, fractional_shift(x, (a + c, b + d)), atol=1e-10, rtol=0)
    back = fractional_shift(fractional_shift(x, (a, b)), (-a, -b))
    torch.testing.assert_close(back, x, atol=1e-10, rtol=0)


def test_fractional_shift_even_size_without_nyquist():
    x = torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    spec = torch.fft.fft2(x)
    spec[..., 4, :] = 0
    spec[..., :, 4] = 0
    x = torch.fft.ifft2(spec).real
    lhs = fractional_shift(fractional_shift(x, (0.3, 0.6)), (0.5, -1.2))
    torch.testing.assert_close(lhs, fractional_shift(x, (0.8, -0.6)), atol=1e-10, rtol=0)


@pytest.mark.parametrize("dtype,tol", [(torch.float16, 2e-3), (torch.bfloat16, 2e-2)])
def test_fractional_shift_in_half_precision(dtype, tol):
    """float16/bfloat16 images shift through float32 and come back in their dtype (torch's
    FFT takes neither on CPU: "Unsupported dtype BFloat16", "exp_vml_cpu not implemented for
    'ComplexHalf'"), within the dtype's rounding of the float32 shift."""
    x = torch.randn(2, 3, 7, 8, generator=torch.Generator().manual_seed(0))
    got = fractional_shift(x.to(dtype), (0.5, 0.25))
    assert got.dtype == dtype
    want = fractional_shift(x.to(dtype).float(), (0.5, 0.25))
    torch.testing.assert_close(got.float(), want, atol=tol, rtol=0)
    assert (got.float() - x).abs().max() > 0.1  # it moved


def test_a_vector_per_sample_is_not_a_trivial_map(gen):
    """``rep="trivial"`` on a 2-D tensor (logits ``(B, K)``, e.g. a classifier measured with
    ``out_rep="trivial"``) is named as such, with the fix; the fiber action raised
    "act_fiber: dim=2 must be an integer in -2..1" about an argument the caller never passed
    and a shape already rotated to ``(8, 4)``."""
    from equilayers import metrics

    r90 = get("p4").elements()[1]
    with pytest.raises(ValueError, match=r"2-D tensor of shape \(4, 8\).*rep='invariant'"):
        act(torch.randn(4, 8, generator=gen), r90)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 1), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten())
    x = torch.randn(4, 3, 6, 6, generator=gen)
    with pytest.raises(ValueError, match=r"2-D tensor of shape \(4, 8\).*rep='invariant'"):
        metrics.equivariance_error(net, x, "p4", out_rep="trivial")
    assert metrics.equivariance_error(net, x, "p4", out_rep="invariant") < 1e-5
    assert act(x[0], r90).shape == (3, 6, 6)  # an unbatched (C, H, W) map still moves


def test_quarter_turns_of_rectangles_trade_the_sizes(gen):
    """As ``torch.rot90``: a quarter turn maps ``H x W`` to ``W x H`` (a group action on
    images of both orientations; the layers are exact on them, ``tests/test_grid.py``), and
    a volume's rotations permute its sizes with its dims."""
    x = torch.randn(2, 3, 4, 5, generator=gen)
    assert rot90(x).shape == (2, 3, 5, 4)
    torch.testing.assert_close(rot90(x, 3), torch.rot90(x, 3, (-2, -1)), rtol=0, atol=0)
    g = get("p4").element(1)
    torch.testing.assert_close(act(act(x, g), g.inverse()), x, rtol=0, atol=0)
    assert act(torch.zeros(1, 1, 4, 4, 5, 6), get("c4z").elements()[1], "regular").shape == (
        1, 1, 4, 4, 6, 5)


def test_bad_input_messages():
    with pytest.raises(ValueError, match="5-D"):
        act(torch.zeros(1, 4, 5, 5), get("p4").element(1), "regular")
    with pytest.raises(ValueError, match="F=4 slots; got F=3"):
        act(torch.zeros(1, 1, 3, 5, 5), get("p4").element(1), "regular")
    with pytest.raises(ValueError, match="odd"):
        act(torch.zeros(1, 1, 4, 5, 5), get("p4").element(1), "harmonic")
    with pytest.raises(ValueError, match="rep='vector' must be one of"):
        act(torch.zeros(1, 1, 5, 5), get("p4").element(1), "vector")
    with pytest.raises(ValueError, match="last two dims"):
        rot90(torch.zeros(5))
    with pytest.raises(ValueError, match="integer shifts"):
        circular_shift(torch.zeros(1, 5, 5), (0.5, 0))
    with pytest.raises(TypeError, match="GroupElement"):
        act(torch.zeros(1, 1, 5, 5), 1)


def test_rotate_per_sample_angles(gen):
    x = torch.randn(3, 2, 9, 9, generator=gen, dtype=torch.float64)
    angles = torch.tensor([0.3, math.pi / 2, -1.0], dtype=torch.float64)
    out = rotate(x, angles)
    for i in range(3):
        torch.testing.assert_close(out[i], rotate(x[i:i + 1], float(angles[i]))[0])
    torch.testing.assert_close(out[1], rot90(x[1], 1), atol=1e-12, rtol=0)
    # float32 at 90 degrees agrees to float32 rounding of the sampling grid
    torch.testing.assert_close(rotate(x.float(), math.pi / 2), rot90(x.float(), 1),
                               atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="3 angles for a batch of 2"):
        rotate(x[:2], angles)


@pytest.mark.parametrize("name", ["c4", "d4", "c8", "d8", "c12", "so2", "o2"])
def test_harmonic_matrix_is_exact_at_quarter_turns(name):
    """Where ``m`` times an element's angle is a multiple of 90 degrees (every order of the
    grid elements, order 2 of 45 degrees, ...), order ``m``'s block holds exactly 0 and +-1
    (it held cos(pi/2) = 6e-17 and the like), so the grid elements act exactly: composing
    rot90 with itself gives rot180's matrix bit for bit. Other angles keep their cos and sin
    (the control: 45 and 30 degrees, and an angle 1e-6 off a quarter turn)."""
    group = get(name)
    elements = group.elements() if group.is_finite else [
        *group.grid_elements(), group.element(math.pi / 4), group.element(math.pi / 6),
        group.element(math.pi / 2 + 1e-6)]
    quarter = 0
    for g in elements:
        rho = harmonic_matrix(g, 6)
        for m in range(1, 7):
            block = rho[2 * m - 1: 2 * m + 1, 2 * m - 1: 2 * m + 1]
            turns = m * g.angle / (math.pi / 2)
            if abs(turns - round(turns)) < 1e-9:
                quarter += 1
                assert set(block.abs().flatten().tolist()) == {0.0, 1.0}, (g, m, block)
            else:
                c, s = math.cos(m * g.angle), math.sin(m * g.angle)
                assert sorted(block.abs().flatten().tolist()) == sorted(
                    [abs(c), abs(c), abs(s), abs(s)]), (g, m, block)
    assert quarter >= 6 * len(group.grid_elements())  # every order of every grid element
    r90 = next(g for g in group.grid_elements() if g.quarter_turns == 1 and not g.reflection)
    for g in group.grid_elements():
        assert torch.equal(harmonic_matrix(r90, 6) @ harmonic_matrix(g, 6),
                           harmonic_matrix(r90 * g, 6)), g


@pytest.mark.parametrize("name", ["d4", "d6", "o2"])
def test_harmonic_matrix_moves_the_angular_functions_as_the_plane_moves(name):
    """The harmonic fiber ``v(phi) = [1, cos phi, sin phi, ..., cos M phi, sin M phi]`` of the
    point at angle ``phi`` is carried to the fiber of the moved point:
    ``v(angle of matrix(g) p) = harmonic_matrix(g) v(phi)``. This ties the fiber action to
    the plane's conventions (the flip is ``x -> -x``, ``phi -> pi - phi``; reflect first, then
    rotate), which a homomorphism test cannot: the flip ``y -> -y`` (``phi -> -phi``) gives
    another homomorphism, as does any fixed conjugation."""
    group = get(name)
    elements = group.elements() if group.is_finite else [
        group.element(t, s) for t in (0.0, 0.4, math.pi / 2, 2.2) for s in (False, True)]
    order = 4
    phis = torch.linspace(0.1, 2 * math.pi - 0.2, 11, dtype=torch.float64)

    def fiber(phi: torch.Tensor) -> torch.Tensor:  # (2M+1, P)
        rows = [torch.ones_like(phi)]
        for m in range(1, order + 1):
            rows += [torch.cos(m * phi), torch.sin(m * phi)]
        return torch.stack(rows)

    points = torch.stack([torch.cos(phis), torch.sin(phis)])  # (2, P), x right, y up
    flips = 0
    for g in elements:
        moved = group.matrix(g) @ points
        want = fiber(torch.atan2(moved[1], moved[0]))
        torch.testing.assert_close(harmonic_matrix(g, order) @ fiber(phis), want,
                                   rtol=0, atol=1e-12, msg=lambda m, g=g: f"{g!r}: {m}")
        flips += g.reflection and not math.isclose(math.sin(g.angle), 0.0, abs_tol=1e-9)
    assert flips  # a flip combined with a rotation off the axes: the composition order counts
    # negative control: the flip y -> -y acting on the fiber is a homomorphism too, but moves
    # the fiber of x -> -x's image wrongly
    m = next(g for g in elements if g.reflection and g.rotation == 0)
    other = torch.diag(torch.tensor([1.0] + [1.0, -1.0] * order, dtype=torch.float64))
    moved = group.matrix(m) @ points
    assert not torch.allclose(other @ fiber(phis), fiber(torch.atan2(moved[1], moved[0])))
