"""The segmentation3d benchmark family (``benchmarks/bench_segmentation3d.py``): its scenes and
labels, and its quick run (the real run: ``python -m benchmarks --family segmentation3d``,
about an hour and a half on one thread, the escnn rows only where escnn is installed)."""

import json

import pytest
import torch
from _bench_common import _bench_module as _bench
from _peers import ESCNN_MISSING
from conftest import seeded_rng


def test_scene_labels_line_up_with_the_rendered_pieces():
    """Every labelled voxel is one of a piece's voxel cubes (occupancy above 0.5, nothing
    else is), each piece has its 4 cubes of ``scale^3`` voxels, and an upright piece rendered
    alone is the scene's voxels of its label."""
    S = _bench("_scenes3d")
    gen = torch.Generator().manual_seed(0)
    for turned in (False, True):
        x, y = S.scenes(6, size=12, scale=2, turned=turned, gen=gen)
        assert x.shape == (6, 1, 12, 12, 12) and y.shape == (6, 12, 12, 12)
        assert torch.equal(y > 0, x[:, 0] > 0.5)
        assert int(y.max()) <= 8 and float(x.max()) <= 1.0
        for i in range(6):
            counts = torch.bincount(y[i].flatten(), minlength=9)[1:]
            assert all(int(c) % 32 == 0 for c in counts), counts  # 4 cubes of 2^3 voxels
            assert 2 * 32 <= int(counts.sum()) <= 3 * 32
    one = S.render_piece(3, torch.eye(3, dtype=torch.float64), torch.tensor([1.0, 2.0, 0.0]),
                         12, 2)
    mask = torch.zeros(12, 12, 12, dtype=torch.bool)
    mask[1:3, 2:4, 0:8] = True  # the line: cubes along the last axis
    assert torch.equal(one > 0.5, mask)


def test_a_cube_rotation_of_a_scene_rotates_its_labels_exactly():
    """``scene turned``: every scene and its labels moved by the same element of O (a voxel
    permutation: the labels are the turned scene's voxels above 0.5, class counts kept), and a
    piece rendered turned by a cube rotation has exactly the voxels of a turned copy."""
    S = _bench("_scenes3d")
    from equilayers.groups import act, get

    gen = torch.Generator().manual_seed(1)
    x, y = S.scenes(4, size=12, scale=2, turned=False, gen=gen)
    xt, yt = S.turn_scenes(x, y, torch.Generator().manual_seed(2))
    assert torch.equal(yt > 0, xt[:, 0] > 0.5)
    for i in range(4):
        assert torch.equal(torch.bincount(yt[i].flatten(), minlength=9),
                           torch.bincount(y[i].flatten(), minlength=9))
        assert any(torch.equal(act(x[i:i + 1], g), xt[i:i + 1]) and
                   torch.equal(act(y[i][None, None], g)[0, 0], yt[i])
                   for g in get("o").elements())
    # a turned piece rendered = the upright piece's voxels turned (up to where it sits)
    rot = S._CUBE[5]
    turned = S.render_piece(7, rot, torch.zeros(3, dtype=torch.float64), 12, 2) > 0.5
    upright = S.render_piece(7, torch.eye(3, dtype=torch.float64),
                             torch.zeros(3, dtype=torch.float64), 12, 2) > 0.5
    shapes = {tuple(sorted(map(tuple, (torch.nonzero(act(upright[None, None].float(), g)[0, 0])
                                       - torch.nonzero(act(upright[None, None].float(),
                                                           g)[0, 0]).amin(0)).tolist())))
              for g in get("o").elements()}
    assert tuple(sorted(map(tuple, torch.nonzero(turned).tolist()))) in shapes


def test_segmentation3d_family_quick_runs_and_reports(tmp_path):
    """``python -m benchmarks --family segmentation3d --quick``'s path: every model trains and
    is measured; the O U-Nets are exact on the cube's rotations (consistency 1, mIoU on the
    turned scenes = upright), the polyphase one under every shift; parameters matched."""
    seg = _bench("bench_segmentation3d")
    with seeded_rng(0):
        results = seg.run(True, tmp_path, progress=False)
    names = [r["model"] for r in results]
    assert names[:4] == ["plain U-Net (max pool)", "anti-aliased plain U-Net", "O U-Net",
                         "O U-Net (polyphase)"]
    data = json.loads((tmp_path / "cpu-segmentation3d-quick.json").read_text())
    assert data["meta"]["quick"] and len(data["results"]) == len(results)
    ours = [r["params"] for r in results if r["library"] == "equilayers"]
    assert max(ours) / min(ours) < 1.2, ours
    for r in results:
        assert 0.0 <= r["miou pieces turned"] <= 1.0 and r["train_s"] > 0
        # exact up to float32 rounding: after 3 steps a voxel's top two logits can be tied
        # within it (1 voxel in 46,000 flipped, seen once)
        if r["group"] == "o" and r["library"] == "equilayers":
            assert r["o consistency"] > 0.999, r
            assert abs(r["miou scene turned"] - r["miou upright"]) < 0.01, r
        if r["down"] == "polyphase":
            assert r["shift consistency"] > 0.999, r
    plain = next(r for r in results if r["model"] == "plain U-Net (max pool)")
    assert plain["o consistency"] < 0.99  # the control: not equivariant
    table = (tmp_path / "cpu-segmentation3d-quick.md").read_text()
    assert table.count("\n| ") == len(results) + 1


def test_full_run_rows_each_have_a_plain_twin_of_their_parameter_count():
    """The full run's wider O U-Nets (width 2 and 4) are each compared with an anti-aliased
    plain U-Net of about their parameters; the widths are derived, so a change in either
    builder that breaks the pairing fails here."""
    seg = _bench("bench_segmentation3d")
    rows = {m.name: m for m in seg.models(False) if m.library == "equilayers"}
    pairs = [("O U-Net", "anti-aliased plain U-Net"),
             ("O U-Net (width 2)", "anti-aliased plain U-Net (wide)"),
             ("O U-Net (width 4)", "anti-aliased plain U-Net (twin of width 4)")]
    for o, plain in pairs:
        assert rows[o].group == "o" and rows[plain].group is None, (o, plain)
        n_o, n_plain = (seg.n_params(rows[k].build()) for k in (o, plain))
        assert abs(n_plain / n_o - 1) < 0.1, (o, n_o, plain, n_plain)
    assert [rows[k].width for k, _ in pairs] == [1, 2, 4]
    # the augmentation rows: their base row's model, trained on the turned split
    for name in (n for n in rows if n.endswith(seg.AUGMENTED)):
        base = rows[name[:-len(seg.AUGMENTED)]]
        assert (rows[name].width, rows[name].group, rows[name].train) == (
            base.width, base.group, "train turned") and base.train == "train", name
    assert sum(n.endswith(seg.AUGMENTED) for n in rows) == 3
    # the escnn rows (listed only where escnn is installed): the O U-Net at widths 1 and 2;
    # ours in escnn's (harmonic) basis at one, two and four fields
    for name, width in (("O U-Net (escnn)", 1), ("O U-Net (escnn, width 2)", 2)):
        m = seg._model(name)
        assert (m.library, m.group, m.width) == ("escnn", "o", width), m
    for name, width in ((seg.HARMONIC_1, 1), (seg.HARMONIC, 2), (seg.HARMONIC_4, 4)):
        assert (rows[name].basis, rows[name].width) == ("harmonic", width), name
    # the rows without a basis are the voxel basis (not UNet3d's default, the harmonic one)
    assert rows["O U-Net (width 2)"].basis is None
    assert rows["O U-Net (width 2)"].build().basis == "voxel"
    assert rows[seg.HARMONIC].build().basis == "harmonic"  # control
    # the SO(3) U-Net: harmonic fields of orders 0 .. 1, at the harmonic O U-Net's parameters
    so3 = rows[seg.SO3].build()
    assert (so3.group.name, so3.max_order) == ("so3", 1)
    assert abs(seg.n_params(so3) / seg.n_params(rows[seg.HARMONIC].build()) - 1) < 0.05


def test_the_harmonic_row_has_the_parameters_of_escnns_o_unet():
    """Ours in the harmonic basis and escnn's O U-Net (whose ``R3Conv`` basis is harmonic) at
    the same width have the same parameter count (peers venv), at one and two fields."""
    pytest.importorskip("escnn", reason=ESCNN_MISSING)
    seg = _bench("bench_segmentation3d")
    for width in (1, 2):
        ours = seg._unet("o", width, "blur", "harmonic")
        assert seg.n_params(ours) == seg.n_params(seg.escnn_unet(width, "blur")), width
    # the SO(3) U-Net and escnn's (R3Conv, GNormBatchNorm, QuotientFourierELU): one count
    rows = {m.name: m for m in seg.models(False, seg.SO3)}
    ours, theirs = rows[seg.SO3], rows[seg.SO3 + " (escnn)"]
    assert (theirs.library, theirs.group, theirs.width) == ("escnn", "so3", ours.width)
    assert seg.n_params(ours.build()) == seg.n_params(theirs.build())


def test_steps_option_trains_that_many_steps_and_names_its_own_results(tmp_path):
    """``--steps N`` (``run(steps=N)``): the cosine decay runs over N steps, the meta says N,
    and the results go to ``cpu-segmentation3d-steps<N>...`` so that they never overwrite the
    recorded table of the default steps; a bad count is a usage error naming it."""
    seg = _bench("bench_segmentation3d")
    with seeded_rng(0):
        results = seg.run(True, tmp_path, progress=False, steps=2,
                          name_filter="plain U-Net (max pool)")
    assert [r["model"] for r in results] == ["plain U-Net (max pool)"]
    # (a filtered run's own files, which never overwrite the whole run's either)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "cpu-segmentation3d-steps2-quick-filtered.json",
        "cpu-segmentation3d-steps2-quick-filtered.md"]
    data = json.loads((tmp_path / "cpu-segmentation3d-steps2-quick-filtered.json").read_text())
    assert data["meta"]["steps"] == 2 and data["meta"]["filter"] == "plain U-Net (max pool)"
    table = (tmp_path / "cpu-segmentation3d-steps2-quick-filtered.md").read_text()
    assert "2 steps of" in table
    # the machine is recorded and named in the table (it gave threads alone)
    assert data["meta"]["cpu"] and f"thread(s) on {data['meta']['cpu']}. " in table
    for bad in (0, -5, 2.5, True):
        with pytest.raises(seg.UsageError, match=f"steps must be a positive int.*{bad!r}"):
            seg.run(True, tmp_path, progress=False, steps=bad)


def test_the_turned_training_split_is_drawn_last_and_turned():
    """``train turned`` (the augmentation rows' data) is drawn after every other split, so
    adding it left the recorded rows' data unchanged; its pieces are turned (not the upright
    training scenes), with the same labels."""
    S = _bench("_scenes3d")
    data = S.dataset(6, 3, size=8, scale=1)
    gen = torch.Generator().manual_seed(0)
    train = S.scenes(6, size=8, scale=1, turned=False, gen=gen)
    upright = S.scenes(3, size=8, scale=1, turned=False, gen=gen)
    assert torch.equal(data["train"][0], train[0]) and torch.equal(data["upright"][1], upright[1])
    x, y = data["train turned"]
    assert x.shape == data["train"][0].shape and not torch.equal(x, data["train"][0])
    assert set(y.unique().tolist()) <= set(range(9))
