"""The `equilayers audit` command."""

import os
import re
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

    def pixels():  # a linear map of the raw pixels: no symmetry at all (negative control)
        torch.manual_seed(0)
        return nn.Sequential(nn.Flatten(), nn.Linear(3 * 9 * 9, 10))

    def pooled():  # global mean then linear: invariant to rot90, flips and circular shifts
        torch.manual_seed(0)
        return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 10))

    def constant():  # the same top-1 class for every input
        model = pooled()
        with torch.no_grad():
            model[2].weight.zero_()
            model[2].bias.copy_(torch.arange(10.0))
        return model

    def not_a_model():
        return 3

    class _Pair(nn.Module):
        def forward(self, x):
            return x.mean(), x.std()

    def pair():  # a model whose forward returns a tuple
        return _Pair()
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
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "COLUMNS": "250"})  # a pipe is 80 wide: keep each finding on a line
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert out.exists() and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = proc.stdout
    assert "Conv2d" in text and "consistency" in text and "flip" in text
    assert "lost" in text  # the plain conv loses the symmetry at its first layer
    assert "use an input size of 13" in text  # stride 2 on 12: check_grid's finding
    # the plot says what it was drawn from: the batch, smoothed
    assert "plot written to" in text and "32 inputs (N(0, 1) noise, seed 0), smoothed" in text


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
    (["{f}:build", "--input-shape", "1,3,9,9", "--group", "p5"], "unknown group='p5'"),
    (["{f}:build", "--input-shape", "1,3,9,9", "--batch", "0"], "--batch must be a positive"),
    (["{f}:build", "--input-shape", "1,9,9,9"], "the model fails on an input of shape "
                                                "(1, 9, 9, 9) (--input-shape: the whole input"),
    # a 1-D model's raw torch channel error: an image or volume batch is needed
    (["{f}:build", "--input-shape", "1,1,28"], "--input-shape '1,1,28' has 3 number(s): the "
                                               "audit rotates and shifts an image or volume"),
    # a tuple output was invariance_error's TypeError traceback, after the per-layer table
    (["{f}:pair", "--input-shape", "1,3,9,9"], "the model returns a tuple, not a tensor"),
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


def _consistency(text: str, transform: str) -> tuple[float, int]:
    """The value and the input count of a consistency row of the whole-model table."""
    m = re.search(rf"consistency\s+{transform}\s+([0-9.]+)\s+(\d+) inputs x", text)
    assert m, text
    return float(m.group(1)), int(m.group(2))


def test_plain_table_takes_an_all_empty_column(model_file, capsys, monkeypatch):
    """The wheel's case (no rich, 80 columns, p4): the split per-layer table has a column with
    no text in it, which must not reach textwrap as width 0 (it did: 'invalid width 0')."""
    import io

    from equilayers._table import print_table

    monkeypatch.setitem(sys.modules, "rich", None)
    buf = io.StringIO()
    print_table("t", ["layer", ""], [["Conv2d", ""], ["ReLU", ""]], buf, 40)
    assert "Conv2d" in buf.getvalue()
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["audit", f"{model_file}:build", "--input-shape", "1,3,9,9", "--group", "p4",
                 "--batch", "2"]) == 0
    assert "c4 error" in capsys.readouterr().out


@pytest.mark.parametrize("rich", [True, False], ids=["rich", "plain"])
@pytest.mark.parametrize("columns", [60, 200])
def test_audit_fits_the_terminal(model_file, capsys, monkeypatch, columns, rich):
    pytest.importorskip("rich") if rich else monkeypatch.setitem(sys.modules, "rich", None)
    monkeypatch.setenv("COLUMNS", str(columns))  # what shutil.get_terminal_size() reads first
    assert main(["audit", f"{model_file}:build", "--input-shape", "1,3,9,9", "--group", "p4m",
                 "--batch", "4"]) == 0
    text = capsys.readouterr().out
    widest = max(text.splitlines(), key=len)
    assert len(widest) <= columns, widest
    # nothing is lost to the width: every layer, the lost flag, every consistency row
    for name in ("Conv2d", "lost", "rot90", "flip", "check_grid"):
        assert name in text, name
    split = ": shift" in text  # a per-layer table too wide for the terminal splits in two
    assert split == (columns == 60)
    assert len(widest) > 100 or columns == 60  # a wide terminal is used, not 80 columns


def test_audit_says_where_its_numbers_come_from(model_file, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["audit", f"{model_file}:build", "--input-shape", "1,3,9,9", "--seed", "3",
                 "--batch", "6"]) == 0
    text = capsys.readouterr().out
    assert "inputs: N(0, 1) noise, seed 3, 3x9x9 each" in text
    assert "Per-layer relative equivariance error (float64 norms), on 1 input (N(0, 1) noise, " \
           "seed 3)" in text
    assert "Whole model, on 6 inputs (N(0, 1) noise, seed 3)" in text
    assert "averaged over the 6 inputs" in text


def test_audit_consistency_averages_over_the_batch(model_file, capsys, monkeypatch):
    """The consistencies are over --batch inputs (the count shown); a model without symmetry
    scores below 1 (negative control), a globally pooled one exactly 1."""
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["audit", f"{model_file}:pixels", "--input-shape", "1,3,9,9", "--group",
                 "p4m", "--batch", "5"]) == 0
    text = capsys.readouterr().out
    for t in ("rot90", "flip", "circular_shift", "rotate"):
        value, count = _consistency(text, t)
        assert count == 5, t
        assert value < 1.0, t
    assert re.search(r"top-1 classes\s+-\s+[2-9] of 10\s+5 inputs", text), text

    assert main(["audit", f"{model_file}:pooled", "--input-shape", "2,3,9,9", "--group",
                 "p4m", "--batch", "7"]) == 0
    text = capsys.readouterr().out
    for t in ("rot90", "flip", "circular_shift"):
        assert _consistency(text, t) == (1.0, 7), t
    assert "on 2 inputs (N(0, 1) noise" in text  # the per-layer table keeps --input-shape's B


def test_audit_of_a_rectangle_says_rot90_was_left_out(model_file, capsys, monkeypatch):
    # the note named rot90 among the consistencies it had computed, with no rot90 row
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["audit", f"{model_file}:pooled", "--input-shape", "1,3,8,10", "--group",
                 "p4m", "--batch", "3"]) == 0
    text = capsys.readouterr().out
    assert "rot90 is left out: the 8x10 input is not square" in text
    assert "flip: every pair" in text and "rot90 and flip" not in text
    assert _consistency(text, "flip") == (1.0, 3)


def test_audit_one_class_for_every_input_is_called_out(model_file, capsys, monkeypatch):
    """A model that predicts one class for every input scores 1.000 whatever it does: the
    report says so (and does not for a model whose predictions vary)."""
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["audit", f"{model_file}:constant", "--input-shape", "1,3,9,9"]) == 0
    text = capsys.readouterr().out
    assert re.search(r"top-1 classes\s+-\s+1 of 10\s+32 inputs", text), text
    assert "all 32 inputs get the same top-1 class, so a consistency of 1.000 says nothing" \
        in text
    assert main(["audit", f"{model_file}:pooled", "--input-shape", "1,3,9,9"]) == 0
    assert "says nothing" not in capsys.readouterr().out


BROKEN = {
    "syntax.py": "def build(:\n    pass\n",
    "imports.py": "import not_a_package_anywhere_xyz\n\ndef build():\n    pass\n",
    "factories.py": textwrap.dedent("""
        from torch import nn

        def crashes():
            raise RuntimeError("no weights here")

        def needs_an_argument(width):
            return nn.Conv2d(1, width, 3)
    """),
}


@pytest.mark.parametrize("spec, match", [
    ("syntax.py:build", "importing '{d}/syntax.py' failed: SyntaxError: "),
    ("imports.py:build", "importing '{d}/imports.py' failed: ModuleNotFoundError: No module "
                         "named 'not_a_package_anywhere_xyz' (at imports.py, line 1)"),
    ("factories.py:crashes", "crashes() of '{d}/factories.py' failed: RuntimeError: no weights "
                             "here (at factories.py, line 5)"),
    ("factories.py:needs_an_argument", "needs_an_argument() of '{d}/factories.py' failed: "
                                       "TypeError: "),
])
def test_audit_names_a_model_file_or_factory_that_fails(spec, match, tmp_path, capsys):
    """A model file that does not import, or a factory that raises or needs arguments, was a
    Python traceback (SyntaxError, ModuleNotFoundError, TypeError) or, for a RuntimeError,
    the bare message with no word of where it came from. Now one line names the file or the
    factory, the error and its line in the file (exit status 2)."""
    for name, text in BROKEN.items():
        (tmp_path / name).write_text(text)
    assert main(["audit", f"{tmp_path}/{spec}", "--input-shape", "1,1,9,9"]) == 2
    err = capsys.readouterr().err
    assert match.format(d=tmp_path) in err and "Traceback" not in err, err


def test_audit_model_file_imports_its_neighbours(tmp_path, capsys, monkeypatch):
    """`python models/net.py` finds models/blocks.py; `equilayers audit models/net.py:build`
    did not (ModuleNotFoundError, unless run from models/). The file's folder is on sys.path
    while it loads, and off it again afterwards."""
    models = tmp_path / "models"
    models.mkdir()
    (models / "audit_blocks_xyz.py").write_text(textwrap.dedent("""
        from torch import nn

        def block():
            return nn.Sequential(nn.Conv2d(1, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    """))
    (models / "net.py").write_text("from audit_blocks_xyz import block\n\n"
                                   "def build():\n    return block()\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "audit_blocks_xyz", raising=False)
    path = list(sys.path)
    assert main(["audit", "models/net.py:build", "--input-shape", "1,1,9,9"]) == 0, \
        capsys.readouterr().err
    assert "Per-layer relative equivariance error" in capsys.readouterr().out
    assert sys.path == path
    sys.modules.pop("audit_blocks_xyz", None)


@pytest.mark.parametrize("out, match", [
    ("{d}", "--out '{d}' is a folder: name the plot's file with its format, e.g. "
            "'{d}/audit.png'"),
    ("{d}/report", "--out '{d}/report' has no file suffix: name the plot's file with its "
                   "format, e.g. '{d}/report.png'"),
    ("{d}/report.txt", "--out '{d}/report.txt' has the suffix .txt, not an image format"),
    ("{d}/file/report.png", "--out '{d}/file/report.png': cannot make its folder"),
])
def test_audit_out_that_cannot_take_the_plot_is_named_before_measuring(
        model_file, tmp_path, capsys, monkeypatch, out, match):
    """--out without a suffix (a folder too) wrote OUT.png and reported 'plot written to OUT'
    (exit 0); --out report.txt failed only after the measurements; --out under a file was a
    FileExistsError traceback. Each is now one line naming --out and a path that works
    (exit 2), before the model is built. The control: report.png is written."""
    pytest.importorskip("matplotlib")
    from equilayers import _audit

    (tmp_path / "file").write_text("mine")
    built = []
    monkeypatch.setattr(_audit, "load_factory",
                        lambda spec, real=_audit.load_factory: built.append(1) or real(spec))
    rc = main(["audit", f"{model_file}:pooled", "--input-shape", "1,3,9,9", "--batch", "2",
               "--out", out.format(d=tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and match.format(d=tmp_path) in err, err
    assert not built and not list(tmp_path.glob("*.png")) and not (tmp_path / "report").exists()
    assert main(["audit", f"{model_file}:pooled", "--input-shape", "1,3,9,9", "--batch", "2",
                 "--out", str(tmp_path / "report.png")]) == 0
    assert (tmp_path / "report.png").read_bytes()[:4] == b"\x89PNG"
