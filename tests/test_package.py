import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import equilayers
from equilayers.testing.cases import all_cases, run_case

OPTIONAL = ["triton", "scipy", "matplotlib", "escnn", "e2cnn", "kornia", "skimage", "rich"]


def test_import_is_light():
    """``import equilayers`` pulls in no optional package (its time is not a unit test: on this
    2-core machine it is 0.1-0.2 s after torch, and a loaded machine makes any bound flaky)."""
    code = ("import sys; import torch; import equilayers; "
            f"print([m for m in {OPTIONAL!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]", f"import equilayers pulled in optional packages: {out}"


def test_public_api():
    for mod in [equilayers, equilayers.groups, equilayers.testing, equilayers.functional,
                equilayers.nn, equilayers.metrics]:
        for name in mod.__all__:
            assert hasattr(mod, name), f"{mod.__name__}.__all__ lists missing {name}"
    assert (Path(equilayers.__file__).parent / "py.typed").exists()


def test_cli_selfcheck_runs():
    out = subprocess.run([sys.executable, "-m", "equilayers", "selfcheck", "--filter",
                          "harness/"], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "random-conv-p4-fails" in out.stdout and "cases behave as expected" in out.stdout



def test_cli_selfcheck_filter_matching_nothing_fails_in_one_line():
    """A --filter that matches no case is a typo, not a pass (it printed an empty table and
    exited 0)."""
    out = subprocess.run([sys.executable, "-m", "equilayers", "selfcheck", "--filter",
                          "no-such-case"], capture_output=True, text=True)
    assert out.returncode == 2 and out.stdout == "", out.stdout + out.stderr
    assert out.stderr.splitlines() == ["equilayers selfcheck: no case name contains "
                                       "'no-such-case'; `equilayers selfcheck --list` lists "
                                       "them all"]
    listed = subprocess.run([sys.executable, "-m", "equilayers", "selfcheck", "--list",
                             "--filter", "no-such-case"], capture_output=True, text=True)
    assert listed.returncode == 2 and listed.stderr == out.stderr


def test_cli_selfcheck_list_names_the_cases_without_running_them(monkeypatch, capsys):
    """--list prints every case it would run (name, group or 'shift', expectation), one a
    line, and runs none (run_case is replaced by one that fails); with --filter, the
    matching ones. The control: without --list the same call runs them."""
    from equilayers import cli
    from equilayers.testing import cases as case_table

    def no_run(case):
        raise AssertionError(f"--list ran {case.name}")

    monkeypatch.setattr(case_table, "run_case", no_run)
    assert cli.main(["selfcheck", "--list"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    everything = all_cases()
    assert [r[0] for r in rows] == [c.name for c in everything]
    assert all(r[1] == ("shift" if c.kind == "shift" else c.group) and r[2] == c.expect
               for r, c in zip(rows, everything, strict=True))
    assert {"exact", "fail"} <= {r[2] for r in rows}
    assert cli.main(["selfcheck", "--list", "--filter", "harness/"]) == 0
    listed = capsys.readouterr().out.split()
    assert "random-conv-p4-fails" in " ".join(listed)
    assert [w for w in listed if "/" in w] == [c.name for c in everything
                                                if "harness/" in c.name]
    with pytest.raises(AssertionError, match="--list ran harness/"):
        cli.main(["selfcheck", "--filter", "harness/"])
    proc = subprocess.run([sys.executable, "-m", "equilayers", "selfcheck", "--help"],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "--list" in proc.stdout and "without" in proc.stdout

@pytest.mark.parametrize("argv, says", [
    ([], "a command comes first: equilayers selfcheck | demo | bench | audit"),
    (["--bogus"], "unrecognized arguments: --bogus; a command comes first"),
    (["selfcheck", "--bogus"], "unrecognized arguments: --bogus"),  # the control
])
def test_cli_without_a_command_names_the_commands(argv, says, capsys):
    """`equilayers` alone or with an unknown option is a usage error (exit 2) naming the
    commands and the option: argparse said only 'the following arguments are required:
    command', also for `equilayers --bogus`."""
    from equilayers import cli

    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and says in err, err
    assert "required: command" not in err


@pytest.mark.parametrize("columns", [80, 100, 200])
def test_cli_selfcheck_fits_the_terminal(columns):
    """Wide terminals get one line per case; narrower ones each case's name above its values;
    no line runs past the edge (the skipped status included), and every case is listed."""
    cases = [c.name for c in all_cases() if "unet-polyphase-every-shift" in c.name]
    proc = subprocess.run([sys.executable, "-m", "equilayers", "selfcheck", "--filter",
                           "unet-polyphase-every-shift"], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": str(columns)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert max(map(len, lines)) <= columns, proc.stdout
    assert [w for w in proc.stdout.split() if w in cases] == cases
    one_line = columns == 200
    assert (lines[0].split()[0] == "case" and len(lines[0].split()) > 1) is one_line, lines[0]
    # the control: the same cases do not fit 80 columns one per line
    assert max(len(c) for c in cases) + 60 > 80


def test_cli_selfcheck_prints_only_its_table():
    """The table is the news: stdout holds the table and its summary line, stderr nothing, even
    under ``-W default`` and for negative controls that run layers at inexact sizes (which
    warn when run on their own: the control below)."""
    cases = [c for c in all_cases() if "even-size-fails" in c.name]
    with pytest.warns(UserWarning, match="is not exactly equivariant"):
        run_case(next(c for c in cases if c.name == "gconv/p4/stride2-even-size-fails"))
    proc = subprocess.run([sys.executable, "-W", "default", "-m", "equilayers", "selfcheck",
                           "--filter", "even-size-fails"], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stderr == ""
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["case", "group", "expect", "error", "limit", "floor", "worst",
                                "element", "status"]
    assert set(lines[1]) == {"-", " "}
    assert lines[-2:] == ["", f"{len(cases)} of {len(cases)} cases behave as expected"]
    rows = lines[2:-2]
    assert [r.split()[0] for r in rows] == [c.name for c in cases]
    assert all(re.search(r"\bfail\s.*\bok$", r.rstrip()) for r in rows), rows


def test_cli_output_cut_short_by_a_pipe_ends_quietly():
    """`equilayers selfcheck --list | head -1` ended in a BrokenPipeError traceback."""
    proc = subprocess.Popen([sys.executable, "-m", "equilayers", "selfcheck", "--list"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline().strip()  # the first case, then the reader goes away
    proc.stdout.close()
    err = proc.stderr.read()
    proc.wait(timeout=60)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


def test_cli_is_quiet_without_numpy(tmp_path):
    """The core install has no NumPy, and torch warns at import when it is missing: our command
    line hides exactly that warning; a library import (and torch's own) still shows it."""
    (tmp_path / "numpy").mkdir()
    (tmp_path / "numpy" / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'numpy'\", name='numpy')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(tmp_path), str(Path(equilayers.__file__).parent.parent)])}

    def run(*args):
        return subprocess.run([sys.executable, "-W", "default", *args], capture_output=True,
                              text=True, env=env, cwd=tmp_path)

    cli = run("-m", "equilayers", "selfcheck", "--filter", "harness/identity-p4m")
    assert cli.returncode == 0 and "1 of 1 cases" in cli.stdout, cli.stdout + cli.stderr
    assert cli.stderr == ""
    for code in ("import torch", "import equilayers"):  # the controls
        assert "Failed to initialize NumPy" in run("-c", code).stderr, code


def test_selfcheck_without_scikit_image_skips_those_cases(monkeypatch, capsys):
    """After a plain `pip install equilayers` (no scikit-image) selfcheck prints its table and
    says which cases it skipped and what to install, instead of a traceback."""
    import builtins

    from equilayers import cli
    from equilayers.testing import _cases_harmonic

    _cases_harmonic._camera.cache_clear()
    real_import = builtins.__import__

    def no_skimage(name, *args, **kwargs):
        if name == "skimage" or name.startswith("skimage."):
            raise ModuleNotFoundError("No module named 'skimage'", name="skimage")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_skimage)
    monkeypatch.setenv("COLUMNS", "200")  # one line per case
    try:
        rc = cli.main(["selfcheck", "--filter", "camera"])
    finally:
        _cases_harmonic._camera.cache_clear()
    out = capsys.readouterr().out
    assert rc == 0, out
    rows = [line.split() for line in out.splitlines() if "camera" in line]
    assert rows and all(r[-1] == "skipped" for r in rows), out
    assert "skipped: they need scikit-image (pip install 'equilayers[test]')" in out


def test_make_says_what_it_installs_before_it_does(tmp_path):
    """`make test`/`make demo` announce the venv's size and its extras before pip runs, and the
    peers venv announces the system-wide apt-get of gfortran (needs root) before running it
    (read from `make -n`, which prints the recipes without running them)."""
    import shutil

    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    root = Path(__file__).resolve().parents[1]

    def dry(target: str, **var: str) -> list[str]:
        args = [f"{k}={v}" for k, v in var.items()]
        out = subprocess.run(["make", "-n", "-B", *args, target], cwd=root, text=True,
                             capture_output=True, check=True).stdout
        return out.replace("\\\n", " ").splitlines()

    venv = tmp_path / "v"
    lines = dry(f"{venv}/.equilayers-installed", VENV=str(venv))
    said = next(i for i, line in enumerate(lines) if line.startswith("echo") and "1 GB" in line)
    pip = next(i for i, line in enumerate(lines) if "pip install -e" in line)
    assert said < pip and "triton" in lines[said] and "docs" in lines[said], lines
    peers = tmp_path / "p"
    lines = dry(f"{peers}/.equilayers-peers-installed", PEERS=str(peers))
    said = next(i for i, line in enumerate(lines) if "echo" in line and "apt-get" in line)
    apt = next(i for i, line in enumerate(lines) if "apt-get install" in line
               and "echo" not in line)
    assert said < apt and "needs root" in lines[said], lines


def test_make_runs_every_escnn_test_file_in_the_peers_venv():
    """The main venv skips the tests that need escnn, kornia or antialiased-cnns
    (``_peers.ESCNN_MISSING``, ``KORNIA_MISSING``, ``ANTIALIASED_CNNS_MISSING``); ``make
    test-peers`` runs them in the peers venv by a list of files, which must name every test
    file that can skip so, directly or through a ``tests/_*.py`` helper that imports it (such
    as ``_interop_common.py``): a file left off never runs anywhere."""
    root = Path(__file__).resolve().parents[1]
    recipe = re.search(r"^test-peers:.*?\n((?:\t.*\n)+)",
                       (root / "Makefile").read_text(), re.M)
    assert recipe, "Makefile has no test-peers recipe"
    listed = set(re.findall(r"tests/(test_\w+\.py)", recipe.group(1)))
    skips = r"^from _peers import .*(ESCNN|KORNIA|ANTIALIASED_CNNS)_MISSING"
    helpers = [p.stem for p in (root / "tests").glob("_*.py")
               if re.search(skips, p.read_text(), re.M)]
    needs = {p.name for p in (root / "tests").glob("test_*.py")
             if re.search(skips, p.read_text(), re.M)
             or any(re.search(rf"^from {h} import ", p.read_text(), re.M) for h in helpers)}
    assert needs and needs <= listed, sorted(needs - listed)


#: The list of torch names equilayers/ uses, each checked present on the release that
#: pyproject.toml's ``torch>=`` floor names (its first line says which).
TORCH_FLOOR_APIS = Path(__file__).parent / "torch_floor_apis.txt"


def _torch_names() -> dict[str, set[str]]:
    """Every dotted torch name used under ``equilayers/`` (``ast``), with the files using it:
    ``torch.a.b`` attribute chains, ``nn.X``/``F.X`` in a file that imports torch's ``nn`` or
    ``functional`` under that name, and ``from torch.a import b``. Keyword arguments are not
    names (``nn.BatchNorm3d(..., bias=)`` needs torch 2.12): the floor's test run finds them."""
    import ast

    def chain(node: ast.AST) -> list[str] | None:
        parts = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        return [node.id, *parts[::-1]] if isinstance(node, ast.Name) else None

    names: dict[str, set[str]] = {}
    root = Path(equilayers.__file__).parent
    for path in sorted(root.rglob("*.py")):
        src = path.read_text()
        alias = {"torch": "torch"}
        if "from torch import nn" in src:
            alias["nn"] = "torch.nn"
        if "import torch.nn.functional as F" in src:
            alias["F"] = "torch.nn.functional"
        for node in ast.walk(ast.parse(src)):
            found = []
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "torch":
                found = [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Attribute) and not isinstance(node.ctx, ast.Store):
                parts = chain(node)
                if parts and parts[0] in alias and not parts[1:2] == ["ops"]:
                    found = [".".join([alias[parts[0]], *parts[1:]])]
            for name in found:
                names.setdefault(name, set()).add(str(path.relative_to(root.parent)))
    # a chain's prefixes are attribute nodes of their own: keep the longest
    return {n: f for n, f in names.items() if not any(m.startswith(n + ".") for m in names)}


def test_every_torch_name_used_is_checked_on_the_torch_floor():
    """A torch API that came after pyproject's ``torch>=`` floor is an AttributeError in the
    middle of a forward for a user on the floor release (``torch.amp.is_autocast_available``
    came in 2.4, with a floor of 2.1 declared). Every torch name the package uses must be in
    tests/torch_floor_apis.txt, the list checked on the floor release; and every name listed
    must exist on the torch running this test (run on the floor release, that is the check).
    The control: a name the package does not use is not found, one it does is."""
    import importlib

    import torch

    pyproject = Path(__file__).parents[1] / "pyproject.toml"
    floor = re.search(r'"torch>=([0-9.]+)"', pyproject.read_text())
    lines = TORCH_FLOOR_APIS.read_text().splitlines()
    assert floor and lines[0] == f"# torch>={floor.group(1)}", (
        f"{TORCH_FLOOR_APIS.name} was checked on {lines[0]!r}, pyproject.toml's floor is "
        f"{floor and floor.group(0)}: check the list on the new floor and update its first line")
    listed = {line for line in lines[1:] if line and not line.startswith("#")}
    used = _torch_names()
    assert "torch.nn.functional.pad" in used and "torch.no_such_api" not in used  # control
    assert listed <= set(used), f"listed, no longer used: {sorted(listed - set(used))}"
    new = {n: sorted(f) for n, f in used.items() if n not in listed}
    assert not new, (
        f"equilayers uses torch names not checked on torch {floor.group(1)} (pyproject's "
        f"floor): {new}. Check each exists there (a venv with torch=={floor.group(1)}) and add it "
        f"to tests/{TORCH_FLOOR_APIS.name}, or raise the floor")
    missing = []
    for name in sorted(listed):
        obj: object = torch
        parts = name.split(".")
        for i, part in enumerate(parts[1:], 1):
            try:
                obj = getattr(obj, part)
            except AttributeError:
                try:
                    obj = importlib.import_module(".".join(parts[: i + 1]))
                except ImportError:
                    missing.append(name)
                    break
    assert not missing, f"torch {torch.__version__} lacks {missing}, which equilayers uses"


def test_the_sdist_carries_what_the_tests_read():
    """The sdist shipped ``tests/test*.py`` alone (setuptools' default): no conftest, no
    ``tests/_*.py`` helpers, no docs, examples or benchmarks that tests read, so collecting
    its tests gave 93 errors. MANIFEST.in grafts every top-level folder the suite reads."""
    root = Path(__file__).resolve().parents[1]
    lines = (root / "MANIFEST.in").read_text().splitlines()
    grafted = {line.split()[1] for line in lines if line.startswith("graft ")}
    read = {"tests", "docs", "examples", "benchmarks"}
    assert read <= grafted, read - grafted
    included = {w for line in lines if line.startswith("include ") for w in line.split()[1:]}
    assert {"ARCHITECTURE.md", "Makefile", "mkdocs.yml"} <= included
