"""One parametrized test over the shared case table (every layer x group x element)."""

import warnings

import pytest
from conftest import assert_case_result

from equilayers.testing.cases import all_cases, run_case


def _params():
    out = []
    for case in all_cases():
        if case.kind == "shift" or case.expect == "fail":
            out.append(pytest.param(case, None, id=case.name))
        else:
            for g in case.group_elements():
                out.append(pytest.param(case, g, id=f"{case.name}[{g!r}]"))
    return out


@pytest.mark.parametrize("case,element", _params())
def test_case(case, element):
    if case.expect != "fail" and case.kind != "shift":
        result = run_case(case, elements=None if element is None else [element])
    else:  # a negative control may run a layer at an inexact size on purpose, which warns;
        # so may a shift case (its size need not suit rotations, which it does not measure)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = run_case(case, elements=None if element is None else [element])
        for w in caught:  # the exactness warnings are expected; anything else is news
            if "is not exactly equivariant" not in str(w.message):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    assert_case_result(case, result)


def test_a_case_with_angles_on_a_cube_group_is_refused_at_construction():
    """``elements`` are rotation angles: a case giving them for a group without angles fails
    when it is written, naming the case and the fix (it was an ``assert`` deep in the run)."""
    from equilayers.testing._case import Case

    with pytest.raises(ValueError, match=r"Case 'x/y': elements=\(90.0,\) .* group='oh'.* "
                                         "elements=None"):
        Case("x/y", lambda: (lambda t: t), (1, 1, 3, 3, 3), "oh", elements=(90.0,))
    Case("x/z", lambda: (lambda t: t), (1, 1, 3, 3), "so2", elements=(90.0,))  # planar: fine
