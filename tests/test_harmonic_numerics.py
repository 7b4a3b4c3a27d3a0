"""Harmonic-field layers in a training loop: empty batches, half precision, non-floating input,
torch.func transforms, meta-device builds, and the checks at construction and in forward."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, jvp, vmap

from equilayers import functional as EF
from equilayers import nn as enn
from equilayers.functional import _fourier as FF


def _x(gen, shape=(4, 3, 5, 6, 6), dtype=torch.float64):
    return torch.randn(shape, generator=gen, dtype=dtype)


# every module that takes (B, 3, 5, H, W) harmonic fields (M = 2), in eval mode
# NormMaxPool(3, 2, 1) warns on the even sizes these numerics tests use (expected: they check
# precision, dtypes and torch.func, not exactness)
pytestmark = pytest.mark.filterwarnings(
    "ignore:NormMaxPool .* is not exactly equivariant:UserWarning")

MODULES = {
    "NormNonlinearity": lambda: enn.NormNonlinearity(3, 2, threshold=0.5),
    "NormNonlinearity[norm]": lambda: enn.NormNonlinearity(3, 2, order0="norm"),
    "NormNonlinearity[exp]": lambda: enn.NormNonlinearity(3, 2, order0="norm", bias_form="exp"),
    "GatedNonlinearity": lambda: enn.GatedNonlinearity(2),
    "GatedNonlinearity[first_half]": lambda: enn.GatedNonlinearity(2, gates="first_half"),
    "HarmonicBatchNorm[eval]": lambda: enn.HarmonicBatchNorm(3, 2).eval(),
    "HarmonicBatchNorm[no-stats]": lambda: enn.HarmonicBatchNorm(3, 2,
                                                                 track_running_stats=False),
    "HarmonicBatchNorm[field-eval]": lambda: enn.HarmonicBatchNorm(
        3, 2, statistics="field").eval(),
    "HarmonicBatchNorm[field-no-stats]": lambda: enn.HarmonicBatchNorm(
        3, 2, track_running_stats=False, statistics="field"),
    "NormPool": lambda: enn.NormPool(2),
    "NormMaxPool": lambda: enn.NormMaxPool(2),
    # k3 s2 p1 (exact on odd sizes) on the even inputs below: numerics, not exactness
    "NormMaxPool[order]": lambda: enn.NormMaxPool(3, 2, 1, per="order"),
    "HarmonicToRegular": lambda: enn.HarmonicToRegular("d4", 2),
    "FourierNonlinearity[so2]": lambda: enn.FourierNonlinearity("so2", 2),
    "FourierNonlinearity[c8]": lambda: enn.FourierNonlinearity("c8", 2),
}


def _fields(name):
    return 6 if "first_half" in name else 3


# --- empty batches -------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(0, 3, 5, 4, 4), (2, 3, 5, 0, 4), (2, 3, 5, 4, 0)])
def test_batch_norm_empty_batch_leaves_running_stats(shape):
    bn, ref = enn.HarmonicBatchNorm(3, 2), nn.BatchNorm3d(3)
    bn(torch.randn(8, 3, 5, 4, 4))
    mean, var = bn.running_mean.clone(), bn.running_var.clone()
    y, y_ref = bn(torch.randn(shape)), ref(torch.randn(shape))
    assert y.shape == y_ref.shape == shape
    torch.testing.assert_close(bn.running_mean, mean, rtol=0, atol=0)
    torch.testing.assert_close(bn.running_var, var, rtol=0, atol=0)
    assert torch.isfinite(bn.running_var).all()
    # as nn.BatchNorm3d: the empty batch still counts as a training batch
    assert int(bn.num_batches_tracked) == 2 and int(ref.num_batches_tracked) == 1
    assert bn.eval()(torch.randn(shape)).shape == shape
    y.sum().backward()  # an empty output is still connected to the affine parameters
    assert bn.weight.grad is not None and (bn.weight.grad == 0).all()


def test_batch_norm_functional_empty_batch():
    rm, rv = torch.zeros(3), torch.ones(3, 3)
    y = EF.harmonic_batch_norm(torch.randn(0, 3, 5, 2, 2), 2, rm, rv, training=True)
    assert y.shape == (0, 3, 5, 2, 2)
    assert (rm == 0).all() and (rv == 1).all()


# --- half precision --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", sorted(MODULES))
def test_half_precision_finite_and_close(name, dtype, gen):
    """Magnitudes of a few hundred (squares above float16's 65504) stay finite and close to the
    float32 result."""
    m = MODULES[name]()
    x = (_x(gen, (2, _fields(name), 5, 6, 6), torch.float32) * 300).to(dtype)
    ref = m(x.float())  # the same (rounded) input in float32: only the computation differs
    y = m.to(dtype)(x)
    assert y.dtype == dtype and torch.isfinite(y).all()
    rel = ((y.float() - ref).norm() / ref.norm()).item()
    assert rel < (2e-2 if dtype == torch.bfloat16 else 2e-3), rel


def test_half_magnitudes_match_vector_norm():
    x = torch.tensor([300.0, 300.0, -200.0, 0.0, 0.0], dtype=torch.float16).view(1, 1, 5, 1, 1)
    got = EF.norm_pool(x, 2).flatten()
    want = torch.stack([torch.linalg.vector_norm(x[0, 0, s, 0, 0])
                        for s in (slice(0, 1), slice(1, 3), slice(3, 5))])
    torch.testing.assert_close(got, want)
    y = EF.norm_nonlinearity(x, None, 2)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("group,shape", [(None, (1, 2, 5, 2, 2)), ("so3", (1, 2, 4, 2, 2, 2))])
def test_half_norm_above_the_dtype_max_with_entries_below_it(group, shape):
    """Entries of 4.8e4 (float16 holds them) make a pair or order norm of 6.8e4-8.3e4, above
    float16's 65504: the norm was cast back to float16 before the scale, became inf, and the
    output was inf / inf = NaN where the map gives back about the input."""
    x = torch.full(shape, 4.8e4, dtype=torch.float16)
    x[0, 1] = 3.0  # control field: small norms
    for order0 in ("function", "norm"):
        y = EF.norm_nonlinearity(x, None, 2 if group is None else 1, order0=order0, group=group)
        want = EF.norm_nonlinearity(x.float(), None, 2 if group is None else 1, order0=order0,
                                    group=group)
        assert torch.isfinite(y).all() and y.dtype == torch.float16
        torch.testing.assert_close(y.float(), want, rtol=1e-3, atol=0)
    xg = x.clone().requires_grad_()
    EF.norm_nonlinearity(xg, None, 2 if group is None else 1, group=group).sum().backward()
    assert torch.isfinite(xg.grad).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_batch_norm_half_statistics_in_float32(dtype, gen):
    x = _x(gen, (8, 3, 5, 4, 4), torch.float32) * 300 + 1000
    bn32, bnh = enn.HarmonicBatchNorm(3, 2), enn.HarmonicBatchNorm(3, 2)
    ref = bn32(x)
    y = bnh(x.to(dtype))  # float32 buffers, half input
    assert y.dtype == dtype and torch.isfinite(y).all()
    assert bnh.running_var.dtype == torch.float32
    torch.testing.assert_close(y.float(), ref, rtol=0.05, atol=0.05)
    torch.testing.assert_close(bnh.running_var, bn32.running_var, rtol=1e-2, atol=0)
    # half buffers stay half; the batch statistics (E|v_m|^2 / 2 = 9e4 here, above float16's
    # 65504) are averaged into them in float32 (0.9 * 1 + 0.1 * 9e4 fits)
    half, ref32 = enn.HarmonicBatchNorm(3, 2).to(dtype), enn.HarmonicBatchNorm(3, 2)
    x = (x - 1000).to(dtype)
    assert torch.isfinite(half(x)).all() and half.running_var.dtype == dtype
    ref32(x.float())
    torch.testing.assert_close(half.running_var.float(), ref32.running_var, rtol=1e-2, atol=0)
    torch.testing.assert_close(half.running_mean.float(), ref32.running_mean, rtol=1e-2,
                               atol=0)


# --- non-floating input ----------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.int64, torch.bool, torch.complex64])
@pytest.mark.parametrize("name", sorted(MODULES))
def test_non_floating_input_raises(name, dtype):
    x = torch.ones(2, _fields(name), 5, 4, 4, dtype=dtype)
    with pytest.raises(TypeError, match=rf"x has dtype {dtype}.*floating-point.*x\.float\(\)"):
        MODULES[name]()(x)


@pytest.mark.parametrize("fn", [
    lambda x: EF.regular_to_harmonic(x, "c8"),
    lambda x: enn.RegularToHarmonic("c8")(x),
    lambda x: EF.harmonic_to_regular(x[:, :, :5], "c8", 2),
    lambda x: EF.norm_pool(x[:, :, :5], 2),
    lambda x: EF.norm_nonlinearity(x[:, :, :5], None, 2),
    lambda x: EF.gated_nonlinearity(x[:, :, :5], 2),
    lambda x: EF.harmonic_batch_norm(x[:, :, :5], 2, None, None, training=True),
    lambda x: EF.norm_max_pool2d(x[:, :, :5], 2),
    lambda x: EF.fourier_nonlinearity(x[:, :, :5], "so2", 2),
    lambda x: EF.steerable_conv2d(x[:, :, :5], torch.ones(1, 2, 1), torch.ones(1, 5, 5, 1, 1)),
])
def test_functionals_reject_integer_input(fn):
    with pytest.raises(TypeError, match="torch.int64"):
        fn(torch.ones(1, 2, 8, 4, 4, dtype=torch.long))


# --- torch.func ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(MODULES))
def test_torch_func_grad_vmap_jvp_match_autograd(name, gen):
    m = MODULES[name]().double()
    x = _x(gen, (2, _fields(name), 5, 6, 6))
    w = torch.randn_like(m(x))

    def loss(t):
        return (m(t) * w).sum()

    leaf = x.clone().requires_grad_(True)
    (ref,) = torch.autograd.grad(loss(leaf), leaf)
    torch.testing.assert_close(grad(loss)(x), ref)
    xs = torch.stack([x, 2 * x])
    torch.testing.assert_close(vmap(m)(xs), torch.stack([m(x), m(2 * x)]))
    v = torch.randn(x.shape, generator=gen, dtype=x.dtype)
    out, tangent = jvp(m, (x,), (v,))
    torch.testing.assert_close(out, m(x))
    # the directional derivative <grad(<w, m>), v> equals <w, jvp>
    torch.testing.assert_close((tangent * w).sum(), (ref * v).sum())


def test_norm_pool_torch_func_zero_gradient_at_zero():
    x = torch.zeros(1, 1, 3, 2, 2, dtype=torch.float64)
    x[0, 0, :, 0, 0] = torch.tensor([1.0, 3.0, 4.0], dtype=torch.float64)
    g = grad(lambda t: EF.norm_pool(t, 1).sum())(x)
    assert torch.isfinite(g).all() and g[0, 0, :, 1, 1].abs().sum() == 0
    torch.testing.assert_close(g[0, 0, 1:, 0, 0], torch.tensor([0.6, 0.8], dtype=torch.float64))


def test_batch_norm_train_with_running_stats_under_torch_func_raises(gen):
    bn = enn.HarmonicBatchNorm(3, 2).double()
    x = _x(gen)
    with pytest.raises(RuntimeError, match="track_running_stats=False"):
        grad(lambda t: bn(t).sum())(x)
    with pytest.raises(RuntimeError, match="eval mode"):
        vmap(bn)(torch.stack([x, x]))
    assert (bn.running_mean == 0).all() and int(bn.num_batches_tracked) == 0



def test_batch_norm_train_per_sample_grads_with_unbatched_buffers_raises(gen):
    """torch's per-sample-gradient recipe with the buffers passed, ``in_dims=(None, None,
    0)``: grad wraps the buffers, vmap batches the statistics only. The in-place update raised
    a broadcast error ("output with shape [3] doesn't match the broadcast shape [4, 3]")."""
    bn = enn.HarmonicBatchNorm(3, 2).double()
    x = _x(gen)
    params = {k: v.detach() for k, v in bn.named_parameters()}
    buffers = {k: v.detach().clone() for k, v in bn.named_buffers()}

    def loss(p, b, xi):
        return functional_call(bn, (p, b), (xi[None],)).square().sum()

    with pytest.raises(RuntimeError, match=r"vmap does not batch the buffers.*eval mode.*"
                                           r"in_dims=0.*track_running_stats=False"):
        vmap(grad(loss), in_dims=(None, None, 0))(params, buffers, x)
    # control: one copy of the buffers per sample, batched by vmap, runs
    per_sample = {k: v.expand(x.shape[0], *v.shape).clone() for k, v in buffers.items()}
    g = vmap(grad(loss), in_dims=(None, 0, 0))(params, per_sample, x)
    assert g["weight"].shape == (x.shape[0], *params["weight"].shape)
    assert (bn.running_mean == 0).all() and int(bn.num_batches_tracked) == 0

# --- matrices built once, CPU caches -------------------------------------------------------

def test_fourier_modules_build_matrices_once(monkeypatch, gen):
    mods = [enn.RegularToHarmonic("c8", dtype=torch.float64),
            enn.HarmonicToRegular("c8", dtype=torch.float64),
            enn.FourierNonlinearity("o2", 2, dtype=torch.float64)]
    xs = [_x(gen, (1, 2, 8, 3, 3)), _x(gen, (1, 2, 9, 3, 3)), _x(gen, (1, 2, 5, 3, 3))]
    refs = [m(x) for m, x in zip(mods, xs, strict=True)]

    def boom(*args):
        raise AssertionError("a forward rebuilt a matrix")

    for name in ("_rows_cpu", "_forward_cpu", "_inverse_cpu", "_fourier_nl_cpu"):
        monkeypatch.setattr(FF, name, boom)
    for m, x, ref in zip(mods, xs, refs, strict=True):
        torch.testing.assert_close(m(x), ref, rtol=0, atol=0)


def test_meta_device_build_does_not_poison_caches(gen):
    FF._rows_cpu.cache_clear()
    FF._fourier_nl_cpu.cache_clear()
    with torch.device("meta"):
        mods = [enn.RegularToHarmonic("c6"), enn.HarmonicToRegular("d3"),
                enn.FourierNonlinearity("so2", 3), enn.FourierNonlinearity("d5")]
        assert EF.fourier_matrix("c6").device.type == "cpu"
    assert all(b.device.type == "meta" for m in mods for b in m.buffers())
    for fn in (FF._rows_cpu, FF._forward_cpu, FF._inverse_cpu, FF._fourier_nl_cpu):
        assert fn.cache_info().currsize > 0 or fn is FF._forward_cpu
    for m in mods:  # to_empty() refills the derived buffers
        fresh = type(m)(m.group, m.max_order)
        m.to_empty(device="cpu")
        for a, b in zip(m.buffers(), fresh.buffers(), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    x = _x(gen, (1, 2, 6, 3, 3))
    ref = torch.einsum("hf,bchxy->bcfxy", EF.fourier_matrix("c6"), x)
    torch.testing.assert_close(EF.regular_to_harmonic(x, "c6"), ref)


def test_cast_rebuilds_exactly_and_state_dict_has_no_matrices(gen):
    m = enn.RegularToHarmonic("c8")  # float32 buffer
    assert m.matrix.dtype == torch.float32 and "matrix" not in m.state_dict()
    torch.testing.assert_close(m.double().matrix, EF.fourier_matrix("c8").t(), rtol=0, atol=0)
    # a float32 module on float64 input computes with the float64 matrix
    x = _x(gen, (2, 3, 8, 4, 4))
    y = enn.HarmonicToRegular("c8")(enn.RegularToHarmonic("c8")(x))
    torch.testing.assert_close(y, x, rtol=1e-12, atol=1e-12)
    f = enn.FourierNonlinearity("so2", 2)
    assert not f.state_dict() and f.half().sample_matrix.dtype == torch.float16


# --- checks at construction and in forward ------------------------------------------------

# the shared format (equilayers/_checks/): "<what>: <arg>=<value> must be ...; <fix>",
# TypeError for a wrong type, ValueError for a wrong value
@pytest.mark.parametrize("make,exc,match", [
    (lambda: enn.NormNonlinearity(0, 2), ValueError, r"channels=0 must be an integer >= 1"),
    (lambda: enn.NormNonlinearity(True, 2), TypeError, r"channels=True"),
    (lambda: enn.NormNonlinearity(3.0, 2), TypeError, r"channels=3\.0"),
    (lambda: enn.NormNonlinearity(3, 2, None), TypeError, r"function=None must be callable"),
    (lambda: enn.NormNonlinearity(3, 2, bias=1), TypeError, r"bias=1 must be True or False"),
    (lambda: enn.NormNonlinearity(3, 2, threshold=-1), ValueError, r"threshold.*>= 0"),
    (lambda: enn.NormNonlinearity(3, 2, dtype=torch.int64), TypeError, r"dtype=torch\.int64"),
    (lambda: enn.GatedNonlinearity(2, function="relu"), TypeError,
     r"function='relu' must be callable"),
    (lambda: enn.GatedNonlinearity(2, gates="last"), ValueError, r"gates='last' must be one of"),
    (lambda: enn.GatedNonlinearity(-1), ValueError, r"max_order=-1 must be an integer >= 0"),
    (lambda: enn.HarmonicBatchNorm(-3, 2), ValueError, r"num_features=-3 must be"),
    (lambda: enn.HarmonicBatchNorm(3, 2.5), TypeError, r"max_order=2\.5"),
    (lambda: enn.HarmonicBatchNorm(3, 2, eps=0), ValueError, r"eps=0 must be a real number > 0"),
    (lambda: enn.HarmonicBatchNorm(3, 2, eps="1e-5"), TypeError, r"eps='1e-5'"),
    (lambda: enn.HarmonicBatchNorm(3, 2, momentum=1.5), ValueError, r"momentum.*\[0, 1\]"),
    (lambda: enn.HarmonicBatchNorm(3, 2, momentum=True), TypeError, r"momentum=True"),
    (lambda: enn.HarmonicBatchNorm(3, 2, affine=None), TypeError, r"affine=None must be True"),
    (lambda: enn.HarmonicBatchNorm(3, 2, dtype="float32"), TypeError, r"dtype='float32'"),
    (lambda: enn.NormPool(1.0), TypeError, r"max_order=1\.0"),
    (lambda: enn.NormMaxPool(0), ValueError, r"kernel_size=0 must be an integer or a pair of "
                                             r"integers >= 1"),
    (lambda: enn.NormMaxPool(2, stride=(1,)), TypeError, r"stride=\(1,\) must be"),
    (lambda: enn.NormMaxPool(2, padding=2), ValueError, r"padding=2 must be at most half"),
    (lambda: enn.NormMaxPool(2, padding=(0, 2)), ValueError,  # the width's limit too
     r"padding=\(0, 2\) must be at most half"),
    (lambda: EF.norm_max_pool2d(torch.randn(1, 1, 3, 5, 5), (3, 2), padding=(1, 2)),
     ValueError, r"norm_max_pool2d: padding=\(1, 2\) must be at most half"),
    (lambda: enn.NormMaxPool(2, per="slot"), ValueError, r"per='slot' must be one of"),
    (lambda: enn.NormMaxPool(2, ceil_mode=1), TypeError, r"ceil_mode=1 must be True or False"),
    (lambda: enn.RegularToHarmonic("o2"), ValueError, r"continuous.*'cN'/'dN'"),
    (lambda: enn.RegularToHarmonic("c8", dtype=torch.bool), TypeError, r"dtype=torch\.bool"),
    (lambda: enn.HarmonicToRegular("c8", -1), ValueError, r"max_order=-1"),
    (lambda: enn.FourierNonlinearity("so2"), ValueError, r"so2 needs max_order"),
    (lambda: enn.FourierNonlinearity("so2", 2, samples=4), ValueError,
     r"FourierNonlinearity: samples=4 must be an integer >= 5; at least 2\*max_order\+1 = 5"),
    (lambda: enn.FourierNonlinearity("so2", 2, samples=True), TypeError, r"samples=True"),
    (lambda: enn.FourierNonlinearity("c8", samples=8), ValueError, r"leave it None"),
    (lambda: enn.FourierNonlinearity("c8", function=None), TypeError, r"callable"),
])
def test_constructor_checks(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


@pytest.mark.parametrize("name", sorted(MODULES))
def test_forward_checks(name, gen):
    m = MODULES[name]()
    c = _fields(name)
    field = r"expects a 5-D harmonic field \(B, C, 2M\+1, H, W\).*got a 4-D tensor of shape"
    with pytest.raises(ValueError, match=rf"^{type(m).__name__}\(.*\) {field} \(2, \d, 5, 6\)"):
        m(torch.randn(2, c, 5, 6))  # wrong rank: named by the module too
    # wrong fiber: named by the module, with its order
    slots = (r"a harmonic fiber of 2\*max_order\+1 slots" if m.max_order is None  # read from x
             else r"a fiber of 5 slots \(orders 0..2\)")
    with pytest.raises(ValueError, match=rf"^{type(m).__name__}\(.*\) expects {slots} in dim 2; "
                                         r"got F=4, which no order gives, shape "
                                         r"\(2, \d, 4, 6, 6\)"):
        m(torch.randn(2, c, 4, 6, 6))
    if name.startswith(("NormNonlinearity", "HarmonicBatchNorm")):
        with pytest.raises(ValueError, match=r"expects C=3 fields.*got shape \(2, 4, 5, 6, 6\)"):
            m(torch.randn(2, 4, 5, 6, 6))


def test_batch_norm_momentum_none_is_a_cumulative_average(gen):
    bn, ref = enn.HarmonicBatchNorm(2, 1, momentum=None), nn.BatchNorm3d(2, momentum=None)
    xs = [_x(gen, (4, 2, 3, 3, 3), torch.float32) + i for i in range(3)]
    for x in xs:
        bn(x)
        ref(x[:, :, :1])
    torch.testing.assert_close(bn.running_mean, ref.running_mean)
    torch.testing.assert_close(bn.running_var[:, 0], ref.running_var)
    want = torch.stack([x[:, :, 1:].pow(2).sum(2).mean((0, 2, 3)) / 2 for x in xs]).mean(0)
    torch.testing.assert_close(bn.running_var[:, 1], want)
    assert int(bn.num_batches_tracked) == 3 and "momentum=None" in repr(bn)


def test_batch_norm_old_checkpoint_without_counter_loads(gen):
    bn = enn.HarmonicBatchNorm(3, 2)
    bn(_x(gen, dtype=torch.float32))
    state = bn.state_dict()
    del state["num_batches_tracked"]
    state._metadata[""]["version"] = 1  # saved before the counter existed
    new = enn.HarmonicBatchNorm(3, 2)
    new.load_state_dict(state)  # strict
    torch.testing.assert_close(new.running_var, bn.running_var)
    assert int(new.num_batches_tracked) == 0
    with pytest.raises(RuntimeError, match="num_batches_tracked"):
        state._metadata[""]["version"] = 2
        enn.HarmonicBatchNorm(3, 2).load_state_dict(state)


def test_function_none_fails_at_construction_not_in_torch():
    with pytest.raises(TypeError, match="NormNonlinearity: function=None must be callable"):
        enn.NormNonlinearity(3, 2, function=None)
    with pytest.raises(TypeError, match="norm_nonlinearity: function=None must be callable"):
        EF.norm_nonlinearity(torch.randn(1, 3, 5, 2, 2), None, 2, function=None)
    assert F.relu  # the default still works


@pytest.mark.parametrize("dtype,tiny", [(torch.float32, 1e-40), (torch.float32, 1e-39),
                                        (torch.float64, 1e-310)])
def test_norm_pool_gradient_at_a_subnormal_order0_coefficient(dtype, tiny):
    """A subnormal order-0 coefficient: the backward scaled the gradient by ``grad / |a_0|``,
    which overflowed to inf (a conv before it got an inf weight gradient, and the next step
    NaN weights); ``d|a_0|/da_0`` is its sign, as ``torch.abs`` says. Orders >= 1 as
    ``torch.linalg.vector_norm``. The control: a normal coefficient."""
    for a0, want in ((tiny, 1.0), (-tiny, -1.0), (0.5, 1.0)):
        x = torch.zeros(1, 1, 5, 2, 2, dtype=dtype)
        x[0, 0, 0, 0, 0] = a0
        x[0, 0, 1] = 1.0
        x.requires_grad_(True)
        g, = torch.autograd.grad(enn.NormPool(2)(x).sum(), x)
        assert torch.isfinite(g).all()
        assert g[0, 0, 0, 0, 0].item() == want
        # the same under create_graph (the differentiable branch), and its own derivative
        # (a gradient penalty's): d sign(a_0) / da_0 = 0, not NaN
        g2, = torch.autograd.grad(enn.NormPool(2)(x).sum(), x, create_graph=True)
        assert torch.isfinite(g2).all() and g2[0, 0, 0, 0, 0].item() == want
        h, = torch.autograd.grad(g2[0, 0, 0, 0, 0], x)
        assert torch.isfinite(h).all() and h[0, 0, 0, 0, 0].item() == 0.0
        # the traced path (torch.compile) gives the eager path's sign (sqrt(a_0^2) gave 0)
        compiled = torch.compile(enn.NormPool(2), backend="eager", fullgraph=True)
        gc, = torch.autograd.grad(compiled(x).sum(), x)
        assert gc[0, 0, 0, 0, 0].item() == want
