"""``from_escnn`` keeps the aliasing warning of the steerable convs (tests/
test_aliasing_warning.py): a converted layer warns as a native one with the same basis does
(the harmonic convs, 2-D and on volumes, and the regular ones alike), while the dead-orders
warning stays dropped (escnn's layer has those always-0 slots too), and a default odd-kernel
layer converts without a warning.

Run with an environment that has escnn (``.venv-peers/bin/python -m pytest
tests/test_escnn_aliasing.py``); skipped elsewhere."""

import warnings

import pytest
from _peers import ESCNN_MISSING

escnn = pytest.importorskip("escnn", reason=ESCNN_MISSING)
from escnn import gspaces  # noqa: E402
from escnn import nn as esc  # noqa: E402

from equilayers.interop import from_escnn  # noqa: E402

_ALIAS = "alias-free cap"


def _converted(m) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from_escnn(m)
    return [str(w.message) for w in caught]


def _so2_conv(k: int, order: int, volume: bool = False):
    gs = (gspaces.rot2dOnR3(-1, maximum_frequency=order) if volume
          else gspaces.rot2dOnR2(-1, maximum_frequency=order))
    tin = esc.FieldType(gs, [gs.trivial_repr])
    tout = esc.FieldType(gs, [gs.irrep(m) for m in range(order + 1)])
    return (esc.R3Conv if volume else esc.R2Conv)(tin, tout, k, padding=k // 2)


def _regular_conv(k: int, n: int = 8, flips: bool = False):
    gs = gspaces.flipRot2dOnR2(n) if flips else gspaces.rot2dOnR2(n)
    return esc.R2Conv(esc.FieldType(gs, [gs.trivial_repr]),
                      esc.FieldType(gs, [gs.regular_repr]), k, padding=k // 2)


@pytest.mark.parametrize("make,order", [
    (lambda: _so2_conv(6, 3), 3),  # harmonic 2-D: was silent (measured order-3 error 0.44)
    (lambda: _so2_conv(8, 4), 4),
    (lambda: _regular_conv(6), 3),  # regular: warned before too
    (lambda: _regular_conv(8, flips=True), 4),
])
def test_converted_layer_warns_as_a_native_one(make, order):
    found = [w for w in _converted(make()) if _ALIAS in w]
    assert len(found) == 1 and f"order(s) [{order}]" in found[0], found


def test_converted_3d_planar_conv_warns_as_a_native_one():
    found = [w for w in _converted(_so2_conv(6, 3, volume=True)) if _ALIAS in w]
    assert len(found) == 1 and "SteerableConv3d" in found[0], found


@pytest.mark.parametrize("make", [
    lambda: _so2_conv(5, 2), lambda: _so2_conv(7, 3), lambda: _regular_conv(5),
    lambda: _regular_conv(7, flips=True), lambda: _so2_conv(5, 2, volume=True),
    lambda: _so2_conv(5, 3),  # order 3 unreached at k = 5: the dead-orders warning, dropped
])
def test_default_odd_layers_convert_without_any_warning(make):
    assert _converted(make()) == []
