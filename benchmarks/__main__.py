"""``python -m benchmarks``: time every layer against its floor and write the results.

Study families (``bench_accuracy.py``, ``bench_segmentation.py``, ``bench_segmentation3d.py``,
``bench_tetris.py``: a ``run(quick, out, ...)`` that trains models and writes its own table;
``bench_equivariance3d.py`` and ``bench_construction3d.py``, the same contract, measuring
untrained models and fresh processes) run only when named, ``--family accuracy``,
``segmentation``, ``segmentation3d``, ``tetris``, ``equivariance3d`` or ``construction3d``.

Discovers ``benchmarks/bench_*.py`` (each defines ``cases(quick) -> list[BenchCase]``), and for
every case measures, on each requested device:

- forward time (under ``torch.no_grad``) and forward+backward time (``out.sum().backward()``),
  as medians over rounds after warmup; the cases of a family run interleaved, round by round,
  so that a change of machine load hits a case and its floor alike;
- the ratio of each to the case's ``floor``, measured in the same run;
- peak memory of one training step (forward+backward; forward only when ``backward=False``):
  ``torch.cuda.max_memory_allocated`` on CUDA, the profiler's allocation events replayed in
  order on CPU (see ``benchmarks/_memory.py``);
- module construction time (median), when the case has ``construct``;
- further untimed measurements, when the case has ``metrics`` (a model's shift consistency).

Results go to ``<out>/<device>[-<family>...][-quick][-filtered].json`` and ``.md`` with the
device name, versions, date, rounds and budget (``-filtered``: a ``--filter`` run, which records
its filter and leaves the whole family's files alone; the study families likewise).
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import importlib.util
import inspect
import json
import os
import platform
import statistics
import sys
import time
import traceback
from pathlib import Path

import torch

from ._cli import PEERS as HOW_TO_INSTALL
from ._cli import _check_counts, _check_options, _check_study_only, _make_out, is_study, peer_hint
from ._core import BenchCase, UsageError, _cpu_name, forward_backward, time_call
from ._memory import peak_memory

HERE = Path(__file__).resolve().parent
PEERS = ["kornia", "escnn", "e2cnn", "triton", "antialiased-cnns"]


def discover(families: list[str] | None) -> list[str]:
    """Family names of the ``bench_<family>.py`` modules next to this file."""
    found = sorted(p.stem[len("bench_"):] for p in HERE.glob("bench_*.py"))
    unknown = sorted(set(families or []) - set(found))
    if unknown:
        raise SystemExit(f"benchmarks: unknown family {unknown}; available: {found}")
    return [f for f in found if f in families] if families else found


def _is_study(family: str) -> bool:
    """Whether ``bench_<family>.py`` trains models (defines ``run``) instead of timing cases."""
    return is_study(importlib.import_module(f"{__package__}.bench_{family}"))


def missing_peers(families: list[str]) -> list[str]:
    """One line per peer library that some of ``families`` times where installed (their
    ``OPTIONAL_PEERS``) and that is not: whose rows are skipped and how to install it (the
    rows were dropped without a word)."""
    missing: dict[str, list[str]] = {}
    for fam in families:
        module = importlib.import_module(f"{__package__}.bench_{fam}")
        for lib in getattr(module, "OPTIONAL_PEERS", ()):
            if importlib.util.find_spec(lib) is None:
                missing.setdefault(lib, []).append(fam)
    return [f"benchmarks: {lib} is not installed: its rows of the {', '.join(fams)} "
            f"{'family' if len(fams) == 1 else 'families'} are skipped; to add them: "
            f"{HOW_TO_INSTALL[lib]}"
            for lib, fams in missing.items()]


def load_cases(family: str, quick: bool) -> list[BenchCase]:
    module = importlib.import_module(f"{__package__}.bench_{family}")
    return list(module.cases(quick))


def _call_with_device(builder, device: torch.device):
    if "device" in inspect.signature(builder).parameters:
        return builder(device=device)
    return builder()


def _build(case: BenchCase, device: torch.device):
    fn, x = _call_with_device(case.make, device)
    if isinstance(fn, torch.nn.Module):
        fn = fn.to(device)
    return fn, x.to(device)


def _sync(device: torch.device):
    return (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else None


def _once(fn, sync) -> float:
    t = time.perf_counter()
    fn()
    if sync:
        sync()
    return max(time.perf_counter() - t, 1e-6)


def _fail(row: dict, exc: BaseException) -> None:
    if isinstance(exc, ImportError):
        row["status"] = f"skipped: {exc}{peer_hint(str(exc))}"
    else:
        row["status"] = f"error: {type(exc).__name__}: {exc}"
        row["traceback"] = traceback.format_exc()


def _interleaved(calls: dict, rows: list[dict], key: str, budget_s: float, rounds: int,
                 sync, tick) -> None:
    """Median per-call time of every callable, measured in ``rounds`` interleaved rounds.

    Round ``r`` runs each case in turn (``per`` calls each, about ``budget_s / rounds``), so a
    change in machine load during the run hits every case alike and ratios stay fair. Each
    case's timed calls follow one untimed call of the same case: the first call after another
    case pays for the other's memory (the allocator's cached blocks and page mappings are the
    last case's), which made a row's time depend on the row before it (a blur pool after a
    max-blur pool 1.15-1.37x the same op after another blur pool, 2026-12-02).
    """
    per, samples = {}, {i: [] for i in calls}
    for i, fn in list(calls.items()):
        try:
            fn()  # warmup
            per[i] = max(1, round(budget_s / rounds / _once(fn, sync)))
        except Exception as e:  # a failing case is reported, the others still run
            _fail(rows[i], e)
            del calls[i]
    for _ in range(rounds):
        for i, fn in list(calls.items()):
            try:
                fn()  # untimed: see above
                if sync:
                    sync()
                t = time.perf_counter()
                for _ in range(per[i]):
                    fn()
                if sync:
                    sync()
                samples[i].append((time.perf_counter() - t) / per[i])
            except Exception as e:
                _fail(rows[i], e)
                del calls[i]
        tick()
    for i in calls:
        rows[i][key] = 1e3 * statistics.median(samples[i])
        rows[i][key.replace("_ms", "_calls")] = per[i] * rounds


def run_family(cases: list[BenchCase], device: torch.device, budget_s: float, rounds: int,
               tick=lambda: None) -> list[dict]:
    """Time, measure and build every case of one family; one row per case."""
    rows = [{"family": c.family, "name": c.name, "floor": c.floor, "peer": c.peer,
             "bandwidth": c.bandwidth, "device": device.type, "params": c.params,
             "status": "ok"} for c in cases]
    sync = _sync(device)
    built = {}
    for i, case in enumerate(cases):
        try:
            fn, x = _build(case, device)
            if isinstance(fn, torch.nn.Module):
                fn.train(case.backward)
            built[i] = (fn, x)
        except Exception as e:
            _fail(rows[i], e)

    def forward(fn, x):
        def run():
            with torch.no_grad():
                fn(x)
        return run

    _interleaved({i: forward(*fx) for i, fx in built.items()}, rows, "forward_ms", budget_s,
                 rounds, sync, tick)
    steps = {i: forward_backward(*built[i]) for i in built
             if cases[i].backward and rows[i]["status"] == "ok"}
    _interleaved(dict(steps), rows, "fwd_bwd_ms", budget_s, rounds, sync, tick)
    for i, (fn, x) in built.items():
        if rows[i]["status"] != "ok":
            continue
        try:
            rows[i]["peak_mib"] = peak_memory(steps.get(i, forward(fn, x)), device) / 2**20
            if cases[i].metrics is not None:
                rows[i]["metrics"] = _call_with_device(cases[i].metrics, device)
            if cases[i].construct is not None:
                builder = cases[i].construct
                rows[i]["construct_ms"] = 1e3 * time_call(
                    lambda b=builder: _call_with_device(b, device), reps=5, warmup=1)
        except Exception as e:
            _fail(rows[i], e)
        tick()
    return rows


def add_ratios(rows: list[dict]) -> None:
    """``*_x_floor``: time (or memory) over the floor's, within the same family, device, run
(no ``peak_x_floor`` where one of the two ran backward and the other forward only);
    ``forward_x_bandwidth``: the forward time over the bandwidth floor's, where a row names
    one."""
    index = {(r["family"], r["device"], r["name"]): r for r in rows}
    for r in rows:
        bw = (index.get((r["family"], r["device"], r["bandwidth"]))
              if r.get("bandwidth") else None)
        if (bw is not None and bw.get("status") == "ok" and r.get("status") == "ok"
                and r.get("forward_ms") and bw.get("forward_ms")):
            r["forward_x_bandwidth"] = r["forward_ms"] / bw["forward_ms"]
        floor = index.get((r["family"], r["device"], r["floor"])) if r["floor"] else None
        if floor is None or floor.get("status") != "ok" or r.get("status") != "ok":
            continue
        for key in ("forward_ms", "fwd_bwd_ms", "peak_mib"):
            # a peak is a training step's where the row ran backward, a forward call's else:
            # no ratio between two passes (a step's peak over a forward-only floor's)
            if (key == "peak_mib" and bool(r.get("fwd_bwd_ms"))
                    != bool(floor.get("fwd_bwd_ms"))):
                r.pop("peak_x_floor", None)
                continue
            if key in r and floor.get(key):
                r[key.rsplit("_", 1)[0] + "_x_floor"] = r[key] / floor[key]


def metadata(device: torch.device, quick: bool) -> dict:
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": device.type,
        "device_name": (torch.cuda.get_device_name(device) if device.type == "cuda"
                        else _cpu_name()),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "quick": quick,
        "peers": {},
    }
    for name in PEERS:
        if importlib.util.find_spec(name.replace("-", "_")) is not None:
            try:
                from importlib.metadata import version
                meta["peers"][name] = version(name)
            except Exception:
                meta["peers"][name] = "installed"
    return meta


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _metrics(values: dict | None) -> str:
    if not values:
        return "-"
    return ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                     for k, v in values.items())


def markdown(meta: dict, rows: list[dict]) -> str:
    extra = any(r.get("metrics") for r in rows)
    bw = any(r.get("bandwidth") for r in rows)
    peers = ", ".join(f"{k} {v}" for k, v in meta["peers"].items()) or "none"
    lines = [
        f"# Benchmarks on {meta['device']} ({meta['device_name']})",
        "",
        f"{meta['date']}; torch {meta['torch']}, Python {meta['python']}, "
        f"{meta['torch_threads']} threads of {meta['cpu_count']} CPUs ({meta['cpu']}); "
        f"peers: {peers}{'; quick mode' if meta['quick'] else ''}"
        + (f"; {meta['rounds']} rounds of {meta['budget_s']:g} s" if "rounds" in meta else "")
        + (f"; only the cases matching --filter {meta['filter']!r}" if meta.get("filter")
           else "") + ".",
        "Times are medians in ms; `x floor` is the ratio to the row named in `floor`, measured "
        "in the same run. Peak memory is for one forward+backward step (forward when the row "
        "has no backward), beyond the input; its `x floor` only where the floor ran the same "
        "passes."
        + (" `x bw`: the forward time over the bandwidth floor's (reading the input and "
           "writing the output once, `x[..., ::2, ::2].clone()` on the same tensor)."
           if bw else ""),
        "",
        "| family | case | floor | fwd ms | x floor |" + (" x bw |" if bw else "")
        + " fwd+bwd ms | x floor | peak MiB | x floor | build ms | status |"
        + (" other |" if extra else ""),
        "|---|---|---|---:|---:|" + ("---:|" if bw else "") + "---:|---:|---:|---:|---:|---|"
        + ("---|" if extra else ""),
    ]
    for r in rows:
        name = r["name"] + (f" ({r['peer']})" if r.get("peer") else "")
        lines.append(
            f"| {r['family']} | {name} | {r['floor'] or '-'} "
            f"| {_fmt(r.get('forward_ms'), '.3f')} | {_fmt(r.get('forward_x_floor'), '.2f')} "
            + (f"| {_fmt(r.get('forward_x_bandwidth'), '.2f')} " if bw else "")
            + f"| {_fmt(r.get('fwd_bwd_ms'), '.3f')} | {_fmt(r.get('fwd_bwd_x_floor'), '.2f')} "
            f"| {_fmt(r.get('peak_mib'), '.1f')} | {_fmt(r.get('peak_x_floor'), '.2f')} "
            f"| {_fmt(r.get('construct_ms'), '.2f')} | {r.get('status', '-')} |"
            + (f" {_metrics(r.get('metrics'))} |" if extra else ""))
    return "\n".join(lines) + "\n"


def _progress(total: int, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="case", file=sys.stderr, dynamic_ncols=True)


def _common_part(names: list[str]) -> str:
    """The longest text every name contains (stripped of spaces at its ends), or ``""``."""
    first = min(names, key=len)
    for size in range(len(first), 0, -1):
        for start in range(len(first) - size + 1):
            part = first[start:start + size].strip()
            if part and all(part in n for n in names):
                return part
    return ""


def lost_floors(chosen: list[BenchCase], text: str) -> str | None:
    """The line that names the rows whose floor (or bandwidth floor) ``--filter text`` left
    out, so that their ``x floor`` (``x bw``) ratios print as ``-``, and a filter that keeps
    it; ``None`` when every chosen row has its floors."""
    if not text:  # every case runs: a floor missing then is the family's bug, not news here
        return None
    names = {(c.family, c.name) for c in chosen}
    lost = [(c, ref) for c in chosen for ref in (c.floor, c.bandwidth)
            if ref is not None and (c.family, ref) not in names]
    if not lost:
        return None
    rows = sorted({c.name for c, _ in lost})
    shown = "; ".join(f"{c.name} (floor: {ref})" for c, ref in lost[:3])
    more = f"; and {len(lost) - 3} more" if len(lost) > 3 else ""
    part = _common_part([n for c, ref in lost for n in (c.name, ref)])
    keep = (f"--filter {part!r} (it matches these rows and their floors)" if len(part) >= 3
            else "a --filter that their floors' names contain too")
    return (f"benchmarks: --filter {text!r} left out the floor of {len(rows)} "
            f"row{'s' if len(rows) > 1 else ''}, whose ratio columns are '-': {shown}{more}; "
            f"to keep the floors, pass {keep}, or no --filter")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=os.environ.get("EQUILAYERS_BENCH_PROG",
                                                          "python -m benchmarks"),
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, short timing")
    parser.add_argument("--family", action="append", default=None,
                        help="only this family (repeatable); default: every bench_*.py")
    parser.add_argument("--filter", default="", help="only cases whose name contains this")
    parser.add_argument("--device", action="append", choices=["cpu", "cuda"], default=None,
                        help="repeatable; default: cpu, and cuda when available")
    parser.add_argument("--out", type=Path, default=HERE / "results",
                        help="directory for the JSON and markdown results")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds per case and timing, over all rounds (default 0.05 "
                        "quick, 0.5 full)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="interleaved timing rounds; the median is reported (default 3 "
                        "quick, 7 full)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads before timing (default: torch's own; "
                        "recorded with the results)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--write-table", action="store_true",
                        help="families that measure a dispatch table (layout) write it: the "
                        "package's equilayers/kernels/_layout_table.py, or --table")
    parser.add_argument("--table", type=Path, default=None,
                        help="with --write-table: write the table here instead (needed with "
                        "--quick: a quick run never writes the package's table)")
    parser.add_argument("--seeds", type=int, default=None,
                        help="study families (accuracy, segmentation[3d], tetris, equivariance3d):"
                        " seeds per model (default 3, quick 1); construction3d: fresh processes "
                        "per row (default 7, quick 2)")
    parser.add_argument("--data", default="mnist", choices=["mnist", "fashion-mnist"],
                        help="training families (accuracy, segmentation): the data set")
    parser.add_argument("--split", default="test", choices=["test", "val"],
                        help="training families (accuracy): 'val' runs the model search on a "
                        "held-out quarter of the training digits")
    parser.add_argument("--first-seed", type=int, default=0,
                        help="training families (accuracy): the first seed (seeds are paired "
                        "across libraries: seed s is the same data order for every model)")
    parser.add_argument("--schedule", default="constant", choices=["constant", "cosine"],
                        help="training families (accuracy): the learning rate constant, or "
                        "annealed to 0 over the run (cosine)")
    parser.add_argument("--steps", type=int, default=None,
                        help="training families (segmentation3d): training steps per model")
    args = parser.parse_args(argv)
    # a repeated --family or --device once (it ran twice, or named the results 'pool-pool')
    for name in ("family", "device"):
        if getattr(args, name):
            setattr(args, name, list(dict.fromkeys(getattr(args, name))))
    _check_counts(parser, args)
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    # Training families (a module with run() instead of cases(): trained models, minutes each)
    # run only when named with --family.
    discover(args.family)  # an unknown family is named (with the known ones) before any import
    extra = _check_options(parser, args, args.family or [f for f in discover(None)
                                                         if not _is_study(f)])
    _make_out(parser, args.out)  # before minutes of training or timing, not after
    studies = [f for f in (args.family or []) if _is_study(f)]
    timing = [f for f in discover(args.family) if not _is_study(f)]
    if args.family and not [f for f in args.family if not _is_study(f)]:
        timing = []
        _check_study_only(parser, args, studies)
    # the timing families' checks, before the studies' minutes of training (they came after)
    if timing:
        devices = args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
        if "cuda" in devices and not torch.cuda.is_available():
            raise SystemExit("benchmarks: --device cuda asked for, but torch.cuda.is_available() "
                             "is False; run with --device cpu")
        budget = args.budget if args.budget is not None else (0.05 if args.quick else 0.5)
        rounds = args.rounds if args.rounds is not None else (3 if args.quick else 7)
        writers = {f: importlib.import_module(f"{__package__}.bench_{f}").write_table
                   for f in timing
                   if hasattr(importlib.import_module(f"{__package__}.bench_{f}"), "write_table")}
        if args.write_table and not writers:
            raise SystemExit("benchmarks: --write-table needs a family that writes a table "
                             "(--family layout)")
        if args.write_table and args.quick and args.table is None:
            raise SystemExit("benchmarks: a --quick run does not write the package's table; pass "
                             "--table PATH to write it elsewhere")
        if args.write_table and args.filter and args.table is None:
            # it wrote the filtered rows as the package's whole table
            raise SystemExit(f"benchmarks: --write-table writes the package's table from every "
                             f"case of the family, so it takes no --filter (got "
                             f"{args.filter!r}); drop --filter, or pass --table PATH to write "
                             "the filtered cases' table elsewhere")
        for line in missing_peers(timing):
            print(line, file=sys.stderr)
        cases = [c for fam in timing for c in load_cases(fam, args.quick)
                 if args.filter in c.name]
        if not cases:  # it said "no cases selected", naming neither the filter nor the families
            raise SystemExit(f"benchmarks: --filter {args.filter!r} matches no case name of "
                             f"{'family' if len(timing) == 1 else 'families'} "
                             f"{', '.join(timing)}{' (--quick)' if args.quick else ''}; pass a "
                             "part of a case name (the 'case' column of benchmarks/results/*.md)"
                             f", or no --filter{peer_hint(args.filter)}")
    for fam in studies:
        module = importlib.import_module(f"{__package__}.bench_{fam}")
        # --data goes to the families that read it (_check_options refused it for the others)
        takes = inspect.signature(module.run).parameters
        try:
            module.run(args.quick, args.out, seeds=args.seeds, progress=not args.no_progress,
                       name_filter=args.filter, **extra,
                       **({"data": args.data} if "data" in takes else {}))
        except UsageError as exc:  # the family's word on the command line, in one line
            raise SystemExit(f"benchmarks: --family {fam}: {exc}") from None
    if not timing:
        return 0

    lost = lost_floors(cases, args.filter)
    args.out.mkdir(parents=True, exist_ok=True)
    failed = 0
    for dev_name in devices:
        device = torch.device(dev_name)
        meta = {**metadata(device, args.quick), "filter": args.filter, "budget_s": budget,
                "rounds": rounds}
        families = sorted({c.family for c in cases})
        bar = _progress(len(families) * 2 * rounds + len(cases), not args.no_progress)
        rows = []
        for fam in families:
            if bar is not None:
                bar.set_description(f"{dev_name} {fam}")
            rows += run_family([c for c in cases if c.family == fam], device, budget, rounds,
                               tick=bar.update if bar is not None else lambda: None)
        if bar is not None:
            bar.close()
        add_ratios(rows)
        failed += sum(r["status"].startswith("error") for r in rows)
        # a --filter run writes its own files (it overwrote the whole family's committed ones)
        stem = "-".join([dev_name, *(sorted(args.family) if args.family else []),
                         *(["quick"] if args.quick else []),
                         *(["filtered"] if args.filter else [])])
        (args.out / f"{stem}.json").write_text(
            json.dumps({"meta": meta, "results": rows}, indent=1, default=str) + "\n")
        table = markdown(meta, rows)
        (args.out / f"{stem}.md").write_text(table)
        if args.write_table:
            source = args.out / f"{stem}.md"
            try:
                source = source.resolve().relative_to(HERE.parent)
            except ValueError:
                pass
            for fam, write in writers.items():
                written = write([r for r in rows if r["family"] == fam], meta, args.table,
                                source=str(source))
                print(f"benchmarks: wrote the {fam} table to {written}", file=sys.stderr)
        print(table)
        for r in rows:
            if r["status"].startswith("error"):
                print(f"{r['name']}: {r['traceback']}", file=sys.stderr)
    if lost:  # after the tables, where the '-' ratios are
        print(lost, file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
