"""Smoke test of the built wheel in a clean venv (``make test-wheel``; not collected by pytest).

Usage: ``VENV/bin/python tests/_wheel_smoke.py WHEEL`` (from a directory outside the checkout).

Run from outside the source tree by the venv's python, where equilayers is installed from the
wheel with no extras (torch only). Checks that the wheel ships ``py.typed`` and the Apache-2.0
``LICENSE`` in its ``.dist-info`` and nothing of the tests; that the installed package, not the
checkout, is imported; that ``import equilayers`` pulls in no optional package; a lifting ->
group conv -> pool forward; ``antialias``; every command the README and the docs name, through
the installed ``equilayers`` script: ``selfcheck``, ``audit`` (table; ``--out`` without
matplotlib stops with the pip hint), ``bench`` (outside the source tree: says where the suite
lives), and ``demo`` without the demo extra (a one-line hint naming the pip install command).
"""

import os
import subprocess
import sys
from pathlib import Path

import torch

import equilayers
from equilayers._rng import global_rng_from
from equilayers.nn import GroupConv2d, GroupPool, LiftingConv2d

OPTIONAL = ["triton", "matplotlib", "escnn", "e2cnn", "kornia", "scipy", "rich", "skimage"]


def check_wheel(wheel: str) -> None:
    """The wheel ships py.typed and nothing of the tests (the test-only helpers included)."""
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    assert "equilayers/py.typed" in names, "the wheel lacks equilayers/py.typed"
    leaked = [n for n in names if n.split("/")[0] in ("tests", "benchmarks", "examples")]
    assert not leaked, f"the wheel ships files outside the package: {leaked}"
    helpers = [n for n in names if n.split("/")[-1] in ("_ddp.py", "_zoo.py", "conftest.py")]
    assert not helpers, f"the wheel ships test-only helpers: {helpers}"
    # Apache-2.0 asks every copy to carry the license: setuptools puts LICENSE in
    # *.dist-info/licenses/ (PEP 639, setuptools >= 77) or *.dist-info/ (older)
    licenses = [n for n in names if n.split("/")[0].endswith(".dist-info")
                and n.split("/", 1)[1] in ("licenses/LICENSE", "LICENSE")]
    assert licenses, ("the wheel's .dist-info lacks the LICENSE file: "
                      f"{[n for n in names if '.dist-info/' in n]}")
    text = zipfile.ZipFile(wheel).read(licenses[0]).decode("utf-8")
    assert "Apache License" in text and "Version 2.0" in text, (
        f"{licenses[0]} is not the Apache-2.0 license text: {text[:200]!r}")
    print(f"wheel: {len(names)} files, py.typed, {licenses[0]} (Apache-2.0), no tests or "
          "test helpers")


def main() -> None:
    where = Path(equilayers.__file__).resolve()
    assert Path(sys.prefix).resolve() in where.parents, f"not the installed wheel: {where}"
    assert (where.parent / "py.typed").exists(), "the wheel lacks py.typed"
    pulled = [m for m in OPTIONAL if m in sys.modules]
    assert not pulled, f"import equilayers pulled in optional packages: {pulled}"

    with global_rng_from(torch.Generator().manual_seed(0)):
        model = torch.nn.Sequential(LiftingConv2d(3, 4, 3, padding=1, group="p4"),
                                    torch.nn.ReLU(), GroupConv2d(4, 4, 3, padding=1, group="p4"),
                                    GroupPool("max"))
    y = model(torch.randn(2, 3, 9, 9))
    assert y.shape == (2, 4, 9, 9), y.shape

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, 2, 1), torch.nn.MaxPool2d(2))
    new, report = equilayers.antialias(net, return_report=True)
    assert [type(r.new).__name__ for r in report] == ["BlurConv2d", "MaxBlurPool2d"], report
    assert new(torch.randn(1, 3, 16, 16)).shape == (1, 8, 4, 4)

    cli = [sys.executable, "-m", "equilayers"]
    check = subprocess.run(cli + ["selfcheck", "--filter", "even-size-fails"],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "even-size-fails" in check.stdout, check.stdout
    # no NumPy here: torch's import warning about it is not selfcheck's news
    assert check.stderr == "", check.stderr

    script = Path(sys.executable).parent / "equilayers"
    assert script.is_file(), f"the wheel installed no `equilayers` script next to {sys.executable}"
    quiet = {"PYTHONWARNINGS": "ignore:Failed to initialize NumPy:UserWarning"}
    env = {**os.environ, **quiet}
    Path("audit_model.py").write_text(
        "import torch\nfrom equilayers.nn import GroupConv2d, GroupPool, LiftingConv2d\n\n"
        "def build():\n    return torch.nn.Sequential(LiftingConv2d(1, 4, 3, padding=1, "
        "group='p4'), torch.nn.ReLU(), GroupConv2d(4, 4, 3, padding=1, group='p4'), "
        "GroupPool('max'))\n")
    audit = subprocess.run([str(script), "audit", "audit_model.py:build", "--input-shape",
                            "1,1,9,9", "--group", "p4", "--batch", "2"],
                           capture_output=True, text=True, env=env)
    assert audit.returncode == 0, audit.stdout + audit.stderr
    assert "group c4" in audit.stdout and "GroupConv2d" in audit.stdout, audit.stdout
    plot = subprocess.run([str(script), "audit", "audit_model.py:build", "--input-shape",
                           "1,1,9,9", "--group", "p4", "--out", "audit.png"],
                          capture_output=True, text=True, env=env)
    assert plot.returncode != 0 and "pip install 'equilayers[plot]'" in plot.stderr, (
        plot.stdout + plot.stderr)
    bench = subprocess.run([str(script), "bench"], capture_output=True, text=True, env=env)
    assert bench.returncode != 0 and "source tree" in bench.stdout + bench.stderr, (
        bench.stdout + bench.stderr)

    # torch without numpy warns about it at import (its warning, not ours: filtered here)
    demo = subprocess.run([sys.executable, "-W", "ignore:Failed to initialize NumPy:UserWarning",
                           "-m", "equilayers", "demo", "--quick"], capture_output=True, text=True)
    err = demo.stderr.strip()
    assert demo.returncode != 0, "equilayers demo ran without the demo extra"
    assert len(err.splitlines()) == 1 and "pip install 'equilayers[demo]'" in err, err
    print(f"wheel smoke: ok ({where.parent}); demo without its extra says: {err}")


if __name__ == "__main__":
    check_wheel(sys.argv[1])
    main()
