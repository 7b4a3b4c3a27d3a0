"""The closed-form steerable basis: constraint, shapes, determinism, bad input, off-grid (the
layers built on it: ``test_steerable_layers.py``)."""

import math

import pytest
import torch
import torch.nn.functional as F

from equilayers.functional import expand_steerable, steerable_basis, steerable_conv2d
from equilayers.functional._steerable import (
    inverse_cayley_index,
    irrep_scale,
    regular_table,
)
from equilayers.functional._steerable_expand import expand_regular
from equilayers.groups import get, group_fourier_basis
from equilayers.testing import assert_equivariant, equivariance_report
from equilayers.testing._cases_harmonic import HarmonicStack, _camera

CONFIGS = [
    ("so2", "trivial", "harmonic", None, 3),
    ("so2", "harmonic", "harmonic", 2, 3),
    ("o2", "harmonic", "harmonic", 3, 1),
    ("o2", "harmonic", "trivial", 2, None),
    ("c8", "trivial", "regular", None, None),
    ("d8", "regular", "regular", None, None),
    ("c4", "harmonic", "harmonic", 2, 2),
    ("d6", "harmonic", "harmonic", 2, 2),
]


@pytest.mark.parametrize("group,irep,orep,mi,mo", CONFIGS)
@pytest.mark.parametrize("k", [2, 3, 4, 5, 6, 7])
def test_grid_exact_float64_and_float32(group, irep, orep, mi, mo, k, gen):
    """Even sizes too: sampled around the point between the four middle taps, which a quarter
    turn and the flip map onto each other (``padding=k//2`` grows the map by one pixel)."""
    basis = steerable_basis(group, irep, orep, k, in_order=mi, out_order=mo,
                            dtype=torch.float64)
    assert basis.shape[0] > 0
    f_out, f_in = basis.shape[1:3]
    w = torch.randn(3, 2, basis.shape[0], generator=gen, dtype=torch.float64)
    shape = (2, 2, 11, 11) if irep == "trivial" else (2, 2, f_in, 11, 11)
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    grp = get(group)
    els = grp.grid_elements()
    for dtype in (torch.float64, torch.float32):
        b, wd = basis.to(dtype), w.to(dtype)

        def f(t, b=b, wd=wd):
            return steerable_conv2d(t, wd, b, padding=k // 2)
        assert_equivariant(f, x.to(dtype), group, in_rep=irep,
                           out_rep="harmonic" if orep == "trivial" else orep, elements=els)


def test_expand_layout_matches_conv(gen):
    basis = steerable_basis("c4", "regular", "regular", 3, dtype=torch.float64)
    w = torch.randn(3, 2, basis.shape[0], generator=gen, dtype=torch.float64)
    filt = expand_steerable(w, basis)
    assert filt.shape == (3 * 4, 2 * 4, 3, 3)
    direct = torch.einsum("oib,bfgyx->ofigyx", w, basis).reshape(12, 8, 3, 3)
    torch.testing.assert_close(filt, direct)
    x = torch.randn(1, 2, 4, 7, 7, generator=gen, dtype=torch.float64)
    y = F.conv2d(x.reshape(1, 8, 7, 7), filt).reshape(1, 3, 4, 5, 5)
    torch.testing.assert_close(steerable_conv2d(x, w, basis), y)


@pytest.mark.parametrize("size", [5, 4, 2])
def test_regular_copies_are_exact_rotations(size):
    """Output slot r^k of a C8 lifting basis is the analytic rotation of slot 0 (checked at
    grid angles, where rotation of the sampled filter is exact; an even grid turns about the
    point between its middle taps)."""
    basis = steerable_basis("c8", "trivial", "regular", size, dtype=torch.float64)
    for k in (2, 4, 6):
        torch.testing.assert_close(basis[:, k, 0], torch.rot90(basis[:, 0, 0], k // 2,
                                                               dims=(-2, -1)))


@pytest.mark.parametrize("group,reps,orders", [
    ("so2", ("trivial", "harmonic"), {"out_order": 2}),
    ("o2", ("harmonic", "harmonic"), {"in_order": 2, "out_order": 1}),
    ("c4", ("harmonic", "harmonic"), {"in_order": 2, "out_order": 2}),
    ("d8", ("regular", "regular"), {})])
@pytest.mark.parametrize("k", [2, 4, 6])
def test_even_sizes_leave_out_functions_that_vanish_on_every_tap(group, reps, orders, k):
    """No element of an even-size basis is zero on the grid (a centre ring reaches no tap of
    an even grid; cos 2 phi is zero on the four taps of a 2 x 2 one): each has a norm of the
    odd sizes' order (1 or sqrt 2 on harmonic fields; about 0.8 to 2.3 for a dense regular
    element in the Fourier layout)."""
    basis = steerable_basis(group, *reps, k, dtype=torch.float64, **orders)
    norms = basis.flatten(1).norm(dim=1)
    assert basis.shape[0] > 0 and bool((norms > 0.5).all()), norms.min()
    # k = 2: frequencies 0 and 1 on the ring of the four taps; so2 0 -> 2: orders 0 and 1 only
    if (group, k) == ("so2", 2):
        assert basis.shape[0] == 1 + 2
        assert torch.all(basis[:, 3:] == 0)  # order 2 is out of reach (the conv warns)


def test_so2_basis_counts_and_centre():
    b = steerable_basis("so2", "trivial", "harmonic", 5, out_order=2, dtype=torch.float64)
    # order 0: rings 0,1,2; order 1 (2 per ring, rings 1,2); order 2 (2 per ring, rings 1,2)
    assert b.shape == (3 + 4 + 4, 5, 1, 5, 5)
    assert torch.all(b[:, 1:, :, 2, 2] == 0)  # only frequency 0 at the centre pixel
    o2 = steerable_basis("o2", "trivial", "harmonic", 5, out_order=2)
    assert o2.shape[0] == 3 + 2 + 2
    # norm sqrt(d_out): 1 into order 0 (3 elements), sqrt(2) into orders 1 and 2 (escnn's)
    norms = b.flatten(1).norm(dim=1)
    want = torch.tensor([1.0] * 3 + [2 ** 0.5] * 8, dtype=torch.float64)
    torch.testing.assert_close(norms.sort().values, want)


@pytest.mark.parametrize("group,one_dim", [("c4", {0, 2}), ("d4", {0, 2}), ("c8", {0}),
                                             ("so2", {0})])
def test_element_norm_is_sqrt_of_the_output_irreps_dimension(group, one_dim):
    """Each element of trivial -> harmonic (M=2) has norm sqrt(d), d the dimension of the
    output irrep it maps into: 1 for order 0, 2 for an order m >= 1, but 1 for the Nyquist
    order N/2 of C_N/D_N with N even (a rotation acts on it as +-1: C4/D4 order 2, not C8's
    order 2 nor SO(2)'s)."""
    basis = steerable_basis(group, "trivial", "harmonic", 5, out_order=2, dtype=torch.float64)
    energy = basis.square().sum(dim=(2, 3, 4))  # (num_basis, 5)
    slot_order = torch.tensor([0, 1, 1, 2, 2])
    seen = set()
    for e, norm in zip(energy, basis.flatten(1).norm(dim=1), strict=True):
        orders = set(slot_order[e > 1e-20].tolist())
        assert len(orders) == 1, orders  # trivial input: each element reaches one order
        (m,) = orders
        seen.add(m)
        assert norm.item() == pytest.approx(1.0 if m in one_dim else math.sqrt(2.0), rel=1e-12)
    assert seen == {0, 1, 2}


def test_deterministic_and_fresh():
    a = steerable_basis("d8", "trivial", "regular", 7)
    b = steerable_basis("d8", "trivial", "regular", 7)
    assert torch.equal(a, b) and a.data_ptr() != b.data_ptr()
    a.zero_()
    assert steerable_basis("d8", "trivial", "regular", 7).abs().sum() > 0


def _reference_regular_basis(group, k, lifting):
    """The former construction, kept as the reference: the dense float64 basis materialised
    in one piece, ``K[a, b](q) = psi_{a^-1 b}(a^-1 q)`` for every slot pair, cast afterwards."""
    import math

    from equilayers.functional import _steerable as S
    group = get(group)
    table = S._rotated_table(group, k)
    norms = table[0].flatten(1).norm(dim=1).clamp_min(1e-12)
    g, j = table.shape[:2]
    table = table / (norms[None, :, None, None] * math.sqrt(g))
    if lifting:
        scale = irrep_scale(group, "trivial", "regular", k).view(-1, 1, 1, 1, 1)
        return table.permute(1, 0, 2, 3).unsqueeze(2).contiguous() * scale
    out = torch.zeros(g, j, g, g, k, k, dtype=torch.float64)
    for a in range(g):  # per pair: slot b = a h carries psi_h(a^-1 q)
        for h in range(g):
            out[h, :, a, int(group.cayley_table[a, h])] = table[a]
    # the group axis in the group's Fourier basis: element (k, j) = sum_h F[k, h] (h, j)
    four = group_fourier_basis(group)
    out = torch.einsum("kh,hjabxy->kjabxy", four, out).reshape(g * j, g, g, k, k)
    return out * irrep_scale(group, "regular", "regular", k).view(-1, 1, 1, 1, 1)


@pytest.mark.parametrize("group", ["c3", "c8", "d4", "d8"])
@pytest.mark.parametrize("irep", ["trivial", "regular"])
def test_regular_basis_equals_reference(group, irep, gen):
    """The fast placement (compact table cached, one scatter and one Fourier transform of the
    group axis in the target dtype) gives the per-pair reference to float rounding, in
    float64 and float32, and the same expanded filters."""
    ref = _reference_regular_basis(group, 5, irep == "trivial")
    for dtype, tol in ((torch.float64, 1e-14), (torch.float32, 1e-6)):
        new = steerable_basis(group, irep, "regular", 5, dtype=dtype)
        assert new.dtype == dtype
        torch.testing.assert_close(new, ref.to(dtype), rtol=0, atol=tol)
    w = torch.randn(2, 3, ref.shape[0], generator=gen, dtype=torch.float64)
    torch.testing.assert_close(expand_steerable(w, steerable_basis(group, irep, "regular", 5,
                                                                   dtype=torch.float64)),
                               expand_steerable(w, ref), rtol=0, atol=1e-13)


@pytest.mark.parametrize("group", ["c1", "c3", "c8", "d1", "d4", "d8", "c16", "d16"])
def test_inverse_cayley_index(group):
    grp = get(group)
    els = grp.elements()
    ref = torch.tensor([(a.inverse() * b).index for a in els for b in els])
    assert torch.equal(inverse_cayley_index(group), ref)
    # a * (a^-1 b) = b through the Cayley table
    idx = inverse_cayley_index(group).view(len(els), len(els))
    assert torch.equal(grp.cayley_table.gather(1, idx), torch.arange(len(els)).expand_as(idx))


@pytest.mark.parametrize("group", ["c3", "c8", "d4", "d8", "c16"])
@pytest.mark.parametrize("k", [3, 5, 11])
@pytest.mark.parametrize("lifting", [True, False])
def test_expand_regular_equals_dense_expansion(group, k, lifting, gen):
    """The compact expansion (what the layers and the functional convs use) builds the same
    filters as the public dense basis with expand_steerable, to float rounding."""
    dense = steerable_basis(group, "trivial" if lifting else "regular", "regular", k,
                            dtype=torch.float64)
    table = regular_table(group, k, dtype=torch.float64)
    assert table.shape == (int(get(group).order), dense.shape[0] // (1 if lifting else
                                                                       int(get(group).order)), k, k)
    idx = None if lifting else inverse_cayley_index(group)
    four = None if lifting else group_fourier_basis(group)
    scale = irrep_scale(group, "trivial" if lifting else "regular", "regular", k)
    w = torch.randn(3, 2, dense.shape[0], generator=gen, dtype=torch.float64)
    ref = expand_steerable(w, dense)
    torch.testing.assert_close(expand_regular(w, table, idx, four, scale), ref, rtol=0,
                               atol=1e-13)
    torch.testing.assert_close(expand_regular(w.float(), table.float(), idx,
                                              None if four is None else four.float(), scale),
                               ref.float())
    wt = w[:, :1].mT  # non-contiguous weight
    torch.testing.assert_close(expand_regular(wt.mT, table, idx, four, scale),
                               expand_steerable(wt.mT, dense), rtol=0, atol=1e-13)


def test_expand_regular_gradcheck(gen):
    table = regular_table("d4", 3, dtype=torch.float64)
    w = torch.randn(2, 2, 8 * table.shape[1], generator=gen, dtype=torch.float64,
                    requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda w: expand_regular(w, table, inverse_cayley_index("d4")), (w,))


def test_expand_regular_bad_input():
    table = regular_table("c8", 3)
    with pytest.raises(ValueError, match="basis elements"):
        expand_regular(torch.randn(2, 2, 5), table, inverse_cayley_index("c8"))
    with pytest.raises(ValueError, match="lifting"):
        expand_regular(torch.randn(2, 2, 5), table)
    with pytest.raises(ValueError, match="continuous"):
        regular_table("so2", 3)
    for k in (0, 2.5):
        with pytest.raises(ValueError, match=f"kernel_size must be an integer >= 1.*got {k}"):
            regular_table("c8", k)


def test_layers_hold_the_compact_table(gen):
    """Regular fields: the buffer is the (|G|, J, k, k) table (|G| times smaller than the dense
    basis), built once per layer; the weight keeps the dense basis' layout."""
    from unittest import mock

    from equilayers.functional import _steerable as S
    from equilayers.nn import GroupConv2d, LiftingConv2d
    with mock.patch.object(S, "regular_table", wraps=S.regular_table) as spy:
        conv = GroupConv2d(3, 2, 5, group="d8")
        assert spy.call_count == 1
    lift = LiftingConv2d(3, 2, 5, group="d8")
    dense = steerable_basis("d8", "regular", "regular", 5)
    j = dense.shape[0] // 16
    assert conv.filter_basis.shape == lift.filter_basis.shape == (16, j, 5, 5)
    assert conv.weight.shape == (2, 3, 16 * j) and lift.weight.shape == (2, 3, j)
    torch.testing.assert_close(conv._expand(), expand_steerable(conv.weight, dense))


@pytest.mark.parametrize("kwargs,match", [
    ({"group": "so2", "in_rep": "trivial", "out_rep": "harmonic", "kernel_size": 5,
      "out_order": -1}, "out_order"),
    ({"group": "so2", "in_rep": "trivial", "out_rep": "harmonic", "kernel_size": 5},
     "out_order"),
    ({"group": "so2", "in_rep": "trivial", "out_rep": "regular", "kernel_size": 5},
     "continuous"),
    ({"group": "c8", "in_rep": "regular", "out_rep": "harmonic", "kernel_size": 5,
      "out_order": 1}, "not supported"),
    ({"group": "c8", "in_rep": "harmonic", "out_rep": "regular", "kernel_size": 5,
      "in_order": 1}, "not supported"),
    ({"group": "c8", "in_rep": "trivial", "out_rep": "regular", "kernel_size": 0},
     r"kernel_size must be an integer >= 1 .*got 0"),
    ({"group": "c8", "in_rep": "bogus", "out_rep": "regular", "kernel_size": 3}, "bogus"),
])
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        steerable_basis(**kwargs)


def test_conv_rejects_mismatched_harmonic_fiber(gen):
    basis = steerable_basis("so2", "harmonic", "harmonic", 3, in_order=2, out_order=2)
    w = torch.randn(1, 1, basis.shape[0], generator=gen)
    with pytest.raises(ValueError, match="F_in=5"):
        steerable_conv2d(torch.randn(1, 1, 3, 7, 7, generator=gen), w, basis)


@pytest.mark.parametrize("kwargs,x_shape,exc,match", [
    ({"stride": 0}, (2, 2, 5, 7, 7), ValueError, r"stride=0 must be .* >= 1"),
    ({"padding": -1}, (2, 2, 5, 7, 7), ValueError, r"padding=-1 must be .* >= 0"),
    ({"dilation": 1.5}, (2, 2, 5, 7, 7), TypeError, r"dilation=1.5 must be an integer"),
    ({"groups": True}, (2, 2, 5, 7, 7), TypeError, r"groups=True must be an integer"),
    ({}, (2, 3, 5, 7, 7), ValueError, r"x must have C_in=2 fields .* \(2, 3, 5, 7, 7\)"),
    ({}, (2, 2, 5, 2, 2), ValueError, r"spatial size 2x2 .* smaller than the kernel's window"),
    ({"bias": torch.zeros(4)}, (2, 2, 5, 7, 7), ValueError, r"bias must have shape \(3,\)"),
    ({}, (2, 2, 5, 7, 7, "int"), TypeError, r"x has dtype torch.int64.*x\.float\(\)"),
])
def test_conv_bad_arguments(gen, kwargs, x_shape, exc, match):
    """steerable_conv2d checks its arguments before F.conv2d (whose errors name no argument)."""
    basis = steerable_basis("so2", "harmonic", "harmonic", 3, in_order=2, out_order=2)
    w = torch.randn(3, 2, basis.shape[0], generator=gen)
    x = torch.randn(x_shape[:5], generator=gen)
    if len(x_shape) > 5:
        x = x.long()
    with pytest.raises(exc, match=match):
        steerable_conv2d(x, w, basis, **kwargs)


def test_conv_window_check_reads_padding_per_dim(gen):
    """padding=(ph, pw) pads H by ph and W by pw: a 1x5 map with padding (1, 0) holds a 3x3
    window (as F.conv2d says), a 5x1 map with the same padding does not (a ValueError naming
    the window, not F.conv2d's RuntimeError). A check that read (pw, ph) would refuse the first
    and pass the second to F.conv2d."""
    basis = steerable_basis("so2", "trivial", "harmonic", 3, out_order=1)
    w = torch.randn(2, 1, basis.shape[0], generator=gen)
    y = steerable_conv2d(torch.randn(1, 1, 1, 5, generator=gen), w, basis, padding=(1, 0))
    assert y.shape == (1, 2, 3, 1, 3)
    with pytest.raises(ValueError, match=r"spatial size 5x1 .* smaller than the kernel's window"):
        steerable_conv2d(torch.randn(1, 1, 5, 1, generator=gen), w, basis, padding=(1, 0))


def test_offgrid_error_per_order():
    """Per rotation order off-grid error of the so2 stack (k=7, M=2) on the camera image.
    Measured: order 0 0.029, order 1 0.035, order 2 0.129 (floors 0.039, 0.043, 0.087):
    higher orders carry more angular frequency and are less accurate; bounds ~2x measured."""
    stack = HarmonicStack("so2", 7, 2)
    x = _camera().expand(2, 1, -1, -1).clone()
    els = get("so2").elements_at([15.0, 30.0, 45.0, 60.0, 137.0])
    bounds = [0.07, 0.09, 0.25]
    errs = []
    for m in range(3):
        def f(t, m=m):
            return stack(t).view(2, 4, 3, *t.shape[-2:])[:, :, m]
        errs.append(equivariance_report(f, x, "so2", in_rep="trivial", out_rep="trivial",
                                        elements=els).error)
    assert all(e <= b for e, b in zip(errs, bounds, strict=True)), errs
