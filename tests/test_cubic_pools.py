"""Spatial pools of the cube groups' 6-D maps (BlurPool3d, GroupMaxPool3d, GroupAvgPool3d,
PolyphasePool3d), the invariant head on the cube groups, and Restrict/CosetPool for the cube's
subgroups: shapes, module == functional, exactness over every element and every shift, the
documented conditions, negative controls, warnings."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from conftest import seeded_rng
from torch import nn

import equilayers.functional as EF
import equilayers.nn as enn
from equilayers import check_grid
from equilayers.groups import act, get
from equilayers.testing import assert_equivariant, assert_invariant, equivariance_error

ORDERS = {"o": 24, "oh": 48, "c4z": 4, "d4z": 8}
NAMES = sorted(ORDERS)


def _map(name, size, gen, c=2, dtype=torch.float64):
    return torch.randn(2, c, ORDERS[name], *size, generator=gen, dtype=dtype)


# --- blur, max, average ---------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_spatial_pools_exact_on_tiling_sizes(name, gen):
    odd, even = _map(name, (7, 7, 7), gen), _map(name, (6, 6, 6), gen)
    for layer, x in ((enn.BlurPool3d(), odd), (enn.BlurPool3d(kernel_size=5, stride=3), odd),
                     (enn.GroupMaxPool3d(3, 2, 1), odd), (enn.GroupMaxPool3d(2), even),
                     (enn.GroupAvgPool3d(3, 2, 1), odd), (enn.GroupAvgPool3d(2), even)):
        report = assert_equivariant(layer, x, name)
        assert len(report.errors) == ORDERS[name]
        assert_equivariant(layer, x.float(), name, tol=1e-5)
    # volumes (5-D) too
    vol = torch.randn(2, 3, 9, 9, 9, generator=gen, dtype=torch.float64)
    assert_equivariant(enn.BlurPool3d(), vol, name)


def test_c4z_d4z_keep_the_depth_free(gen):
    """c4z/d4z never move the depth axis: any depth is exact when H == W tiles."""
    x = torch.randn(1, 2, 8, 4, 7, 7, generator=gen, dtype=torch.float64)
    assert_equivariant(enn.BlurPool3d(), x, "d4z")
    with pytest.warns(UserWarning, match="BlurPool3d .* not exactly equivariant .* 4x6x6"):
        assert equivariance_error(enn.BlurPool3d(), x[:, :, :, :, :6, :6], "d4z") > 1e-2


@pytest.mark.parametrize("layer,size", [
    (lambda: enn.BlurPool3d(), 6), (lambda: enn.GroupMaxPool3d(3, 2, 1), 8),
    (lambda: enn.GroupMaxPool3d(2), 7), (lambda: enn.GroupAvgPool3d(3, 2, 1), 6)])
def test_spatial_pools_fail_where_the_grid_breaks(layer, size, gen):
    x = _map("o", (size,) * 3, gen)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert equivariance_error(layer(), x, "o") > 1e-2


def test_pool_shapes_and_functional(gen):
    x = torch.randn(2, 3, 24, 7, 8, 9, generator=gen)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 8 breaks D4z at stride 2: only the shapes matter here
        assert enn.BlurPool3d()(x).shape == (2, 3, 24, 4, 4, 5)
        torch.testing.assert_close(enn.BlurPool3d(channels=3)(x), EF.blur_pool3d(x))
        m = enn.GroupMaxPool3d(3, 2, 1)
        y = m(x)
    assert y.shape == (2, 3, 24, 4, 4, 5)
    # the blur of a 6-D map is the blur of each slot's volume
    torch.testing.assert_close(EF.blur_pool3d(x)[:, :, 5], EF.blur_pool3d(x[:, :, 5]))
    torch.testing.assert_close(y, F.max_pool3d(x.flatten(1, 2), 3, 2, 1).unflatten(1, (3, 24)))
    torch.testing.assert_close(y, EF.group_max_pool3d(x, 3, 2, 1))
    a = enn.GroupAvgPool3d((1, 2, 2), ceil_mode=True, count_include_pad=False)
    want = F.avg_pool3d(x.flatten(1, 2), (1, 2, 2), ceil_mode=True).unflatten(1, (3, 24))
    with pytest.warns(UserWarning, match="width 9"):  # (stride 2 on 9: not exact)
        torch.testing.assert_close(a(x), want)
    assert repr(a) == ("GroupAvgPool3d(kernel_size=(1, 2, 2), stride=(1, 2, 2), padding=0, "
                       "ceil_mode=True, count_include_pad=False)")
    assert repr(enn.GroupMaxPool3d(3, 2, 1, 2)) == ("GroupMaxPool3d(kernel_size=3, stride=2, "
                                                    "padding=1, dilation=2)")


def test_pool_warnings_once_and_agree_with_measurement(gen):
    m = enn.GroupMaxPool3d(3, 2, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m(_map("o", (7, 7, 7), gen, dtype=torch.float32))
    with pytest.warns(UserWarning, match=r"GroupMaxPool3d \(the cube's rotations and flips\) "
                                         r".* 8x8x8: stride 2 does not tile"):
        m(_map("o", (8, 8, 8), gen, dtype=torch.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m(_map("o", (8, 8, 8), gen, dtype=torch.float32))  # once per module
    with pytest.warns(UserWarning, match="quarter turns about the depth axis"):
        enn.GroupAvgPool3d(2)(_map("d4z", (4, 7, 7), gen))


@pytest.mark.parametrize("make", [lambda: enn.GroupMaxPool3d(2),
                                  lambda: enn.GroupAvgPool3d(3, 2, 1), lambda: enn.BlurPool3d()])
def test_pools_on_boxes_warn_exactly_where_the_grid_breaks(make, gen):
    """On a box with H != W (a quarter turn about the depth axis maps H x W to W x H) the pools
    are checked for D4z as on square slices: the warning agrees with the measured error over
    D4z at every box below (they were not checked at all: a stride-2 pool on 6x6x7 broke D4z,
    error ~1, in silence)."""
    for size in ((4, 6, 7), (5, 7, 9), (6, 6, 8), (3, 8, 6), (5, 5, 7)):
        m = make()
        x = _map("d4z", size, gen)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            m(x)
        warned = [w for w in caught if "not exactly equivariant" in str(w.message)]
        error = equivariance_error(m, x, "d4z")
        assert bool(warned) == (error > 1e-6), (size, error, warned)
        assert all("quarter turns about the depth axis" in str(w.message) for w in warned)


@pytest.mark.parametrize("kernel_size,stride", [(3, 2), (4, 2), (5, 3)])
def test_blur_pool3d_warns_exactly_where_the_grid_breaks(kernel_size, stride, gen):
    """BlurPool3d on the cube groups' 6-D maps warns once per module at the first size where
    it is not exactly equivariant, and only there: at every size 5..8 the warning agrees with
    the measured error over O's 24 rotations (float64; 0.5-1.2 where it breaks) and with
    check_grid (an even blur is exact on even sizes at stride 2). On plain volumes (5-D) it
    makes no group claim and stays quiet."""
    for n in range(5, 9):
        m = enn.BlurPool3d(kernel_size=kernel_size, stride=stride)
        x = _map("o", (n, n, n), gen)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            m(x)
            m(x)
        warned = [w for w in caught if "not exactly equivariant" in str(w.message)]
        assert len(warned) <= 1 and all(w.filename == __file__ for w in warned), (n, warned)
        error = equivariance_error(m, x, "o")
        assert bool(warned) == (error > 1e-6), (kernel_size, stride, n, error)
        assert (check_grid(nn.Sequential(m), tuple(x.shape), "o", shifts=False) == []) == (
            error < 1e-12), (kernel_size, stride, n)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            enn.BlurPool3d(kernel_size=kernel_size, stride=stride)(x[:, :, 0])  # a volume


@pytest.mark.parametrize("make", [lambda: enn.GroupMaxPool3d(2, ceil_mode=True),
                                  lambda: enn.GroupAvgPool3d(3, 2, 1, ceil_mode=True)])
def test_ceil_mode_pools_warn_exactly_where_the_grid_breaks(make, gen):
    """A ceil_mode pool's extra last window appears exactly where the floor windows leave a
    remainder, so it is judged by the same law: at every size 5..8 the warning agrees with
    the measured error over O's rotations (ceil_mode pools used to skip the check and break
    O silently at odd or even sizes, error ~1)."""
    for n in range(5, 9):
        m = make()
        x = _map("o", (n, n, n), gen)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            m(x)
        warned = [w for w in caught if "not exactly equivariant" in str(w.message)]
        error = equivariance_error(m, x, "o")
        assert bool(warned) == (error > 1e-6), (n, error, warned)


def test_pool_errors_are_named():
    with pytest.raises(ValueError, match=r"6-D \(B, C, F, D, H, W\).*nn.MaxPool3d"):
        enn.GroupMaxPool3d(2)(torch.randn(1, 2, 4, 4, 4))
    with pytest.raises(ValueError, match="padding=2 must be at most half"):
        enn.GroupAvgPool3d(3, 1, 2)
    with pytest.raises(ValueError, match="smaller than the pooling window"):
        EF.group_max_pool3d(torch.randn(1, 1, 4, 1, 3, 3), 2)
    with pytest.raises(TypeError, match="ceil_mode"):
        enn.GroupMaxPool3d(2, ceil_mode=1)


@pytest.mark.parametrize("size,ceil_mode", [(1, False), (2, False), (2, True)])
def test_avg_pool_below_the_kernel_is_named(size, ceil_mode, gen):
    """torch's avg_pool3d refuses a spatial size below the kernel even where the padding
    fills the window (avg_pool2d and max_pool3d take it): GroupAvgPool3d(3, 2, 1) on a
    1^3 or 2^3 map passed the window check and raised torch's RuntimeError from inside."""
    x = torch.randn(2, 3, 4, size, size, size, generator=gen)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 2^3 does not tile stride 2: the exactness warning
        with pytest.raises(ValueError, match=r"group_avg_pool3d: .*at least "
                           r"kernel_size=\(3, 3, 3\).*F\.pad"):
            enn.GroupAvgPool3d(3, 2, 1, ceil_mode=ceil_mode)(x)
        # controls: the max pool takes it (as torch does), the average pool at the kernel size
        assert enn.GroupMaxPool3d(3, 2, 1)(x).shape[-3:] == ((size + 1) // 2,) * 3
    assert enn.GroupAvgPool3d(3, 2, 1)(torch.randn(2, 3, 4, 3, 3, 3)).shape[-3:] == (2, 2, 2)


def test_gradcheck_pools(gen):
    x = torch.randn(1, 1, 4, 4, 4, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: EF.group_avg_pool3d(t, 2), (x,))
    assert torch.autograd.gradcheck(lambda t: EF.polyphase_pool3d(t, blur_size=3), (x,))
    assert torch.autograd.gradcheck(lambda t: EF.blur_pool3d(t), (x,))


# --- polyphase -----------------------------------------------------------------------------
@pytest.mark.parametrize("stride", [2, 3])
def test_polyphase_every_integer_shift(stride, gen):
    """Every circular shift of a 6^3 volume (all 216): the same samples are kept, rolled by
    (a + t) // s per axis, and the index moves to (a + t) % s."""
    n = 6
    x = torch.randn(2, 2, 4, n, n, n, generator=gen, dtype=torch.float64)
    y, idx = EF.polyphase_pool3d(x, stride, return_index=True)
    s = stride
    phases = torch.stack([idx // (s * s), (idx // s) % s, idx % s], 1)  # (B, 3)
    for t in [(a, b, c) for a in range(n) for b in range(n) for c in range(n)]:
        ys, idxs = EF.polyphase_pool3d(torch.roll(x, t, dims=(-3, -2, -1)), stride,
                                       return_index=True)
        for i in range(2):
            new = [(int(phases[i, k]) + t[k]) for k in range(3)]
            assert int(idxs[i]) == (new[0] % s) * s * s + (new[1] % s) * s + new[2] % s
            want = torch.roll(y[i], tuple(v // s for v in new), dims=(-3, -2, -1))
            assert torch.equal(ys[i], want)


def test_polyphase_shapes_choice_and_functional(gen):
    x = torch.randn(3, 2, 6, 4, 8, generator=gen)
    y, idx = enn.PolyphasePool3d(return_index=True)(x)
    assert y.shape == (3, 2, 3, 2, 4) and idx.dtype == torch.int64
    for b in range(3):  # the kept component has the largest l2 norm
        norms = [x[b, :, a::2, c::2, d::2].double().norm() for a in range(2) for c in range(2)
                 for d in range(2)]
        assert int(idx[b]) == int(torch.stack(norms).argmax())
        a, c, d = int(idx[b]) // 4, int(idx[b]) // 2 % 2, int(idx[b]) % 2
        assert torch.equal(y[b], x[b, :, a::2, c::2, d::2])
    torch.testing.assert_close(enn.PolyphasePool3d(criterion="linf", blur_size=3)(x),
                               EF.polyphase_pool3d(x, criterion="linf", blur_size=3))
    assert repr(enn.PolyphasePool3d(3, blur_size=3, return_index=True)) == (
        "PolyphasePool3d(stride=3, blur_size=3, return_index=True)")
    with pytest.raises(ValueError, match=r"D, H and W divisible by stride=2.*\(3, 4, 4\)"):
        EF.polyphase_pool3d(torch.randn(1, 2, 3, 4, 4))
    with pytest.raises(ValueError, match="stride"):
        enn.PolyphasePool3d(1)


def test_four_d_inputs_as_documented(gen):
    """The Shape sections: a 4-D input is one unbatched (C, D, H, W) volume, as for
    nn.AvgPool3d, for BlurPool3d and for the polyphase pair alike (PolyphasePool3d read it as
    (B, D, H, W) before, one choice per channel: a silent misreading of torch's unbatched
    form, unlike PolyphasePool2d's (C, H, W) and LearnablePolyphasePool3d's (C, D, H, W)).
    One choice for the whole volume, a 0-d index, equal to the batch of one; the 0-d index
    goes back in through PolyphaseUpsample3d. The control: the batched read of the same
    tensor picks per entry (not one shared choice)."""
    x = torch.randn(3, 5, 5, 5, generator=gen)
    blur = enn.BlurPool3d()
    torch.testing.assert_close(blur(x), blur(x[None])[0], rtol=0, atol=0)
    x = torch.randn(8, 4, 4, 4, generator=gen)
    pool, up = enn.PolyphasePool3d(return_index=True), enn.PolyphaseUpsample3d(blur_size=3)
    (y, index), (yb, indexb) = pool(x), pool(x[None])
    assert y.shape == (8, 2, 2, 2) and index.shape == () and index.dtype == torch.int64
    assert torch.equal(y, yb[0]) and torch.equal(index, indexb[0])
    assert torch.equal(up(y, index), up(yb, indexb)[0])
    assert torch.equal(EF.polyphase_pool3d(x), yb[0])
    per_entry = [int(pool(x[b:b + 1, None])[1]) for b in range(8)]  # the batched read
    assert len(set(per_entry)) > 1
    with pytest.raises(ValueError, match=r"a 0-d tensor for an unbatched x \(C, D, H, W\)"):
        up(y, indexb)
    with pytest.raises(ValueError, match=r"x must be at least 4-D.*unbatched \(C, D, H, W\)"):
        pool(torch.randn(4, 4, 4))


@pytest.mark.parametrize("name", NAMES)
def test_polyphase_cube_elements_on_cubes(name, gen):
    """Sizes divisible by s: every element, on cubes and on boxes (a rotation permutes the
    sizes with the dims, and the components with them)."""
    for s, size in ((2, 6), (3, 6), (2, 4)):
        assert_equivariant(enn.PolyphasePool3d(s), _map(name, (size,) * 3, gen), name)
    assert_equivariant(enn.PolyphasePool3d(), _map(name, (4, 6, 8), gen), name)


# --- the invariant head ---------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_invariant_head_every_element(name, gen):
    with seeded_rng(0):
        head = enn.InvariantHead(2, 3, group=name, pool="mean", spatial="max").double()
        x = _map(name, (5, 5, 5), gen)
        report = assert_invariant(head, x, name)
        assert len(report.errors) == ORDERS[name] and report.error < 1e-14
        assert head(x).shape == (2, 3)
        torch.testing.assert_close(head(x), EF.invariant_head(x, head.weight, head.bias,
                                                              group=name, pool="mean",
                                                              spatial="max"))
        # a volume (already pooled over the fiber) is accepted as well
        assert head(x.amax(2)).shape == (2, 3)


def test_invariant_head_pose_on_cube_maps(gen):
    o = get("o")
    head = enn.InvariantHead(2, 3, group="o", return_pose=True).double()
    x = _map("o", (3, 3, 3), gen)
    _, pose = head(x)
    for g in o.elements():
        _, moved = head(act(x, g, "regular"))
        assert moved.tolist() == [o.index(g * o.elements()[int(p)]) for p in pose]
    with pytest.raises(ValueError, match=r"\(B, C, \|G\|, D, H, W\)"):
        head(x.amax(2))
    with pytest.raises(ValueError, match=r"\|G\|=24 slots"):
        head(x[:, :, :8])
    with pytest.raises(ValueError, match=r"\(B, C, \|G\|, D, H, W\) or \(B, C, D, H, W\)"):
        EF.invariant_head(x[..., 0, 0], head.weight, group="o")


def test_classifier_stack_is_invariant(gen):
    with seeded_rng(0):
        net = torch.nn.Sequential(
            enn.LiftingConv3d(1, 4, 3, padding=1, group="o"), enn.GroupBatchNorm3d(4),
            torch.nn.ReLU(), enn.GroupConv3d(4, 4, 3, padding=1, group="o"), torch.nn.ReLU(),
            enn.BlurPool3d(), enn.InvariantHead(4, 5, group="o")).eval()
        x = torch.randn(2, 1, 9, 9, 9, generator=gen)
        report = assert_invariant(net, x, "o", tol=1e-5)
        assert report.error < 1e-5


# --- restriction ----------------------------------------------------------------------------
@pytest.mark.parametrize("big,small", [("oh", "o"), ("o", "c4z"), ("oh", "d4z"),
                                       ("d4z", "c4z"), ("oh", "c4z")])
def test_restrict_cube_subgroups(big, small, gen):
    x = _map(big, (3, 3, 3), gen)
    r = enn.Restrict(big, small)
    y = r(x)
    k = ORDERS[big] // ORDERS[small]
    assert y.shape == (2, 2 * k, ORDERS[small], 3, 3, 3)
    torch.testing.assert_close(y, EF.restrict(x, big, small))
    # a permutation of the slots: every input value appears once
    assert torch.equal(y.flatten(1, 2).sort(1).values, x.flatten(1, 2).sort(1).values)
    report = assert_equivariant(r, x, small)
    assert len(report.errors) == ORDERS[small]
    assert r._identity == ((big, small) in (("oh", "o"), ("d4z", "c4z")))
    pooled = enn.CosetPool(big, small)(x)
    assert pooled.shape == (2, 2, k, 3, 3, 3)
    assert_equivariant(enn.CosetPool(big, small), x, big)


def test_restrict_errors_on_volumes():
    with pytest.raises(ValueError, match=r"6-D \(B, C, F, D, H, W\)"):
        enn.Restrict("o", "c4z")(torch.randn(1, 2, 24, 5, 5))
    with pytest.raises(ValueError, match="fiber of 24 slots"):
        EF.restrict(torch.randn(1, 2, 8, 3, 3, 3), "o", "c4z")
    with pytest.raises(ValueError, match="not a subgroup"):
        enn.Restrict("o", "d4z")


def test_pool_exactness_memo_sees_an_option_set_after_the_first_call(gen):
    """The once-per-module exactness check of the spatial pools is memoized on the size and
    the window: a stride set on the module after an exact call is checked again (planar pools
    on 5-D maps, the 3-D pools on 6-D ones, and a planar group conv)."""
    import warnings

    from equilayers.nn import BlurPool2d, GroupConv2d, GroupConvTranspose2d

    cases = [(BlurPool2d(kernel_size=3, stride=1), torch.randn(1, 2, 4, 8, 8, generator=gen), 2),
             (enn.GroupMaxPool3d(3, stride=1, padding=1),
              torch.randn(1, 2, 4, 6, 6, 6, generator=gen), (2, 2, 2)),
             (GroupConv2d(2, 2, 3, padding=1, group="p4"),
              torch.randn(1, 2, 4, 8, 8, generator=gen), (2, 2))]
    for module, x, stride in cases:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            module(x)  # exact at stride 1
        module.stride = stride
        with pytest.warns(UserWarning, match="not exactly equivariant"):
            module(x)
    # a transposed conv's output_padding set after an exact call (the memo key holds it)
    up = GroupConvTranspose2d(2, 2, 3, stride=2, padding=1, group="p4")
    x = torch.randn(1, 2, 4, 8, 8, generator=gen)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        up(x)  # exact with output_padding 0
    up.output_padding = (1, 1)
    with pytest.warns(UserWarning, match="not exactly equivariant"):
        up(x)


def test_pool_with_unequal_row_and_column_padding_is_checked_for_flips_only(gen):
    """A pool's options differ between the dims (padding (1, 0)): it cannot be rot90-exact
    on any group map and makes no such claim; it is checked for flips, which it keeps exactly,
    so it does not warn. The control: stride 2 with that padding reads the padding on one
    side only, breaking the vertical flip, and warns."""
    import warnings

    x = torch.randn(1, 2, 4, 8, 8, generator=gen, dtype=torch.float64)
    pool = enn.GroupMaxPool2d(3, stride=1, padding=(1, 0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = pool(x)
    for dim in (-2, -1):
        torch.testing.assert_close(pool(x.flip(dim)), y.flip(dim), rtol=0, atol=0)
    with pytest.warns(UserWarning, match="not exactly equivariant"):
        enn.GroupMaxPool2d(3, stride=2, padding=(1, 0))(x)
