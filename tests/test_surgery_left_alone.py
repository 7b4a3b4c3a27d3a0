"""``antialias`` on layers it cannot rewrite faithfully: it leaves them alone with a warning
that names why and the fix (a polyphase pool whose output would change size; a pruned, legacy
weight-normed or parametrized conv), and a model torch cannot copy raises a ``ValueError``
naming ``antialias`` instead of torch's deepcopy error."""

from __future__ import annotations

import pytest
import torch
import torch.nn.utils.prune as prune
from torch import nn

from equilayers import antialias


@pytest.mark.parametrize("pool", [nn.MaxPool2d(3, 2), nn.AvgPool2d(3, 2),
                                  nn.AvgPool2d(3, 2, 1, ceil_mode=True)], ids=repr)
def test_polyphase_leaves_a_pool_whose_output_is_not_size_over_stride(pool):
    """A polyphase pool gives size / stride; ``MaxPool2d(3, 2)`` gives 7 at 16, so it stays
    (it had become an 8 x 8 output that broke the next layer). The control: the pools whose
    output is size / stride (ceil_mode included) convert and keep their shape."""
    x = torch.randn(1, 2, 16, 16)
    with pytest.warns(UserWarning, match=r"whose output is not size / stride \(16 -> "):
        new = antialias(nn.Sequential(pool), mode="polyphase")
    assert type(new[0]) is type(pool) and new(x).shape == pool(x).shape
    for ok in (nn.MaxPool2d(2), nn.MaxPool2d(3, 2, 1), nn.AvgPool2d(2),
               nn.MaxPool2d(3, 2, ceil_mode=True)):
        new = antialias(nn.Sequential(ok), mode="polyphase")
        assert isinstance(new[0], nn.Sequential) and new(x).shape == ok(x).shape


def _pruned() -> nn.Sequential:
    model = nn.Sequential(nn.Conv2d(3, 4, 3, 2, 1))
    prune.l1_unstructured(model[0], "weight", amount=0.5)
    return model


@pytest.mark.filterwarnings("ignore:`torch.nn.utils.weight_norm` is deprecated:FutureWarning")
@pytest.mark.parametrize("make", [_pruned, lambda: nn.Sequential(
    nn.utils.weight_norm(nn.Conv2d(3, 4, 3, 2, 1)))], ids=["prune", "legacy-weight-norm"])
def test_a_conv_with_a_computed_weight_is_left_alone_and_named(make):
    """Its weight is a tensor a forward pre-hook computes, not a parameter: in place it is
    left alone with the fix (torch raised a TypeError assigning it); a copy raises a
    ValueError naming antialias (torch raised its deepcopy error). The control: after
    ``prune.remove`` the conv converts."""
    with pytest.warns(UserWarning, match=r"weight a forward pre-hook recomputes .*prune.remove"):
        model = antialias(make(), inplace=True)
    assert type(model[0]) is nn.Conv2d
    with pytest.raises(ValueError, match=r"antialias\(inplace=False\) copies the model first"):
        antialias(make())
    model = _pruned()
    prune.remove(model[0], "weight")
    assert type(antialias(model)[0]).__name__ == "BlurConv2d"


def test_a_parametrized_conv_names_the_parametrization():
    model = nn.Sequential(nn.utils.parametrizations.weight_norm(nn.Conv2d(3, 4, 3, 2, 1)))
    with pytest.warns(UserWarning, match=r"a parametrized Conv2d .*antialias the model before "
                                         r"parametrizing it"):
        new = antialias(model)
    assert type(new[0]).__name__ == "ParametrizedConv2d"
    # antialiased first, then parametrized: the documented order works
    new = antialias(nn.Sequential(nn.Conv2d(3, 4, 3, 2, 1)))
    nn.utils.parametrizations.weight_norm(new[0])
    assert new(torch.randn(1, 3, 8, 8)).shape == (1, 4, 4, 4)


@pytest.mark.parametrize("layer,match", [
    (nn.MaxPool2d(2, return_indices=True), r"return_indices=True\): the indices"),
    (nn.MaxPool2d(2, dilation=2), r"a dilated MaxPool2d"),
    (nn.MaxPool2d((2, 3)), r"MaxPool2d with unequal sizes \(kernel_size"),
    (nn.AvgPool2d(2, divisor_override=3), r"AvgPool2d\(divisor_override=...\)"),
    (nn.LazyConv2d(4, 3, 2), r"an uninitialized LazyConv2d: run one forward pass first"),
], ids=["return_indices", "dilation", "unequal", "divisor_override", "lazy"])
def test_each_reason_to_leave_a_layer_alone_is_named_with_its_fix(layer, match):
    """Each reason gets its own warning (return_indices, dilation and unequal sizes shared
    one text, and a LazyConv2d was 'a subclass' with no fix)."""
    with pytest.warns(UserWarning, match=match):
        new = antialias(nn.Sequential(layer))
    assert type(new[0]) is type(layer)
    if isinstance(layer, nn.LazyConv2d):  # the control: after one forward it converts
        model = nn.Sequential(nn.LazyConv2d(4, 3, 2))
        model(torch.randn(1, 3, 8, 8))
        assert type(antialias(model)[0]).__name__ == "BlurConv2d"


class _MaxPool2dSame(nn.MaxPool2d):
    """timm's kind: TF "same" padding worked out in forward."""

    def forward(self, x):
        return super().forward(nn.functional.pad(x, (0, 1, 0, 1), value=-1e9))


class _RenamedAvgPool(nn.AvgPool2d):
    """A subclass with no forward of its own: nothing to lose, so it converts."""


def test_a_pool_subclass_with_its_own_forward_is_left_alone():
    """A ``MaxPool2d`` subclass was replaced by a ``MaxBlurPool2d`` that did not compute its
    forward: the output shape changed and the next layer failed (Conv2d subclasses were
    already left alone). The control: a subclass without a forward of its own converts."""
    x = torch.randn(1, 1, 9, 9)
    model = nn.Sequential(_MaxPool2dSame(2))
    with pytest.warns(UserWarning, match=r"_MaxPool2dSame, a subclass of MaxPool2d with a "
                                         r"forward of its own"):
        new = antialias(model)
    assert type(new[0]) is _MaxPool2dSame and new(x).shape == model(x).shape == (1, 1, 5, 5)
    new = antialias(nn.Sequential(_RenamedAvgPool(2)))
    assert isinstance(new[0], nn.Sequential)  # avg pool at stride 1, then BlurPool2d
