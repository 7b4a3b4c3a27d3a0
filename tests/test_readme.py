"""Every ```python block of the README runs as written (each in a fresh namespace)."""

import contextlib
import io
import re
from pathlib import Path

import pytest

README = (Path(__file__).parents[1] / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, re.S)


def test_readme_has_python_blocks():
    assert len(BLOCKS) >= 4


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_block_runs(code):
    """Each block runs, and every line it prints is shown in the block (its comments say what
    the reader will see: the quickstart's comment once showed one of its two lines)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    for line in out.getvalue().splitlines():
        assert line.strip() in code, f"printed but not shown in the block: {line!r}"
