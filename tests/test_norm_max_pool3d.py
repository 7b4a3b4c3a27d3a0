"""NormMaxPool on volumes (``norm_max_pool3d``): SO(3)/O(3) fields and volumes of planar
fields; shapes as ``nn.MaxPool3d``, the chosen vectors against a brute-force reference,
gradients, the window warning, check_grid, refusals. Exactness on the cube's rotations, with a
negative control (a max pool of every slot), is in the case table (``testing/_cases_so3.py``,
``_cases_axial.py``, ``_cases_models3d.py``)."""

import warnings

import pytest
import torch
from torch import nn

from equilayers import check_grid
from equilayers import functional as EF
from equilayers import nn as enn
from equilayers.models import UNet3d

#: SO(3) orders' slots for max_order=2: l^2 .. (l+1)^2 - 1
_SO3_BLOCKS = (slice(0, 1), slice(1, 4), slice(4, 9))
#: planar orders' slots for max_order=2: [a_0], [c_1, s_1], [c_2, s_2]
_PLANAR_BLOCKS = (slice(0, 1), slice(1, 3), slice(3, 5))


def _x(gen, shape, dtype=torch.float64):
    return torch.randn(shape, generator=gen, dtype=dtype)


def _windows(x: torch.Tensor) -> torch.Tensor:
    """The 2x2x2 windows of ``(B, C, F, D, H, W)``: ``(B, C, F, D/2, H/2, W/2, 8)``."""
    return x.unfold(3, 2, 2).unfold(4, 2, 2).unfold(5, 2, 2).flatten(-3)


def _brute(x: torch.Tensor, blocks) -> torch.Tensor:
    """Per block of slots, the block at the window location of its largest norm."""
    win = _windows(x)
    out = []
    for sl in blocks:
        best = win[:, :, sl].pow(2).sum(2).argmax(-1)
        idx = best[:, :, None, ..., None].expand(-1, -1, sl.stop - sl.start, -1, -1, -1, 1)
        out.append(win[:, :, sl].gather(-1, idx)[..., 0])
    return torch.cat(out, 2)


@pytest.mark.parametrize("group,fiber,blocks", [("so3", 9, _SO3_BLOCKS),
                                                ("o3", 9, _SO3_BLOCKS),
                                                (None, 5, _PLANAR_BLOCKS)])
def test_picks_the_largest_vector(group, fiber, blocks, gen):
    x = _x(gen, (2, 3, fiber, 4, 6, 4))
    dims = {"spatial_dims": 3} if group is None else {"group": group}
    y = enn.NormMaxPool(2, **dims)(x)
    torch.testing.assert_close(y, _brute(x, (slice(0, fiber),)), rtol=0, atol=0)
    yo = enn.NormMaxPool(2, per="order", **dims)(x)
    torch.testing.assert_close(yo, _brute(x, blocks), rtol=0, atol=0)
    assert not torch.equal(y, yo)
    torch.testing.assert_close(EF.norm_max_pool3d(x, 2, group=group, per="order"), yo,
                               rtol=0, atol=0)
    torch.testing.assert_close(EF.norm_max_pool3d(x, 2, max_order=2, group=group), y,
                               rtol=0, atol=0)


def test_planar_volume_with_a_flat_window_is_the_image_pool_per_slice(gen):
    x = _x(gen, (2, 3, 5, 3, 6, 6))
    y = EF.norm_max_pool3d(x, (1, 2, 2), per="order")
    for d in range(3):
        torch.testing.assert_close(y[:, :, :, d], EF.norm_max_pool2d(x[:, :, :, d], 2,
                                                                     per="order"),
                                   rtol=0, atol=0)


@pytest.mark.parametrize("args,kw", [((2,), {}), ((3, 2, 1), {}), ((3, 1, 1), {}),
                                     ((2, 2, 0, 1), {"ceil_mode": True}), ((3, 2, 1, 2), {}),
                                     (((1, 2, 3), (1, 2, 2), (0, 1, 1)), {})])
@pytest.mark.filterwarnings("ignore:NormMaxPool .* is not exactly equivariant:UserWarning")
def test_shape_like_max_pool3d(args, kw, gen):  # 7x9x8: shapes, not exactness
    x = _x(gen, (2, 3, 4, 7, 9, 8))
    y = enn.NormMaxPool(*args, group="so3", **kw)(x)
    ref = nn.MaxPool3d(*args, **kw)(x[:, :, 0])
    assert y.shape == (2, 3, 4, *ref.shape[-3:])
    torch.testing.assert_close(EF.norm_max_pool3d(x, *args, group="so3", **kw), y,
                               rtol=0, atol=0)


def test_gradient_goes_to_the_chosen_vector(gen):
    x = _x(gen, (1, 2, 4, 4, 4, 4)).requires_grad_(True)
    enn.NormMaxPool(2, group="so3")(x).sum().backward()
    chosen = (x.grad != 0).any(2)  # one location per window and field
    assert _windows(chosen.unsqueeze(2))[:, :, 0].sum(-1).eq(1).all()
    assert torch.autograd.gradcheck(
        lambda t: EF.norm_max_pool3d(t, 3, 2, 1, group="o3", per="order"),
        (_x(gen, (1, 2, 4, 3, 3, 3)).requires_grad_(True),))


def test_low_precision_empty_and_module_state(gen):
    x = _x(gen, (2, 3, 4, 4, 4, 4), torch.float32)
    half = enn.NormMaxPool(2, group="so3")(x.half())
    assert half.dtype == torch.float16 and half.shape == (2, 3, 4, 2, 2, 2)
    empty = enn.NormMaxPool(2, group="so3")(x[:, :0])
    assert empty.shape == (2, 0, 4, 2, 2, 2)
    m = enn.NormMaxPool(3, 2, 1, max_order=1, group="o3", per="order")
    assert repr(m) == ("NormMaxPool(kernel_size=3, stride=2, padding=1, max_order=1, "
                       "per='order', group='o3')")
    assert repr(enn.NormMaxPool(2, spatial_dims=3)) == (
        "NormMaxPool(kernel_size=2, stride=2, spatial_dims=3)")
    assert m.state_dict() == {} and m.in_type == m.out_type and m.in_type.spatial_dims == 3


def test_warns_once_where_the_windows_break_the_cube(gen):
    pool = enn.NormMaxPool(3, 2, 1, group="so3")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pool(_x(gen, (1, 1, 4, 9, 9, 9)))  # (9 + 2 - 3) % 2 == 0: exact, no warning
    with pytest.warns(UserWarning, match=r"NormMaxPool \(the cube's rotations and flips\) is "
                                         r"not exactly equivariant on input of size 8x8x8"):
        pool(_x(gen, (1, 1, 4, 8, 8, 8)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pool(_x(gen, (1, 1, 4, 8, 8, 8)))  # once per module


def test_refusals(gen):
    with pytest.raises(ValueError, match=r"norm_max_pool2d expects .* got a 6-D tensor.*"
                                         r"norm_max_pool3d"):
        EF.norm_max_pool2d(_x(gen, (1, 2, 5, 4, 4, 4)), 2, max_order=2)
    with pytest.raises(ValueError, match=r"norm_max_pool3d expects a volume.*got shape "
                                         r"\(1, 2, 5, 4, 4\).*norm_max_pool2d"):
        EF.norm_max_pool3d(_x(gen, (1, 2, 5, 4, 4)), 2)
    with pytest.raises(ValueError, match=r"square fiber; got shape \(1, 2, 5, 4, 4, 4\)"):
        EF.norm_max_pool3d(_x(gen, (1, 2, 5, 4, 4, 4)), 2, group="so3")
    with pytest.raises(ValueError, match=r"odd fiber; got shape \(1, 2, 4, 4, 4, 4\); "
                                         r"SO\(3\)/O\(3\) fields .* need group='so3' or 'o3'"):
        EF.norm_max_pool3d(_x(gen, (1, 2, 4, 4, 4, 4)), 2)
    with pytest.raises(ValueError, match=r"group='oh' has no harmonic fields"):
        enn.NormMaxPool(2, group="oh")
    with pytest.raises(ValueError, match=r"kernel_size=\(2, 2\) must be an int or three ints"):
        enn.NormMaxPool((2, 2), group="so3")
    with pytest.raises(ValueError, match=r"NormMaxPool\(\) expects a 5-D harmonic field.*"
                                         r"spatial_dims=3"):
        enn.NormMaxPool(2)(_x(gen, (1, 2, 5, 4, 4, 4)))
    with pytest.raises(ValueError, match=r"depth 1 \(\+ padding 2 x 0\) is smaller than the "
                                         r"pooling window \(2\)"):
        EF.norm_max_pool3d(_x(gen, (1, 2, 4, 1, 4, 4)), 2, group="so3")


def test_check_grid_reads_its_windows():
    """check_grid on volumes judges NormMaxPool by its windows, as nn.MaxPool3d's."""
    pool = nn.Sequential(enn.NormMaxPool(3, 2, 1, group="so3"))
    parity = [f for f in check_grid(pool, (1, 2, 4, 8, 8, 8), "o")
              if f.problem == "stride-parity"]
    assert len(parity) == 1 and parity[0].kind == "NormMaxPool" and "size of 9" in parity[0].fix
    assert not [f for f in check_grid(pool, (1, 2, 4, 9, 9, 9), "o")
                if f.breaks == "rotations"]
    net = UNet3d(2, 3, group="so3", depth=2, width=1, down="max")
    assert check_grid(net, (1, 2, 8, 8, 8), "o") == []
