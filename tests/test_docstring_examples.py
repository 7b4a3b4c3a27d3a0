"""Every docstring example (``>>>``) in the package runs and prints what it shows: the Example
section of a layer's docstring (the house style) is a doctest, rendered on the documentation site.
Until 2026-12-04 nothing ran them (``tests/test_docs.py`` runs the Markdown pages' blocks).

Each module's examples run with the module's own globals (as ``pytest --doctest-modules``),
under the autouse seeded global RNG, with doctest's default comparison (exact text). The
control: a docstring that shows a wrong result fails :func:`failures`.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import types

import pytest

import equilayers


def _module_names() -> list[str]:
    """Every module of the package but ``__main__`` (importing it runs the command line)."""
    names = ["equilayers"] + [m.name for m in pkgutil.walk_packages(equilayers.__path__,
                                                                    "equilayers.")]
    return sorted(n for n in names if not n.endswith("__main__"))


def failures(module: types.ModuleType) -> tuple[int, str]:
    """``(examples run, report of the failing ones)`` for ``module``'s docstrings (its
    private helpers' included)."""
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(verbose=False)
    report: list[str] = []
    ran = 0
    for test in finder.find(module, module.__name__):
        result = runner.run(test, out=report.append, clear_globs=True)
        ran += result.attempted
    return ran, "".join(report)


MODULES = [n for n in _module_names()
           if any(t.examples for t in doctest.DocTestFinder().find(importlib.import_module(n), n))]


def test_the_package_has_examples():
    """The parametrization is not empty by accident (a broken walk would pass every case):
    52 modules held 234 examples on 2026-12-04."""
    assert len(MODULES) >= 50, MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    ran, report = failures(importlib.import_module(name))
    assert not report, f"{name}: docstring examples that fail:\n{report}"


def test_a_wrong_example_fails():
    """The control: an example whose shown output is wrong, and one that raises."""
    fake = types.ModuleType("fake")
    fake.__doc__ = ">>> 1 + 1\n3\n"
    ran, report = failures(fake)
    assert ran == 1 and "Expected:\n    3\nGot:\n    2" in report
    fake.__doc__ = ">>> import torch\n>>> torch.zeros(2).view(3)\n"
    assert "RuntimeError" in failures(fake)[1]
