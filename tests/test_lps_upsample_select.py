"""LearnablePolyphaseUpsample2d/3d with the pool's floating selection: the components it
leaves at 0 stay 0 beside an inf or NaN sample (the product ``x * index`` gave inf * 0 = NaN
across the sample's whole block: 3 NaN in 2-D, 7 in 3-D, where the integer index and
PolyphaseUpsample gave none), and the values and gradients on finite inputs are still the
product's (the straight-through term's gradient to the scoring net, x's)."""

import math

import pytest
import torch
from conftest import seeded_rng

from equilayers.nn import (
    LearnablePolyphasePool2d,
    LearnablePolyphasePool3d,
    LearnablePolyphaseUpsample2d,
    LearnablePolyphaseUpsample3d,
    PolyphaseUpsample2d,
    PolyphaseUpsample3d,
)

_MODULES = {2: (LearnablePolyphasePool2d, LearnablePolyphaseUpsample2d, PolyphaseUpsample2d),
            3: (LearnablePolyphasePool3d, LearnablePolyphaseUpsample3d, PolyphaseUpsample3d)}
_SHAPES = {2: (2, 3, 8, 8), 3: (2, 3, 4, 4, 4)}


def _pool(nd, **kw):
    with seeded_rng(0):
        return _MODULES[nd][0](3, dtype=torch.float64, return_index=True, **kw)


def _product(x, index, s, nd):
    """The former placement: ``x`` spread over the phases times the selection."""
    b, lead, sizes = x.shape[0], x.shape[1:-nd], x.shape[-nd:]
    xr = x.reshape(b, math.prod(lead), *(v for m in sizes for v in (m, 1)))
    y = xr * index.view(b, 1, *(v for _ in range(nd) for v in (1, s)))
    return y.reshape(b, *lead, *(m * s for m in sizes))


@pytest.mark.parametrize("grad", [False, True], ids=["no_grad", "straight-through"])
@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
@pytest.mark.parametrize("nd", [2, 3])
def test_a_non_finite_sample_stays_in_its_own_place(nd, value, grad, gen):
    """With the selection as the pool returns it in evaluation (one-hot; with autograd on,
    plus the straight-through term, zero in value), the output is the integer placement's
    exactly: one non-finite output per non-finite sample."""
    pool, up = _pool(nd).eval(), _MODULES[nd][1]()
    x = torch.randn(_SHAPES[nd], generator=gen, dtype=torch.float64)
    with torch.set_grad_enabled(grad):
        y, sel = pool(x)
        assert sel.requires_grad == grad
        y = y.detach().clone()
        y[(0, 1) + (1,) * nd] = value  # e.g. a float16 overflow in the decoder
        got = up(y, sel)
    want = _MODULES[nd][2]()(y, sel.detach().argmax(1))
    torch.testing.assert_close(got.detach(), want, rtol=0, atol=0, equal_nan=True)
    assert int((~torch.isfinite(got)).sum()) == 1
    # control: the product form spreads the sample's NaN over its whole block
    old = _product(y, sel.detach(), 2, nd)
    assert int(old.isnan().sum()) == 2 ** nd - (0 if math.isnan(value) else 1)


@pytest.mark.parametrize("mode", ["eval", "train-hard", "train-soft"])
@pytest.mark.parametrize("nd", [2, 3])
def test_finite_values_and_gradients_are_the_products(nd, mode, gen):
    """On finite inputs the select changes nothing: the output and every gradient (the
    scoring net's through the straight-through term or the mixture weights, the input's) are
    those of the product ``x * index``, bit for bit."""
    pool = _pool(nd, hard=mode != "train-soft", gumbel=False)
    pool.train(mode != "eval")
    up = _MODULES[nd][1]()
    x = torch.randn(_SHAPES[nd], generator=gen, dtype=torch.float64, requires_grad=True)
    y, sel = pool(x)
    g = torch.randn(_SHAPES[nd], generator=gen, dtype=torch.float64)
    wrt = (pool.weight, pool.bias, pool.out_weight, x)
    got_y, want_y = up(y, sel), _product(y, sel, 2, nd)
    torch.testing.assert_close(got_y, want_y, rtol=0, atol=0)
    got = torch.autograd.grad((got_y * g).sum(), wrt, retain_graph=True)
    want = torch.autograd.grad((want_y * g).sum(), wrt, retain_graph=True)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # control: through the selection alone (y detached) the scoring net gets a gradient,
    # which the integer placement (same values for a hard choice) does not carry: what the
    # comparison above checks is there
    yd = y.detach()
    (through,) = torch.autograd.grad((up(yd, sel) * g).sum(), (pool.out_weight,),
                                     retain_graph=True)
    assert through.abs().sum() > 0
    if mode != "train-soft":
        plain = up(yd, sel.detach().argmax(1))
        torch.testing.assert_close(plain, got_y.detach(), rtol=0, atol=0)
        assert not plain.requires_grad
