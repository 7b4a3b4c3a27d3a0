"""The argument spec (issue 15, ``ARCHITECTURE.md``): argument rules live in
``equilayers/_checks`` (no local ``_pair``, one list of padding modes), and each rule's error
is raised from one place (:data:`ONE_SITE_RULES`, read with :mod:`ast`), with negative
controls that find a second copy.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PACKAGE = ROOT / "equilayers"


def _defined_functions(path: Path) -> set[str]:
    return {n.name for n in ast.walk(ast.parse(path.read_text()))
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}


def _in_checks(path: Path) -> bool:
    """Whether ``path`` is a module of the argument-spec package ``equilayers/_checks/``."""
    return path.relative_to(PACKAGE).parts[0] == "_checks"


def test_argument_rules_live_in_checks(tmp_path):
    """The int-or-pair rule is ``_checks.check_pair``: no module keeps a ``_pair`` of its own
    (there were four), and no module but ``_checks`` spells out the padding modes."""
    probe = tmp_path / "_probe.py"  # negative control: a local _pair is found
    probe.write_text("class A:\n    def _pair(self, v):\n        return (v, v)\n")
    assert "_pair" in _defined_functions(probe)
    bad = [str(p.relative_to(ROOT)) for p in sorted(PACKAGE.rglob("*.py"))
           if not _in_checks(p) and "_pair" in _defined_functions(p)]
    assert not bad, f"use _checks.check_pair instead of a local _pair: {bad}"
    spelled = [str(p.relative_to(ROOT)) for p in sorted(PACKAGE.rglob("*.py"))
               if not _in_checks(p) and '"zeros", "reflect", "replicate", "circular"'
               in p.read_text()]
    assert not spelled, f"use _checks.PADDING_MODES / check_padding_mode: {spelled}"


#: Argument rules written once (issue 15: "no argument rule is written twice"): a fragment of
#: each rule's error message, and the one module whose ``raise`` writes it. Each had two to
#: fourteen copies, some with other wordings or without the caller's name.
ONE_SITE_RULES = [
    ("must divide in_channels", "_checks/_conv.py"),
    ("must divide C_out", "_checks/_conv.py"),
    ("padding='same' needs stride=1", "_checks/_conv.py"),
    ("must be at most half the kernel_size", "_checks/_conv.py"),
    ("is the transpose of a blur pool padded", "_checks/_conv.py"),
    ("x must have C_in=", "_checks/_conv.py"),
    ("the rotations move the kernel's", "_checks/_base.py"),
    ("must have square filters", "_checks/_base.py"),
    ("padding={padding!r} must be {forms}", "_checks/_conv.py"),
    ("an int or three ints (D, H, W)", "_checks/_base.py"),
    ("bias must be (C, max_order + 1)", "_checks/_base.py"),
    ("group feature map; got shape", "_checks/_base.py"),
    ("is continuous and has no regular fields", "groups/_group.py"),
    ("belongs to {a.group.name}, not {self.name}", "groups/_group.py"),
    ("a group conv weight of", "functional/_gconv.py"),
    ("expects a regular fiber of |G|", "functional/_gconv.py"),
    ("x has C={x.shape[1]} channels", "functional/_heads.py"),
    ("in eval mode needs running_mean", "functional/_harmonic_bn.py"),
    ("input_shape={shape!r} must have {want.tensor_ndim} dims", "_grid.py"),
    ("is not reproduced by", "_interop_tools.py"),
    ("is not zero on the non-scalar", "_interop_tools.py"),
    ("only function='n_relu' maps to", "_interop_tools.py"),
]


def raise_sites(fragment: str, root: Path = PACKAGE) -> list[str]:
    """``file:line`` of every ``raise`` under ``root`` whose source holds ``fragment`` (string
    pieces joined across implicit concatenation and line breaks)."""
    out = []
    for path in sorted(root.rglob("*.py")):
        text = path.read_text()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Raise) and node.exc is not None:
                seg = ast.get_source_segment(text, node) or ""
                if fragment in re.sub(r"[\"']\s*\n\s*[rf]*[\"']", "", seg):
                    out.append(f"{path.relative_to(root).as_posix()}:{node.lineno}")
    return out


@pytest.mark.parametrize("fragment,home", ONE_SITE_RULES)
def test_argument_rule_is_written_once(fragment, home):
    """Each rule's message is raised from one place, which every layer and function calls."""
    sites = raise_sites(fragment)
    assert [s.rsplit(":", 1)[0] for s in sites] == [home], sites


def test_a_second_copy_of_a_rule_is_found(tmp_path):
    """Negative control: a rule written again (split over two lines, as the copies were) is
    counted, and a docstring that quotes it is not."""
    (tmp_path / "a.py").write_text(
        'def f(g):\n    """groups must divide in_channels."""\n'
        '    raise ValueError(f"f: groups={g} must divide "\n'
        '                     f"in_channels={g}")\n')
    (tmp_path / "b.py").write_text('raise ValueError("groups=2 must divide in_channels=3")\n')
    assert raise_sites("must divide in_channels", tmp_path) == ["a.py:3", "b.py:1"]
