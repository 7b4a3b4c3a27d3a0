"""The 3-D group convs' checks: errors named, the inexact-grid warning (once, and not skipped
by the input memo), input checks skipped only for a like input, an input dtype other than the
module's named (autocast and mixed-precision batch norm allowed)."""

from __future__ import annotations

import pytest
import torch

import equilayers.functional as EF
import equilayers.nn as enn


def test_errors_are_named(gen):
    lift = enn.LiftingConv3d(2, 3, 3, group="c4z")
    with pytest.raises(ValueError, match=r"C_in=2 channels.*\(1, 3, 5, 5, 5\)"):
        lift(torch.randn(1, 3, 5, 5, 5))
    with pytest.raises(ValueError, match="5-D"):
        lift(torch.randn(1, 2, 4, 5, 5, 5))
    conv = enn.GroupConv3d(2, 3, 3, group="o")
    with pytest.raises(ValueError, match=r"\|G\|=24 slots"):
        conv(torch.randn(1, 2, 4, 5, 5, 5))
    with pytest.raises(ValueError, match="'o', 'oh', 'c4z', 'd4z'"):
        enn.GroupConv3d(2, 3, 3, group="p4")
    with pytest.raises(ValueError, match="kernel_size=.* must be cubic"):
        enn.LiftingConv3d(2, 3, (3, 3, 1), group="o")
    with pytest.raises(ValueError, match="groups=2 must divide"):
        enn.LiftingConv3d(3, 4, 3, groups=2, group="o")
    with pytest.raises(ValueError, match="LiftingConv3d"):
        enn.LiftingConv2d(2, 3, 3, group="o")
    with pytest.raises(ValueError, match="group_conv3d"):
        EF.lifting_conv2d(torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3), group="oh")
    with pytest.raises(ValueError, match="smaller than the dilated kernel"):
        lift(torch.randn(1, 2, 2, 2, 2))


def test_so3_and_o3_are_sent_to_the_steerable_convs():
    """SO(3)/O(3) have harmonic, not regular, fields: every group conv that refuses them names
    SteerableConv3d (SteerableConvTranspose3d for a transposed conv), which takes them; the
    cube's groups keep the 3-D group convs' fix (they used to point SO(3) users at GroupConv3d,
    which refuses SO(3), and the transposed 2-D convs said no SO(3) one existed)."""
    for cls in (enn.GroupConv3d, enn.LiftingConv3d, enn.GroupConvTranspose3d):
        with pytest.raises(ValueError, match=r"group='so3' is continuous.*use SteerableConv3d "
                                             r"/ steerable_conv3d \(SteerableConvTranspose3d"):
            cls(2, 3, 3, group="so3")
    for cls, steer in ((enn.LiftingConv2d, "SteerableConv3d"),
                       (enn.GroupConvTranspose2d, "SteerableConvTranspose3d")):
        with pytest.raises(ValueError, match=rf"group='o3' acts on volumes: its harmonic fields "
                                             rf"take {steer}; use {cls.__name__[:-2]}3d"):
            cls(2, 3, 3, group="o3")
        with pytest.raises(ValueError, match=rf"group='oh' acts on volumes: use "
                                             rf"{cls.__name__[:-2]}3d for the cube's groups"):
            cls(2, 3, 3, group="oh")
    with pytest.raises(ValueError, match=r"'so3' acts on volumes.*take steerable_conv3d"):
        EF.lifting_conv2d(torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3), group="so3")


@pytest.mark.parametrize("call", ["lifting_conv3d", "group_conv3d", "steerable_conv3d"])
def test_functional_same_padding_needs_stride_one_as_the_modules(call, gen):
    """The 3-D functionals refuse ``padding="same"`` with a stride, as their modules and
    ``F.conv3d`` do (they used to pad as for stride 1 and subsample); control: stride 1."""
    vol = torch.randn(1, 2, 6, 6, 6, generator=gen)
    args: tuple
    kw: dict = {"group": "c4z"}
    if call == "lifting_conv3d":
        args = (vol, torch.randn(3, 2, 3, 3, 3, generator=gen))
    elif call == "group_conv3d":
        args = (torch.randn(1, 2, 4, 6, 6, 6, generator=gen),
                torch.randn(3, 2, 4, 3, 3, 3, generator=gen))
    else:
        basis = EF.steerable_basis3d("so3", 3, out_order=1)
        args, kw = (vol, torch.randn(4, 2, basis.shape[0], generator=gen), basis), {}
    fn = getattr(EF, call)
    assert fn(*args, padding="same", **kw).shape[-3:] == (6, 6, 6)
    with pytest.raises(ValueError, match=rf"{call}: padding='same' needs stride=1 \(as "
                                         r"nn.Conv3d\); got stride=\(2, 2, 2\)"):
        fn(*args, stride=2, padding="same", **kw)
    assert fn(*args, stride=2, padding=1, **kw).shape[-3:] == (3, 3, 3)


def test_inexact_grid_warns_once(gen):
    conv = enn.LiftingConv3d(1, 1, 3, stride=2, padding=1, group="o")
    with pytest.warns(UserWarning, match="stride 2 does not tile"):
        conv(torch.randn(1, 1, 6, 6, 6))
    assert conv._warned
    c4 = enn.LiftingConv3d(1, 1, 3, padding=1, group="c4z")
    c4(torch.randn(1, 1, 4, 5, 5))  # the depth is never traded by c4z: no warning
    assert not c4._warned
    # o trades all three dims: their options must agree, their sizes need not
    assert EF.exactness_problems3d("o", (5, 5, 7), 3, 1, (1,) * 6, 1) == []
    assert EF.exactness_problems3d("o", (5, 5, 7), 3, 1, (1, 1, 1, 1, 0, 0), 1)


def test_exactness_warning_is_not_skipped_by_the_input_memo(gen):
    """The input checks and the exactness warning share one memo: a call under
    ``quiet_exactness_warnings`` settles nothing (the next call with the same input still
    warns), and a stride changed after an exact call is checked again (the key holds it).
    The warning points at the forward's caller."""
    from equilayers.nn._exactness import quiet_exactness_warnings

    conv = enn.LiftingConv3d(1, 1, 3, stride=2, padding=1, group="o")
    x = torch.randn(1, 1, 6, 6, 6, generator=gen)
    with quiet_exactness_warnings():
        conv(x)
    with pytest.warns(UserWarning, match="stride 2 does not tile") as caught:
        conv(x)
    assert caught[0].filename == __file__
    for exact in (enn.LiftingConv3d(1, 1, 3, padding=1, group="o"),
                  enn.SteerableConv3d(1, 1, 3, padding=1, max_order=1)):
        exact(x)
        exact.stride = (2, 2, 2)
        with pytest.warns(UserWarning, match="stride 2 does not tile"):
            exact(x)


def test_input_checks_are_skipped_only_for_a_like_input(gen):
    """The 3-D convs skip their input checks for an input like the last checked one; the key
    holds everything the checks read, so a different input, a changed option or a weight
    moved to the meta device after a good call is still refused by name (a memo keyed on the
    shape alone passes the padding-mode and meta cases below to F.pad / F.conv3d)."""
    conv = enn.GroupConv3d(2, 3, 3, padding=1, group="c4z")
    x = torch.randn(1, 2, 4, 5, 5, 5, generator=gen)
    conv(x)
    conv(x)  # the memo's path
    with pytest.raises(ValueError, match=r"C_in=2 channels"):
        conv(torch.randn(1, 3, 4, 5, 5, 5, generator=gen))
    with pytest.raises(ValueError, match=r"\|G\|=4 slots"):
        conv(torch.randn(1, 2, 3, 5, 5, 5, generator=gen))
    with pytest.raises(TypeError, match="x"):
        conv(x.to(torch.int64))
    conv(x)
    conv.padding_mode, conv.padding = "reflect", 5
    with pytest.raises(ValueError, match="padding_mode='reflect' needs padding < the input"):
        conv(x)
    conv.padding_mode, conv.padding = "zeros", 1
    conv(x)
    conv.to_empty(device="meta")
    with pytest.raises(RuntimeError, match="meta device; materialize"):
        conv(x)


_DTYPE_MODULES = {
    "LiftingConv3d": (lambda: enn.LiftingConv3d(2, 2, 3, padding=1, group="c4z"), (1, 2, 5, 5, 5)),
    "GroupConv3d[harmonic]": (lambda: enn.GroupConv3d(2, 2, 3, padding=1, group="c4z",
                                                      basis="harmonic"), (1, 2, 4, 5, 5, 5)),
    "SteerableConv3d": (lambda: enn.SteerableConv3d(2, 2, 3, padding=1, in_max_order=1,
                                                    max_order=1), (1, 2, 4, 5, 5, 5)),
    "GroupBatchNorm3d": (lambda: enn.GroupBatchNorm3d(2), (2, 2, 4, 3, 3, 3)),
}


@pytest.mark.parametrize("name", sorted(_DTYPE_MODULES))
def test_input_of_another_dtype_than_the_module_is_named(name, gen):
    """A float64 input to a float32 module (and the reverse, also after the input memo has
    passed a float32 input) gets a TypeError naming both dtypes and both conversions, as an
    integer input gets one; torch's own errors ("Input type (double) and bias type (float)",
    "mixed dtype (CPU)", "expected scalar type Double") named neither the module nor the fix."""
    make, shape = _DTYPE_MODULES[name]
    m = make()
    x = torch.randn(shape, generator=gen)
    with pytest.raises(TypeError, match=rf"^{name.split('[')[0]}: x has dtype torch.float64, "
                                        r"but the module's parameters are torch.float32; "
                                        r"convert the input \(x.float\(\)\) or the module "
                                        r"\(module.double\(\)\)$"):
        m(x.double())
    m(x)  # passes the checks (and fills the input memo of the convs)
    m.double()
    with pytest.raises(TypeError, match=r"x has dtype torch.float32, but the module's "
                                        r"parameters are torch.float64; convert the input "
                                        r"\(x.double\(\)\) or the module \(module.float\(\)\)"):
        m(x)
    assert m(x.double()).dtype == torch.float64


def test_dtype_check_allows_autocast_and_batch_norm_mixed_precision(gen):
    """Under torch.autocast for the input's device a bfloat16 map may reach float32 convs (the
    autocast casts them), and a group batch norm takes a float16/bfloat16 input with float32
    parameters as nn.BatchNorm3d does; outside autocast the conv refuses it (the control)."""
    conv = enn.GroupConv3d(2, 2, 3, padding=1, group="c4z")
    x = torch.randn(1, 2, 4, 5, 5, 5, generator=gen).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert conv(x).dtype == torch.bfloat16
    with pytest.raises(TypeError, match="x has dtype torch.bfloat16"):
        conv(x)
    bn = enn.GroupBatchNorm3d(2)
    for dtype in (torch.float16, torch.bfloat16):
        assert bn(x.to(dtype)).dtype == dtype
    with pytest.raises(TypeError, match=r"x has dtype torch.float16, but the module's "
                                        r"parameters are torch.float64"):
        bn.double()(x.half())


def test_a_box_kernel_on_c4z_gets_a_true_reason_and_the_layer_that_takes_it():
    """c4z/d4z never move the depth, so 'the rotations move the kernel's axes into each
    other' was false for them; the message says the bases are cubic and names the axial
    layer. The cube's other groups keep the rotation reason (the control)."""
    import equilayers.nn as enn

    with pytest.raises(ValueError, match=r"bases are built on cubes.*SteerableConv3d"):
        enn.GroupConv3d(1, 1, (1, 3, 3), group="c4z")
    with pytest.raises(ValueError, match="the rotations move the kernel's axes"):
        enn.LiftingConv3d(1, 1, (1, 3, 3), group="o")
    enn.SteerableConv3d(1, 1, (1, 3, 3), group="c4", max_order=1)  # the layer named: it takes it


@pytest.mark.parametrize("group", ["so3", "so2"])
def test_a_steerable_volume_conv_warning_points_at_the_call(group, gen):
    """SteerableConv3d's exactness warning pointed into torch's module.py (stacklevel 3), so
    every such warning shared one location under the default filters."""
    conv = enn.SteerableConv3d(1, 1, 3, stride=2, padding=1, group=group, max_order=1)
    with pytest.warns(UserWarning, match="not exactly equivariant") as caught:
        conv(torch.randn(1, 1, 6, 6, 6, generator=gen))
    assert caught[0].filename == __file__
