"""Command line: ``equilayers selfcheck | demo | audit`` (also ``python -m equilayers``)."""

from __future__ import annotations

import argparse
import sys


def _selfcheck(args: argparse.Namespace) -> int:
    from .testing.cases import all_cases, run_case

    rows = []
    failed = 0
    cases = [c for c in all_cases() if not args.filter or args.filter in c.name]
    for case in cases:
        r = run_case(case)
        failed += not r.passed
        if case.expect == "fail":
            limit = f"> {case.fail_above:g}"
        else:
            limit = f"<= {case.tolerance():g}"
        what = "shift" if case.kind == "shift" else case.group
        rows.append((case.name, what, case.expect, f"{r.error:.2e}", limit,
                     f"{r.floor:.2e}" if r.floor else "-", r.worst,
                     "ok" if r.passed else "FAIL"))
    head = ("case", "group", "expect", "error", "limit", "floor", "worst element", "status")
    widths = [max(len(str(row[i])) for row in [head, *rows]) for i in range(len(head))]
    line = "  ".join("{:<" + str(w) + "}" for w in widths)
    print(line.format(*head))
    print(line.format(*("-" * w for w in widths)))
    for row in rows:
        print(line.format(*row))
    print(f"\n{len(rows) - failed} of {len(rows)} cases behave as expected"
          + (f"; {failed} FAILED" if failed else ""))
    return 1 if failed else 0


def _audit(args: argparse.Namespace) -> int:
    from ._audit import audit

    try:
        return audit(args.model, args.input_shape, args.group, args.out, args.seed)
    except (ValueError, RuntimeError) as exc:
        print(f"equilayers audit: error: {exc}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="equilayers", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("selfcheck", help="build every layer and print its measured "
                       "equivariance errors")
    p.add_argument("--filter", default="", help="only cases whose name contains this text")
    p.set_defaults(func=_selfcheck)
    p = sub.add_parser("demo", help="the main job: until the training demo lands, the "
                       "self-check of every layer")
    p.add_argument("--filter", default="", help=argparse.SUPPRESS)
    p.set_defaults(func=_selfcheck)
    p = sub.add_parser("audit", help="measure a model's equivariance layer by layer, its "
                       "consistencies and grid findings; optionally plot its invariance")
    p.add_argument("model", help="FILE.py:FACTORY, a function returning the nn.Module")
    p.add_argument("--input-shape", required=True, help="e.g. 1,3,64,64")
    p.add_argument("--group", default="p4", help="p4 (default), p4m, c2, d1, ...")
    p.add_argument("--out", default=None, help="write a PNG of invariance against rotation "
                   "angle and sub-pixel shift (needs matplotlib)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random input batch")
    p.set_defaults(func=_audit)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
