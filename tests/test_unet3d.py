"""equilayers.models.UNet3d: shapes, the sizes it takes (and check_grid's word on them),
exactness in float32 over every element of each cube group, boxes, state_dict, device and
dtype, torch.compile, repr, errors, and a training step. The float64 exactness and the negative
controls are in the case table (testing/_cases_models3d.py)."""

from __future__ import annotations

import pytest
import torch
from _unet_common import seeded_unet, warm
from conftest import seeded_rng

import equilayers
from equilayers import check_grid
from equilayers.models import UNet, UNet3d
from equilayers.nn import GroupConv3d, LiftingConv3d
from equilayers.testing import equivariance_error, shift_equivariance_error

DOWNS = ("blur", "polyphase", "max", "learned")
ADAPTIVE = ("polyphase", "learned")  # exact for every circular shift (learned: in eval)


def _net(seed=0, **kw):
    return seeded_unet(UNet3d, {"group": "o", "depth": 2, "width": 1}, seed, **kw)


@pytest.mark.parametrize("down", DOWNS)
@pytest.mark.parametrize("group", ["o", "c4z", None])
def test_shapes(group, down, gen):
    net = _net(group=group, down=down)
    for size in [(4, 4, 4), (8, 4, 12)]:
        x = torch.randn(2, 2, *size, generator=gen)
        assert net(x).shape == (2, 3, *size)
    widths = [blk[0].out_channels for blk in net.encoder]
    assert widths == [1, 2, 4] and len(net.decoder) == len(net.up) == len(net.down) == 2
    conv = LiftingConv3d if group else torch.nn.Conv3d
    assert isinstance(net.encoder[0][0], conv)


@pytest.mark.parametrize("padding_mode", ["circular", "zeros", "reflect", "replicate"])
@pytest.mark.parametrize("down", DOWNS)
def test_every_configuration_is_exact_in_float32(down, padding_mode, gen):
    """Per-voxel error <= 1e-5 in float32 over all 24 rotations (every padding mode) and,
    with circular padding, over circular shifts (every shift with polyphase, multiples of
    2**depth otherwise); the output is not constant (the check could fail)."""
    x = torch.randn(2, 2, 8, 8, 8, generator=gen)
    net = warm(_net(down=down, padding_mode=padding_mode), x)
    with torch.no_grad():
        assert net(x).std() > 1e-3
    assert equivariance_error(net, x, "o") <= 1e-5
    if padding_mode == "circular":
        shifts = ([(1, 0, 0), (0, 3, 5), (-2, 7, 1)] if down in ADAPTIVE
                  else [(4, 0, 0), (0, 4, 4)])
        assert shift_equivariance_error(net, x, shifts) <= 1e-5


@pytest.mark.parametrize("group", ["oh", "d4z"])
def test_reflections_and_boxes(group, gen):
    """The groups with reflections, on a box for d4z (a quarter turn about the depth axis
    swaps H and W only) and a cube for oh; the plain U-Net is the negative control."""
    size = (4, 8, 8) if group == "d4z" else (4, 4, 4)
    x = torch.randn(2, 2, *size, generator=gen, dtype=torch.float64)
    net = warm(_net(group=group, dtype=torch.float64), x)
    assert equivariance_error(net, x, group) < 1e-12
    plain = warm(_net(group=None, width=4, dtype=torch.float64), x)
    assert equivariance_error(plain, x, group) > 1e-3


@pytest.mark.parametrize("down", DOWNS)
def test_check_grid_accepts_the_multiples_of_two_to_the_depth(down):
    net = _net(down=down)
    assert check_grid(net, (1, 2, 8, 8, 8), "o") == []
    assert check_grid(net, (1, 2, 4, 8, 12), "o") == []  # a box: a rotation permutes sizes
    (f,) = check_grid(net, (1, 2, 6, 6, 6), "o")
    assert f.problem == "unsupported-size" and f.fix == "use an input size of 8"
    zeros = _net(down=down, padding_mode="zeros")
    assert check_grid(zeros, (1, 2, 8, 8, 8), "o", shifts=False) == []
    # a c4z model asked about O: the grid law reads its windows (as in 2-D), no bind error;
    # its layers' own group lacks O's rotations (one group-mismatch per layer, no other)
    found = check_grid(_net(down=down, group="c4z"), (1, 2, 8, 8, 8), "o")
    assert found and {f.problem for f in found} == {"group-mismatch"}
    assert "non-circular-padding" in {f.problem for f in check_grid(zeros, (1, 2, 8, 8, 8),
                                                                    "o")}


def test_size_channel_and_argument_errors(gen):
    net = _net()
    with pytest.raises(ValueError, match=r"depth, height and width must be multiples of "
                                         r"2\*\*depth = 4 .* got 8x10x4. Pad to 8x12x4"):
        net(torch.randn(1, 2, 8, 10, 4, generator=gen))
    with pytest.raises(ValueError, match="in_channels=2.* 3 channels"):
        net(torch.randn(1, 3, 4, 4, 4, generator=gen))
    with pytest.raises(ValueError, match=r"\(B, in_channels, D, H, W\)"):
        net(torch.randn(1, 2, 4, 4, generator=gen))
    with pytest.raises(ValueError, match="group='d4' has neither regular nor harmonic U-Net "
                                         "fields on volumes; use a cube group"):
        UNet3d(1, 2, group="p4m")
    with pytest.raises(ValueError, match="down='nearest'.*'blur', 'polyphase', 'max', "
                                         "'learned'"):
        UNet3d(1, 2, down="nearest")
    with pytest.raises(ValueError, match="up='transposed'.*undoes down='polyphase'"):
        UNet3d(1, 2, down="polyphase", up="transposed")
    with pytest.raises(ValueError, match="basis='pixel'.*'voxel', 'harmonic'"):
        UNet3d(1, 2, basis="pixel")
    with pytest.raises(ValueError, match="basis='voxel' chooses group-conv filters, but "
                                         r"group=None builds plain nn.Conv3d"):
        UNet3d(1, 2, group=None, basis="voxel")
    with pytest.raises(ValueError, match="group='o' has neither regular nor harmonic U-Net "
                                         "fields on images"):
        UNet(1, 2, group="o")


@pytest.mark.parametrize("group", ["c4z", None])
def test_reflect_padding_too_deep_for_the_input_is_the_unets_error(group, gen):
    net = UNet3d(1, 2, group=group, depth=2, width=1, padding_mode="reflect")
    with pytest.raises(ValueError, match=r"^UNet3d\(depth=2, padding_mode='reflect'\): a "
                                         r"4x8x8 input is 1x2x2 at the deepest level .* use "
                                         r"an input size of 8x8x8 or larger \(multiples of "
                                         r"4\), or depth=1 for 4x8x8 inputs$"):
        net(torch.randn(1, 1, 4, 8, 8, generator=gen))
    assert net(torch.randn(1, 1, 8, 8, 8, generator=gen)).shape == (1, 2, 8, 8, 8)


@pytest.mark.parametrize("down", DOWNS)
def test_state_dict_device_and_dtype(down, gen):
    x = torch.randn(2, 2, 4, 4, 4, generator=gen, dtype=torch.float64)
    net = _net(down=down, dtype=torch.float64)
    tensors = dict(net.named_parameters()) | dict(net.named_buffers())
    assert {n: t.dtype for n, t in tensors.items()
            if t.is_floating_point() and t.dtype != torch.float64} == {}
    meta = _net(down=down, device="meta")
    assert [n for n, t in [*meta.named_parameters(), *meta.named_buffers()]
            if not t.is_meta] == []
    a, b = warm(_net(0, down=down, dtype=torch.float64), x), _net(1, down=down).double()
    b.load_state_dict(a.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(b.eval()(x), a(x), rtol=0, atol=0)
    assert not any("filter" in k for k in a.state_dict())  # derived buffers stay out


def test_skip_connection_and_head(gen):
    """Each decoder block reads the encoder's map of its level first, then the upsampled
    map; the logits are the head's max over the fiber."""
    net = _net(width=2).eval()
    seen: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda _m, _i, out, k=f"enc{lv}": seen.setdefault(
        k, out.detach().clone())) for lv, m in enumerate(net.encoder)]
    hooks += [m.register_forward_pre_hook(lambda _m, inp, k=f"dec{lv}": seen.setdefault(
        k, inp[0].detach().clone())) for lv, m in enumerate(net.decoder)]
    hooks.append(net.head.register_forward_hook(
        lambda _m, _i, out: seen.setdefault("head", out.detach())))
    with torch.no_grad():
        out = net(torch.randn(1, 2, 4, 4, 4, generator=gen))
    for h in hooks:
        h.remove()
    for lv in range(2):
        skip, joined = seen[f"enc{lv}"], seen[f"dec{lv}"]
        assert joined.shape[1] == 3 * skip.shape[1]
        assert torch.equal(joined[:, :skip.shape[1]], skip)
    assert isinstance(net.head, GroupConv3d) and torch.equal(out, seen["head"].amax(2))


def test_training_step_lowers_the_loss(gen):
    """30 Adam steps on a fixed batch of per-voxel labels lower the loss (the gradient
    reaches every parameter, the batch norms' running statistics move)."""
    x = torch.randn(4, 1, 4, 4, 4, generator=gen)
    labels = (x[:, 0] > 0).long()
    net = _net(in_channels=1, out_channels=2, group="c4z", width=2, down="polyphase")
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net.train()(x), labels)
        loss.backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0]
    assert net.encoder[0][1].running_mean.abs().sum() > 0


def test_learned_sampling_trains_its_scoring_nets(gen):
    """down='learned': the scoring nets of the learnable polyphase pools get gradients in
    training (straight-through) and change after a step; in eval the choice is the argmax and
    the model is exact under the cube's rotations and every shift."""
    x = torch.randn(4, 2, 4, 4, 4, generator=gen)
    net = _net(down="learned", group="c4z", width=2)
    scoring = [p for d in net.down for p in d.parameters()]
    assert scoring and all(p.requires_grad for p in scoring)
    before = [p.detach().clone() for p in scoring]
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with seeded_rng(3):
        net.train()(x).square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in scoring)
    opt.step()
    assert any(not torch.equal(a, p) for a, p in zip(before, scoring, strict=True))
    net.eval()
    xd = x.double()
    net.double()
    assert equivariance_error(net, xd, "c4z") < 1e-12
    assert shift_equivariance_error(net, xd, [(1, 0, 0), (0, 1, 3), (3, 2, 1)]) < 1e-12


def test_torch_compile_smoke(gen):
    x = torch.randn(2, 2, 4, 4, 4, generator=gen)
    for down in ("polyphase", "blur"):
        net = warm(_net(group="c4z", down=down), x)
        compiled = torch.compile(net, backend="eager", fullgraph=True)
        with torch.no_grad():
            torch.testing.assert_close(compiled(x), net(x))


def test_repr_and_public():
    assert equilayers.models.UNet3d is UNet3d
    text = repr(UNet3d(1, 5, group=None, depth=1, width=8, down="polyphase",
                       padding_mode="zeros"))
    assert "1, 5, group=None, depth=1, width=8, padding_mode='zeros', down='polyphase'" in text
    assert "group='o'" in repr(UNet3d(1, 2, depth=1, width=1))
    assert "basis='voxel'" in UNet3d(1, 2, depth=1, width=1, basis="voxel").extra_repr()
    # the default is not repeated (its layers' own reprs say basis='harmonic')
    assert "basis" not in UNet3d(1, 2, depth=1, width=1, basis="harmonic").extra_repr()
    assert UNet3d(1, 2, depth=1, width=1).basis == "harmonic"  # the default


@pytest.mark.parametrize("down", DOWNS)
def test_export_gives_plain_conv3d_with_identical_outputs(down, gen):
    """equilayers.export: every group conv becomes an nn.Conv3d, the group batch norms
    nn.BatchNorm3d; the outputs are identical."""
    x = torch.randn(2, 2, 8, 8, 8, generator=gen)
    net = warm(_net(down=down), x)
    plain = equilayers.export(net)
    kinds = {type(m).__name__ for m in plain.modules()}
    assert "Conv3d" in kinds and not {"GroupConv3d", "LiftingConv3d", "GroupBatchNorm3d"} & kinds
    with torch.no_grad():
        torch.testing.assert_close(plain(x), net(x), rtol=0, atol=0)


@pytest.mark.parametrize("group", ["o", None])
def test_transposed_up_convolutions(group, gen):
    """up='transposed' on volumes: 2 x 2 x 2 transposed convs halving the fields; exact on
    all 24 rotations and on shifts by multiples of 2**depth, not on a 1-voxel shift."""
    x = torch.randn(2, 2, 8, 8, 8, generator=gen)
    net = warm(_net(group=group, down="max", up="transposed", width=2), x)
    assert {type(m).__name__ for m in net.up} == (
        {"GroupConvTranspose3d"} if group else {"ConvTranspose3d"})
    assert net(x).shape == (2, 3, 8, 8, 8)
    if group:
        assert equivariance_error(net, x, group) <= 1e-5
    assert shift_equivariance_error(net, x, [(4, 0, 4), (0, 8, 4)]) <= 1e-5
    assert shift_equivariance_error(net, x, [(1, 0, 0)]) > 1e-4
    assert check_grid(net, (1, 2, 8, 8, 8), "o") == []
