"""The shared table of equivariance cases: every layer x group x exact/approximate/negative.

Each layer family contributes a module that defines ``CASES`` (a list of :class:`Case`) and is
listed in ``_FAMILIES``. The test suite runs one parametrized test over case x group element;
``equilayers selfcheck`` prints the same table with measured errors.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch

from ..groups import Element, PlanarGroup, get
from ._harness import default_tolerance, equivariance_report, shift_equivariance_error

__all__ = ["Case", "all_cases", "run_case", "CaseResult"]

# Modules contributing cases, in table order. Add one line per layer family.
_FAMILIES = [
    "equilayers.testing._cases_foundation",
    "equilayers.testing._cases_gconv",
    "equilayers.testing._cases_expanded",
    "equilayers.testing._cases_blur",
    "equilayers.testing._cases_harmonic",
    "equilayers.testing._cases_fiber",
    "equilayers.testing._cases_heads",
    "equilayers.testing._cases_subgroup",
    "equilayers.testing._cases_gaussian",
    "equilayers.testing._cases_cubic",
    "equilayers.testing._cases_models",
]


@dataclass(frozen=True)
class Case:
    """One row of the equivariance table.

    Attributes:
        name: unique id, ``family/what``.
        build: returns the module or function under test (float64).
        input_shape: shape of the random input.
        group: group name; for ``kind="shift"`` ignored.
        expect: ``"exact"`` (rounding level), ``"approx"`` (below ``tol``, off-grid) or
            ``"fail"`` (a negative control: the error must exceed ``fail_above``).
        elements: degrees to test for continuous groups / off-grid cases (default: all grid
            elements or all elements of a finite group).
        kind: ``"group"`` (rotations/flips) or ``"shift"`` (integer circular shifts).
        shifts, stride, invariant: for ``kind="shift"``.
        in_group: the group acting on the input when ``group`` is a subgroup of it (maps to a
            subgroup's fields, e.g. restriction); default ``group``.
    """

    name: str
    build: Callable[[], Callable[[torch.Tensor], torch.Tensor]]
    input_shape: tuple[int, ...]
    group: str = "c1"
    in_rep: str | None = None
    out_rep: str | None = None
    expect: Literal["exact", "approx", "fail"] = "exact"
    tol: float | None = None
    fail_above: float = 1e-3
    elements: tuple[float, ...] | None = None
    kind: Literal["group", "shift"] = "group"
    shifts: tuple[tuple[int, int], ...] = ((1, 0), (0, 1), (3, 5))
    stride: int = 1
    invariant: bool = False
    input_fn: Callable[[torch.Generator], torch.Tensor] | None = field(default=None)
    dtype: torch.dtype = torch.float64
    in_group: str | None = None

    def make_input(self, seed: int = 0) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        if self.input_fn is not None:
            return self.input_fn(gen).to(self.dtype)
        return torch.randn(self.input_shape, generator=gen, dtype=self.dtype)

    def group_elements(self) -> Sequence[Element]:
        grp = get(self.group)
        if self.elements is not None:
            assert isinstance(grp, PlanarGroup)  # elements by angle: the planar cases only
            return grp.elements_at(list(self.elements)) + (
                grp.elements_at(list(self.elements), reflection=True) if grp.has_reflections else []
            )
        return grp.elements() if grp.is_finite else grp.grid_elements()

    def tolerance(self) -> float:
        return self.tol if self.tol is not None else default_tolerance(self.dtype)


@dataclass
class CaseResult:
    case: Case
    error: float
    floor: float
    worst: str
    passed: bool


def all_cases() -> list[Case]:
    """Every registered case, from every family module."""
    out: list[Case] = []
    for mod in _FAMILIES:
        out.extend(importlib.import_module(mod).CASES)
    names = [c.name for c in out]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise RuntimeError(f"duplicate case names: {sorted(dupes)}")
    return out


def run_case(case: Case, elements: Sequence[Element] | None = None,
             seed: int = 0) -> CaseResult:
    """Measure one case (optionally restricted to some elements) and judge it."""
    torch.manual_seed(seed)
    f = case.build()
    x = case.make_input(seed)
    if case.kind == "shift":
        err = shift_equivariance_error(f, x, case.shifts, stride=case.stride,
                                       invariant=case.invariant)
        floor, worst = 0.0, "shifts"
    else:
        rep = equivariance_report(f, x, case.group, in_rep=case.in_rep, out_rep=case.out_rep,
                                  elements=elements or case.group_elements(),
                                  in_group=case.in_group)
        err, floor, worst = rep.error, rep.floor, repr(rep.worst)
    if case.expect == "fail":
        passed = err > case.fail_above
    else:
        passed = err <= case.tolerance()
    return CaseResult(case, err, floor, worst, passed)
