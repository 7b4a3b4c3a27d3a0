"""Mixed precision: float16/bfloat16 inputs and ``torch.autocast`` against float32 on the
same (rounded) inputs: finite where float32 is finite and in range, errors of the dtype's
order, the input's dtype kept."""

import copy

import pytest
import torch
import torch.nn.functional as F
from conftest import seeded_rng

from equilayers import functional as EF
from equilayers import nn as enn

# (group, max_order, fiber shape, c): the SO(3) layout (B, C, (M+1)^2, D, H, W), the planar
# one; coefficients in [c, c + 5e3] give samples of 6.8e4-1.1e5 and outputs of 5.2e4-5.9e4
FOURIER = [("so3", 1, (1, 2, 4, 2, 2, 2), 3.5e4), ("so3", 2, (1, 2, 9, 2, 2, 2), 3e4),
           ("so2", 2, (1, 2, 5, 2, 2), 3.5e4), ("o2", 2, (1, 2, 5, 2, 2), 3.5e4),
           ("c8", 2, (1, 2, 5, 2, 2), 3.5e4), ("d4", 1, (1, 2, 3, 2, 2), 4.5e4)]


def _large_fibers(shape, c, gen):
    """Coefficients in ``[c, c + 5e3]``, all of one sign: a sample of a field can be up to
    ``sqrt(F)`` times that (above float16's 65504); field 1 a small control."""
    x = c + 5e3 * torch.rand(shape, generator=gen)
    x[:, 1] = torch.randn(x[:, 1].shape, generator=gen)
    return x.half()


@pytest.mark.parametrize("group,max_order,shape,c", FOURIER)
def test_fourier_nonlinearity_float16_samples_above_the_range(group, max_order, shape, c, gen):
    """The float32 output fits float16 (checked) but the samples did not: inf, then NaN
    (SO(3) M=2 and the planar groups alike); now sampled in float32 and cast back."""
    x = _large_fibers(shape, c, gen)
    m = enn.FourierNonlinearity(group, max_order)
    ref = m(x.float())  # the same rounded input, float32 all through
    assert torch.isfinite(ref).all() and ref.abs().max() < 6e4  # in float16's range
    samples = m.sample_matrix.float() @ x.float().movedim(2, -1).unsqueeze(-1)
    assert samples.abs().max() > 65504  # the samples are not (the case this test is for)
    for y in (m.half()(x), EF.fourier_nonlinearity(x, group, max_order)):
        assert y.dtype == torch.float16 and torch.isfinite(y).all()
        rel = ((y.float() - ref).norm() / ref.norm()).item()
        assert rel < 2e-3, rel  # float16's eps is 9.8e-4
    xg = x.clone().requires_grad_()
    m(xg).backward(torch.ones_like(xg))
    assert xg.grad is not None and xg.grad.dtype == torch.float16
    assert torch.isfinite(xg.grad).all()


@pytest.mark.parametrize("group,max_order,shape,c", FOURIER[1:3])
def test_fourier_nonlinearity_autocast_float16(group, max_order, shape, c, gen):
    """autocast to float16 runs the sampling matmul in float16 too: overridden (float32 in,
    float32 out); a float32 run without autocast is the reference."""
    x = _large_fibers(shape, c, gen).float()
    m = enn.FourierNonlinearity(group, max_order)
    with torch.autocast("cpu", dtype=torch.float16):
        y = m(x)
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y.float(), m(x), rtol=2e-3, atol=1e-2)


@pytest.mark.parametrize("group,max_order,shape,_c", FOURIER[1:3])
def test_fourier_nonlinearity_function_dtype(group, max_order, shape, _c, gen):
    """float16 samples reach ``function`` in float32 (the upcast); bfloat16 (float32's range)
    and float32 keep their dtype: no upcast where none is needed."""
    seen = []

    def elu(v):
        seen.append(v.dtype)
        return F.elu(v)

    m = enn.FourierNonlinearity(group, max_order, function=elu)
    x = torch.randn(shape, generator=gen)
    for dtype, want in ((torch.float16, torch.float32), (torch.bfloat16, torch.bfloat16),
                        (torch.float32, torch.float32)):
        assert m(x.to(dtype)).dtype == dtype
        assert seen.pop() == want


@pytest.mark.parametrize("group,max_order,shape,v", [(None, 2, (1, 4, 5, 1, 1), 2e4),
                                                      ("so3", 1, (1, 4, 4, 1, 1, 1), 2.5e4)])
@pytest.mark.parametrize("gates", ["own", "first_half"])
def test_gated_nonlinearity_float16_gate_gradient(group, max_order, shape, v, gates):
    """Entries of 2e4-2.5e4 gated by a_0 = 10: the output and every float32 gradient fit
    float16, but the gate's gradient sums v * grad over the slots (6e4-8e4) before the
    sigmoid's derivative (0 in float16 at 10): inf * 0 was NaN."""
    x = torch.full(shape, v)
    x[:, :, 0] = 10.0
    x[:, -1] = 0.5  # control field (first_half: gated by field 1): small entries
    ref = x.clone().requires_grad_()
    y_ref = EF.gated_nonlinearity(ref, max_order, gates=gates, group=group)
    y_ref.backward(torch.ones_like(y_ref))
    assert ref.grad is not None and ref.grad.abs().max() < 10
    xh = x.half().requires_grad_()
    y = EF.gated_nonlinearity(xh, max_order, gates=gates, group=group)
    y.backward(torch.ones_like(y))
    assert y.dtype == torch.float16 and xh.grad is not None and xh.grad.dtype == torch.float16
    torch.testing.assert_close(y.float(), y_ref.detach(), rtol=2e-3, atol=0)
    torch.testing.assert_close(xh.grad.float(), ref.grad, rtol=2e-3, atol=1e-3)


def _lps_grads(pool, x, dtype, hard):
    """The scoring net's gradients of ``pool`` (a copy in ``dtype``) on ``x`` rounded to
    ``dtype``, in training mode."""
    p = copy.deepcopy(pool).to(dtype).train()
    p.hard = hard
    y = p(x.to(dtype))
    y.backward(torch.ones_like(y))
    return {n: q.grad.float() for n, q in p.named_parameters()}


@pytest.mark.parametrize("hard", [True, False])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_learnable_polyphase_half_scoring_gradient(dtype, hard, gen):
    """Components of all-positive samples near 30 (8 x 16 x 16 of them): the selection's
    gradient, a sum of x * grad over each component (about 6e4), was rounded to the input's
    dtype before the softmax's backward took its differences between components: in
    bfloat16 they all rounded alike and the scoring net's gradient vanished (relative error
    1.0), in float16 it was 30% off; now about 2e-3 and 3e-4."""
    with seeded_rng(0):
        pool = enn.LearnablePolyphasePool2d(8, gumbel=False)
    x = (30 + torch.randn(2, 8, 32, 32, generator=gen)).to(dtype).float()
    pool = pool.to(dtype).float()  # the same rounded weights in float32
    ref = _lps_grads(pool, x, torch.float32, hard)
    got = _lps_grads(pool, x, dtype, hard)
    for n, g in ref.items():
        assert torch.isfinite(got[n]).all(), n
        rel = ((got[n] - g).norm() / g.norm()).item()
        assert rel < (1e-2 if dtype == torch.bfloat16 else 2e-3), (n, rel)


def test_fiber_pose_half_energies():
    """float16: slot 0's entry 300 squared (9e4) overflowed, its energy (2.25e4 in float32)
    became inf and beat slot 1's 4e4; bfloat16: energies 1 and 1.0039 both rounded to 1 and
    tied (argmax: the first). Both now computed in float32, as the float32 pose."""
    x = torch.zeros(1, 1, 4, 2, 2)
    x[0, 0, 0, 0, 0] = 300.0
    x[0, 0, 1] = 200.0
    x[0, 0, 2:] = 1.0  # control slots: small energies
    y = torch.ones(1, 1, 4, 2, 2)
    y[0, 0, 1, 0, 0] = 1 + 2**-7  # representable in bfloat16
    for dtype, v in ((torch.float16, x), (torch.bfloat16, y), (torch.float32, x)):
        assert EF.fiber_pose(v.to(dtype), "p4").tolist() == [1], dtype
        assert EF.fiber_pose(v.to(dtype).float(), "p4").tolist() == [1]
    assert EF.fiber_pose(torch.cat([x[:, :, 1:], x[:, :, :1]], 2).half(), "p4").tolist() == [0]


def _lps_updown_grads(pool, x, g, dtype, hard):
    """The scoring net's gradients through pool -> upsample, upstream gradient ``g``."""
    p = copy.deepcopy(pool).to(dtype).train()
    p.hard = hard
    y, sel = p(x.to(dtype))
    up = enn.LearnablePolyphaseUpsample2d()(y, sel)
    up.backward(g.to(dtype))
    return sel.dtype, {n: q.grad.float() for n, q in p.named_parameters()}


@pytest.mark.parametrize("hard", [True, False])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_learnable_polyphase_upsample_half_selection_gradient(dtype, hard, gen):
    """The U-Net's learned pair: the upsample's gradient of the selection sums x * grad over
    every sample of a component (about 6e4 here, an upstream gradient near 1), then the
    softmax's backward takes its differences. With the selection in the input's dtype that sum
    was rounded to it first: the scoring net's gradient came out 0.12-0.57 (bfloat16) and
    0.04-0.48 (float16) relative off; the selection is float32 for half inputs now (at most
    8e-3 / 1.3e-3). Control: float64 keeps float64."""
    with seeded_rng(0):
        pool = enn.LearnablePolyphasePool2d(8, gumbel=False, return_index=True)
    x = (30 + torch.randn(2, 8, 32, 32, generator=gen)).to(dtype).float()
    g = (1 + 0.1 * torch.randn(2, 8, 32, 32, generator=gen)).to(dtype).float()
    pool = pool.to(dtype).float()
    _, ref = _lps_updown_grads(pool, x, g, torch.float32, hard)
    sel_dtype, got = _lps_updown_grads(pool, x, g, dtype, hard)
    assert sel_dtype == torch.float32
    for n, r in ref.items():
        rel = ((got[n] - r).norm() / r.norm()).item()
        assert rel < (2e-2 if dtype == torch.bfloat16 else 5e-3), (n, rel)
    assert _lps_updown_grads(pool, x.double(), g.double(), torch.float64, hard)[0] == torch.float64


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_group_avg_pool3d_half_on_cpu(dtype, gen):
    # torch's CPU avg_pool3d has no half kernel: the control shows the error a user met
    x = torch.randn(2, 3, 4, 5, 5, 5, generator=gen).to(dtype)
    with pytest.raises(RuntimeError, match="avg_pool3d"):
        F.avg_pool3d(x.flatten(1, 2), 3, 2, 1)
    xr = x.detach().requires_grad_()
    pool = enn.GroupAvgPool3d(3, 2, 1, count_include_pad=False)
    y = pool(xr)
    ref = F.avg_pool3d(x.float().flatten(1, 2), 3, 2, 1, count_include_pad=False)
    assert y.dtype == dtype and y.shape == (2, 3, 4, 3, 3, 3)
    assert torch.equal(y, ref.reshape(y.shape).to(dtype))  # one rounding of the float32 mean
    g = torch.randn(y.shape, generator=gen).to(dtype)
    y.backward(g)
    assert xr.grad is not None and xr.grad.dtype == dtype
    xf = x.float().requires_grad_()
    EF.group_avg_pool3d(xf, 3, 2, 1, count_include_pad=False).backward(g.float())
    assert torch.equal(xr.grad, xf.grad.to(dtype))


@pytest.mark.parametrize("group,shape", [("so2", (1, 2, 3, 2, 2)), ("so3", (1, 2, 4, 2, 2, 2))])
def test_tensor_product_float16_products_above_the_range(group, shape, gen):
    """A field ``[300, 0, 0]`` (exact in float16) squared passes 65504 while the output,
    scaled by weights of 0.1, is 9000: inf and NaN in float16 and under autocast to it; the
    products are now formed in float32. The control: the float32 product is above 65504."""
    m = enn.TensorProductNonlinearity(2, group, 1)
    with torch.no_grad():
        m.weight.fill_(0.1)
    x = torch.randn(shape, generator=gen)
    x[:, 0] = 0
    x[:, 0, 0] = 300.0
    ref = m(x.half().float())
    assert torch.isfinite(ref).all() and ref.abs().max() < 6e4 and 300.0**2 > 65504
    y = copy.deepcopy(m).half()(x.half())
    assert y.dtype == torch.float16 and torch.isfinite(y).all()
    torch.testing.assert_close(y.float(), ref, rtol=2e-3, atol=1e-2)
    with torch.autocast("cpu", dtype=torch.float16):
        y = m(x)
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y.float(), m(x), rtol=2e-3, atol=1e-2)


@pytest.mark.parametrize("make", [lambda: enn.TensorProductNonlinearity(2, "so2", 1),
                                  lambda: enn.FourierNonlinearity("so2", 2)],
                         ids=["tensor_product", "fourier"])
def test_compiled_under_autocast_float16_is_guarded_as_eager(make, gen):
    """A compiled graph cannot read the autocast state on torch's floor, so it took the
    unguarded path: under autocast to float16 the tensor product of |x| = 300 was inf and
    NaN where eager was right. Compiled graphs are now always guarded (float32, autocast
    off), with eager's values and dtype."""
    m = make()
    x = torch.randn(1, 2, 3 if isinstance(m, enn.TensorProductNonlinearity) else 5, 2, 2,
                    generator=gen)
    x = x / x.abs().max() * (300 if isinstance(m, enn.TensorProductNonlinearity) else 4e4)
    torch._dynamo.reset()
    compiled = torch.compile(m, backend="eager")
    with torch.autocast("cpu", dtype=torch.float16):
        eager, y = m(x), compiled(x)
    assert torch.isfinite(y).all() and y.dtype == eager.dtype == torch.float32
    torch.testing.assert_close(y, eager)
