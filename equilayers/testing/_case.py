"""One row of the equivariance table (:class:`Case`), how it is run and judged (:func:`run_case`),
and :func:`seeded` for builders. Below ``nn``: it asks the harness and the group interface only;
the table itself, which builds the layers, is ``cases.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeVar

import torch

from .. import _checks as C
from .._rng import global_rng_from
from ..groups import Element, PlanarGroup, get
from ._harness import default_tolerance, equivariance_report, shift_equivariance_error

__all__ = ["Case", "CaseResult", "run_case", "seeded"]

T = TypeVar("T")


def seeded(fn: Callable[[], T], seed: int = 0) -> Callable[[], T]:
    """``fn`` as a case builder whose random parameters (``torch.nn``'s initialisers) come from a
    generator seeded with ``seed``: the same module however, wherever and in whatever order the
    cases run, and the caller's global RNG untouched."""
    def build() -> T:
        with global_rng_from(torch.Generator().manual_seed(seed)):
            return fn()
    return build


@dataclass(frozen=True)
class Case:
    """One row of the equivariance table.

    Attributes:
        name: unique id, ``family/what``.
        build: returns the module or function under test (float64). :func:`run_case` calls it
            with the global RNG drawn from a generator seeded with its ``seed``; wrap it in
            :func:`seeded` to pin the parameters whoever calls it.
        input_shape: shape of the random input.
        group: group name; for ``kind="shift"`` ignored.
        expect: ``"exact"`` (rounding level), ``"approx"`` (below ``tol``, off-grid) or
            ``"fail"`` (a negative control: the error must exceed ``fail_above``).
        elements: degrees to test for continuous groups / off-grid cases (default: all grid
            elements or all elements of a finite group); ``"grid"``: the grid elements of any
            group (``"ico"``: its 12 exact ones).
        kind: ``"group"`` (rotations/flips) or ``"shift"`` (integer circular shifts).
        shifts, stride, invariant: for ``kind="shift"`` (pairs ``(dy, dx)``, or triples
            ``(dz, dy, dx)`` on volumes).
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
    elements: tuple[float, ...] | Literal["grid"] | None = None
    kind: Literal["group", "shift"] = "group"
    shifts: tuple[tuple[int, ...], ...] = ((1, 0), (0, 1), (3, 5))
    stride: int | tuple[int, ...] = 1
    invariant: bool = False
    input_fn: Callable[[torch.Generator], torch.Tensor] | None = field(default=None)
    dtype: torch.dtype = torch.float64
    in_group: str | None = None

    def __post_init__(self) -> None:
        # at construction: a typo here ran another check (kind="Shift" tested the identity of
        # c1 and passed any model) or reversed one (a negative fail_above passed everything)
        what = f"Case {self.name!r}"
        C.check_choice(self.kind, "kind", ("group", "shift"), what)
        C.check_choice(self.expect, "expect", ("exact", "approx", "fail"), what,
                       fix="'fail' for a negative control")
        if self.tol is not None:
            C.check_number(self.tol, "tol", what, positive=True, fix="None for the dtype's")
        C.check_number(self.fail_above, "fail_above", what, positive=True,
                       fix="the error a negative control must exceed, e.g. 1e-3")
        if not (isinstance(self.dtype, torch.dtype) and self.dtype.is_floating_point
                and not self.dtype.is_complex):
            raise TypeError(f"{what}: dtype={self.dtype!r} must be a real floating torch.dtype "
                            "(the harness draws N(0, 1) inputs), e.g. torch.float64")
        C.check_flag(self.invariant, "invariant", what,
                     fix="True: the output must not move at all")
        if self.kind == "shift":  # the harness's own checks, at construction
            shifts = C.check_shift_list(self.shifts, "shifts", what,
                                        form="integer pairs (dy, dx) or triples (dz, dy, dx)")
            triples = all(isinstance(t, (tuple, list)) and len(t) == 3 for t in shifts)
            check = C.check_triple if triples else C.check_pair
            for t in shifts:
                check(t, "shifts[i]", what, fix="integer pairs (dy, dx) or triples (dz, dy, dx)")
            check(self.stride, "stride", what, minimum=1)
        if self.kind == "group":
            get(self.group)  # an unknown group: its ValueError, here
        if self.elements is not None and self.elements != "grid" and self.kind == "group":
            grp = get(self.group)
            if not isinstance(grp, PlanarGroup):
                raise ValueError(f"Case {self.name!r}: elements={self.elements!r} are rotation "
                                 f"angles in degrees, which only planar groups have; got "
                                 f"group={grp.name!r}. Leave elements=None to test all of "
                                 "its elements")

    def make_input(self, seed: int = 0) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        if self.input_fn is not None:
            return self.input_fn(gen).to(self.dtype)
        return torch.randn(self.input_shape, generator=gen, dtype=self.dtype)

    def group_elements(self) -> Sequence[Element]:
        grp = get(self.group)
        if self.elements == "grid":
            return grp.grid_elements()
        if self.elements is not None and isinstance(grp, PlanarGroup):  # checked at init
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



def run_case(case: Case, elements: Sequence[Element] | None = None,
             seed: int = 0) -> CaseResult:
    """Measure one case (optionally restricted to some elements) and judge it. The module is
    built with its random parameters drawn from a generator seeded with ``seed`` (unless its
    ``build`` pins them with :func:`seeded`, as the table's off-grid stacks do: then ``seed``
    varies the input only), and the input from another."""
    with global_rng_from(torch.Generator().manual_seed(seed)):
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
