"""The study families of ``benchmarks/`` on toy budgets: accuracy (rotated digits),
segmentation (scenes of digits), tetris (3-D shapes under rotations) and equivariance3d: the
models build, train and report, and the data are what the tables say."""

import json
import sys

import pytest
import torch
from _bench_common import ROOT, _bench_module
from conftest import seeded_rng
from torch import nn


def test_accuracy_family_models_train_and_report(tmp_path):
    """The accuracy family's pieces on a toy budget: every model builds, trains a step and is
    evaluated; the table has one row per model (the real run: python -m benchmarks --family
    accuracy, minutes per model)."""
    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks import bench_accuracy as acc
    finally:
        sys.path.remove(str(ROOT))
    x = torch.rand(12, 1, 29, 29, generator=torch.Generator().manual_seed(0))
    y = torch.arange(12) % 10
    data = (x[:8], y[:8], x[8:], y[8:])
    results = []
    for m in acc.models(quick=True) + acc.models(quick=True, search=True):
        with seeded_rng(0):
            model = m.build()
        assert model(x[:2]).shape == (2, 10), m
        r = acc.train_and_test(model, data, epochs=1, seed=0, batch=4)
        assert 0.0 <= r["acc"] <= 1.0
        results.append({"arch": m.arch, "library": m.library, "params": 1, "accs": [r["acc"]],
                        "mean": r["acc"], "spread": 0.0, "train_s": r["train_s"]})
    meta = acc._meta(True, "mnist", 8, 4, 1, 1)
    table = acc.markdown(meta, results)
    assert table.count("\n| ") == len(results) + 1  # header + one row per model
    assert "cosine" not in table
    assert "annealed to 0 (cosine" in acc.markdown({**meta, "schedule": "cosine"}, results)


def test_accuracy_family_cosine_schedule_anneals_the_learning_rate():
    """``schedule="cosine"`` anneals Adam's learning rate to 0 over the run: with one epoch of
    two batches and a gradient that does not change (logits that are a parameter, one label),
    Adam moves each logit by the rate per step, 2 x 1e-3 constant and (1 + 0.5) x 1e-3 with the
    cosine; a bad schedule is an error naming the choices."""
    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks import bench_accuracy as acc
    finally:
        sys.path.remove(str(ROOT))

    class Logits(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.b = nn.Parameter(torch.zeros(10))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.b.expand(len(x), 10)

    x = torch.zeros(8, 1, 29, 29)
    data = (x, torch.full((8,), 3), x[:2], torch.full((2,), 3))
    moved = {}
    for schedule in acc.SCHEDULES:
        model = Logits()
        acc.train_and_test(model, data, epochs=1, seed=0, batch=4, schedule=schedule)
        moved[schedule] = model.b.detach().abs().mean().item()
    assert moved == pytest.approx({"constant": 2e-3, "cosine": 1.5e-3}, rel=1e-3), moved
    with pytest.raises(ValueError, match="schedule must be one of"):
        acc.train_and_test(model, data, epochs=1, seed=0, schedule="linear")
    with pytest.raises(ValueError, match="schedule must be one of"):
        acc.run(True, ROOT, schedule="step")


def test_segmentation_family_models_train_and_report(tmp_path):
    """The segmentation family's pieces on a toy budget: scenes and labels line up, every model
    builds, trains a step and is measured; the table has one row per model (the real run:
    python -m benchmarks --family segmentation, about 40 minutes on one
    thread, the two escnn rows only where escnn is installed)."""
    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks import bench_segmentation as seg
    finally:
        sys.path.remove(str(ROOT))
    digits = torch.zeros(4, 1, 28, 28)
    digits[:, :, 6:22, 10:18] = 1.0
    x, y = seg.scenes(digits, torch.arange(4), 3, rotated=True,
                      gen=torch.Generator().manual_seed(0))
    assert x.shape == (3, 1, 32, 32) and y.shape == (3, 32, 32)
    assert torch.equal(y > 0, x[:, 0] > seg.INK) and set(y.unique().tolist()) <= {0, 1, 2, 3, 4}
    assert seg.miou(y, y) == 1.0 and seg.miou(torch.zeros_like(y), y) < 1.0
    data = {k: (x, y) for k in ("train", "upright", "rotated", "shifted")}
    results = []
    for m in seg.models(quick=True):
        with seeded_rng(0):
            r = seg.train_and_test(m.build(), data, epochs=1, seed=0, batch=2)
        assert 0.0 <= r["miou_rotated"] <= 1.0 and 0.0 <= r["rot90_consistency"] <= 1.0
        if m.group in ("p4m", "so2"):
            assert r["rot90_consistency"] == 1.0, m
        if m.down == "polyphase":
            assert r["shift_consistency"] == 1.0, m
        results.append({"model": m.name, "params": 1, "per_seed": [r],
                        **{k: r[k] for k in seg.KEYS}, **{k + "_spread": 0.0 for k in seg.KEYS}})
    meta = seg._meta(True, "mnist", 3, 3, 1, 1, 32)
    table = seg.markdown(meta, results)
    assert table.count("\n| ") == len(results) + 1


def test_accuracy_model_search_holds_out_training_digits():
    """The search split (``--split val``) trains on the first 3/4 of the training digits and
    scores on the last 1/4; the test digits never appear. The search candidates stay within
    the family's budget (40-46K parameters, as the other rows)."""
    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks import _accuracy_models as am
        from benchmarks import bench_accuracy as acc
    finally:
        sys.path.remove(str(ROOT))
    x = torch.arange(12.0).view(12, 1, 1, 1)
    y = torch.arange(12)
    fit_x, fit_y, val_x, val_y = acc.holdout((x[:8], y[:8], x[8:], y[8:]))
    assert fit_y.tolist() == list(range(6)) and val_y.tolist() == [6, 7]
    assert fit_x.shape[0] == 6 and val_x.shape[0] == 2
    for m in acc.models(quick=False, search=True):
        params = sum(p.numel() for p in m.build().parameters())
        assert 40_000 <= params <= 46_000, (m.arch, params)
    with pytest.raises(ValueError, match="split must be"):
        acc.run(True, ROOT, split="train")
    harmonic = [("d8", 2, 2), ("d8", 2, 2), ("c8", 2, 2), ("c8", 2, 2)]
    with pytest.raises(ValueError, match="head must be"):
        am._escnn_style(harmonic, head="max")
    with pytest.raises(ValueError, match="needs harmonic fields on the last layer"):
        am._escnn_style([("c8", None, 2)] * 4, head="mlp")


def test_accuracy_family_momentum_reaches_every_batch_norm():
    """The escnn-style row's ``momentum`` is set on every batch norm of the model (ours and
    torch's: the harmonic ones, the head's ``BatchNorm1d``), and a running statistic moves by
    it; without the option each keeps torch's 0.1 (the control)."""
    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks import _accuracy_models as acc
    finally:
        sys.path.remove(str(ROOT))
    from equilayers.nn import GroupBatchNorm2d, HarmonicBatchNorm

    kinds = (torch.nn.modules.batchnorm._BatchNorm, HarmonicBatchNorm)
    spec = acc.SEARCH[acc.ESCNN_STYLE]
    assert spec["momentum"] == 0.5
    for model, want in ((acc._search_model(spec), 0.5),
                        (acc._search_model({**spec, "momentum": None}), 0.1),
                        (acc._equilayers_regular("c8", 2, "harmonic", momentum=0.5), 0.5),
                        (acc._equilayers_harmonic(2, "gated", momentum=0.5), 0.5)):
        norms = [m for m in model.modules() if isinstance(m, kinds)]
        assert len(norms) >= 4 and {m.momentum for m in norms} == {want}, model
    head = [m for m in acc._search_model(spec).modules()
            if isinstance(m, torch.nn.BatchNorm1d)]
    assert len(head) == 1
    bn = acc._equilayers_regular("c8", 2, "harmonic", momentum=0.5)[1]
    assert isinstance(bn, GroupBatchNorm2d)
    bn.train()(torch.full((4, 2, 8, 3, 3), 2.0))
    assert torch.allclose(bn.running_mean, torch.full_like(bn.running_mean, 1.0))


def test_tetris_data_is_the_classic_set_and_rotates_exactly():
    """The tetris family's data: the enumerated polycubes of 4 cubes are the 8 classic shapes
    (5 cubes: 29), rotations are Haar-drawn rotation matrices, and rendering a shape under
    the cube's 24 rotation matrices gives exactly the 24 ``act`` turns of the upright volume
    (so the rendered rotation is a rotation of the volume)."""
    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks import _polycubes as P
    finally:
        sys.path.remove(str(ROOT))
    four = P.polycubes(4)
    assert len(four) == 8 and len(P.polycubes(5)) == 29
    assert sorted(min(i for i, s in enumerate(four) if P.same_up_to_rotation(t, s))
                  for t in P.TETRIS) == list(range(8))  # one class each: chirality kept
    assert not P.same_up_to_rotation(P.TETRIS[0], P.TETRIS[1])
    r = P.random_rotations(6, torch.Generator().manual_seed(0))
    torch.testing.assert_close(r @ r.transpose(1, 2), torch.eye(3, dtype=r.dtype).expand_as(r))
    torch.testing.assert_close(torch.linalg.det(r), torch.ones(6, dtype=r.dtype))
    cube = torch.tensor(P._cube_matrices(), dtype=torch.float64)
    upright = P.render(P.TETRIS[0], torch.eye(3, dtype=torch.float64)[None], 9, 1.5)
    rendered = P.render(P.TETRIS[0], cube, 9, 1.5)
    d = torch.cdist(P.cube_turns(upright).flatten(1), rendered.flatten(1))
    assert float(d.min(1).values.max()) < 1e-5 and float(d.min(0).values.max()) < 1e-5
    assert abs(float(upright.sum()) / (4 * 1.5**3) - 1) < 0.15  # four cubes of 1.5^3 voxels


def test_tetris_family_quick_runs_and_reports(tmp_path):
    """``python -m benchmarks --family tetris --quick``'s path (tetris task, 1 seed, 10
    steps): every model trains and is tested; the octahedral and SO(3) models are exactly
    invariant to the cube's rotations on the grid, so their accuracy under them is their
    upright accuracy; the parameter counts are matched."""
    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks import bench_tetris as tet
    finally:
        sys.path.remove(str(ROOT))
    with seeded_rng(0):
        results = tet.run(True, tmp_path, progress=False)
    assert [r["model"] for r in results] == list(tet.BUILDERS)
    data = json.loads((tmp_path / "cpu-tetris-quick.json").read_text())
    assert data["meta"]["quick"] and len(data["results"]) == len(tet.BUILDERS) == 5
    params = [r["params"] for r in results]
    assert max(params) / min(params) < 1.5, params  # the nearest width; quick widths are 1-2
    for r in results:
        assert 0.0 <= r["random"] <= 1.0 and r["train_s"] > 0
        if r["model"] != "plain 3-D CNN":
            assert r["cube"] == r["upright"], r
    table = (tmp_path / "cpu-tetris-quick.md").read_text()
    assert table.count("\n| tetris |") == 5
    with pytest.raises(ValueError, match="task must be one of"):
        tet.dataset("tetrominoes")
    # --filter picks rows "task: model" (a model alone here), and names them when it misses
    with seeded_rng(0):
        (one,) = tet.run(True, tmp_path, progress=False, name_filter="escnn's norm-ReLU")
    assert one["model"] == "SO(3) steerable, escnn's norm-ReLU" and one["task"] == "tetris"
    assert one["cube"] == one["upright"]
    with pytest.raises(ValueError, match=r"names no row 'task: model'.*SO\(3\) steerable"):
        tet.run(True, tmp_path, progress=False, name_filter="tetrominoes")


def test_tetris_models_heads_are_exactly_invariant_on_the_cube():
    """The octahedral model's head (the global mean of every slot, then the max and the mean
    over the slots) keeps the model exactly O-invariant in float64, and the plain CNN of the
    same family is not (the control)."""
    from equilayers.testing import invariance_error

    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks import bench_tetris as tet
    finally:
        sys.path.remove(str(ROOT))
    x = torch.randn(2, 1, 7, 7, 7, generator=torch.Generator().manual_seed(0),
                    dtype=torch.float64)
    with seeded_rng(0):
        octa = tet.octahedral_cnn(1, 3).double().eval()
        plain = tet.plain_cnn(4, 3).double().eval()
        product = tet.so3_tensor_product_cnn(1, 3).double().eval()  # an optional row
    assert invariance_error(octa, x, "o") < 1e-10
    assert invariance_error(product, x, "o") < 1e-10
    assert invariance_error(plain, x, "o") > 1e-3
    assert "tensor-product SO(3)" in tet.builders(False, "tetris: tensor-product")
    assert "tensor-product SO(3)" not in tet.builders(False)


def test_tetris_z_rotated_task_turns_about_the_depth_axis_with_its_own_models():
    """The z-rotated task's test volumes turn about the depth axis only (every depth slice
    keeps its mass; the plain random task's do not), it trains its own models, and the SO(2)
    and C4z models are exactly invariant to the quarter turns about the depth axis (the plain
    CNN is not: the control)."""
    from equilayers.groups import get
    from equilayers.testing import invariance_error

    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks import bench_tetris as tet
    finally:
        sys.path.remove(str(ROOT))
    task = "pentacubes, z-rotated"
    assert set(tet.dataset(task, copies=1, test_rotations=2)) == {"train", "upright", "random"}
    from benchmarks import _polycubes as P
    gen = torch.Generator().manual_seed(0)
    turns = tet._about_depth(4, gen)
    torch.testing.assert_close(turns[:, 0], torch.tensor([1.0, 0, 0], dtype=torch.float64)
                               .expand(4, 3))  # the depth coordinate is fixed
    shape = P.polycubes(5)[3]
    up = P.render(shape, torch.eye(3, dtype=torch.float64)[None], 11, 1.5).sum((-2, -1))
    about = P.render(shape, turns, 11, 1.5).sum((-2, -1))
    anywhere = P.render(shape, P.random_rotations(4, gen), 11, 1.5).sum((-2, -1))
    change = (about - up).abs().mean()  # every depth slice keeps its mass
    assert change < 0.1 * (anywhere - up).abs().mean(), change
    names = [r.model for r in tet.rows([task], ref_width=1, peers=False)]
    assert names == [n for n in tet.TASK_MODELS[task] if n in tet.builders(False)]
    assert not {n for r in tet.rows(["pentacubes"], 1, False) for n in [r.model]} & set(
        tet.AXIAL_BUILDERS)
    x = torch.randn(2, 1, 7, 7, 7, generator=torch.Generator().manual_seed(0),
                    dtype=torch.float64)
    with seeded_rng(0):
        so2 = tet.so2_depth_cnn(1, 3).double().eval()
        c4z = tet.c4z_cnn(1, 3).double().eval()
        plain = tet.plain_cnn(4, 3).double().eval()
    quarter_turns = get("so2").grid_elements()  # the same turns of every depth slice as c4z
    assert invariance_error(so2, x, "so2", elements=quarter_turns) < 1e-10
    assert invariance_error(c4z, x, "c4z") < 1e-10
    assert invariance_error(plain, x, "c4z") > 1e-3


def test_equivariance3d_family_quick_runs_and_reports(tmp_path):
    """``python -m benchmarks --family equivariance3d --quick``'s path (one stack, one seed,
    two rotations, 15^3): our stack is exact on the cube's rotations and below the
    interpolation floor off the grid; the plain nn.Conv3d stack (the negative control) is far
    off on both; escnn's row, where escnn imports, is exact on the cube in its frame."""
    eq = _bench_module("bench_equivariance3d")
    results = eq.run(True, tmp_path, progress=False)
    by = {r["library"]: r for r in results}
    ours, plain = by["equilayers"], by["plain nn.Conv3d"]
    assert ours["cube"] < 1e-5 and plain["cube"] > 0.3
    assert 0 < ours["off_grid"] < ours["floor_identity"] and plain["off_grid"] > 0.5
    if "escnn" in by:
        assert by["escnn"]["cube"] < 1e-5 and by["escnn"]["off_grid"] < 0.5
    table = (tmp_path / "cpu-equivariance3d-quick.md").read_text()
    assert table.count("\n| norm L=1 k=3 |") == len(results)
    with pytest.raises(ValueError, match="names no row"):
        eq.run(True, tmp_path, progress=False, name_filter="nonesuch")


def test_accuracy_and_segmentation_results_are_named_by_data_and_first_seed(monkeypatch,
                                                                              tmp_path):
    """A Fashion-MNIST run, or one of seeds 3.., wrote ``cpu-accuracy.*`` (and
    ``cpu-segmentation.*``), the default MNIST seeds-0.. run's committed files, and the table
    did not say which seeds ran. (The data and the training are stubbed: only the names and
    the header are under test.)"""
    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks import bench_accuracy as acc
        from benchmarks import bench_segmentation as seg
    finally:
        sys.path.remove(str(ROOT))
    written = []

    def write_study(out, stem, meta, results, markdown, name_filter=""):
        written.append((stem, markdown(meta, [])))

    for mod in (acc, seg):
        monkeypatch.setattr(mod, "run_study", lambda *a, **k: [])
        monkeypatch.setattr(mod, "write_study", write_study)
    digits = (torch.zeros(8, 1, 29, 29), torch.zeros(8, dtype=torch.long)) * 2
    monkeypatch.setattr(acc, "rotated_digits", lambda *a: digits)
    monkeypatch.setattr(seg, "dataset", lambda *a, **k: None)
    acc.run(False, tmp_path)
    acc.run(False, tmp_path, data="fashion-mnist")
    acc.run(True, tmp_path, first_seed=3, seeds=2)
    acc.run(False, tmp_path, split="val", schedule="cosine", first_seed=1)
    monkeypatch.setattr(seg, "models", lambda quick, name_filter="": ["a row"])  # (unbuilt)
    seg.run(False, tmp_path)
    seg.run(True, tmp_path, data="fashion-mnist")
    acc.run(False, tmp_path, seeds=1)  # (a full run of one seed: not the 3-seed files)
    acc.run(False, tmp_path, seeds=3)
    seg.run(False, tmp_path, seeds=1)
    assert [stem for stem, _ in written] == [
        "cpu-accuracy", "cpu-accuracy-fashion-mnist", "cpu-accuracy-from-seed3-seeds2-quick",
        "cpu-accuracy-val-cosine-from-seed1", "cpu-segmentation",
        "cpu-segmentation-fashion-mnist-quick", "cpu-accuracy-seeds1", "cpu-accuracy",
        "cpu-segmentation-seeds1"]
    assert "3 seeds (seeds 0-2)" in written[0][1]
    assert "2 seeds (seeds 3-4)" in written[2][1]
