import math
import re

import pytest
import torch
from conftest import seeded_rng
from torch import nn

from equilayers.groups import get
from equilayers.testing import (
    assert_equivariant,
    assert_invariant,
    default_tolerance,
    equivariance_error,
    equivariance_report,
    invariance_error,
    shift_equivariance_error,
    symmetrized_conv2d,
)


def test_random_conv_fails_p4_and_error_is_reported(gen):
    conv = nn.Conv2d(3, 4, 3, padding=1).double()
    x = torch.randn(2, 3, 9, 9, generator=gen, dtype=torch.float64)
    err = equivariance_error(conv, x, "p4")
    assert err > 0.1
    with pytest.raises(AssertionError, match=r"relative error .* at element rot\d+ exceeds tol"):
        assert_equivariant(conv, x, "p4")


def test_symmetrized_conv_is_exact_for_p4m(gen):
    conv = symmetrized_conv2d(3, 4, 5, "d4")
    x = torch.randn(2, 3, 11, 11, generator=gen, dtype=torch.float64)
    assert equivariance_error(conv, x, "p4m") < 1e-13
    report = assert_equivariant(conv, x, "p4m")
    assert len(report.errors) == 8
    # the same conv in float32 passes the float32 tolerance
    assert_equivariant(conv.float(), x.float(), "p4m")


def test_c4_symmetric_filter_fails_flips(gen):
    conv = symmetrized_conv2d(2, 2, 5, "c4")  # 3x3 C4 filters are D4 already
    x = torch.randn(1, 2, 9, 9, generator=gen, dtype=torch.float64)
    assert equivariance_error(conv, x, "p4") < 1e-13
    report = equivariance_report(conv, x, "p4m")
    assert report.error > 1e-3 and report.worst.reflection


def test_invariance(gen):
    x = torch.randn(2, 3, 9, 9, generator=gen, dtype=torch.float64)

    def pooled(t):
        return t.sum(dim=(-2, -1))

    assert_invariant(pooled, x, "p4m")
    assert invariance_error(lambda t: t[..., 0, :], x, "p4") > 0.1
    with pytest.raises(AssertionError, match="not invariant"):
        assert_invariant(lambda t: t[..., 0, :].sum(-1), x, "p4")


def test_regular_fields_declared_by_module(gen):
    from equilayers.groups import act_spatial

    w = torch.randn(3, 2, 5, 5, generator=gen, dtype=torch.float64)

    class Lift(nn.Module):
        in_rep, out_rep = "trivial", "regular"

        def forward(self, t):  # out[h] = t correlated with the filter moved by h
            outs = [nn.functional.conv2d(t, act_spatial(w, h), padding=2)
                    for h in get("d4").elements()]
            return torch.stack(outs, dim=2)

    x = torch.randn(1, 2, 9, 9, generator=gen, dtype=torch.float64)
    assert equivariance_error(Lift(), x, "d4") < 1e-13
    # a wrong rep (no fiber permutation) is caught, not silently accepted
    assert equivariance_error(Lift(), x, "d4", out_rep="trivial") > 0.1


def test_off_grid_elements_report_floor_and_need_tol(gen):
    iso = nn.Conv2d(1, 1, 5, padding=2, bias=False).double()
    with torch.no_grad():
        r = torch.arange(5, dtype=torch.float64) - 2
        iso.weight.copy_(torch.exp(-(r[:, None] ** 2 + r[None] ** 2) / 2))
    x = torch.randn(1, 1, 33, 33, generator=gen, dtype=torch.float64)
    G = get("so2")
    els = G.elements_at([30.0, 45.0])
    rep = equivariance_report(iso, x, G, elements=els)
    assert rep.approximate and 0 < rep.floor < 0.2
    assert rep.error < 3 * rep.floor
    with pytest.raises(ValueError, match="pass tol"):
        assert_equivariant(iso, x, G, elements=els)
    assert_equivariant(iso, x, G, elements=els, tol=3 * rep.floor)
    # a random (anisotropic) filter is worse than the floor by a wide margin
    with seeded_rng(0):
        rnd = nn.Conv2d(1, 1, 5, padding=2, bias=False).double()
    assert equivariance_report(rnd, x, G, elements=els).error > 3 * rep.floor


@pytest.mark.parametrize("group,small,big", [("ico", (1, 1, 4, 4, 4), (1, 1, 5, 5, 5)),
                                             ("so3", (1, 1, 3, 3, 3), (1, 1, 7, 7, 7)),
                                             ("c8", (1, 1, 4, 4), (1, 1, 9, 9))])
def test_an_output_with_nothing_inside_the_disk_is_refused_not_passed(group, small, big, gen):
    """Off-grid elements are compared inside the inscribed disk (ball), ``margin`` px in; an
    output with no pixel there (a 4^3 volume, or 3^3 whose radius is negative, which had
    admitted the voxels about the centre) had an error of 0, so a plain conv passed at any
    tolerance; now a ValueError names the size and the margin. The control: a larger input
    compares pixels, and the same conv fails."""
    from equilayers.groups import disk_mask
    from equilayers.groups._so3 import ball_mask

    nd = len(small) - 2
    with seeded_rng(0):
        conv = (nn.Conv3d if nd == 3 else nn.Conv2d)(1, 1, 3, padding=1).double()
    els = {"ico": lambda: get("ico").elements()[12:],  # the 48 off the voxel grid
           "so3": lambda: [get("so3").from_axis_angle((1.0, 2.0, 3.0), 0.7)],
           "c8": lambda: get("c8").elements()[1:2]}[group]()  # 45 degrees
    kw = dict(in_rep="trivial", out_rep="trivial", elements=els, tol=1e-12)
    with pytest.raises(ValueError, match=r"has no (voxel inside the inscribed ball|pixel "
                                         r"inside the inscribed disk) \(margin=2 px"):
        assert_equivariant(conv, torch.randn(small, generator=gen, dtype=torch.float64),
                           group, **kw)
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(conv, torch.randn(big, generator=gen, dtype=torch.float64),
                           group, **kw)
    assert not ball_mask(3, 3, 3, 2.0).any() and ball_mask(5, 5, 5, 2.0).sum() == 1
    assert not disk_mask(3, 3, 2.0).any() and disk_mask(9, 9, 2.0).any()


def test_off_grid_invariance_compares_every_logit(gen):
    """Off the grid the harness masks spatial outputs to the inscribed disk, never an
    invariant (B, K) output: a disk mask of the (B, K) array would keep logits 3..6 of 10
    only and pass a model whose other logits change. Here logit 0 reads a pixel near the
    corner (which a 45-degree turn moves away), the other nine are constant."""
    x = torch.randn(1, 1, 15, 15, generator=gen, dtype=torch.float64)

    def f(t):
        return torch.cat([t[:, 0, 2:3, 2], torch.ones(t.shape[0], 9, dtype=t.dtype)], 1)

    els = get("so2").elements_at([45.0])
    report = equivariance_report(f, x, "so2", out_rep="invariant", elements=els)
    assert report.error > 0.01 and report.floor == 0
    with pytest.raises(AssertionError, match="not invariant"):
        assert_invariant(f, x, "so2", elements=els, tol=1e-3)
    # the constant logits alone are invariant: the check is of logit 0
    assert invariance_error(lambda t: f(t)[:, 1:], x, "so2", elements=els) == 0


def test_default_tolerance_per_dtype(gen):
    """The documented defaults (1e-10 float64, 1e-5 float32, 1e-2 half), and they decide:
    a float32 map off by 1e-4 relative fails assert_equivariant without tol=, the identity
    (error 0 in float32) passes."""
    assert default_tolerance(torch.float64) == 1e-10
    assert default_tolerance(torch.float32) == 1e-5
    assert default_tolerance(torch.float16) == default_tolerance(torch.bfloat16) == 1e-2
    x = torch.randn(1, 1, 9, 9, generator=gen)

    def f(t):  # a float32 map whose p4 error is about 1e-4
        return t + 1e-4 * t.flip(-1)

    assert 1e-5 < equivariance_error(f, x, "p4") < 1e-3
    with pytest.raises(AssertionError, match="tol=1e-05"):
        assert_equivariant(f, x, "p4")
    assert_equivariant(lambda t: t.clone(), x, "p4")


def test_nan_output_is_reported_not_passed(gen):
    x = torch.randn(1, 1, 5, 5, generator=gen, dtype=torch.float64)
    with pytest.raises(AssertionError, match="nan"):
        assert_equivariant(lambda t: t * float("nan"), x, "p4")


def test_nan_at_one_element_is_the_worst_not_skipped(gen):
    """An output that is NaN for some transformed inputs only: NaN is the worst error (a
    plain max() over the elements keeps the first finite one, since nan > e is False, and
    would pass the map)."""
    x = torch.randn(1, 1, 5, 5, generator=gen, dtype=torch.float64)

    def f(t):  # the identity on x itself, NaN on its rotations
        return t if torch.equal(t, x) else t * float("nan")

    report = equivariance_report(f, x, "p4")
    assert math.isnan(report.error) and report.worst != get("p4").identity
    assert report.errors[get("p4").identity] == 0
    with pytest.raises(AssertionError, match="nan"):
        assert_equivariant(f, x, "p4")


def test_slot_indices_count_from_the_end_like_a_list(gen):
    """elements=[i] takes slot i of a finite group, and a negative i counts from the end as a
    list does (-|G| .. |G| - 1); beyond that range a ValueError names the slot range."""
    x = torch.randn(1, 1, 5, 5, generator=gen, dtype=torch.float64)
    p4 = get("p4")
    conv = nn.Conv2d(1, 1, 3, padding=1, bias=False).double()
    for i in (-1, -4, 3):
        report = equivariance_report(conv, x, p4, elements=[i])
        assert list(report.errors) == [p4.elements()[i]]
    for i in (-5, 4):
        with pytest.raises(ValueError, match=rf"elements\[i\]={i} .*\|G\|=4"):
            equivariance_report(conv, x, p4, elements=[i])


def test_bad_arguments(gen):
    x = torch.randn(1, 1, 5, 5, generator=gen, dtype=torch.float64)
    with pytest.raises(ValueError, match="valid forms"):
        equivariance_error(nn.Identity(), x, "p3m")
    with pytest.raises(ValueError, match="belongs to"):
        equivariance_error(nn.Identity(), x, "p4", elements=[get("d4").identity])
    # a rectangle is no bad input: a quarter turn maps it to W x H (tests/test_grid.py)
    assert equivariance_error(nn.Identity(), torch.randn(1, 1, 4, 6, generator=gen), "p4") == 0
    with pytest.raises(TypeError, match="tensor"):
        equivariance_error(nn.Identity(), [1, 2], "p4")
    with pytest.raises(ValueError, match="not a multiple of stride"):
        shift_equivariance_error(nn.Identity(), x, [(1, 0)], stride=2)


def test_shift_equivariance(gen):
    x = torch.randn(1, 2, 12, 12, generator=gen, dtype=torch.float64)

    def sub(t):
        return t[..., ::2, ::2]

    assert shift_equivariance_error(sub, x, [(2, 4), (-2, 6)], stride=2) == 0
    assert shift_equivariance_error(lambda t: t.mean((-2, -1)), x, [(1, 3)], invariant=True) \
        < 1e-15
    assert shift_equivariance_error(lambda t: t[..., 0, 0], x, [(1, 3)], invariant=True) > 0.1
    assert math.isnan(shift_equivariance_error(lambda t: t * math.nan, x, [(2, 2)], stride=2))


def test_shift_equivariance_refuses_logits_and_tuples_it_would_roll_over_batch_and_classes(gen):
    # an exactly shift-invariant classifier scored 1.55 with invariant=False: the (B, K)
    # logits were rolled over the batch and the classes; a tuple output was a deep error
    with seeded_rng(0):
        net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, padding_mode="circular"),
                            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 4)).double()
    x = torch.randn(3, 2, 8, 8, generator=gen, dtype=torch.float64)
    assert shift_equivariance_error(net, x, [(1, 2)], invariant=True) < 1e-13
    with pytest.raises(ValueError, match=r"shape \(3, 4\) has no 2 spatial dims.*invariant=True"):
        shift_equivariance_error(net, x, [(1, 2)])
    with pytest.raises(TypeError, match="f must return a tensor; got tuple"):
        shift_equivariance_error(lambda t: (t, t), x, [(1, 2)])
    with pytest.raises(TypeError, match="got dict"):
        shift_equivariance_error(lambda t: {"out": t}, x, [(1, 2)], invariant=True)


def test_shift_lists_refuse_a_flat_shift_and_an_empty_list(gen):
    # a flat (dy, dx) was read as the shifts (dy, dy) and (dx, dx); an empty list scored 0
    # (a check that cannot fail)
    x = torch.randn(1, 2, 8, 8, generator=gen, dtype=torch.float64)
    with pytest.raises(TypeError, match=r"flat sequence.*shifts=\[\(2, 4\)\]"):
        shift_equivariance_error(nn.Identity(), x, (2, 4))
    with pytest.raises(TypeError, match=r"flat sequence.*shifts=\[\(1, 2, 3\)\]"):
        shift_equivariance_error(nn.Identity(), x, (1, 2, 3))
    with pytest.raises(ValueError, match="shifts is empty"):
        shift_equivariance_error(nn.Identity(), x, [])
    assert shift_equivariance_error(nn.Identity(), x, [(2, 4)]) == 0.0


@pytest.mark.parametrize("flag", ["no", 0, None])
def test_shift_equivariance_invariant_is_a_bool(flag, gen):
    # invariant="no" was read as True by its truth value
    x = torch.randn(1, 2, 8, 8, generator=gen, dtype=torch.float64)
    with pytest.raises(TypeError, match=rf"invariant={flag!r} must be True or False"):
        shift_equivariance_error(nn.Identity(), x, [(2, 4)], invariant=flag)


def test_the_relative_error_divides_by_the_larger_side():
    # the definition docs/layers/metrics.md gives: ||f(g.x) - g.f(x)|| / max(||g.f(x)||,
    # ||f(g.x)||), at most 2. f reads pixel (0, 0) and twice pixel (-1, -1); the half turn
    # swaps them: f(x) = 1, f(g.x) = 2, so the error is 1 / 2 (1 / 1 with ||g.f(x)|| alone)
    x = torch.zeros(1, 1, 3, 3, dtype=torch.float64)
    x[..., 0, 0] = 1.0

    def f(t):
        return (t[..., 0, 0] + 2 * t[..., -1, -1]).reshape(-1, 1)

    assert invariance_error(f, x, "c2") == 0.5
    assert equivariance_error(f, x, "c2", out_rep="invariant") == 0.5
    # and with the sides swapped, f(x) = 2 > f(g.x) = 1: still 1 / 2, not 1 / 1 (a division
    # by one side, ||f(g.x)|| or ||g.f(x)||, gets one of the two orders wrong)
    assert invariance_error(lambda t: (2 * t[..., 0, 0] + t[..., -1, -1]).reshape(-1, 1), x,
                            "c2") == 0.5
    # f(g.x) = -g.f(x): the bound 2
    assert invariance_error(lambda t: (t[..., 0, 0] - t[..., -1, -1]).reshape(-1, 1), x,
                            "c2") == 2.0


@pytest.mark.parametrize("kw,match", [
    (dict(kind="Shift"), r"kind='Shift' must be one of 'group', 'shift'"),
    (dict(expect="exat"), r"expect='exat' must be one of"),
    (dict(tol=-1.0), r"tol=-1.0 must be a real number > 0"),
    (dict(fail_above=-1.0), r"fail_above=-1.0 must be a real number > 0"),
    (dict(group="p5"), r"unknown group='p5'"),
    (dict(dtype=torch.int64), r"dtype=torch.int64 must be a real floating torch.dtype"),
    (dict(kind="shift", shifts=(1, 2)), r"not a flat sequence of integers"),
    (dict(kind="shift", stride=0), r"stride=0 must be an integer or a pair of integers >= 1"),
    (dict(kind="shift", invariant=1), r"invariant=1 must be True or False"),
])
def test_a_case_with_a_bad_field_is_refused_when_built(kw, match):
    """A typo in a Case ran another check (kind="Shift" tested c1's identity and passed a
    zero-padded conv) or reversed one (a negative fail_above passed any negative control);
    now the Case raises when built. The control: the right kind fails that conv."""
    from equilayers.testing.cases import Case, run_case

    def conv():
        return nn.Conv2d(1, 1, 3, padding=1).double()

    with pytest.raises((TypeError, ValueError), match=match):
        Case("bad", conv, (1, 1, 9, 9), **kw)
    assert not run_case(Case("ok", conv, (1, 1, 9, 9), kind="shift")).passed


def test_an_empty_batch_is_refused_not_scored_zero(gen):
    """``equivariance_error``/``assert_equivariant`` on ``x[:0]`` measured 0.0 and passed a
    plain conv (the metrics refused it): a test whose batch is sliced empty certified any
    model. The control: the same conv on the batch fails."""
    conv = torch.nn.Conv2d(2, 2, 3).double()
    x = torch.randn(2, 2, 9, 9, generator=gen, dtype=torch.float64)
    assert equivariance_error(conv, x, "p4") > 0.1
    for measure in (equivariance_error, assert_equivariant, invariance_error,
                    assert_invariant):
        with pytest.raises(ValueError, match=r"x is empty \(shape \(0, 2, 9, 9\)\)"):
            measure(conv, x[:0], "p4")


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors is a no-op")
def test_an_empty_output_is_refused_not_scored_zero(gen):
    """A model with no outputs (``Linear(n, 0)``) scored 0.0 and passed ``assert_invariant``,
    as an empty batch did."""
    net = nn.Sequential(nn.Conv2d(2, 2, 3), nn.Flatten(), nn.Linear(98, 0)).double()
    x = torch.randn(2, 2, 9, 9, generator=gen, dtype=torch.float64)
    for measure in (invariance_error, assert_invariant):
        with pytest.raises(ValueError, match=r"f\(x\) is empty \(shape \(2, 0\)\)"):
            measure(net, x, "p4")


def _autocast(f):
    def run(t):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return f(t)
    return run


FIBERS = [("d4", "regular", {}, (16, 8, 8)), ("o", "regular", {}, (4, 3, 24)),
          ("so2", "harmonic", {"max_order": 2}, (8, 3, 5))]


@pytest.mark.parametrize("group,rep,kw,shape", FIBERS, ids=[f[0] for f in FIBERS])
def test_fibers_alone_through_a_function(group, rep, kw, shape, gen):
    """Fibers alone (B, C, F) measured through a function (as under torch.autocast), which
    declares no type: the undeclared 3-D tensor was read as a trivial image (H, W) = (C, F)
    and an exact GroupLinear scored 1.42, without a word; in_rep='regular' refused it (5-D
    only). Now the 3-D input is refused, asking for in_rep=, and a fiber rep name takes it.
    The control: a dense linear map of the fibers fails."""
    from equilayers.nn import GroupLinear

    with seeded_rng(0):
        lin = GroupLinear(shape[1], shape[1], group=group, **kw).double()
        dense = nn.Linear(shape[1] * shape[2], shape[1] * shape[2]).double()
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    assert equivariance_error(lin, x, group) < 1e-12  # the module declares its types
    ask = re.escape(f"3-D, shape {tuple(shape)}") + f".*in_rep='{rep}'"
    with pytest.raises(ValueError, match=ask):
        equivariance_error(lambda t: lin(t), x, group)
    assert equivariance_error(lambda t: lin(t), x, group, in_rep=rep) < 1e-12
    assert equivariance_error(lambda t: lin(t), x, group, in_rep=rep, out_rep=rep) < 1e-12
    low = _autocast(lin.float())
    assert equivariance_error(low, x.float(), group, in_rep=rep) < default_tolerance(
        torch.bfloat16)

    def dense_map(t):
        return dense(t.flatten(1)).view(t.shape)

    assert equivariance_error(dense_map, x, group, in_rep=rep) > 0.1


def test_an_invariant_fiber_mlp_through_autocast(gen):
    """The case table's d6 MLP ending in a fiber max pool (invariant), through an autocast
    wrapper: 0.66 before (the fibers read as an image); a clear error, then exact to bf16."""
    from equilayers.nn import GroupLinear, GroupPool, OnFibers

    with seeded_rng(0):
        mlp = nn.Sequential(GroupLinear(2, 6, group="d6"), nn.BatchNorm1d(6), nn.ReLU(),
                            GroupLinear(6, 3, group="d6"), OnFibers(GroupPool("max"))).eval()
    x = torch.randn(8, 2, 12, generator=gen)
    with pytest.raises(ValueError, match="in_rep='regular'"):
        equivariance_error(_autocast(mlp), x, "d6", out_rep="invariant")
    assert equivariance_error(_autocast(mlp), x, "d6", in_rep="regular",
                              out_rep="invariant") < default_tolerance(torch.bfloat16)


def test_three_d_tensors_name_their_reading(gen):
    """A fiber rep name on fibers of the wrong size is refused by name (not read as another
    type); an undeclared 3-D output of an image input asks for out_rep= ((B, H, W) map or
    fibers), and out_rep='trivial' measures the map (the control: a shifted mean fails)."""
    x = torch.randn(2, 3, 5, generator=gen, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"in_rep='regular' must have F=8 slots"):
        equivariance_error(lambda t: t, x, "d4", in_rep="regular")
    img = torch.randn(2, 3, 9, 9, generator=gen, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"the output \(3-D.*out_rep='trivial'"):
        equivariance_error(lambda t: t.mean(1), img, "p4")
    assert equivariance_error(lambda t: t.mean(1), img, "p4", out_rep="trivial") < 1e-13
    assert equivariance_error(lambda t: t.mean(1).roll(1, -1), img, "p4",
                              out_rep="trivial") > 0.1
