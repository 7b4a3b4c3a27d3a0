"""Construction time of the 3-D convs in fresh processes (issue 16's goal: <= 10 ms for the
cube's groups, <= 50 ms for SO(3) with ``L <= 3``), and of escnn's ``R3Conv`` of the same
shapes where escnn is importable (the peers venv).

A study family: it runs only when named, ``python -m benchmarks --family construction3d``
(``--seeds N``: N fresh processes per row, default 7; ``--quick``: 2 processes, fewer rows).
Each process imports torch and the library, builds the group and field types the layer needs
(escnn's ``gspaces`` and ``FieldType``, untimed: a model builds them once), then times the
first construction of the layer (cold: nothing built yet in the process, empty basis caches,
torch's ops not yet run) and a second one of the same shape (warm: the library's caches
filled), wall clock and process CPU time, with one torch thread. Rows report the medians over
the processes. 16 -> 16 fields: SO(3) fields of orders ``0 .. L`` (``(L+1)^2`` slots, escnn's
``[irrep(0), ..., irrep(L)]``), the cube's regular fields (24 / 48 slots) and the
icosahedral group's (60 slots; no goal in the issue). escnn caches
some group data on disk (joblib), so after its first process the cold rows reuse it.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIELDS = 16


def rows(quick: bool, peers: bool) -> list[dict]:
    """The shapes: our layers, then escnn's where ``peers``."""
    shapes = [(1, 3), (3, 5)] if quick else [(l, k) for l in (1, 2, 3) for k in (3, 5)]
    out = [dict(lib="equilayers", layer="SteerableConv3d", group="so3", order=l, k=k)
           for l, k in shapes]
    if not quick:
        out.append(dict(lib="equilayers", layer="SteerableConv3d", group="o3", order=3, k=5))
    cube = [("o", 3)] if quick else [("o", 3), ("o", 5), ("oh", 3)]
    out += [dict(lib="equilayers", layer="GroupConv3d", group=g, order=None, k=k)
            for g, k in cube]
    out += [dict(lib="equilayers", layer="LiftingConv3d", group="o", order=None, k=3)]
    ico = [3] if quick else [3, 5]
    out += [dict(lib="equilayers", layer="GroupConv3d", group="ico", order=None, k=k)
            for k in ico]
    if peers:
        out += [dict(lib="escnn", layer="R3Conv", group="so3", order=l, k=k) for l, k in shapes]
        # escnn's cube rows take 10-150 s per process: at most 3 processes each
        out += [dict(lib="escnn", layer="R3Conv", group=g, order=None, k=k, processes=3)
                for g, k in cube]
        # escnn's icosahedral rows take 20-90 s per process: 2 processes each
        out += [dict(lib="escnn", layer="R3Conv", group="ico", order=None, k=k, processes=2)
                for k in ico]
    return out


def label(row: dict) -> str:
    fields = (f"L={row['order']}" if row["order"] is not None
              else "volume" if row["layer"] == "LiftingConv3d" else "regular")
    return f"{row['lib']} {row['layer']} {row['group']} {FIELDS}->{FIELDS} {fields} k{row['k']}"


def _builder(row: dict):
    """A function that builds the row's layer, after the untimed setup (imports, group and
    field types)."""
    k, c = row["k"], FIELDS
    if row["lib"] == "escnn":
        import escnn.group._numerical as numerical
        import numpy as np
        from escnn import gspaces
        from escnn import nn as esc

        # escnn 1.0.11 hands an np.matrix to scikit-learn's randomized_svd when it decomposes
        # a finite group's representations (octaOnR3, fullOctaOnR3), which recent
        # scikit-learn rejects (TypeError); the same values as an array, nothing else changed
        null = numerical.null
        numerical.null = lambda a, *args, **kw: null(np.asarray(a), *args, **kw)

        gs = {"so3": gspaces.rot3dOnR3, "o": gspaces.octaOnR3,
              "oh": gspaces.fullOctaOnR3, "ico": gspaces.icoOnR3}[row["group"]]()
        reps = ([gs.irrep(l) for l in range(row["order"] + 1)] if row["order"] is not None
                else [gs.regular_repr])
        ftype = esc.FieldType(gs, c * reps)
        return lambda: esc.R3Conv(ftype, ftype, k, padding=k // 2)
    from equilayers import nn as enn

    layer = getattr(enn, row["layer"])
    if row["layer"] == "SteerableConv3d":
        return lambda: layer(c, c, k, padding=k // 2, group=row["group"],
                             in_max_order=row["order"], max_order=row["order"])
    return lambda: layer(c, c, k, padding=k // 2, group=row["group"])


def child(spec: str) -> None:
    """The body of one process: print ``[cold wall, cold cpu, warm wall, warm cpu]`` in ms."""
    import time

    import torch

    torch.set_num_threads(1)
    build = _builder(json.loads(spec))
    times = []
    for _ in range(2):
        wall, cpu = time.perf_counter(), time.process_time()
        build()
        times += [1e3 * (time.perf_counter() - wall), 1e3 * (time.process_time() - cpu)]
    print(json.dumps(times))


def measure(row: dict, processes: int) -> dict:
    """Run ``processes`` fresh processes for ``row``; the medians and the spread."""
    samples = []
    for _ in range(processes):
        out = subprocess.run(
            [sys.executable, "-c", "import sys; from benchmarks.bench_construction3d import "
             "child; child(sys.argv[1])", json.dumps(row)],
            cwd=ROOT, capture_output=True, text=True, timeout=600)
        if out.returncode != 0:
            return {**row, "name": label(row), "status": "failed: " + (
                out.stderr.strip().splitlines() or ["?"])[-1]}
        samples.append(json.loads(out.stdout.strip().splitlines()[-1]))
    cols = list(zip(*samples, strict=True))
    keys = ("cold_ms", "cold_cpu_ms", "warm_ms", "warm_cpu_ms")
    result = {**row, "name": label(row), "status": "ok", "processes": processes,
              "samples": samples}
    result.update({k: statistics.median(v) for k, v in zip(keys, cols, strict=True)})
    result["cold_min_ms"], result["cold_max_ms"] = min(cols[0]), max(cols[0])
    return result


def _meta(quick: bool, processes: int, load: tuple[float, float]) -> dict:
    import datetime
    import importlib.metadata
    import platform

    import torch

    from ._core import _cpu_name

    peers = {}
    for name in ("escnn",):
        try:
            peers[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "torch": torch.__version__, "python": platform.python_version(),
            "cpu": _cpu_name(), "cpu_count": os.cpu_count(), "threads": 1, "quick": quick,
            "processes": processes, "peers": peers, "load_before": load[0],
            "load_after": load[1]}


def markdown(meta: dict, results: list[dict]) -> str:
    peers = ", ".join(f"{k} {v}" for k, v in meta["peers"].items()) or "none"
    lines = [
        "# Construction of the 3-D convs in fresh processes",
        "",
        f"{meta['date']}; torch {meta['torch']}, Python {meta['python']}, {meta['threads']} "
        f"torch thread, {meta['cpu_count']} CPUs ({meta['cpu']}); peers: {peers}. Median over "
        f"{meta['processes']} fresh processes per row (`python -m benchmarks --family "
        "construction3d`): cold = the first layer built in the process (imports, group and "
        "field types done beforehand, untimed), warm = a second layer of the same shape. "
        f"Load average (1 min) {meta['load_before']:.1f} before, {meta['load_after']:.1f} after "
        "the run: on a loaded machine wall clock exceeds CPU time.",
        "",
        "| layer | cold ms | cold CPU ms | cold min-max ms | warm ms | warm CPU ms | status |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        if r["status"] != "ok":
            lines.append(f"| {r['name']} | - | - | - | - | - | {r['status']} |")
            continue
        name = r["name"] + (f" ({r['processes']} processes)"
                            if r["processes"] != meta["processes"] else "")
        lines.append(f"| {name} | {r['cold_ms']:.1f} | {r['cold_cpu_ms']:.1f} | "
                     f"{r['cold_min_ms']:.1f}-{r['cold_max_ms']:.1f} | {r['warm_ms']:.1f} | "
                     f"{r['warm_cpu_ms']:.1f} | ok |")
    return "\n".join(lines) + "\n"


def run(quick: bool, out, seeds: int | None = None, progress: bool = True,
        name_filter: str = "") -> list[dict]:
    """Measure every row (``seeds``: processes per row); write
    ``cpu-construction3d[-quick].{json,md}``."""
    import importlib.util

    from ._core import UsageError, write_study

    processes = seeds if seeds is not None else (2 if quick else 7)
    peers = importlib.util.find_spec("escnn") is not None
    every = rows(quick, peers)
    todo = [r for r in every if name_filter in label(r)]
    if not todo:  # an empty table, exit status 0, over the last run's results
        raise UsageError(f"--filter {name_filter!r} names no row of {[label(r) for r in every]}")
    load = os.getloadavg()[0]
    results = []
    for i, row in enumerate(todo):
        results.append(measure(row, min(processes, row.get("processes", processes))))
        if progress:
            print(f"[{i + 1}/{len(todo)}] {results[-1]['name']}: "
                  f"{results[-1].get('cold_ms', float('nan')):.1f} ms cold", file=sys.stderr)
    meta = _meta(quick, processes, (load, os.getloadavg()[0]))
    write_study(Path(out), "cpu-construction3d" + ("-quick" if quick else ""), meta, results,
                markdown, name_filter=name_filter)
    return results
