"""What the `equilayers audit` report says its numbers cover, and which steps it skips."""

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

    def vol_o():  # a volume model of the cube's rotations
        from equilayers.nn import LiftingConv3d
        torch.manual_seed(0)
        return nn.Sequential(LiftingConv3d(1, 2, 3, padding=1, group="o"), _MeanHead())

    class _MeanHead(nn.Module):
        def forward(self, x):
            return x.mean(dim=(2, 3, 4, 5))

    def plain3d():  # plain volumes (B, 4, D, H, W): D = 4 = |p4| by chance
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv3d(4, 4, 3, padding=1), nn.AdaptiveAvgPool3d(1),
                             nn.Flatten(), nn.Linear(4, 5))

    def slices():  # a 5-D input folded into channels: nothing tells what it is
        torch.manual_seed(0)
        return nn.Sequential(nn.Flatten(1, 2), nn.Conv2d(16, 4, 3, padding=1),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5))

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


def test_audit_refuses_a_plot_folder_it_cannot_write_before_measuring(models, unwritable_dir,
                                                                      capsys, monkeypatch):
    """A read-only folder for --out (and the examples' --plot, the same check) failed in
    savefig after all the measurements."""
    pytest.importorskip("matplotlib")
    from equilayers._audit import check_plot_path

    ro = unwritable_dir
    assert main(["audit", f"{models}:p4", "--input-shape", "1,1,9,9", "--out",
                 str(ro / "a.png")]) == 2
    captured = capsys.readouterr()
    assert f"--out {str(ro / 'a.png')!r}: its folder {str(ro)!r} is not writable" \
        in captured.err and "Per-layer" not in captured.out
    with pytest.raises(ValueError, match="--plot .* is not writable"):
        check_plot_path(ro / "b.png", "--plot")
    monkeypatch.undo()
    check_plot_path(ro / "a.png")  # control: writable again, accepted


def test_audit_of_volumes_labels_the_planar_checks(models, capsys):
    """The consistency rows of an o audit turn each volume about its depth axis only; they
    were labelled as if they covered the group."""
    assert main(["audit", f"{models}:vol_o", "--input-shape", "1,1,5,5,5", "--batch", "2",
                 "--group", "o"]) == 0
    text = capsys.readouterr().out
    assert re.search(r"consistency\s+rot90 about depth axis", text)
    assert re.search(r"consistency\s+circular_shift in H, W", text)
    assert "consistency on volumes: rot90, rotate and flip turn or flip each volume about its " \
           "depth axis only" in text
    assert _value(text, "o: all 24") < 1e-5 and "(24 in all)" in text


def test_audit_of_images_has_no_depth_axis_label(models, capsys):  # control
    assert main(["audit", f"{models}:p4", "--input-shape", "1,1,9,9", "--batch", "2"]) == 0
    text = capsys.readouterr().out
    assert "depth axis" not in text and re.search(r"consistency\s+rot90\s", text)


def test_audit_says_how_it_takes_an_undeclared_5d_input_under_a_planar_group(models, capsys):
    """A 5-D input with D = |G| was labelled a regular p4 map without a word."""
    assert main(["audit", f"{models}:slices", "--input-shape", "1,4,4,9,9", "--batch",
                 "2"]) == 0
    text = capsys.readouterr().out
    assert "its 5-D input is taken as a regular c4 feature map (B, C, F, H, W)" in text
    assert "if it is a volume (B, C, D, H, W), audit it with a group of volumes" in text
    # control: a model that declares its group-map input gets no such line
    assert main(["audit", f"{models}:on_maps", "--input-shape", "1,2,4,9,9", "--batch",
                 "2"]) == 0
    assert "is taken as" not in capsys.readouterr().out


def test_audit_refuses_a_planar_group_on_a_declared_volume_model(models, capsys):
    assert main(["audit", f"{models}:vol_o", "--input-shape", "1,1,5,5,5", "--batch", "2",
                 "--group", "p4"]) == 2
    assert "--group c4 is a planar group, but the model's declared input type " \
           "FieldType(o, trivial) is a volume" in capsys.readouterr().err


def test_audit_refuses_a_planar_group_on_a_conv3d_model_before_the_tables(models, capsys):
    """check_grid's refusal (a planar group on a model that slides over volumes) came after
    the per-layer and whole-model tables, which had labelled the volume a regular p4 map."""
    assert main(["audit", f"{models}:plain3d", "--input-shape", "1,4,4,9,9", "--batch",
                 "2"]) == 2
    captured = capsys.readouterr()
    assert "acts on images (H, W), but the model slides windows over volumes" in captured.err
    assert "Per-layer" not in captured.out
