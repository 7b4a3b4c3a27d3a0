"""Command line: ``equilayers selfcheck | demo | audit | bench`` (also ``python -m equilayers``)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import warnings
from pathlib import Path

from ._table import table_width, terminal_width, wrap


def _selfcheck(args: argparse.Namespace) -> int:
    from .testing.cases import all_cases, run_case

    rows = []
    failed = skipped = 0
    needs: set[str] = set()
    cases = [c for c in all_cases() if not args.filter or args.filter in c.name]
    if not cases:  # an empty table with exit status 0 would read as a pass
        print(f"equilayers selfcheck: no case name contains {args.filter!r}; "
              "`equilayers selfcheck --list` lists them all", file=sys.stderr)
        return 2
    if args.list:  # what would run, one case a line (name, group, expectation): nothing built
        names = max(len(c.name) for c in cases)
        groups = max(len("shift" if c.kind == "shift" else c.group) for c in cases)
        for case in cases:
            what = "shift" if case.kind == "shift" else case.group
            print(f"{case.name:<{names}}  {what:<{groups}}  {case.expect}")
        return 0
    for case in cases:
        what = "shift" if case.kind == "shift" else case.group
        try:
            with warnings.catch_warnings():
                # the negative controls run layers at inexact sizes on purpose: their warnings
                # are the table's FAIL rows, not news
                warnings.simplefilter("ignore")
                r = run_case(case)
        except ModuleNotFoundError as exc:  # a case on a real image needs scikit-image
            skipped += 1
            needs.add({"skimage": "scikit-image"}.get(exc.name or "", exc.name or "?"))
            rows.append([case.name, what, case.expect, "-", "-", "-", "-", "skipped"])
            continue
        failed += not r.passed
        if case.expect == "fail":
            limit = f"> {case.fail_above:g}"
        else:
            limit = f"<= {case.tolerance():g}"
        rows.append([case.name, what, case.expect, f"{r.error:.2e}", limit,
                     f"{r.floor:.2e}" if r.floor else "-", r.worst,
                     "ok" if r.passed else "FAIL"])
    _print_cases(["case", "group", "expect", "error", "limit", "floor", "worst element",
                  "status"], rows, terminal_width())
    print(f"\n{len(rows) - failed - skipped} of {len(rows)} cases behave as expected"
          + (f"; {failed} FAILED" if failed else "")
          + (f"; {skipped} skipped: they need {', '.join(sorted(needs))} (pip install "
             "'equilayers[test]')" if skipped else ""))
    return 1 if failed else 0


def _print_cases(head: list[str], rows: list[list[str]], width: int) -> None:
    """One line per case when the table fits ``width`` columns; else each case's name on a line
    of its own (folded if longer than the terminal) above its values, indented (those lines
    take about 65 columns)."""
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]

    def line(cells: list[str], ws: list[int], indent: str = "") -> str:
        return (indent + "  ".join(f"{c:<{w}}" for c, w in zip(cells, ws, strict=True))).rstrip()

    if table_width(head, rows) <= width:
        print(line(head, widths))
        print(line(["-" * w for w in widths], widths))
        for r in rows:
            print(line(r, widths))
        return
    print(head[0])
    print(line(head[1:], widths[1:], "  "))
    print(line(["-" * w for w in widths[1:]], widths[1:], "  "))
    for r in rows:
        print(wrap(r[0], width))
        print(line(r[1:], widths[1:], "  "))


def _find_benchmarks(candidates: list[Path] | None = None) -> Path | None:
    """The source root holding ``benchmarks/__main__.py``: next to the package, else the cwd
    when it is an equilayers checkout (an ``equilayers/`` package and ``benchmarks/_core.py``
    beside it: a project of the user's own with a ``benchmarks`` folder was run instead)."""
    if candidates is None:
        candidates = [Path(__file__).resolve().parent.parent, Path.cwd()]
    for root in candidates:
        if all((root / part).is_file() for part in (
                "benchmarks/__main__.py", "benchmarks/_core.py", "equilayers/__init__.py")):
            return root
    return None


def _bench(args: argparse.Namespace) -> int:
    root = _find_benchmarks()
    if root is None:
        print("equilayers bench: the benchmark suite ships with the source tree, not the wheel; "
              "no benchmarks/ directory next to the package or in the current directory. "
              "Clone the repository and run `equilayers bench` (or `python -m benchmarks`) "
              "from its root.", file=sys.stderr)
        return 2
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(root), env.get("PYTHONPATH")] if p)
    env["EQUILAYERS_BENCH_PROG"] = "equilayers bench"  # its --help's usage line
    # without NumPy torch warns at import: the runner prints only its own output, like this CLI
    quiet = ["-W", "ignore:Failed to initialize NumPy:UserWarning"]
    # not `python -m benchmarks`: -m puts the cwd first on sys.path, ahead of PYTHONPATH, so a
    # project of the user's own with a benchmarks/ package ran instead (`python -P` drops it,
    # but only from Python 3.11; the floor is 3.10): the source root takes sys.path[0]
    boot = ("import runpy, sys; sys.path[0] = sys.argv.pop(1); "
            "runpy.run_module('benchmarks', run_name='__main__', alter_sys=True)")
    return subprocess.run([sys.executable, *quiet, "-c", boot, str(root), *args.args],
                          env=env).returncode


def _demo(args: argparse.Namespace) -> int:
    from .demo import run

    run(args.args)
    return 0


def _audit(args: argparse.Namespace) -> int:
    from ._audit import audit

    try:
        return audit(args.model, args.input_shape, args.group, args.out, args.seed,
                     batch=args.batch)
    except (ValueError, RuntimeError) as exc:
        print(f"equilayers audit: error: {exc}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:  # `equilayers selfcheck --list | head`: stop quietly, as cat does
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # (the exit's flush would raise again)
        return 1


def _main(argv: list[str] | None) -> int:
    from . import __version__

    parser = argparse.ArgumentParser(prog="equilayers", description=(__doc__ or "").replace(
        "``", ""))
    parser.add_argument("--version", action="version", version=f"equilayers {__version__}")
    sub = parser.add_subparsers(dest="command")
    p = sub.add_parser("selfcheck", help="build every layer and print its measured "
                       "equivariance errors")
    p.add_argument("--filter", default="", help="only cases whose name contains this text")
    p.add_argument("--list", action="store_true", help="list the cases it would run (name, "
                   "group, expected result: exact, approx or fail for a negative control), "
                   "one a line, without building or running them; with --filter, those that "
                   "match")
    p.set_defaults(func=_selfcheck)
    p = sub.add_parser("demo", help="the main job: train plain, anti-aliased, p4, p4m and SO(2) "
                       "CNNs on real upright digits and test them rotated and shifted; "
                       "arguments are passed on (equilayers demo --help)", add_help=False)
    p.set_defaults(func=_demo)
    p = sub.add_parser("bench", help="run the benchmark suite (python -m benchmarks) from the "
                       "source tree; arguments are passed on, e.g. --quick --family pool",
                       add_help=False)
    p.set_defaults(func=_bench)
    p = sub.add_parser("audit", help="measure a model's equivariance layer by layer, its "
                       "consistencies and grid findings; optionally plot its invariance")
    p.add_argument("model", help="FILE.py:FACTORY, a function returning the nn.Module")
    p.add_argument("--input-shape", required=True, help="e.g. 1,3,64,64")
    p.add_argument("--group", default="p4", help="p4 (default), p4m, c2, d1, ...")
    p.add_argument("--out", default=None, help="write a plot of invariance against rotation "
                   "angle and sub-pixel shift, in the format its suffix names (e.g. "
                   "audit.png, audit.pdf, audit.svg; needs matplotlib)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs (N(0, 1) "
                   "noise)")
    p.add_argument("--batch", type=int, default=32, help="how many random inputs the "
                   "whole-model numbers (invariance error, consistencies) and the plot average "
                   "over (default 32); the per-layer table runs on --input-shape's batch")
    p.set_defaults(func=_audit)
    args, rest = parser.parse_known_args(argv)
    if args.command is None:  # argparse's own message said only "required: command"
        what = f"unrecognized arguments: {' '.join(rest)}; " if rest else ""
        parser.error(f"{what}a command comes first: equilayers selfcheck | demo | bench | "
                     "audit (equilayers --help says what each does)")
    if args.command in ("bench", "demo"):
        args.args = rest  # everything after `bench` belongs to the runner
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
