"""The benchmark runner (``python -m benchmarks``) on toy budgets: its JSON and markdown, the
filters and what they drop, the layout family and the table the dispatcher reads, the memory and
bandwidth columns, ``equilayers bench``, the GPU session script, and usage errors named in one
line."""

import json
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _bench_common import ROOT, _bench_module

from equilayers.cli import _find_benchmarks


def test_runner_quick_writes_json_and_markdown(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--family", "pool", "--filter", "f5",
         "--device", "cpu", "--out", str(tmp_path), "--budget", "0.005", "--no-progress"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    data = json.loads((tmp_path / "cpu-pool-quick-filtered.json").read_text())
    assert data["meta"]["device"] == "cpu" and data["meta"]["torch"] == torch.__version__
    assert data["meta"]["date"] and data["meta"]["device_name"]
    # a --filter run writes its own files (it overwrote the family's committed results) and
    # says what it ran
    assert data["meta"]["filter"] == "f5" and data["meta"]["rounds"] == 3
    assert not (tmp_path / "cpu-pool-quick.json").exists()
    rows = {r["name"]: r for r in data["results"]}
    ours = [r for r in rows.values() if r["peer"] is None]  # + escnn's NormPool if installed
    assert len(ours) == 5 and all(r["status"] == "ok" for r in rows.values())
    floor = next(r for r in rows.values() if r["floor"] is None)
    other = next(r for r in rows.values() if r["floor"] is not None)
    assert other["floor"] == floor["name"]
    for key in ("forward_ms", "fwd_bwd_ms"):
        assert other[key] > 0 and floor[key] > 0
        assert abs(other[key.rsplit("_", 1)[0] + "_x_floor"] - other[key] / floor[key]) < 1e-9
    # b2 c4 f5 16x16 float32: the output alone is 8 KiB, so the training step allocates more.
    assert floor["peak_mib"] * 2**20 >= 2 * 4 * 16 * 16 * 4
    table = (tmp_path / "cpu-pool-quick-filtered.md").read_text()
    assert "| pool | linalg.vector_norm b2 c4 f5 16x16 |" in table and torch.__version__ in table
    assert "; 3 rounds of 0.005 s; only the cases matching --filter 'f5'." in table
    assert "left out the floor" not in out.stderr  # "f5" keeps every floor


def test_filter_that_drops_a_floor_says_so_and_how_to_keep_it(tmp_path):
    """--filter GroupPool keeps the GroupPool row but not its floor: its ratios print as '-',
    and one line (stderr, after the table) names the row, its floor and a filter that keeps
    both (it printed the '-' without a word). The suggested filter keeps the floor: the
    ratios are there and the line is gone (the control)."""
    def run(text: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "benchmarks", "--quick", "--family", "pool", "--filter",
             text, "--device", "cpu", "--out", str(tmp_path), "--budget", "0.002", "--rounds",
             "1", "--no-progress"], cwd=ROOT, capture_output=True, text=True, timeout=120)

    out = run("GroupPool")
    assert out.returncode == 0, out.stdout + out.stderr
    row = "GroupPool b2 c4 f8 16x16"
    assert re.search(rf"\| {row} \| amax fiber b2 c4 f8 16x16 \| [\d.]+ \| - \|", out.stdout)
    lines = [line for line in out.stderr.splitlines() if "left out the floor" in line]
    assert lines == [f"benchmarks: --filter 'GroupPool' left out the floor of 1 row, whose "
                     f"ratio columns are '-': {row} (floor: amax fiber b2 c4 f8 16x16); to keep "
                     "the floors, pass --filter 'b2 c4 f8 16x16' (it matches these rows and "
                     "their floors), or no --filter"], out.stderr
    kept = run("b2 c4 f8 16x16")
    assert kept.returncode == 0 and "left out the floor" not in kept.stderr, kept.stderr
    rows = {r["name"]: r for r in
            json.loads((tmp_path / "cpu-pool-quick-filtered.json").read_text())["results"]}
    assert rows[row]["forward_x_floor"] > 0


def test_layout_family_writes_a_table_the_dispatcher_reads(tmp_path):
    """The layout family's smoke run (one call, both quick sizes, every layout and path):
    it writes its results and a table file with an entry per key and pass; the package's
    own table is not touched."""
    package_table = ROOT / "equilayers" / "kernels" / "_layout_table.py"
    before = package_table.read_text()
    table = tmp_path / "table.py"
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--family", "layout", "--filter",
         "blur_pool2d k3 zeros", "--device", "cpu", "--out", str(tmp_path), "--budget", "0.002",
         "--rounds", "1", "--no-progress", "--write-table", "--table", str(table)],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert package_table.read_text() == before
    rows = json.loads((tmp_path / "cpu-layout-quick-filtered.json").read_text())["results"]
    assert len(rows) == 2 * 4 * 3 and all(r["status"] == "ok" for r in rows)
    namespace: dict = {}
    exec(compile(table.read_text(), str(table), "exec"), namespace)
    measured = namespace["MEASURED"]
    layouts = {"contiguous 4-D", "channels_last 4-D", "contiguous 5-D", "channels_last 5-D"}
    assert {k[2] for k in measured} == layouts and {k[3] for k in measured} == {32, 64}
    assert len(measured) == 4 * 2 * 2  # layouts x buckets x passes
    for (op, device, _, _, args, _), (choice, times) in measured.items():
        assert (op, device) == ("blur_pool2d", "cpu") and "padding_mode='zeros'" in args
        assert set(times) == {"separable", "depthwise_conv", "reference"} and choice in times
    assert namespace["SOURCE"].endswith("cpu-layout-quick-filtered.md")
    refused = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--family", "layout",
         "--write-table", "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
        timeout=120)
    assert refused.returncode != 0 and "does not write the package's table" in refused.stderr
    # a filtered run does not write the package's table (it wrote its few rows as all of it)
    refused = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--family", "layout", "--filter", "k3 zeros",
         "--write-table", "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
        timeout=120)
    assert refused.returncode != 0 and "takes no --filter" in refused.stderr
    assert package_table.read_text() == before


def test_layout_choices_keep_the_default_within_the_margin():
    layout = _bench_module("bench_layout")

    def row(path, fwd, fb):
        return {"family": "layout", "device": "cpu", "status": "ok", "forward_ms": fwd,
                "fwd_bwd_ms": fb, "params": {
                    "op": "blur_pool2d", "path": path, "default": "separable",
                    "layout": "channels_last 4-D", "bucket": 64, "arguments": "a=1"}}

    rows = [row("separable", 5.5, 10.0), row("depthwise_conv", 2.1, 9.8),
            row("reference", 5.1, 30.0), {**row("reference", 0.1, 0.1), "status": "error"}]
    table = layout.choices(rows)
    key = ("blur_pool2d", "cpu", "channels_last 4-D", 64, "a=1")
    assert table[(*key, "forward")] == ("depthwise_conv", {"separable": 5.5,
                                                           "depthwise_conv": 2.1,
                                                           "reference": 5.1})
    assert table[(*key, "forward+backward")][0] == "separable"  # 2% faster: noise
    text = layout.render(table, "benchmarks/results/cpu-layout.md", "a machine")
    namespace: dict = {}
    exec(compile(text, "<table>", "exec"), namespace)
    assert namespace["MEASURED"] == table and namespace["MACHINE"] == "a machine"


def test_layout_table_written_per_device_keeps_the_first_devices_fresh_entries(tmp_path):
    """A run over CPU and CUDA writes the table once per device; the second write kept the
    other device's entries from the table imported at start-up, so the CPU's fresh ones were
    lost. It now keeps what the file holds."""
    layout = _bench_module("bench_layout")

    def row(device, path, ms):
        return {"family": "layout", "device": device, "status": "ok", "forward_ms": ms,
                "fwd_bwd_ms": ms, "params": {
                    "op": "blur_pool2d", "path": path, "default": "separable",
                    "layout": "contiguous 4-D", "bucket": 16, "arguments": "fresh"}}

    path = tmp_path / "table.py"
    meta = {"date": "2026-12-07", "device_name": "x", "torch_threads": 2, "torch": "t"}
    layout.write_table([row("cpu", "separable", 1.0)], meta, path, source="s")
    layout.write_table([row("cuda", "separable", 2.0)], meta, path, source="s")
    kept = runpy.run_path(str(path))["MEASURED"]
    assert {k[1] for k in kept if k[4] == "fresh"} == {"cpu", "cuda"}
    # a --table path that holds something else is read, never run, and overwritten
    for other in ("raise SystemExit('ran the user file')\n", "# notes\n| a | b |\n"):
        path.write_text(other)
        layout.write_table([row("cpu", "separable", 1.0)], meta, path, source="s")
        assert "fresh" in path.read_text()


def test_the_shipped_layout_table_follows_the_margin_rule():
    """Each entry of the package's table picks what ``choices`` picks from its own times: the
    op's default unless another path is more than MARGIN faster, and every case has both
    passes. A hand-edited choice, times changed under it, or a lost entry fails here;
    well-formedness alone passes them."""
    from equilayers.kernels import _layout_table, _registry

    layout = _bench_module("bench_layout")
    assert _layout_table.MEASURED
    for key, (choice, times) in _layout_table.MEASURED.items():
        op = _registry.get_op(key[0])
        assert op is not None, key
        default = op.fast[key[1]][0].name
        best = min(times, key=lambda path: times[path])
        if default in times and times[default] <= times[best] * (1 + layout.MARGIN):
            best = default
        assert choice == best, (key, choice, times)
    # the family measures both passes of every case: a lost (or overwritten) entry shows here
    passes: dict[tuple, set] = {}
    for key in _layout_table.MEASURED:
        passes.setdefault(key[:5], set()).add(key[5])
    assert all(p == {"forward", "forward+backward"} for p in passes.values()), passes


def test_peak_ratio_only_between_rows_that_ran_the_same_passes():
    """A row that ran a training step over a forward-only floor (the layout sweep's
    ``copy x[..., ::2, ::2]``) got a peak-memory ratio of a step's over a forward call's;
    the times' ratios stay, and a floor of the same passes keeps its peak ratio."""
    main = _bench_module("__main__")
    base = {"family": "f", "device": "cpu", "bandwidth": None, "peer": None, "status": "ok"}
    rows = [{**base, "name": "copy", "floor": None, "forward_ms": 1.0, "peak_mib": 2.0},
            {**base, "name": "pool", "floor": "copy", "forward_ms": 3.0, "fwd_bwd_ms": 9.0,
             "peak_mib": 16.0},
            {**base, "name": "plain", "floor": None, "forward_ms": 1.0, "fwd_bwd_ms": 3.0,
             "peak_mib": 4.0},
            {**base, "name": "blur", "floor": "plain", "forward_ms": 2.0, "fwd_bwd_ms": 6.0,
             "peak_mib": 8.0},
            {**base, "name": "eval", "floor": "copy", "forward_ms": 2.0, "peak_mib": 6.0}]
    main.add_ratios(rows)
    pool, blur, ev = rows[1], rows[3], rows[4]
    assert pool["forward_x_floor"] == 3.0 and "peak_x_floor" not in pool
    assert blur["peak_x_floor"] == 2.0 and blur["fwd_bwd_x_floor"] == 2.0
    assert ev["peak_x_floor"] == 3.0
    meta = {"device": "cpu", "device_name": "x", "date": "d", "torch": "t", "python": "p",
            "torch_threads": 1, "cpu_count": 1, "cpu": "c", "quick": True, "peers": {}}
    assert "| 16.0 | - |" in main.markdown(meta, rows)


def test_bandwidth_ratios_and_column():
    main = _bench_module("__main__")
    rows = [{"family": "f", "device": "cpu", "name": "copy", "floor": None, "bandwidth": None,
             "peer": None, "status": "ok", "forward_ms": 2.0},
            {"family": "f", "device": "cpu", "name": "pool", "floor": None, "bandwidth": "copy",
             "peer": None, "status": "ok", "forward_ms": 3.0, "fwd_bwd_ms": 9.0}]
    main.add_ratios(rows)
    assert rows[1]["forward_x_bandwidth"] == 1.5 and "forward_x_bandwidth" not in rows[0]
    meta = {"device": "cpu", "device_name": "x", "date": "d", "torch": "t", "python": "p",
            "torch_threads": 1, "cpu_count": 1, "cpu": "c", "quick": True, "peers": {}}
    table = main.markdown(meta, rows)
    assert "| x bw |" in table and "| pool | - | 3.000 | - | 1.50 | 9.000 |" in table


def test_peak_memory_cpu_counts_the_allocations():
    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks._memory import peak_memory
    finally:
        sys.path.remove(str(ROOT))

    def allocate():
        a = torch.empty(1 << 20, dtype=torch.uint8)
        b = torch.empty(1 << 21, dtype=torch.uint8)
        del a, b
        c = torch.empty(1 << 20, dtype=torch.uint8)
        return c.numel()

    assert peak_memory(allocate, "cpu") == 3 << 20


def test_cli_bench_finds_the_source_tree(tmp_path):
    assert _find_benchmarks() == ROOT
    assert _find_benchmarks([tmp_path]) is None
    # a project of the user's own with a benchmarks/ package is not equilayers' suite (it ran)
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "__main__.py").write_text("print('theirs')\n")
    assert _find_benchmarks([tmp_path]) is None
    out = subprocess.run([sys.executable, "-m", "equilayers", "bench", "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "python -m benchmarks" in out.stdout, out.stderr


def test_cli_bench_from_a_project_with_its_own_benchmarks_package(tmp_path):
    """`python -m` puts the cwd first on sys.path, ahead of PYTHONPATH: run from a project of
    the user's own with a benchmarks/ package, `equilayers bench` ran that one (exit 0)."""
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "__init__.py").write_text("")
    (tmp_path / "benchmarks" / "__main__.py").write_text("print('THEIRS')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in [str(ROOT), os.environ.get("PYTHONPATH")] if p))
    out = subprocess.run([sys.executable, "-m", "equilayers", "bench", "--help"], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=60)
    assert "THEIRS" not in out.stdout
    assert out.returncode == 0 and "--family" in out.stdout, out.stdout + out.stderr
    # the negative control: the user's package does shadow the suite under a plain -m
    plain = subprocess.run([sys.executable, "-m", "benchmarks", "--help"], cwd=tmp_path,
                           env=env, capture_output=True, text=True, timeout=60)
    assert "THEIRS" in plain.stdout


def test_cli_bench_runs_the_suite_without_torchs_numpy_warning(monkeypatch):
    """`equilayers bench` runs `python -m benchmarks` in a child process, which the CLI's own
    quiet import of torch does not reach: the child gets the same filter (without NumPy, torch
    warned in two lines above the runner's output)."""
    from equilayers import cli

    calls = []

    def fake_run(cmd, env):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(cli.subprocess, "run", fake_run)
    assert cli.main(["bench", "--quick", "--family", "pool"]) == 0
    (cmd,) = calls
    assert cmd[0] == sys.executable
    assert cmd[-3:] == ["--quick", "--family", "pool"] and cmd[-4] == str(ROOT)
    assert "run_module('benchmarks'" in cmd[-5] and cmd[-6] == "-c"
    i = cmd.index("-W")
    assert cmd[i + 1] == "ignore:Failed to initialize NumPy:UserWarning" and i < cmd.index("-c")


def test_gpu_session_script_is_valid_and_names_existing_tests():
    """benchmarks/gpu_session.sh runs only on a lent GPU machine: keep it from rotting here."""
    script = ROOT / "benchmarks" / "gpu_session.sh"
    out = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    text = script.read_text()
    named = set(re.findall(r"tests/\w+\.py", text))
    assert named and all((ROOT / t).is_file() for t in named), named
    assert "--device cuda" in text and "--family kernels" in text


@pytest.mark.skipif(torch.cuda.is_available(), reason="the script's real run needs this CUDA")
def test_gpu_session_script_stops_in_one_line_without_cuda(tmp_path):
    """On a machine without CUDA the script says so in one line and writes nothing (it used to
    run on: nvidia-smi not found, a triton traceback, the CUDA benchmarks' refusal, twice)."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    out = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_session.sh"),
                          str(tmp_path / "out")], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 2 and out.stdout == "", out.stdout + out.stderr
    assert len(out.stderr.splitlines()) == 1 and "needs a CUDA machine" in out.stderr, out.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("family", ["pools", "Pool"])
def test_unknown_family_is_named_with_the_known_ones(family):
    """A misspelt --family gets one line naming it and the families there are (it was a
    20-line ModuleNotFoundError traceback); exit status 1. The control: 'pool' is listed."""
    out = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--family", family],
                         capture_output=True, text=True, cwd=Path(__file__).parents[1],
                         timeout=120)
    assert out.returncode == 1
    assert f"unknown family ['{family}']; available: [" in out.stderr
    assert "'pool'" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("args, named", [
    (["--threads", "0"], "--threads must be a positive int (torch threads); got 0"),
    (["--threads", "-2"], "--threads must be a positive int (torch threads); got -2"),
    (["--rounds", "0"], "--rounds must be a positive int (timing rounds); got 0"),
    (["--rounds", "-2"], "--rounds must be a positive int (timing rounds); got -2"),
    (["--seeds", "0"], "--seeds must be a positive int (seeds per model); got 0"),
    (["--steps", "0"], "--steps must be a positive int (training steps per model); got 0"),
    (["--budget", "0"], "--budget must be a positive, finite number of seconds"),
    (["--budget", "-1"], "--budget must be a positive, finite number of seconds"),
    (["--budget", "nan"], "--budget must be a positive, finite number of seconds"),
    (["--table", "t.py"], "--table 't.py' names where --write-table writes"),  # was ignored
    (["--budget", "inf"], "--budget must be a positive, finite number"),  # failed every row
    (["--threads", "99999999999"], "--threads must be at most 4096"),  # torch's overflow
    # a directory, or a file in no directory: a traceback after the whole timing run
    (["--write-table", "--table", "/"], "must be a file path in a writable directory"),
    (["--write-table", "--table", "/no/such/dir/t.py"], "must be a file path in a writable"),
])
def test_impossible_counts_are_usage_errors(args, named, capsys, tmp_path):
    """--threads 0 was torch's RuntimeError traceback, --rounds 0 a ZeroDivisionError in the
    table, --rounds -2 a StatisticsError traceback, --seeds 0 an IndexError after the data
    loaded, and --budget 0, -1 or nan ran in silence: each is now a usage error naming the
    flag and its value (exit status 2) before anything runs. The control: --rounds 1 runs."""
    runner = _bench_module("__main__")
    common = ["--quick", "--family", "pool", "--filter", "amax fiber", "--device", "cpu",
              "--out", str(tmp_path), "--budget", "0.002", "--no-progress"]
    with pytest.raises(SystemExit) as exc:
        runner.main(common + args)
    assert exc.value.code == 2
    assert named in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing written
    assert runner.main(common + ["--rounds", "1"]) == 0
    assert (tmp_path / "cpu-pool-quick-filtered.json").is_file()


@pytest.mark.parametrize("where", ["file", "file/sub"])
def test_out_that_cannot_be_a_directory_is_named_before_the_run(where, capsys, tmp_path):
    """--out at an existing file (or under one) was a FileExistsError/NotADirectoryError
    traceback, for a study family after its minutes of training; now a usage error naming
    --out and the path (exit status 2), before any case is built. The control: a new
    directory under tmp_path is made and written."""
    runner = _bench_module("__main__")
    (tmp_path / "file").write_text("mine")
    common = ["--quick", "--family", "pool", "--filter", "amax fiber", "--device", "cpu",
              "--budget", "0.002", "--rounds", "1", "--no-progress"]
    with pytest.raises(SystemExit) as exc:
        runner.main(common + ["--out", str(tmp_path / where)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"--out {str(tmp_path / where)!r} cannot be the results directory" in err, err
    assert (tmp_path / "file").read_text() == "mine"
    assert runner.main(common + ["--out", str(tmp_path / "new" / "dir")]) == 0
    assert (tmp_path / "new" / "dir" / "cpu-pool-quick-filtered.md").is_file()


@pytest.mark.parametrize("family", ["accuracy", "segmentation", "construction3d", "tetris",
                                    "equivariance3d", "segmentation3d"])
def test_study_filter_that_names_no_row_says_so_in_one_line(family, tmp_path):
    """A study family's --filter that names none of its rows: accuracy, segmentation and
    construction3d wrote an empty table (over the last run's results, by default
    benchmarks/results/) and exited 0; tetris and equivariance3d raised a ValueError
    traceback. Now one line names the family, the filter and the rows (exit status 1),
    before any data is made, and nothing is written."""
    runner = _bench_module("__main__")
    with pytest.raises(SystemExit) as exc:
        runner.main(["--quick", "--family", family, "--filter", "zzz", "--out", str(tmp_path),
                     "--no-progress"])
    message = str(exc.value.code)
    assert message.startswith(f"benchmarks: --family {family}: --filter 'zzz' names no row")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("args, family, named", [
    (["--family", "tetris", "--steps", "5"], "tetris", "--steps"),
    (["--family", "pool", "--seeds", "2"], "pool", "--seeds"),
    (["--family", "pool", "--schedule", "cosine"], "pool", "--schedule"),
    (["--steps", "5"], "antialias", "--steps"),  # no --family: the timing families run
    (["--family", "segmentation3d", "--family", "pool", "--steps", "5"], "pool", "--steps"),
    (["--family", "segmentation", "--split", "val", "--steps", "5"], "segmentation",
     "--split, --steps"),
    # the 3-D studies make their own data: --data ran them with it ignored
    (["--family", "equivariance3d", "--data", "fashion-mnist"], "equivariance3d", "--data"),
    (["--family", "segmentation3d", "--data", "fashion-mnist"], "segmentation3d", "--data"),
])
def test_an_option_a_family_does_not_take_is_named_before_anything_runs(args, family, named,
                                                                         tmp_path):
    """A training family's option (--steps, --split, --schedule, --first-seed, --seeds) given
    to a family that does not take it: a timing family ignored it in silence, a training
    family refused it only when its turn came (after minutes of the others' training). Now
    one line names the family and the options, before anything runs or is written. The
    control: segmentation3d takes --steps (it trains, quick, one row, 2 steps)."""
    runner = _bench_module("__main__")
    with pytest.raises(SystemExit) as exc:
        runner.main(["--quick", "--out", str(tmp_path), "--no-progress", *args])
    assert exc.value.code == f"benchmarks: --family {family} does not take {named}; leave it " \
        "out, or run that family on its own"
    assert not list(tmp_path.iterdir())
    assert runner.main(["--quick", "--out", str(tmp_path), "--no-progress", "--family",
                        "segmentation3d", "--steps", "2", "--filter", "(max pool)"]) == 0
    assert (tmp_path / "cpu-segmentation3d-steps2-quick-filtered.json").is_file()


def test_timing_filter_that_matches_no_case_names_the_filter_and_family(tmp_path):
    """It said "benchmarks: no cases selected", naming neither the filter nor the family."""
    runner = _bench_module("__main__")
    with pytest.raises(SystemExit) as exc:
        runner.main(["--quick", "--family", "pool", "--filter", "zzz", "--out", str(tmp_path)])
    assert exc.value.code == ("benchmarks: --filter 'zzz' matches no case name of family pool "
                              "(--quick); pass a part of a case name (the 'case' column of "
                              "benchmarks/results/*.md), or no --filter")


def test_the_timing_checks_come_before_the_studies_and_peers_are_named(tmp_path):
    """A study with a timing family: a --device, --filter or --write-table problem of the
    timing part stopped the run only after the study had trained (minutes to an hour); a
    study alone took --device cuda and ran on the CPU in silence. Now each is named before
    anything runs or is written. A --filter naming a peer that is not installed says where its
    rows are; a repeated --family runs and names its results once (it wrote
    cpu-pool-pool-quick)."""
    runner = _bench_module("__main__")
    study = ["--quick", "--no-progress", "--out", str(tmp_path), "--family", "segmentation3d"]
    with pytest.raises(SystemExit) as exc:
        runner.main([*study, "--device", "cuda"])
    assert "trains models and takes no --device" in str(exc.value.code)
    with pytest.raises(SystemExit) as exc:
        runner.main([*study, "--family", "pool", "--filter", "(max pool)"])
    assert "matches no case name of family pool" in str(exc.value.code)
    assert not list(tmp_path.iterdir())  # the study did not run
    with pytest.raises(SystemExit) as exc:
        runner.main(["--quick", "--family", "gconv", "--filter", "kornia", "--out",
                     str(tmp_path)])
    assert "rows of kornia exist only where it is installed: pip install kornia" in str(
        exc.value.code)
    common = ["--quick", "--family", "pool", "--family", "pool", "--filter", "amax fiber",
              "--device", "cpu", "--out", str(tmp_path), "--budget", "0.002", "--rounds", "1",
              "--no-progress"]
    assert runner.main(common) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cpu-pool-quick-filtered.json",
                                                          "cpu-pool-quick-filtered.md"]


@pytest.mark.parametrize("script,argv,message", [
    ("host_conv", ["--calls", "0"], "argument --calls: must be 1 or more; got 0"),
    ("host_conv", ["--rounds", "-3"], "argument --rounds: must be 1 or more; got -3"),
    ("host_conv", ["--filter", "zzz"], "--filter 'zzz' matches no layer"),
    ("host_harmonic", ["--reps", "0"], "argument --reps: must be 1 or more; got 0"),
    ("host_overhead", ["--calls", "-5"], "argument --calls: must be 1 or more; got -5"),
    ("host_overhead", ["--size", "0", "4", "8"], "argument --size: must be 1 or more; got 0"),
])
def test_host_scripts_refuse_bad_counts_as_usage_errors(script, argv, message, tmp_path):
    """A count of 0 divided by zero or found no median, a negative one printed a table of
    -0 us with exit 0, an unmatched filter an empty table: argparse's usage error now. (In a
    process of its own: host_overhead turns the Triton interpreter on for the whole process
    when imported, and every later test's pools then ran through it.)"""
    out = subprocess.run([sys.executable, "-m", f"benchmarks.{script}", *argv], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and message in out.stderr, out.stderr[-2000:]


def test_missing_peers_are_named_once_each(monkeypatch):
    """The timing families dropped the rows of a peer library that is not installed without a
    word: one line per missing peer names the families whose rows are skipped and the install
    that adds them; an installed peer is not named."""
    import importlib.util

    main = _bench_module("__main__")
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: (
        None if name in ("escnn", "e2cnn", "kornia") else find_spec(name, *a)))
    lines = main.missing_peers(["pool", "gconv", "harmonic", "linear", "tensor_product",
                                "gconv3d", "antialias"])
    assert len(lines) == 3, lines
    escnn, e2cnn, kornia = lines
    assert ("escnn is not installed: its rows of the pool, gconv, harmonic, linear, "
            "tensor_product, gconv3d families are skipped; to add them: pip install escnn"
            in escnn)
    assert "e2cnn" in e2cnn and "pool, gconv families" in e2cnn and "pip install e2cnn" in e2cnn
    assert "antialias family" in kornia and "pip install kornia" in kornia
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object())
    assert main.missing_peers(["pool", "antialias"]) == []
