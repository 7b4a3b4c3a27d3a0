"""Learnable polyphase sampling: the choice, exact shift / D4 equivariance in evaluation, the
upsampling pair, the module's contract and bad input (the Gumbel training path, gradients
reaching the scoring net and its learning: ``test_lps_training.py``)."""

import pytest
import torch
from _lps_common import _components, _pool
from conftest import seeded_rng
from torch import nn

import equilayers.functional as EF
from equilayers.groups import act, get
from equilayers.nn import LearnablePolyphasePool2d, LearnablePolyphaseUpsample2d
from equilayers.testing import assert_equivariant, equivariance_error
from equilayers.testing._cases_blur import LiftingConv


def test_keeps_the_component_of_largest_logit(gen):
    pool = _pool(s=3, return_index=True)
    x = torch.randn(4, 3, 9, 9, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        y, index = pool(x)
        logits = pool.component_logits(x)
    assert logits.shape == (4, 9) and logits.dtype == torch.float64
    best = logits.argmax(1)
    assert torch.equal(index, torch.nn.functional.one_hot(best, 9).double())
    for b in range(4):
        assert torch.equal(y[b], _components(x[b], 3)[int(best[b])])


@pytest.mark.parametrize("s,shape", [(2, (2, 3, 8, 8)), (3, (2, 3, 9, 12)),
                                     (2, (2, 3, 8, 6, 6))])
def test_every_integer_shift_moves_the_choice_and_shifts_the_output(s, shape, gen):
    """Shifting by ``(dy, dx)`` picks component ``((a+dy) % s, (b+dx) % s)`` and the output is
    the old one rolled by ``((a+dy) // s, (b+dx) // s)``: every shift in ``[0, 2s)^2``."""
    pool = _pool(s=s, return_index=True)
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        y, index = pool(x)
        k = index.argmax(1)
        a, b = k // s, k % s
        for dy in range(2 * s):
            for dx in range(2 * s):
                ys, idx_s = pool(torch.roll(x, (dy, dx), (-2, -1)))
                assert torch.equal(idx_s.argmax(1), ((a + dy) % s) * s + (b + dx) % s)
                for i in range(shape[0]):
                    move = (int(a[i] + dy) // s, int(b[i] + dx) // s)
                    assert torch.equal(ys[i], torch.roll(y[i], move, (-2, -1)))


def test_stack_invariant_to_every_circular_shift(gen):
    with seeded_rng(0):
        conv1 = nn.Conv2d(3, 4, 3, padding=1, padding_mode="circular", dtype=torch.float64)
        conv2 = nn.Conv2d(4, 5, 3, padding=1, padding_mode="circular", dtype=torch.float64)
        p1, p2 = _pool(4), _pool(5, kernel_size=1)

        def model(v):
            return p2(torch.tanh(conv2(p1(torch.tanh(conv1(v)))))).mean((-2, -1))

        x = torch.randn(2, 3, 12, 12, generator=gen, dtype=torch.float64)
        with torch.no_grad():
            y = model(x)
            for shift in [(1, 0), (0, 1), (1, 1), (3, 5), (-2, 7), (11, 6)]:
                torch.testing.assert_close(model(torch.roll(x, shift, (-2, -1))), y,
                                           rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("s,n", [(2, 8), (2, 10), (3, 9)])
def test_choice_commutes_with_d4_on_regular_maps(s, n, gen):
    pool = _pool(s=s, return_index=True)
    x = torch.randn(2, 3, 8, n, n, generator=gen, dtype=torch.float64)
    assert_equivariant(lambda v: pool(v)[0], x, "d4", in_rep="regular", out_rep="regular")
    d4 = get("d4")
    with torch.no_grad():
        k = pool(x)[1].argmax(1)
        k_r = pool(act(x, d4.element(1), "regular"))[1].argmax(1)
        k_f = pool(act(x, d4.element(0, True), "regular"))[1].argmax(1)
    a, b = k // s, k % s
    assert torch.equal(k_r, (s - 1 - b) * s + a)  # rot90 selects the rotated component
    assert torch.equal(k_f, a * s + (s - 1 - b))


def test_lifting_then_lps_is_p4m_equivariant_shifts_included(gen):
    with seeded_rng(0):
        m = nn.Sequential(LiftingConv(3, 4), nn.ReLU(), _pool(4)).eval()
        x = torch.randn(2, 3, 12, 12, generator=gen, dtype=torch.float64)
        assert_equivariant(m, x, "d4", in_rep="trivial", out_rep="regular")
        shifted = torch.roll(x, (2, 4), (-2, -1))  # shifts by the stride: the output moves by half
        with torch.no_grad():
            torch.testing.assert_close(m(shifted), torch.roll(m(x), (1, 2), (-2, -1)),
                                       rtol=0, atol=0)


def test_harmonic_fields_grid_elements(gen):
    """The fiber's root mean square is invariant to an orthogonal fiber action (so2 harmonic
    fields, rotated by quarter turns)."""
    pool = _pool(2)
    x = torch.randn(2, 2, 5, 8, 8, generator=gen, dtype=torch.float64)
    assert_equivariant(pool, x, "so2", in_rep="harmonic", out_rep="harmonic")


def test_fiber_norm_is_invariant_to_every_orthogonal_fiber_action(gen):
    """The logits of a 5-D map read the fiber's root mean square, invariant to any orthogonal
    map of F, not only to the signed permutations of the grid elements (a mean of magnitudes
    passed those). Negative control: a non-orthogonal map of F changes the logits."""
    pool = _pool(2)
    x = torch.randn(2, 2, 5, 8, 8, generator=gen, dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(5, 5, generator=gen, dtype=torch.float64))
    logits = pool.component_logits(x)
    turned = torch.einsum("fg,bcghw->bcfhw", q, x)
    torch.testing.assert_close(pool.component_logits(turned), logits, rtol=1e-10, atol=1e-12)
    stretched = torch.einsum("fg,bcghw->bcfhw", torch.diag(torch.arange(1.0, 6.0).double()), x)
    assert (pool.component_logits(stretched) - logits).abs().max() > 1e-3


def test_components_as_large_as_the_scoring_filters_padding(gen):
    """A component of exactly r pixels a side takes the (2r+1)-tap scoring filter (the
    circular padding wraps it once); one pixel fewer is refused (test_bad_input)."""
    pool = _pool(kernel_size=5, return_index=True)  # r = 2
    x = torch.randn(2, 3, 4, 4, generator=gen, dtype=torch.float64)  # 2x2 components
    y, sel = pool(x)
    k = pool.component_logits(x).argmax(1)
    assert torch.equal(sel.argmax(1), k)
    for b in range(2):
        torch.testing.assert_close(y[b], _components(x[b], 2)[k[b]], rtol=0, atol=0)


def test_symmetric_input_ties_go_to_the_lowest_index():
    """A rot90-invariant image: its components are rotated copies, so their logits tie (up to
    rounding) and the choice cannot commute with rot90 (documented)."""
    base = torch.randn(1, 2, 4, 4, generator=torch.Generator().manual_seed(0),
                       dtype=torch.float64)
    x = base + base.rot90(1, (-2, -1)) + base.rot90(2, (-2, -1)) + base.rot90(3, (-2, -1))
    logits = _pool(2).component_logits(x)[0]
    # rot90 cycles the components 0 -> 1 -> 3 -> 2 -> 0 ((a, b) -> (1-b, a)): all tied
    torch.testing.assert_close(logits, logits[0].expand(4), rtol=1e-12, atol=1e-12)


def test_components_the_scoring_net_rates_alike_tie_on_a_non_constant_map(gen):
    """The documented ties beyond a constant map (UNet's docstring, docs/layers/unet.md), on a
    map whose rows alternate zero and random: components on which every hidden unit is off
    all score exactly 0, and components all zero share one logit; the choice falls to the
    lowest index and does not move with the shift (which moves component (a, b) to
    (a + dr, b + dc) mod 2). The control: the seeded scoring net has a unique largest logit
    on a random map, and its choice moves with every shift."""
    def choice(pool, x):
        return int(pool(x)[1].argmax(1))

    def moved(k, dr, dc):
        return (k // 2 + dr) % 2 * 2 + (k % 2 + dc) % 2

    x = torch.rand(1, 2, 6, 6, generator=gen, dtype=torch.float64)
    x[..., 0::2, :] = 0  # components 0 and 1 all zero, 2 and 3 not
    dead = _pool(2, return_index=True)
    with torch.no_grad():
        dead.bias.fill_(-10.0)  # every hidden unit off on this map
    zeros = _pool(2, return_index=True)
    with torch.no_grad():  # zero components score 0, the others below: 0 and 1 tie on top
        zeros.bias.zero_()
        zeros.weight.abs_()
        zeros.out_weight.fill_(-1.0)
    for pool, tied, shift in ((dead, [0, 1, 2, 3], (1, 0)), (zeros, [0, 1], (0, 1))):
        logits = pool.component_logits(x)[0]
        assert (logits == logits.max()).nonzero().flatten().tolist() == tied
        k = choice(pool, torch.roll(x, shift, (-2, -1)))
        assert choice(pool, x) == 0 and k != moved(0, *shift)  # not equivariant
    control = _pool(2, return_index=True)
    y = torch.randn(1, 2, 6, 6, generator=gen, dtype=torch.float64)
    logits = control.component_logits(y)[0]
    assert int((logits == logits.max()).sum()) == 1
    for shift in ((1, 0), (0, 1), (1, 1)):
        assert choice(control, torch.roll(y, shift, (-2, -1))) == moved(choice(control, y),
                                                                         *shift)


def test_upsample_puts_samples_back_and_int_index_agrees(gen):
    pool, up = _pool(s=3, return_index=True), LearnablePolyphaseUpsample2d(3)
    x = torch.randn(3, 3, 9, 9, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        y, index = pool(x)
        u = up(y, index)
    k = index.argmax(1)
    torch.testing.assert_close(u, up(y, k), rtol=0, atol=0)
    torch.testing.assert_close(u, EF.polyphase_upsample2d(y, k, 3), rtol=0, atol=0)
    for b in range(3):
        i, j = divmod(int(k[b]), 3)
        assert torch.equal(u[b, :, i::3, j::3], x[b, :, i::3, j::3])
        assert int((u[b] != 0).sum()) == 3 * 9


@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (2, 3, 4, 8, 8)])
def test_pool_upsample_shift_equivariant_for_every_shift(shape, gen):
    pool, up = _pool(return_index=True), LearnablePolyphaseUpsample2d()
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        y = up(*pool(x))
        for dy in range(4):
            for dx in range(4):
                ys = up(*pool(torch.roll(x, (dy, dx), (-2, -1))))
                assert torch.equal(ys, torch.roll(y, (dy, dx), (-2, -1)))


def test_vmap_over_an_integer_index(gen):
    """The integer index vmapped with the map (no range check reads a batched index)."""
    up = LearnablePolyphaseUpsample2d()
    xb = torch.randn(4, 3, 4, 4, generator=gen, dtype=torch.float64)
    index = torch.tensor([0, 1, 2, 3])
    got = torch.func.vmap(lambda t, i: up(t[None], i[None]))(xb, index)
    torch.testing.assert_close(got, up(xb, index)[:, None], rtol=0, atol=0)


def test_unbatched_input_is_a_batch_of_one(gen):
    """A 3-D input is an unbatched (C, H, W), as torch's pools read it (it was refused): the
    batched result of x[None] with the batch dim dropped, in evaluation and in training (the
    same noise from the same generator); the selection (s**2,) or a 0-d integer index goes
    back into the upsampling."""
    pool = _pool(return_index=True)
    up = LearnablePolyphaseUpsample2d()
    x = torch.randn(3, 8, 8, generator=gen, dtype=torch.float64)
    (y, sel), (yb, selb) = pool(x), pool(x[None])
    assert y.shape == (3, 4, 4) and sel.shape == (4,)
    assert torch.equal(y, yb[0]) and torch.equal(sel, selb[0])
    assert torch.equal(pool.component_logits(x), pool.component_logits(x[None])[0])
    assert torch.equal(up(y, sel), up(yb, selb)[0])
    assert torch.equal(up(y, sel.argmax()), up(yb, selb.argmax(1))[0])
    with pytest.raises(ValueError, match="x is unbatched"):
        up(y, selb)
    pool.train()
    got = pool(x, generator=torch.Generator().manual_seed(3))
    want = pool(x[None], generator=torch.Generator().manual_seed(3))
    assert torch.equal(got[0], want[0][0]) and torch.equal(got[1], want[1][0])


def test_module_equals_functional_repr_state_dict_and_non_contiguous(gen):
    pool = _pool(kernel_size=5, hidden_channels=4, tau=0.5)
    assert repr(pool) == ("LearnablePolyphasePool2d(3, stride=2, hidden_channels=4, "
                          "kernel_size=5, tau=0.5)")
    assert set(pool.state_dict()) == {"weight", "bias", "out_weight"}
    assert pool.weight.shape == (4, 3, 6)  # 6 orbits of a 5x5 filter's taps
    x = torch.randn(2, 8, 8, 3, generator=gen, dtype=torch.float64).permute(0, 3, 1, 2)
    with torch.no_grad():
        torch.testing.assert_close(
            pool(x), EF.learnable_polyphase_pool2d(x.contiguous(), pool.weight, pool.bias,
                                                   pool.out_weight, 2), rtol=0, atol=0)
    filt = EF._lps.isotropic_filter(pool.weight)
    for k in range(4):  # exactly D4-symmetric
        assert torch.equal(filt, filt.rot90(k, (-2, -1)))
        assert torch.equal(filt, filt.rot90(k, (-2, -1)).flip(-1))


def test_float32_and_autocast_keep_the_float32_choice(gen):
    with seeded_rng(0):
        pool = LearnablePolyphasePool2d(3, return_index=True).eval()
        x = torch.randn(8, 3, 8, 8, generator=gen)
        with torch.no_grad():
            ref = pool(x)[1]
            with torch.autocast("cpu", dtype=torch.bfloat16):
                got = pool(x)[1]
        assert torch.equal(ref, got)


def test_compile_fullgraph(gen):
    pool, up = _pool(return_index=True), LearnablePolyphaseUpsample2d()

    def f(v):
        return up(*pool(v))

    x = torch.randn(2, 3, 8, 8, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(torch.compile(f, fullgraph=True, backend="eager")(x), f(x))


def test_bad_input():
    with pytest.raises(ValueError, match="H=7, W=8"):
        _pool()(torch.zeros(1, 3, 7, 8, dtype=torch.float64))
    with pytest.raises(ValueError, match="kernel_size=4"):
        LearnablePolyphasePool2d(3, kernel_size=4)
    with pytest.raises(ValueError, match="tau=0"):
        LearnablePolyphasePool2d(3, tau=0)
    with pytest.raises(ValueError, match="C_in=3"):
        _pool()(torch.zeros(1, 4, 8, 8, dtype=torch.float64))
    with pytest.raises(ValueError, match="smaller than the circular padding"):
        _pool(kernel_size=5)(torch.zeros(1, 3, 2, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="H=8, W=6"):  # W alone not divisible by 4
        _pool(s=4)(torch.zeros(1, 3, 8, 6, dtype=torch.float64))
    with pytest.raises(ValueError, match="orbit weights in dim 2 .*; got 2"):  # not 1, 3, 6...
        EF.polyphase_logits(torch.zeros(1, 3, 4, 4), torch.zeros(4, 3, 2), None, torch.zeros(4))
    with pytest.raises(TypeError, match="generator"):
        _pool()(torch.zeros(1, 3, 4, 4, dtype=torch.float64), generator=0)
    with pytest.raises(ValueError, match=r"\(2, 4\)"):
        LearnablePolyphaseUpsample2d()(torch.zeros(2, 1, 4, 4), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="0..3"):
        LearnablePolyphaseUpsample2d()(torch.zeros(2, 1, 4, 4), torch.tensor([0, 4]))


def test_plain_strided_subsampling_is_not_equivariant(gen):
    """The negative control of the shift and D4 tests above."""
    x = torch.randn(2, 3, 8, 8, generator=gen, dtype=torch.float64)
    y = x[..., ::2, ::2]
    ys = torch.roll(x, (1, 0), (-2, -1))[..., ::2, ::2]
    assert all(not torch.equal(ys, torch.roll(y, m, (-2, -1))) for m in [(0, 0), (1, 0)])
    x5 = torch.randn(2, 3, 8, 8, 8, generator=gen, dtype=torch.float64)
    assert equivariance_error(lambda v: v[..., ::2, ::2], x5, "d4", in_rep="regular",
                              out_rep="regular") > 1e-3


def test_check_grid_reads_the_learned_pool_as_a_component_choice():
    """check_grid does not take the scoring filter's kernel_size for a sampling window (it
    flagged stride parity on every size); a plain stride-2 conv at the same size is still
    flagged (negative control)."""
    from equilayers import check_grid

    assert check_grid(LearnablePolyphasePool2d(3).eval(), (1, 3, 8, 8), "p4m") == []
    conv = torch.nn.Conv2d(3, 3, 3, stride=2, padding=1, padding_mode="circular")
    assert [f.problem for f in check_grid(conv, (1, 3, 8, 8), "p4m")] == ["stride-parity"]


def test_module_parameters_dtype_init_bounds_and_draws_noise():
    """Every parameter takes ``dtype`` (the bias too); the initialisation is ``nn.Conv2d``'s
    bound ``1/sqrt(C k^2)`` for the filter and its bias, ``1/sqrt(hidden)`` for the read-out;
    noise is drawn only in training with ``gumbel``."""
    with seeded_rng(0):
        pool = LearnablePolyphasePool2d(4, hidden_channels=64, kernel_size=5,
                                        dtype=torch.float64)
    assert {p.dtype for p in pool.parameters()} == {torch.float64}
    for p, bound in ((pool.weight, 1 / 10), (pool.bias, 1 / 10), (pool.out_weight, 1 / 8)):
        assert 0.9 * bound < p.abs().max() <= bound  # control: close to the bound from below
    assert pool.draws_noise and not pool.eval().draws_noise
    assert not LearnablePolyphasePool2d(4, gumbel=False).draws_noise


@pytest.mark.parametrize("scale", [1.0, 1e19, 1e30])
def test_group_map_logits_finite_at_large_float32_values(scale, gen):
    """A float32 group map of values ~1e19: the fiber RMS squared them in float32 (inf), the
    logits were NaN, the output all NaN with gradients on, and under ``no_grad`` argmax read
    every input as component 0 (shift equivariance broken, silently). The control: scale 1."""
    m = LearnablePolyphasePool2d(3, gumbel=False, return_index=True).eval()
    x = torch.randn(2, 3, 4, 8, 8, generator=gen) * scale
    y, i = m(x)
    assert torch.isfinite(y).all()
    with torch.no_grad():
        _, j = m(torch.roll(x, (1, 1), dims=(-2, -1)))
    # a shift by (1, 1) moves component (a, b), index 2a + b, to (1 - a, 1 - b): 3 - index
    assert torch.equal(j.argmax(1), 3 - i.argmax(1))
