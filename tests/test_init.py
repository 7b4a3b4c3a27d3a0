"""The generalized He init of the group convs (``_GroupConvNd.reset_parameters``): on unit-variance
input every output slot (regular fields) or rotation order (harmonic fields) that the basis
reaches has std 1 (``init_gain2 = 1``) within 15%, for every group, basis, field type and
kernel size of the case table; the check fails for a wrong scale."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from equilayers.nn import GroupConv2d, LiftingConv2d

TARGET = 1.0  # init_gain2 = 1: the second moment is preserved
REL = 0.15

# (group, constructor kwargs) as in the shared equivariance cases
CONFIGS = [
    ("c4", {}), ("d4", {}), ("c2", {}), ("d1", {}),
    ("c4", {"basis": "harmonic"}), ("c8", {}), ("d8", {}), ("c6", {}), ("c16", {}),
    ("so2", {"max_order": 2}), ("o2", {"max_order": 2}), ("so2", {"max_order": 1}),
    ("c8", {"max_order": 2}), ("d8", {"max_order": 2}),
]

IDS = [f"{g}-{'-'.join(map(str, kw.values())) or 'default'}" for g, kw in CONFIGS]


def slot_stds(m, gen, size: int = 29) -> torch.Tensor:
    """Per output slot std on i.i.d. N(0, 1) input, away from the zero-padded border."""
    k = m.kernel_size[0]
    shape = (8, m.in_channels, size, size) if m.lifting else (8, m.in_channels, m.fiber_in,
                                                             size, size)
    with torch.no_grad():
        y = m(torch.randn(shape, generator=gen))
    return y[..., k:-k, k:-k].square().mean(dim=(0, 1, 3, 4)).sqrt()


def reached(m) -> torch.Tensor:
    """Which output slots some basis function reaches (the others are 0 by construction)."""
    if m.basis == "pixel" or m.out_rep == "regular":
        return torch.ones(m.fiber_out, dtype=torch.bool)
    return m.filter_basis.square().sum(dim=(0, 2, 3, 4)) > 0


def assert_he_scaled(m, gen) -> None:
    """Regular fields: every slot. Harmonic fields: every order, as the RMS of its slots (a
    rotation mixes ``c_m`` and ``s_m``; what the norm nonlinearities see is ``|v_m|``). With
    reflections and k = 3 the grid gives ``cos 2 phi`` and ``sin 2 phi`` unequal energy (a
    lifting conv's order-2 slots measured std 1.76 and 1.03, RMS 1.44), which no init fixes."""
    std = slot_stds(m, gen)
    if m.out_rep == "harmonic":
        pairs = std[1:].square().view(-1, 2).mean(1).sqrt()
        std = torch.cat([std[:1], pairs])[reached(m)[::2]]
    else:
        std = std[reached(m)]
    worst = (std / TARGET - 1).abs().max().item()
    assert worst < REL, f"{m}: slot stds {std.tolist()} (target {TARGET:.3f})"


@pytest.mark.parametrize("k", [3, 5, 7])
@pytest.mark.parametrize("lifting", [True, False], ids=["lifting", "group"])
@pytest.mark.parametrize("group,kw", CONFIGS, ids=IDS)
def test_output_std_is_he_scaled(group, kw, lifting, k, gen):
    cls = LiftingConv2d if lifting else GroupConv2d
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # orders no basis function of this size reaches
        m = cls(16, 16, k, padding=k // 2, group=group, **kw)
    assert_he_scaled(m, gen)


def test_negative_control_wrong_scale_fails(gen):
    """The check can fail: nn.Conv2d's default scale (std 1/sqrt(3 fan_in): output std 0.58)
    and He's ReLU gain (std sqrt(2)) are both caught."""
    for scale in (1 / math.sqrt(3), math.sqrt(2)):
        m = GroupConv2d(16, 16, 5, padding=2, group="c8")
        with torch.no_grad():
            m.weight.mul_(scale)
        with pytest.raises(AssertionError, match="slot stds"):
            assert_he_scaled(m, gen)


def test_bias_starts_at_zero_and_reset_redraws():
    m = GroupConv2d(4, 4, 3, group="p4")
    assert torch.equal(m.bias, torch.zeros(4))
    w = m.weight.detach().clone()
    m.reset_parameters()
    assert not torch.equal(m.weight, w)


def test_harmonic_orders_get_balanced_weights():
    """Orders reached by few basis functions get larger weights (escnn's per-irrep balance):
    the weight std differs per basis element for harmonic fields beyond the elements' norms
    (sqrt(d_out), divided out by the init); for regular fields only by those norms."""
    so2 = GroupConv2d(8, 8, 5, group="so2", max_order=2)
    std = so2._init_std() * so2._irrep_scale()
    assert isinstance(std, torch.Tensor) and std.shape == (so2._num_basis,)
    assert std.max() / std.min() > 1.2
    c8 = GroupConv2d(8, 8, 5, group="c8")
    per_element = c8._init_std() * c8._irrep_scale()
    torch.testing.assert_close(per_element, per_element[:1].expand_as(per_element))
    assert c8._irrep_scale().min() == 1.0 and c8._irrep_scale().max() > 1.4


def test_unreachable_orders_warn():
    """A lifting conv whose kernel is too small for the top order has always-zero slots: the
    constructor says so."""
    with pytest.warns(UserWarning, match=r"kernel_size=5 reaches output rotation order\(s\) \[3\]"):
        LiftingConv2d(1, 2, 5, group="so2", max_order=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        LiftingConv2d(1, 2, 7, group="so2", max_order=3)
