"""``antialias`` on layers it cannot rewrite faithfully: it leaves them alone with a warning
that names why and the fix (a polyphase pool whose output would change size; a pruned, legacy
weight-normed or parametrized conv), and a model torch cannot copy raises a ``ValueError``
naming ``antialias`` instead of torch's deepcopy error."""

from __future__ import annotations

import warnings

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


def _group_model() -> nn.Sequential:
    from equilayers.nn import GroupConv2d, GroupMaxPool2d, GroupPool, LiftingConv2d

    return nn.Sequential(LiftingConv2d(3, 4, 3, stride=2, padding=1, group="p4"), nn.ReLU(),
                         GroupMaxPool2d(2), GroupConv2d(4, 4, 3, stride=2, padding=1,
                                                        group="p4"), GroupPool("max"))


@pytest.mark.parametrize("make,names", [
    (_group_model, ["0 (a strided LiftingConv2d", "2 (a strided GroupMaxPool2d",
                    "3 (a strided GroupConv2d"]),
    (lambda: nn.Sequential(nn.LPPool2d(2, 2)), ["0 (a strided LPPool2d"]),
], ids=["group-layers", "lppool"])
def test_strided_layers_without_a_rewrite_are_named(make, names):
    """The library's own strided group convs and pools, and torch's LPPool2d, were left alone
    with no warning and an empty report: the user believed the model anti-aliased. The
    control: the same layers at stride 1 are not named."""
    with pytest.warns(UserWarning, match="antialias left these strided layers alone") as rec:
        new, report = antialias(make(), return_report=True)
    text = " ".join(str(w.message) for w in rec)
    assert report == [] and all(n in text for n in names), text
    assert type(new[0]) is type(make()[0])
    from equilayers.nn import GroupConv2d
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        antialias(nn.Sequential(GroupConv2d(4, 4, 3, padding=1, group="p4"), nn.LPPool2d(2, 1)))


@pytest.mark.parametrize("kwargs", [dict(mode="polyphase"), dict(blur_size=5),
                                    dict(mode="folded")], ids=repr)
def test_a_second_antialias_in_another_mode_or_size_says_so(kwargs):
    """``antialias(antialias(net), mode="polyphase")`` (or another blur size) returned the
    first conversion unchanged, silently. The control: the same settings again are silent
    (idempotent)."""
    net = nn.Sequential(nn.Conv2d(3, 4, 3, 2, 1), nn.ReLU(), nn.MaxPool2d(2))
    once = antialias(net)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = antialias(once)
    assert [type(m) for m in again] == [type(m) for m in once]
    with pytest.warns(UserWarning, match=r"an anti-aliased BlurConv2d \(blur_size=3\), kept as "
                                         r"built.*convert the plain layer"):
        antialias(once, **kwargs)


@pytest.mark.filterwarnings("ignore:.*spectral_norm.* is deprecated:FutureWarning")
def test_a_legacy_spectral_norm_conv_is_told_its_own_fix():
    """The warning named remove_weight_norm, which raises on a spectral-normed conv."""
    model = nn.Sequential(nn.utils.spectral_norm(nn.Conv2d(3, 4, 3, 2, 1)))
    with pytest.warns(UserWarning, match=r"remove_spectral_norm\(conv\)"):
        antialias(model, inplace=True)
    nn.utils.remove_spectral_norm(model[0])
    assert type(antialias(model)[0]).__name__ == "BlurConv2d"


def test_stride_1_anti_aliased_layers_are_not_named_and_3d_pools_get_3d_advice():
    """A stride-1 blur smooths, it does not downsample: it was named "strided" under another
    blur size (found by the regression probe). A NormMaxPool on volumes was told to use
    BlurPool2d, which leaves the depth undownsampled. The controls: the strided layers are
    named, the 2-D NormMaxPool gets BlurPool2d."""
    from equilayers.nn import BlurConv2d, BlurPool2d, MaxBlurPool2d, NormMaxPool

    smooth = nn.Sequential(BlurPool2d(kernel_size=3, stride=1), MaxBlurPool2d(3, 1, 1),
                           BlurConv2d(3, 3, 3, 1, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        antialias(smooth, blur_size=5)
        antialias(smooth, mode="polyphase")
    with pytest.warns(UserWarning, match=r"0 \(an anti-aliased BlurPool2d"):
        antialias(nn.Sequential(BlurPool2d(kernel_size=3, stride=2)), blur_size=5)
    for pool, blur in ((NormMaxPool(2, spatial_dims=3, group="so3", max_order=1), "BlurPool3d"),
                       (NormMaxPool(2, max_order=1), "BlurPool2d")):
        with pytest.warns(UserWarning, match=f"put a {blur} after it"):
            antialias(nn.Sequential(pool))
