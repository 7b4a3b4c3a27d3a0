"""The timing families of ``benchmarks/`` on toy budgets (gconv3d, construction3d,
equimodels, host_harmonic), the GPU launch tuner's sweep, and the runner's inference rows."""

import importlib
import json
import os
import subprocess
import sys

import pytest
import torch
from _bench_common import ROOT, _bench_module
from torch import nn


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
    rows = json.loads((tmp_path / "cpu-gconv3d-quick-filtered.json").read_text())["results"]
    assert all(r["status"] == "ok" for r in rows), rows
    assert any(r.get("fwd_bwd_x_floor") for r in rows)


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
    written = tmp_path / "cpu-construction3d-quick-filtered.json"
    table = c3.markdown(json.loads(written.read_text())["meta"], results + [failed])
    assert table.count("\n| ") == 3 and "| x | - | - | - | - | - | failed: ValueError: y |" \
        in table
    assert (tmp_path / "cpu-construction3d-quick-filtered.md").read_text().count("\n| ") == 2


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
