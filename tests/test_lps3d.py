"""Learnable polyphase sampling on volumes and the cube groups' 6-D maps: the choice, exact
equivariance in evaluation under every element of O_h / O / D4z and every integer circular
shift, the pool-upsample pair, negative controls (an anisotropic scoring filter, a fixed
phase), gradients, the Gumbel training path, module == functional, bad input."""

import itertools

import pytest
import torch
from conftest import seeded_rng

import equilayers.functional as EF
from equilayers import check_grid
from equilayers.nn import LearnablePolyphasePool3d, LearnablePolyphaseUpsample3d
from equilayers.testing import assert_equivariant, equivariance_error, equivariance_report

ORDERS = {"o": 24, "oh": 48, "c4z": 4, "d4z": 8}


def _pool(c=3, s=2, **kw):
    with seeded_rng(0):
        return LearnablePolyphasePool3d(c, s, dtype=torch.float64, **kw).eval()


def _components(x, s):
    return [x[..., a::s, b::s, c::s] for a in range(s) for b in range(s) for c in range(s)]


def _rand(gen, *shape):
    return torch.randn(shape, generator=gen, dtype=torch.float64)


@pytest.mark.parametrize("s,shape", [(2, (3, 3, 4, 6, 8)), (3, (2, 3, 6, 6, 9)),
                                     (2, (2, 3, 24, 4, 4, 4))])
def test_keeps_the_component_of_largest_logit(s, shape, gen):
    pool = _pool(s=s, return_index=True)
    x = _rand(gen, *shape)
    with torch.no_grad():
        y, index = pool(x)
        logits = pool.component_logits(x)
    assert logits.shape == (shape[0], s ** 3) and logits.dtype == torch.float64
    assert y.shape == (*shape[:-3], *(n // s for n in shape[-3:]))
    best = logits.argmax(1)
    assert torch.equal(index, torch.nn.functional.one_hot(best, s ** 3).double())
    for b in range(shape[0]):
        assert torch.equal(y[b], _components(x[b], s)[int(best[b])])


@pytest.mark.parametrize("s,shape", [(2, (2, 3, 4, 6, 4)), (2, (2, 2, 8, 4, 4, 4)),
                                     (3, (2, 2, 3, 6, 3))])
def test_every_integer_shift_moves_the_choice_and_shifts_the_output(s, shape, gen):
    """Shifting by ``t`` picks component ``((a + t_d) % s, ..)`` and the output is the old one
    rolled by ``((a + t_d) // s, ..)``: every shift in ``[0, 2s)^3``."""
    pool = _pool(shape[1], s, return_index=True)
    x = _rand(gen, *shape)
    dims = (-3, -2, -1)
    with torch.no_grad():
        y, index = pool(x)
        k = index.argmax(1)
        phase = torch.stack([k // (s * s), k // s % s, k % s], 1)
        for t in itertools.product(range(2 * s), repeat=3):
            ys, idx_s = pool(torch.roll(x, t, dims))
            moved = (phase + torch.tensor(t)) % s
            assert torch.equal(idx_s.argmax(1), moved[:, 0] * s * s + moved[:, 1] * s + moved[:, 2])
            for i in range(shape[0]):
                move = tuple(int(phase[i, j] + t[j]) // s for j in range(3))
                assert torch.equal(ys[i], torch.roll(y[i], move, dims))


@pytest.mark.parametrize("group,shape,s", [
    ("oh", (2, 3, 6, 6, 6), 2), ("oh", (2, 2, 48, 4, 4, 4), 2), ("o", (2, 2, 24, 4, 6, 8), 2),
    ("o", (3, 3, 6, 6, 6), 3), ("d4z", (2, 2, 8, 6, 4, 4), 2), ("d4z", (2, 3, 2, 6, 6), 2),
    ("c4z", (2, 2, 4, 4, 8, 8), 2)])
def test_exact_under_every_cube_element(group, shape, s, gen):
    """Every element (all 48 of O_h on cubes; D4z on boxes whose depth differs) moves the
    output like the input, exactly: a selection, no rounding."""
    pool = _pool(shape[1], s)
    report = assert_equivariant(pool, _rand(gen, *shape), group, tol=0.0)
    assert len(report.errors) == ORDERS[group] and max(report.errors.values()) == 0.0


def test_the_choice_follows_the_inversion_and_an_axis_swap(gen):
    """The inversion (flip of all three dims) selects phase ``(s-1-a, s-1-b, s-1-c)``, the swap
    of ``H`` and ``W`` (a reflection of O_h) phase ``(a, c, b)``: the logits are permuted as
    the components."""
    s = 3
    pool = _pool(s=s)
    x = _rand(gen, 4, 3, 6, 9, 9)
    with torch.no_grad():
        logits = pool.component_logits(x).view(4, s, s, s)
        flipped = pool.component_logits(x.flip(-3, -2, -1)).view(4, s, s, s)
        swapped = pool.component_logits(x.transpose(-2, -1)).view(4, s, s, s)
    torch.testing.assert_close(flipped, logits.flip(1, 2, 3), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(swapped, logits.transpose(2, 3), rtol=1e-12, atol=1e-12)


class _PoolUp(torch.nn.Module):
    def __init__(self, c=3, s=2):
        super().__init__()
        self.pool, self.up = _pool(c, s, return_index=True), LearnablePolyphaseUpsample3d(s)

    def forward(self, x):
        return self.up(*self.pool(x))


@pytest.mark.parametrize("group,shape", [("oh", (2, 2, 48, 4, 4, 4)), ("o", (2, 3, 4, 6, 8)),
                                         ("d4z", (2, 2, 8, 2, 4, 4))])
def test_pool_upsample_pair_is_exact_under_the_cube_groups(group, shape, gen):
    report = assert_equivariant(_PoolUp(shape[1]), _rand(gen, *shape), group, tol=0.0)
    assert len(report.errors) == ORDERS[group]


@pytest.mark.parametrize("shape", [(2, 3, 4, 4, 4), (2, 2, 4, 4, 6, 4)])
def test_pool_upsample_shift_equivariant_for_every_shift(shape, gen):
    m = _PoolUp(shape[1])
    x = _rand(gen, *shape)
    with torch.no_grad():
        y = m(x)
        for t in itertools.product(range(4), repeat=3):
            assert torch.equal(m(torch.roll(x, t, (-3, -2, -1))), torch.roll(y, t, (-3, -2, -1)))


def test_upsample_puts_samples_back_and_int_index_agrees(gen):
    pool, up = _pool(s=3, return_index=True), LearnablePolyphaseUpsample3d(3)
    x = _rand(gen, 3, 3, 6, 3, 9)
    with torch.no_grad():
        y, index = pool(x)
        u = up(y, index)
    k = index.argmax(1)
    assert torch.equal(u, up(y, k))
    for b in range(3):
        a, bb, c = int(k[b]) // 9, int(k[b]) // 3 % 3, int(k[b]) % 3
        assert torch.equal(u[b, :, a::3, bb::3, c::3], x[b, :, a::3, bb::3, c::3])
        assert int((u[b] != 0).sum()) == 3 * 2 * 1 * 3


# --- negative controls ------------------------------------------------------------------------
def test_an_anisotropic_scoring_filter_breaks_the_cube_symmetry(gen, monkeypatch):
    """The control of the exactness tests: the same pool with a full (not orbit-tied) 3x3x3
    scoring filter, odd along W (a random full filter's logits can still be ruled by the
    components' isotropic mean level), picks components that do not follow the rotations.
    Shifts stay exact (the correlation is still circular)."""
    pool = _pool(return_index=True)
    x = _rand(gen, 4, 3, 48, 4, 4, 4)
    assert equivariance_error(lambda v: pool(v)[0], x, "oh") == 0.0
    full = _rand(gen, 8, 3, 3, 3, 3)
    monkeypatch.setattr(EF._lps, "isotropic_filter", lambda w, nd=2: full - full.flip(-1))
    report = equivariance_report(lambda v: pool(v)[0], x, "oh")
    assert report.error > 0.1 and sum(e > 0.1 for e in report.errors.values()) >= 24
    with torch.no_grad():
        y, index = pool(x)
        k = index.argmax(1)
        ys, idx_s = pool(torch.roll(x, (1, 0, 0), (-3, -2, -1)))
    assert torch.equal(idx_s.argmax(1), (k + 4) % 8)


def test_a_fixed_phase_fails_every_test_the_learned_choice_passes(gen):
    x = _rand(gen, 2, 2, 48, 4, 4, 4)
    assert equivariance_error(lambda v: v[..., ::2, ::2, ::2], x, "oh", in_rep="regular",
                              out_rep="regular") > 0.1
    y = x[..., ::2, ::2, ::2]
    ys = torch.roll(x, (0, 0, 1), (-3, -2, -1))[..., ::2, ::2, ::2]
    assert all(not torch.equal(ys, torch.roll(y, (0, 0, m), (-3, -2, -1))) for m in (0, 1))


# --- training, gradients ----------------------------------------------------------------------
def test_generator_makes_training_reproducible_and_eval_is_deterministic(gen):
    pool = _pool(return_index=True).train()
    x = _rand(gen, 64, 3, 2, 2, 2)
    with torch.no_grad():
        i1 = pool(x, generator=torch.Generator().manual_seed(5))[1]
        i2 = pool(x, generator=torch.Generator().manual_seed(5))[1]
        i3 = pool(x, generator=torch.Generator().manual_seed(6))[1]
        assert torch.equal(i1, i2) and not torch.equal(i1, i3)
        pool.eval()
        e1, e2 = pool(x)[1], pool(x, generator=torch.Generator().manual_seed(6))[1]
    assert torch.equal(e1, e2)
    assert torch.equal(e1, torch.nn.functional.one_hot(pool.component_logits(x).argmax(1),
                                                       8).double())


@pytest.mark.parametrize("hard,gumbel", [(True, True), (True, False), (False, True)])
def test_gradients_reach_the_scoring_net_in_training(hard, gumbel, gen):
    pool = _pool(hard=hard, gumbel=gumbel).train()
    x = _rand(gen, 2, 3, 24, 4, 4, 4).requires_grad_(True)
    y = pool(x, generator=torch.Generator().manual_seed(0))
    if hard:  # the forward value is exactly one component
        comps = _components(x.detach(), 2)
        assert all(any(torch.equal(y[b].detach(), c[b]) for c in comps) for b in range(2))
    (y * torch.randn_like(y)).sum().backward()
    for p in (pool.weight, pool.bias, pool.out_weight, x):
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_soft_training_gradcheck_and_eval_gradcheck(gen):
    x = _rand(gen, 2, 1, 2, 4, 2).requires_grad_(True)
    w = _rand(gen, 2, 1, 4).requires_grad_(True)
    b = _rand(gen, 2).requires_grad_(True)
    v = _rand(gen, 2).requires_grad_(True)

    def soft(*args):
        return EF.learnable_polyphase_pool3d(*args, hard=False, training=True, gumbel=False,
                                             tau=0.7)

    assert torch.autograd.gradcheck(soft, (x, w, b, v))
    assert torch.autograd.gradcheck(lambda t: EF.learnable_polyphase_pool3d(t, w, b, v), (x,))
    sel = torch.softmax(_rand(gen, 2, 8), 1).requires_grad_(True)
    assert torch.autograd.gradcheck(EF.learnable_polyphase_upsample3d,
                                    (x[..., :1, :2, :1].detach().requires_grad_(True), sel))


# --- the module ---------------------------------------------------------------------------
def test_module_equals_functional_repr_state_dict_and_the_isotropic_filter(gen):
    pool = _pool(kernel_size=5, hidden_channels=4, tau=0.5)
    assert repr(pool) == ("LearnablePolyphasePool3d(3, stride=2, hidden_channels=4, "
                          "kernel_size=5, tau=0.5)")
    assert set(pool.state_dict()) == {"weight", "bias", "out_weight"}
    assert pool.weight.shape == (4, 3, 10)  # 10 orbits of a 5x5x5 filter's taps under O_h
    assert _pool().weight.shape == (8, 3, 4)
    x = _rand(gen, 2, 4, 4, 4, 3).permute(0, 4, 1, 2, 3)  # non-contiguous
    with torch.no_grad():
        want = EF.learnable_polyphase_pool3d(x.contiguous(), pool.weight, pool.bias,
                                             pool.out_weight, 2, tau=0.5)
        assert torch.equal(pool(x), want)
        with seeded_rng(1):
            fresh = LearnablePolyphasePool3d(3, kernel_size=5, hidden_channels=4, tau=0.5,
                                             dtype=torch.float64).eval()
        assert not torch.equal(fresh.weight, pool.weight)
        fresh.load_state_dict(pool.state_dict())
        assert torch.equal(fresh(x), want)
    filt = EF._lps.isotropic_filter(pool.weight, 3)
    assert filt.shape == (4, 3, 5, 5, 5)
    for perm in itertools.permutations((2, 3, 4)):  # all 48 signed permutations of the axes
        for flips in itertools.product((False, True), repeat=3):
            moved = filt.permute(0, 1, *perm).flip([2 + i for i in range(3) if flips[i]])
            assert torch.equal(moved, filt)
    bound = 1 / (3 * 125) ** 0.5  # nn.Conv3d's fan-in bound
    assert 0.5 * bound < pool.weight.abs().max() <= bound


def test_unbatched_input_is_a_batch_of_one(gen):
    pool, up = _pool(return_index=True), LearnablePolyphaseUpsample3d()
    x = _rand(gen, 3, 4, 4, 4)
    (y, sel), (yb, selb) = pool(x), pool(x[None])
    assert y.shape == (3, 2, 2, 2) and sel.shape == (8,)
    assert torch.equal(y, yb[0]) and torch.equal(sel, selb[0])
    assert torch.equal(up(y, sel), up(yb, selb)[0])
    assert torch.equal(up(y, sel.argmax()), up(yb, selb.argmax(1))[0])


def test_compile_fullgraph(gen):
    m = _PoolUp()

    def f(v):
        return m(v)

    x = _rand(gen, 2, 3, 4, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(torch.compile(f, fullgraph=True, backend="eager")(x), f(x))


def test_check_grid_reads_the_learned_pool_as_a_component_choice():
    """check_grid does not take the scoring filter's kernel_size for a sampling window; a plain
    stride-2 conv at the same size is still flagged (negative control); a planar group on it
    is refused (it works on volumes)."""
    assert check_grid(LearnablePolyphasePool3d(3).eval(), (1, 3, 8, 8, 8), "oh") == []
    assert check_grid(LearnablePolyphasePool3d(3).eval(), (1, 3, 24, 8, 8, 8), "o") == []
    conv = torch.nn.Conv3d(3, 3, 3, stride=2, padding=1, padding_mode="circular")
    assert [f.problem for f in check_grid(conv, (1, 3, 8, 8, 8), "oh")] == ["stride-parity"]
    with pytest.raises(ValueError, match="slides windows over volumes"):
        check_grid(LearnablePolyphasePool3d(3), (1, 3, 8, 8, 8), "p4")


def test_bad_input():
    with pytest.raises(ValueError, match="D=7, H=8, W=8"):
        _pool()(torch.zeros(1, 3, 7, 8, 8, dtype=torch.float64))
    with pytest.raises(ValueError, match="D, H and W divisible by stride=2"):
        _pool()(torch.zeros(1, 3, 4, 3, 4, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="kernel_size=4"):
        LearnablePolyphasePool3d(3, kernel_size=4)
    with pytest.raises(ValueError, match="tau=0"):
        LearnablePolyphasePool3d(3, tau=0)
    with pytest.raises(ValueError, match="C_in=3"):
        _pool()(torch.zeros(1, 4, 4, 4, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"are 1x2x2, smaller than the circular padding 2 of "
                                         r"the 5x5x5"):
        _pool(kernel_size=5)(torch.zeros(1, 3, 2, 4, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"\(r\+1\)\(r\+2\)\(r\+3\)/6 orbit weights .*; got 3"):
        EF.polyphase_logits3d(torch.zeros(1, 3, 4, 4, 4), torch.zeros(4, 3, 3), None,
                              torch.zeros(4))
    with pytest.raises(ValueError, match="x must be 4-D or 5-D or 6-D"):
        _pool()(torch.zeros(3, 4, 4, dtype=torch.float64))
    with pytest.raises(TypeError, match="generator"):
        _pool()(torch.zeros(1, 3, 4, 4, 4, dtype=torch.float64), generator=0)
    with pytest.raises(ValueError, match=r"\(B, stride\*\*3\) = \(2, 8\)"):
        LearnablePolyphaseUpsample3d()(torch.zeros(2, 1, 2, 2, 2), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="0..7"):
        LearnablePolyphaseUpsample3d()(torch.zeros(2, 1, 2, 2, 2), torch.tensor([0, 8]))
    with pytest.raises(ValueError, match=r"x is unbatched \(C, D, H, W\)"):
        LearnablePolyphaseUpsample3d()(torch.zeros(1, 2, 2, 2), torch.zeros(2, 8))
    # a call without the index names the 3-D class (it named the 2-D one it derives from)
    with pytest.raises(TypeError, match=r"^LearnablePolyphaseUpsample3d\.forward\(\) missing .*"
                                        r"'index'"):
        LearnablePolyphaseUpsample3d()(torch.zeros(2, 1, 2, 2, 2))
