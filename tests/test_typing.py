"""Types: ``mypy equilayers`` reports no error, and neither does mypy on the ```python blocks
of README.md and docs/**/*.md (what a user copies must type-check against our hints).

One mypy run (pyproject.toml's [tool.mypy], a fresh cache in a temp dir) checks the package,
every block (each its own file in a temp dir, its lines at the Markdown page's line numbers)
and a negative control: a snippet with a deliberate type error, which must be reported (a
check that cannot fail proves nothing). Skipped, naming ``pip install mypy``, where mypy is not
installed (it is in the test extra).
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_docs import BLOCKS as DOC_BLOCKS
from test_docs import Block, extract

ROOT = Path(__file__).resolve().parents[1]
README_BLOCKS = extract((ROOT / "README.md").read_text(), "README.md")

# ``antialias(..., return_report=True)`` returns (model, report): a tuple has no .eval()
CONTROL = """\
import torch

import equilayers

model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, 2, 1), torch.nn.MaxPool2d(2))
equilayers.antialias(model, return_report=True).eval()
"""
CONTROL_LINE = 6

# Uses the docstrings describe that the hints once refused: kornia's equal pairs for
# BlurPool2d, a model returning (logits, pose) to the consistency metrics
USAGE = """\
import torch

from equilayers.metrics import consistency, pixel_consistency
from equilayers.nn import BlurPool2d
from equilayers.functional import blur_pool2d

pool = BlurPool2d(3, kernel_size=(3, 3), stride=(2, 2))
y = blur_pool2d(torch.randn(1, 3, 8, 8), (3, 3), (2, 2))


def with_pose(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x.mean((2, 3)), x.mean((1, 2, 3))


def dense_with_pose(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x, x.mean((1, 2, 3))


score = consistency(with_pose, torch.randn(2, 3, 8, 8), "rot90")
per_pixel = pixel_consistency(dense_with_pose, torch.randn(2, 3, 8, 8), "shifts")
"""

_ERROR = re.compile(r"^(?P<file>[^:\n]+):(?P<line>\d+): error: (?P<msg>.*)$", re.M)


@dataclass
class MypyRun:
    output: str
    errors: dict[str, list[str]]  # file (a block id, "control", or a path) -> "line: message"


#: one mypy run (the module fixture) serves every test here: one worker under pytest-xdist
pytestmark = pytest.mark.xdist_group("mypy")


@pytest.fixture(scope="module")
def mypy_run(tmp_path_factory) -> MypyRun:
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed: pip install mypy (or the test extra, "
                    "pip install -e '.[test]')")
    tmp = tmp_path_factory.mktemp("typing")
    names: dict[str, str] = {}  # file path -> what it holds
    for i, block in enumerate(README_BLOCKS + DOC_BLOCKS):
        path = tmp / f"block_{i:03d}.py"
        path.write_text("\n" * block.line + block.code)  # mypy's line = the page's line
        names[str(path)] = block.id
    control = tmp / "control.py"
    control.write_text(CONTROL)
    names[str(control)] = "control"
    usage = tmp / "usage.py"
    usage.write_text(USAGE)
    names[str(usage)] = "usage"  # no error allowed (the check below: only the control's)
    cmd = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
           "--cache-dir", str(tmp / "cache"), "--no-color-output", "equilayers",
           *names]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    if proc.returncode not in (0, 1):  # 2: mypy itself failed (bad config, crash)
        pytest.fail(f"mypy failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    errors: dict[str, list[str]] = {}
    for m in _ERROR.finditer(proc.stdout):
        key = names.get(m["file"], m["file"])
        errors.setdefault(key, []).append(f"{m['line']}: {m['msg']}")
    return MypyRun(proc.stdout, errors)


def _blocks_found(blocks: list[Block]) -> None:
    assert blocks and all(b.code.strip() for b in blocks)


def test_blocks_are_found():
    # an extractor that finds nothing would make the check below pass vacuously
    _blocks_found(README_BLOCKS)
    _blocks_found(DOC_BLOCKS)
    assert len(README_BLOCKS) >= 4 and len(DOC_BLOCKS) >= 10


def test_package_has_no_type_errors(mypy_run):
    ours = {f: e for f, e in mypy_run.errors.items() if f.startswith("equilayers")}
    assert not ours, mypy_run.output


def test_readme_and_docs_blocks_have_no_type_errors(mypy_run):
    blocks = {f: e for f, e in mypy_run.errors.items() if f.startswith(("README", "docs"))}
    assert not blocks, mypy_run.output
    # nothing else reported either (a file of neither kind: an unexpected path)
    assert set(mypy_run.errors) <= {"control"}, mypy_run.output


def test_negative_control_is_reported(mypy_run):
    found = mypy_run.errors.get("control", [])
    assert len(found) == 1 and found[0].startswith(f"{CONTROL_LINE}: "), mypy_run.output
    assert '"eval"' in found[0] and "tuple" in found[0], found


def test_usage_snippet_runs():
    # what it type-checks is what the library takes at run time
    exec(compile(USAGE, "usage.py", "exec"), {})
