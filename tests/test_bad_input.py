"""The bad-input matrix: every public callable of equilayers, called with each bad value of
each argument and each bad tensor, must raise a ``ValueError``/``TypeError`` that equilayers
raises on purpose and that names the argument or the problem (not a deep torch error), or
return a correct result; an empty batch gives an empty output of the right shape.

The table lives in ``tests/_bad_input_nn.py`` (``nn``), ``tests/_bad_input_functional.py``
(``functional``; the values these two share in ``tests/_bad_input_layer_args.py``) and
``tests/_bad_input_tools.py`` (top level, ``groups``, ``metrics``, ``testing``, ``kernels``);
the machinery in ``tests/_bad_input.py``. A public name that is neither in the table nor in
:data:`EXEMPT` (with the reason) fails :func:`test_every_public_name_is_covered`.
"""

from __future__ import annotations

import os

import pytest
import torch
from _bad_input import INT, Case, T, case_id, checks, run
from _bad_input_functional import FUNCTIONAL
from _bad_input_nn import NN
from _bad_input_tools import GROUPS, KERNELS, METRICS, MODELS, TESTING, TOP

import equilayers

CASES = NN + FUNCTIONAL + TOP + GROUPS + METRICS + TESTING + KERNELS + MODELS

#: The namespaces whose ``__all__`` the matrix must cover.
NAMESPACES = {
    "equilayers": equilayers,
    "equilayers.nn": equilayers.nn,
    "equilayers.functional": equilayers.functional,
    "equilayers.groups": equilayers.groups,
    "equilayers.metrics": equilayers.metrics,
    "equilayers.models": equilayers.models,
    "equilayers.testing": equilayers.testing,
    "equilayers.kernels": equilayers.kernels,
}

_CONSTANT = "a constant, not a callable"
_RECORD = "a result record, built by the function that returns it (no user input)"
EXEMPT = {
    "equilayers.__version__": _CONSTANT,
    **{f"equilayers.{m}": "a subpackage (its own names are covered)"
       for m in ("functional", "groups", "kernels", "metrics", "models", "nn", "testing")},
    "equilayers.interop": "a subpackage loaded on first use; its conversions take escnn "
                          "modules (bad input in tests/test_interop_*.py, test_escnn_*.py)",
    "equilayers.Finding": _RECORD,
    "equilayers.leaf_modules": "takes no arguments",
    "equilayers.groups.GroupElement": "a record built by Group.element(), which validates",
    "equilayers.groups.CubicElement": "a record built by CubicGroup.element(), which validates",
    "equilayers.groups.SO3Element": "a record built by SO3Group.element(), which validates",
    "equilayers.groups.IcoElement": "a record built by IcosahedralGroup, listed by its "
                                    "elements() or element(), which validates",
    "equilayers.groups.Element": "the base class of the element records",
    "equilayers.groups.GroupLike": "a type alias",
    "equilayers.groups.REPS": _CONSTANT,
    "equilayers.metrics.TRANSFORMS": _CONSTANT,
    "equilayers.metrics.DISTANCES": _CONSTANT,
    "equilayers.metrics.GENERATORS": _CONSTANT,
    "equilayers.metrics.DeformationStability": _RECORD,
    "equilayers.metrics.LayerRow": _RECORD,
    "equilayers.testing.EquivarianceReport": _RECORD,
    "equilayers.kernels.FAST_OPS": _CONSTANT,
    "equilayers.kernels.KERNEL_OPS": _CONSTANT,
    "equilayers.kernels.triton_available": "takes no arguments",
    "equilayers.kernels.use_reference": "a context manager without arguments",
    "equilayers.kernels.use_fast_path": ("a context manager: its name is checked on entry "
                                         "(tests/test_kernel_table.py)"),
    "equilayers.kernels.Choice": _RECORD,
}


def _missing(namespaces) -> list[str]:
    covered = {id(case.fn) for case in CASES}
    return [f"{ns}.{name}" for ns, mod in namespaces.items() for name in mod.__all__
            if f"{ns}.{name}" not in EXEMPT and id(getattr(mod, name)) not in covered]


def test_every_public_name_is_covered():
    missing = _missing(NAMESPACES)
    assert not missing, (f"public names missing from the bad-input table "
                         f"(tests/_bad_input_*.py) and from EXEMPT: {missing}")
    stale = [key for key in EXEMPT
             if key.rpartition(".")[2] not in NAMESPACES[key.rpartition(".")[0]].__all__]
    assert not stale, f"EXEMPT names that are no longer public: {stale}"


def test_a_new_public_name_is_reported(monkeypatch):
    """The negative control of the coverage check: a name added to an ``__all__`` without a
    table entry is reported."""
    monkeypatch.setattr(equilayers.nn, "BrandNewPool2d", lambda x: x, raising=False)
    monkeypatch.setattr(equilayers.nn, "__all__", [*equilayers.nn.__all__, "BrandNewPool2d"])
    assert _missing(NAMESPACES) == ["equilayers.nn.BrandNewPool2d"]


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_bad_input(case, monkeypatch):
    """Every bad value of every argument, every bad tensor, the baseline and the empty batch
    of one public callable (all failures are reported together, one line each; run one
    label with ``_bad_input.run(case, only="x:")``)."""
    if os.environ.get("TRITON_INTERPRET") == "1":  # let the kernel wrappers run on CPU
        monkeypatch.setenv("EQUILAYERS_TRITON_INTERPRET", "1")
    run(case)


def _naive_pool(x, kernel_size=2):
    """A pool without validation: the negative control of the matrix."""
    return torch.nn.functional.max_pool2d(x, kernel_size)


@pytest.mark.parametrize("label", ["kernel_size=True", "kernel_size=0", "x:int64", "x:small"])
def test_the_matrix_catches_unvalidated_input(label):
    """A check that cannot fail proves nothing: an unvalidated function (torch's errors, a bool
    taken as a size) fails the matrix on each of these labels."""
    case = Case(_naive_pool, {}, {"kernel_size": INT},
                {"x": T((2, 3, 6, 6), small=(2, 3, 1, 1))})
    check = dict(checks(case))[label]
    with pytest.raises(AssertionError, match="deep error|accepted"):
        check()


def _naive_conv(x, weight):
    """A conv without validation: the negative control of the mismatch checks."""
    return torch.nn.functional.conv2d(x, weight)


@pytest.mark.parametrize("label", ["weight:meta", "weight:float64"])
def test_the_matrix_catches_mismatched_tensors(label):
    """A weight on another device or in another dtype than ``x`` (torch's own error, or for a
    meta weight with a CPU ``x``, uninitialized memory from some ops) fails the matrix."""
    case = Case(_naive_conv, {}, {}, {"x": T((2, 3, 6, 6)), "weight": T((4, 3, 3, 3),
                                                                      batched=False)})
    check = dict(checks(case))[label]
    with pytest.raises(AssertionError, match="deep error|accepted"):
        check()


@pytest.mark.parametrize("make,shape", [
    (lambda: equilayers.nn.GroupMaxPool2d(2), (2, 3, 4, 0, 4)),
    (lambda: equilayers.nn.GroupAvgPool2d(2), (2, 3, 4, 4, 0)),
    (lambda: equilayers.nn.NormMaxPool(2), (2, 3, 5, 0, 4)),
    (lambda: equilayers.nn.MaxBlurPool2d(), (2, 3, 4, 0, 4)),
    (lambda: equilayers.nn.GroupMaxPool3d(2), (2, 3, 24, 0, 4, 4)),
    (lambda: equilayers.nn.SteerableConv3d(3, 2, 3, padding=1), (2, 3, 0, 4, 4)),
])
def test_an_empty_map_is_named_by_the_layer(make, shape):
    """A group map with a zero-size spatial dim is refused by the layer's own size check
    ("x of spatial size 0x4 ... smaller than the kernel's window", as nn.MaxPool2d refuses
    it); the exactness warning's check ran first and raised about an argument the user never
    passed ("exactness_problems: size=(0, 4) must be ... >= 1")."""
    with pytest.raises(ValueError) as info:
        make()(torch.randn(shape))
    assert "exactness_problems" not in str(info.value)
    assert "0" in str(info.value) and "smaller than" in str(info.value)


_R = equilayers.groups.get("so3").matrix(equilayers.groups.get("so3").from_axis_angle(
    [1.0, 2.0, 3.0], 0.4))
_NUMPY_INTS = {
    "spherical_harmonics": lambda n: equilayers.groups.spherical_harmonics(
        n(2), torch.randn(5, 3, generator=torch.Generator().manual_seed(0))),
    "wigner_d": lambda n: equilayers.groups.wigner_d(n(2), _R),
    "wigner_blocks": lambda n: equilayers.groups.wigner_blocks(n(1), _R),
    "clebsch_gordan": lambda n: equilayers.groups.clebsch_gordan(n(1), n(1), n(2)),
    "steerable_basis": lambda n: equilayers.functional.steerable_basis(
        "so2", "harmonic", "harmonic", n(3), in_order=n(1), out_order=n(2)),
    "group_conv2d[so2]": lambda n: equilayers.functional.group_conv2d(
        torch.ones(1, 2, 3, 5, 5), torch.ones(3, 2, 12), group="so2", kernel_size=n(3),
        max_order=n(1)),
    "check_grid": lambda n: [f.fix for f in equilayers.check_grid(
        torch.nn.Conv2d(3, 4, 3, 2, 1), (n(1), n(3), n(8), 8))],
}


@pytest.mark.parametrize("name", list(_NUMPY_INTS))
def test_numpy_integers_are_integers(name):
    """A numpy integer (a size read from an array, ``np.int64(3)``) is an integer wherever the
    package takes one (``_checks.is_int``); these places checked ``isinstance(v, int)`` and
    refused it ("kernel_size must be an odd integer >= 1; got np.int64(3)"). The result equals
    the one for the Python int."""
    np = pytest.importorskip("numpy")
    want, got = _NUMPY_INTS[name](int), _NUMPY_INTS[name](np.int64)
    if isinstance(want, torch.Tensor):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    else:
        assert got == want
