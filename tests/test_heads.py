"""InvariantHead and its functional twin."""

import pytest
import torch
from conftest import seeded_rng

from equilayers.functional import fiber_pool, fiber_pose, invariant_head, spatial_pool
from equilayers.groups import act, circular_shift, get
from equilayers.nn import InvariantHead
from equilayers.testing import assert_invariant, invariance_error
from equilayers.testing._cases_heads import ToyLifting, toy_invariant_net


def test_smoke_and_shape(gen):
    head = InvariantHead(6, 10, group="p4m")
    x = torch.randn(3, 6, 8, 9, 7, generator=gen)
    assert head(x).shape == (3, 10)
    assert head(torch.randn(3, 6, 9, 7, generator=gen)).shape == (3, 10)  # trivial input
    assert "group='d4'" in repr(head)
    assert "pool='mean'" in repr(InvariantHead(2, 3, pool="mean"))


@pytest.mark.parametrize("group", ["p4", "p4m", "d1", "c2"])
@pytest.mark.parametrize("pool,spatial", [("max", "mean"), ("mean", "max")])
def test_exactly_invariant(gen, group, pool, spatial):
    order = get(group).order
    head = InvariantHead(3, 4, group=group, pool=pool, spatial=spatial, dtype=torch.float64)
    x = torch.randn(2, 3, order, 7, 7, generator=gen, dtype=torch.float64)
    assert_invariant(head, x, group)
    y = head(x)
    for s in [(1, 0), (0, 3), (5, 2)]:
        torch.testing.assert_close(head(circular_shift(x, s)), y, rtol=0, atol=1e-13)


def test_toy_backbone_logits_exactly_invariant(gen):
    net = toy_invariant_net("p4m", in_channels=2, width=4)
    x = torch.randn(2, 2, 10, 10, generator=gen, dtype=torch.float64)
    assert invariance_error(net, x, "p4m") < 1e-13
    y = net(x)
    for s in [(1, 0), (3, 7)]:
        torch.testing.assert_close(net(circular_shift(x, s)), y, rtol=0, atol=1e-12)
    # the same net with zero padding is not shift invariant (the control of the claim)
    with seeded_rng(0):
        bad = toy_invariant_net("p4m", padding_mode="zeros", spatial="max")
    assert (bad(circular_shift(x, (3, 7))) - bad(x)).abs().max() > 1e-6


@pytest.mark.parametrize("group", ["p4", "p4m"])
def test_pose_is_equivariant(gen, group):
    grp = get(group)
    lift = ToyLifting(2, 3, 3, group)
    x = torch.randn(5, 2, 9, 9, generator=gen, dtype=torch.float64)
    head = InvariantHead(3, 4, group=group, return_pose=True, dtype=torch.float64)
    feats = lift(x)
    logits, pose = head(feats)
    assert pose.dtype == torch.long and pose.shape == (5,)
    els = grp.elements()
    for g in els:
        logits_g, pose_g = head(act(feats, g, "regular"))
        torch.testing.assert_close(logits_g, logits, rtol=0, atol=1e-12)
        expect = torch.tensor([(g * els[p]).index for p in pose.tolist()])
        assert torch.equal(pose_g, expect), (g, pose, pose_g)
        # the lifting commutes: poses of g.x follow g too
        assert torch.equal(head(lift(act(x, g, "trivial")))[1], expect)
    # poses vary across samples (the test is not vacuous)
    assert len(set(pose.tolist())) > 1


def test_module_equals_functional(gen):
    head = InvariantHead(3, 4, group="p4", pool="mean", spatial="max")
    x = torch.randn(2, 3, 4, 6, 6, generator=gen)
    ref = invariant_head(x, head.weight, head.bias, group="p4", pool="mean", spatial="max")
    torch.testing.assert_close(head(x), ref)
    torch.testing.assert_close(ref, torch.nn.functional.linear(
        spatial_pool(fiber_pool(x, "mean"), "max"), head.weight, head.bias))
    assert fiber_pose(x, "p4").shape == (2,)


def test_bad_input(gen):
    with pytest.raises(ValueError, match="pool='avg'"):
        InvariantHead(3, 4, pool="avg")
    with pytest.raises(ValueError, match="spatial='sum'"):
        InvariantHead(3, 4, spatial="sum")
    with pytest.raises(ValueError, match="in_channels=0 must be an integer >= 1"):
        InvariantHead(0, 4)
    with pytest.raises(ValueError, match="so2"):
        InvariantHead(3, 4, group="so2")
    head = InvariantHead(3, 4, group="p4m")
    with pytest.raises(ValueError, match="F=4"):
        head(torch.randn(1, 3, 4, 5, 5, generator=gen))
    with pytest.raises(ValueError, match="InvariantHead: x has C=2 channels"):
        head(torch.randn(1, 2, 8, 5, 5, generator=gen))
    with pytest.raises(ValueError, match=r"InvariantHead: x must be 4-D or 5-D.*shape \(1, 3, 5\)"):
        head(torch.randn(1, 3, 5, generator=gen))
    with pytest.raises(TypeError, match="InvariantHead: x must be a tensor"):
        head([1.0])
    # the functional names itself (the module's messages above are the module's own)
    with pytest.raises(ValueError, match=r"invariant_head: x must be 4-D or 5-D"):
        invariant_head(torch.randn(1, 3, 5, generator=gen), head.weight, head.bias, group="p4m")
    with pytest.raises(ValueError, match="return_pose=True needs a regular"):
        InvariantHead(3, 4, return_pose=True)(torch.randn(1, 3, 5, 5, generator=gen))


def test_non_contiguous(gen):
    head = InvariantHead(3, 4, group="p4", dtype=torch.float64)
    x = torch.randn(2, 4, 3, 6, 6, generator=gen, dtype=torch.float64).transpose(1, 2)
    assert not x.is_contiguous()
    torch.testing.assert_close(head(x), head(x.contiguous()))


def test_gradcheck(gen):
    head = InvariantHead(2, 3, group="p4", pool="mean", dtype=torch.float64)
    x = torch.randn(1, 2, 4, 3, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    w = head.weight.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda a, b: invariant_head(a, b, None, group="p4", pool="mean"), (x, w))


def test_state_dict_round_trip(gen):
    a = InvariantHead(3, 4, group="p4m")
    b = InvariantHead(3, 4, group="p4m")
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 8, 5, 5, generator=gen)
    torch.testing.assert_close(a(x), b(x))
    assert set(a.state_dict()) == {"weight", "bias"}


def test_compile_fullgraph(gen):
    head = InvariantHead(3, 4, group="p4")
    x = torch.randn(2, 3, 4, 6, 6, generator=gen)
    compiled = torch.compile(head, fullgraph=True, backend="eager")
    torch.testing.assert_close(compiled(x), head(x))


def test_real_group_conv_backbone_logits_exactly_invariant(gen):
    from torch import nn

    from equilayers.nn import GroupConv2d, LiftingConv2d

    net = nn.Sequential(
        LiftingConv2d(2, 4, 3, padding=1, padding_mode="circular", group="p4m"), nn.ReLU(),
        GroupConv2d(4, 4, 3, stride=2, padding=1, padding_mode="circular", group="p4m"),
        nn.ReLU(), InvariantHead(4, 5, group="p4m")).double()
    # rotations need an odd size under stride 2 ((9 + 2 - 3) % 2 == 0) ...
    x = torch.randn(2, 2, 9, 9, generator=gen, dtype=torch.float64)
    assert invariance_error(net, x, "p4m") < 1e-12
    # ... circular shifts by multiples of the stride need a size divisible by it
    x = torch.randn(2, 2, 8, 8, generator=gen, dtype=torch.float64)
    with pytest.warns(UserWarning, match=r"GroupConv2d \(d4\) is not exactly equivariant on "
                      "input of size 8x8"):  # (for rotations; shifts are the point here)
        y = net(x)
    for s in [(2, 0), (4, 6)]:
        torch.testing.assert_close(net(circular_shift(x, s)), y, rtol=0, atol=1e-12)
    assert (net(circular_shift(x, (1, 0))) - y).abs().max() > 1e-6  # odd shifts alias


@pytest.mark.parametrize("pool", ["max", "mean"])
@pytest.mark.parametrize("spatial", ["max", "mean"])
def test_pools_are_the_named_reductions(gen, pool, spatial):
    """Each choice is the reduction it names, value for value: ``fiber_pool`` is amax / mean
    over the fiber, ``spatial_pool`` amax / mean over space (volumes too), and the head is
    ``linear`` of the two. Invariance cannot tell max from mean (both are symmetric), so the
    invariance tests passed with either. The control: max and mean differ on these inputs."""
    x = torch.randn(2, 3, 8, 5, 6, generator=gen, dtype=torch.float64)
    w = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    b = torch.randn(4, generator=gen, dtype=torch.float64)
    fib = {"max": lambda t: t.amax(2), "mean": lambda t: t.mean(2)}[pool]
    spa = {"max": lambda t: t.amax((2, 3)), "mean": lambda t: t.mean((2, 3))}[spatial]
    torch.testing.assert_close(fiber_pool(x, pool), fib(x), rtol=0, atol=0)
    torch.testing.assert_close(spatial_pool(x[:, :, 0], spatial), spa(x[:, :, 0]),
                               rtol=0, atol=0)
    vol = x[:, :, :4]
    want3 = vol.amax((2, 3, 4)) if spatial == "max" else vol.mean((2, 3, 4))
    torch.testing.assert_close(spatial_pool(vol, spatial), want3, rtol=0, atol=0)
    want = torch.nn.functional.linear(spa(fib(x)), w, b)
    torch.testing.assert_close(invariant_head(x, w, b, group="p4m", pool=pool,
                                              spatial=spatial), want, rtol=0, atol=1e-14)
    assert not torch.allclose(x.amax((3, 4)), x.mean((3, 4)))  # control


def test_functional_head_refuses_a_mismatch_by_its_own_name(gen):
    """invariant_head checks what the module checks, in its own name (not torch's linear
    errors, nor a silent pool over a fiber of the wrong size); control: the right input runs."""
    w = torch.randn(4, 3, generator=gen)
    with pytest.raises(ValueError, match=r"invariant_head: x has C=2 channels.*in_channels=3"):
        invariant_head(torch.randn(1, 2, 8, 5, 5, generator=gen), w, None, group="p4m")
    with pytest.raises(TypeError, match="invariant_head: x has dtype torch.float64, but weight"):
        invariant_head(torch.randn(1, 3, 8, 5, 5, generator=gen, dtype=torch.float64), w,
                       group="p4m")
    with pytest.raises(ValueError, match=r"invariant_head: a regular fiber of d4 "
                                         r"\(group='p4m'\) has \|G\|=8"):
        invariant_head(torch.randn(1, 3, 4, 5, 5, generator=gen), w, group="p4m")
    assert invariant_head(torch.randn(1, 3, 8, 5, 5, generator=gen), w, group="p4m").shape == (
        1, 4)


def test_module_init_repr_and_messages():
    """The nn.Linear initialisation (weight and bias within 1/sqrt(C), drawn up to it), a
    repr that names each non-default argument (control: the defaults are left out), and the
    module names itself in a dtype mismatch (not the functional it calls)."""
    with seeded_rng(0):
        head = InvariantHead(16, 256, group="p4m", dtype=torch.float64)
    for p in (head.weight, head.bias):
        assert 0.9 / 4 < p.abs().max() <= 1 / 4
    text = repr(InvariantHead(2, 3, pool="mean", spatial="max", return_pose=True, bias=False))
    for part in ("pool='mean'", "spatial='max'", "return_pose=True", "bias=False"):
        assert part in text
    assert repr(InvariantHead(2, 3)) == "InvariantHead(2, 3, group='c4')"
    with pytest.raises(TypeError, match=r"InvariantHead: x has dtype torch.float64, but the "
                                        r"module's parameters.*module.double\(\)"):
        InvariantHead(3, 4)(torch.randn(1, 3, 4, 5, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"InvariantHead: group='so2' is continuous and has "
                                         r"no regular fields; use a finite group"):
        InvariantHead(3, 4, group="so2")


@pytest.mark.parametrize("spatial", ["mean", "max"])
def test_an_empty_map_is_refused_by_name(gen, spatial):
    """A map with nothing to pool was a silent NaN (mean, as nn.AdaptiveAvgPool2d gives) or
    amax's IndexError (max); an empty batch still gives empty logits (the control)."""
    head = InvariantHead(3, 5, group="p4", spatial=spatial)
    for shape in ((2, 3, 4, 0, 5), (2, 3, 4, 5, 0), (2, 3, 0, 5, 5)):
        with pytest.raises(ValueError, match=r"InvariantHead: x of shape .* has an empty"):
            head(torch.zeros(shape))
    with pytest.raises(ValueError, match="invariant_head: .* empty spatial"):
        invariant_head(torch.zeros(2, 3, 0, 5), head.weight, group="p4", spatial=spatial)
    with pytest.raises(ValueError, match="spatial_pool: .* empty spatial"):
        spatial_pool(torch.zeros(2, 3, 4, 0), spatial)
    with pytest.raises(ValueError, match="fiber_pool: .* empty fiber or spatial"):
        fiber_pool(torch.zeros(2, 3, 0, 4, 4))
    assert head(torch.randn(0, 3, 4, 5, 5, generator=gen)).shape == (0, 5)
    assert head(torch.randn(2, 3, 4, 1, 1, generator=gen)).isfinite().all()


def test_a_fiber_of_another_group_names_the_groups_it_fits():
    """A p4m map into a default head named only c4's slot count; the message now says the
    default was used and which groups a fiber of that size is regular for."""
    with pytest.raises(ValueError, match=r"of c4 \(group='p4', the default\) has \|G\|=4 "
                                         r"slots; got F=8 .*group='c8' or 'd4' \('p4m'\)"):
        InvariantHead(4, 10)(torch.zeros(1, 4, 8, 5, 5))
