"""The basis settings (``rings``, ``sigma``, ``frequencies_cutoff``) recorded in a state dict's
per-module metadata: a load into a conv built with other settings (same weight shape, another
filter basis) is refused by name; the same settings, or a state dict without the record, load
as before (docs/training.md, "Old checkpoints")."""

from __future__ import annotations

import io

import pytest
import torch
from conftest import seeded_rng
from torch import nn

from equilayers.nn import (
    GroupConv2d,
    GroupConv3d,
    GroupConvTranspose2d,
    GroupConvTranspose3d,
    LiftingConv2d,
    LiftingConv3d,
    SteerableConv3d,
    SteerableConvTranspose3d,
)

#: conv (with keyword arguments for its basis settings) and an input; each is built with the
#: default settings and with ``sigma=0.4`` (the weight's shape is the same).
CASES = {
    "GroupConv2d[c8]": (lambda **kw: GroupConv2d(3, 4, 5, padding=2, group="c8", **kw),
                        (1, 3, 8, 9, 9)),
    "GroupConv2d[so2]": (lambda **kw: GroupConv2d(3, 4, 5, padding=2, group="so2",
                                                  max_order=2, **kw), (1, 3, 5, 9, 9)),
    "LiftingConv2d[c8]": (lambda **kw: LiftingConv2d(3, 4, 5, padding=2, group="c8", **kw),
                          (1, 3, 9, 9)),
    "GroupConvTranspose2d[c4]": (lambda **kw: GroupConvTranspose2d(
        2, 3, 5, stride=2, padding=2, group="c4", basis="harmonic", **kw), (1, 2, 4, 5, 5)),
    "GroupConv3d[o,harmonic]": (lambda **kw: GroupConv3d(2, 3, 3, padding=1, group="o",
                                                         basis="harmonic", **kw),
                                (1, 2, 24, 4, 4, 4)),
    "LiftingConv3d[o,harmonic]": (lambda **kw: LiftingConv3d(2, 3, 3, padding=1, group="o",
                                                             basis="harmonic", **kw),
                                  (1, 2, 4, 4, 4)),
    "GroupConvTranspose3d[c4z,harmonic]": (lambda **kw: GroupConvTranspose3d(
        2, 3, 3, stride=2, padding=1, group="c4z", basis="harmonic", **kw), (1, 2, 4, 3, 3, 3)),
    "SteerableConv3d[so3]": (lambda **kw: SteerableConv3d(2, 3, 3, padding=1, max_order=1,
                                                          **kw), (1, 2, 4, 4, 4)),
    "SteerableConvTranspose3d[so3]": (lambda **kw: SteerableConvTranspose3d(
        2, 3, 3, stride=2, padding=1, max_order=1, **kw), (1, 2, 3, 3, 3)),
}


def _pair(name: str, **other):
    """The conv built with the default settings (seeded) and with ``other`` settings."""
    make, _ = CASES[name]
    with seeded_rng(0):
        src = make().eval()
    return src, make(**other).eval()


def _x(name: str) -> torch.Tensor:
    with seeded_rng(1):
        return torch.randn(CASES[name][1])


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_load_into_other_basis_settings_is_refused(name):
    """``sigma=0.4`` instead of the default: the same weight shape, another basis. The load
    raises, naming the module, both settings and the fix; the loaded module is unchanged."""
    src, dst = _pair(name, sigma=0.4)
    assert src.weight.shape == dst.weight.shape
    before = dst.weight.detach().clone()
    with pytest.raises(RuntimeError, match=r"saved with basis settings .*sigma=\(.*built with "
                                           r".*sigma=\(0\.4, .*build it with rings="):
        dst.load_state_dict(src.state_dict())
    assert torch.equal(dst.weight, before)


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_control_same_settings_load_and_compute_the_same(name):
    """The control: the same settings (default, or ``sigma=0.4`` on both sides, or the default
    values spelled out) load and compute what the saved module computes."""
    src, dst = _pair(name)
    dst.load_state_dict(src.state_dict())
    x = _x(name)
    with torch.no_grad():
        torch.testing.assert_close(dst(x), src(x), rtol=0, atol=0)
    _, b = _pair(name, sigma=0.4)
    b.load_state_dict(_pair(name, sigma=0.4)[1].state_dict())
    record = src.state_dict()._metadata[""]["basis_settings"]
    _, spelled = _pair(name, **{k: list(v) for k, v in record.items()})
    spelled.load_state_dict(src.state_dict())


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_silent_case_it_closes(name):
    """Without the record (a dict rebuilt from the state dict drops its metadata) the load is
    taken as before, and computes another filter: what the refusal prevents."""
    src, dst = _pair(name, sigma=0.4)
    dst.load_state_dict(dict(src.state_dict()))
    x = _x(name)
    with torch.no_grad():
        a, b = src(x), dst(x)
    assert ((a - b).abs().max() / a.abs().max()) > 1e-3


def test_the_record_survives_torch_save_and_names_a_submodule():
    """``torch.save`` + ``torch.load(weights_only=True)`` keeps the record; in a model, the
    error names the submodule's key prefix."""
    make = CASES["GroupConv2d[c8]"][0]
    src = nn.Sequential(nn.Identity(), make())
    buf = io.BytesIO()
    torch.save(src.state_dict(), buf)
    buf.seek(0)
    sd = torch.load(buf, weights_only=True)
    assert sd._metadata["1"]["basis_settings"]["sigma"] == (0.005, 0.6, 0.4)
    with pytest.raises(RuntimeError, match=r"1 \(GroupConv2d\) was saved with basis settings"):
        nn.Sequential(nn.Identity(), make(sigma=0.4)).load_state_dict(sd)


def test_a_pixel_basis_records_nothing():
    sd = GroupConv2d(3, 4, 3, group="c4", basis="pixel").state_dict()
    assert "basis_settings" not in sd._metadata[""]
    sd = GroupConv3d(2, 3, 3, group="o", basis="voxel").state_dict()
    assert "basis_settings" not in sd._metadata[""]
