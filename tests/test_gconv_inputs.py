"""LiftingConv2d / GroupConv2d and their functionals: bad arguments and bad inputs are named
(unbatched samples, dtypes, strides, devices, filters, groups), the input-check memo, and
padding set after construction."""

import numpy as np
import pytest
import torch
from conftest import seeded_rng

import equilayers.functional as EF
import equilayers.nn as enn
from equilayers.nn import GroupConv2d, LiftingConv2d


@pytest.mark.parametrize("kwargs,match", [
    (dict(group="c8", basis="pixel"),
     r"group 'c8' has rotations off the pixel grid.*basis='harmonic'.*groups: c1, c2, c4"),
    (dict(group="so2"), r"group='so2' is continuous.*pass max_order=M"),
    (dict(group="so2", max_order=-1), r"GroupConv2d: max_order=-1 must be an integer >= 0"),
    (dict(group="p4", basis="pixel", max_order=2),
     r"max_order=2 asks for harmonic fields.*basis='harmonic'"),
    (dict(group="c8", in_max_order=2), r"in_max_order=2 needs harmonic output.*max_order=M"),
    # a pixel group, no basis passed: the same message (it had blamed a basis='pixel' that
    # the user never passed, whose fix then raised this one)
    (dict(group="p4", in_max_order=1), r"in_max_order=1 needs harmonic output.*max_order=M"),
    (dict(group="p4", basis="pixel", in_max_order=1),
     r"in_max_order=1 asks for harmonic fields, but basis='pixel'"),
    (dict(group="p5"), "unknown group='p5'"),
    (dict(groups=3), "groups=3 must divide in_channels=4"),
    (dict(kernel_size=(3, 5)), r"kernel_size=\(3, 5\) must be square \(k, k\)"),
    (dict(padding_mode="mirror"), "padding_mode='mirror' must be one of"),
    (dict(padding="full"), "padding='full' must be an int, a pair, 'same' or 'valid'"),
    (dict(padding="same", stride=2), "padding='same' needs stride=1"),
    (dict(basis="fourier"), "unknown basis 'fourier'.*'pixel'.*'harmonic'"),
    (dict(in_channels=0), "in_channels=0 must be an integer >= 1"),
])
def test_bad_arguments(kwargs, match):
    args = dict(in_channels=4, out_channels=6, kernel_size=3)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        GroupConv2d(**args)


@pytest.mark.parametrize("cls", ["GroupConv2d", "LiftingConv2d", "SteerableConv3d"])
def test_a_non_integer_order_is_a_type_error_on_images_and_volumes(cls):
    """``max_order=1.5`` is a ``TypeError`` naming the value, on the planar convs as on the
    3-D ones (the planar convs re-worded it as a ``ValueError``); control: ``-1`` is a
    ``ValueError`` (a value out of range) and ``1`` builds."""
    conv = getattr(enn, cls)
    kw = {} if cls == "SteerableConv3d" else {"group": "so2"}
    with pytest.raises(TypeError, match=rf"{cls}: max_order=1.5 must be an integer >= 0"):
        conv(2, 2, 3, max_order=1.5, **kw)
    with pytest.raises(ValueError, match=rf"{cls}: max_order=-1 must be an integer >= 0"):
        conv(2, 2, 3, max_order=-1, **kw)
    assert conv(2, 2, 3, max_order=1, **kw).max_order == 1


@pytest.mark.parametrize("cls", [GroupConv2d, LiftingConv2d])
def test_numpy_channel_counts_are_sizes(cls):
    """``in_channels``/``out_channels``/``groups`` read off an array (numpy integers) are
    accepted as by ``nn.Conv2d`` and every other size argument (they were refused as "not a
    positive int", so UNet(np.int64(2), ...) failed); a float is a TypeError."""
    with seeded_rng(0):
        a = cls(np.int64(4), np.int32(6), 3, groups=np.int64(2))
    with seeded_rng(0):
        b = cls(4, 6, 3, groups=2)
    assert (type(a.in_channels), a.out_channels, a.groups) == (int, 6, 2)
    torch.testing.assert_close(a.weight, b.weight)
    with pytest.raises(TypeError, match=r"in_channels=4.0 must be an integer >= 1"):
        cls(4.0, 6, 3)


@pytest.mark.parametrize("cls", [GroupConv2d, LiftingConv2d])
def test_bias_must_be_a_bool(cls):
    """``bias=0`` or ``bias=None`` is not read as ``False`` behind the user's back."""
    for bias in (0, None, "True"):
        with pytest.raises(TypeError, match=rf"{cls.__name__}: bias={bias!r} must be True or "
                                            "False"):
            cls(4, 6, 3, bias=bias)


def test_bad_inputs(gen):
    conv = GroupConv2d(4, 2, 3, group="p4")
    with pytest.raises(ValueError, match=r"expects 5-D .* got shape \(2, 4, 9, 9\).*Lifting"):
        conv(torch.randn(2, 4, 9, 9))
    with pytest.raises(ValueError, match=r"C_in=4 channels.*\(2, 3, 4, 9, 9\)"):
        conv(torch.randn(2, 3, 4, 9, 9))
    with pytest.raises(ValueError, match=r"\|G\|=4 slots.*\(2, 4, 8, 9, 9\)"):
        conv(torch.randn(2, 4, 8, 9, 9))
    with pytest.raises(ValueError, match="expects 4-D"):
        LiftingConv2d(3, 2, 3)(torch.randn(2, 3, 4, 9, 9))
    with pytest.raises(ValueError, match="C_in=3 channels"):
        LiftingConv2d(3, 2, 3)(torch.randn(2, 4, 9, 9))


UNBATCHED = r"one unbatched sample\? .* pass x.unsqueeze\(0\) and take y\[0\]"


@pytest.mark.parametrize("make,shape", [
    (lambda: LiftingConv2d(3, 2, 3, group="p4"), (3, 9, 9)),
    (lambda: GroupConv2d(3, 2, 3, group="p4m"), (3, 8, 9, 9)),
    (lambda: GroupConv2d(3, 2, 3, group="so2", max_order=2), (3, 5, 9, 9)),
    (lambda: enn.GroupConvTranspose2d(3, 2, 3, group="p4"), (3, 4, 9, 9)),
    (lambda: enn.ExpandedGroupConv2d(3, 2, 3, group="p4"), (3, 4, 9, 9)),
    (lambda: enn.LiftingConv3d(3, 2, 3, group="o"), (3, 5, 5, 5)),
    (lambda: enn.GroupConv3d(3, 2, 3, group="c4z"), (3, 4, 5, 5, 5)),
    (lambda: enn.InvariantHead(3, 5, group="p4"), (3, 4, 9, 9))])
def test_an_unbatched_sample_is_named(make, shape):
    """torch's convs take one sample without a batch dim; ours need it, and the error says so
    (it named the lifting/group conv mix-up instead, the wrong fix). A batch of images given to
    a group conv keeps that hint."""
    with pytest.raises(ValueError, match=UNBATCHED):
        make()(torch.randn(shape))
    with pytest.raises(ValueError) as caught:
        make()(torch.randn(2, *shape[1:]))
    assert "unbatched" not in str(caught.value)


@pytest.mark.parametrize("make,shape", [
    (lambda: GroupConv2d(3, 2, 3, group="p4m"), (3, 4, 9, 9)),
    (lambda: GroupConv2d(3, 2, 3, group="so2", max_order=2), (3, 3, 9, 9)),
    (lambda: enn.GroupConvTranspose2d(3, 2, 3, group="p4"), (3, 2, 9, 9)),
    (lambda: enn.ExpandedGroupConv2d(3, 2, 3, group="p4"), (3, 2, 9, 9)),
    (lambda: enn.GroupConv3d(3, 2, 3, group="c4z"), (3, 2, 5, 5, 5)),
    (lambda: enn.InvariantHead(3, 5, group="p4"), (3, 2, 9, 9))])
def test_a_batch_whose_dim_1_is_not_the_fiber_is_not_called_unbatched(make, shape):
    """A rank short by one with C_in in dim 0 is one unbatched sample only when dim 1 is the
    fiber too: a batch of 3 images of 4 channels given to GroupConv2d(3, ..., 'p4m') (8
    slots) is the lifting/group mix-up, and the message keeps that hint, not the unbatched
    one. The control: with the fiber in dim 1 it is the unbatched hint."""
    with pytest.raises(ValueError) as caught:
        make()(torch.randn(shape))
    assert "unbatched" not in str(caught.value)
    fiber = {"GroupConv2d": None, "GroupConvTranspose2d": 4, "ExpandedGroupConv2d": 4,
             "GroupConv3d": 4, "InvariantHead": 4}
    m = make()
    f = fiber[type(m).__name__] or (8 if m.group.name == "d4" else 5)
    with pytest.raises(ValueError, match=UNBATCHED):
        m(torch.randn(shape[0], f, *shape[2:]))


def test_input_checks_are_skipped_only_for_a_like_input():
    """The planar group convs skip their input checks (and the window checks of the conv
    helper) for an input like the last checked one; the key holds everything they read, so a
    different input, a changed option or a weight moved to the meta device after a good call is
    still refused by name (a memo keyed on the shape alone lets the dtype, padding-mode and meta
    cases below through to torch)."""
    gen = torch.Generator().manual_seed(0)
    conv = GroupConv2d(2, 3, 3, padding=1, group="p4")
    x = torch.randn(1, 2, 4, 5, 5, generator=gen)
    conv(x)
    conv(x)  # the memo's path
    with pytest.raises(ValueError, match=r"C_in=2 channels"):
        conv(torch.randn(1, 3, 4, 5, 5, generator=gen))
    with pytest.raises(ValueError, match=r"\|G\|=4 slots"):
        conv(torch.randn(1, 2, 3, 5, 5, generator=gen))
    with pytest.raises(TypeError, match="x"):
        conv(x.to(torch.int64))
    conv(x)
    conv.padding_mode, conv.padding = "reflect", 5
    with pytest.raises(ValueError, match="padding_mode='reflect' with padding"):
        conv(x)
    conv.padding_mode, conv.padding = "zeros", 0
    with pytest.raises(ValueError, match="smaller than the kernel's window"):
        conv(torch.randn(1, 2, 4, 2, 2, generator=gen))
    conv(x)
    conv.to_empty(device="meta")
    with pytest.raises(RuntimeError, match="meta device"):
        conv(x)


@pytest.mark.parametrize("make, x_shape", [
    (lambda: GroupConv2d(2, 2, 3, padding=1, group="p4"), (1, 2, 4, 9, 9)),
    (lambda: LiftingConv2d(2, 2, 5, padding="same", group="so2", max_order=1), (1, 2, 9, 9)),
    (lambda: enn.GroupConvTranspose2d(2, 2, 3, stride=2, padding=1, group="p4"),
     (1, 2, 4, 5, 5)),
])
def test_padding_set_after_construction_takes_effect(make, x_shape, gen):
    """As on ``nn.Conv2d``, ``conv.padding = p`` takes effect at the next call (model surgery
    does this); before, the padding resolved at construction was kept, and the repr then
    showed the new value. The reference: a module built with that padding (same weights)."""
    conv = make().eval()
    x = torch.randn(x_shape, generator=gen)
    conv(x)  # a call first: nothing kept from it may survive the change
    conv.padding = 0
    fresh = type(conv)(**{**_ctor_args(conv), "padding": 0}).eval()
    fresh.load_state_dict(conv.state_dict())
    torch.testing.assert_close(conv(x), fresh(x), rtol=0, atol=0)
    assert conv(x).shape != make()(x).shape  # the control: the padding changes the shape
    with pytest.raises(ValueError, match=r"padding='same' needs stride=1"):
        GroupConv2d(2, 2, 3, stride=2, group="p4").padding = "same"
    with pytest.raises(ValueError, match=r"GroupConv2d: padding='full' must be"):
        GroupConv2d(2, 2, 3, group="p4").padding = "full"


@pytest.mark.parametrize("make, x_shape", [
    (lambda: enn.GroupConv3d(2, 2, 3, padding=1, group="c4z"), (1, 2, 4, 7, 7, 7)),
    (lambda: enn.LiftingConv3d(2, 2, 3, padding=1, group="o"), (1, 2, 7, 7, 7)),
    (lambda: enn.SteerableConv3d(2, 2, 3, padding=1, group="so3", max_order=1),
     (1, 2, 7, 7, 7)),
    (lambda: enn.GroupConvTranspose3d(2, 2, 3, stride=2, padding=1, group="c4z"),
     (1, 2, 4, 4, 4, 4)),
])
def test_a_volume_conv_follows_a_padding_set_after_construction(make, x_shape, gen):
    """The 3-D convs kept the padding resolved at construction: ``conv.padding = 0`` changed
    the repr and not the output (nn.Conv3d follows it)."""
    conv = make().eval()
    x = torch.randn(x_shape, generator=gen)
    before = conv(x)
    conv.padding = 0
    after = conv(x)
    assert after.shape[-1] == before.shape[-1] - 2 * (-1 if getattr(conv, "transposed", False)
                                                      else 1)
    assert "padding" not in repr(conv)
    conv.padding = 1
    torch.testing.assert_close(conv(x), before, rtol=0, atol=0)


@pytest.mark.parametrize("make, x_shape", [
    (lambda: GroupConv2d(2, 2, 3, padding="same", group="p4"), (1, 2, 4, 9, 9)),
    (lambda: LiftingConv2d(2, 2, 3, padding="same", group="so2", max_order=1), (1, 2, 9, 9)),
    (lambda: enn.GroupConv3d(2, 2, 3, padding="same", group="c4z"), (1, 2, 4, 7, 7, 7)),
    (lambda: enn.SteerableConv3d(2, 2, 3, padding="same", group="so3", max_order=1),
     (1, 2, 7, 7, 7)),
])
def test_same_padding_follows_a_dilation_or_stride_set_later(make, x_shape, gen):
    """``padding="same"`` was resolved once: a later ``dilation = 2`` shrank the output
    (9 -> 7) while the repr said 'same', a later stride 2 ran with the old numbers; as
    ``nn.Conv2d``, the size is kept, and a strided 'same' is refused at the call."""
    conv = make()
    x = torch.randn(x_shape, generator=gen)
    nd = len(conv.kernel_size)
    conv.dilation = (2,) * nd
    assert conv(x).shape[-nd:] == x.shape[-nd:]
    conv.stride = (2,) * nd
    with pytest.raises(ValueError, match=r"padding='same' needs stride=1"):
        conv(x)


def _ctor_args(conv) -> dict:
    kw = dict(in_channels=conv.in_channels, out_channels=conv.out_channels,
              kernel_size=conv.kernel_size[0], stride=conv.stride, group=conv.group.name)
    if conv.basis == "harmonic" and conv.max_order is not None:
        kw["max_order"] = conv.max_order
    return kw


@pytest.mark.parametrize("make, shape", [
    (lambda: enn.LiftingConv2d(2, 3, 3, group="p4"), (1, 2, 7, 7)),
    (lambda: enn.GroupConv2d(2, 3, 5, group="so2", max_order=1), (1, 2, 3, 7, 7)),
    (lambda: enn.GroupConvTranspose2d(2, 3, 3, group="p4m"), (1, 2, 8, 5, 5)),
    (lambda: enn.GroupConv3d(2, 3, 3, group="c4z"), (1, 2, 4, 5, 5, 5)),
])
def test_input_dtype_other_than_the_weights_is_named(make, shape):
    """A float64 input to a float32 module (and back) gets a TypeError naming the module, both
    dtypes and the fix, not torch's "Input type (double) and bias type (float)". Under
    autocast a float32/float16 input is cast (allowed); float64 never is. The control: the
    matching dtype runs, and the check is not skipped by the input-check memo."""
    conv = make()
    x = torch.randn(shape)
    conv(x)  # memoized for float32
    with pytest.raises(TypeError, match=rf"{type(conv).__name__}: x has dtype torch.float64, "
                                        r"but the module's parameters are torch.float32; "
                                        r"convert the input \(x.float\(\)\) or the module "
                                        r"\(module.double\(\)\)$"):
        conv(x.double())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert conv(x.half()).dtype == torch.bfloat16
        with pytest.raises(TypeError, match=r"float64"):
            conv(x.double())
    conv.double()
    with pytest.raises(TypeError, match=r"x has dtype torch.float32, but the module's "
                                        r"parameters are torch.float64"):
        conv(x)
    assert conv(x.double()).dtype == torch.float64


@pytest.mark.parametrize("make, shape", [
    (lambda: enn.InvariantHead(3, 5, group="p4"), (2, 3, 4, 5, 5)),
    (lambda: enn.BlurConv2d(3, 4, 3, stride=2, padding=1), (2, 3, 8, 8)),
    (lambda: enn.ExpandedGroupConv2d(3, 4, 3, group="c4"), (2, 3, 4, 7, 7)),
    (lambda: enn.GroupBatchNorm2d(3), (2, 3, 4, 5, 5)),
])
def test_other_modules_with_weights_name_a_dtype_mismatch(make, shape):
    """The same rule on the other modules that hold weights: the head, the blurred conv, the
    frozen expanded conv and the group batch norm (which, as nn.BatchNorm3d, also takes a
    float16/bfloat16 input with float32 parameters). The control: the matching dtype runs."""
    m = make()
    x = torch.randn(shape)
    m(x)
    with pytest.raises(TypeError, match=rf"{type(m).__name__}: x has dtype torch.float64, but "
                                        r"the module's parameters are torch.float32"):
        m(x.double())
    assert m.double()(x.double()).dtype == torch.float64


def test_functional_convs_check_stride_device_and_dtype_as_the_modules():
    """The functional group convs refuse what their modules refuse: padding='same' with a
    stride (it gave a smaller, not a 'same', output), a weight on another device (a meta
    weight ran on uninitialized memory and returned garbage on the CPU), a weight or bias of
    another dtype (torch's message from inside). The control: the matching call runs."""
    x, w = torch.randn(2, 3, 9, 9), torch.randn(6, 3, 3, 3)
    xg, wg = torch.randn(2, 3, 4, 9, 9), torch.randn(6, 3, 4, 3, 3)
    with pytest.raises(ValueError, match=r"lifting_conv2d: padding='same' needs stride=1"):
        EF.lifting_conv2d(x, w, stride=2, padding="same")
    with pytest.raises(ValueError, match=r"group_conv2d: padding='same' needs stride=1"):
        EF.group_conv2d(xg, wg, stride=2, padding="same")
    with pytest.raises(ValueError, match=r"lifting_conv2d: weight is on meta but x is on cpu"):
        EF.lifting_conv2d(x, w.to("meta"))
    with pytest.raises(TypeError, match=r"group_conv2d: x has dtype torch.float32, but weight "
                                        r"is torch.float64; convert the input \(x.double\(\)\) "
                                        r"or the weight \(weight.float\(\)\)"):
        EF.group_conv2d(xg, wg.double())
    with pytest.raises(TypeError, match=r"but bias is torch.float64.*bias.float\(\)"):
        EF.lifting_conv2d(x, w, torch.randn(6, dtype=torch.float64))
    assert EF.lifting_conv2d(x, w, padding="same").shape == (2, 6, 4, 9, 9)
    assert EF.group_conv2d(xg, wg, stride=2, padding=1).shape == (2, 6, 4, 5, 5)


def test_functional_convs_refuse_non_square_pixel_filters():
    """A pixel filter must be k x k: rotations map k x k onto itself. A (C_out, C_in, 5, 3)
    weight read as k=3 (its last dim) would gather the wrong entries with no error; (3, 5)
    would index past the weight. Both orientations, lifting and group, functional and
    expand_*_filter. The control: the square weight runs."""
    x, xg = torch.randn(1, 2, 9, 9), torch.randn(1, 2, 4, 9, 9)
    for shape in ((5, 3), (3, 5)):
        with pytest.raises(ValueError, match=r"lifting_conv2d: weight must have square filters"
                                             rf".*\(3, 2, {shape[0]}, {shape[1]}\)"):
            EF.lifting_conv2d(x, torch.randn(3, 2, *shape))
        with pytest.raises(ValueError, match=r"group_conv2d: weight must have square filters"):
            EF.group_conv2d(xg, torch.randn(3, 2, 4, *shape))
        with pytest.raises(ValueError,
                           match=r"expand_lifting_filter: weight must have square filters"):
            EF.expand_lifting_filter(torch.randn(3, 2, *shape))
        with pytest.raises(ValueError,
                           match=r"expand_group_filter: weight must have square filters"):
            EF.expand_group_filter(torch.randn(3, 2, 4, *shape))
    assert EF.lifting_conv2d(x, torch.randn(3, 2, 3, 3)).shape == (1, 3, 4, 7, 7)
    assert EF.group_conv2d(xg, torch.randn(3, 2, 4, 3, 3)).shape == (1, 3, 4, 7, 7)


def test_functional_convs_refuse_groups_that_split_an_output_field():
    """``groups`` must divide ``C_out`` (the fields), not only ``C_out * |G|`` (the slots
    F.conv2d sees): with 5 fields of p4 in 2 groups, F.conv2d accepts the 20 slots and field
    2's slots would read different input channels, so the field would not be a regular field
    (not equivariant), with no error. The control: 6 fields in 2 groups run."""
    x, xg = torch.randn(1, 4, 9, 9), torch.randn(1, 4, 4, 9, 9)
    with pytest.raises(ValueError, match=r"lifting_conv2d: groups=2 must divide C_out=5"):
        EF.lifting_conv2d(x, torch.randn(5, 2, 3, 3), groups=2)
    with pytest.raises(ValueError, match=r"group_conv2d: groups=2 must divide C_out=5"):
        EF.group_conv2d(xg, torch.randn(5, 2, 4, 3, 3), groups=2)
    assert EF.lifting_conv2d(x, torch.randn(6, 2, 3, 3), groups=2).shape == (1, 6, 4, 7, 7)
    assert EF.group_conv2d(xg, torch.randn(6, 2, 4, 3, 3), groups=2).shape == (1, 6, 4, 7, 7)


def test_a_beginners_input_mistakes_get_the_fix(gen):
    """A channels-last image, a channel count of another layer, and a map of another group
    were named without a fix."""
    with pytest.raises(ValueError, match=r"channels-last image.*x.permute\(0, 3, 1, 2\)"):
        LiftingConv2d(3, 4, 3, group="p4")(torch.randn(2, 9, 9, 3, generator=gen))
    with pytest.raises(ValueError, match=r"or build the layer with in_channels=8"):
        GroupConv2d(16, 4, 3, group="p4")(torch.randn(2, 8, 4, 9, 9, generator=gen))
    with pytest.raises(ValueError, match=r"a map of a group of 4 elements\? build the layers "
                                         r"of one model with one group"):
        GroupConv2d(16, 4, 3, group="p4m")(torch.randn(2, 16, 4, 9, 9, generator=gen))


def test_the_forward_convs_signature_is_nn_conv2ds_plus_the_group_keywords():
    """output_padding showed in GroupConv2d/LiftingConv2d's signature (their docs and help())
    and could only raise; it belongs to the transposed convs alone."""
    import inspect

    import torch.nn as tnn

    for cls in (GroupConv2d, LiftingConv2d):
        params = list(inspect.signature(cls).parameters)
        assert "output_padding" not in params
        assert params[:11] == list(inspect.signature(tnn.Conv2d).parameters)
    assert "output_padding" in inspect.signature(enn.GroupConvTranspose2d).parameters
    assert enn.GroupConvTranspose2d(2, 2, 3, 2, output_padding=1).output_padding == (1, 1)


def test_channel_messages_name_a_fix_that_builds(gen):
    """The wrong-count message said "build the layer with in_channels=2" for GroupLinear
    (which takes in_features) and "in_channels=0" (which no layer takes) for an empty dim."""
    from equilayers.nn import GroupLinear, HarmonicBatchNorm

    with pytest.raises(ValueError, match=r"build the layer with in_features=2 "):
        GroupLinear(3, 4, group="p4")(torch.randn(5, 2, 4, generator=gen))
    with pytest.raises(ValueError, match=r"x has no channels \(an empty dim 1\): pass 3"):
        GroupConv2d(3, 4, 3, group="p4")(torch.randn(5, 0, 4, 8, 8))
    with pytest.raises(ValueError, match=r"\(pass 3 fields: x has none\)"):
        HarmonicBatchNorm(3, max_order=1)(torch.randn(5, 0, 3, 4, 4))


@pytest.mark.parametrize("dtype", [torch.int64, torch.complex64])
def test_expand_group_filter_names_its_weight_dtype(dtype):
    """An integer or complex weight was blamed on an internal call's dtype argument
    ("group_fourier_basis: dtype=torch.int64"), which the user never passed."""
    with pytest.raises(TypeError, match=r"expand_group_filter: weight has dtype"):
        EF.expand_group_filter(torch.ones(2, 2, 4, 3, 3, dtype=dtype), "p4")


@pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors is in prototype")
@pytest.mark.parametrize("make,shape", [
    (lambda: enn.GroupConv2d(2, 2, 3, group="p4"), (1, 2, 4, 8, 8)),
    (lambda: enn.LiftingConv2d(2, 2, 3, group="p4"), (1, 2, 8, 8)),
    (lambda: enn.GroupPool(), (1, 2, 4, 8, 8)),
    (lambda: enn.NormNonlinearity(2, 1), (1, 2, 3, 8, 8)),
    (lambda: enn.BlurUpsample2d(), (1, 2, 8, 8)),
    (lambda: enn.BlurPool2d(2, stride=2), (2, 2, 8, 8)),
], ids=["group", "lifting", "pool", "norm", "upsample", "blur_pool"])
def test_a_sparse_input_is_named(make, shape):
    """Only the dispatched blur pools named a sparse input; the others failed in torch's
    reshape, pad or amax. The shared tensor check now does it for every layer."""
    with pytest.raises(TypeError, match=r"x must be a dense \(strided\) tensor; got layout "
                                        r"torch.sparse_coo.*x.to_dense\(\)"):
        make()(torch.randn(shape).to_sparse())
    # a nested tensor has the strided layout: it failed in torch's sizes() or a sympy check
    items = list(torch.randn(shape))
    for nested in (torch.nested.nested_tensor(items),
                   torch.nested.nested_tensor(items, layout=torch.jagged)):
        with pytest.raises(TypeError, match=r"x must be a dense \(strided\) tensor; got a "
                                            r"nested tensor"):
            make()(nested)
