"""The import rule of ``ARCHITECTURE.md``: a module imports only modules of its own floor or of
lower floors, never a higher one.

Every ``import``/``from ... import`` under ``equilayers/`` (module level and inside functions,
relative ones resolved) is read with :mod:`ast`; each module is on the floor of the longest
prefix in :data:`FLOORS`. The negative controls feed the same checker a synthetic upward edge.
"""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path
from types import SimpleNamespace

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
    "equilayers._rng": 0,
    "equilayers._modes": 0,
    "equilayers._host": 0,
    "equilayers._proxy": 0,
    # 1: groups and how they act
    "equilayers.groups": 1,
    # 2: kernels: the ops' references, specs, fast paths, Triton kernels, the op table
    "equilayers.kernels": 2,
    # 3: functional: pure functions on tensors, the public ops
    "equilayers.functional": 3,
    # the equivariance harness, below nn: it asks the group interface only
    "equilayers.testing._harness": 3,
    "equilayers.testing._fields": 3,
    "equilayers.testing._case": 3,
    "equilayers.testing.controls": 3,
    # 4: nn: modules that own parameters and call their functional twins
    "equilayers.nn": 4,
    "equilayers._batchnorm": 4,
    # 5: models assembled from nn (builders of whole networks)
    "equilayers.models": 5,
    # 6: tools over any model: measure, test, check, convert, rewrite; the case table (it
    # builds the layers and models)
    "equilayers.metrics": 6,
    "equilayers.testing": 6,
    "equilayers._grid": 6,
    "equilayers._grid3d": 6,
    "equilayers._grid_calls": 6,
    "equilayers._grid_sizes": 6,
    "equilayers._grid_shifts": 6,
    "equilayers._grid_runs": 6,
    "equilayers._grid_types": 6,
    "equilayers._audit": 6,
    "equilayers._surgery": 6,
    "equilayers._surgery_kept": 6,
    "equilayers._export": 6,
    "equilayers._hooks": 6,
    "equilayers._fx": 6,
    "equilayers.interop": 6,
    "equilayers._interop_tools": 6,
    "equilayers._interop_modules": 6,
    "equilayers._interop3d": 6,
    "equilayers._interop_so3": 6,
    "equilayers._interop_so2": 6,
    "equilayers._interop_tensor": 6,
    "equilayers._interop_linear": 6,
    "equilayers._interop_pools": 6,
    "equilayers._interop_regular2d": 6,
    "equilayers._interop_harmonic_conv": 6,
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
    ("equilayers.nn._group_conv", "equilayers.testing.cases"),
    ("equilayers.testing._harness", "equilayers.nn._blur_pool"),  # the harness is below nn
    ("equilayers.testing._case", "equilayers.testing._cases_gconv"),
    ("equilayers.metrics._lie", "equilayers"),  # the front door is the top floor
    ("equilayers.nn._blur_pool", "equilayers.models._unet"),  # a layer using a model
    ("equilayers.models._unet", "equilayers.testing.cases"),  # a model using a tool
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
    assert capsys.readouterr().out.startswith("box_pool2d: fast[unfold] (PyTorch fast path: unfold")
    assert get_op("box_pool2d") is None


# --- one argument spec, one RNG rule, public harness names, explicit case families --------

TESTS = ROOT / "tests"

#: Calls that seed or set torch's (or numpy's, or Python's) global random state.
GLOBAL_SEEDING = {"torch.manual_seed", "torch.random.manual_seed", "torch.seed",
                  "torch.random.seed", "torch.cuda.manual_seed", "torch.cuda.manual_seed_all",
                  "torch.set_rng_state", "torch.random.set_rng_state", "np.random.seed",
                  "numpy.random.seed", "random.seed"}

#: The one module that sets the global generator's state (inside ``fork_rng``, restored).
RNG_MODULE = PACKAGE / "_rng.py"


def global_seeding(source: str, where: str) -> list[str]:
    """The calls in ``source`` that seed or set a global random state (``GLOBAL_SEEDING``, or
    ``default_generator.set_state`` / ``.manual_seed``)."""
    found = []
    for node in ast.walk(ast.parse(source, where)):
        if not isinstance(node, ast.Call):
            continue
        name = ast.unparse(node.func)
        if name in GLOBAL_SEEDING or (name.endswith(("default_generator.set_state",
                                                     "default_generator.manual_seed"))):
            found.append(f"{where}:{node.lineno}: {name}(...)")
    return found


def test_nothing_seeds_the_global_rng():
    """Randomness comes from ``torch.Generator``\\ s: library code takes ``generator=``, module
    initialisers run under ``_rng.global_rng_from`` (tests: ``conftest.seeded_rng`` and the
    autouse fixture), and no code in ``equilayers/`` or ``tests/`` seeds a global RNG."""
    paths = [p for p in sorted(PACKAGE.rglob("*.py")) + sorted(TESTS.glob("*.py"))
             if p != RNG_MODULE]
    bad = [hit for p in paths for hit in global_seeding(p.read_text(), str(p.relative_to(ROOT)))]
    assert not bad, "seed a torch.Generator instead (see equilayers/_rng.py):\n" + "\n".join(bad)


def test_global_seeding_is_flagged():
    """Negative control: the checker finds seeding calls, however spelled, and not generators."""
    src = ("import torch, random\nimport numpy as np\ntorch.manual_seed(0)\n"
           "torch.random.default_generator.set_state(s)\nnp.random.seed(1)\nrandom.seed(2)\n"
           "g = torch.Generator().manual_seed(0)\ntorch.randn(3, generator=g)\n")
    assert [h.split(": ")[1] for h in global_seeding(src, "m.py")] == [
        "torch.manual_seed(...)", "torch.random.default_generator.set_state(...)",
        "np.random.seed(...)", "random.seed(...)"]


def private_harness_imports(path: Path, root: Path = ROOT) -> list[str]:
    """``from equilayers.testing... import _name`` in a module outside ``equilayers.testing``:
    the metrics (and anything else) use the harness's public names."""
    module = _module_name(path, root)
    if _under(module, "equilayers.testing"):
        return []
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    bad = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            if _under(base, "equilayers.testing"):
                bad += [f"{path.relative_to(root)}:{node.lineno}: {a.name} from {base}"
                        for a in node.names if a.name.startswith("_")
                        and not _is_module(f"{base}.{a.name}", root)]
    return bad


def test_no_module_imports_private_names_of_the_harness(tmp_path):
    bad = [hit for p in sorted(PACKAGE.rglob("*.py")) for hit in private_harness_imports(p)]
    assert not bad, bad
    # negative control: a metric importing a private helper of the harness is flagged
    (tmp_path / "equilayers" / "metrics").mkdir(parents=True)
    (tmp_path / "equilayers" / "testing").mkdir()
    (tmp_path / "equilayers" / "testing" / "_harness.py").write_text("")
    probe = tmp_path / "equilayers" / "metrics" / "_probe.py"
    probe.write_text("from ..testing._harness import _rel, relative_error\n"
                     "from ..testing import _harness\n")
    assert private_harness_imports(probe, tmp_path) == [
        "equilayers/metrics/_probe.py:1: _rel from equilayers.testing._harness"]


def test_case_families_are_imported_explicitly():
    """``testing/cases.py`` imports every ``_cases_*`` family by name (no ``importlib``, no
    strings) and lists each in ``_FAMILIES``; a family file it does not import is an error."""
    from equilayers.testing import cases

    source = (PACKAGE / "testing" / "cases.py").read_text()
    assert "importlib" not in source
    files = {p.stem for p in (PACKAGE / "testing").glob("_cases_*.py")}
    listed = {m.__name__.rpartition(".")[2] for m in cases._FAMILIES}
    assert listed == files, f"not in _FAMILIES: {files - listed}"


#: Modules no other module of the package imports: the entry points, and public modules that
#: users import by name.
IMPORTED_BY_USERS = {"equilayers", "equilayers.__main__", "equilayers.interop"}


def test_every_module_serves_the_package():
    """Each module of ``equilayers/`` is imported by another one (or is an entry point): a
    module only the tests use belongs in ``tests/`` (as ``_zoo.py`` and ``_ddp.py`` now do),
    not in the wheel."""
    imported = {dst for _, dst, _ in package_edges()}
    unused = sorted(m for m in map(_module_name, PACKAGE.rglob("*.py"))
                    if m not in imported and m not in IMPORTED_BY_USERS)
    assert not unused, f"nothing in equilayers/ imports these (test-only? tests/): {unused}"


def type_ignores_without_reason(source: str, where: str) -> list[str]:
    """``# type: ignore`` comments without an error code, or without a reason (a comment after
    it on its line, or a comment line right above)."""
    bad = []
    lines = source.split("\n")
    for i, line in enumerate(lines):
        if "type: ignore" not in line:
            continue
        code = re.search(r"#\s*type:\s*ignore\[[\w-]+(,\s*[\w-]+)*\](?P<rest>.*)$", line)
        above = lines[i - 1].strip().startswith("#") if i else False
        if code is None or not (code["rest"].strip().startswith("#") or above):
            bad.append(f"{where}:{i + 1}: {line.strip()}")
    return bad


def test_every_type_ignore_has_a_code_and_a_reason():
    bad = [hit for p in sorted(PACKAGE.rglob("*.py"))
           for hit in type_ignores_without_reason(p.read_text(), str(p.relative_to(ROOT)))]
    assert not bad, "give each an error code and a reason, or fix the types:\n" + "\n".join(bad)
    # negative control
    src = ("x = f()  # type: ignore\ny = g()  # type: ignore[arg-type]\n"
           "z = h()  # type: ignore[misc]  # torch's stub lacks the overload\n"
           "# the stub types it as int\nw = k()  # type: ignore[assignment]\n")
    assert [h.split(":")[1] for h in type_ignores_without_reason(src, "m.py")] == ["1", "2"]


#: The house style: "Split a file before it passes ~500 lines"; the redesign issue's limit.
MAX_LINES = 500


def _long_files(root: Path) -> list[str]:
    return [f"{p.relative_to(root)}: {n} lines" for p in sorted(root.rglob("*.py"))
            if (n := len(p.read_text().splitlines())) > MAX_LINES]


def test_no_module_is_over_500_lines(tmp_path):
    assert _long_files(PACKAGE) == []
    # the control: a file one line over is named
    (tmp_path / "big.py").write_text("x = 1\n" * (MAX_LINES + 1))
    (tmp_path / "ok.py").write_text("x = 1\n" * MAX_LINES)
    assert _long_files(tmp_path) == [f"big.py: {MAX_LINES + 1} lines"]


#: Public modules of ``equilayers.nn`` with no functional twin, each with the reason (a
#: container or head composed of other modules, whose forward is theirs). Empty: every
#: module has one (the house style: "Every module has a functional twin; forward just calls it").
NO_FUNCTIONAL_TWIN: dict[str, str] = {}

_TWIN = re.compile(r"Functional twin: :func:`~equilayers\.functional\.(\w+)`")


def twin_problems(nn_namespace, functional_namespace, exempt: dict[str, str]) -> list[str]:
    """What breaks the rule that every public module names its functional twin in its
    docstring (``Functional twin: :func:`~equilayers.functional.name```), the twin being public
    in ``functional_namespace``, or is listed in ``exempt`` (and then names none)."""
    bad = []
    for name in nn_namespace.__all__:
        twins = _TWIN.findall(inspect.getdoc(getattr(nn_namespace, name)) or "")
        if name in exempt:
            if twins:
                bad.append(f"{name} names its twin {twins}: drop it from NO_FUNCTIONAL_TWIN")
            continue
        if not twins:
            bad.append(f"{name}: the docstring names no functional twin (add 'Functional twin: "
                       ":func:`~equilayers.functional.<name>`.') and it is not in "
                       "NO_FUNCTIONAL_TWIN")
        bad += [f"{name} names {t}, which is not in equilayers.functional.__all__"
                for t in twins if t not in functional_namespace.__all__]
    bad += [f"NO_FUNCTIONAL_TWIN lists {n}, which is not in equilayers.nn.__all__"
            for n in exempt if n not in nn_namespace.__all__]
    return bad


def test_every_module_names_its_functional_twin():
    import equilayers.functional
    import equilayers.nn

    assert twin_problems(equilayers.nn, equilayers.functional, NO_FUNCTIONAL_TWIN) == []
    # negative controls: no twin named, a twin that is not public, an exempt module naming one,
    # a stale exemption
    def module(doc: str) -> type:
        return type("M", (), {"__doc__": doc})

    twin = "Functional twin: :func:`~equilayers.functional.{}`."
    fake_nn = SimpleNamespace(__all__=["Good", "Silent", "Private", "Head"],
                              Good=module(twin.format("blur_pool2d")),
                              Silent=module("A layer."),
                              Private=module(twin.format("conv_expanded")),
                              Head=module(twin.format("invariant_head")))
    found = twin_problems(fake_nn, equilayers.functional, {"Head": "composed", "Gone": "old"})
    assert [p.split()[0].rstrip(":") for p in found] == ["Silent", "Private", "Head",
                                                          "NO_FUNCTIONAL_TWIN"]
