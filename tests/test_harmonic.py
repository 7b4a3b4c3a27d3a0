"""Harmonic-field modules: smoke, shapes, bad input, gradcheck, module == functional."""

import re

import pytest
import torch

from equilayers import functional as EF
from equilayers import nn as enn


def _x(gen, shape=(2, 3, 5, 6, 6)):
    return torch.randn(shape, generator=gen, dtype=torch.float64)


def test_shapes_and_module_equals_functional(gen):
    x = _x(gen)
    nl = enn.NormNonlinearity(3, 2, dtype=torch.float64)
    with torch.no_grad():
        nl.bias.uniform_(-1, 1)
    torch.testing.assert_close(nl(x), EF.norm_nonlinearity(x, nl.bias, 2))
    # order0="norm": order 0 keeps its sign, sign(a) relu(|a| + b); the other orders unchanged
    nn_ = enn.NormNonlinearity(3, 2, dtype=torch.float64, order0="norm")
    with torch.no_grad():
        nn_.bias.copy_(nl.bias)
    y_norm, y_relu = nn_(x), nl(x)
    a, b0 = x[:, :, 0], nl.bias[None, :, 0, None, None]
    torch.testing.assert_close(y_norm[:, :, 0], a.sign() * torch.relu(a.abs() + b0))
    torch.testing.assert_close(y_norm[:, :, 1:], y_relu[:, :, 1:])
    assert (y_norm[:, :, 0] < 0).any() and not (y_relu[:, :, 0] < 0).any()
    assert "order0='norm'" in repr(nn_)
    torch.testing.assert_close(enn.GatedNonlinearity(2)(x), EF.gated_nonlinearity(x, 2))
    y = enn.NormPool()(x)
    assert y.shape == (2, 9, 6, 6)
    torch.testing.assert_close(y, EF.norm_pool(x, 2))
    # NormPool equals the per-order magnitudes
    ref = torch.stack([x[:, :, 0].abs(), x[:, :, 1:3].pow(2).sum(2).sqrt(),
                       x[:, :, 3:5].pow(2).sum(2).sqrt()], 2).reshape(2, 9, 6, 6)
    torch.testing.assert_close(y, ref)
    conv = enn.GroupConv2d(3, 4, 5, stride=2, padding=1, group="so2", max_order=1,
                           in_max_order=2, dtype=torch.float64)
    with pytest.warns(UserWarning, match="stride 2 does not tile the padded height 6"):
        out = conv(x)  # 6x6 is off the exact grid of a stride-2 k5 conv: the layer says so
    assert out.shape == (2, 4, 3, (6 + 2 - 4 - 1) // 2 + 1, (6 + 2 - 4 - 1) // 2 + 1)
    torch.testing.assert_close(out, EF.group_conv2d(x, conv.weight, conv.bias, 2, 1,
                                                    kernel_size=5, group="so2", max_order=1,
                                                    in_max_order=2))


def test_batchnorm_rescales_magnitudes_only(gen):
    x = _x(gen, (8, 3, 5, 6, 6)) + 3.0
    bn = enn.HarmonicBatchNorm(3, 2, dtype=torch.float64)
    y = bn(x)
    assert y[:, :, 0].mean().abs() < 1e-10  # order 0 centred
    ratio = y[:, :, 1:] / x[:, :, 1:]  # orders >= 1: one positive factor per field and order
    assert torch.allclose(ratio[:, :, 0], ratio[:, :, 1]) and (ratio > 0).all()
    assert torch.allclose(y[:, :, 1:3].pow(2).sum(2).mean((0, 2, 3)),
                          torch.full((3,), 2.0, dtype=torch.float64), atol=1e-3)
    bn.eval()
    assert bn(x).shape == x.shape
    assert bn.running_mean.abs().sum() > 0


@pytest.mark.parametrize("group", ["c4", "c5", "c8", "c7"])
def test_fourier_pair_is_exact_inverse(group, gen):
    n = int(group[1:])
    x = _x(gen, (2, 3, n, 5, 5))
    h = EF.regular_to_harmonic(x, group)
    assert h.shape[2] == 2 * (n // 2) + 1
    torch.testing.assert_close(EF.harmonic_to_regular(h, group), x)
    mod = enn.HarmonicToRegular(group)
    torch.testing.assert_close(mod(enn.RegularToHarmonic(group)(x)), x)


def test_noncontiguous(gen):
    x = _x(gen, (2, 3, 6, 6, 5)).transpose(2, 4)  # (2, 3, 5, 6, 6) non-contiguous
    assert not x.is_contiguous()
    torch.testing.assert_close(enn.NormPool()(x), enn.NormPool()(x.contiguous()))
    torch.testing.assert_close(EF.norm_nonlinearity(x, None, 2),
                               EF.norm_nonlinearity(x.contiguous(), None, 2))
    conv = enn.GroupConv2d(3, 2, 3, group="o2", max_order=2, dtype=torch.float64)
    torch.testing.assert_close(conv(x), conv(x.contiguous()))


def test_gradcheck(gen):
    x = _x(gen, (1, 2, 5, 5, 5)).requires_grad_(True)
    b = torch.randn(2, 3, generator=gen, dtype=torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t, bb: EF.norm_nonlinearity(t, bb, 2), (x, b))
    assert torch.autograd.gradcheck(lambda t: EF.norm_pool(t, 2), (x,))
    assert torch.autograd.gradcheck(lambda t: EF.gated_nonlinearity(t, 2), (x,))
    w = torch.randn(2, 2, 1, generator=gen, dtype=torch.float64)
    basis = EF.steerable_basis("so2", "harmonic", "harmonic", 3, in_order=2, out_order=2,
                               dtype=torch.float64)
    w = torch.randn(2, 2, basis.shape[0], generator=gen, dtype=torch.float64)
    w.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t, ww: EF.steerable_conv2d(t, ww, basis), (x, w))
    bn = enn.HarmonicBatchNorm(2, 2, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: bn(t), (x,))


def test_bad_input(gen):
    with pytest.raises(ValueError, match="max_order"):
        enn.NormNonlinearity(3, -1)
    with pytest.raises(ValueError, match="order0='abs' must be"):
        enn.NormNonlinearity(3, 2, order0="abs")
    with pytest.raises(ValueError, match="order0='abs' must be"):
        EF.norm_nonlinearity(_x(gen), None, 2, order0="abs")
    with pytest.raises(ValueError, match=r"eps=0 must be a real number > 0"):
        EF.norm_nonlinearity(_x(gen), None, 2, eps=0)
    with pytest.raises(TypeError, match=r"training=None must be True or False"):
        EF.harmonic_batch_norm(_x(gen), 2, None, None, training=None)
    with pytest.raises(ValueError, match="max_order"):
        enn.NormPool(-2)
    with pytest.raises(ValueError, match=r"2\*max_order\+1"):
        EF.norm_pool(_x(gen, (1, 2, 3, 4, 4)), 2)
    with pytest.raises(ValueError, match="harmonic field"):
        enn.NormPool()(_x(gen, (1, 2, 4, 4, 4)))
    with pytest.raises(ValueError, match="continuous"):
        enn.RegularToHarmonic("so2")
    with pytest.raises(ValueError, match="regular c8"):
        EF.regular_to_harmonic(_x(gen, (1, 2, 7, 4, 4)), "c8")


def test_state_dict_round_trip(gen):
    bn1, bn2 = enn.HarmonicBatchNorm(3, 1), enn.HarmonicBatchNorm(3, 1)
    bn1(torch.randn(4, 3, 3, 5, 5, generator=gen))
    bn2.load_state_dict(bn1.state_dict())
    torch.testing.assert_close(bn1.running_var, bn2.running_var)
    assert int(bn2.num_batches_tracked) == 1
    assert "max_order=1" in repr(bn1)


@pytest.mark.parametrize("make,fields", [
    (lambda: enn.NormNonlinearity(3, 1, order0="norm", threshold=0.3), 3),
    (lambda: enn.GatedNonlinearity(1, gates="first_half"), 6),
    (lambda: enn.HarmonicBatchNorm(3, 1, momentum=None), 3),
    (lambda: enn.NormPool(1), 3),
    (lambda: enn.NormMaxPool(3, 2, 1, per="order"), 3),
    (lambda: enn.FourierNonlinearity("o2", 1, samples=12), 3),
    (lambda: enn.HarmonicToRegular("d3", 1), 3),
])
def test_state_dict_round_trip_every_module(make, fields, gen):
    a, b = make(), make()
    x = torch.randn(4, fields, 3, 5, 5, generator=gen)
    if isinstance(a, enn.NormNonlinearity):
        with torch.no_grad():
            a.bias.uniform_(-1, 1)
    a(x)  # moves batch-norm statistics
    b.load_state_dict(a.state_dict())
    a.eval(), b.eval()
    torch.testing.assert_close(b(x), a(x), rtol=0, atol=0)
    assert repr(a) == repr(b)


def test_norm_pool_gradient_is_finite_at_zero():
    # exact zeros (zero backgrounds, norm-ReLU cut-offs) must not turn the gradient into NaN
    from equilayers.functional import norm_pool

    x = torch.zeros(1, 2, 5, 3, 3, dtype=torch.float64, requires_grad=True)
    with torch.no_grad():
        x[0, 0, :, 1, 1] = torch.tensor([1.0, 3.0, 4.0, 0.0, 0.0], dtype=torch.float64)
    out = norm_pool(x, 2)
    assert out[0, 0, 1, 1] == 1.0 and out[0, 1, 1, 1] == 5.0 and out[0, 2, 1, 1] == 0.0
    out.sum().backward()
    assert torch.isfinite(x.grad).all()
    assert x.grad[0, 1].abs().sum() == 0  # an all-zero field passes no gradient
    torch.testing.assert_close(x.grad[0, 0, 1:3, 1, 1],
                               torch.tensor([0.6, 0.8], dtype=torch.float64))


def test_norm_pool_compiled_gradient_equals_eager(gen):
    """Under torch.compile norm_pool takes its traced path (plain ops and a sqrt whose
    gradient is 0 at 0): its gradient equals the eager one, an all-zero field included."""
    x = _x(gen, (2, 3, 5, 4, 4))
    x[0, 1] = 0.0
    g = torch.randn(2, 9, 4, 4, generator=gen, dtype=x.dtype)
    compiled = torch.compile(lambda t: EF.norm_pool(t, 2), backend="eager", fullgraph=True)
    a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    torch.testing.assert_close(compiled(a), EF.norm_pool(b, 2))
    (ga,), (gb,) = (torch.autograd.grad(compiled(a), a, g),
                    torch.autograd.grad(EF.norm_pool(b, 2), b, g))
    torch.testing.assert_close(ga, gb)
    assert ga[0, 1].abs().sum() == 0


@pytest.mark.parametrize("max_order", [0, 1, 3])
def test_norm_pool_backward_equals_autograd_of_the_formula(gen, max_order):
    """The hand-written backward == autograd through abs / pair sums / sqrt, for every layout,
    with or without grad (the no-grad path skips the autograd node), and differentiates again."""
    f = 2 * max_order + 1

    def formula(t):
        parts = [t[:, :, :1].abs()] + [t[:, :, 2 * m - 1:2 * m + 1].pow(2).sum(2, keepdim=True)
                                       .sqrt() for m in range(1, max_order + 1)]
        return torch.cat(parts, 2).flatten(1, 2)

    base = _x(gen, (2, 3, f, 5, 4))
    for x in [base, base.transpose(-1, -2), base[:, ::2],
              base.contiguous(memory_format=torch.channels_last_3d)]:
        a, b = x.detach().requires_grad_(True), x.detach().requires_grad_(True)
        ya, yb = EF.norm_pool(a, max_order), formula(b)
        torch.testing.assert_close(ya, yb)
        with torch.no_grad():
            torch.testing.assert_close(EF.norm_pool(a, max_order), yb)
        g = torch.randn(yb.shape, generator=gen, dtype=yb.dtype)
        (ga,), (gb,) = torch.autograd.grad(ya, a, g), torch.autograd.grad(yb, b, g)
        torch.testing.assert_close(ga, gb)
        # create_graph=True takes the backward's differentiable branch: the same gradient
        (gc,) = torch.autograd.grad(EF.norm_pool(a, max_order), a, g, create_graph=True)
        torch.testing.assert_close(gc, gb)
    x = _x(gen, (1, 2, f, 3, 3)).requires_grad_(True)
    assert torch.autograd.gradgradcheck(lambda t: EF.norm_pool(t, max_order), (x,))
    # Negative control: the whole-fiber norm (one per field) has a different gradient.
    if max_order:
        (gw,) = torch.autograd.grad(b.pow(2).sum(2).sqrt(), b, g[:, :b.shape[1]])
        assert not torch.allclose(gw, gb)


def test_field_statistics_formula_and_state(gen):
    """``statistics="field"``: one variance per field (the mean over its slots of each slot's
    batch variance), every slot divided by its root, order 0 centred; running buffers from
    the unbiased variance; a checkpoint of one form does not load into the other (shapes)."""
    x = 1 + torch.randn(4, 3, 5, 6, 6, generator=gen, dtype=torch.float64)
    bn = enn.HarmonicBatchNorm(3, 2, statistics="field", dtype=torch.float64)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5, generator=gen)
        bn.bias.uniform_(-1, 1, generator=gen)
    y = bn(x)
    var = x.var(dim=(0, 3, 4), unbiased=False).mean(1)  # (C,)
    mean0 = x[:, :, 0].mean(dim=(0, 2, 3))
    want = x.clone()
    want[:, :, 0] -= mean0.view(1, 3, 1, 1)
    want = want / (var + bn.eps).sqrt().view(1, 3, 1, 1, 1) * bn.weight.view(1, 3, 1, 1, 1)
    want[:, :, 0] += bn.bias.view(1, 3, 1, 1)
    torch.testing.assert_close(y, want)
    n = 4 * 36
    torch.testing.assert_close(bn.running_var, 0.9 + 0.1 * var.view(3, 1) * n / (n - 1))
    assert bn.running_var.shape == bn.weight.shape == (3, 1) and "statistics='field'" in repr(bn)
    per_order = enn.HarmonicBatchNorm(3, 2, dtype=torch.float64)
    assert not torch.allclose(per_order(x), y, atol=1e-3)  # the forms differ
    with pytest.raises(RuntimeError, match="size mismatch"):
        per_order.load_state_dict(bn.state_dict())
    with pytest.raises(ValueError, match="statistics must be one of"):
        EF.harmonic_batch_norm(x, 2, None, None, training=True, statistics="iid")
    with pytest.raises(ValueError, match=r"running_var must have shape \(3, 1\)"):
        EF.harmonic_batch_norm(x, 2, torch.zeros(3), torch.ones(3, 3), statistics="field")


@pytest.mark.parametrize("group,shape,sizes", [(None, (4, 3, 5, 6, 6), [1, 2, 2]),
                                               ("so3", (4, 3, 9, 3, 3, 3), [1, 3, 5])])
def test_order_centred_statistics_formula_and_rotations(group, shape, sizes, gen):
    """``statistics="order_centred"`` (escnn's IIDBatchNorm on separate irreps): each order's
    variance is the mean of its slots' variances about their batch means; the map is
    ``"order"``'s (the same state shapes, orders >= 1 not centred), and equals it on a batch
    whose orders >= 1 have mean 0; off the grid, turning every fiber commutes with it. The
    control: ``"order"`` on a batch with a mean vector differs."""
    from equilayers.groups import get, harmonic_matrix

    x = 1 + torch.randn(shape, generator=gen, dtype=torch.float64)
    kw = dict(group=group, dtype=torch.float64)
    bn = enn.HarmonicBatchNorm(3, 2, statistics="order_centred", **kw)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5, generator=gen)
        bn.bias.uniform_(-1, 1, generator=gen)
    y = bn(x)
    dims = (0, *range(3, x.dim()))
    var = torch.stack([v.mean(1) for v in x.var(dim=dims, unbiased=False).split(sizes, 1)], 1)
    scale = torch.cat([s.expand(3, d) for s, d in zip(((var + bn.eps).rsqrt() * bn.weight).split(
        1, 1), sizes, strict=True)], 1).view(1, 3, -1, *[1] * (x.dim() - 3))
    want = x.clone()
    want[:, :, :1] -= x[:, :, :1].mean(dim=dims, keepdim=True)
    want = want * scale
    want[:, :, :1] += bn.bias.view(1, 3, 1, *[1] * (x.dim() - 3))
    torch.testing.assert_close(y, want)
    assert bn.running_var.shape == bn.weight.shape == (3, 3)
    assert "statistics='order_centred'" in repr(bn)
    order = enn.HarmonicBatchNorm(3, 2, **kw)
    order.load_state_dict(bn.state_dict())  # the same state
    assert not torch.allclose(order.train()(x), y, atol=1e-3)  # the control: a mean vector
    z = torch.cat([x, -x], 0)  # every slot's batch mean 0 but order 0's, which both centre
    z[:, :, 0] = torch.cat([x[:, :, 0], x[:, :, 0]], 0)
    torch.testing.assert_close(order(z), bn(z))
    # any rotation of the fiber commutes (training mode, statistics of the batch)
    g = (get("o2").elements_at([37.0], reflection=True)[0] if group is None
         else get("so3").from_axis_angle((0.3, -0.5, 0.8), 1.1))
    rho = harmonic_matrix(g, 2).to(torch.float64)

    def act(t):
        return torch.einsum("ij,bcj...->bci...", rho, t)

    torch.testing.assert_close(bn(act(x)), act(bn(x)))


@pytest.mark.parametrize("angle,flip", [(37.0, False), (115.0, True)])
def test_field_statistics_commute_with_any_fiber_rotation(angle, flip, gen):
    """Off the grid, on the fiber alone (no spatial interpolation, whose zero-filled corners
    would change any batch statistic): rotating every fiber by ``g`` before the field batch
    norm equals rotating after it (training mode: the batch statistics are invariant). The
    control: each slot divided by its own variance (a pair's variances not pooled) fails."""
    from equilayers.groups import get, harmonic_matrix

    g = get("o2").elements_at([angle], reflection=flip)[0]
    rho = harmonic_matrix(g, 2)

    def act(t):
        return torch.einsum("ij,bcjyx->bciyx", rho, t)

    x = 1 + torch.randn(4, 3, 5, 6, 6, generator=gen, dtype=torch.float64)
    bn = enn.HarmonicBatchNorm(3, 2, statistics="field", track_running_stats=False,
                               dtype=torch.float64)
    torch.testing.assert_close(bn(act(x)), act(bn(x)))

    def per_slot(t):
        return t / t.var(dim=(0, 3, 4), keepdim=True).sqrt()

    assert not torch.allclose(per_slot(act(x)), act(per_slot(x)), atol=1e-3)


_PLANAR = (2, 4, 5, 6, 6)  # orders 0..2
_VOLUME = (2, 4, 9, 3, 3, 3)  # SO(3) orders 0..2


_MODULES = [
    (lambda m: enn.HarmonicBatchNorm(4, m), "HarmonicBatchNorm(", _PLANAR),
    (lambda m: enn.NormNonlinearity(4, m), "NormNonlinearity(", _PLANAR),
    (lambda m: enn.GatedNonlinearity(m), "GatedNonlinearity(", _PLANAR),
    (lambda m: enn.GatedNonlinearity(m, gates="first_half"), "GatedNonlinearity(", _PLANAR),
    (lambda m: enn.NormPool(m), "NormPool(", _PLANAR),
    (lambda m: enn.NormMaxPool(2, max_order=m), "NormMaxPool(", _PLANAR),
    (lambda m: enn.FourierNonlinearity("so2", m), "FourierNonlinearity(group='so2', ", _PLANAR),
    (lambda m: enn.FourierNonlinearity("c8", m), "FourierNonlinearity(group='c8', ", _PLANAR),
    (lambda m: enn.HarmonicToRegular("c8", m), "HarmonicToRegular(group='c8', ", _PLANAR),
    (lambda m: enn.NormNonlinearity(4, m, group="so2"), "NormNonlinearity(group='so2', ",
     _PLANAR),
    (lambda m: enn.HarmonicBatchNorm(4, m, group="so3"), "HarmonicBatchNorm(group='so3', ",
     _VOLUME),
    (lambda m: enn.NormNonlinearity(4, m, group="so3"), "NormNonlinearity(group='so3', ",
     _VOLUME),
    (lambda m: enn.GatedNonlinearity(m, group="o3"), "GatedNonlinearity(group='o3', ", _VOLUME),
    (lambda m: enn.NormPool(m, group="so3"), "NormPool(group='so3', ", _VOLUME),
    (lambda m: enn.FourierNonlinearity("so3", m), "FourierNonlinearity(group='so3', ", _VOLUME),
]


@pytest.mark.parametrize("build,label,shape", _MODULES)
def test_fiber_mismatch_names_the_module_and_the_fix(gen, build, label, shape):
    """A fiber of other orders than the module's is refused by the module (not by the
    functional it calls), with the order the input has; the module built with that order
    takes it (the control)."""
    x = torch.randn(shape, generator=gen)
    slots = ("4 slots (orders 0..1, (max_order+1)^2)" if len(shape) == 6
             else "3 slots (orders 0..1)")
    want = (f"{label}max_order=1) expects a fiber of {slots} in dim 2; got F={shape[2]} "
            f"(orders 0..2), shape {shape}: build it with max_order=2")
    with pytest.raises(ValueError, match="^" + re.escape(want) + "$"):
        build(1)(x)
    assert torch.isfinite(build(2)(x)).all()


@pytest.mark.parametrize("build,label,shape", _MODULES)
def test_wrong_rank_names_the_module_and_the_layout(gen, build, label, shape):
    """An input without the fiber axis, one with an extra axis and a non-tensor are refused
    by the module, with the layout it expects (not by its functional, which named itself,
    ``gated_nonlinearity``, or ``x``); the right rank passes (the control)."""
    x = torch.randn(shape, generator=gen)
    if len(shape) == 6:
        layout = "6-D harmonic field (B, C, (M+1)^2, D, H, W) = (B, C, 9, D, H, W)"
    else:
        layout = "5-D harmonic field (B, C, 2M+1, H, W) = (B, C, 5, H, W)"
    image = x[:, :, 0]  # no fiber axis
    want = (f"{label}max_order=2) expects a {layout}; got a {image.dim()}-D tensor of shape "
            f"{tuple(image.shape)}")
    want += (" (a volume (B, C, D, H, W) has no fiber axis: lift it first with SteerableConv3d("
             if len(shape) == 6 else
             " (an image (B, C, H, W) has no fiber axis: lift it first with LiftingConv2d(")
    with pytest.raises(ValueError, match="^" + re.escape(want)):
        build(2)(image)
    with pytest.raises(ValueError, match="^" + re.escape(f"{label}max_order=2) expects a "
                                                         f"{layout}; got a {len(shape) + 1}-D")):
        build(2)(x[..., None])
    with pytest.raises(TypeError, match="^" + re.escape(f"{label}max_order=2) expects a "
                                                        f"{layout[4:]}; got list")):
        build(2)(x.tolist())
    assert torch.isfinite(build(2)(x)).all()


@pytest.mark.parametrize("group,shape", [(None, (2, 3, 3, 4, 4)), ("so3", (2, 3, 4, 2, 2, 2))])
def test_first_half_gates_name_the_module_for_an_odd_field_count(gen, group, shape):
    """GatedNonlinearity(gates="first_half") on an odd number of fields names itself and the
    fix (the message named ``gated_nonlinearity``); the functional still names itself, and an
    even count passes (the controls)."""
    module = enn.GatedNonlinearity(1, gates="first_half", group=group)
    x = torch.randn(shape, generator=gen)
    label = "GatedNonlinearity(" + ("" if group is None else f"group={group!r}, ")
    with pytest.raises(ValueError, match="^" + re.escape(
            f"{label}max_order=1, gates='first_half') expects an even number of fields in dim 1 "
            f"(C gate fields, then the C gated fields); got C=3 in shape {shape}: give it 2C "
            "fields")):
        module(x)
    with pytest.raises(ValueError, match=r"^gated_nonlinearity.*even number"):
        EF.gated_nonlinearity(x, 1, gates="first_half", group=group)
    assert module(x[:, :2]).shape == (2, 1, *shape[2:])


def test_wrong_rank_of_regular_fields_names_the_module():
    """RegularToHarmonic names itself and the regular layout for an image (it named
    ``regular_to_harmonic``), with the lifting conv that makes regular fields."""
    with pytest.raises(ValueError, match=r"^RegularToHarmonic\(group='c8', max_order=4\) "
                                         r"expects a 5-D regular c8 field \(B, C, \|G\|, H, "
                                         r"W\) = \(B, C, 8, H, W\); got a 4-D tensor .*"
                                         r"LiftingConv2d\(\.\.\., group='c8'\)\)$"):
        enn.RegularToHarmonic("c8")(torch.randn(2, 3, 6, 6))
    assert enn.RegularToHarmonic("c8")(torch.randn(2, 3, 8, 6, 6)).shape == (2, 3, 9, 6, 6)


def test_fiber_mismatch_without_a_harmonic_order_and_regular_fibers(gen):
    """An even planar fiber fits no order: the pools that read the order from the input say
    so by name; RegularToHarmonic names the regular fiber it expects."""
    x = torch.randn(2, 3, 4, 6, 6, generator=gen)
    for module, name in ((enn.NormPool(), "NormPool()"), (enn.NormMaxPool(2), "NormMaxPool()")):
        with pytest.raises(ValueError, match=rf"^{name[:-2]}\(\) expects a harmonic fiber of "
                                             r"2\*max_order\+1 slots in dim 2; got F=4, which no "
                                             r"order gives.*RegularToHarmonic first"):
            module(x)
    with pytest.raises(ValueError, match=r"^RegularToHarmonic\(group='c8', max_order=4\) "
                                         r"expects a regular c8 fiber of \|G\|=8 slots in dim 2; "
                                         r"got F=4, shape \(2, 3, 4, 6, 6\): build it with the "
                                         r"group whose regular fields the input holds"):
        enn.RegularToHarmonic("c8")(x)
    assert enn.RegularToHarmonic("c4")(x).shape == (2, 3, 5, 6, 6)  # the control


@pytest.mark.parametrize("group", ["c8", "c7", "d6"])
def test_fourier_maps_refuse_orders_above_n_over_2(gen, group):
    """Orders above N // 2 alias on N rotations (c8 at max_order=5: the round trip was off by
    0.77): the modules and their functional twins refuse them by name with the fix; N // 2
    itself (the control) builds, and for C_N inverts exactly."""
    n = int(group[1:])
    top = n // 2
    fix = rf"max_order={top + 1} is too high for {group}: .*use max_order <= {top} \(N // 2\)$"
    x = _x(gen, (2, 3, n * (2 if group[0] == "d" else 1), 4, 4))
    h = _x(gen, (2, 3, 2 * top + 3, 4, 4))
    for name, make in (("RegularToHarmonic", lambda: enn.RegularToHarmonic(group, top + 1)),
                       ("HarmonicToRegular", lambda: enn.HarmonicToRegular(group, top + 1)),
                       ("regular_to_harmonic", lambda: EF.regular_to_harmonic(x, group, top + 1)),
                       ("harmonic_to_regular", lambda: EF.harmonic_to_regular(h, group, top + 1)),
                       ("fourier_matrix", lambda: EF.fourier_matrix(group, top + 1))):
        with pytest.raises(ValueError, match=rf"^{name}: {fix}"):
            make()
    there = enn.RegularToHarmonic(group, top).double()
    back = enn.HarmonicToRegular(group, top).double()
    y = back(there(x))
    if group[0] == "c":
        torch.testing.assert_close(y, x)
        torch.testing.assert_close(EF.harmonic_to_regular(EF.regular_to_harmonic(x, group, top),
                                                          group, top), x)
    else:  # D_N: an equivariant projection, idempotent
        torch.testing.assert_close(back(there(y)), y)
    assert EF.fourier_matrix(group, top).shape == (x.shape[2], 2 * top + 1)


# --- dtypes: the one rule of the weighted ops (_checks.check_dtype_match) ------------------

@pytest.mark.parametrize("group,shape", [(None, (2, 3, 5, 4, 4)), ("so3", (2, 3, 9, 2, 2, 2))])
def test_norm_nonlinearity_refuses_a_bias_of_another_dtype(gen, group, shape):
    """A float64 bias with float32 x (or the reverse, or float16 x outside autocast) was
    silently promoted (a float64 output); now the functional names both dtypes and the fix,
    as every weighted op does. The same dtypes, and autocast's mixes, still run (controls)."""
    x = torch.randn(shape, generator=gen)
    bias = torch.zeros(3, 3, dtype=torch.float64)
    for xx, b, want in ((x, bias, r"x has dtype torch\.float32, but bias is torch\.float64; "
                                  r"convert the input \(x\.double\(\)\) or the bias "
                                  r"\(bias\.float\(\)\)$"),
                        (x.double(), bias.float(), r"x has dtype torch\.float64, but bias is "
                                                   r"torch\.float32"),
                        (x.half(), bias.float(), r".*bias is torch\.float32.*or run it under "
                                                 r"torch\.autocast$")):
        with pytest.raises(TypeError, match=r"^norm_nonlinearity: " + want):
            EF.norm_nonlinearity(xx, b, 2, group=group)
    assert EF.norm_nonlinearity(x.double(), bias, 2, group=group).dtype == torch.float64
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert EF.norm_nonlinearity(x.bfloat16(), bias.float(), 2, group=group).isfinite().all()
        with pytest.raises(TypeError, match="float64"):  # autocast never casts float64
            EF.norm_nonlinearity(x, bias, 2, group=group)


@pytest.mark.parametrize("name", ["weight", "bias", "running_mean", "running_var"])
def test_harmonic_batch_norm_refuses_parameters_of_another_dtype(gen, name):
    """A float64 weight, bias or running statistic with float32 x was cast to float32 (and a
    float32 one with float64 x up to float64) without a word; now named, as torch's batch
    norm refuses it. float16/bfloat16 x with float32 ones is batch norm's mixed precision and
    runs (the control), as do matching dtypes."""
    x = torch.randn(4, 3, 5, 3, 3, generator=gen)
    state = {"running_mean": torch.zeros(3), "running_var": torch.ones(3, 3),
             "weight": torch.ones(3, 3), "bias": torch.zeros(3)}
    y = EF.harmonic_batch_norm(x, 2, **state, training=True)
    bad = {**state, name: state[name].double()}
    with pytest.raises(TypeError, match=rf"^harmonic_batch_norm: x has dtype torch\.float32, "
                                        rf"but {name} is torch\.float64; convert the input "
                                        rf"\(x\.double\(\)\) or the {name} \({name}\.float\(\)\)"):
        EF.harmonic_batch_norm(x, 2, **bad, training=True)
    double = {k: v.double() for k, v in state.items()}
    with pytest.raises(TypeError, match=rf"x has dtype torch\.float64, but {name} is "):
        EF.harmonic_batch_norm(x.double(), 2, **{**double, name: state[name]}, training=True)
    # y was computed in float32: compared to float32's tolerance
    torch.testing.assert_close(EF.harmonic_batch_norm(x.double(), 2, **double, training=True),
                               y.double(), rtol=1.3e-6, atol=1e-5)
    assert EF.harmonic_batch_norm(x.bfloat16(), 2, **state, training=True).dtype == torch.bfloat16


@pytest.mark.parametrize("build,shape", [
    (lambda: enn.NormNonlinearity(3, 2), (2, 3, 5, 4, 4)),
    (lambda: enn.NormNonlinearity(3, 2, order0="norm", bias_form="exp"), (2, 3, 5, 4, 4)),
    (lambda: enn.HarmonicBatchNorm(3, 2), (2, 3, 5, 4, 4)),
    (lambda: enn.HarmonicBatchNorm(3, 2, affine=False), (2, 3, 5, 4, 4)),
    (lambda: enn.NormNonlinearity(3, 1, group="so3"), (2, 3, 4, 2, 2, 2)),
    (lambda: enn.HarmonicBatchNorm(3, 1, group="so3"), (2, 3, 4, 2, 2, 2)),
])
def test_modules_name_themselves_for_a_dtype_mismatch_and_run_under_autocast(gen, build, shape):
    """float64 x into a float32 module was promoted silently; now the module names itself
    and both conversions. Controls: the converted module takes it, and under CPU autocast
    (bfloat16) float32 and bfloat16 inputs run, as before."""
    module, x = build(), torch.randn(shape, generator=gen)
    name = type(module).__name__
    with pytest.raises(TypeError, match=rf"^{name}: x has dtype torch\.float64, but the "
                                        r"module's parameters are torch\.float32; convert the "
                                        r"input \(x\.float\(\)\) or the module "
                                        r"\(module\.double\(\)\)$"):
        module(x.double())
    assert module.double()(x.double()).dtype == torch.float64
    module.float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for xx in (x, x.bfloat16()):
            assert module(xx).isfinite().all()


_REDUCING = [
    (lambda f: enn.NormNonlinearity(2, 2, function=f), (2, 2, 5, 3, 3)),
    (lambda f: enn.GatedNonlinearity(2, function=f), (2, 2, 5, 3, 3)),
    (lambda f: enn.FourierNonlinearity("so2", 2, function=f), (2, 2, 5, 3, 3)),
    (lambda f: enn.NormNonlinearity(2, 1, group="so3", function=f), (2, 2, 4, 3, 3, 3)),
    (lambda f: enn.GatedNonlinearity(1, group="o3", function=f), (2, 2, 4, 3, 3, 3)),
    (lambda f: enn.FourierNonlinearity("so3", 1, function=f), (2, 2, 4, 3, 3, 3)),
]


@pytest.mark.parametrize("build,shape", _REDUCING)
def test_a_function_that_changes_the_shape_is_refused(gen, build, shape):
    """A ``function`` that reduces (or returns no tensor) is named with the shape it returned,
    where it had given a wrongly shaped output or failed deep in torch; an elementwise one of
    the user's (not torch's ReLU, which the fast paths take as it is) runs (the control)."""
    x = torch.randn(shape, generator=gen)
    for bad, got in ((lambda z: z.sum(-1), "returned shape"), (lambda z: 1.0, "returned a float")):
        with pytest.raises(ValueError, match=r"function must be elementwise .*" + got):
            build(bad)(x)
    assert build(lambda z: torch.tanh(z))(x).shape[2:] == x.shape[2:]
