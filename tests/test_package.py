import subprocess
import sys
from pathlib import Path

import equilayers

OPTIONAL = ["triton", "scipy", "matplotlib", "escnn", "e2cnn", "kornia", "skimage", "rich"]


def test_import_is_light():
    """``import equilayers`` pulls in no optional package (its time is not a unit test: on this
    2-core machine it is 0.1-0.2 s after torch, and a loaded machine makes any bound flaky)."""
    code = ("import sys; import torch; import equilayers; "
            f"print([m for m in {OPTIONAL!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]", f"import equilayers pulled in optional packages: {out}"


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
