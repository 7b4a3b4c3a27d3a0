"""Text tables and paragraphs that fit the terminal: rich when installed, plain text otherwise."""

from __future__ import annotations

import shutil
import textwrap
from typing import TextIO

__all__ = ["terminal_width", "wrap", "table_width", "print_table"]

MIN_WIDTH = 40
_MIN_COLUMN = 4
_SEP = "  "  # between columns, in both renderings


def terminal_width(width: int | None = None) -> int:
    """``width``, else the terminal's (``$COLUMNS`` first, 80 when not a terminal); at least
    40."""
    if width is None:
        width = shutil.get_terminal_size().columns
    return max(MIN_WIDTH, int(width))


def wrap(text: str, width: int, indent: str = "", subsequent: str | None = None) -> str:
    """``text`` wrapped at ``width`` columns, the first line after ``indent``, the next ones
    after ``subsequent`` (default: as many spaces)."""
    rest = " " * len(indent) if subsequent is None else subsequent
    return textwrap.fill(text, width, initial_indent=indent, subsequent_indent=rest,
                         break_long_words=True, break_on_hyphens=False)


def table_width(head: list[str], rows: list[list[str]]) -> int:
    """Columns the table takes when no cell wraps."""
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    return sum(widths) + len(_SEP) * (len(head) - 1)


def _column_widths(head: list[str], rows: list[list[str]], room: int,
                   keep: frozenset[int]) -> list[int]:
    """Natural column widths, the widest shrinkable one (not in ``keep``) narrowed one column
    at a time until they fit ``room``."""
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    while sum(widths) > room:
        i = max((i for i in range(len(widths)) if i not in keep), key=widths.__getitem__,
                default=None)
        if i is None or widths[i] <= _MIN_COLUMN:
            break  # too many columns for this width: overflow rather than lose text
        widths[i] -= 1
    return widths


def _plain_table(title: str, head: list[str], rows: list[list[str]], file: TextIO,
                 width: int, keep: frozenset[int]) -> None:
    widths = _column_widths(head, rows, width - len(_SEP) * (len(head) - 1), keep)
    print(wrap(title, width), file=file)

    def emit(cells: list[str]) -> None:
        # max(1, w): a column whose cells are all empty has width 0, which textwrap rejects
        parts = [textwrap.wrap(c, max(1, w), break_long_words=True, break_on_hyphens=False)
                 or [""] for c, w in zip(cells, widths, strict=True)]
        for k in range(max(len(p) for p in parts)):
            line = _SEP.join(f"{p[k] if k < len(p) else '':<{w}}"
                             for p, w in zip(parts, widths, strict=True))
            print(line.rstrip(), file=file)

    emit(head)
    print(_SEP.join("-" * w for w in widths), file=file)
    for r in rows:
        emit(r)


def print_table(title: str, head: list[str], rows: list[list[str]], file: TextIO,
                width: int, keep: tuple[int, ...] = ()) -> None:
    """Print a table of ``head`` and ``rows`` (strings) within ``width`` columns: cells wrap
    (long words fold) instead of running past the edge; the columns in ``keep`` (short
    values such as numbers) keep their natural width."""
    try:
        from rich import box
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        _plain_table(title, head, rows, file, width, frozenset(keep))
        return
    table = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                  padding=(0, len(_SEP) - 1, 0, 0))
    for i, h in enumerate(head):
        table.add_column(h, overflow="fold", no_wrap=i in keep)
    for r in rows:
        table.add_row(*r)
    Console(file=file, width=width, soft_wrap=False).print(table)
