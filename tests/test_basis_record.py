"""The basis settings (``rings``, ``sigma``, ``frequencies_cutoff``; ``basis`` where two bases
share weight shapes) recorded in a state dict's per-module metadata: a load into a conv built
with other settings (same weight shape, another filter basis) is refused by name; the same
settings, or a state dict without the record, load as before (docs/training.md, "Old
checkpoints")."""

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
    _, spelled = _pair(name, **{k: v if isinstance(v, str) else list(v)  # (basis: a name)
                                for k, v in record.items()})
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


#: SteerableConv3d's two bases at a kernel (1, k, k): the same weight shape, other filters.
SLICES = {
    "SteerableConv3d[so2]": lambda basis: SteerableConv3d(
        1, 4, (1, 5, 5), padding=(0, 2, 2), group="so2", max_order=1, basis=basis),
    "SteerableConv3d[o2]": lambda basis: SteerableConv3d(
        2, 3, (1, 5, 5), padding=(0, 2, 2), group="o2", max_order=1, basis=basis),
    "SteerableConvTranspose3d[so2]": lambda basis: SteerableConvTranspose3d(
        1, 4, (1, 5, 5), stride=(1, 2, 2), padding=(0, 2, 2), group="so2", max_order=1,
        basis=basis),
}


@pytest.mark.parametrize("name", sorted(SLICES))
@pytest.mark.parametrize("saved,built", [("slices", "shells"), ("shells", "slices")])
def test_a_load_into_the_other_basis_is_refused(name, saved, built):
    """``basis="slices"`` and the default ``"shells"`` have the same weight shape and the
    same settings at a kernel ``(1, 5, 5)``: the record did not name the basis, so a strict
    load succeeded and computed outputs 20-33% off. The record names it now: refused, naming
    both bases and the fix; the loaded module unchanged. The controls: the same basis loads
    and computes the same; without the refusal (the metadata dropped) the outputs differ."""
    with seeded_rng(0):
        src = SLICES[name](saved).eval()
    dst = SLICES[name](built).eval()
    assert src.weight.shape == dst.weight.shape
    sd = src.state_dict()
    assert sd._metadata[""]["basis_settings"]["basis"] == saved
    before = dst.weight.detach().clone()
    with pytest.raises(RuntimeError, match=rf"basis='{saved}'\), and this one is built with "
                                           rf".*basis='{built}'\).*build it with rings=.*"
                                           rf"basis='{saved}' \(or load"):
        dst.load_state_dict(sd)
    assert torch.equal(dst.weight, before)
    with seeded_rng(1):
        x = torch.randn(1, src.in_channels, *((src.fiber_in,) if src.fiber_in > 1 else ()),
                        3, 5, 5)
    same = SLICES[name](saved).eval()
    same.load_state_dict(sd)
    dst.load_state_dict(dict(sd))  # (no metadata: what the refusal prevents)
    with torch.no_grad():
        torch.testing.assert_close(same(x), src(x), rtol=0, atol=0)
        a, b = src(x), dst(x)
    assert (a - b).norm() / a.norm() > 0.05


def test_a_record_without_the_basis_loads_as_before():
    """A record saved before ``basis`` was in it (2026-12-07) is checked on its settings
    alone: it loads into either basis, as it did; its other settings are still checked."""
    make = SLICES["SteerableConv3d[so2]"]
    sd = make("slices").state_dict()
    del sd._metadata[""]["basis_settings"]["basis"]
    for basis in ("slices", "shells"):
        make(basis).load_state_dict(sd)
    other = SteerableConv3d(1, 4, (1, 5, 5), padding=(0, 2, 2), group="so2", max_order=1,
                            sigma=0.4)
    with pytest.raises(RuntimeError, match=r"saved with basis settings \(rings=.*\), and this"):
        other.load_state_dict(sd)


@pytest.mark.parametrize("cls,kw,bases", [
    (GroupConv2d, {"group": "c4"}, ("pixel", "harmonic")),
    (LiftingConv2d, {"group": "c4"}, ("pixel", "harmonic")),
    (GroupConvTranspose2d, {"group": "c4", "stride": 2}, ("pixel", "harmonic")),
    (GroupConv3d, {"group": "c4z"}, ("voxel", "harmonic")),
    (LiftingConv3d, {"group": "c4z"}, ("voxel", "harmonic")),
    (GroupConvTranspose3d, {"group": "c4z", "stride": 2}, ("voxel", "harmonic")),
])
@pytest.mark.parametrize("k", [1, 3, 5])
def test_a_pixel_and_a_harmonic_basis_never_share_a_weight_shape(cls, kw, bases, k):
    """The group convs' pixel/voxel basis records nothing: a pixel checkpoint carries no
    record to refuse a harmonic conv with. It does not need one: the weights have another
    number of dims (one per filter dim against one basis axis), so the load fails on the
    shapes, either way (the group convs' record names no basis)."""
    pixel, harmonic = (cls(2, 3, k, **kw, basis=b) for b in bases)
    assert pixel.weight.dim() != harmonic.weight.dim()
    assert "basis" not in harmonic.state_dict()._metadata[""]["basis_settings"]
    for src, dst in ((pixel, harmonic), (harmonic, pixel)):
        with pytest.raises(RuntimeError, match=r"size mismatch for weight"):
            dst.load_state_dict(src.state_dict())
