"""What the `equilayers audit` report says its numbers cover, and which steps it skips."""

import os
import re
import sys
import textwrap

import pytest

from equilayers.cli import main

MODELS = textwrap.dedent("""
    import torch
    from torch import nn
    from equilayers.nn import GroupConv2d, InvariantHead, LiftingConv2d, NormPool

    def so2():  # exact on the four quarter turns, approximate in between
        torch.manual_seed(0)
        return nn.Sequential(LiftingConv2d(1, 2, 5, padding=2, group="so2", max_order=2),
                             NormPool(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                             nn.Linear(6, 5))

    def c8():
        torch.manual_seed(0)
        return nn.Sequential(LiftingConv2d(1, 2, 5, padding=2, group="c8"), nn.ReLU(),
                             InvariantHead(2, 5, group="c8"))

    def on_maps():  # its input is a (B, 2, 4, H, W) p4 regular feature map
        torch.manual_seed(0)
        return nn.Sequential(GroupConv2d(2, 2, 3, padding=1, group="p4"), nn.ReLU(),
                             InvariantHead(2, 5, group="p4"))

    def p4():
        torch.manual_seed(0)
        return nn.Sequential(LiftingConv2d(1, 2, 3, padding=1, group="p4"), nn.ReLU(),
                             InvariantHead(2, 5, group="p4"))
""")


@pytest.fixture
def models(tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setitem(sys.modules, "rich", None)
    path = tmp_path / "gm.py"
    path.write_text(MODELS)
    return path


def _value(text: str, label: str) -> float:
    m = re.search(rf"invariance_error\s+{re.escape(label)}\s+([0-9.e+-]+)", text)
    assert m, text
    return float(m.group(1))


def test_audit_of_so2_measures_off_grid_angles_and_says_so(models, capsys):
    """The so2 line was the four quarter turns alone, labelled "over the elements of so2"."""
    assert main(["audit", f"{models}:so2", "--input-shape", "2,1,9,9", "--batch", "4",
                 "--group", "so2"]) == 0
    text = capsys.readouterr().out
    assert _value(text, "so2: 4 grid") < 1e-5  # exact on the grid
    assert _value(text, "so2: 16 off-grid") > 1e-2  # and not off it: the report shows it
    assert "so2 error: over the 4 grid elements of so2 only" in text
    assert "not a bound over so2" in text and "over the elements of so2" not in text


def test_audit_of_c8_says_the_table_covers_its_grid_elements_only(models, capsys):
    assert main(["audit", f"{models}:c8", "--input-shape", "2,1,9,9", "--batch", "4",
                 "--group", "c8"]) == 0
    text = capsys.readouterr().out
    assert _value(text, "c8: all 8") > 1e-3
    assert "c8 error: over the 4 grid elements of c8 only" in text
    assert "its other 4 elements are measured in the whole-model numbers only" in text


def test_audit_of_p4_covers_all_elements_exactly(models, capsys):  # control: no off-grid row
    assert main(["audit", f"{models}:p4", "--input-shape", "2,1,9,9", "--batch", "4"]) == 0
    text = capsys.readouterr().out
    assert _value(text, "c4: all 4") < 1e-5
    assert "off-grid" not in text and "p4 error: over all 4 elements of c4" not in text
    assert "error: over all 4 elements of c4 (rot0, rot90, rot180, rot270), exact" in text


def test_audit_of_a_model_on_group_maps_skips_rotate_and_says_so(models, tmp_path, capsys):
    """It stopped after the per-layer table: consistency refused 'rotate' on a fibered input
    type (exit 2). The transforms that do not apply are left out, and named."""
    args = ["audit", f"{models}:on_maps", "--input-shape", "1,2,4,9,9", "--batch", "4"]
    plot = None
    if _has_matplotlib():
        plot = tmp_path / "maps.png"
        args += ["--out", str(plot)]
    assert main(args) == 0, capsys.readouterr().err
    text = capsys.readouterr().out
    assert "consistency under rotate is left out: the model's declared input type " \
           "FieldType(c4, regular) is a group feature map" in text
    assert re.search(r"consistency\s+rot90\s+1\.000", text)  # the transforms that apply run
    assert not re.search(r"consistency\s+rotate", text)
    if plot is not None:
        assert plot.exists() and "the plot's rotation curve is left out" in text


def test_audit_of_images_keeps_rotate(models, capsys):  # control
    assert main(["audit", f"{models}:p4", "--input-shape", "1,1,9,9", "--batch", "4"]) == 0
    text = capsys.readouterr().out
    assert re.search(r"consistency\s+rotate", text) and "left out" not in text


def _has_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def test_audit_refuses_a_plot_folder_it_cannot_write_before_measuring(models, tmp_path,
                                                                      capsys):
    """A read-only folder for --out (and the examples' --plot, the same check) failed in
    savefig after all the measurements."""
    pytest.importorskip("matplotlib")
    from equilayers._audit import check_plot_path

    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):  # root: chmod does not restrict
            pytest.skip("chmod does not make a folder read-only here (running as root)")
        assert main(["audit", f"{models}:p4", "--input-shape", "1,1,9,9", "--out",
                     str(ro / "a.png")]) == 2
        captured = capsys.readouterr()
        assert f"--out {str(ro / 'a.png')!r}: its folder {str(ro)!r} is not writable" \
            in captured.err and "Per-layer" not in captured.out
        with pytest.raises(ValueError, match="--plot .* is not writable"):
            check_plot_path(ro / "b.png", "--plot")
    finally:
        ro.chmod(0o700)
    check_plot_path(ro / "a.png")  # control: writable again, accepted
