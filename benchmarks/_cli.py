"""The command line's checks of ``python -m benchmarks`` (``benchmarks/__main__.py``): each
turns an option that would fail late, or be ignored in silence, into a usage error naming it
before anything runs."""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
from pathlib import Path

#: the options a training family's ``run`` may take (besides ``seeds`` and ``data``)
STUDY_OPTIONS = ("split", "first_seed", "schedule", "steps")


def is_study(module) -> bool:
    """Whether a ``bench_<family>`` module trains models (defines ``run``) instead of timing
    cases (``cases``)."""
    return not hasattr(module, "cases") and hasattr(module, "run")


def _check_counts(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """A usage error (exit 2): a count below 1, a --budget not above 0, a lone --table."""
    for name, what in (("threads", "a positive int (torch threads)"),
                       ("rounds", "a positive int (timing rounds)"),
                       ("seeds", "a positive int (seeds per model)"),
                       ("steps", "a positive int (training steps per model)")):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name} must be {what}; got {value}. Pass --{name} 1 or more, or "
                         "leave it out for the default")
    if args.budget is not None and not args.budget > 0:  # not > 0: also nan
        parser.error(f"--budget must be a positive number of seconds per case and timing; got "
                     f"{args.budget:g}. Pass e.g. --budget 0.05, or leave it out for the "
                     "default")
    if args.table is not None and not args.write_table:  # it was ignored, in silence
        parser.error(f"--table {str(args.table)!r} names where --write-table writes the "
                     "layout table: add --write-table (--family layout), or leave --table out")


def _make_out(parser: argparse.ArgumentParser, out: Path) -> None:
    """Create the results directory ``out`` before the run, or a usage error (exit 2)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        parser.error(f"--out {str(out)!r} cannot be the results directory: "
                     f"{exc.strerror or exc}. Pass --out with a directory to write to")
    if not os.access(out, os.W_OK):
        parser.error(f"--out {str(out)!r} is not writable. Pass --out with a directory to "
                     "write to")


def _check_options(parser: argparse.ArgumentParser, args: argparse.Namespace,
                   families: list[str]) -> dict:
    """The training families' options given (``STUDY_OPTIONS`` not at their default), as
    keyword arguments for ``run``; exit with a message naming the first of ``families`` (those
    to run) that does not take one of them or ``--seeds``/``--data`` (a timing family takes
    none): such an option was ignored in silence."""
    given = [k for k in (*STUDY_OPTIONS, "seeds", "data")
             if getattr(args, k) != parser.get_default(k)]
    for fam in families:
        module = importlib.import_module(f"{__package__}.bench_{fam}")
        takes = inspect.signature(module.run).parameters if is_study(module) else {}
        unknown = [k for k in given if k not in takes]
        if unknown:
            raise SystemExit(f"benchmarks: --family {fam} does not take "
                             f"{', '.join('--' + k.replace('_', '-') for k in unknown)}; "
                             "leave it out, or run that family on its own")
    return {k: getattr(args, k) for k in given if k in STUDY_OPTIONS}
