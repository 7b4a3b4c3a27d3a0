"""``LiftingConv2d`` / ``GroupConv2d`` (and the transposed twins) on the steerable basis: shapes
and the functional twins, the bias, gradcheck, bad arguments and inputs, the off-grid warning,
state_dict, meta device, export, compile, the docs' snippet, even kernels."""

import pytest
import torch
from conftest import doc_code, seeded_rng

import equilayers.nn as enn
from equilayers.functional import steerable_basis, steerable_conv2d
from equilayers.testing import assert_equivariant


# --- LiftingConv2d / GroupConv2d with the steerable basis ---------------------------------
def _lift(group="so2", m=2, **kw):
    from equilayers.nn import LiftingConv2d
    return LiftingConv2d(2, 3, 5, padding=2, group=group, max_order=m, **kw)


def _gc(group="so2", m=2, **kw):
    from equilayers.nn import GroupConv2d
    return GroupConv2d(3, 2, 3, padding=1, group=group, max_order=m, **kw)


@pytest.mark.parametrize("group,m,basis,fiber,nb_pixel", [
    ("so2", 2, None, 5, None), ("o2", 1, None, 3, None), ("c8", None, None, 8, None),
    ("d8", None, None, 16, None), ("c16", None, None, 16, None), ("c5", None, None, 5, None),
    ("c4", None, "harmonic", 4, 4 * 9), ("d4", None, "harmonic", 8, 8 * 9),
    ("c8", 2, None, 5, None),
])
def test_module_shapes_equal_functional(group, m, basis, fiber, nb_pixel, gen):
    from equilayers.functional import group_conv2d, lifting_conv2d
    from equilayers.nn import GroupConv2d, LiftingConv2d

    kw = {} if basis is None else {"basis": basis}
    lift = LiftingConv2d(2, 3, 5, stride=2, padding=2, group=group, max_order=m,
                         dtype=torch.float64, **kw)
    conv = GroupConv2d(3, 4, 3, padding="same", padding_mode="reflect", groups=1,
                       group=group, max_order=m, dtype=torch.float64, **kw)
    assert lift.basis == conv.basis == "harmonic" and lift.fiber_out == fiber
    assert lift.weight.dim() == 3 and "filter_basis" not in lift.state_dict()
    if nb_pixel is not None:  # fewer parameters than the pixel basis
        assert conv.weight.shape[-1] < nb_pixel
    x = torch.randn(2, 2, 11, 11, generator=gen, dtype=torch.float64)
    y = lift(x)
    assert y.shape == (2, 3, fiber, 6, 6)
    torch.testing.assert_close(y, lifting_conv2d(x, lift.weight, lift.bias, 2, 2, group=group,
                                                 kernel_size=5, max_order=m))
    z = conv(y)
    assert z.shape == (2, 4, fiber, 6, 6)
    torch.testing.assert_close(z, group_conv2d(y, conv.weight, conv.bias, 1, "same",
                                               padding_mode="reflect", group=group,
                                               kernel_size=3, max_order=m))


def test_bias_on_order0_only_and_per_field(gen):
    from equilayers.nn import LiftingConv2d
    so2 = _lift(bias=True, dtype=torch.float64)
    c8 = LiftingConv2d(2, 3, 3, group="c8", dtype=torch.float64)
    x = torch.zeros(1, 2, 7, 7, dtype=torch.float64)
    y = so2(x)
    torch.testing.assert_close(y[0, :, 0, 0, 0], so2.bias)
    assert torch.all(y[:, :, 1:] == 0)
    torch.testing.assert_close(c8(x)[0, :, :, 0, 0], c8.bias[:, None].expand(3, 8))


def test_functional_bias_goes_to_slot_0_only(gen):
    """steerable_conv2d(bias=b) adds b[o] to the invariant slot a_0 of output field o and
    leaves the orders m >= 1 alone, so the conv stays SO(2)-equivariant; a bias on every slot
    (the negative control) is not: it is not rotated with the pairs (c_m, s_m)."""
    basis = steerable_basis("so2", "trivial", "harmonic", 5, out_order=2, dtype=torch.float64)
    w = torch.randn(3, 2, basis.shape[0], generator=gen, dtype=torch.float64)
    bias = torch.randn(3, generator=gen, dtype=torch.float64)
    x = torch.randn(2, 2, 9, 9, generator=gen, dtype=torch.float64)
    y, y0 = steerable_conv2d(x, w, basis, bias, padding=2), steerable_conv2d(x, w, basis, padding=2)
    torch.testing.assert_close(y[:, :, 0], y0[:, :, 0] + bias[None, :, None, None])
    torch.testing.assert_close(y[:, :, 1:], y0[:, :, 1:], rtol=0, atol=0)
    assert_equivariant(lambda t: steerable_conv2d(t, w, basis, bias, padding=2), x, "so2",
                       in_rep="trivial", out_rep="harmonic")
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(lambda t: steerable_conv2d(t, w, basis, padding=2)
                           + bias.view(1, -1, 1, 1, 1), x, "so2", in_rep="trivial",
                           out_rep="harmonic")


def test_gradcheck_module_path(gen):
    from equilayers.functional import group_conv2d, lifting_conv2d
    x = torch.randn(1, 1, 5, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    lift = _lift("c8", None, dtype=torch.float64)
    w = torch.randn(1, 1, lift.weight.shape[-1], generator=gen, dtype=torch.float64,
                    requires_grad=True)
    b = torch.randn(1, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda t, ww, bb: lifting_conv2d(t, ww, bb, padding=2, group="c8", kernel_size=5),
        (x, w, b))
    h = torch.randn(1, 1, 3, 5, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    conv = _gc("o2", 1, dtype=torch.float64)
    w2 = torch.randn(1, 1, conv.weight.shape[-1], generator=gen, dtype=torch.float64,
                     requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda t, ww, bb: group_conv2d(t, ww, bb, padding=1, group="o2", kernel_size=3,
                                       max_order=1), (h, w2, b))


@pytest.mark.parametrize("ctor,match", [
    (lambda: _lift("so2", -1), r"max_order=-1 must be an integer >= 0"),
    (lambda: _lift("so2", None), r"'so2' is continuous.*max_order=M"),
    (lambda: _lift("d4", 2, basis="pixel"), r"max_order=2 asks for harmonic.*basis='harmonic'"),
    (lambda: _lift("c8", None, basis="pixel"), r"'c8' has rotations off the pixel grid"),
    (lambda: _lift("o2", 1, basis="pixel"), r"'o2' has rotations off the pixel grid"),
    (lambda: _lift("so2", 1, in_max_order=1), r"in_max_order=1 is for group convs"),
    (lambda: _gc("so2", 1, in_max_order=-2), r"in_max_order=-2 must be an integer >= 0"),
])
def test_module_bad_arguments(ctor, match):
    with pytest.raises(ValueError, match=match):
        ctor()


def test_module_bad_inputs(gen):
    conv = _gc("so2", 2)
    with pytest.raises(ValueError, match=r"2\*in_max_order\+1=5 slots.*\(1, 3, 3, 6, 6\).*"
                                         r"set in_max_order"):
        conv(torch.randn(1, 3, 3, 6, 6, generator=gen))
    with pytest.raises(ValueError, match=r"regular fiber of \|G\|=8.*\(1, 3, 5, 6, 6\)"):
        _gc("c8", None)(torch.randn(1, 3, 5, 6, 6, generator=gen))
    from equilayers.functional import lifting_conv2d
    with pytest.raises(ValueError, match="needs kernel_size=k"):
        lifting_conv2d(torch.randn(1, 2, 6, 6), torch.randn(3, 2, 10), group="so2",
                       max_order=1)
    with pytest.raises(ValueError, match=r"has 7 elements; got weight \(3, 2, 10\)"):
        lifting_conv2d(torch.randn(1, 2, 6, 6), torch.randn(3, 2, 10), group="o2",
                       max_order=2, kernel_size=5)


def test_offgrid_warning_names_grid_subgroup(gen):
    conv = _gc("c8", None, stride=2)
    with pytest.warns(UserWarning, match=r"\(c8\) is not exactly equivariant even on its grid "
                                         r"subgroup c4"):
        conv(torch.randn(1, 3, 8, 10, 10, generator=gen))
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _gc("c8", None, stride=2)(torch.randn(1, 3, 8, 11, 11, generator=gen))  # odd: exact


def test_state_dict_train_eval_and_expanded_filter(gen):
    a, b = _gc("so2", 2), _gc("so2", 2)
    sd = a.state_dict()
    assert set(sd) == {"weight", "bias"}
    a.eval()
    assert set(a.state_dict()) == set(sd)
    b.load_state_dict(sd)
    b.eval()
    x = torch.randn(1, 3, 5, 7, 7, generator=gen)
    with torch.no_grad():
        y = a(x)
        f1 = a.expanded_filter()
        torch.testing.assert_close(b(x), y)
        a.weight.data.add_(1.0)  # no version bump; nothing cached, so it is seen
        assert not torch.equal(a.expanded_filter(), f1)
        torch.testing.assert_close(a.expanded_filter(), a._expand())
    a.train()
    a(x).sum().backward()
    assert a.weight.grad is not None and a.weight.grad.abs().sum() > 0


def test_meta_device_and_double(gen):
    m = _lift("so2", 1, device="meta")
    assert m.weight.is_meta and m.filter_basis.is_meta
    m2 = _lift("d8", None).double()
    assert m2.filter_basis.dtype == torch.float64
    assert m2(torch.randn(1, 2, 7, 7, generator=gen, dtype=torch.float64)).dtype == torch.float64


def test_export_steerable_layers(gen):
    import equilayers
    from equilayers.nn import GroupConv2d, GroupPool, LiftingConv2d
    for model, x in (
        (torch.nn.Sequential(LiftingConv2d(1, 3, 5, padding=2, group="c8"), torch.nn.ReLU(),
                             GroupConv2d(3, 2, 3, padding=1, group="c8"), GroupPool()),
         torch.randn(2, 1, 9, 9, generator=gen, dtype=torch.float64)),
        (torch.nn.Sequential(LiftingConv2d(1, 3, 5, padding=2, group="so2", max_order=2),
                             GroupConv2d(3, 2, 3, stride=2, padding=1, group="so2",
                                         max_order=1, in_max_order=2)),
         torch.randn(2, 1, 9, 9, generator=gen, dtype=torch.float64)),
    ):
        model = model.double().eval()
        exported = equilayers.export(model)
        for m in exported.modules():
            assert type(m).__module__.startswith("torch.nn"), type(m)
        torch.testing.assert_close(exported(x), model(x), rtol=1e-12, atol=1e-12)


def test_demo_signatures():
    from equilayers.demo import _harmonic_cnn
    net = _harmonic_cnn(4, max_order=2)
    assert net(torch.randn(2, 1, 29, 29)).shape == (2, 10)


def test_torch_compile_fullgraph_so2(gen):
    from equilayers.functional import norm_nonlinearity
    from equilayers.nn import NormPool
    lift, conv, pool = _lift("so2", 1), _gc("so2", 1), NormPool(1)

    def f(t):
        return pool(conv(norm_nonlinearity(lift(t), None, 1)))

    x = torch.randn(1, 2, 9, 9, generator=gen)
    compiled = torch.compile(f, fullgraph=True, backend="eager")
    torch.testing.assert_close(compiled(x), f(x))


def test_readme_snippet_runs():
    exec(doc_code("docs/layers/steerable.md", "The math"), {})


@pytest.mark.parametrize("make,shape,group", [
    (lambda k, **kw: enn.LiftingConv2d(1, 2, k, group="so2", max_order=1, **kw),
     (2, 1, 9, 9), "so2"),
    (lambda k, **kw: enn.GroupConv2d(2, 2, k, group="c8", **kw), (2, 2, 8, 9, 9), "c4"),
    (lambda k, **kw: enn.GroupConv2d(2, 2, k, group="d4", max_order=1, **kw), (2, 2, 3, 9, 9),
     "d4"),
    (lambda k, **kw: enn.GroupConvTranspose2d(2, 2, k, group="c8", **kw), (2, 2, 8, 5, 5),
     "c4"),
    (lambda k, **kw: enn.LiftingConvTranspose2d(1, 2, k, group="o2", max_order=1, **kw),
     (2, 1, 5, 5), "o2"),
])
def test_even_kernel_on_the_steerable_basis_turns_with_the_grid(make, shape, group, gen):
    """An even kernel is sampled around the point between its four middle pixels (once it
    was sampled about an off-centre pixel and off by ~1 at 90 degrees, then refused): exact
    (float64) on the grid's quarter turns and flips with symmetric padding; the control:
    ``padding="same"``, which pads an even kernel unevenly, is not (and warns)."""
    from equilayers.testing import equivariance_error
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    with seeded_rng(0):
        exact = make(4, padding=1).double()
    assert equivariance_error(exact, x, group) < 1e-12
    if "Transpose" in type(exact).__name__:
        return  # (a transposed conv takes no padding="same")
    with seeded_rng(0):
        uneven = make(4, padding="same").double()
    with pytest.warns(UserWarning, match="not exactly equivariant"):
        assert equivariance_error(uneven, x, group) > 1e-3


def test_even_kernel_pixel_basis_stays_allowed(gen):
    """The fix offered for c4/d4 (full k x k filters) works: an even pixel filter is rotated
    exactly by rot90 (with its padding placed symmetrically), so it stays allowed."""
    conv = enn.LiftingConv2d(1, 2, 4, padding=0, group="p4").double()
    x = torch.randn(1, 1, 9, 9, generator=gen, dtype=torch.float64)
    assert_equivariant(conv, x, "p4", in_rep="trivial", out_rep="regular")
