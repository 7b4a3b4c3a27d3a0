import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

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


def test_gpu_session_script_is_valid_and_names_existing_tests():
    """benchmarks/gpu_session.sh runs only on a lent GPU machine: keep it from rotting here."""
    script = ROOT / "benchmarks" / "gpu_session.sh"
    out = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    text = script.read_text()
    named = set(re.findall(r"tests/\w+\.py", text))
    assert named and all((ROOT / t).is_file() for t in named), named
    assert "--device cuda" in text and "--family kernels" in text


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
        torch.manual_seed(0)
        model = m.build()
        assert model(x[:2]).shape == (2, 10), m
        r = acc.train_and_test(model, data, epochs=1, seed=0, batch=4)
        assert 0.0 <= r["acc"] <= 1.0
        results.append({"arch": m.arch, "library": m.library, "params": 1, "accs": [r["acc"]],
                        "mean": r["acc"], "spread": 0.0, "train_s": r["train_s"]})
    meta = acc._meta(True, "mnist", 8, 4, 1, 1)
    table = acc.markdown(meta, results)
    assert table.count("\n| ") == len(results) + 1  # header + one row per model


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
