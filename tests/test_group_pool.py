"""GroupPool, GroupMaxPool2d/GroupAvgPool2d and GroupBatchNorm2d."""

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from equilayers._checks import BATCH_NORM_TAKES_BIAS
from equilayers.functional import (
    group_avg_pool2d,
    group_batch_norm,
    group_max_pool2d,
    group_max_pool3d,
    group_pool,
    norm_max_pool2d,
)
from equilayers.nn import (
    GroupAvgPool2d,
    GroupBatchNorm2d,
    GroupBatchNorm3d,
    GroupMaxPool2d,
    GroupPool,
    NormMaxPool,
)
from equilayers.testing import assert_equivariant, invariance_error


def _x(gen, *shape):
    return torch.randn(*shape, generator=gen, dtype=torch.float64)


@pytest.mark.parametrize("reduction,ref", [("max", lambda x: x.max(2).values),
                                           ("mean", lambda x: x.mean(2))])
def test_group_pool_values(reduction, ref, gen):
    x = _x(gen, 2, 3, 8, 5, 5)
    y = GroupPool(reduction)(x)
    assert y.shape == (2, 3, 5, 5)
    torch.testing.assert_close(y, ref(x), rtol=0, atol=1e-15)
    torch.testing.assert_close(group_pool(x, reduction), y, rtol=0, atol=0)


def test_group_pool_invariant_over_fiber(gen):
    x = _x(gen, 2, 3, 8, 5, 5)
    perm = torch.randperm(8, generator=gen)
    torch.testing.assert_close(GroupPool()(x[:, :, perm]), GroupPool()(x), rtol=0, atol=0)
    # regular in -> trivial out, then a plain spatial pool makes it invariant
    f = torch.nn.Sequential(GroupPool(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    assert invariance_error(f, x, "d4", in_rep="regular") <= 1e-12


def test_group_pool_bad_input(gen):
    with pytest.raises(ValueError, match=r"5-D .* got shape \(2, 3, 5, 5\)"):
        GroupPool()(_x(gen, 2, 3, 5, 5))
    with pytest.raises(ValueError, match="reduction='sum' must be one of"):
        GroupPool("sum")
    with pytest.raises(ValueError, match="reduction='median' must be one of"):
        group_pool(_x(gen, 1, 1, 4, 2, 2), "median")
    for reduction in ("max", "mean"):  # amax's IndexError, mean's NaN map
        with pytest.raises(ValueError, match=r"fiber \(dim 2\) is empty.*\(2, 3, 0, 5, 5\)"):
            GroupPool(reduction)(_x(gen, 2, 3, 0, 5, 5))


def test_spatial_pools_match_per_slot(gen):
    x = _x(gen, 2, 3, 4, 9, 9)
    y = GroupMaxPool2d(3, 2, 1)(x)
    ref = torch.stack([F.max_pool2d(x[:, :, i], 3, 2, 1) for i in range(4)], 2)
    torch.testing.assert_close(y, ref, rtol=0, atol=0)
    torch.testing.assert_close(group_max_pool2d(x, 3, 2, 1), y, rtol=0, atol=0)
    z = GroupAvgPool2d(2)(x[..., :8, :8])
    assert z.shape == (2, 3, 4, 4, 4)
    torch.testing.assert_close(group_avg_pool2d(x[..., :8, :8], 2), z, rtol=0, atol=0)
    with pytest.raises(ValueError, match="5-D"):
        GroupMaxPool2d(2)(_x(gen, 2, 3, 8, 8))


@pytest.mark.parametrize("kwargs", [
    dict(kernel_size=3, stride=1, padding=1, dilation=2),
    dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2)),
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
])
@pytest.mark.filterwarnings("ignore:.*is not exactly equivariant")
def test_max_pool_is_torchs_per_slot_for_every_option(kwargs, gen):
    """GroupMaxPool2d / group_max_pool2d give nn.MaxPool2d's values on each slot, with
    dilation, pairs per dim and ceil_mode."""
    x = _x(gen, 2, 3, 4, 9, 10)
    ref = torch.stack([nn.MaxPool2d(**kwargs)(x[:, :, i]) for i in range(4)], 2)
    torch.testing.assert_close(group_max_pool2d(x, **kwargs), ref, rtol=0, atol=0)
    torch.testing.assert_close(GroupMaxPool2d(**kwargs)(x), ref, rtol=0, atol=0)


def test_max_pool_padding_is_at_most_half_the_kernel_whatever_the_dilation(gen):
    """torch's max pools take a padding of at most ``kernel_size // 2``, the dilation not
    counted: ``F.max_pool2d(x, 3, 1, 2, 2)`` raises 'pad should be smaller than or equal to
    half of kernel size' (torch 2.13). The group max pools allowed half the *dilated* window
    and so passed padding=2 with dilation=2 on to torch, whose RuntimeError named the
    internal view; now it is a ValueError naming padding, at construction for the modules.
    The control: padding 1 with dilation 2 runs and is torch's per slot."""
    x = _x(gen, 1, 2, 4, 9, 9)
    with pytest.raises(RuntimeError, match="pad should be smaller than or equal to half"):
        F.max_pool2d(x[:, :, 0], 3, 1, 2, 2)  # torch's rule
    with pytest.raises(ValueError, match=r"group_max_pool2d: padding=2 must be at most half "
                                         r"the kernel_size, \(1, 1\) here"):
        group_max_pool2d(x, 3, 1, 2, 2)
    with pytest.raises(ValueError, match=r"GroupMaxPool2d: padding=2 must be at most half"):
        GroupMaxPool2d(3, 1, 2, 2)
    with pytest.raises(ValueError, match=r"group_max_pool3d: padding=2 must be at most half"):
        group_max_pool3d(x.unsqueeze(3).repeat(1, 1, 1, 9, 1, 1), 3, 1, 2, 2)
    with pytest.raises(ValueError, match=r"padding=\(0, 2\) must be at most half"):
        group_max_pool2d(x, 2, 1, (0, 2), (1, 3))
    y = group_max_pool2d(x, 3, 1, 1, 2)
    ref = torch.stack([F.max_pool2d(x[:, :, i], 3, 1, 1, 2) for i in range(4)], 2)
    torch.testing.assert_close(y, ref, rtol=0, atol=0)


@pytest.mark.parametrize("kwargs", [
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=False, count_include_pad=False),
    dict(kernel_size=(2, 3), stride=(2, 3), padding=(1, 0), ceil_mode=True),
])
@pytest.mark.filterwarnings("ignore:.*is not exactly equivariant")
def test_avg_pool_is_torchs_per_slot_for_every_option(kwargs, gen):
    """GroupAvgPool2d / group_avg_pool2d pass ceil_mode and count_include_pad to
    F.avg_pool2d as themselves (not swapped: both are bools, so a swap runs): each slot is
    nn.AvgPool2d's output. The control: the two flags do change the output here."""
    x = _x(gen, 2, 3, 4, 9, 10)
    ref = torch.stack([nn.AvgPool2d(**kwargs)(x[:, :, i]) for i in range(4)], 2)
    torch.testing.assert_close(group_avg_pool2d(x, **kwargs), ref, rtol=0, atol=1e-15)
    torch.testing.assert_close(GroupAvgPool2d(**kwargs)(x), ref, rtol=0, atol=1e-15)
    flipped = {**kwargs, "ceil_mode": not kwargs.get("ceil_mode", False),
               "count_include_pad": not kwargs.get("count_include_pad", True)}
    other = nn.AvgPool2d(**flipped)(x[:, :, 0])
    assert other.shape != ref[:, :, 0].shape or not torch.allclose(other, ref[:, :, 0])


@pytest.mark.parametrize("size,args", [
    ((1, 1), (2, 1, 1, 2, False)), ((1, 5), (3, 3, 1, 2, True)), ((5, 2), (2, 1, 1, 3, False))])
def test_max_pool_refuses_a_window_wholly_in_padding(size, args, gen):
    """A dilated window that starts in the padding can step over the whole input: torch's max
    pool returns -inf there (its float64 backward of such a window corrupted memory). Every
    (n, k, s, p, d, ceil_mode) with n <= 6, k, s, d <= 3, p <= 2 was checked: the refused ones
    are exactly those where ``F.max_pool2d`` outputs -inf."""
    x = _x(gen, 1, 2, 4, *size)
    assert not F.max_pool2d(x[:, 0], *args[:4], ceil_mode=args[4]).isfinite().all()  # torch
    with pytest.raises(ValueError, match="reads only padding.*returns -inf"):
        group_max_pool2d(x, *args[:4], ceil_mode=args[4])
    with pytest.raises(ValueError, match="reads only padding"):
        group_max_pool3d(x.unsqueeze(3).repeat(1, 1, 1, 7, 1, 1), *args[:4], ceil_mode=args[4])
    with pytest.raises(ValueError, match="reads only padding"):  # was an out-of-bounds gather
        norm_max_pool2d(x[:, :, :3], *args[:4], ceil_mode=args[4])
    small = _x(gen, 1, 2, 1, 2, 2)  # ceil_mode's window reads pixel 1: norm pool refused it
    torch.testing.assert_close(norm_max_pool2d(small, 3, 3, 1, 2, ceil_mode=True)[:, :, 0],
                               F.max_pool2d(small[:, :, 0], 3, 3, 1, 2, ceil_mode=True))
    big = _x(gen, 1, 2, 4, 7, 7)  # control: every window reads the input
    torch.testing.assert_close(group_max_pool2d(big, *args[:4], ceil_mode=args[4]),
                               torch.stack([F.max_pool2d(big[:, :, i], *args[:4],
                                                         ceil_mode=args[4]) for i in range(4)],
                                           2), rtol=0, atol=0)


@pytest.mark.parametrize("make", [
    lambda a: GroupMaxPool2d(*a), lambda a: GroupAvgPool2d(*a[:3]),
    lambda a: NormMaxPool(*a, max_order=1)], ids=["max", "avg", "norm_max"])
def test_spatial_pools_take_lists_as_torch(make, gen):
    """kernel_size, stride, padding and dilation as lists (``nn.MaxPool2d`` takes them): the
    exactness check hashed them raw and the first forward raised ``unhashable type: 'list'``."""
    x = _x(gen, 2, 3, 3, 9, 9)
    lists = make(([3, 3], [2, 2], [1, 1], [1, 1]))
    torch.testing.assert_close(lists(x), make((3, 2, 1, 1))(x), rtol=0, atol=0)
    with pytest.warns(UserWarning, match="not exactly equivariant"):  # 8: windows miss a side
        make(([3, 3], [2, 2], [1, 1], [1, 1]))(x[..., :8, :8])


def test_spatial_pool_equivariance_non_contiguous(gen):
    x = _x(gen, 2, 8, 3, 9, 9).transpose(1, 2)
    assert_equivariant(GroupMaxPool2d(3, 2, 1), x, "p4m")


def test_batchnorm_shares_statistics_over_fiber(gen):
    x = _x(gen, 4, 3, 8, 5, 5) * 3 + 1
    bn = GroupBatchNorm2d(3).double()
    y = bn(x)
    ref = nn.BatchNorm3d(3).double()
    torch.testing.assert_close(y, ref(x))
    torch.testing.assert_close(bn.running_mean, ref.running_mean)
    mean = y.transpose(0, 1).reshape(3, -1).mean(1)
    torch.testing.assert_close(mean, torch.zeros(3, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(group_batch_norm(x, None, None, training=True), y)
    assert set(bn.state_dict()) == set(ref.state_dict())


def test_batchnorm_bad_input(gen):
    bn = GroupBatchNorm2d(3)
    with pytest.raises(ValueError, match=r"5-D .* got shape \(4, 3, 5, 5\)"):
        bn(torch.randn(4, 3, 5, 5))
    with pytest.raises(ValueError, match="C=3 fields"):
        bn(torch.randn(4, 2, 4, 5, 5))
    with pytest.raises(ValueError, match="5-D"):
        group_batch_norm(torch.randn(4, 3, 5, 5), None, None, training=True)
    # Python's TypeError named the private _GroupBatchNorm.__init__
    with pytest.raises(TypeError, match=r"GroupBatchNorm2d\(\) .* 'group' \(group='p4'\): .*"
                                        "leave it out"):
        GroupBatchNorm2d(3, group="p4")
    with pytest.raises(TypeError, match=r"HarmonicBatchNorm\(num_features, max_order\)"):
        GroupBatchNorm2d(3, max_order=2)
    with pytest.raises(TypeError, match=r"GroupBatchNorm2d\(\) got an unexpected keyword "
                                        r"argument 'foo'$"):
        GroupBatchNorm2d(3, foo=1)


def test_gradcheck_pools(gen):
    x = _x(gen, 1, 2, 4, 3, 3).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: group_pool(t, "mean"), (x,))
    assert torch.autograd.gradcheck(lambda t: group_pool(t, "max"), (x,))
    assert torch.autograd.gradcheck(lambda t: group_max_pool2d(t, 2, 1), (x,))


def test_group_pool_max_gradient_equals_amax(gen):
    """The hand-written backward == amax's: ties split evenly, NaN fibers, any layout."""
    x = _x(gen, 2, 3, 8, 5, 4)
    ties = torch.randint(0, 3, (2, 3, 8, 5, 4), generator=gen).double()
    nan = x.clone()
    nan[1, 2, 3, 0, 0] = float("nan")
    for t in [x, ties, nan, x.transpose(-1, -2), x[:, :, ::2],
              x.contiguous(memory_format=torch.channels_last_3d)]:
        a, b = t.detach().requires_grad_(True), t.detach().requires_grad_(True)
        ya, yb = group_pool(a, "max"), b.amax(2)
        torch.testing.assert_close(ya, yb, rtol=0, atol=0, equal_nan=True)
        g = torch.randn(yb.shape, generator=gen, dtype=yb.dtype)
        (ga,), (gb,) = torch.autograd.grad(ya, a, g), torch.autograd.grad(yb, b, g)
        torch.testing.assert_close(ga, gb, equal_nan=True)
    assert ties.eq(ties.amax(2, keepdim=True)).sum(2).max() > 1  # the tie case has ties
    # Negative control: a gradient routed to the first maximum only differs on ties.
    b = ties.detach().requires_grad_(True)
    (first,) = torch.autograd.grad(b.max(2).values.sum(), b)
    (ours,) = torch.autograd.grad(group_pool(b, "max").sum(), b)
    assert not torch.allclose(first, ours)


def test_group_pool_max_backward_compiles_on_any_layout(gen):
    """The hand-written backward under ``torch.compile`` (AOTAutograd traces it): its mask
    was written with ``out=torch.empty_like(x)``, a channels_last buffer for a channels_last
    input, and a traced graph takes no strided ``out=`` (``Unsupported``; a p4 model trained
    compiled on channels_last images hit it)."""
    torch._dynamo.reset()
    fn = torch.compile(lambda t: group_pool(t, "max"), backend="aot_eager", fullgraph=True)
    x = _x(gen, 2, 3, 4, 5, 5)
    for t in [x.contiguous(memory_format=torch.channels_last_3d), x.transpose(-1, -2)]:
        a, b = t.detach().requires_grad_(True), t.detach().requires_grad_(True)
        g = torch.randn(2, 3, 5, 5, generator=gen, dtype=x.dtype)
        (ga,), (gb,) = torch.autograd.grad(fn(a), a, g), torch.autograd.grad(b.amax(2), b, g)
        torch.testing.assert_close(ga, gb, rtol=0, atol=0)


def test_group_pool_max_double_backward(gen):
    x = _x(gen, 1, 2, 4, 3, 3).requires_grad_(True)
    assert torch.autograd.gradgradcheck(lambda t: group_pool(t, "max"), (x,))


@pytest.mark.skipif(not BATCH_NORM_TAKES_BIAS, reason="torch < 2.12: nn.BatchNorm3d has no "
                    "bias= (test_group_batch_norm_on_a_torch_without_bias covers it)")
@pytest.mark.parametrize("shape", [(2, 3, 4, 5, 5), (2, 3, 24, 3, 3, 3)])
def test_group_batch_norm_bias_false_as_torch(shape):
    """``bias=False`` (keyword-only, as torch's batch norms take it and as the repr shows it):
    a weight and no bias, the same outputs and state-dict keys as ``nn.BatchNorm3d``."""
    from equilayers.nn import GroupBatchNorm3d
    cls = GroupBatchNorm2d if len(shape) == 5 else GroupBatchNorm3d
    bn, ref = cls(3, bias=False), nn.BatchNorm3d(3, bias=False)
    assert bn.bias is None and "bias=False" in repr(bn)
    assert list(bn.state_dict()) == list(ref.state_dict())
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(bn(x), ref(x if len(shape) == 5 else x.flatten(2, 3)).view(shape))
    assert cls(3).bias is not None  # the control: the default keeps the bias
    with pytest.raises(TypeError, match=r"bias='no' must be True or False"):
        cls(3, bias="no")


def test_group_batch_norm_on_a_torch_without_bias(monkeypatch):
    """On torch < 2.12 (``nn.BatchNorm3d`` takes no ``bias=``, simulated here by its old
    constructor) the group batch norms and ``export`` still build: the default passes no
    ``bias=`` (they raised torch's ``unexpected keyword argument 'bias'`` for every
    ``GroupBatchNorm2d(C)``), ``affine=False`` needs none, and ``bias=False`` says which torch
    has it."""
    from torch.nn.modules.batchnorm import _BatchNorm

    import equilayers
    from equilayers import _checks
    from equilayers.nn import GroupBatchNorm3d

    real = _BatchNorm.__init__

    def old_init(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True, device=None, dtype=None):
        real(self, num_features, eps, momentum, affine, track_running_stats, device, dtype)

    monkeypatch.setattr(_BatchNorm, "__init__", old_init)
    monkeypatch.setattr(_checks, "BATCH_NORM_TAKES_BIAS", False)
    with pytest.raises(TypeError, match="bias"):  # the control: the old constructor refuses it
        nn.BatchNorm3d(3, bias=True)
    for cls in (GroupBatchNorm2d, GroupBatchNorm3d):
        assert cls(3).bias is not None
        assert cls(3, affine=False, bias=False).weight is None
        with pytest.raises(TypeError, match=r"bias=False must be True with affine=True on torch "
                                            r".*upgrade torch to 2\.12 or later"):
            cls(3, bias=False)
    plain = equilayers.export(nn.Sequential(GroupBatchNorm2d(3).eval()))
    assert isinstance(plain[0], nn.BatchNorm3d) and plain[0].bias is not None


def test_avg_pool_repr_shows_the_options_that_differ_from_torchs_defaults():
    """GroupAvgPool2d's repr showed neither ceil_mode=True nor count_include_pad=False (two
    layers with different outputs printed alike); GroupMaxPool2d and GroupAvgPool3d show them."""
    assert repr(GroupAvgPool2d(3, 2, 1)) == "GroupAvgPool2d(kernel_size=3, stride=2, padding=1)"
    assert repr(GroupAvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False)) == (
        "GroupAvgPool2d(kernel_size=3, stride=2, padding=1, ceil_mode=True, "
        "count_include_pad=False)")


def test_group_batch_norm_refuses_eval_without_statistics_and_statistics_of_another_size(gen):
    gbn = group_batch_norm
    x = torch.randn(2, 3, 4, 5, 5, generator=gen, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"training=False normalizes with running_mean"):
        gbn(x, None, None, training=False)
    stats = torch.zeros(4, dtype=torch.float64), torch.ones(4, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"running_mean must have shape \(C,\) = \(3,\)"):
        gbn(x, *stats, training=True)
    # control: statistics of the right size are used (eval: mean 0, var 1 is the identity)
    ok = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    torch.testing.assert_close(gbn(x, *ok, eps=1e-12), x)


@pytest.mark.parametrize("affine", [True, False], ids=["affine", "no-affine"])
def test_group_batch_norms_name_a_dtype_mismatch_and_validate_flags(affine, gen):
    """Both group batch norms name themselves on a float64 input to float32 statistics (the
    parameters', or without affine the running statistics'), take float16 (torch's mixed
    batch norm), refuse a non-bool flag and take ``momentum=None`` (cumulative average)."""
    for cls, shape in ((GroupBatchNorm2d, (2, 3, 4, 5, 5)), (GroupBatchNorm3d, (2, 3, 4, 3, 3, 3))):
        bn = cls(3, affine=affine)
        x = torch.randn(shape, generator=gen, dtype=torch.float64)
        with pytest.raises(TypeError, match=rf"{cls.__name__}: x has dtype torch.float64, but "
                                            r"the module's parameters are torch.float32"):
            bn(x)
        assert bn(x.half()).dtype == torch.float16  # control
        with pytest.raises(TypeError, match="affine"):
            cls(3, affine="yes")
        assert cls(3, momentum=None).momentum is None


def test_a_rectangular_window_is_checked_for_flips(gen):
    """A ``(2, 3)`` window was never checked (an early return for rectangles): at 7x7 its
    d1 error was 0.30 and nothing warned; each flip is now judged on its own dim."""
    x = _x(gen, 1, 1, 4, 7, 7)
    with pytest.warns(UserWarning, match=r"\(flips\) is not exactly.*padded height 7"):
        GroupMaxPool2d(kernel_size=(2, 3))(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        GroupMaxPool2d(kernel_size=(3, 1))(_x(gen, 1, 1, 4, 9, 9))  # tiles both dims: exact
    assert_equivariant(GroupMaxPool2d(kernel_size=(3, 1)), _x(gen, 1, 1, 4, 9, 9), "d2")


@pytest.mark.parametrize("bn,shape", [(GroupBatchNorm2d, (2, 3, 4, 5, 5)),
                                      (GroupBatchNorm3d, (2, 3, 4, 3, 3, 3))])
def test_batch_norm_names_a_device_mismatch(bn, shape):
    """A meta-built group batch norm on a CPU input (and the reverse) gave torch's bare
    "Tensor on device meta is not on the expected device cpu!"; every other layer names it."""
    with pytest.raises(ValueError, match=r"x is on cpu but the module's parameters are on meta"
                                         r".*materialized first"):
        bn(3, device="meta")(torch.randn(shape))
    with pytest.raises(ValueError, match=r"x is on meta but the module's parameters are on cpu"):
        bn(3)(torch.empty(shape, device="meta"))
    assert bn(3)(torch.randn(shape)).shape == shape  # the control
