"""Shared by the benchmark tests (``tests/test_benchmarks_*.py``): the repository root and
the benchmark modules, imported from it."""

import importlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _bench_module(name: str):
    sys.path.insert(0, str(ROOT))
    try:
        return importlib.import_module(f"benchmarks.{name}")
    finally:
        sys.path.remove(str(ROOT))
