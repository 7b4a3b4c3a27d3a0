"""Restriction to subgroups and pooling over cosets: layouts, exact fiber equivariance for
every element (off-grid ones included), the quotient rep, bad input, module == functional."""

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from equilayers.functional import coset_pool, restrict
from equilayers.groups import act, act_fiber, fiber_size, get
from equilayers.groups._subgroups import (
    check_subgroup,
    coset_permutation,
    embed,
    restriction_index,
)
from equilayers.nn import CosetPool, GroupPool, Restrict
from equilayers.testing import equivariance_report

PAIRS = [("d4", "c4"), ("d4", "d1"), ("d4", "d2"), ("d4", "c2"), ("d8", "d4"), ("d8", "c2"),
         ("c8", "c4"), ("c8", "c2"), ("c8", "c1"), ("d6", "d3"), ("d6", "c3"), ("c16", "c4"),
         ("d16", "d2"), ("d4", "d4"), ("d3", "d1")]


def test_layouts():
    x = torch.arange(8.0).view(1, 1, 8, 1, 1)
    # D_N -> C_N: the rotations, then the flipped ones (a reshape; escnn's order too)
    assert restrict(x, "d4", "c4").flatten().tolist() == list(range(8))
    # C8 -> C4: field j holds r^j, r^(j+2), r^(j+4), r^(j+6)
    assert restrict(x, "c8", "c4").view(2, 4).tolist() == [[0, 2, 4, 6], [1, 3, 5, 7]]
    # D4 -> D1 (flips): field j holds r^j and m r^j = r^-j m
    assert restrict(x, "d4", "d1").view(4, 2).tolist() == [[0, 4], [1, 7], [2, 6], [3, 5]]
    # coset pooling of D4 over the flips: max over {r^j, r^j m}
    assert coset_pool(x, "d4", "d1").flatten().tolist() == [4, 5, 6, 7]
    assert coset_pool(x, "d4", "c4", "mean").flatten().tolist() == [1.5, 5.5]
    assert fiber_size("d4", "quotient:d1") == 4 and fiber_size("d8", "quotient:c4") == 4


@pytest.mark.parametrize("group,sub", PAIRS)
def test_restriction_is_exact_for_every_element(group, sub, gen):
    """Fiber level (the maps act per pixel, so the spatial action commutes): every element of
    H, off the grid too, acting on the input as the element of G it is."""
    grp, h = get(group), get(sub)
    x = torch.randn(2, 3, int(grp.order), 1, 1, generator=gen, dtype=torch.float64)
    idx = restriction_index(grp, h)
    assert sorted(idx.tolist()) == list(range(int(grp.order)))  # a permutation
    for g in h.elements():
        lhs = restrict(act_fiber(x, embed(g, grp), "regular"), grp, h)
        rhs = act_fiber(restrict(x, grp, h), g, "regular")
        assert torch.equal(lhs, rhs), (group, sub, g)


@pytest.mark.parametrize("group,sub", PAIRS)
@pytest.mark.parametrize("reduction", ["max", "mean"])
def test_coset_pool_is_exact_for_every_element(group, sub, reduction, gen):
    grp = get(group)
    x = torch.randn(2, 3, int(grp.order), 1, 1, generator=gen, dtype=torch.float64)
    rep = f"quotient:{sub}"
    for g in grp.elements():
        lhs = coset_pool(act_fiber(x, g, "regular"), grp, sub, reduction)
        rhs = act_fiber(coset_pool(x, grp, sub, reduction), g, rep)
        torch.testing.assert_close(lhs, rhs, rtol=0, atol=1e-15)


def test_quotient_rep_is_a_group_action():
    """``quotient:K`` is a permutation action: identity, composition, and for K = c1 the
    regular one."""
    for group, sub in (("d4", "d1"), ("d8", "c2"), ("c8", "c4"), ("d6", "d3")):
        grp = get(group)
        els = grp.elements()
        assert torch.equal(coset_permutation(grp.identity, sub),
                           torch.arange(int(grp.order) // int(get(sub).order)))
        for a in els:
            for b in els[::3]:
                pa, pb, pab = (coset_permutation(a, sub), coset_permutation(b, sub),
                               coset_permutation(a * b, sub))
                # (a . (b . f))[j] = f[pb[pa[j]]]
                assert torch.equal(pb[pa], pab)
    for g in get("d4").elements():
        assert torch.equal(coset_permutation(g, "c1"), get("d4").regular_permutation(g))


def test_coset_pool_over_the_group_is_group_pool(gen):
    x = torch.randn(2, 3, 8, 5, 5, generator=gen)
    torch.testing.assert_close(CosetPool("d4", "d4")(x)[:, :, 0], GroupPool()(x))


def test_harmonic_restriction_is_the_identity(gen):
    x = torch.randn(2, 3, 5, 7, 7, generator=gen, dtype=torch.float64)
    assert restrict(x, "o2", "so2", "harmonic") is x
    assert Restrict("d8", "c4", rep="harmonic")(x) is x
    # an O(2) harmonic field restricted to SO(2): rotations act by the same matrices
    for g in get("so2").elements_at([30.0, 90.0, 200.0]):
        torch.testing.assert_close(act(x, embed(g, "o2"), "harmonic"), act(x, g, "harmonic"))


def test_module_equals_functional_grad_and_noncontiguous(gen):
    x = torch.randn(2, 3, 16, 6, 5, generator=gen, dtype=torch.float64)
    xt = x.transpose(-1, -2)  # non-contiguous
    for sub in ("d4", "c2", "d1"):
        torch.testing.assert_close(Restrict("d8", sub)(xt), restrict(xt, "d8", sub))
        for red in ("max", "mean"):
            torch.testing.assert_close(CosetPool("d8", sub, red)(xt),
                                       coset_pool(xt, "d8", sub, red))
    leaf = torch.randn(1, 2, 8, 3, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: restrict(t, "d4", "d1"), (leaf,))
    assert torch.autograd.gradcheck(lambda t: coset_pool(t, "d4", "d1", "mean"), (leaf,))
    assert torch.autograd.gradcheck(lambda t: coset_pool(t, "d4", "c2"), (leaf,))


def test_empty_batch_state_dict_repr_and_to(gen):
    for m, f in ((Restrict("d4", "c2"), 8), (CosetPool("c8", "c2", "mean"), 8)):
        out = m(torch.randn(0, 3, f, 5, 5))
        assert out.shape[0] == 0
        # the slot index is an integer table, not a buffer (nn/_tables.py)
        assert m.state_dict() == {} and not dict(m.named_buffers())
        assert m.index.dtype == torch.long
        assert m.double()(torch.randn(1, 3, f, 5, 5, dtype=torch.float64)).dtype == \
            torch.float64
    assert repr(Restrict("d4", "d1")) == "Restrict('d4', 'd1')"
    assert repr(Restrict("o2", "so2", "harmonic")) == "Restrict('o2', 'so2', rep='harmonic')"
    assert repr(CosetPool("d4", "c4", "mean")) == "CosetPool('d4', 'c4', reduction='mean')"
    meta = Restrict("d4", "d1").to("meta")
    assert meta.index.is_meta
    # left on meta (as torch.func's ensembling recipe leaves its base copy), its forward builds
    # the table for the input's device on a throwaway copy; to_empty() materializes it
    for m in (Restrict("d4", "d1"), CosetPool("d4", "d1")):
        x = torch.randn(2, 3, 8, 5, 5, generator=gen)
        on_meta = copy.deepcopy(m).to("meta")
        torch.testing.assert_close(on_meta(x), m(x), rtol=0, atol=0)
        assert on_meta.index.is_meta
        assert torch.equal(on_meta.to_empty(device="cpu").index, m.index)


@pytest.mark.parametrize("ctor,match", [
    (lambda: Restrict("d4", "c3"), r"Restrict: c3 is not a subgroup of d4"),
    (lambda: Restrict("c8", "d4"), r"d4 is not a subgroup of c8 \(a dihedral subgroup needs"),
    (lambda: Restrict("c6", "c4"), r"the subgroups of c6 here are c1, c2, c3, c6;"),
    (lambda: Restrict("d4", "c3"), r"the subgroups of d4 here are c1, c2, c4, d1, d2, d4;"),
    (lambda: Restrict("so2", "c4"), r"group='so2' is continuous and has no regular fields.*"
                                    r"rep='harmonic'"),
    (lambda: Restrict("d4", "c4", rep="trivial"), r"rep='trivial' must be one of "),
    (lambda: CosetPool("d4", "c4", "sum"), r"reduction='sum' must be one of"),
    (lambda: CosetPool("o2", "so2"), r"group='o2' is continuous"),
    (lambda: Restrict("d4", "bogus"), r"Restrict: unknown subgroup='bogus'"),
])
def test_bad_arguments(ctor, match):
    with pytest.raises(ValueError, match=match):
        ctor()


def test_bad_inputs(gen):
    with pytest.raises(ValueError, match=r"Restrict expects a regular d4 fiber of 8 slots.*"
                                         r"\(2, 3, 4, 5, 5\)"):
        Restrict("d4", "c4")(torch.randn(2, 3, 4, 5, 5, generator=gen))
    with pytest.raises(ValueError, match=r"CosetPool expects a 5-D"):
        CosetPool("d4", "c4")(torch.randn(2, 8, 5, 5, generator=gen))
    with pytest.raises(ValueError, match=r"harmonic fiber of 2M\+1 \(odd\) slots"):
        restrict(torch.randn(2, 3, 4, 5, 5, generator=gen), "o2", "so2", "harmonic")
    with pytest.raises(TypeError, match="expects a tensor"):
        coset_pool([1.0], "d4", "c4")
    with pytest.raises(TypeError, match=r"CosetPool: x has dtype torch.int64.*x\.float\(\)"):
        CosetPool("d4", "c4")(torch.ones(2, 3, 8, 5, 5, dtype=torch.long))
    with pytest.raises(TypeError, match=r"coset_pool: subgroup=None must be a group name"):
        coset_pool(torch.randn(2, 3, 8, 5, 5, generator=gen), "d4", None)
    with pytest.raises(ValueError, match=r"rep 'quotient:c3'.*c3 is not a subgroup of d4"):
        act(torch.randn(1, 1, 4, 3, 3), get("d4").identity, "quotient:c3")
    with pytest.raises(ValueError, match=r"'quotient:d1' fiber of d4 has \|G\|/\|K\|=4 slots"):
        act(torch.randn(1, 1, 3, 3, 3), get("d4").identity, "quotient:d1")


def test_harness_in_group(gen):
    x = torch.randn(2, 3, 8, 7, 7, generator=gen, dtype=torch.float64)
    assert equivariance_report(Restrict("d4", "c4"), x, "c4").error == 0  # declared in_group
    assert equivariance_report(lambda t: restrict(t, "d4", "c4"), x, "c4",
                               in_group="d4").error == 0
    with pytest.raises(ValueError, match="equivariance_report: d8 is not a subgroup of d4"):
        equivariance_report(lambda t: t, x, "d8", in_group="d4")
    with pytest.raises(ValueError, match="not a subgroup"):
        check_subgroup("c4", "d1")


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 12), st.booleans(), st.data())
def test_random_subgroups_property(n, dihedral, data):
    """Any N, any divisor M, cyclic or dihedral subgroups: restriction is a permutation whose
    fields are regular subgroup fields, coset pooling commutes with every element."""
    grp = get(("d" if dihedral else "c") + str(n))
    m = data.draw(st.sampled_from([d for d in range(1, n + 1) if n % d == 0]))
    sub = get(("d" if dihedral and data.draw(st.booleans()) else "c") + str(m))
    x = torch.randn(1, 2, int(grp.order), 1, 1, dtype=torch.float64)
    for h in sub.elements():
        assert torch.equal(restrict(act_fiber(x, embed(h, grp), "regular"), grp, sub),
                           act_fiber(restrict(x, grp, sub), h, "regular"))
    for g in grp.elements():
        assert torch.equal(coset_pool(act_fiber(x, g, "regular"), grp, sub),
                           act_fiber(coset_pool(x, grp, sub), g, f"quotient:{sub.name}"))


def test_an_index_written_in_place_is_an_error(gen):
    """Restrict's and CosetPool's slot index is fixed by the constructor: a write to it in
    place (which bumps its version) is a ``RuntimeError`` naming the table, not a silently
    wrong output; the untouched module (the control) runs."""
    for m in (Restrict("d4", "c2"), CosetPool("c8", "c2", "mean")):
        x = torch.randn(1, 3, 8, 5, 5, generator=gen)
        m(x)
        m.index.copy_(m.index.flip(-1))
        with pytest.raises(RuntimeError, match="integer table 'index'"):
            m(x)


def test_functional_and_module_refuse_what_the_other_refuses(gen):
    """The functional coset_pool refuses an integer map (as CosetPool does), and the module
    Restrict refuses an even harmonic fiber (as restrict does); controls: the valid ones run."""
    with pytest.raises(TypeError, match=r"coset_pool: x has dtype torch.int64.*x\.float\(\)"):
        coset_pool(torch.ones(2, 3, 8, 5, 5, dtype=torch.long), "d4", "c4")
    with pytest.raises(ValueError, match=r"Restrict expects a harmonic fiber of 2M\+1 \(odd\)"):
        Restrict("o2", "so2", "harmonic")(torch.randn(2, 3, 4, 5, 5, generator=gen))
    assert coset_pool(torch.ones(2, 3, 8, 5, 5), "d4", "c4").shape == (2, 3, 2, 5, 5)
    x = torch.randn(2, 3, 5, 5, 5, generator=gen)
    assert Restrict("o2", "so2", "harmonic")(x) is x


def test_restrict_and_coset_pool_take_a_device_as_torch_nn_modules_do(gen):
    """skip_init refused them ('Module must support a device arg'); the table is built on the
    device given, or filled when a meta-built module moves off the meta device."""
    from torch.nn.utils import skip_init

    from equilayers.nn import CosetPool, Restrict

    x = torch.randn(2, 3, 8, 5, 5, generator=gen)
    for cls, args in ((Restrict, ("d4", "d1")), (CosetPool, ("d4", "d1"))):
        assert torch.equal(skip_init(cls, *args)(x), cls(*args)(x))
        assert cls(*args, device="meta").index.is_meta
        assert cls(*args, device="cpu").index.device.type == "cpu"


def test_harmonic_restriction_of_so3_fields_runs_on_their_volumes(gen):
    """``Restrict('so3', 'ico', rep='harmonic')`` declared a 6-D in_type, but its forward
    refused 6-D maps ("expects a 5-D map") and returned a wrong 5-D one unchanged. Now the
    identity on ``(B, C, (L+1)^2, D, H, W)`` (ico's elements act on SO(3)'s harmonic fields
    by the same Wigner-D matrices: checked), refusing other maps; the control, a layer that
    doubles one order-1 slot, fails the harness."""
    from equilayers.testing import equivariance_error

    x = torch.randn(2, 3, 9, 3, 3, 3, generator=gen, dtype=torch.float64)
    for group, sub in (("so3", "ico"), ("o3", "ih"), ("o3", "so3"), ("o3", "ico")):
        m = Restrict(group, sub, rep="harmonic")
        assert m(x) is x and restrict(x, group, sub, "harmonic") is x
        assert m.in_type.tensor_ndim == m.out_type.tensor_ndim == 6
    for h in get("ih").elements()[::17]:  # the maths: the same matrices
        torch.testing.assert_close(act(x, embed(h, "o3"), "harmonic"), act(x, h, "harmonic"))
    m = Restrict("so3", "ico", rep="harmonic")
    big = torch.randn(1, 1, 9, 7, 7, 7, generator=gen, dtype=torch.float64)
    assert equivariance_error(m, big, "ico") < 1e-10
    flipped = Restrict("so3", "ico", rep="harmonic")
    signs = torch.tensor([1.0, 2, 1, 1, 1, 1, 1, 1, 1], dtype=torch.float64)
    flipped.register_forward_hook(lambda mod, i, o: o * signs.view(-1, 1, 1, 1))
    assert equivariance_error(flipped, big, "ico") > 0.1
    with pytest.raises(ValueError, match=r"Restrict expects a 6-D \(B, C, F, D, H, W\)"):
        m(torch.randn(1, 1, 9, 5, 5, generator=gen))
    with pytest.raises(ValueError, match=r"restrict expects a harmonic so3 fiber of \(L\+1\)"
                                         r"\^2 slots"):
        restrict(torch.randn(1, 1, 5, 3, 3, 3, generator=gen), "so3", "ico", "harmonic")


def test_harmonic_restriction_is_refused_for_groups_without_harmonic_fields(gen):
    """``restrict(x, 'o', 'c4z', 'harmonic')`` returned ``x``: the cube's groups have no
    harmonic fields here. Refused, naming the group (the control: ico has them)."""
    x = torch.randn(1, 1, 4, 3, 3, 3, generator=gen)
    with pytest.raises(ValueError, match=r"restrict: group='o' has no harmonic fields"):
        restrict(x, "o", "c4z", "harmonic")
    with pytest.raises(ValueError, match=r"Restrict: subgroup='o' has no harmonic fields.*"
                                         r"rep='regular'"):
        Restrict("so3", "o", rep="harmonic")
    assert restrict(x, "so3", "ico", "harmonic") is x


def test_harmonic_restriction_of_planar_volumes(gen):
    """Volumes of planar harmonic fields (``FieldType.harmonic('o2', M, spatial_dims=3)``, as
    ``SteerableConv3d(..., group='so2')`` gives) could not be restricted. The functional takes
    them; the module with ``spatial_dims=3`` (as the harmonic modules), and its default
    refuses them naming the fix (the control: images as before)."""
    from equilayers.groups import FieldType

    v = torch.randn(2, 3, 5, 3, 4, 4, generator=gen, dtype=torch.float64)
    assert restrict(v, "o2", "so2", "harmonic") is v
    m = Restrict("o2", "so2", rep="harmonic", spatial_dims=3)
    assert m(v) is v and m.in_type == FieldType.harmonic("o2", spatial_dims=3)
    assert m.out_type == FieldType.harmonic("so2", spatial_dims=3)
    assert repr(m) == "Restrict('o2', 'so2', rep='harmonic', spatial_dims=3)"
    with pytest.raises(ValueError, match=r"expects a 5-D .*build it with spatial_dims=3"):
        Restrict("o2", "so2", rep="harmonic")(v)
    with pytest.raises(ValueError, match=r"Restrict: spatial_dims=3 is for harmonic fields"):
        Restrict("d4", "c4", spatial_dims=3)
    with pytest.raises(ValueError, match=r"spatial_dims"):
        Restrict("o2", "so2", rep="harmonic", spatial_dims=4)
    with pytest.raises(ValueError, match=r"harmonic fiber of 2M\+1 \(odd\) slots"):
        m(torch.randn(2, 3, 4, 3, 4, 4, generator=gen))
    x = torch.randn(2, 3, 5, 4, 4, generator=gen)
    assert Restrict("o2", "so2", rep="harmonic")(x) is x


def test_a_restrict_pickled_before_spatial_dims_still_runs(gen):
    """A ``Restrict`` pickled whole (``torch.save(model)``) before ``spatial_dims`` has no
    ``_spatial_dims``: its repr (every Restrict) and a harmonic one's forward raised
    ``AttributeError``. It now reads the group's spatial dims, as ``spatial_dims=None``
    builds today: same repr, outputs and refusals as a module built now. The control: a
    module built with ``spatial_dims=3`` keeps its own (the default is only a fallback)."""
    import pickle

    cases = ((("d4", "c2"), torch.randn(2, 3, 8, 5, 5, generator=gen)),
             (("o", "c4z"), torch.randn(1, 2, 24, 3, 3, 3, generator=gen)),
             (("so2", "c4", "harmonic"), torch.randn(1, 2, 5, 4, 4, generator=gen)),
             (("so3", "ico", "harmonic"), torch.randn(1, 2, 9, 3, 3, 3, generator=gen)))
    for args, x in cases:
        m = Restrict(*args)
        state = m.__getstate__()
        del state["_spatial_dims"]  # what a pickle from before spatial_dims holds
        old = Restrict.__new__(Restrict)
        old.__setstate__(state)
        for back in (old, pickle.loads(pickle.dumps(old))):
            assert "_spatial_dims" not in back.__dict__
            assert repr(back) == repr(m)
            torch.testing.assert_close(back(x), m(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"expects a 5-D .*build it with spatial_dims=3"):
        old_planar = Restrict.__new__(Restrict)
        state = Restrict("o2", "so2", rep="harmonic").__getstate__()
        del state["_spatial_dims"]
        old_planar.__setstate__(state)
        old_planar(torch.randn(1, 1, 5, 3, 3, 3, generator=gen))
    volume = Restrict("o2", "so2", rep="harmonic", spatial_dims=3)
    assert repr(pickle.loads(pickle.dumps(volume))).endswith("spatial_dims=3)")
