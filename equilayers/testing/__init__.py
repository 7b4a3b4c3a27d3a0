"""Equivariance testing: the harness, the shared case table, and controls.

The harness computes relative errors in float64, worst over the group elements, and names
the worst element when an assertion fails.
"""

from ._harness import (
    EquivarianceReport,
    assert_equivariant,
    assert_invariant,
    default_tolerance,
    equivariance_error,
    equivariance_report,
    infer_rep,
    invariance_error,
    shift_equivariance_error,
)
from .controls import symmetrized_conv2d

__all__ = [
    "EquivarianceReport",
    "equivariance_report",
    "equivariance_error",
    "invariance_error",
    "assert_equivariant",
    "assert_invariant",
    "shift_equivariance_error",
    "default_tolerance",
    "infer_rep",
    "symmetrized_conv2d",
]
