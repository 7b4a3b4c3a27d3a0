import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import seeded_rng
from torch import nn

from equilayers.cli import _find_benchmarks

ROOT = Path(__file__).resolve().parent.parent


def test_runner_quick_writes_json_and_markdown(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--family", "pool", "--filter", "f5",
         "--device", "cpu", "--out", str(tmp_path), "--budget", "0.005", "--no-progress"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    data = json.loads((tmp_path / "cpu-pool-quick.json").read_text())
    assert data["meta"]["device"] == "cpu" and data["meta"]["torch"] == torch.__version__
    assert data["meta"]["date"] and data["meta"]["device_name"]
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
    table = (tmp_path / "cpu-pool-quick.md").read_text()
    assert "| pool | linalg.vector_norm b2 c4 f5 16x16 |" in table and torch.__version__ in table
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
            json.loads((tmp_path / "cpu-pool-quick.json").read_text())["results"]}
    assert rows[row]["forward_x_floor"] > 0


def _bench_module(name: str):
    sys.path.insert(0, str(ROOT))
    try:
        return importlib.import_module(f"benchmarks.{name}")
    finally:
        sys.path.remove(str(ROOT))


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
    rows = json.loads((tmp_path / "cpu-layout-quick.json").read_text())["results"]
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
    assert namespace["SOURCE"].endswith("cpu-layout-quick.md")
    refused = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--family", "layout",
         "--write-table", "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
        timeout=120)
    assert refused.returncode != 0 and "does not write the package's table" in refused.stderr


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
    out = subprocess.run([sys.executable, "-m", "equilayers", "bench", "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "python -m benchmarks" in out.stdout, out.stderr



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
    assert cmd[-5:] == ["-m", "benchmarks", "--quick", "--family", "pool"]
    i = cmd.index("-W")
    assert cmd[i + 1] == "ignore:Failed to initialize NumPy:UserWarning" and i < cmd.index("-m")


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


def test_accuracy_family_models_train_and_report(tmp_path):
    """The accuracy family's pieces on a toy budget: every model builds, trains a step and is
    evaluated; the table has one row per model (the real run: python -m benchmarks --family
    accuracy, minutes per model)."""
    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks import bench_accuracy as acc
    finally:
        sys.path.remove(str(ROOT))
    x = torch.rand(12, 1, 29, 29, generator=torch.Generator().manual_seed(0))
    y = torch.arange(12) % 10
    data = (x[:8], y[:8], x[8:], y[8:])
    results = []
    for m in acc.models(quick=True) + acc.models(quick=True, search=True):
        with seeded_rng(0):
            model = m.build()
        assert model(x[:2]).shape == (2, 10), m
        r = acc.train_and_test(model, data, epochs=1, seed=0, batch=4)
        assert 0.0 <= r["acc"] <= 1.0
        results.append({"arch": m.arch, "library": m.library, "params": 1, "accs": [r["acc"]],
                        "mean": r["acc"], "spread": 0.0, "train_s": r["train_s"]})
    meta = acc._meta(True, "mnist", 8, 4, 1, 1)
    table = acc.markdown(meta, results)
    assert table.count("\n| ") == len(results) + 1  # header + one row per model
    assert "cosine" not in table
    assert "annealed to 0 (cosine" in acc.markdown({**meta, "schedule": "cosine"}, results)


def test_accuracy_family_cosine_schedule_anneals_the_learning_rate():
    """``schedule="cosine"`` anneals Adam's learning rate to 0 over the run: with one epoch of
    two batches and a gradient that does not change (logits that are a parameter, one label),
    Adam moves each logit by the rate per step, 2 x 1e-3 constant and (1 + 0.5) x 1e-3 with the
    cosine; a bad schedule is an error naming the choices."""
    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks import bench_accuracy as acc
    finally:
        sys.path.remove(str(ROOT))

    class Logits(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.b = nn.Parameter(torch.zeros(10))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.b.expand(len(x), 10)

    x = torch.zeros(8, 1, 29, 29)
    data = (x, torch.full((8,), 3), x[:2], torch.full((2,), 3))
    moved = {}
    for schedule in acc.SCHEDULES:
        model = Logits()
        acc.train_and_test(model, data, epochs=1, seed=0, batch=4, schedule=schedule)
        moved[schedule] = model.b.detach().abs().mean().item()
    assert moved == pytest.approx({"constant": 2e-3, "cosine": 1.5e-3}, rel=1e-3), moved
    with pytest.raises(ValueError, match="schedule must be one of"):
        acc.train_and_test(model, data, epochs=1, seed=0, schedule="linear")
    with pytest.raises(ValueError, match="schedule must be one of"):
        acc.run(True, ROOT, schedule="step")


def test_segmentation_family_models_train_and_report(tmp_path):
    """The segmentation family's pieces on a toy budget: scenes and labels line up, every model
    builds, trains a step and is measured; the table has one row per model (the real run:
    python -m benchmarks --family segmentation, about 40 minutes on one
    thread, the two escnn rows only where escnn is installed)."""
    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks import bench_segmentation as seg
    finally:
        sys.path.remove(str(ROOT))
    digits = torch.zeros(4, 1, 28, 28)
    digits[:, :, 6:22, 10:18] = 1.0
    x, y = seg.scenes(digits, torch.arange(4), 3, rotated=True,
                      gen=torch.Generator().manual_seed(0))
    assert x.shape == (3, 1, 32, 32) and y.shape == (3, 32, 32)
    assert torch.equal(y > 0, x[:, 0] > seg.INK) and set(y.unique().tolist()) <= {0, 1, 2, 3, 4}
    assert seg.miou(y, y) == 1.0 and seg.miou(torch.zeros_like(y), y) < 1.0
    data = {k: (x, y) for k in ("train", "upright", "rotated", "shifted")}
    results = []
    for m in seg.models(quick=True):
        with seeded_rng(0):
            r = seg.train_and_test(m.build(), data, epochs=1, seed=0, batch=2)
        assert 0.0 <= r["miou_rotated"] <= 1.0 and 0.0 <= r["rot90_consistency"] <= 1.0
        if m.group == "p4m":
            assert r["rot90_consistency"] == 1.0, m
        if m.down == "polyphase":
            assert r["shift_consistency"] == 1.0, m
        results.append({"model": m.name, "params": 1, "per_seed": [r],
                        **{k: r[k] for k in seg.KEYS}, **{k + "_spread": 0.0 for k in seg.KEYS}})
    meta = seg._meta(True, "mnist", 3, 3, 1, 1, 32)
    table = seg.markdown(meta, results)
    assert table.count("\n| ") == len(results) + 1


def test_accuracy_model_search_holds_out_training_digits():
    """The search split (``--split val``) trains on the first 3/4 of the training digits and
    scores on the last 1/4; the test digits never appear. The search candidates stay within
    the family's budget (40-46K parameters, as the other rows)."""
    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks import bench_accuracy as acc
    finally:
        sys.path.remove(str(ROOT))
    x = torch.arange(12.0).view(12, 1, 1, 1)
    y = torch.arange(12)
    fit_x, fit_y, val_x, val_y = acc.holdout((x[:8], y[:8], x[8:], y[8:]))
    assert fit_y.tolist() == list(range(6)) and val_y.tolist() == [6, 7]
    assert fit_x.shape[0] == 6 and val_x.shape[0] == 2
    for m in acc.models(quick=False, search=True):
        params = sum(p.numel() for p in m.build().parameters())
        assert 40_000 <= params <= 46_000, (m.arch, params)
    with pytest.raises(ValueError, match="split must be"):
        acc.run(True, ROOT, split="train")
    harmonic = [("d8", 2, 2), ("d8", 2, 2), ("c8", 2, 2), ("c8", 2, 2)]
    with pytest.raises(ValueError, match="head must be"):
        acc._escnn_style(harmonic, head="max")
    with pytest.raises(ValueError, match="needs harmonic fields on the last layer"):
        acc._escnn_style([("c8", None, 2)] * 4, head="mlp")


def test_accuracy_family_momentum_reaches_every_batch_norm():
    """The escnn-style row's ``momentum`` is set on every batch norm of the model (ours and
    torch's: the harmonic ones, the head's ``BatchNorm1d``), and a running statistic moves by
    it; without the option each keeps torch's 0.1 (the control)."""
    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks import bench_accuracy as acc
    finally:
        sys.path.remove(str(ROOT))
    from equilayers.nn import GroupBatchNorm2d, HarmonicBatchNorm

    kinds = (torch.nn.modules.batchnorm._BatchNorm, HarmonicBatchNorm)
    spec = acc.SEARCH[acc.ESCNN_STYLE]
    assert spec["momentum"] == 0.5
    for model, want in ((acc._search_model(spec), 0.5),
                        (acc._search_model({**spec, "momentum": None}), 0.1),
                        (acc._equilayers_regular("c8", 2, "harmonic", momentum=0.5), 0.5),
                        (acc._equilayers_harmonic(2, "gated", momentum=0.5), 0.5)):
        norms = [m for m in model.modules() if isinstance(m, kinds)]
        assert len(norms) >= 4 and {m.momentum for m in norms} == {want}, model
    head = [m for m in acc._search_model(spec).modules()
            if isinstance(m, torch.nn.BatchNorm1d)]
    assert len(head) == 1
    bn = acc._equilayers_regular("c8", 2, "harmonic", momentum=0.5)[1]
    assert isinstance(bn, GroupBatchNorm2d)
    bn.train()(torch.full((4, 2, 8, 3, 3), 2.0))
    assert torch.allclose(bn.running_mean, torch.full_like(bn.running_mean, 1.0))


def test_tetris_data_is_the_classic_set_and_rotates_exactly():
    """The tetris family's data: the enumerated polycubes of 4 cubes are the 8 classic shapes
    (5 cubes: 29), rotations are Haar-drawn rotation matrices, and rendering a shape under
    the cube's 24 rotation matrices gives exactly the 24 ``act`` turns of the upright volume
    (so the rendered rotation is a rotation of the volume)."""
    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks import _polycubes as P
    finally:
        sys.path.remove(str(ROOT))
    four = P.polycubes(4)
    assert len(four) == 8 and len(P.polycubes(5)) == 29
    assert sorted(min(i for i, s in enumerate(four) if P.same_up_to_rotation(t, s))
                  for t in P.TETRIS) == list(range(8))  # one class each: chirality kept
    assert not P.same_up_to_rotation(P.TETRIS[0], P.TETRIS[1])
    r = P.random_rotations(6, torch.Generator().manual_seed(0))
    torch.testing.assert_close(r @ r.transpose(1, 2), torch.eye(3, dtype=r.dtype).expand_as(r))
    torch.testing.assert_close(torch.linalg.det(r), torch.ones(6, dtype=r.dtype))
    cube = torch.tensor(P._cube_matrices(), dtype=torch.float64)
    upright = P.render(P.TETRIS[0], torch.eye(3, dtype=torch.float64)[None], 9, 1.5)
    rendered = P.render(P.TETRIS[0], cube, 9, 1.5)
    d = torch.cdist(P.cube_turns(upright).flatten(1), rendered.flatten(1))
    assert float(d.min(1).values.max()) < 1e-5 and float(d.min(0).values.max()) < 1e-5
    assert abs(float(upright.sum()) / (4 * 1.5**3) - 1) < 0.15  # four cubes of 1.5^3 voxels


def test_tetris_family_quick_runs_and_reports(tmp_path):
    """``python -m benchmarks --family tetris --quick``'s path (tetris task, 1 seed, 10
    steps): every model trains and is tested; the octahedral and SO(3) models are exactly
    invariant to the cube's rotations on the grid, so their accuracy under them is their
    upright accuracy; the parameter counts are matched."""
    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks import bench_tetris as tet
    finally:
        sys.path.remove(str(ROOT))
    with seeded_rng(0):
        results = tet.run(True, tmp_path, progress=False)
    assert [r["model"] for r in results] == list(tet.BUILDERS)
    data = json.loads((tmp_path / "cpu-tetris-quick.json").read_text())
    assert data["meta"]["quick"] and len(data["results"]) == len(tet.BUILDERS) == 5
    params = [r["params"] for r in results]
    assert max(params) / min(params) < 1.5, params  # the nearest width; quick widths are 1-2
    for r in results:
        assert 0.0 <= r["random"] <= 1.0 and r["train_s"] > 0
        if r["model"] != "plain 3-D CNN":
            assert r["cube"] == r["upright"], r
    table = (tmp_path / "cpu-tetris-quick.md").read_text()
    assert table.count("\n| tetris |") == 5
    with pytest.raises(ValueError, match="task must be one of"):
        tet.dataset("tetrominoes")
    # --filter picks rows "task: model" (a model alone here), and names them when it misses
    with seeded_rng(0):
        (one,) = tet.run(True, tmp_path, progress=False, name_filter="escnn's norm-ReLU")
    assert one["model"] == "SO(3) steerable, escnn's norm-ReLU" and one["task"] == "tetris"
    assert one["cube"] == one["upright"]
    with pytest.raises(ValueError, match=r"names no row 'task: model'.*SO\(3\) steerable"):
        tet.run(True, tmp_path, progress=False, name_filter="tetrominoes")


def test_tetris_models_heads_are_exactly_invariant_on_the_cube():
    """The octahedral model's head (the global mean of every slot, then the max and the mean
    over the slots) keeps the model exactly O-invariant in float64, and the plain CNN of the
    same family is not (the control)."""
    from equilayers.testing import invariance_error

    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks import bench_tetris as tet
    finally:
        sys.path.remove(str(ROOT))
    x = torch.randn(2, 1, 7, 7, 7, generator=torch.Generator().manual_seed(0),
                    dtype=torch.float64)
    with seeded_rng(0):
        octa = tet.octahedral_cnn(1, 3).double().eval()
        plain = tet.plain_cnn(4, 3).double().eval()
    assert invariance_error(octa, x, "o") < 1e-10
    assert invariance_error(plain, x, "o") > 1e-3


def test_gconv3d_family_rows_pair_with_their_floors(tmp_path):
    """The gconv3d family's quick rows: every row names a floor of the family with the same
    expanded channel counts (the floor's output has the same numel as ours); the runner times
    the c4z rows and writes them."""
    g3 = _bench_module("bench_gconv3d")
    cases = g3.cases(quick=True)
    floors = {c.name: c for c in cases if c.floor is None}
    assert floors and all(c.floor in floors for c in cases if c.floor is not None)
    for c in cases:
        if c.floor is not None and c.peer is None:
            fn, x = c.make()
            ffn, fx = floors[c.floor].make()
            with torch.no_grad():
                assert fn(x).numel() == ffn(fx).numel(), c.name
    kinds = {(c.params["kind"], c.params["group"]) for c in cases}
    assert {("lifting", "o"), ("group", "o"), ("group", "c4z"), ("lifting", "so3"),
            ("harmonic", "so3")} <= kinds
    assert any(c.name.startswith("ours exported") for c in cases)
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--family", "gconv3d", "--filter",
         "group c4z", "--device", "cpu", "--out", str(tmp_path), "--budget", "0.002",
         "--rounds", "1", "--no-progress"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    rows = json.loads((tmp_path / "cpu-gconv3d-quick.json").read_text())["results"]
    assert all(r["status"] == "ok" for r in rows), rows
    assert any(r.get("fwd_bwd_x_floor") for r in rows)


def test_equivariance3d_family_quick_runs_and_reports(tmp_path):
    """``python -m benchmarks --family equivariance3d --quick``'s path (one stack, one seed,
    two rotations, 15^3): our stack is exact on the cube's rotations and below the
    interpolation floor off the grid; the plain nn.Conv3d stack (the negative control) is far
    off on both; escnn's row, where escnn imports, is exact on the cube in its frame."""
    eq = _bench_module("bench_equivariance3d")
    results = eq.run(True, tmp_path, progress=False)
    by = {r["library"]: r for r in results}
    ours, plain = by["equilayers"], by["plain nn.Conv3d"]
    assert ours["cube"] < 1e-5 and plain["cube"] > 0.3
    assert 0 < ours["off_grid"] < ours["floor_identity"] and plain["off_grid"] > 0.5
    if "escnn" in by:
        assert by["escnn"]["cube"] < 1e-5 and by["escnn"]["off_grid"] < 0.5
    table = (tmp_path / "cpu-equivariance3d-quick.md").read_text()
    assert table.count("\n| norm L=1 k=3 |") == len(results)
    with pytest.raises(ValueError, match="names no row"):
        eq.run(True, tmp_path, progress=False, name_filter="nonesuch")


def test_construction3d_family_times_fresh_processes(tmp_path):
    """The 3-D construction family on one row and one process: the child prints cold and warm
    times, the row reports their medians, the table has a row per result, a failed row says
    why (the real run: python -m benchmarks --family construction3d, 7 processes per row,
    escnn's R3Conv rows in the peers venv)."""
    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks import bench_construction3d as c3
    finally:
        sys.path.remove(str(ROOT))
    names = [c3.label(r) for r in c3.rows(quick=False, peers=True)]
    assert len(names) == len(set(names)) and any("escnn R3Conv so3" in n for n in names)
    assert not any("escnn" in c3.label(r) for r in c3.rows(quick=True, peers=False))
    results = c3.run(True, tmp_path, seeds=1, progress=False,
                     name_filter="equilayers SteerableConv3d so3 16->16 L=1 k3")
    assert len(results) == 1 and results[0]["status"] == "ok", results
    r = results[0]
    assert r["processes"] == 1 and len(r["samples"]) == 1 and len(r["samples"][0]) == 4
    assert 0 < r["warm_ms"] and 0 < r["cold_ms"] and r["cold_min_ms"] == r["cold_ms"]
    failed = {**c3.rows(True, False)[0], "name": "x", "status": "failed: ValueError: y"}
    table = c3.markdown(json.loads((tmp_path / "cpu-construction3d-quick.json").read_text())[
        "meta"], results + [failed])
    assert table.count("\n| ") == 3 and "| x | - | - | - | - | - | failed: ValueError: y |" \
        in table
    assert (tmp_path / "cpu-construction3d-quick.md").read_text().count("\n| ") == 2


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
    (["--budget", "0"], "--budget must be a positive number of seconds"),
    (["--budget", "-1"], "--budget must be a positive number of seconds"),
    (["--budget", "nan"], "--budget must be a positive number of seconds"),
    (["--table", "t.py"], "--table 't.py' names where --write-table writes"),  # was ignored
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
    assert (tmp_path / "cpu-pool-quick.json").is_file()


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
    assert (tmp_path / "new" / "dir" / "cpu-pool-quick.md").is_file()


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


def test_timing_filter_that_matches_no_case_names_the_filter_and_family(tmp_path):
    """It said "benchmarks: no cases selected", naming neither the filter nor the family."""
    runner = _bench_module("__main__")
    with pytest.raises(SystemExit) as exc:
        runner.main(["--quick", "--family", "pool", "--filter", "zzz", "--out", str(tmp_path)])
    assert exc.value.code == ("benchmarks: --filter 'zzz' matches no case name of family pool "
                              "(--quick); pass a part of a case name (the 'case' column of "
                              "benchmarks/results/*.md), or no --filter")


def test_equimodels_family_times_every_model_against_its_dense_floor(tmp_path):
    """The whole-model family (python -m benchmarks --family equimodels; the GPU session runs
    it on CUDA): every row runs, each of ours names its dense floor, and the floor moves the
    same activations (its logits' shape, and the channel count after the stem: fields x fiber)."""
    from benchmarks import bench_equimodels as eq

    out = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--family", "equimodels", "--device",
         "cpu", "--out", str(tmp_path), "--budget", "0.002", "--rounds", "1", "--no-progress"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    rows = json.loads((tmp_path / "cpu-equimodels-quick.json").read_text())["results"]
    assert len(rows) == 16 and all(r["status"] == "ok" for r in rows)
    ours = [r for r in rows if r["name"].startswith("ours")]
    assert len(ours) == 8 and all(r.get("forward_x_floor") for r in ours)
    x = torch.randn(2, 1, 17, 17)
    for build, fiber in ((eq.p4m_resnet, 8), (eq.so2_cnn, 5)):
        model, dense = build(2).eval(), build(2, dense=True).eval()
        assert model(x).shape == dense(x).shape == (2, 10)
        assert model[0](x).flatten(1, 2).shape == dense[0](x).shape == (2, 2 * fiber, 17, 17)


def test_gpu_tune_sweep_writes_its_table_and_flags_a_mismatch(tmp_path, monkeypatch):
    """benchmarks/gpu_tune.py's sweep, on CPU tensors through Triton's interpreter with a fake
    timer: the table, the JSON and the best launches are written; a kernel whose result
    changes between launches (what a race looks like) is a MISMATCH row, never a best."""
    if os.environ.get("TRITON_INTERPRET") != "1" or importlib.util.find_spec("triton") is None:
        pytest.skip("needs triton and TRITON_INTERPRET=1 (make test sets it)")
    from benchmarks import gpu_tune as t

    monkeypatch.setattr(t, "DEVICE", "cpu")
    monkeypatch.setattr(t, "B", 1)
    monkeypatch.setattr(t, "C", 2)
    monkeypatch.setattr(t, "N", 6)
    monkeypatch.setattr(t, "CANDIDATES", [(256, 4), (512, 8)])
    monkeypatch.setattr(t, "copy_bandwidth", lambda: 100.0)
    monkeypatch.setattr(t, "_bench", lambda fn: (fn(), 0.5)[1])
    real_ops = t._ops

    def ops(T, x):
        table = real_ops(T, x)
        table["blur"] = (lambda: torch.randn(3), 12)  # a different result every call
        return table
    monkeypatch.setattr(t, "_ops", ops)
    best = t.tune(tmp_path)
    data = json.loads((tmp_path / "cuda-tune.json").read_text())
    status = {(r["kernel"], r["block"], r["int64"]): r["status"] for r in data["rows"]}
    assert status[("blur", 256, False)] == "MISMATCH" and status[("max_blur", 512, False)] == "ok"
    assert best["blur"] == [list(c) for c in data["meta"]["shipped"]["blur"]]  # none passed
    assert set(best) == set(data["meta"]["shipped"])
    assert json.loads((tmp_path / "cuda-launch.json").read_text()) == best
    assert "| max_blur_bwd | channels_last | 512 | 8 |" in (tmp_path / "cuda-tune.md").read_text()


def test_inference_rows_are_modules_the_runner_moves():
    """An inference row's callable is a module (eval, no_grad), so the runner's .to(device)
    moves its weights: a closure kept them on the CPU and every inference row failed on CUDA
    (H200 run, 2026-12-04). A dtype stands in for the device here."""
    from benchmarks._core import infer

    m = infer(nn.Linear(3, 2))
    assert isinstance(m, nn.Module) and not m.model.training
    m = m.to(torch.float64)
    y = m(torch.randn(4, 3, dtype=torch.float64))
    assert y.dtype == torch.float64 and not y.requires_grad


def test_host_harmonic_counts_ops_and_times_every_layer():
    """``python -m benchmarks.host_harmonic``: a row per layer with times and aten op counts
    (a forward+backward has more ops than its no-grad forward)."""
    from benchmarks.host_harmonic import measure

    rows = measure(reps=1)
    assert {r["layer"] for r in rows} >= {"HarmonicBatchNorm (train)", "NormNonlinearity",
                                          "NormPool", "so2_cnn(8) (train)"}
    for r in rows:
        assert r["fwd_us"] > 0 and r["fwd_bwd_us"] > 0 and 0 < r["fwd_ops"] < r["ops"], r
