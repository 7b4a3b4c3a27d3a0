"""Steerable U-Nets: ``UNet(group="so2" | "o2")`` and ``UNet3d(group="so3" | "o3" | "so2" |
"o2")`` on harmonic fields. Shapes, defaults, repr, the arguments they refuse (and the
``nonlinearity`` choice, of every U-Net), check_grid, the 2 x 2 up-convolution
(``up="transposed"``, on images and volumes), float32 exactness over the grid elements, state
dict, a training step. The float64 exactness and the negative controls are in the case table
(testing/_cases_models.py, testing/_cases_models3d.py)."""

from __future__ import annotations

import pytest
import torch
from _unet_common import seeded_unet, warm
from torch import nn

from equilayers import check_grid
from equilayers.models import UNet, UNet3d
from equilayers.nn import (
    FourierNonlinearity,
    GatedNonlinearity,
    HarmonicBatchNorm,
    NormMaxPool,
    NormNonlinearity,
)
from equilayers.testing import equivariance_error, shift_equivariance_error


def _net(cls=UNet, seed=0, **kw):
    return seeded_unet(cls, {"depth": 2, "width": 2}, seed, **kw)


@pytest.mark.parametrize("group,fiber", [("so2", 5), ("o2", 5)])
@pytest.mark.parametrize("down", ["blur", "polyphase", "max", "learned"])
def test_planar_shapes_and_defaults(group, fiber, down, gen):
    net = _net(group=group, down=down)
    assert net.max_order == 2 and net.basis == "harmonic"
    h = net.encoder[0][0](torch.randn(2, 2, 8, 8, generator=gen))
    assert h.shape == (2, 2, fiber, 8, 8)  # harmonic fields of orders 0 .. 2
    assert net(torch.randn(2, 2, 8, 12, generator=gen)).shape == (2, 3, 8, 12)
    assert any(isinstance(m, FourierNonlinearity) for m in net.modules())
    assert any(isinstance(m, HarmonicBatchNorm) for m in net.modules())
    assert any(isinstance(m, NormMaxPool) for m in net.modules()) == (down == "max")
    assert f"group={net.group.name!r}" in repr(net) and "max_order=2" in repr(net)


@pytest.mark.parametrize("group,fiber,order", [("so3", 4, 1), ("o3", 4, 1), ("so2", 5, 2)])
def test_volume_shapes_and_defaults(group, fiber, order, gen):
    net = _net(UNet3d, group=group, depth=1, width=1)
    assert net.max_order == order
    assert net.encoder[0][0](torch.randn(2, 2, 4, 4, 4, generator=gen)).shape[2] == fiber
    assert net(torch.randn(2, 2, 4, 6, 8, generator=gen)).shape == (2, 3, 4, 6, 8)
    assert _net(UNet3d, group="so3", depth=1, width=1, max_order=2).encoder[0][0].out_type \
        .fiber_size == 9


def test_refusals():
    with pytest.raises(ValueError, match=r"max_order=1 chooses the harmonic fields of a "
                                         r"continuous group, but group=None"):
        UNet(1, 2, group=None, max_order=1)
    with pytest.raises(ValueError, match=r"max_order=1 chooses harmonic fields, but "
                                         r"group='d4' builds regular ones.*'so2' or 'o2'"):
        UNet(1, 2, group="p4m", max_order=1)
    with pytest.raises(ValueError, match=r"max_order=1 .* group='o' builds regular ones.*"
                                         r"'so3', 'o3'"):
        UNet3d(1, 2, group="o", max_order=1)
    with pytest.raises(ValueError, match=r"basis='pixel' on group='so2'.*basis=None"):
        UNet(1, 2, group="so2", basis="pixel")
    with pytest.raises(ValueError, match=r"basis='voxel' on group='so3'"):
        UNet3d(1, 2, group="so3", basis="voxel")
    with pytest.raises(ValueError, match=r"max_order=3 must be an integer in 0..2.*lifting "
                                         r"conv reaches orders 0 .. 2"):
        UNet(1, 2, group="so2", max_order=3)
    with pytest.raises(TypeError, match=r"max_order=1.5"):
        UNet3d(1, 2, group="so3", max_order=1.5)


@pytest.mark.parametrize("cls,group,shape", [(UNet, "so2", (2, 2, 8, 8)),
                                             (UNet3d, "so3", (2, 2, 4, 4, 4))])
@pytest.mark.parametrize("name,module", [("fourier", FourierNonlinearity),
                                         ("gated", GatedNonlinearity),
                                         ("norm", NormNonlinearity)])
def test_nonlinearity_choice(cls, group, shape, name, module, gen):
    net = _net(cls, group=group, depth=1, width=1, nonlinearity=name)
    found = {type(m) for m in net.modules()} & {FourierNonlinearity, GatedNonlinearity,
                                                NormNonlinearity}
    assert found == {module} and net.nonlinearity == name
    assert ("nonlinearity=" in repr(net)) == (name != "fourier")
    assert net(torch.randn(*shape, generator=gen)).shape == (shape[0], 3, *shape[2:])
    if name == "norm":  # its learned thresholds: one per field and order, in the state dict
        assert any(k.endswith(".bias") and v.dim() == 2 for k, v in net.state_dict().items())


def test_nonlinearity_of_regular_and_plain_u_nets(gen):
    for group in ("p4m", None):
        net = _net(group=group, depth=1, width=2, nonlinearity="elu")
        acts = [m for m in net.modules() if isinstance(m, (nn.ReLU, nn.ELU))]
        assert acts and all(isinstance(m, nn.ELU) for m in acts)
        assert "nonlinearity='elu'" in repr(net)
        assert all(isinstance(m, nn.ReLU) for m in _net(group=group, depth=1).modules()
                   if isinstance(m, (nn.ReLU, nn.ELU)))
    with pytest.raises(ValueError, match=r"nonlinearity='fourier' is for harmonic fields .*"
                                         r"regular fields of 'd4'; use one of \('relu', 'elu'\)"):
        UNet(1, 2, group="p4m", nonlinearity="fourier")
    with pytest.raises(ValueError, match=r"nonlinearity='relu' is pointwise, which does not "
                                         r"commute .* harmonic fields of 'so3'.*'fourier', "
                                         r"'gated', 'norm'"):
        UNet3d(1, 2, group="so3", nonlinearity="relu")
    with pytest.raises(ValueError, match=r"nonlinearity='gated' is for harmonic fields.*plain "
                                         r"channels"):
        UNet(1, 2, group=None, nonlinearity="gated")
    with pytest.raises(ValueError, match=r"nonlinearity='tanh' must be one of 'fourier', "
                                         r"'gated', 'norm'"):
        UNet(1, 2, group="so2", nonlinearity="tanh")


def test_check_grid_accepts_the_sizes_it_is_exact_on():
    """(check_grid with the continuous group itself reports its off-grid rotations; its grid
    subgroup's elements are exact)."""
    assert check_grid(_net(group="so2"), (1, 2, 16, 16), "c4") == []
    assert check_grid(_net(group="o2"), (1, 2, 16, 16), "d4") == []
    assert check_grid(_net(UNet3d, group="so3", width=1), (1, 2, 8, 8, 8), "o") == []
    assert check_grid(_net(group="so2"), (1, 2, 16, 16), "so2")  # off-grid rotations


@pytest.mark.parametrize("down", ["blur", "polyphase", "max", "learned"])
def test_planar_float32_exact_on_the_grid_and_shifts(down, gen):
    x = torch.randn(2, 2, 16, 16, generator=gen)
    net = warm(_net(group="o2", down=down), torch.randn(4, 2, 16, 16, generator=gen))
    assert equivariance_error(net, x, "o2") < 1e-5
    shifts = ((4, 0), (8, 12)) if down in ("blur", "max") else ((1, 0), (3, 5))
    assert shift_equivariance_error(net, x, shifts) < 1e-5


@pytest.mark.parametrize("group,grid", [("so2", "c4"), ("o2", "d4"), ("c8", "c4")])
@pytest.mark.parametrize("down", ["max", "blur"])
def test_planar_transposed_up_convolutions(group, grid, down, gen):
    """up='transposed' on harmonic fields (so2/o2) and on c8's regular fields: 2 x 2 stride-2
    transposed convs in the steerable basis on an even grid, halving the fields; exact
    (float32) on the grid's quarter turns (and flips) and shifts by multiples of 2**depth, not
    under a 1-pixel shift; check_grid agrees."""
    x = torch.randn(2, 2, 16, 16, generator=gen)
    net = warm(_net(group=group, down=down, up="transposed"),
               torch.randn(4, 2, 16, 16, generator=gen))
    for up, fields in zip(net.up, (2, 4), strict=True):
        assert type(up).__name__ == "GroupConvTranspose2d" and up.basis == "harmonic"
        assert up.kernel_size == (2, 2) and up.out_channels == fields
        assert up.max_order == (None if group == "c8" else 2)
    assert net(x).shape == (2, 3, 16, 16)
    assert equivariance_error(net, x, grid) < 1e-5
    assert shift_equivariance_error(net, x, [(4, 0), (8, 12)]) < 1e-5
    assert shift_equivariance_error(net, x, [(1, 0)]) > 1e-4
    assert check_grid(net, (1, 2, 16, 16), grid) == []


@pytest.mark.parametrize("group,grid,fiber", [("so3", "o", 4), ("o3", "oh", 4), ("o2", "o2", 5)])
def test_volume_transposed_up_convolutions(group, grid, fiber, gen):
    """up='transposed' on volumes of harmonic fields: 2 x 2 x 2 stride-2
    SteerableConvTranspose3d (shells about the point between the eight middle voxels)
    halving the fields; exact (float32) on the cube's grid elements (or the depth axis's turns
    and flips) and shifts by multiples of 2**depth, not under a 1-voxel shift; check_grid
    agrees."""
    x = torch.randn(2, 2, 8, 8, 8, generator=gen)
    net = warm(_net(UNet3d, group=group, down="max", up="transposed"),
               torch.randn(4, 2, 8, 8, 8, generator=gen))
    for up, fields in zip(net.up, (2, 4), strict=True):
        assert type(up).__name__ == "SteerableConvTranspose3d" and up.kernel_size == (2, 2, 2)
        assert up.out_channels == fields and up.out_type.fiber_size == fiber
    assert net(x).shape == (2, 3, 8, 8, 8)
    assert equivariance_error(net, x, grid) < 1e-5
    assert shift_equivariance_error(net, x, [(4, 0, 4)]) < 1e-5
    assert shift_equivariance_error(net, x, [(1, 0, 0)]) > 1e-4
    if grid in ("o", "oh"):  # (o2 itself has off-grid rotations to report)
        assert check_grid(net, (1, 2, 8, 8, 8), grid) == []


@pytest.mark.parametrize("group,down,shift", [("so3", "polyphase", (1, 2, 3)),
                                              ("o3", "polyphase", (1, 2, 3)),
                                              ("so3", "max", (4, 0, 4))])
def test_volume_float32_exact_on_the_cube(group, down, shift, gen):
    x = torch.randn(1, 2, 8, 8, 8, generator=gen)
    net = warm(_net(UNet3d, group=group, width=1, down=down),
                torch.randn(2, 2, 8, 8, 8, generator=gen))
    assert equivariance_error(net, x, group) < 1e-5
    assert shift_equivariance_error(net, x, (shift,)) < 1e-5


@pytest.mark.parametrize("group,fiber", [("so3", 4), ("so2", 5)])
def test_volume_max_pools_by_field_norm(group, fiber, gen):
    net = _net(UNet3d, group=group, depth=1, width=1, down="max")
    pools = [m for m in net.modules() if isinstance(m, NormMaxPool)]
    assert len(pools) == 1 and pools[0].group == net.group
    assert pools[0].in_type.spatial_dims == 3
    h = net.encoder[0](torch.randn(2, 2, 4, 4, 4, generator=gen))
    assert h.shape[2] == fiber and pools[0](h).shape == (*h.shape[:3], 2, 2, 2)
    assert net(torch.randn(2, 2, 4, 6, 8, generator=gen)).shape == (2, 3, 4, 6, 8)


def test_state_dict_round_trip_and_training_step(gen):
    net = _net(group="so2", depth=1)
    other = _net(group="so2", depth=1, seed=1)
    other.load_state_dict(net.state_dict())
    x = torch.randn(4, 2, 8, 8, generator=gen)
    net.eval(), other.eval()
    torch.testing.assert_close(net(x), other(x), rtol=0, atol=0)
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    target = torch.randint(0, 3, (4, 8, 8), generator=gen)
    losses = []
    for _ in range(15):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(x), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]
