"""The import rule of ``ARCHITECTURE.md``: a module imports only modules of its own floor or of
lower floors, never a higher one.

Every ``import``/``from ... import`` under ``equilayers/`` (module level and inside functions,
relative ones resolved) is read with :mod:`ast`; each module is on the floor of the longest
prefix in :data:`FLOORS`. The negative controls feed the same checker a synthetic upward edge.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import doc_code

from equilayers.kernels._registry import get_op

ROOT = Path(__file__).parents[1]
PACKAGE = ROOT / "equilayers"

#: The floors of ARCHITECTURE.md, bottom (0) to top; a module is on the floor of its longest
#: prefix here.
FLOORS: dict[str, int] = {
    # 0: shared checks, caches, terminal tables (torch and the standard library only)
    "equilayers._checks": 0,
    "equilayers._cpu_cache": 0,
    "equilayers._table": 0,
    # 1: groups and how they act
    "equilayers.groups": 1,
    # 2: kernels: the ops' references, specs, fast paths, Triton kernels, the op table
    "equilayers.kernels": 2,
    # 3: functional: pure functions on tensors, the public ops
    "equilayers.functional": 3,
    # 4: nn: modules that own parameters and call their functional twins
    "equilayers.nn": 4,
    "equilayers._batchnorm": 4,
    # 5: models assembled from nn (builders of whole networks)
    "equilayers.models": 5,
    # 6: tools over any model: measure, test, check, convert, rewrite
    "equilayers.metrics": 6,
    "equilayers.testing": 6,
    "equilayers._grid": 6,
    "equilayers._audit": 6,
    "equilayers._surgery": 6,
    "equilayers._export": 6,
    "equilayers.interop": 6,
    "equilayers._interop_tools": 6,
    # 7: entry points: the package's front door, the demo, the command line
    "equilayers": 7,
    "equilayers.demo": 7,
    "equilayers.cli": 7,
    "equilayers.__main__": 7,
}

#: Floors that may not be skipped: ``nn`` reaches the kernels only through its functional twins
#: (module -> functional -> kernels.dispatch), never by importing ``kernels``.
NO_SKIP = {("equilayers.nn", "equilayers.kernels")}


def floor(module: str) -> int:
    """The floor of a dotted module name (``KeyError`` for a module outside the map)."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        prefix = ".".join(parts[:n])
        if prefix in FLOORS:
            return FLOORS[prefix]
    raise KeyError(f"{module} is on no floor: add it to FLOORS and to ARCHITECTURE.md")


def _module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(name: str, root: Path) -> bool:
    rel = Path(*name.split("."))
    return (root / rel).with_suffix(".py").exists() or (root / rel / "__init__.py").exists()


def imports(path: Path, root: Path = ROOT) -> list[tuple[str, int]]:
    """``(imported module, line)`` for every import of ``equilayers`` in the file at ``path``;
    ``from pkg import name`` counts as ``pkg.name`` when that is a module, else ``pkg``."""
    module = _module_name(path, root)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(base + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append((sub if _is_module(sub, root) else base, node.lineno))
    return [(name, line) for name, line in found
            if name == "equilayers" or name.startswith("equilayers.")]


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def upward_imports(edges) -> list[str]:
    """The edges ``(importer, imported, where)`` that break the rule: from a lower floor to a
    higher one, or across a floor that may not be skipped (:data:`NO_SKIP`)."""
    bad = []
    for src, dst, where in edges:
        if floor(dst) > floor(src):
            bad.append(f"{where}: {src} (floor {floor(src)}) imports {dst} (floor {floor(dst)})")
        elif any(_under(src, a) and _under(dst, b) for a, b in NO_SKIP):
            bad.append(f"{where}: {src} imports {dst}, skipping the functional floor")
    return bad


def package_edges():
    for path in sorted(PACKAGE.rglob("*.py")):
        src = _module_name(path)
        for dst, line in imports(path):
            yield src, dst, f"{path.relative_to(ROOT)}:{line}"


def test_every_module_is_on_a_floor():
    missing = []
    for path in PACKAGE.rglob("*.py"):
        try:
            floor(_module_name(path))
        except KeyError as exc:
            missing.append(str(exc))
    assert not missing, missing


def test_no_lower_floor_imports_a_higher_one():
    edges = list(package_edges())
    assert len(edges) > 100  # the parser found the package's imports
    bad = upward_imports(edges)
    assert not bad, "upward imports (see ARCHITECTURE.md):\n" + "\n".join(bad)


@pytest.mark.parametrize("src,dst", [
    ("equilayers.kernels._dispatch", "equilayers.functional._blur"),  # a kernel calling up
    ("equilayers.functional._blur", "equilayers.nn._blur_pool"),
    ("equilayers.groups._planar", "equilayers.kernels"),
    ("equilayers._checks", "equilayers.groups"),
    ("equilayers.nn._group_conv", "equilayers.testing._harness"),
    ("equilayers.metrics._lie", "equilayers"),  # the front door is the top floor
    ("equilayers.nn._blur_pool", "equilayers.models._unet"),  # a layer using a model
    ("equilayers.models._unet", "equilayers.testing._harness"),  # a model using a tool
])
def test_an_upward_edge_is_flagged(src, dst):
    """Negative control: the checker flags a synthetic upward edge (and not its reverse)."""
    assert upward_imports([(src, dst, "synthetic")]) != []
    assert upward_imports([(dst, src, "synthetic")]) == []


def test_nn_importing_kernels_is_flagged():
    """Negative control of the no-skip rule: a module calling the dispatcher directly (as
    ``BlurPool2d.forward`` once did) is flagged; through its functional twin it is not."""
    assert upward_imports([("equilayers.nn._blur_pool", "equilayers.kernels", "synthetic")])
    assert not upward_imports([("equilayers.nn._blur_pool", "equilayers.functional._blur", "")])
    assert not upward_imports([("equilayers.functional._blur", "equilayers.kernels", "")])


def test_the_parser_resolves_relative_imports(tmp_path):
    """Negative control of the parser: an upward relative import written into a kernel module
    is resolved and flagged."""
    pkg = tmp_path / "equilayers" / "kernels"
    pkg.mkdir(parents=True)
    (tmp_path / "equilayers" / "__init__.py").write_text("")
    (tmp_path / "equilayers" / "functional").mkdir()
    (tmp_path / "equilayers" / "functional" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    bad = pkg / "_bad.py"
    bad.write_text("from .. import functional\nfrom ._dispatch import x\n\n"
                   "def f():\n    from ..functional import _blur\n")
    got = imports(bad, tmp_path)
    assert got == [("equilayers.functional", 1), ("equilayers.kernels._dispatch", 2),
                   ("equilayers.functional", 5)]
    edges = [("equilayers.kernels._bad", dst, line) for dst, line in got]
    assert len(upward_imports(edges)) == 2


def test_the_worked_example_of_a_kernel_op_runs(monkeypatch, capsys):
    """ARCHITECTURE.md's example registers an op, which dispatches to its fast path on CPU and
    equals its reference; its registration is removed afterwards."""
    monkeypatch.delenv("EQUILAYERS_DISABLE_TRITON", raising=False)
    monkeypatch.delenv("EQUILAYERS_TRITON_INTERPRET", raising=False)
    namespace: dict = {}
    try:
        exec(compile(doc_code("ARCHITECTURE.md", "A new kernel op"), "ARCHITECTURE.md", "exec"),
             namespace)
    finally:
        if "registration" in namespace:
            namespace["registration"].remove()
    assert capsys.readouterr().out.startswith("box_pool2d: fast (PyTorch fast path: unfold")
    assert get_op("box_pool2d") is None
