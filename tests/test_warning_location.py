"""Every warning of a module points at the user's line, however deep the module sits: inside
``nn.Sequential`` (one more frame of torch's) or built inside a helper of the user's. Fixed
``stacklevel``s pointed into torch's ``container.py`` for the 3-D pools and the Fourier
nonlinearity's forward-time warning (``nn._exactness.warn_at_user`` walks out instead)."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import equilayers.nn as enn
from equilayers.nn._exactness import quiet_exactness_warnings


def _caught(fn) -> list[warnings.WarningMessage]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fn()
    return caught


def _at_this_file(caught: list[warnings.WarningMessage], match: str) -> None:
    ours = [w for w in caught if match in str(w.message)]
    assert ours, [str(w.message) for w in caught]
    assert all(w.filename == __file__ for w in ours), [(w.filename, w.lineno) for w in ours]


#: a pool and an input size where its windows break exactness (odd sizes at stride 2 for the
#: max/avg/norm pools, even ones for the centred blur)
POOLS3D = {
    "GroupMaxPool3d": (lambda: enn.GroupMaxPool3d(2), (1, 1, 24, 7, 7, 7)),
    "GroupAvgPool3d": (lambda: enn.GroupAvgPool3d(2), (1, 1, 24, 7, 7, 7)),
    "BlurPool3d": (lambda: enn.BlurPool3d(), (1, 1, 24, 6, 6, 6)),
    "NormMaxPool": (lambda: enn.NormMaxPool(2, group="so3", max_order=1, spatial_dims=3),
                    (1, 1, 4, 7, 7, 7)),
}


@pytest.mark.parametrize("name", sorted(POOLS3D))
@pytest.mark.parametrize("wrapped", [False, True], ids=["alone", "in_sequential"])
def test_pool3d_inexact_warning_points_at_the_call(name, wrapped):
    build, shape = POOLS3D[name]
    pool = build()
    model = nn.Sequential(nn.Identity(), pool) if wrapped else pool
    x = torch.randn(shape)
    _at_this_file(_caught(lambda: model(x)), "not exactly equivariant")


@pytest.mark.parametrize("wrapped", [False, True], ids=["alone", "in_sequential"])
def test_fourier_samples_warning_at_forward_points_at_the_call(wrapped):
    with quiet_exactness_warnings():  # built quietly: the warning is due at the first forward
        fnl = enn.FourierNonlinearity("so2", 2, samples=6)
    model = nn.Sequential(fnl) if wrapped else fnl
    _at_this_file(_caught(lambda: model(torch.randn(2, 1, 5, 4, 4))), "samples=6")


def _built_in_a_helper():
    return enn.GroupLinear(2, 3, group="so2", max_order=3, in_max_order=1)


def test_construction_warnings_point_at_the_users_line():
    _at_this_file(_caught(_built_in_a_helper), "no equivariant linear map reaches")
    _at_this_file(_caught(lambda: enn.TensorProductNonlinearity(2, "so3", 1, 3)),
                  "no product of orders")


def test_negative_control_a_fixed_stacklevel_in_sequential_misses():
    """The check can fail: a forward warning with the fixed level that reaches the user's line
    when the module is called alone lands in torch's container.py inside nn.Sequential."""

    class Fixed(nn.Module):
        def forward(self, x):
            warnings.warn("fixed level", stacklevel=4)  # forward, _call_impl, _wrapped_call_impl
            return x

    _at_this_file(_caught(lambda: Fixed()(torch.zeros(1))), "fixed level")
    with pytest.raises(AssertionError):
        _at_this_file(_caught(lambda: nn.Sequential(Fixed())(torch.zeros(1))), "fixed level")
