"""FieldDropout / field_dropout: one Bernoulli draw per sample, field and pixel, shared by the
field's fiber slots, kept fields scaled by 1 / (1 - p); the identity in eval mode. Each property
has a control that fails it (nn.Dropout draws per value, nn.Dropout3d per channel map)."""

import pytest
import torch
from conftest import seeded_rng
from torch import nn

import equilayers.functional as EF
import equilayers.nn as enn
from equilayers.groups import act, act_fiber, act_spatial, get
from equilayers.testing._harness import noise_sources


def _seeded(fn, x, seed=3):
    """``fn(x)`` with the global RNG drawn from ``seed`` (the module has no generator)."""
    with seeded_rng(seed):
        return fn(x)


def _kept(y):
    return y != 0


def _fiber_shared(kept):
    """The keep pattern is the same for every slot of a field at a pixel."""
    return bool((kept == kept[:, :, :1]).all())


def _varies_along(kept, dim):
    """The keep pattern is not constant along ``dim`` (fiber slot 0)."""
    k = kept[:, :, 0]
    d = dim if dim < 2 else dim - 1
    return bool((k != k.narrow(d, 0, 1)).any())


@pytest.mark.parametrize("shape", [(6, 5, 8, 7, 7), (4, 3, 24, 4, 4, 4)], ids=["5d", "6d"])
def test_the_mask_is_shared_by_a_fields_slots_and_drawn_per_sample_field_and_pixel(shape, gen):
    x = torch.randn(shape, generator=gen, dtype=torch.float64) + 10.0  # no exact zeros
    kept = _kept(EF.field_dropout(x, 0.5, generator=gen))
    assert _fiber_shared(kept)
    spatial = range(3, len(shape))
    assert all(_varies_along(kept, d) for d in (0, 1, *spatial))
    # controls: nn.Dropout draws per slot; nn.Dropout3d one value per channel map (5-D)
    elementwise = _kept(_seeded(nn.Dropout(0.5), x))
    assert not _fiber_shared(elementwise)
    if len(shape) == 5:
        per_map = _kept(_seeded(nn.Dropout3d(0.5), x))
        assert _fiber_shared(per_map) and not any(_varies_along(per_map, d) for d in spatial)


def test_an_image_has_one_draw_per_value_as_nn_dropout(gen):
    """On (B, C, H, W) every channel is a trivial field: the same numbers as nn.Dropout's,
    from the same global RNG state."""
    x = torch.randn(4, 3, 6, 6, generator=gen, dtype=torch.float64)
    y = _seeded(enn.FieldDropout(0.3), x)
    torch.testing.assert_close(y, _seeded(nn.Dropout(0.3), x), rtol=0, atol=0)
    assert not torch.equal(y, _seeded(nn.Dropout(0.3), x, seed=4))  # the control: other draws


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_keep_rate_and_independence(p):
    """On 1.6M draws the keep rate is 1 - p within 5 standard errors, the same at every field
    and pixel (no position is favoured), and neighbours along the batch, fields and pixels
    are kept together at rate (1 - p)^2 (independent draws)."""
    gen = torch.Generator().manual_seed(11)
    x = torch.ones(1000, 4, 3, 20, 20, dtype=torch.float64)
    kept = _kept(EF.field_dropout(x, p, generator=gen))[:, :, 0].double()
    q = 1.0 - p
    n = kept.numel()
    assert abs(kept.mean().item() - q) < 5 * (q * (1 - q) / n) ** 0.5
    per_position = kept.mean(dim=0)  # (C, H, W), 1000 draws each
    assert (per_position - q).abs().max().item() < 5.5 * (q * (1 - q) / 1000) ** 0.5
    for dim in (0, 1, 2, 3):
        a, b = kept.narrow(dim, 0, kept.shape[dim] - 1), kept.narrow(dim, 1, kept.shape[dim] - 1)
        both = (a * b).mean().item()
        assert abs(both - q * q) < 5 * (q * q * (1 - q * q) / a.numel()) ** 0.5, dim
    # the control: one draw per channel map (nn.Dropout3d) keeps neighbouring pixels together
    per_map = _kept(_seeded(nn.Dropout3d(p), x))[:, :, 0].double()
    a, b = per_map[..., :-1], per_map[..., 1:]
    assert abs((a * b).mean().item() - q * q) > 0.05


@pytest.mark.parametrize("p", [0.25, 0.5, 0.8])
def test_kept_fields_are_scaled_by_one_over_one_minus_p(p, gen):
    x = torch.randn(3, 4, 5, 6, 6, generator=gen, dtype=torch.float64)
    y = EF.field_dropout(x, p, generator=gen)
    kept = _kept(y)
    assert kept.any() and (~kept).any()
    torch.testing.assert_close(y[kept], x[kept] / (1 - p), rtol=1e-15, atol=0)
    assert not torch.allclose(y[kept], x[kept])  # not the unscaled values


def test_eval_mode_p0_and_p1():
    x = torch.randn(2, 3, 4, 5, 5)
    drop = enn.FieldDropout(0.5)
    assert drop.training and not torch.equal(drop(x), x)  # the control: train mode drops
    assert drop.eval()(x) is x
    assert EF.field_dropout(x, 0.5, training=False) is x
    assert enn.FieldDropout(0.0)(x) is x
    leaf = x.clone().requires_grad_(True)
    y = enn.FieldDropout(1.0)(leaf)
    assert torch.equal(y, torch.zeros_like(x))  # as torch: p=1 gives zeros
    y.sum().backward()
    assert leaf.grad is not None and torch.equal(leaf.grad, torch.zeros_like(x))


def test_the_gradient_is_the_mask_times_the_scale(gen):
    p = 0.4
    x = torch.randn(2, 3, 5, 6, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    y = EF.field_dropout(x, p, generator=torch.Generator().manual_seed(5))
    upstream = torch.randn(y.shape, generator=gen, dtype=torch.float64)
    y.backward(upstream)
    assert x.grad is not None
    torch.testing.assert_close(x.grad, upstream * _kept(y) / (1 - p), rtol=1e-15, atol=0)

    def fixed(t):
        return EF.field_dropout(t, p, generator=torch.Generator().manual_seed(5))

    assert torch.autograd.gradcheck(fixed, (x.detach().requires_grad_(True),))


def test_module_equals_functional_inplace_and_non_contiguous(gen):
    x = torch.randn(2, 3, 4, 5, 6, generator=gen)
    y = _seeded(enn.FieldDropout(0.3), x)
    torch.testing.assert_close(y, _seeded(lambda t: EF.field_dropout(t, 0.3), x), rtol=0, atol=0)
    assert not torch.equal(y, _seeded(lambda t: EF.field_dropout(t, 0.3), x, seed=4))
    t = x.clone()
    out = _seeded(enn.FieldDropout(0.3, inplace=True), t)
    assert out is t and torch.equal(t, y)
    xt = x.transpose(3, 4)  # non-contiguous
    torch.testing.assert_close(_seeded(enn.FieldDropout(0.3), xt),
                               _seeded(enn.FieldDropout(0.3), xt.contiguous()), rtol=0, atol=0)


def _direction_kept(y, x, p):
    """Every output field at every pixel is 0 or its input field times 1 / (1 - p)."""
    zero = (y == 0).all(dim=2)
    scaled = torch.isclose(y, x / (1 - p), rtol=1e-12, atol=0).all(dim=2)
    return bool((zero | scaled).all())


def test_harmonic_fields_keep_their_direction(gen):
    """Orders 0..2 (slots a_0, c_1, s_1, c_2, s_2): a field is dropped or kept whole, so a
    vector field keeps its direction. nn.Dropout zeroes c_1 and keeps s_1: it turns it."""
    x = torch.randn(4, 6, 5, 7, 7, generator=gen, dtype=torch.float64)
    assert _direction_kept(EF.field_dropout(x, 0.5, generator=gen), x, 0.5)
    assert not _direction_kept(_seeded(nn.Dropout(0.5), x), x, 0.5)


@pytest.mark.parametrize("group, rep, f", [("so2", "harmonic", 5), ("c8", "regular", 8),
                                           ("oh", "regular", 48)])
def test_the_same_draws_commute_with_every_fiber_action(group, rep, f, gen):
    """The mask is constant on a field's slots, so a fiber action (a 45 degree rotation of
    harmonic coefficients, a permutation of regular slots) commutes with the same draws,
    exactly: the fiber half of the equivariance in distribution. nn.Dropout's mask is not."""
    g = get(group).elements_at([45.0])[0] if group == "so2" else get(group).elements()[3]
    spatial = (5, 5) if group != "oh" else (3, 3, 3)
    x = torch.randn(2, 3, f, *spatial, generator=gen, dtype=torch.float64)
    for drop in (lambda t: EF.field_dropout(t, 0.5), enn.FieldDropout(0.5)):
        torch.testing.assert_close(_seeded(drop, act_fiber(x, g, rep)),
                                   act_fiber(_seeded(drop, x), g, rep))
    err = (_seeded(nn.Dropout(0.5), act_fiber(x, g, rep))
           - act_fiber(_seeded(nn.Dropout(0.5), x), g, rep)).abs().max().item()
    assert err > 0.1  # the control


@pytest.mark.parametrize("group, rep, shape", [
    ("d4", "harmonic", (2, 3, 5, 6, 6)), ("p4m", "regular", (2, 3, 8, 5, 5)),
    ("oh", "regular", (1, 2, 48, 3, 3, 3))])
def test_equivariant_in_distribution(group, rep, shape, gen):
    """For every g: g field_dropout(x) is field_dropout(g x) drawn with the mask g moved
    (``act_spatial`` on the (B, C, 1, ...) mask); an i.i.d. mask moved is an i.i.d. mask (its
    law: tested above), so field_dropout(g x) and g field_dropout(x) have one law. The control:
    nn.Dropout's output moved is no such draw (its mask is not one per field)."""
    p = 0.5
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    for y, ok in ((EF.field_dropout(x, p, generator=gen), True),
                  (_seeded(nn.Dropout(p), x), False)):
        mask = _kept(y).all(dim=2, keepdim=True).double() / (1 - p)
        fits = []
        for g in get(group).elements():
            moved = act_spatial(mask, g)
            fits.append(torch.allclose(act(y, g, rep), act(x, g, rep) * moved, rtol=1e-12,
                                       atol=1e-12))
        assert all(fits) is ok and any(fits) is ok


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_and_autocast(dtype, gen):
    x = torch.randn(2, 3, 4, 5, 5, generator=gen).to(dtype)
    y = EF.field_dropout(x, 0.5, generator=gen)
    kept = _kept(y)
    assert y.dtype == dtype and _fiber_shared(kept) and torch.equal(y[kept], 2 * x[kept])
    with torch.autocast("cpu", dtype=dtype):  # as nn.Dropout: the input's dtype
        assert enn.FieldDropout(0.5)(x.float()).dtype == torch.float32


def test_empty_meta_and_compile(gen):
    drop = enn.FieldDropout(0.5)
    for shape in [(0, 3, 4, 5, 5), (2, 0, 4, 5, 5), (2, 3, 0, 5, 5)]:
        assert drop(torch.randn(shape)).shape == shape
    meta = drop(torch.empty(2, 3, 4, 5, 5, device="meta"))
    assert meta.is_meta and meta.shape == (2, 3, 4, 5, 5)
    torch._dynamo.reset()
    compiled = torch.compile(drop, backend="eager", fullgraph=True)
    x = torch.randn(2, 3, 4, 5, 5, generator=gen) + 10.0
    y = compiled(x)
    assert _fiber_shared(_kept(y)) and _kept(y).any() and (~_kept(y)).any()
    assert torch.equal(compiled.eval()(x), x)


def test_extra_repr_state_dict_and_noise():
    drop = enn.FieldDropout(0.2, inplace=True)
    assert repr(drop) == "FieldDropout(p=0.2, inplace=True)"
    assert isinstance(drop, nn.modules.dropout._DropoutNd) and drop.state_dict() == {}
    assert noise_sources(nn.Sequential(drop)) == ["0: FieldDropout"]
    assert noise_sources(nn.Sequential(drop.eval())) == []
    assert noise_sources(nn.Sequential(enn.FieldDropout(0.0))) == []


@pytest.mark.parametrize("call, err, match", [
    (lambda: enn.FieldDropout(1.5), ValueError,
     r"FieldDropout: p=1\.5 must be a real number in \[0\.0, 1\.0\]; the probability"),
    (lambda: enn.FieldDropout(-0.1), ValueError, r"p=-0\.1 must be a real number in"),
    (lambda: enn.FieldDropout("0.1"), TypeError, r"p='0\.1' must be a real number"),
    (lambda: enn.FieldDropout(0.5, inplace=1), TypeError, r"inplace=1 must be True or False"),
    (lambda: EF.field_dropout(torch.randn(2, 3, 4, 5, 5), 0.5, training=None), TypeError,
     r"training=None must be True or False"),
    (lambda: enn.FieldDropout()(torch.randn(3, 4, 5)), ValueError,
     r"x must be 4-D, 5-D or 6-D.*got a 3-D tensor of shape \(3, 4, 5\); add the batch dim"),
    (lambda: enn.FieldDropout()(torch.randn(1, 2, 3, 2, 2, 2, 2)), ValueError,
     r"got a 7-D tensor of shape \(1, 2, 3, 2, 2, 2, 2\); field dropout takes images"),
    (lambda: enn.FieldDropout()(torch.ones(2, 3, 4, 4, dtype=torch.long)), TypeError,
     r"x has dtype torch\.int64"),
    (lambda: EF.field_dropout(torch.randn(2, 3, 4, 4), generator=3), TypeError,
     r"generator=3 must be a torch\.Generator or None"),
    (lambda: EF.field_dropout(torch.empty(2, 3, 4, 4, device="meta"),
                              generator=torch.Generator()), ValueError,
     r"generator is on cpu, but x is on meta"),
], ids=["p>1", "p<0", "p-str", "inplace-int", "training-None", "3d", "7d", "int64",
        "generator-int", "generator-device"])
def test_bad_input_is_named(call, err, match):
    with pytest.raises(err, match=match):
        call()
