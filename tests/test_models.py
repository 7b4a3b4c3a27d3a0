"""equilayers.models.UNet: shapes, the sizes it takes (and check_grid's word on them),
exactness of every configuration in float32, state_dict, torch.compile, repr. The float64
exactness and the negative controls are in the case table (testing/_cases_models.py)."""

from __future__ import annotations

import warnings

import pytest
import torch
from _unet_common import seeded_unet, warm
from conftest import seeded_rng

import equilayers
from equilayers import check_grid
from equilayers.models import UNet
from equilayers.nn import GroupConv2d, LearnablePolyphasePool2d, LiftingConv2d
from equilayers.testing import equivariance_error, shift_equivariance_error

DOWNS = ("blur", "polyphase", "max", "learned")
ADAPTIVE = ("polyphase", "learned")  # exact for every circular shift


def _net(seed=0, **kw):
    return seeded_unet(UNet, {"group": "p4m", "depth": 2, "width": 2}, seed, **kw)


@pytest.mark.parametrize("down", DOWNS)
@pytest.mark.parametrize("group", ["p4m", "p4", "d1", None])
def test_shapes(group, down, gen):
    net = _net(group=group, down=down, depth=3)
    for h, w in [(8, 8), (16, 24)]:
        x = torch.randn(3, 2, h, w, generator=gen)
        assert net(x).shape == (3, 3, h, w)
    widths = [blk[0].out_channels for blk in net.encoder]
    assert widths == [2, 4, 8, 16] and len(net.decoder) == len(net.up) == len(net.down) == 3


@pytest.mark.parametrize("padding_mode", ["circular", "zeros", "reflect", "replicate"])
@pytest.mark.parametrize("down", DOWNS)
def test_every_configuration_is_exact_in_float32(down, padding_mode, gen):
    """The goal of issue 17: per-pixel error <= 1e-5 in float32 over the grid elements (every
    padding mode) and over circular shifts (circular padding: every shift with polyphase,
    multiples of 2**depth otherwise)."""
    x = torch.randn(2, 2, 16, 16, generator=gen)
    for group in ("p4m", "p4"):
        net = warm(_net(group=group, down=down, padding_mode=padding_mode), x)
        assert equivariance_error(net, x, group) <= 1e-5
        if padding_mode == "circular":
            shifts = [(1, 0), (3, 5), (-2, 7)] if down in ADAPTIVE else [(4, 0), (8, 12)]
            assert shift_equivariance_error(net, x, shifts) <= 1e-5


@pytest.mark.parametrize("down", DOWNS)
def test_check_grid_accepts_the_multiples_of_two_to_the_depth(down):
    net = _net(down=down, depth=3)
    assert check_grid(net, (1, 2, 24, 24), "p4m") == []
    (f,) = check_grid(net, (1, 2, 20, 20), "p4m")
    assert f.problem == "unsupported-size" and f.fix == "use an input size of 24"
    assert check_grid(net, (1, 2, 16, 32), "p4m") == []  # a rectangle: exact (below)


@pytest.mark.parametrize("down", DOWNS)
def test_rectangles_are_exact_and_warn_nothing(down, gen):
    """A quarter turn maps a ``16 x 24`` input to ``24 x 16``, on which every layer's windows
    tile as on the first: every configuration is exact on it in float32, with no warning (each
    group conv used to warn "rotations by 90 degrees need a square input", 5-8 per UNet,
    though the measured error was 1e-15 in float64). The control: a plain U-Net."""
    x = torch.randn(2, 2, 16, 24, generator=gen)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        net = warm(_net(group="p4m", down=down), x)
        assert equivariance_error(net, x, "p4m") <= 1e-5
    plain = warm(_net(group=None, down=down), x)
    assert equivariance_error(plain, x, "p4m") > 1e-2
    zeros = _net(down=down, padding_mode="zeros")
    assert check_grid(zeros, (1, 2, 16, 16), "p4m", shifts=False) == []
    assert {f.problem for f in check_grid(zeros, (1, 2, 16, 16), "p4m")} == {
        "non-circular-padding"}


def test_size_and_channel_errors(gen):
    net = _net(depth=2)
    with pytest.raises(ValueError, match=r"multiples of 2\*\*depth = 4 .* got 10x12. Pad to "
                                         r"12x12"):
        net(torch.randn(1, 2, 10, 12, generator=gen))
    with pytest.raises(ValueError, match=r"multiples of 2\*\*depth = 4 .* got 12x10. Pad to "
                                         r"12x12"):  # the width is checked too
        net(torch.randn(1, 2, 12, 10, generator=gen))
    with pytest.raises(ValueError, match="in_channels=2.* 3 channels"):
        net(torch.randn(1, 3, 8, 8, generator=gen))
    with pytest.raises(ValueError, match="group='so3' has neither regular nor harmonic U-Net "
                                         "fields on images; use a finite 2-D group.*'so2' or "
                                         "'o2'"):
        UNet(1, 2, group="so3")
    with pytest.raises(ValueError, match="group='oh' has neither regular nor harmonic"):
        UNet(1, 2, group="oh")
    with pytest.raises(ValueError,
                       match="down='nearest'.*'blur', 'polyphase', 'max', 'learned'"):
        UNet(1, 2, down="nearest")
    with pytest.raises(ValueError, match="up='bilinear'.*'matched', 'transposed'"):
        UNet(1, 2, up="bilinear")
    for down in ("polyphase", "learned"):
        with pytest.raises(ValueError, match=f"up='transposed'.*undoes down='{down}'.*"
                                             "up='matched'"):
            UNet(1, 2, down=down, up="transposed")
    with pytest.raises(ValueError, match="basis='steerable'.*'pixel', 'harmonic'"):
        UNet(1, 2, basis="steerable")
    with pytest.raises(ValueError, match="basis='harmonic' chooses group-conv filters, but "
                                         "group=None"):
        UNet(1, 2, group=None, basis="harmonic")


@pytest.mark.parametrize("down", DOWNS)
def test_skip_connection_puts_the_encoders_fields_first(down, gen):
    """Each decoder block reads the concatenation of the encoder's map at its level (fields
    ``0 .. widths[level]``) and then the upsampled decoder map (``concat``'s documented
    order, which a trained state dict depends on)."""
    net = _net(down=down, depth=2, width=2).eval()
    seen: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda _m, _i, out, k=f"enc{lv}": seen.setdefault(
        k, out.detach().clone())) for lv, m in enumerate(net.encoder)]
    hooks += [m.register_forward_pre_hook(lambda _m, inp, k=f"dec{lv}": seen.setdefault(
        k, inp[0].detach().clone())) for lv, m in enumerate(net.decoder)]
    with torch.no_grad():
        net(torch.randn(1, 2, 8, 8, generator=gen))
    for h in hooks:
        h.remove()
    for lv in range(2):
        skip, joined = seen[f"enc{lv}"], seen[f"dec{lv}"]
        assert joined.shape[1] == skip.shape[1] + 2 * skip.shape[1]
        assert torch.equal(joined[:, :skip.shape[1]], skip)
        assert not torch.equal(joined[:, -skip.shape[1]:], skip)  # the control


def test_logits_are_the_heads_max_over_the_fiber(gen):
    """The head's group map is pooled by the max over its fiber (the documented
    ``GroupPool``), not the mean; and the blur downsampling pads circularly under
    ``padding_mode="circular"`` and by replication otherwise (never zeros)."""
    net = _net().eval()
    seen = []
    hook = net.head.register_forward_hook(lambda _m, _i, out: seen.append(out.detach()))
    with torch.no_grad():
        out = net(torch.randn(2, 2, 8, 8, generator=gen))
    hook.remove()
    assert torch.equal(out, seen[0].amax(2))
    assert not torch.allclose(out, seen[0].mean(2))  # the control
    assert [d.padding_mode for d in net.down] == ["circular"] * 2
    for mode in ("zeros", "reflect", "replicate"):
        assert [d.padding_mode for d in _net(padding_mode=mode).down] == ["replicate"] * 2


@pytest.mark.parametrize("group", ["p4", None])
def test_reflect_padding_too_deep_for_the_input_is_the_unets_error(group, gen):
    """A depth that halves the input to 1 pixel, where reflect padding cannot pad: the UNet
    says so (the input size, the depth and the fixes: a larger input, a smaller depth) before
    an inner conv refuses its 1x1 map with advice about its own padding_mode."""
    net = UNet(1, 2, group=group, depth=3, width=1, padding_mode="reflect")
    with pytest.raises(ValueError, match=r"^UNet\(depth=3, padding_mode='reflect'\): a 8x8 "
                                         r"input is 1x1 at the deepest level .* use an input "
                                         r"size of 16x16 or larger \(multiples of 8\), or "
                                         r"depth=2 for 8x8 inputs$"):
        net(torch.randn(1, 1, 8, 8, generator=gen))
    assert net(torch.randn(1, 1, 16, 16, generator=gen)).shape == (1, 2, 16, 16)
    assert UNet(1, 2, group=group, depth=2, width=1, padding_mode="reflect")(
        torch.randn(1, 1, 8, 8, generator=gen)).shape == (1, 2, 8, 8)  # the depth it names
    (f,) = check_grid(net, (1, 1, 8, 8), "p4" if group else "c1")
    assert (f.problem, f.fix) == ("unsupported-size", "use an input size of 16")


@pytest.mark.parametrize("down", DOWNS)
def test_state_dict_round_trip(down, gen):
    x = torch.randn(2, 2, 8, 8, generator=gen)
    a, b = warm(_net(0, down=down), x), _net(1, down=down).eval()
    b.load_state_dict(a.state_dict())
    torch.testing.assert_close(a(x), b(x))
    assert not any("filter" in k for k in a.state_dict())  # derived buffers stay out


@pytest.mark.parametrize("down", DOWNS)
def test_device_and_dtype_reach_every_tensor(down, gen):
    """``UNet(dtype=..., device=...)``: every parameter and buffer, the blur pools' and
    upsamplers' filters included (they were built float32 on the CPU whatever was asked)."""
    net = _net(down=down, dtype=torch.float64)
    tensors = dict(net.named_parameters()) | dict(net.named_buffers())
    assert {n: t.dtype for n, t in tensors.items()
            if t.is_floating_point() and t.dtype != torch.float64} == {}
    meta = _net(down=down, device="meta")
    assert [n for n, t in [*meta.named_parameters(), *meta.named_buffers()] if not t.is_meta] == []
    x = torch.randn(2, 2, 8, 8, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        ref = _net(down=down).double().eval()(x)
    net.load_state_dict(_net(down=down).double().state_dict())
    with torch.no_grad():
        torch.testing.assert_close(net.eval()(x), ref, rtol=0, atol=0)


def test_torch_compile_smoke(gen):
    x = torch.randn(2, 2, 8, 8, generator=gen)
    for down in ("polyphase", "blur"):
        net = warm(_net(group="p4", down=down), x)
        compiled = torch.compile(net, backend="eager", fullgraph=True)
        with torch.no_grad():
            torch.testing.assert_close(compiled(x), net(x))


def test_repr_and_public():
    assert equilayers.models.UNet is UNet and "models" in equilayers.__all__
    text = repr(UNet(1, 11, group=None, depth=3, width=8, down="polyphase",
                     padding_mode="zeros"))
    assert "1, 11, group=None, depth=3, width=8, padding_mode='zeros', down='polyphase'" in text
    assert "group='d4'" in repr(UNet(1, 2))
    # a non-default basis beside a non-default nonlinearity (the basis was left out: two
    # models of 235,530 and 157,170 parameters printed alike)
    pixel, harmonic = (UNet(1, 2, depth=1, width=2, basis=b, nonlinearity="elu")
                       for b in ("pixel", "harmonic"))
    assert "nonlinearity='elu', basis='pixel'" in repr(pixel) and repr(pixel) != repr(harmonic)


def test_plain_width_matches_parameters_roughly():
    """A regular field has |G| slots: about 0.8 * width * sqrt(|G|) plain channels cost about
    the same as width fields in the (default) harmonic basis."""
    def n(m):
        return sum(p.numel() for p in m.parameters())
    p4m, plain = n(UNet(1, 11, group="p4m", width=2)), n(UNet(1, 11, group=None, width=5))
    assert 0.8 < plain / p4m < 1.25


# "learned" samples its choice in training (Gumbel noise, straight-through gradient): its
# gradient is by design not the derivative of one loss; test_learned_sampling_trains covers it.
@pytest.mark.parametrize("down", [d for d in DOWNS if d != "learned"])
def test_training_gradient_is_the_loss_derivative(down, gen):
    """What the optimizer gets is right (issue 17, where the group U-Nets trained worse than the
    plain one): in train mode (batch statistics), float64, the parameter gradient of a
    per-pixel cross-entropy equals the central difference of the loss along a random direction
    of all the parameters, and the default dispatch equals the reference's."""
    from equilayers import kernels

    net = _net(down=down, out_channels=5).double().train()
    x = torch.rand(3, 2, 8, 8, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 5, (3, 8, 8), generator=gen)
    params = list(net.parameters())

    def loss():
        return torch.nn.functional.cross_entropy(net(x), y)

    grads = torch.autograd.grad(loss(), params)
    with kernels.use_reference():
        reference = torch.autograd.grad(loss(), params)
    for g, r in zip(grads, reference, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-9, atol=1e-12)
    direction = [torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in params]
    eps = 1e-7
    with torch.no_grad():
        values = []
        for sign in (1, -2):
            for p, d in zip(params, direction, strict=True):
                p.add_(sign * eps * d)
            values.append(loss().item())
        for p, d in zip(params, direction, strict=True):
            p.add_(eps * d)
    numeric = (values[0] - values[1]) / (2 * eps)
    analytic = sum(float((g * d).sum()) for g, d in zip(grads, direction, strict=True))
    assert abs(numeric - analytic) <= 1e-5 * max(1.0, abs(analytic)), (numeric, analytic)


def test_learned_sampling_trains(gen):
    """down="learned": in training every scoring net gets a finite, nonzero gradient through
    the straight-through selection, the choice is sampled (two forwards differ on some
    sample), and evaluation is deterministic; a plain U-Net takes it too."""
    x = torch.randn(6, 2, 16, 16, generator=gen)
    y = torch.randint(0, 3, (6, 16, 16), generator=gen)
    for group in ("p4m", None):
        net = _net(group=group, down="learned").train()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        for pool in net.down:
            assert isinstance(pool, LearnablePolyphasePool2d) and pool.return_index
            grads = [p.grad for p in pool.parameters()]
            assert all(g is not None and g.isfinite().all() for g in grads)
            assert any(g.abs().sum() > 0 for g in grads)
    net = _net(down="learned").train()
    with torch.no_grad():
        assert not torch.equal(net(x), net(x))  # Gumbel noise: the choice is sampled
        net.eval()
        torch.testing.assert_close(net(x), net(x), rtol=0, atol=0)


@pytest.mark.parametrize("basis", ["pixel", "harmonic"])
def test_both_bases_are_exact_and_differ(basis, gen):
    """basis= reaches every 3 x 3 group conv; each basis is exact on the grid (float32); the
    harmonic one (the default) has fewer parameters per field; repr names a non-default one."""
    x = torch.randn(2, 2, 16, 16, generator=gen)
    net = warm(_net(group="p4m", basis=basis), x)
    convs = [m for m in net.modules() if isinstance(m, (GroupConv2d, LiftingConv2d))
             and m.kernel_size == (3, 3)]
    assert convs and all(c.basis == basis for c in convs)
    assert equivariance_error(net, x, "p4m") <= 1e-5
    assert ("basis='pixel'" in repr(net)) == (basis == "pixel")
    n = sum(p.numel() for p in net.parameters())
    default = _net(group="p4m")
    assert default.basis == "harmonic" and _net(group=None).basis is None
    assert (n == sum(p.numel() for p in default.parameters())) == (basis == "harmonic")


@pytest.mark.parametrize("down, bound", [("blur", 0.08), ("max", 0.45)])
def test_blur_and_max_are_approximate_for_other_shifts_within_the_documented_bound(down, bound):
    """The docstring's measured bound for shifts other than multiples of 2**depth (float64, at
    init, 3 seeds), and that the error is real: these two are not exact for such shifts (the
    claim the docstring makes; a fixed subsampling cannot be)."""
    shifts = [(1, 0), (0, 1), (1, 1), (3, 5), (2, 2), (-2, 7)]
    worst = 0.0
    for seed in range(3):
        net = _net(seed, in_channels=2, out_channels=3, width=4, down=down,
                   padding_mode="circular").double()
        x = torch.randn(2, 2, 32, 32, generator=torch.Generator().manual_seed(100 + seed),
                        dtype=torch.float64)
        net = warm(net, x)
        worst = max(worst, float(shift_equivariance_error(net, x, shifts)))
        assert shift_equivariance_error(net, x, [(4, 0), (8, 12)]) < 1e-12
    assert 1e-3 < worst <= bound


@pytest.mark.parametrize("group", ["p4m", None])
@pytest.mark.parametrize("down", ["max", "blur"])
def test_transposed_up_convolutions(group, down, gen):
    """up='transposed': 2 x 2 stride-2 transposed convs halve the fields before the skip
    (the original U-Net's decoder); exact under the grid elements and the shifts by multiples
    of 2**depth (float32 <= 1e-5), not under a 1-pixel shift (the stride's phase);
    check_grid agrees; the repr says so."""
    x = torch.randn(2, 2, 16, 16, generator=gen)
    net = warm(_net(group=group, down=down, up="transposed"), x)
    kinds = {type(m).__name__ for m in net.up}
    assert kinds == ({"GroupConvTranspose2d"} if group else {"ConvTranspose2d"})
    assert [m.out_channels for m in net.up] == [2, 4]
    assert net(x).shape == (2, 3, 16, 16)
    if group:
        assert equivariance_error(net, x, group) <= 1e-5
    assert shift_equivariance_error(net, x, [(4, 0), (8, 12)]) <= 1e-5
    assert shift_equivariance_error(net, x, [(1, 0)]) > 1e-4
    assert check_grid(net, (1, 2, 16, 16), "p4m" if group else "c1") == []
    assert "up='transposed'" in repr(net)


def test_a_learned_unet_takes_a_generator_for_its_training_draws(gen):
    """UNet(down='learned').forward(x, generator=g): reproducible Gumbel draws without the
    global RNG (it raised TypeError: no generator argument); a U-Net without draws refuses
    one by name."""
    from equilayers.models import UNet3d

    with seeded_rng(0):
        net = UNet(1, 2, group="p4", depth=2, width=2, down="learned").double()
    x = torch.randn(2, 1, 8, 8, generator=gen, dtype=torch.float64)
    state = torch.get_rng_state()
    a = net(x, generator=torch.Generator().manual_seed(5))
    b = net(x, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and torch.equal(state, torch.get_rng_state())
    outs = {tuple(net(x, generator=torch.Generator().manual_seed(s)).flatten()[:64].tolist())
            for s in range(8)}
    assert len(outs) > 1  # the draws really vary with the seed (the control)
    with pytest.raises(ValueError, match=r"down='blur'\) draws no random numbers"):
        UNet(1, 2, group="p4", depth=1, width=2)(x.float(), generator=torch.Generator())
    with pytest.raises(TypeError, match="must be a torch.Generator"):
        net(x, generator=5)
    with seeded_rng(0):
        net3 = UNet3d(1, 2, group="c4z", depth=1, width=1, down="learned").double()
    v = torch.randn(1, 1, 4, 4, 4, generator=gen, dtype=torch.float64)
    assert torch.equal(net3(v, generator=torch.Generator().manual_seed(1)),
                       net3(v, generator=torch.Generator().manual_seed(1)))


@pytest.mark.parametrize("group,nd", [(None, 2), ("c1", 2), ("so2", 2), (None, 3), ("so3", 3)])
def test_one_value_per_channel_in_training_is_refused_by_the_unet(group, nd, gen):
    """Training on one sample whose deepest level is 1 x 1: the plain U-Nets raised torch's bare
    "Expected more than 1 value per channel when training" from nn.BatchNorm2d / 3d inside,
    the others a message naming an inner layer. Every configuration now names the U-Net, the
    deepest level and the fix; one sample on a p4 or c4z map (|G| values), two samples, and
    .eval() run (the controls)."""
    from equilayers.models import UNet3d

    make, depth, n = (UNet, 2, 4) if nd == 2 else (UNet3d, 1, 2)
    with seeded_rng(0):
        net = make(1, 3, group=group, depth=depth, width=1).train()
    x = torch.randn(1, 1, *(n,) * nd, generator=gen)
    with pytest.raises(ValueError, match=rf"{make.__name__}\(depth={depth}\): expected more "
                       r"than 1 value per channel when training; .*deepest level, "
                       rf"{'x'.join(['1'] * nd)}.*: train on a batch of more than one sample "
                       r"\(or a larger map\), or call \.eval\(\)"):
        net(x)
    assert net(torch.cat([x, x])).shape == (2, 3, *(n,) * nd)
    assert net.eval()(x).shape == (1, 3, *(n,) * nd)
    with seeded_rng(0):
        regular = make(1, 3, group="p4" if nd == 2 else "c4z", depth=depth, width=1).train()
    assert regular(x).shape == (1, 3, *(n,) * nd)
