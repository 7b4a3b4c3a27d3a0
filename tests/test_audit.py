"""The `equilayers audit` command."""

import subprocess
import sys
import textwrap

import pytest

from equilayers.cli import main

MODEL = textwrap.dedent("""
    import torch
    from torch import nn

    def build():
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
            nn.Conv2d(4, 4, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))

    def not_a_model():
        return 3
""")


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "tiny.py"
    path.write_text(MODEL)
    return path


def test_audit_subprocess_writes_png(model_file, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "report.png"
    proc = subprocess.run(
        [sys.executable, "-m", "equilayers", "audit", f"{model_file}:build", "--input-shape",
         "1,3,12,12", "--group", "p4m", "--out", str(out)],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert out.exists() and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = proc.stdout
    assert "Conv2d" in text and "consistency" in text and "flip" in text
    assert "lost" in text  # the plain conv loses the symmetry at its first layer
    assert "use an input size of 13" in text  # stride 2 on 12: check_grid's finding


def test_audit_in_process_plain_table(model_file, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "rich", None)  # plain-text fallback without rich
    assert main(["audit", f"{model_file}:build", "--input-shape", "1,3,9,9"]) == 0
    text = capsys.readouterr().out
    assert "Per-layer relative equivariance error" in text and "c4 error" in text


@pytest.mark.parametrize("args,match", [
    (["{f}:build", "--input-shape", "1,3,x"], "input-shape must be comma-separated"),
    (["{f}", "--input-shape", "1,3,9,9"], "expected FILE.py:FACTORY"),
    (["{f}:missing", "--input-shape", "1,3,9,9"], "no callable 'missing'"),
    (["{f}:not_a_model", "--input-shape", "1,3,9,9"], "must return an nn.Module"),
    (["nope.py:build", "--input-shape", "1,3,9,9"], "does not exist"),
    (["{f}:build", "--input-shape", "1,3,9,9", "--group", "p5"], "unknown group 'p5'"),
])
def test_audit_bad_input(model_file, capsys, args, match):
    args = [a.format(f=model_file) for a in args]
    assert main(["audit", *args]) == 2
    assert match in capsys.readouterr().err


def test_missing_matplotlib_is_a_clear_error(model_file, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    rc = main(["audit", f"{model_file}:build", "--input-shape", "1,3,9,9", "--out",
               str(tmp_path / "r.png")])
    assert rc == 2 and "pip install 'equilayers[plot]'" in capsys.readouterr().err
