"""The command line's checks of ``python -m benchmarks`` (``benchmarks/__main__.py``): each
turns an option that would fail late, or be ignored in silence, into a usage error naming it
before anything runs."""

from __future__ import annotations

import argparse
import importlib
import inspect
import math
import os
from pathlib import Path

#: the options a training family's ``run`` may take (besides ``seeds`` and ``data``)
STUDY_OPTIONS = ("split", "first_seed", "schedule", "steps")


def is_study(module) -> bool:
    """Whether a ``bench_<family>`` module trains models (defines ``run``) instead of timing
    cases (``cases``)."""
    return not hasattr(module, "cases") and hasattr(module, "run")


def positive_int(text: str) -> int:
    """An ``argparse`` type: an int of at least 1 (a count of calls, rounds or repetitions; 0
    divided by zero or found no median, a negative one printed a table of -0)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more; got {value}")
    return value


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
    if args.threads is not None and args.threads > MAX_THREADS:  # torch overflowed past it
        parser.error(f"--threads must be at most {MAX_THREADS}; got {args.threads}. Pass the "
                     "number of cores to use")
    # not 0 < budget < inf: also nan, and inf, which failed every row ("cannot convert float
    # infinity to integer")
    if args.budget is not None and not 0 < args.budget < math.inf:
        parser.error(f"--budget must be a positive, finite number of seconds per case and "
                     f"timing; got {args.budget:g}. Pass e.g. --budget 0.05, or leave it out "
                     "for the default")
    if args.table is not None and not args.write_table:  # it was ignored, in silence
        parser.error(f"--table {str(args.table)!r} names where --write-table writes the "
                     "layout table: add --write-table (--family layout), or leave --table out")
    if args.table is not None:  # (it raised a traceback after the whole timing run)
        parent = args.table.parent
        if args.table.is_dir() or not parent.is_dir() or not os.access(parent, os.W_OK):
            parser.error(f"--table {str(args.table)!r} must be a file path in a writable "
                         "directory (the table is a .py file); pass e.g. --table "
                         "/tmp/layout_table.py")


#: the most ``--threads`` taken (torch's own setter overflows far above it)
MAX_THREADS = 4096

#: what to install for a peer library a row or a ``--filter`` names
PEERS = {"escnn": "pip install escnn (py3nj needs gfortran), or run in the .venv-peers venv "
                  "that `make test-peers` builds",
         "e2cnn": "pip install e2cnn 'numpy<2' (as `make bench-accuracy` does)",
         "kornia": "pip install kornia==0.9.0, or run in the .venv-peers venv",
         "antialiased": "pip install --no-deps antialiased-cnns"}


def peer_hint(text: str) -> str:
    """``"; <how to get it>"`` for the first peer library ``text`` (a ``--filter``, an import
    error) names, else ``""``: peer rows exist only where the peer is installed."""
    for name, how in PEERS.items():
        if name in text.lower():
            return f"; rows of {name} exist only where it is installed: {how}"
    return ""


#: the options only the timing families read
TIMING_OPTIONS = ("device", "budget", "rounds", "write_table", "table")


def _check_study_only(parser: argparse.ArgumentParser, args: argparse.Namespace,
                      studies: list[str]) -> None:
    """With training families only: a timing option given was ignored in silence (the run
    trains on the CPU whatever --device says), so name it and stop."""
    given = [k for k in TIMING_OPTIONS if getattr(args, k) not in (None, False)]
    if given:
        raise SystemExit(f"benchmarks: --family {', '.join(studies)} trains models and takes "
                         f"no {', '.join('--' + k.replace('_', '-') for k in given)} (the timing "
                         "families' options); leave it out, or add a timing family")


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
