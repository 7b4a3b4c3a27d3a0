"""Griffe extension for the API reference: read equilayers' docstrings as written.

The docstrings are Google style with two Sphinx habits that mkdocstrings does not read:

* ``Example:`` (the house style's section name) is turned into ``Examples:``, griffe's name,
  so the doctests render as code and not as Markdown;
* Sphinx roles (``:class:`~equilayers.nn.GroupConv2d```, ``:func:`x```) become code spans
  (``GroupConv2d``, ``x``): a leading ``~`` keeps the last component, as in Sphinx;
* ``.. math::`` directives become ``$$ ... $$`` blocks (rendered by MathJax);
* reST simple tables (columns under ``====  ====`` rules) become Markdown tables.

Only the text given to the docs build changes; the source files are left as they are.
"""

from __future__ import annotations

import importlib
import inspect
import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|obj|exc):`(~?)([^`]+)`")
_EXAMPLE = re.compile(r"^(\s*)Example:[ \t]*$", re.MULTILINE)


def _role(match: re.Match) -> str:
    tilde, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if tilde else target}`"


def _math(lines: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        head, sep, rest = line.partition(".. math::")
        if not sep or head.strip():
            out.append(line)
            i += 1
            continue
        indent = head
        body = [rest.strip()] if rest.strip() else []
        i += 1
        while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > len(indent)):
            body.append(lines[i].strip())
            i += 1
        out += [f"{indent}$$", *(f"{indent}{b}" for b in body if b), f"{indent}$$"]
        if i < len(lines) and lines[i].strip():
            out.append("")
    return out


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


_RULE = re.compile(r"^\s*=+(\s+=+)+\s*$")


def _tables(lines: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(lines):
        if not _RULE.match(lines[i]):
            out.append(lines[i])
            i += 1
            continue
        rule = lines[i]
        spans = [m.span() for m in re.finditer(r"=+", rule)]
        starts = [a for a, _ in spans]
        rows, rules, i = [], 1, i + 1
        while i < len(lines) and rules < 3:
            if _RULE.match(lines[i]):
                rules += 1
            elif lines[i].strip():
                ends = [*starts[1:], None]
                cells = [lines[i][a:b].strip() for a, b in zip(starts, ends, strict=True)]
                rows.append("| " + " | ".join(cells) + " |")
            i += 1
        indent = " " * _indent(rule)
        sep = "|" + "|".join("---" for _ in starts) + "|"
        out += ["", *(indent + r for r in rows[:1]), indent + sep,
                *(indent + r for r in rows[1:]), ""]
    return out


def rewrite(text: str) -> str:
    """The docstring ``text`` as griffe's Google parser and Markdown expect it."""
    text = _EXAMPLE.sub(r"\1Examples:", _ROLE.sub(_role, text))
    return "\n".join(_tables(_math(text.split("\n"))))


def runtime_doc(path: str) -> str | None:
    """The docstring that ``path``'s object has once imported, for the objects whose source
    holds none that griffe can read: the group convs compose theirs from shared parts
    (``__doc__ = "..." + SHARED + "..."``), and ``interop`` re-exports the escnn helpers as
    plain names. Only a class's or function's own ``__doc__`` (not one inherited, nor a
    constant's type's)."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            value: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for name in parts[cut:]:
                value = getattr(value, name)
        except AttributeError:
            return None
        break
    else:
        return None
    own = value.__dict__.get("__doc__") if inspect.isclass(value) else (
        value.__doc__ if inspect.isroutine(value) else None)
    return inspect.cleandoc(own) if isinstance(own, str) and own.strip() else None


class SphinxToMarkdown(griffe.Extension):
    """Apply :func:`rewrite` to every docstring griffe loads, reading at import time the
    public ones the source does not spell out (:func:`runtime_doc`)."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is None and obj.path.startswith("equilayers.") and not any(
                part.startswith("_") for part in obj.path.split(".")[-1:]):
            text = runtime_doc(obj.path)
            if text is not None:
                obj.docstring = griffe.Docstring(text, parent=obj)
        if obj.docstring is not None:
            obj.docstring.value = rewrite(obj.docstring.value)
