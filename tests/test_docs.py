"""The documentation site: every ```python block of docs/**/*.md runs, and the site builds.

Each block runs as written in a fresh namespace (as tests/test_readme.py does for the README),
so every block can be copied on its own. A block that needs an optional package is preceded by
a marker line ``<!-- requires: PKG -->``: it runs where ``PKG`` imports and is skipped, naming
``pip install PKG``, where it does not. A block that warns on purpose (to show a warning) is
preceded by ``<!-- warns: WarningClass -->`` (a builtin warning or ``module.Class``): the test
asserts it warns with that class and absorbs the warning, so the suite runs without warnings.
Any other ``<!-- ... -->`` line right before a block is an error, so a typo cannot silently
skip one. The site build (``mkdocs build --strict``, warnings
as errors) runs where the docs extra is installed and is skipped, naming it, elsewhere.
"""

from __future__ import annotations

import builtins
import importlib
import importlib.util
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from _peers import ESCNN_MISSING

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

_FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[^\s`]*)[^\n]*$")
_MARKER = re.compile(r"^\s*<!--\s*(?P<body>.*?)\s*-->\s*$")
_REQUIRES = re.compile(r"^requires:\s*(?P<pkg>[A-Za-z0-9_.-]+)$")
_WARNS = re.compile(r"^warns:\s*(?P<cls>[A-Za-z_][A-Za-z0-9_.]*)$")
_MARKERS = "<!-- requires: PKG --> and <!-- warns: WarningClass -->"


@dataclass(frozen=True)
class Block:
    """One fenced ```python block: where it is, its code, the package it needs and the
    warning it emits on purpose."""

    path: str
    line: int  # 1-based line of the opening fence
    code: str
    requires: str | None = None
    warns: str | None = None

    @property
    def id(self) -> str:
        return f"{self.path}:{self.line}"


def warning_class(name: str) -> type[Warning]:
    """The warning class a ``<!-- warns: NAME -->`` marker names: a builtin (``UserWarning``)
    or ``module.Class``; ``ValueError`` for anything else."""
    module, _, attr = name.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module) if module else builtins, attr, None)
    except ImportError:
        cls = None
    if not (isinstance(cls, type) and issubclass(cls, Warning)):
        raise ValueError(f"warns: {name!r} is not a warning class (a builtin such as "
                         "UserWarning, or module.Class)")
    return cls


def extract(text: str, path: str = "<md>") -> list[Block]:
    """The ```python blocks of a Markdown text, with their ``<!-- requires: PKG -->`` and
    ``<!-- warns: WarningClass -->`` markers (on the lines right above the block).

    Raises ``ValueError`` on an unterminated fence, or an unknown, repeated or ill-formed
    marker before a python block.
    """
    lines = text.split("\n")
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start, indent, lang = i, m["indent"], m["lang"]
        i += 1
        body = []
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i])
            i += 1
        if i == len(lines):
            raise ValueError(f"{path}:{start + 1}: unterminated ``` fence")
        i += 1
        if lang != "python":
            continue
        found: dict[str, str] = {}
        prev = start - 1
        while prev >= 0:
            if not lines[prev].strip():
                prev -= 1
                continue
            marker = _MARKER.match(lines[prev])
            if not marker:
                break
            kind, value = _marker(marker["body"], f"{path}:{start + 1}", lines[prev].strip())
            if kind in found:
                raise ValueError(f"{path}:{start + 1}: two {kind} markers before a python block")
            found[kind] = value
            prev -= 1
        blocks.append(Block(path, start + 1, "\n".join(body) + "\n", found.get("requires"),
                            found.get("warns")))
    return blocks


def _marker(body: str, where: str, line: str) -> tuple[str, str]:
    req, warns = _REQUIRES.match(body), _WARNS.match(body)
    if req:
        return "requires", req["pkg"]
    if warns:
        warning_class(warns["cls"])  # a typo is an error here, not a silent pass
        return "warns", warns["cls"]
    raise ValueError(f"{where}: unknown marker {line!r} before a python block; the markers are "
                     f"{_MARKERS}")


def run(block: Block) -> None:
    """Run a block in a fresh namespace; errors carry the page and line in their traceback."""
    code = compile("\n" * (block.line) + block.code, block.path, "exec")
    exec(code, {"__name__": "__docs__"})


def _all_blocks() -> list[Block]:
    blocks = []
    for md in sorted(DOCS.rglob("*.md")):
        blocks += extract(md.read_text(), str(md.relative_to(ROOT)))
    return blocks


BLOCKS = _all_blocks()


def test_docs_have_python_blocks():
    # a broken extractor must not pass by finding nothing
    assert len(BLOCKS) >= 10, [b.id for b in BLOCKS]
    pages = {b.path for b in BLOCKS}
    for page in ("docs/conventions.md", "docs/layers/antialias.md", "docs/escnn.md"):
        assert page in pages


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_docs_block_runs(block):
    if block.requires and importlib.util.find_spec(block.requires) is None:
        pytest.skip(ESCNN_MISSING if block.requires == "escnn" else
                    f"{block.id} needs {block.requires}: pip install {block.requires}")
    if block.warns:
        with pytest.warns(warning_class(block.warns)):
            run(block)
    else:
        run(block)


# --- the extractor and the runner on known inputs (negative controls) ---------------------

_SAMPLE = """# page

```bash
echo not python
```

```python
x = 1 + 1
```

<!-- requires: some_package -->

```python
import some_package
```

<!-- warns: RuntimeWarning -->
<!-- requires: warnings -->

```python
import warnings
warnings.warn("on purpose", RuntimeWarning)
```

- a list item with an indented block:

    ```python
    y = 2
    ```

```python
raise ValueError("deliberately failing snippet")
```
"""


def test_extract_sample():
    blocks = extract(_SAMPLE, "sample.md")
    assert [(b.line, b.requires, b.warns) for b in blocks] == [
        (7, None, None), (13, "some_package", None), (20, "warnings", "RuntimeWarning"),
        (27, None, None), (31, None, None)]
    assert blocks[0].code == "x = 1 + 1\n"
    assert blocks[3].code == "y = 2\n"


def test_warns_marker_asserts_and_absorbs_the_warning():
    """The block marked ``warns`` passes by warning (its warning absorbed); a block that does
    not warn fails (negative control), as does a marker that names no warning class."""
    block = extract(_SAMPLE, "sample.md")[2]
    with pytest.warns(warning_class(block.warns)):
        run(block)
    quiet = extract("<!-- warns: UserWarning -->\n```python\nx = 1\n```\n", "q.md")[0]
    with pytest.raises(pytest.fail.Exception, match="DID NOT WARN"):
        with pytest.warns(warning_class(quiet.warns)):
            run(quiet)
    assert warning_class("pytest.PytestWarning") is pytest.PytestWarning  # module.Class
    for bad in ("NotAWarning", "ValueError", "equilayers.nope.Warning"):
        with pytest.raises(ValueError, match="is not a warning class"):
            extract(f"<!-- warns: {bad} -->\n```python\nx = 1\n```\n", "m.md")
    with pytest.raises(ValueError, match="two warns markers"):
        extract("<!-- warns: UserWarning -->\n<!-- warns: UserWarning -->\n```python\nx = 1\n"
                "```\n", "m.md")


def test_failing_block_is_reported_with_its_line():
    failing = extract(_SAMPLE, "sample.md")[-1]
    with pytest.raises(ValueError, match="deliberately failing snippet") as info:
        run(failing)
    frame = info.traceback[-1]
    assert (str(frame.path), frame.lineno + 1) == ("sample.md", 32)  # the line of the raise


def test_unknown_marker_and_open_fence_are_errors():
    with pytest.raises(ValueError, match="unknown marker"):
        extract("<!-- skip -->\n```python\nx = 1\n```\n", "m.md")
    with pytest.raises(ValueError, match="unterminated"):
        extract("```python\nx = 1\n", "m.md")


# --- the site ------------------------------------------------------------------------------

def test_site_builds_strict(tmp_path):
    if sys.version_info < (3, 11):
        pytest.skip("the site's tools (mkdocs-material >= 9.8, mkdocstrings >= 1.0.7) need "
                    "Python >= 3.11; the docs extra installs them only there")
    for module in ("mkdocs", "material", "mkdocstrings_handlers.python", "matplotlib"):
        if importlib.util.find_spec(module.split(".")[0]) is None or (
                "." in module and importlib.util.find_spec(module) is None):
            pytest.skip(f"{module} is not installed: pip install -e .[docs] "
                        "(or make docs) to build the site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    for page in ("index.html", "conventions/index.html", "api/nn/index.html",
                 "benchmarks/index.html", "figures/rot90_fiber.svg", "examples/index.html",
                 "figures/examples/p4m_resnet.png"):
        assert (tmp_path / page).is_file(), page
    # every public name has its entry on its API page (the group convs, whose docstrings are
    # composed, and interop's re-exported helpers were silently left out); the table's two
    # views, computed at access, are named in the page's text
    for sub in ("functional", "groups", "interop", "kernels", "metrics", "models", "nn",
                "testing"):
        html = (tmp_path / "api" / sub / "index.html").read_text()
        names = importlib.import_module(f"equilayers.{sub}").__all__
        missing = [n for n in names if f'id="equilayers.{sub}.{n}"' not in html
                   and not (sub == "kernels" and f"equilayers.kernels.{n}" in html)]
        assert not missing, (sub, missing)
