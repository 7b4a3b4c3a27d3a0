"""NormNonlinearity's thresholding init, GatedNonlinearity's separate gates,
FourierNonlinearity and NormMaxPool: values, shapes, gradients, module == functional,
state_dict, and the measured off-sample bound of the Fourier nonlinearity."""

import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from equilayers import functional as EF
from equilayers import nn as enn
from equilayers.groups import get
from equilayers.groups._actions import act_fiber, harmonic_matrix


def _x(gen, shape=(2, 3, 5, 6, 6)):
    return torch.randn(shape, generator=gen, dtype=torch.float64)


# --- NormNonlinearity: thresholds at init -------------------------------------------------

def test_norm_relu_thresholds_at_init(gen):
    m = enn.NormNonlinearity(3, 2, dtype=torch.float64)
    assert (m.bias[:, 1:] == -1).all() and (m.bias[:, 0] == 0).all()
    assert (enn.NormNonlinearity(3, 2, order0="norm").bias == -1).all()
    assert (enn.NormNonlinearity(3, 2, threshold=0.25).bias[:, 1:] == -0.25).all()
    x = _x(gen)
    y = m(x)
    mag = x[:, :, 1:].unflatten(2, (2, 2)).pow(2).sum(3).add(1e-6).sqrt()
    want = x[:, :, 1:].unflatten(2, (2, 2)) * (torch.relu(mag - 1) / mag).unsqueeze(3)
    torch.testing.assert_close(y[:, :, 1:], want.flatten(2, 3))
    torch.testing.assert_close(y[:, :, 0], torch.relu(x[:, :, 0]))
    cut = (mag < 1).unsqueeze(3).expand(-1, -1, -1, 2, -1, -1).flatten(2, 3)
    assert cut.any() and (y[:, :, 1:][cut] == 0).all()  # weak fields are cut from the start
    assert "threshold" not in repr(m) and "threshold=0.25" in repr(
        enn.NormNonlinearity(3, 2, threshold=0.25))


def test_norm_relu_zero_threshold_is_the_former_identity_on_orders(gen):
    m = enn.NormNonlinearity(3, 2, dtype=torch.float64, threshold=0.0)
    x = _x(gen)
    torch.testing.assert_close(m(x)[:, :, 1:], x[:, :, 1:], rtol=1e-5, atol=1e-6)


def test_norm_relu_old_checkpoint_keeps_its_meaning(gen):
    """The bias is still added (``function(|v| + b)``): a state_dict saved with the former
    zero init loads into the new module and gives the former output."""
    old_state = {"bias": torch.zeros(3, 3, dtype=torch.float64)}
    m = enn.NormNonlinearity(3, 2, dtype=torch.float64)
    m.load_state_dict(old_state)
    x = _x(gen)
    torch.testing.assert_close(m(x), EF.norm_nonlinearity(x, torch.zeros(3, 3,
                                                                          dtype=torch.float64), 2))
    with pytest.raises(RuntimeError, match="log_bias"):  # an e2cnn-style key fails clearly
        m.load_state_dict({"log_bias": torch.zeros(3, 3)})


def test_norm_relu_exp_form_is_escnns_n_relu(gen):
    """``bias_form="exp"``: the parameter is ``log_bias`` (``log(threshold)`` at init) and
    every field, order 0 included, maps to ``relu(|v| - exp(log_bias))``: at init the same
    function as the additive form's ``relu(|v| - threshold)``, on planar and SO(3) fields."""
    m = enn.NormNonlinearity(3, 2, dtype=torch.float64, order0="norm", bias_form="exp",
                             threshold=0.5)
    assert m.bias is None and [n for n, _ in m.named_parameters()] == ["log_bias"]
    torch.testing.assert_close(m.log_bias, torch.full((3, 3), math.log(0.5),
                                                      dtype=torch.float64))
    add = enn.NormNonlinearity(3, 2, dtype=torch.float64, order0="norm", threshold=0.5)
    x = _x(gen)
    torch.testing.assert_close(m(x), add(x))
    with torch.no_grad():
        m.log_bias.uniform_(-1, 1, generator=gen)
    t = m.log_bias.exp()
    mag = x[:, :, 1:].unflatten(2, (2, 2)).pow(2).sum(3).add(1e-6).sqrt()
    want = x[:, :, 1:].unflatten(2, (2, 2)) * (
        torch.relu(mag - t[None, :, 1:, None, None]) / mag).unsqueeze(3)
    y = m(x)
    torch.testing.assert_close(y[:, :, 1:], want.flatten(2, 3))
    torch.testing.assert_close(y[:, :, 0], torch.sign(x[:, :, 0]) * torch.relu(
        x[:, :, 0].abs() - t[None, :, 0, None, None]))
    assert "bias_form='exp'" in repr(m) and "bias_form" not in repr(add)
    so3 = enn.NormNonlinearity(2, 1, group="so3", order0="norm", bias_form="exp",
                               dtype=torch.float64)
    x3 = torch.randn(2, 2, 4, 3, 3, 3, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(so3(x3), enn.NormNonlinearity(
        2, 1, group="so3", order0="norm", dtype=torch.float64)(x3))


def test_norm_relu_exp_form_gradients_and_checkpoints(gen):
    """Gradients reach ``log_bias`` (gradcheck); a state_dict of one form does not load into
    the other (the keys differ, so a checkpoint never changes meaning silently)."""
    x = _x(gen, (2, 3, 5, 3, 3)).requires_grad_()
    b = (0.3 * torch.randn(3, 3, generator=gen, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda t, bb: EF.norm_nonlinearity(t, bb, 2, order0="norm", bias_form="exp"), (x, b))
    exp = enn.NormNonlinearity(3, 2, order0="norm", bias_form="exp")
    add = enn.NormNonlinearity(3, 2, order0="norm")
    with pytest.raises(RuntimeError, match="log_bias"):
        exp.load_state_dict(add.state_dict())
    with pytest.raises(RuntimeError, match="log_bias"):
        add.load_state_dict(exp.state_dict())
    exp.load_state_dict(enn.NormNonlinearity(3, 2, order0="norm", bias_form="exp",
                                             threshold=2.0).state_dict())
    torch.testing.assert_close(exp.log_bias, torch.full((3, 3), math.log(2.0)))


def test_norm_relu_exp_form_refuses_order0_function_and_zero_threshold():
    with pytest.raises(ValueError, match=r"bias_form='exp'.*pass order0='norm'"):
        enn.NormNonlinearity(3, 2, bias_form="exp")
    with pytest.raises(ValueError, match=r"bias_form='exp'.*pass order0='norm'"):
        EF.norm_nonlinearity(torch.randn(1, 3, 5, 2, 2), torch.zeros(3, 3), 2,
                             bias_form="exp")
    with pytest.raises(ValueError, match=r"threshold=0 has no log"):
        enn.NormNonlinearity(3, 2, order0="norm", bias_form="exp", threshold=0)


# --- GatedNonlinearity with separate gates ---------------------------------------------------

def test_gated_first_half_formula_and_shapes(gen):
    x = _x(gen, (2, 6, 5, 4, 4))
    y = enn.GatedNonlinearity(2, gates="first_half")(x)
    assert y.shape == (2, 3, 5, 4, 4)
    gate, gated = x[:, :3, :1], x[:, 3:]
    torch.testing.assert_close(y[:, :, 0], torch.relu(gated[:, :, 0]))
    torch.testing.assert_close(y[:, :, 1:], torch.sigmoid(gate) * gated[:, :, 1:])
    # the gate fields' higher orders are never read
    x2 = x.clone()
    x2[:, :3, 1:] = 123.0
    torch.testing.assert_close(enn.GatedNonlinearity(2, gates="first_half")(x2), y)
    torch.testing.assert_close(EF.gated_nonlinearity(x, 2, gates="first_half"), y)
    assert enn.GatedNonlinearity(0, gates="first_half")(x[:, :, :1]).shape == (2, 3, 1, 4, 4)
    assert "gates='first_half'" in repr(enn.GatedNonlinearity(2, gates="first_half"))
    # the default is unchanged: each field's own a_0
    z = enn.GatedNonlinearity(2)(x)
    torch.testing.assert_close(z[:, :, 1:], torch.sigmoid(x[:, :, :1]) * x[:, :, 1:])


def test_gated_bad_input(gen):
    with pytest.raises(ValueError, match=r"even number of fields.*C=3"):
        EF.gated_nonlinearity(_x(gen, (1, 3, 5, 2, 2)), 2, gates="first_half")
    with pytest.raises(ValueError, match="gates='second_half' must be"):
        EF.gated_nonlinearity(_x(gen), 2, gates="second_half")


# --- FourierNonlinearity ------------------------------------------------------------------

@pytest.mark.parametrize("group,max_order", [("so2", 2), ("o2", 3), ("c8", 3), ("d6", 2),
                                             ("c5", 2), ("d4", 1)])
def test_fourier_exact_on_sampled_subgroup(group, max_order, gen):
    """Exact for every sampled element, on the fiber action (no spatial move)."""
    m = enn.FourierNonlinearity(group, max_order, dtype=torch.float64)
    n = m.samples
    grp = get(group)
    els = get(("d" if grp.reflections else "c") + str(n)).elements()
    x = _x(gen, (64, 2, 2 * max_order + 1, 1, 1))
    y = m(x)
    for g in els:
        g_ = grp.element(g.rotation if grp.is_finite else g.angle, g.reflection)
        err = (m(act_fiber(x, g_, "harmonic")) - act_fiber(y, g_, "harmonic")).norm() / y.norm()
        assert err < 1e-13, (group, g, err.item())


def _fiber_errors(m, x, els):
    """Per element, the worst relative error of any order of ``m(g.x)`` against ``g.m(x)``
    (the fiber action only; all elements in one batched forward)."""
    f = x.shape[2]
    rho = torch.stack([harmonic_matrix(g, (f - 1) // 2) for g in els])  # (E, F, F)
    gx = torch.einsum("eij,bcjhw->ebcihw", rho, x).flatten(0, 1)
    got = m(gx).unflatten(0, (len(els), x.shape[0]))
    want = torch.einsum("eij,bcjhw->ebcihw", rho, m(x))
    slices = [slice(0, 1)] + [slice(2 * k - 1, 2 * k + 1) for k in range(1, (f + 1) // 2)]
    return torch.stack([(got - want)[:, :, :, sl].flatten(1).norm(dim=1)
                        / want[:, :, :, sl].flatten(1).norm(dim=1) for sl in slices]).amax(0)


@pytest.mark.parametrize("group", ["so2", "o2"])
@pytest.mark.parametrize("max_order", [1, 2, 3])
def test_fourier_off_sample_bound(group, max_order):
    """The bound in the docstring: worst relative error of any order at 64 angles off the
    default samples (4096 unit-normal fibers, ELU, float64, seed 0); measured 0.0006-0.0010
    for M = 1..3, so2 and o2 alike."""
    gen = torch.Generator().manual_seed(0)
    m = enn.FourierNonlinearity(group, max_order, dtype=torch.float64)
    x = torch.randn(4096, 1, 2 * max_order + 1, 1, 1, generator=gen, dtype=torch.float64)
    grp = get(group)
    degs = [360 * (k + 0.37) / 64 for k in range(64)]
    els = grp.elements_at(degs) + (grp.elements_at(degs, reflection=True)
                                   if grp.reflections else [])
    worst = _fiber_errors(m, x, els).max().item()
    assert 1e-5 < worst < 2e-3, worst  # approximate, and within the documented bound
    # fewer samples, larger error (the bound is not vacuous)
    with warnings.catch_warnings():  # 6 samples (M = 2) miss the quarter turns: warned
        warnings.filterwarnings("ignore", "FourierNonlinearity .* not exactly equivariant")
        few = enn.FourierNonlinearity(group, max_order, samples=2 * max_order + 2,
                                      dtype=torch.float64)
    assert _fiber_errors(few, x[:512], els[:8]).max().item() > 5 * worst


def test_fourier_values(gen):
    # the identity function gives the least-squares round trip: exact when samples determine
    # the orders (C_N/D_N: orders below N/2, the default there)
    x = _x(gen, (2, 3, 5, 4, 4))
    torch.testing.assert_close(EF.fourier_nonlinearity(x, "so2", 2, lambda t: t), x)
    torch.testing.assert_close(EF.fourier_nonlinearity(x, "d8", 2, lambda t: t), x)
    torch.testing.assert_close(EF.fourier_nonlinearity(x, "c5", function=lambda t: t), x)
    torch.testing.assert_close(EF.fourier_nonlinearity(x, "c6", function=lambda t: t), x)
    # samples: unit-variance coefficients give unit-variance samples
    a, _ = EF._fourier.fourier_matrices("so2", 2)
    torch.testing.assert_close(a.pow(2).sum(1), torch.ones(24, dtype=torch.float64))
    # relu is positively homogeneous: so is the Fourier ReLU
    torch.testing.assert_close(EF.fourier_nonlinearity(3 * x, "o2", 2, F.relu),
                               3 * EF.fourier_nonlinearity(x, "o2", 2, F.relu))
    # an a_0-only field is the constant function a_0 / sqrt(2M+1) on the group: positive
    # passes ELU unchanged, negative becomes sqrt(2M+1) elu(a_0 / sqrt(2M+1))
    c = torch.zeros(1, 2, 5, 1, 1, dtype=torch.float64)
    c[0, 0, 0], c[0, 1, 0] = 2.0, -2.0
    out = EF.fourier_nonlinearity(c, "so2", 2)
    want = [2.0, math.sqrt(5) * math.expm1(-2.0 / math.sqrt(5))]
    torch.testing.assert_close(out[0, :, 0, 0, 0], torch.tensor(want, dtype=torch.float64))
    torch.testing.assert_close(out[0, :, 1:], torch.zeros_like(out[0, :, 1:]))


def test_fourier_module_equals_functional_and_state_dict(gen):
    x = _x(gen, (2, 3, 7, 5, 5))
    m = enn.FourierNonlinearity("o2", 3, F.gelu, samples=20, dtype=torch.float64)
    torch.testing.assert_close(m(x), EF.fourier_nonlinearity(x, "o2", 3, F.gelu, 20))
    assert m.sample_matrix.shape == (40, 7) and m.inverse_matrix.shape == (7, 40)
    new = enn.FourierNonlinearity("o2", 3, F.gelu, samples=20, dtype=torch.float64)
    new.load_state_dict(m.state_dict())  # no persistent state
    torch.testing.assert_close(new(x), m(x), rtol=0, atol=0)
    assert repr(m) == "FourierNonlinearity(group='o2', max_order=3, samples=20, function=gelu)"
    assert repr(enn.FourierNonlinearity("d4")) == "FourierNonlinearity(group='d4', max_order=1)"
    assert enn.FourierNonlinearity("c8").max_order == 3


def test_norm_and_gated_reprs_name_a_function_other_than_relu():
    assert repr(enn.NormNonlinearity(3, 2, F.elu)) == (
        "NormNonlinearity(3, max_order=2, function=elu)")
    assert repr(enn.NormNonlinearity(3, 2)) == "NormNonlinearity(3, max_order=2)"
    assert repr(enn.GatedNonlinearity(2, torch.tanh, group="so3")) == (
        "GatedNonlinearity(max_order=2, function=tanh, group='so3')")
    assert repr(enn.GatedNonlinearity(2)) == "GatedNonlinearity(max_order=2)"


def test_fourier_gradcheck(gen):
    x = _x(gen, (1, 2, 5, 2, 2)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: EF.fourier_nonlinearity(t, "o2", 2), (x,))
    assert torch.autograd.gradgradcheck(lambda t: EF.fourier_nonlinearity(t, "c6"), (x,))


# --- NormMaxPool --------------------------------------------------------------------------

@pytest.mark.parametrize("args,kw", [((2,), {}), ((3, 2, 1), {}), ((3, 1, 1), {}),
                                     ((2, 2, 0, 1), {"ceil_mode": True}), ((3, 2, 1, 2), {}),
                                     (((2, 3), (1, 2), (1, 1)), {}), ((3, 2), {"ceil_mode": True})])
@pytest.mark.filterwarnings("ignore:NormMaxPool .* is not exactly equivariant:UserWarning")
def test_norm_max_pool_shape_like_max_pool2d(args, kw, gen):  # 9x8: shapes, not exactness
    x = _x(gen, (2, 3, 5, 9, 8))
    y = enn.NormMaxPool(*args, **kw)(x)
    ref = nn.MaxPool2d(*args, **kw)(x[:, :, 0])
    assert y.shape == (2, 3, 5, *ref.shape[-2:])
    torch.testing.assert_close(EF.norm_max_pool2d(x, *args, **kw), y, rtol=0, atol=0)
    with pytest.raises(TypeError):  # nn.MaxPool2d's 5th positional is return_indices
        enn.NormMaxPool(2, 2, 0, 1, True)


def test_norm_max_pool_picks_the_largest_vector(gen):
    x = _x(gen, (2, 3, 5, 6, 6))
    y = enn.NormMaxPool(2)(x)
    win = x.unfold(3, 2, 2).unfold(4, 2, 2).flatten(-2)  # (B, C, F, 3, 3, 4)
    best = win.pow(2).sum(2).argmax(-1)  # whole-fiber norm per window
    want = win.gather(-1, best[:, :, None, ..., None].expand(-1, -1, 5, -1, -1, 1))[..., 0]
    torch.testing.assert_close(y, want, rtol=0, atol=0)
    # per order: order m from the location of its own largest |v_m|
    yo = enn.NormMaxPool(2, per="order")(x)
    for sl in [slice(0, 1), slice(1, 3), slice(3, 5)]:
        b = win[:, :, sl].pow(2).sum(2).argmax(-1)
        w = win[:, :, sl].gather(-1, b[:, :, None, ..., None].expand(-1, -1, sl.stop - sl.start,
                                                                      -1, -1, 1))[..., 0]
        torch.testing.assert_close(yo[:, :, sl], w, rtol=0, atol=0)
    assert not torch.equal(y, yo)
    assert enn.NormMaxPool(2, max_order=2)(x).shape == y.shape
    assert repr(enn.NormMaxPool(3, 2, 1, per="order")) == (
        "NormMaxPool(kernel_size=3, stride=2, padding=1, per='order')")


def test_norm_max_pool_gradient_goes_to_the_chosen_vector(gen):
    x = _x(gen, (1, 2, 3, 4, 4)).requires_grad_(True)
    enn.NormMaxPool(2)(x).sum().backward()
    chosen = (x.grad != 0).any(2)  # (1, 2, 4, 4): one location per window and field
    assert chosen.view(1, 2, 2, 2, 2, 2).transpose(3, 4).sum((-1, -2)).eq(1).all()
    assert torch.autograd.gradcheck(lambda t: EF.norm_max_pool2d(t, 3, 2, 1, per="order"),
                                    (x.detach().requires_grad_(True),))


def test_norm_max_pool_bad_input(gen):
    with pytest.raises(ValueError, match="odd fiber"):
        EF.norm_max_pool2d(_x(gen, (1, 2, 4, 4, 4)), 2)
    with pytest.raises(ValueError, match=r"NormMaxPool\(max_order=1\) expects a fiber of 3 "
                                         r"slots.*build it with max_order=2"):
        enn.NormMaxPool(2, max_order=1)(_x(gen))
    with pytest.raises(ValueError, match="per='slot' must be"):
        EF.norm_max_pool2d(_x(gen), 2, per="slot")
    with pytest.raises(ValueError, match="dilation=0 must be"):
        EF.norm_max_pool2d(_x(gen), 2, dilation=0)
    with pytest.raises(TypeError, match="ceil_mode=None must be True or False"):
        EF.norm_max_pool2d(_x(gen), 2, ceil_mode=None)
    with pytest.raises(ValueError, match=r"spatial size 1x1 .* smaller than the kernel's window "
                                         r"3x3"):
        EF.norm_max_pool2d(_x(gen, (1, 2, 5, 1, 1)), 3, padding=0)


@pytest.mark.parametrize("group, order", [("c4", 2), ("c8", 4), ("c8", 5), ("d8", 4), ("d4", 3)])
def test_fourier_order_the_rotations_cannot_sample_is_refused(group, order, gen):
    """N rotations sample orders below N/2 without loss; at order N/2 the sine slot vanishes on
    every sample (its output was always 0) and higher orders alias onto lower ones. Both the
    module and the functional refuse by name, with the highest order that works; that order
    (the control) round-trips the identity exactly."""
    n = int(group[1:])
    with pytest.raises(ValueError, match=rf"max_order={order} is too high.*<= {(n - 1) // 2}"):
        enn.FourierNonlinearity(group, order)
    x = _x(gen, (2, 3, 2 * order + 1, 3, 3))
    with pytest.raises(ValueError, match=r"too high"):
        EF.fourier_nonlinearity(x, group, order, lambda t: t)
    ok = (n - 1) // 2
    x = _x(gen, (2, 3, 2 * ok + 1, 3, 3))
    m = enn.FourierNonlinearity(group, ok, function=lambda t: t, dtype=torch.float64)
    torch.testing.assert_close(m(x), x)


def _quarter_turn_error(m: nn.Module, group: str) -> float:
    """Worst relative error of ``m`` on a fiber at the grid's rotations (and flips)."""
    x = torch.randn(64, 2, 2 * m.max_order + 1, 1, 1, generator=torch.Generator().manual_seed(0),
                    dtype=torch.float64)
    return _fiber_errors(m, x, get(group).grid_elements()).max().item()


@pytest.mark.parametrize("group,samples,missing", [("so2", 10, "90, 270"),
                                                   ("o2", 9, "90, 180, 270")])
def test_fourier_samples_off_the_quarter_turns_warn_once(group, samples, missing):
    """SO(2)/O(2) sampled at a number of rotations that is not a multiple of 4 is not exact
    at the grid's quarter turns: warned once, at construction, with the fix; a multiple of 4
    (the control) is exact there and silent."""
    with pytest.warns(UserWarning, match=rf"^FourierNonlinearity \({group}\) is not exactly "
                                         rf"equivariant to the rotations by {missing} degrees: "
                                         rf"samples={samples} rotations .* do not include them.*"
                                         r"use a multiple of 4, e\.g\. samples=12 \(warned "
                                         r"once per module\)$"):
        m = enn.FourierNonlinearity(group, 2, samples=samples, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _quarter_turn_error(m, group) > 1e-3  # the warning is true; and not repeated
        exact = enn.FourierNonlinearity(group, 2, samples=12, dtype=torch.float64)
        assert _quarter_turn_error(exact, group) < 1e-12


def test_fourier_samples_warning_respects_the_quiet_switch():
    """Built inside ``quiet_exactness_warnings`` (as a tool that only inspects a model would),
    the module stays silent there and warns at its first forward outside, once."""
    from equilayers.nn._exactness import quiet_exactness_warnings

    x = torch.randn(1, 1, 5, 2, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with quiet_exactness_warnings():
            m = enn.FourierNonlinearity("so2", 2, samples=10)
            m(x)
    with pytest.warns(UserWarning, match="samples=10 rotations"):
        m(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m(x)


# --- the Fourier matrices: fresh copies of the cache, checked when passed in ----------------

@pytest.mark.parametrize("build", [
    lambda: EF.fourier_matrix("c6"),  # float64 (the cache's dtype): still a copy
    lambda: EF._fourier.fourier_matrices("so2", 2)[0],
    lambda: EF._fourier.fourier_matrices("d4", 1)[1],
    lambda: EF._fourier3d.sphere_fourier_matrices(1)[0],
    lambda: EF._fourier3d.sphere_fourier_matrices(1)[1],
], ids=["fourier_matrix", "fourier_matrices-A", "fourier_matrices-pinv", "sphere-A",
        "sphere-fit"])
def test_fourier_matrices_are_copies_a_caller_may_write_into(build):
    first = build()
    expected = first.clone()
    first.add_(1.0)  # a caller writing into its result must not reach the process-wide cache
    torch.testing.assert_close(build(), expected, rtol=0, atol=0)


@pytest.mark.parametrize("group,max_order,shape", [("so2", 2, (1, 2, 5, 3, 3)),
                                                   ("so3", 1, (1, 2, 4, 3, 3, 3))])
def test_fourier_nonlinearity_refuses_an_inverse_of_the_wrong_shape(gen, group, max_order,
                                                                     shape):
    x = _x(gen, shape)
    a, a_inv = (EF._fourier.fourier_matrices(group, max_order) if group == "so2"
                else EF._fourier3d.sphere_fourier_matrices(max_order))
    for bad in (a_inv[:, :-1], a_inv[:-1]):  # one sample short; one fiber slot short
        with pytest.raises(ValueError, match=r"matrices must be \(A, A\^\+\) of shapes"):
            EF.fourier_nonlinearity(x, group, max_order, matrices=(a, bad))
    # control: the right pair is taken, and gives the cached pair's answer
    torch.testing.assert_close(EF.fourier_nonlinearity(x, group, max_order, matrices=(a, a_inv)),
                               EF.fourier_nonlinearity(x, group, max_order))


@pytest.mark.parametrize("bad", ["ab", [3, 3], 0, (torch.eye(3),)])
def test_fourier_matrices_must_be_a_pair_of_tensors(bad):
    """``matrices`` was unpacked and ``.dim()`` called before any check (AttributeError,
    'cannot unpack', 'not enough values')."""
    from equilayers.functional import fourier_nonlinearity

    with pytest.raises(TypeError, match=r"(?s)fourier_nonlinearity: matrices=.* must be None or "
                       r"a pair of tensors \(A, A\^\+\)"):
        fourier_nonlinearity(torch.randn(1, 1, 3, 2, 2), "so2", 1, torch.relu,
                             matrices=bad)


def test_precomputed_matrices_must_be_floating_and_materialized():
    """A complex matrix was cast to its real part (torch warns once per process), a bool one
    read as 0/1, and a meta one failed with "Cannot copy out of meta tensor"."""
    from equilayers.functional import (
        fourier_matrix,
        fourier_nonlinearity,
        harmonic_to_regular,
        regular_to_harmonic,
    )
    from equilayers.nn import FourierNonlinearity

    x = torch.randn(1, 2, 4, 3, 3)
    e = fourier_matrix("c4", 1).T  # regular_to_harmonic's (3, 4) matrix
    torch.testing.assert_close(regular_to_harmonic(x, "c4", 1, matrix=e),
                               regular_to_harmonic(x, "c4", 1))  # the control
    for bad in (e.to(torch.complex64), e.bool()):
        with pytest.raises(TypeError, match=r"regular_to_harmonic: matrix has dtype"):
            regular_to_harmonic(x, "c4", 1, matrix=bad)
    with pytest.raises(ValueError, match=r"harmonic_to_regular: matrix is on the meta device"):
        harmonic_to_regular(torch.randn(1, 2, 3, 3, 3), "c4", 1,
                            matrix=torch.empty(4, 3, device="meta"))
    m = FourierNonlinearity("so2", 1)
    a, a_inv = m.sample_matrix, m.inverse_matrix
    with pytest.raises(TypeError, match=r"matrices\[0\] has dtype torch.int64"):
        fourier_nonlinearity(torch.randn(1, 1, 3, 2, 2), "so2", 1, torch.relu,
                             matrices=(a.long(), a_inv))
