"""Nonlinearities, norm pooling and batch norm on SO(3)/O(3) harmonic fields of volumes: their
values, exact equivariance under every rotation (not only the grid's), a pointwise ReLU as the
negative control, bad input."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from _so3_common import D64
from conftest import seeded_rng
from torch import nn

from equilayers import functional as EF
from equilayers import nn as enn
from equilayers.groups import get
from equilayers.testing import equivariance_report


# --- nonlinearities and norm pooling on SO(3) fields ------------------------------------------
@pytest.mark.parametrize("order0", ["function", "norm"])
def test_norm_nonlinearity_values_on_so3_fields(order0, gen):
    """The values, not only the equivariance (which a wrong map on the invariant a_0, or a
    bias left out, keeps): a_0 -> relu(a_0 + b_0) or sign(a_0) relu(|a_0| + b_0), order l's
    2l+1 slots -> v relu(|v| + b_l) / |v| with |v| = sqrt(sum v^2 + eps)."""
    eps = 1e-6
    x = torch.randn(2, 3, 9, 2, 2, 2, generator=gen, dtype=D64)
    bias = torch.randn(3, 3, generator=gen, dtype=D64)
    b = bias[None, :, :, None, None, None]
    a0 = x[:, :, :1]
    want = [F.relu(a0 + b[:, :, :1]) if order0 == "function"
            else torch.sign(a0) * F.relu(a0.abs() + b[:, :, :1])]
    for l in (1, 2):
        v = x[:, :, l * l:(l + 1) ** 2]
        norm = (v.square().sum(2, keepdim=True) + eps).sqrt()
        want.append(v * F.relu(norm + b[:, :, l:l + 1]) / norm)
    got = EF.norm_nonlinearity(x, bias, 2, eps=eps, order0=order0, group="so3")
    torch.testing.assert_close(got, torch.cat(want, 2), rtol=1e-12, atol=1e-14)
    assert (got[:, :, :1] < 0).any() == (order0 == "norm")  # both signs survive with "norm"


@pytest.mark.parametrize("group", ["so3", "o3"])
def test_nonlinearities_commute_with_every_rotation(group, gen):
    """Pointwise in space, so any element's fiber action (not only the grid's) commutes
    exactly; NormPool is invariant."""
    from equilayers.groups import act_fiber

    grp = get(group)
    x = torch.randn(2, 4, 9, 3, 3, 3, generator=gen, dtype=D64)
    with seeded_rng(0):
        mods = [enn.HarmonicBatchNorm(4, 2, group=group).double().eval(),
            enn.NormNonlinearity(4, 2, group=group).double(),
                enn.NormNonlinearity(4, 2, group=group, order0="norm").double(),
                enn.GatedNonlinearity(2, group=group),
                enn.GatedNonlinearity(2, gates="first_half", group=group)]
    pool = enn.NormPool(2, group=group)
    for _ in range(3):
        g = grp.random_element(gen)
        gx = act_fiber(x, g, "harmonic")
        for m in mods:
            torch.testing.assert_close(m(gx), act_fiber(m(x), g, "harmonic"))
        torch.testing.assert_close(pool(gx), pool(x))
    assert pool(x).shape == (2, 12, 3, 3, 3) and mods[4](x).shape == (2, 2, 9, 3, 3, 3)
    # and the whole field on the grid, through the harness; batch norm in training mode too
    assert equivariance_report(mods[1], x, group).error < 1e-13
    bn = enn.HarmonicBatchNorm(4, 2, group=group).double()
    assert equivariance_report(bn, x, group).error < 1e-13
    # negative control: a pointwise ReLU on every slot is not equivariant
    relu = nn.ReLU()
    g = grp.random_element(gen)
    assert (relu(act_fiber(x, g, "harmonic")) - act_fiber(relu(x), g, "harmonic")).abs().max() > 0.1


def test_nonlinearity_bad_input():
    with pytest.raises(ValueError, match="group='o'"):
        enn.NormNonlinearity(4, 2, group="o")
    with pytest.raises(ValueError, match=r"6-D harmonic field"):
        enn.NormNonlinearity(4, 2, group="so3")(torch.randn(1, 4, 5, 3, 3))
    with pytest.raises(ValueError, match=r"NormNonlinearity\(group='so3', max_order=2\) "
                                         r"expects a fiber of 9 slots .*got F=5"):
        enn.NormNonlinearity(4, 2, group="so3")(torch.randn(1, 4, 5, 3, 3, 3))
    with pytest.raises(TypeError, match="max_order=None"):
        enn.NormPool(group="so3")  # the order is not read from a square fiber


def test_harmonic_batch_norm_on_so3_fields(gen):
    """Training normalizes order 0 to zero mean and unit variance and every order l >= 1 to
    E|v_l|^2 = 2l + 1 (unit second moment per slot); eval uses the running statistics."""
    bn = enn.HarmonicBatchNorm(3, 2, group="so3", momentum=None).double()
    scale = torch.tensor([1.0] + [3.0] * 3 + [0.5] * 5, dtype=D64).view(1, 1, 9, 1, 1, 1)
    x = torch.randn(8, 3, 9, 4, 4, 4, generator=gen, dtype=D64) * scale + 2.0
    y = bn(x).detach()
    assert abs(float(y[:, :, 0].mean())) < 1e-12
    for l in range(3):
        ms = float(y[:, :, l * l:(l + 1) ** 2].square().sum(2).mean())
        assert abs(ms - (2 * l + 1)) < 1e-3, (l, ms)
    bn.eval()
    torch.testing.assert_close(bn(x), y, atol=1e-2, rtol=1e-2)  # one batch: its statistics
    assert "group='so3'" in repr(bn)


@pytest.mark.parametrize("group", ["so3", "o3"])
def test_harmonic_batch_norm_of_scalar_fields_is_batch_norm(group, gen):
    """max_order=0 (one slot per field, invariant scalars; a steerable U-Net's max_order=0):
    nn.BatchNorm3d on the fields' one slot, in training and eval. Its training statistics
    failed deep in torch (torch.arange of the empty range of orders 1 .. 0)."""
    bn = enn.HarmonicBatchNorm(3, 0, group=group).double()
    ref = torch.nn.BatchNorm3d(3).double()
    x = torch.randn(4, 3, 1, 3, 4, 5, generator=gen, dtype=D64) * 2 + 1
    for _ in range(2):
        torch.testing.assert_close(bn(x)[:, :, 0], ref(x[:, :, 0]))
    bn.eval(), ref.eval()
    torch.testing.assert_close(bn(x)[:, :, 0], ref(x[:, :, 0]))
