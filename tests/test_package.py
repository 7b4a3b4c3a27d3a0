import subprocess
import sys
from pathlib import Path

import equilayers

OPTIONAL = ["triton", "scipy", "matplotlib", "escnn", "e2cnn", "kornia", "skimage", "rich"]


def test_import_is_light():
    code = ("import sys, time; import torch; t = time.perf_counter(); import equilayers; "
            "dt = time.perf_counter() - t; "
            f"bad = [m for m in {OPTIONAL!r} if m in sys.modules]; print(dt, bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split(maxsplit=1)
    assert out[1].strip() == "[]", f"import equilayers pulled in optional packages: {out[1]}"
    assert float(out[0]) < 0.3


def test_public_api():
    for mod in [equilayers, equilayers.groups, equilayers.testing, equilayers.functional,
                equilayers.nn, equilayers.metrics]:
        for name in mod.__all__:
            assert hasattr(mod, name), f"{mod.__name__}.__all__ lists missing {name}"
    assert (Path(equilayers.__file__).parent / "py.typed").exists()


def test_cli_selfcheck_runs():
    out = subprocess.run([sys.executable, "-m", "equilayers", "selfcheck", "--filter",
                          "harness/"], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "random-conv-p4-fails" in out.stdout and "cases behave as expected" in out.stdout
