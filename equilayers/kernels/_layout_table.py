"""The measured layout table of the kernel ops' fast paths (see :mod:`._layout`).

Written by ``python -m benchmarks --family layout --device cpu --write-table`` (the
``benchmarks/bench_layout.py`` family): do not edit by hand. Empty until it is recorded on a
quiet machine; an absent entry keeps each op's default path.
"""

from __future__ import annotations

#: Where the measurements behind the entries are recorded.
SOURCE = "benchmarks/results/cpu-layout.md"
#: The machine, versions and date of the measurement.
MACHINE = "not measured yet"
#: (op, device type, layout, size bucket, arguments, pass) -> (choice, {path: median ms}).
MEASURED: dict[tuple[str, str, str, int, str, str], tuple[str, dict[str, float]]] = {}
