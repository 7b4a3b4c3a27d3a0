"""GroupMaxPool2d / 3d take ``nn.MaxPool2d`` / ``3d``'s arguments in torch's order
``(kernel_size, stride, padding, dilation, return_indices, ceil_mode)``: ``nn.MaxPool3d(2, 2,
0, 1, True)`` returns indices, and the group pool silently switched ``ceil_mode`` on instead.
``return_indices=True`` gives torch's indices of each slot's pool in the group map's layout
(``nn.MaxUnpool2d`` / ``3d`` take them on the ``(B, C F, ...)`` view); the avg pools already
had ``nn.AvgPool2d`` / ``3d``'s order."""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn

import equilayers.functional as EF
from equilayers import export
from equilayers.nn import (
    GroupAvgPool2d,
    GroupAvgPool3d,
    GroupMaxPool2d,
    GroupMaxPool3d,
    LiftingConv2d,
)

_PAIRS = [(GroupMaxPool2d, nn.MaxPool2d, 2), (GroupMaxPool3d, nn.MaxPool3d, 3),
          (GroupAvgPool2d, nn.AvgPool2d, 2), (GroupAvgPool3d, nn.AvgPool3d, 3)]


@pytest.mark.parametrize("ours,torchs,nd", _PAIRS)
def test_the_positional_arguments_are_torchs(ours, torchs, nd):
    names = list(inspect.signature(ours).parameters)
    want = list(inspect.signature(torchs).parameters)
    assert names == want[:len(names)], (names, want)
    assert want[len(names):] in ([], ["divisor_override"])  # (refused: a TypeError)


@pytest.mark.filterwarnings("ignore:.*not exactly equivariant")  # (5 at stride 2: not exact)
@pytest.mark.parametrize("nd", [2, 3])
def test_return_indices_are_torchs_per_slot(nd, gen):
    ours, torchs, unpool = ((GroupMaxPool2d, nn.MaxPool2d, nn.MaxUnpool2d) if nd == 2 else
                            (GroupMaxPool3d, nn.MaxPool3d, nn.MaxUnpool3d))
    fun = EF.group_max_pool2d if nd == 2 else EF.group_max_pool3d
    x = torch.randn(2, 3, 4, *(5,) * nd, generator=gen, dtype=torch.float64)
    planes = x.flatten(1, 2)
    for args in [(2, 2, 0, 1, True), (3, 2, 1, 1, True, True), (2, 1, 0, 2, True)]:
        want, want_idx = torchs(*args)(planes)
        y, idx = ours(*args)(x)
        assert idx.dtype == torch.int64 and idx.shape == y.shape == (2, 3, 4, *want.shape[2:])
        assert torch.equal(y.flatten(1, 2), want) and torch.equal(idx.flatten(1, 2), want_idx)
        y2, idx2 = fun(x, *args[:4], len(args) > 5, return_indices=True)
        assert torch.equal(y2, y) and torch.equal(idx2, idx)
        # the indices put each maximum back where it was, slot by slot
        k, s, p = args[:3]
        if args[3] == 1:
            back = unpool(k, s, p)(y.flatten(1, 2), idx.flatten(1, 2), output_size=planes.shape)
            assert torch.equal(back[back != 0], planes[back != 0])
    # the control: ceil_mode is the sixth argument, not the fifth (5 -> 3 windows)
    assert ours(2, 2, 0, 1, False, True)(x).shape[-1] == 3
    assert ours(2, 2, 0, 1, True)(x)[0].shape[-1] == 2
    assert ours(2, 2, ceil_mode=True)(x).shape[-1] == 3  # (the keyword, as before)


def test_return_indices_repr_export_and_bad_values(gen):
    m = GroupMaxPool3d(2, return_indices=True, ceil_mode=True)
    assert "return_indices=True" in repr(m)
    assert repr(eval(repr(m), {"GroupMaxPool3d": GroupMaxPool3d})) == repr(m)  # noqa: S307
    with pytest.raises(TypeError, match="return_indices=1 must be True or False"):
        GroupMaxPool2d(2, return_indices=1)
    with pytest.raises(TypeError, match="return_indices=None must be True or False"):
        EF.group_max_pool3d(torch.randn(1, 1, 4, 2, 2, 2), 2, return_indices=None)
    # export keeps a pool whose indices a MaxPool3d would count over the fiber too
    net = nn.Sequential(LiftingConv2d(1, 2, 3, group="p4"), GroupMaxPool2d(2, return_indices=True))
    out = export(net)
    assert isinstance(out[1], GroupMaxPool2d)
    x = torch.randn(1, 1, 6, 6, generator=gen)
    assert all(torch.equal(a, b) for a, b in zip(net(x), out(x), strict=True))
