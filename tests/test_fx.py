"""``equilayers.symbolic_trace``: torch.fx tracing with equilayers modules kept whole."""

import pytest
import torch
from _zoo import ZOO, build
from torch import nn

import equilayers
from equilayers.models import UNet
from equilayers.nn import GroupBatchNorm2d, GroupConv2d, GroupPool, LiftingConv2d


class _Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = GroupConv2d(4, 4, 3, padding=1, group="p4")
        self.bn = GroupBatchNorm2d(4)

    def forward(self, x):
        return torch.relu(x + self.bn(self.conv(x)))


def _net():
    return nn.Sequential(LiftingConv2d(1, 4, 3, padding=1, group="p4"), _Residual(),
                         GroupPool(), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()


def test_traces_the_wiring_and_keeps_equilayers_modules_whole(gen):
    net = _net()
    gm = equilayers.symbolic_trace(net)
    calls = [n.target for n in gm.graph.nodes if n.op == "call_module"]
    assert "0" in calls and "1.conv" in calls and "1.bn" in calls and "2" in calls
    assert any(n.op == "call_function" for n in gm.graph.nodes)  # the residual add, the relu
    x = torch.randn(2, 1, 9, 9, generator=gen)
    torch.testing.assert_close(gm(x), net(x), rtol=0, atol=0)
    # the control: torch.fx's own tracer goes into them, and the error names the fix
    with pytest.raises(TypeError, match=r"got Proxy \(torch.fx traced into equilayers code"):
        torch.fx.symbolic_trace(net)


def test_a_root_that_is_one_equilayers_module(gen):
    unet = UNet(1, 3, group="p4", depth=1, width=2).eval()
    gm = equilayers.symbolic_trace(unet)
    # the forward's inputs (x, and generator=None for a learned U-Net's draws), one call
    assert [(n.op, n.name) for n in gm.graph.nodes] == [
        ("placeholder", "x"), ("placeholder", "generator"), ("call_module", "module"),
        ("output", "output")]
    x = torch.randn(1, 1, 8, 8, generator=gen)
    torch.testing.assert_close(gm(x), unet(x), rtol=0, atol=0)
    assert all(k.startswith("module.") for k in gm.state_dict())


def test_leaf_modules_lists_the_public_modules():
    leaves = equilayers.leaf_modules()
    assert GroupConv2d in leaves and UNet in leaves and GroupPool in leaves
    assert all(isinstance(c, type) and issubclass(c, nn.Module) for c in leaves)
    assert nn.Conv2d not in leaves  # torch's own stay torch.fx's business


def test_subclasses_are_leaves_too(gen):
    class MyConv(GroupConv2d):
        pass

    net = nn.Sequential(LiftingConv2d(1, 2, 3, group="p4"), MyConv(2, 2, 3, group="p4"))
    gm = equilayers.symbolic_trace(net)
    assert [n.target for n in gm.graph.nodes if n.op == "call_module"] == ["0", "1"]


def test_bad_root():
    with pytest.raises(TypeError, match="root must be an nn.Module; got int"):
        equilayers.symbolic_trace(3)


@pytest.mark.parametrize("name", ZOO)
def test_every_zoo_module_traces_whole(name):
    """Every module of the training-loop zoo: ``equilayers.symbolic_trace`` runs it as one
    node with its own outputs; ``torch.fx.symbolic_trace`` (the control) traces into it and
    fails with a TypeError that names the fix."""
    m, inputs = build(name)
    m.eval()
    gm = equilayers.symbolic_trace(nn.Sequential(m) if len(inputs) == 1 else m)
    got, want = gm(*inputs), m(*inputs)
    for a, b in zip(torch.utils._pytree.tree_leaves(got), torch.utils._pytree.tree_leaves(want),
                    strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(TypeError, match="equilayers.symbolic_trace"):
        torch.fx.symbolic_trace(m)


class _CallsAFunctional(nn.Module):
    def __init__(self):
        super().__init__()
        self.lift = LiftingConv2d(1, 2, 3, padding=1, group="p4")

    def forward(self, x):
        return _wrapped_group_pool(self.lift(x), "max")


def test_a_functional_in_a_users_forward_is_named_with_the_fix_that_works(gen):
    """The message told a user already tracing with equilayers.symbolic_trace to trace with
    it; a function their forward calls needs torch.fx.wrap (the control: wrapped, it
    traces)."""
    from equilayers.functional import group_pool

    class Bare(_CallsAFunctional):
        def forward(self, x):
            return group_pool(self.lift(x), "max")

    with pytest.raises(TypeError, match=r"for a function your forward calls.*torch.fx.wrap"):
        equilayers.symbolic_trace(Bare())
    net, x = _CallsAFunctional().eval(), torch.randn(1, 1, 7, 7, generator=gen)
    torch.testing.assert_close(equilayers.symbolic_trace(net)(x), net(x), rtol=0, atol=0)


def _wrapped_group_pool(x, mode):
    from equilayers.functional import group_pool

    return group_pool(x, mode)


torch.fx.wrap("_wrapped_group_pool")
