"""The shared table of equivariance cases: every layer x group x exact/approximate/negative.

Each layer family contributes a module ``_cases_<family>.py`` that defines ``CASES`` (a list of
:class:`Case`, imported from ``._case``) and is imported here and listed in ``_FAMILIES``. The
test suite runs one parametrized test over case x group element; ``equilayers selfcheck`` prints
the same table with measured errors.
"""

from __future__ import annotations

from . import (
    _cases_axial,
    _cases_blur,
    _cases_cubic,
    _cases_cubic_pools,
    _cases_edge_aware,
    _cases_expanded,
    _cases_fiber,
    _cases_foundation,
    _cases_gaussian,
    _cases_gconv,
    _cases_harmonic,
    _cases_heads,
    _cases_linear,
    _cases_lps,
    _cases_models,
    _cases_models3d,
    _cases_rectangles,
    _cases_so3,
    _cases_steerable_transposed3d,
    _cases_subgroup,
    _cases_tensor_product,
    _cases_transposed,
    _cases_upsample,
)
from ._case import Case, CaseResult, run_case

__all__ = ["Case", "all_cases", "run_case", "CaseResult"]

# The families, in table order. Add one line per layer family (and its import above).
_FAMILIES = (
    _cases_foundation,
    _cases_gconv,
    _cases_transposed,
    _cases_upsample,
    _cases_expanded,
    _cases_blur,
    _cases_edge_aware,
    _cases_lps,
    _cases_harmonic,
    _cases_fiber,
    _cases_linear,
    _cases_tensor_product,
    _cases_heads,
    _cases_subgroup,
    _cases_gaussian,
    _cases_cubic,
    _cases_cubic_pools,
    _cases_so3,
    _cases_axial,
    _cases_steerable_transposed3d,
    _cases_models,
    _cases_models3d,
    _cases_rectangles,
)


def all_cases() -> list[Case]:
    """Every case, from every family module."""
    out: list[Case] = []
    for family in _FAMILIES:
        out.extend(family.CASES)
    names = [c.name for c in out]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise RuntimeError(f"duplicate case names: {sorted(dupes)}")
    return out
