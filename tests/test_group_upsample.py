"""GroupUpsample2d/3d, group_upsample2d/3d: every channel and slot interpolated alone (against
``F.interpolate`` slot by slot, and against the pitfall ``nn.Upsample`` on a 5-D map),
module == functional, layouts, gradients, refusals. The rot90/flip and cube cases with their
negative control are in the shared case table (``equilayers.testing._cases_upsample``);
escnn's ``R2Upsampling`` / ``R3Upsampling`` conversions in ``test_escnn_migration.py``."""

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import equilayers
from equilayers.functional import group_upsample2d, group_upsample3d
from equilayers.nn import GroupConv2d, GroupUpsample2d, GroupUpsample3d

_MODES2 = [("nearest", None), ("nearest-exact", None), ("bilinear", False), ("bilinear", True),
           ("bicubic", False)]


@pytest.mark.parametrize("mode,align", _MODES2)
@pytest.mark.parametrize("kw", [dict(scale_factor=2), dict(scale_factor=3), dict(size=(7, 4))])
def test_every_slot_alone_2d(mode, align, kw, gen):
    x = torch.randn(2, 3, 4, 5, 6, generator=gen, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (size=(7, 4) in nearest: a group map's warning)
        got = GroupUpsample2d(**kw, mode=mode, align_corners=align)(x)
    for f in range(4):
        want = F.interpolate(x[:, :, f], **kw, mode=mode, align_corners=align)
        torch.testing.assert_close(got[:, :, f], want, rtol=0, atol=1e-14)  # (rounding)
    image = x[:, :, 0]
    torch.testing.assert_close(group_upsample2d(image, **kw, mode=mode, align_corners=align),
                               F.interpolate(image, **kw, mode=mode, align_corners=align),
                               rtol=0, atol=0)


@pytest.mark.parametrize("mode,align", [("nearest", None), ("trilinear", False),
                                        ("trilinear", True)])
def test_every_slot_alone_3d(mode, align, gen):
    x = torch.randn(1, 2, 24, 3, 4, 2, generator=gen, dtype=torch.float64)
    got = GroupUpsample3d(scale_factor=2, mode=mode, align_corners=align)(x)
    assert got.shape == (1, 2, 24, 6, 8, 4)
    for f in (0, 5, 23):
        want = F.interpolate(x[:, :, f], scale_factor=2, mode=mode, align_corners=align)
        torch.testing.assert_close(got[:, :, f], want, rtol=0, atol=1e-14)
    volume = x[:, :, 0]
    torch.testing.assert_close(group_upsample3d(volume, size=5, mode=mode,
                                                align_corners=align),
                               F.interpolate(volume, size=5, mode=mode, align_corners=align))


@pytest.mark.parametrize("factor", [41, 97])
def test_nearest_at_an_integer_factor_copies_each_pixel(factor, gen):
    """``"nearest"`` with an integer ``scale_factor`` copies each pixel ``s x s`` times, so a
    rot90/flip of the input is the same of the output (float32, p4m map). torch's own
    ``"nearest"`` misses the copy at some factors (41: 488 of 15,129 samples of a 3 x 3 input;
    the control) and the docs promise exactness in every mode."""
    x = torch.randn(1, 2, 8, 3, 3, generator=gen)
    want = x.repeat_interleave(factor, -1).repeat_interleave(factor, -2)
    assert not torch.equal(F.interpolate(x[:, :, 0], scale_factor=factor), want[:, :, 0])
    assert torch.equal(GroupUpsample2d(scale_factor=factor)(x), want)
    assert torch.equal(group_upsample2d(x[:, :, 0], scale_factor=factor), want[:, :, 0])
    # check_grid reads the same law: no finding here, torch's own nn.Upsample is flagged
    assert equilayers.check_grid(nn.Sequential(GroupUpsample2d(scale_factor=factor)),
                                 (1, 2, 8, 3, 3), group="p4m") == []
    assert [f.problem for f in equilayers.check_grid(
        nn.Sequential(nn.Upsample(scale_factor=factor)), (1, 2, 3, 3), group="p4m")] == [
        "upsample-size"]
    v = torch.randn(1, 2, 3, 1, 2, generator=gen)
    assert torch.equal(group_upsample3d(v, scale_factor=factor),
                       v.repeat_interleave(factor, -1).repeat_interleave(factor, -2)
                       .repeat_interleave(factor, -3))
    # a size that is an integer multiple of the input's is the same copy, in both modes (the
    # warning names such sizes as its fix), and check_grid finds nothing there
    for mode in ("nearest", "nearest-exact"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert torch.equal(GroupUpsample2d(size=3 * factor, mode=mode)(x), want)
        assert torch.equal(group_upsample3d(v, size=(3 * factor, factor, 2 * factor),
                                            mode=mode),
                           v.repeat_interleave(factor, -1).repeat_interleave(factor, -2)
                           .repeat_interleave(factor, -3))
        assert equilayers.check_grid(nn.Sequential(GroupUpsample2d(size=3 * factor, mode=mode)),
                                     (1, 2, 8, 3, 3), group="p4m") == []


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_copies_keep_the_layout_and_export_with_the_legacy_onnx_exporter(layout, gen):
    """The integer-ratio copy keeps a channels_last input's layout (as ``F.interpolate``), and
    the legacy ONNX exporter (``dynamo=False``, static shapes) takes it: ``"nearest-exact"``,
    an earlier fix, has no legacy ONNX symbolic (``aten::_upsample_nearest_exact2d``)."""
    x = torch.randn(2, 3, 5, 4, generator=gen)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    y = GroupUpsample2d(scale_factor=2)(x)
    assert torch.equal(y, F.interpolate(x, scale_factor=2))
    assert y.is_contiguous(memory_format=torch.channels_last) == (layout == "channels_last")
    pytest.importorskip("onnx", reason="ONNX checks need the 'export' extra (onnx)")
    ort = pytest.importorskip("onnxruntime", reason="ONNX checks need onnxruntime")
    import io
    buf = io.BytesIO()
    m = GroupUpsample2d(scale_factor=2).eval()
    g = torch.randn(1, 2, 4, 3, 3, generator=gen)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (the legacy exporter's deprecation notice)
        torch.onnx.export(m, (g,), buf, dynamo=False)
    sess = ort.InferenceSession(buf.getvalue())
    (got,) = sess.run(None, {sess.get_inputs()[0].name: g.numpy()})
    torch.testing.assert_close(torch.from_numpy(got), m(g), rtol=0, atol=0)


def test_the_pitfall_it_avoids(gen):
    """The control: ``nn.Upsample`` on a 5-D group map takes the fiber for a spatial dim."""
    x = torch.randn(2, 3, 4, 5, 5, generator=gen)
    assert nn.Upsample(scale_factor=2)(x).shape == (2, 3, 8, 10, 10)
    assert GroupUpsample2d(scale_factor=2)(x).shape == (2, 3, 4, 10, 10)


def test_module_equals_functional_layouts_and_gradients(gen):
    x = torch.randn(2, 3, 6, 7, generator=gen, dtype=torch.float64)
    m = GroupUpsample2d(scale_factor=2, mode="bilinear")
    want = group_upsample2d(x, scale_factor=2, mode="bilinear")
    torch.testing.assert_close(m(x), want, rtol=0, atol=0)
    cl = m(x.contiguous(memory_format=torch.channels_last))
    assert cl.is_contiguous(memory_format=torch.channels_last)  # as nn.Upsample keeps it
    torch.testing.assert_close(cl, want)
    torch.testing.assert_close(m(x.transpose(-1, -2).contiguous().transpose(-1, -2)), want)
    g = torch.randn(2, 2, 4, 3, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(GroupUpsample2d(scale_factor=2, mode="bicubic"), (g,))


def test_repr():
    assert repr(GroupUpsample2d(scale_factor=2)) == (
        "GroupUpsample2d(scale_factor=2, mode='nearest')")
    assert repr(GroupUpsample3d(size=4, mode="trilinear", align_corners=True)) == (
        "GroupUpsample3d(size=(4, 4, 4), mode='trilinear', align_corners=True)")


@pytest.mark.parametrize("kwargs,error,needle", [
    (dict(), ValueError, "exactly one of size and scale_factor"),
    (dict(size=4, scale_factor=2), ValueError, "exactly one of size and scale_factor"),
    (dict(scale_factor=1.5), TypeError, "for another output size pass size="),
    (dict(scale_factor=2, align_corners=True), ValueError, "needs an interpolating mode"),
    (dict(scale_factor=2, mode="trilinear"), ValueError, "'bilinear'"),
    (dict(size=(4, 4, 4)), TypeError, "a pair of integers")])
def test_refusals_name_the_argument_and_the_fix(kwargs, error, needle):
    with pytest.raises(error, match="GroupUpsample2d") as err:
        GroupUpsample2d(**kwargs)
    assert needle in str(err.value)
    GroupUpsample2d(scale_factor=2, mode="bilinear", align_corners=True)  # the control


def test_refuses_other_ranks():
    with pytest.raises(ValueError, match=r"\(B, C, H, W\) or a group feature map"):
        group_upsample2d(torch.randn(2, 3, 4, 5, 5, 5), scale_factor=2)
    with pytest.raises(ValueError, match=r"\(B, C, D, H, W\) or a group feature map"):
        group_upsample3d(torch.randn(2, 3, 5, 5), scale_factor=2)


@pytest.mark.parametrize("mode,exact", [("nearest", True), ("bilinear", False),
                                        ("bicubic", False)])
def test_circular_shifts_and_check_grid_agree(mode, exact, gen):
    """A circular shift by 1 becomes one by ``scale_factor``: exactly in the nearest modes
    (pixels copied), not at the clamped border of the interpolating ones, where check_grid
    reports it (and nothing without shifts)."""
    model = nn.Sequential(GroupConv2d(2, 2, 3, padding=1, padding_mode="circular", group="p4"),
                          GroupUpsample2d(scale_factor=2, mode=mode)).double()
    x = torch.randn(1, 2, 4, 8, 8, generator=gen, dtype=torch.float64)
    err = (model(torch.roll(x, 1, -1)) - torch.roll(model(x), 2, -1)).abs().max().item()
    found = equilayers.check_grid(model, (1, 2, 4, 8, 8))
    assert (err < 1e-12) == exact and (found == []) == exact, (err, found)
    assert equilayers.check_grid(model, (1, 2, 4, 8, 8), shifts=False) == []


def test_an_inexact_size_warns_once_on_a_group_map(gen):
    """GroupUpsample3d(size=8) on a 5^3 o-map (nearest) was 5.2 off over the 24 rotations
    with no warning; an integer ratio, an image and a depth-only change are quiet."""
    from equilayers.testing import equivariance_error

    x = torch.randn(1, 1, 24, 5, 5, 5, generator=gen, dtype=torch.float64)
    up = GroupUpsample3d(size=8)
    with pytest.warns(UserWarning,
                      match=r"GroupUpsample3d\(size=\(8, 8, 8\).*'nearest' from 5 to 8 "):
        assert equivariance_error(up, x, "o") > 0.1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        up(x)  # once per module
        assert equivariance_error(GroupUpsample3d(size=10), x, "o") < 1e-12
        GroupUpsample3d(size=8)(x[:, :, 0])  # a volume of no group
        GroupUpsample3d(size=(7, 10, 10))(x)  # the depth: c4z keeps it (check_grid's call)
    with pytest.warns(UserWarning, match=r"height and width, which a rotation swaps, "
                      r"different output sizes \(10 and 15\)"):
        GroupUpsample2d(size=(10, 15))(x[:, :, :4, 0])
