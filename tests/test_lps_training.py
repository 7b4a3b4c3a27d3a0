"""Learnable polyphase sampling in training: the Gumbel choice and its generator, gradients
reaching the scoring net (straight-through, soft, per sample, gradcheck, through jit.trace),
the temperature, and that it learns (evaluation and the upsampling pair: ``test_lps.py``)."""

import pytest
import torch
from _lps_common import _components, _pool
from conftest import per_sample_grads_by_loop

import equilayers.functional as EF
from equilayers.nn import LearnablePolyphaseUpsample2d


def test_noisy_choice_follows_the_softmax_of_the_logits():
    """Gumbel-max: the training choice is component k with probability softmax(logits)_k."""
    pool = _pool(1, return_index=True).train()
    x = torch.randn(1, 1, 4, 4, generator=torch.Generator().manual_seed(3),
                    dtype=torch.float64).expand(4000, 1, 4, 4)
    with torch.no_grad():
        probs = torch.softmax(pool.component_logits(x[:1]), 1)[0]
        _, index = pool(x, generator=torch.Generator().manual_seed(0))
    freq = index.argmax(1).bincount(minlength=4).double() / 4000
    torch.testing.assert_close(freq, probs, rtol=0, atol=0.03)


def test_generator_makes_training_reproducible_and_eval_is_deterministic(gen):
    pool = _pool(return_index=True).train()
    x = torch.randn(64, 3, 4, 4, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        i1 = pool(x, generator=torch.Generator().manual_seed(5))[1]
        i2 = pool(x, generator=torch.Generator().manual_seed(5))[1]
        i3 = pool(x, generator=torch.Generator().manual_seed(6))[1]
        assert torch.equal(i1, i2) and not torch.equal(i1, i3)
        pool.eval()
        e1, e2 = pool(x)[1], pool(x, generator=torch.Generator().manual_seed(6))[1]
    assert torch.equal(e1, e2)


@pytest.mark.parametrize("hard,gumbel", [(True, True), (True, False), (False, True),
                                         (False, False)])
def test_gradients_reach_the_scoring_net_in_training(hard, gumbel, gen):
    pool = _pool(hard=hard, gumbel=gumbel).train()
    x = torch.randn(2, 3, 8, 8, generator=gen, dtype=torch.float64, requires_grad=True)
    y = pool(x, generator=torch.Generator().manual_seed(0))
    if hard:  # the forward value is exactly one component
        comps = torch.stack(_components(x.detach(), 2), 1)
        assert all(any(torch.equal(y[b].detach(), comps[b, k]) for k in range(4))
                   for b in range(2))
    (y * torch.randn_like(y)).sum().backward()
    for p in (pool.weight, pool.bias, pool.out_weight, x):
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_gradients_reach_the_scoring_net_through_the_upsampling(gen):
    pool, up = _pool(return_index=True).train(), LearnablePolyphaseUpsample2d()
    x = torch.randn(2, 3, 8, 8, generator=gen, dtype=torch.float64)
    y, index = pool(x, generator=torch.Generator().manual_seed(0))
    (up(y.detach(), index) * torch.randn(2, 3, 8, 8, generator=gen, dtype=torch.float64)
     ).sum().backward()  # the decoder's loss alone
    assert pool.out_weight.grad is not None and pool.out_weight.grad.abs().sum() > 0


def test_it_learns_to_pick_the_brightest_component():
    """The scoring net learns (by the straight-through Gumbel gradient of ``-mean(y)``) to keep
    the component holding a bright lattice, wherever a shift puts it."""
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    pool = _pool(1, hidden_channels=4, kernel_size=1, return_index=True).train()
    opt = torch.optim.Adam(pool.parameters(), lr=0.05)

    def batch(n):
        x = torch.randn(n, 1, 8, 8, generator=gen, dtype=torch.float64)
        x[..., 1::2, 0::2] += 1.5  # component 2 is bright ...
        shifts = torch.randint(0, 2, (n, 2), generator=gen)
        x = torch.stack([torch.roll(x[i], tuple(shifts[i].tolist()), (-2, -1))
                         for i in range(n)])
        target = ((1 + shifts[:, 0]) % 2) * 2 + shifts[:, 1] % 2  # ... until it moves
        return x, target

    def accuracy():
        x, target = batch(256)
        with torch.no_grad():
            return float((pool.eval()(x)[1].argmax(1) == target).double().mean())

    before = accuracy()
    for _ in range(60):
        pool.train()
        x, _ = batch(32)
        opt.zero_grad()
        (-pool(x, generator=gen)[0].mean()).backward()
        opt.step()
    after = accuracy()
    assert after == 1.0 and before < 0.9, (before, after)


@pytest.mark.parametrize("mode", ["eval", "train-hard", "train-soft"])
def test_vmap_grad_per_sample_gradients_equal_the_loop(mode, gen):
    """Per-sample gradients (torch.func.vmap(grad(...))) through the pool and the upsampling,
    in evaluation and in training (without noise, so the loop sees the same choice): the
    selection is built without F.one_hot, and they equal autograd's, sample by sample."""
    pool = _pool(return_index=True, hard=mode != "train-soft", gumbel=False)
    pool.train(mode != "eval")
    up = LearnablePolyphaseUpsample2d()
    w = torch.randn(1, 3, 8, 8, generator=gen, dtype=torch.float64)

    def loss(t):
        return (up(*pool(t[None])) * w).square().sum()

    xb = torch.randn(4, 3, 8, 8, generator=gen, dtype=torch.float64)
    got = torch.func.vmap(torch.func.grad(loss))(xb)
    torch.testing.assert_close(got, per_sample_grads_by_loop(loss, xb), rtol=0, atol=1e-12)


@pytest.mark.parametrize("nd", [2, 3])
@pytest.mark.parametrize("mode", ["eval", "train-hard", "train-soft"])
def test_forward_mode_equals_reverse_mode(mode, nd, gen):
    """torch.func.jacfwd (forward mode) and jacrev (reverse mode) of the pool in the scoring
    weights and the input: the same Jacobian in every mode, 2-D and 3-D. The hard choice's
    straight-through term was added only where the logits required grad, so under forward
    mode (nothing requires grad) the scoring weights' tangent was 0 while reverse mode gave
    the estimator's gradient; a dual level (torch.autograd.forward_ad) alike. The control:
    the weights' Jacobian is not zero (so a dropped term fails here)."""
    fn = EF.learnable_polyphase_pool2d if nd == 2 else EF.learnable_polyphase_pool3d
    size = (4,) * nd
    x = torch.randn(2, 2, *size, generator=gen, dtype=torch.float64)
    taps = 3 if nd == 2 else 4  # the orbit weights of a 3-tap (3x3x3) isotropic filter
    w = torch.randn(3, 2, taps, generator=gen, dtype=torch.float64)
    b, v = (torch.randn(3, generator=gen, dtype=torch.float64) for _ in range(2))

    def pool(t, weight, gumbel=False):  # (jacfwd/jacrev vmap: no random ops there)
        g = torch.Generator().manual_seed(0)  # the same Gumbel noise on every call
        return fn(t, weight, b, v, training=mode != "eval", hard=mode != "train-soft",
                  gumbel=gumbel, generator=g)

    fwd = torch.func.jacfwd(pool, argnums=(0, 1))(x, w)
    rev = torch.func.jacrev(pool, argnums=(0, 1))(x, w)
    for f, r in zip(fwd, rev, strict=True):
        torch.testing.assert_close(f, r, rtol=0, atol=1e-12)
    assert fwd[1].abs().max() > 1e-3
    # with the Gumbel noise: <jvp(t), c> == <vjp(c), t>, by torch.func and by a dual level
    tangent = torch.randn(w.shape, generator=gen, dtype=torch.float64)
    out, jvp = torch.func.jvp(lambda u: pool(x, u, True), (w,), (tangent,))
    cot = torch.randn(out.shape, generator=gen, dtype=torch.float64)
    vjp = torch.func.vjp(lambda u: pool(x, u, True), w)[1](cot)[0]
    torch.testing.assert_close((jvp * cot).sum(), (vjp * tangent).sum(), rtol=1e-12, atol=0)
    with torch.autograd.forward_ad.dual_level():
        dual = torch.autograd.forward_ad.unpack_dual(
            pool(x, torch.autograd.forward_ad.make_dual(w, tangent), True)).tangent
    torch.testing.assert_close(dual, jvp, rtol=0, atol=1e-12)
    assert jvp.abs().max() > 1e-3


def test_soft_training_gradcheck_and_eval_gradcheck(gen):
    x = torch.randn(2, 2, 4, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 2, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, generator=gen, dtype=torch.float64, requires_grad=True)
    v = torch.randn(3, generator=gen, dtype=torch.float64, requires_grad=True)

    def soft(*args):
        return EF.learnable_polyphase_pool2d(*args, hard=False, training=True, gumbel=False,
                                             tau=0.7)

    assert torch.autograd.gradcheck(soft, (x, w, b, v))
    # evaluation: exact in x (the choice is locally constant)
    assert torch.autograd.gradcheck(lambda t: EF.learnable_polyphase_pool2d(t, w, b, v), (x,))
    sel = torch.softmax(torch.randn(2, 4, generator=gen, dtype=torch.float64), 1)
    sel.requires_grad_(True)
    assert torch.autograd.gradcheck(EF.learnable_polyphase_upsample2d, (x, sel))


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.filterwarnings("ignore:`torch.jit.trace:DeprecationWarning")  # torch 2.13
@pytest.mark.filterwarnings("ignore:`torch.jit.trace:FutureWarning")  # torch 2.15
@pytest.mark.parametrize("grad", [True, False], ids=["grad", "no_grad"])
def test_jit_trace_keeps_the_straight_through_term_in_any_grad_mode(grad, gen):
    """A traced graph is run later in any grad mode, so it keeps the straight-through term
    wherever the scoring weights take gradients, traced with autograd on or off (traced
    under ``torch.no_grad`` it had none: a trained traced pool's scoring net got no gradient,
    silently; and ``torch.jit.trace``'s default check, a second trace under ``no_grad``, failed
    for one traced with autograd on)."""
    pool = _pool(gumbel=False).train()
    x = torch.randn(2, 3, 8, 8, generator=gen, dtype=torch.float64)
    with torch.set_grad_enabled(grad):
        traced = torch.jit.trace(pool, x)  # check_trace: the default
    go = torch.randn(2, 3, 4, 4, generator=gen, dtype=torch.float64)
    params = (pool.weight, pool.bias, pool.out_weight)
    want = torch.autograd.grad((pool(x) * go).sum(), params)
    got = torch.autograd.grad((traced(x) * go).sum(), params)
    for a, b in zip(got, want, strict=True):
        assert b.abs().sum() > 0
        torch.testing.assert_close(a, b)
    with torch.no_grad():  # the term is zero in value
        torch.testing.assert_close(traced(x), pool(x), rtol=0, atol=0)


@pytest.mark.parametrize("hard", [False, True], ids=["soft", "straight-through"])
def test_temperature_divides_the_logits_of_the_mixture_and_the_straight_through_term(hard, gen):
    """tau != 1 (the default, at which tau cannot be told from 1/tau): the soft mixture and the
    selection are ``softmax(logits / tau)``, and the straight-through gradient is that
    mixture's gradient."""
    tau = 0.3
    pool = _pool(tau=tau, hard=hard, gumbel=False, return_index=True).train()
    x = torch.randn(2, 3, 8, 8, generator=gen, dtype=torch.float64)
    g = torch.randn(2, 3, 4, 4, generator=gen, dtype=torch.float64)
    y, index = pool(x)
    (y * g).sum().backward()
    got = pool.out_weight.grad.clone()
    pool.zero_grad()
    probs = torch.softmax(pool.component_logits(x) / tau, 1)
    mix = sum(probs[:, k, None, None, None] * c for k, c in enumerate(_components(x, 2)))
    (mix * g).sum().backward()
    if hard:
        best = probs.argmax(1)
        torch.testing.assert_close(index.detach(), torch.nn.functional.one_hot(best, 4).double())
    else:
        torch.testing.assert_close(y.detach(), mix.detach(), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(index.detach(), probs.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got, pool.out_weight.grad, rtol=1e-10, atol=1e-12)
    # control: at tau = 1 these logits give another mixture
    assert not torch.allclose(probs, torch.softmax(pool.component_logits(x), 1))


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.filterwarnings("ignore:`torch.jit.trace:DeprecationWarning")  # torch 2.13
@pytest.mark.filterwarnings("ignore:`torch.jit.trace:FutureWarning")  # torch 2.15
def test_jit_trace_of_a_frozen_scoring_net_keeps_the_input_gradient_in_training(gen):
    """Frozen scoring weights, training, an input that requires grad: the straight-through
    term carries x's gradient through the scoring net, so a trace keeps it (x's requires_grad
    alone, not just the weights', decides it)."""
    pool = _pool(gumbel=False).train().requires_grad_(False)
    x = torch.randn(2, 3, 8, 8, generator=gen, dtype=torch.float64, requires_grad=True)
    traced = torch.jit.trace(pool, x)
    go = torch.randn(2, 3, 4, 4, generator=gen, dtype=torch.float64)
    (want,) = torch.autograd.grad((pool(x) * go).sum(), x)
    (got,) = torch.autograd.grad((traced(x) * go).sum(), x)
    # control: the straight-through part of x's gradient is not zero
    (plain,) = torch.autograd.grad((pool.eval()(x) * go).sum(), x)
    assert (want - plain).abs().max() > 1e-6
    torch.testing.assert_close(got, want)


def test_a_generator_on_another_device_than_the_logits_is_refused_by_name():
    """A generator must be on the logits' device (torch's message on CUDA named neither; on
    some devices the noise ignored the generator, silently). Meta tensors stand in for an
    accelerator here; control: a matching (None) generator runs."""
    x = torch.randn(2, 3, 8, 8, device="meta")
    w, b, v = torch.randn(4, 3, 3, device="meta"), torch.zeros(4, device="meta"), torch.randn(
        4, device="meta")
    with pytest.raises(ValueError, match="generator is on cpu, but the logits are on meta"):
        EF.learnable_polyphase_pool2d(x, w, b, v, training=True, generator=torch.Generator())
    assert EF.learnable_polyphase_pool2d(x, w, b, v, training=True).shape == (2, 3, 4, 4)
