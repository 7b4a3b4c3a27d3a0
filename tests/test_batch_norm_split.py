"""Batch statistics by reductions (``batch_norm_by_reductions``, the CUDA path of the group batch
norms) against ``F.batch_norm``: outputs, gradients (first and second order), running
statistics, dtypes and ranks; and the modules taking it where the rule says so."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from equilayers.functional import _group_norm as GN
from equilayers.nn import GroupBatchNorm2d, GroupBatchNorm3d


def _state(c: int, gen: torch.Generator, dtype=torch.float32):
    w = torch.rand(c, generator=gen, dtype=dtype) + 0.5
    b = torch.randn(c, generator=gen, dtype=dtype)
    return w, b, torch.randn(c, generator=gen, dtype=dtype), torch.rand(c, generator=gen,
                                                                        dtype=dtype) + 0.5


def _broken(x, rm, rv, w, b, momentum, eps):
    """A wrong batch norm (normalizes by the unbiased variance): the comparison must see it."""
    var, mean = torch.var_mean(x, dim=(0, *range(2, x.dim())), correction=1)
    shape = (1, -1) + (1,) * (x.dim() - 2)
    return (x - mean.view(shape)) * torch.rsqrt(var + eps).view(shape) * w.view(shape) \
        + b.view(shape)


@pytest.mark.parametrize("shape", [(4, 3, 8, 5, 5), (2, 2, 24, 3, 3, 3), (6, 5, 7)])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("impl", ["reductions", "broken"])
def test_matches_batch_norm(shape, affine, impl, gen):
    x = (torch.randn(shape, generator=gen, dtype=torch.float64) * 3 + 2).requires_grad_()
    w, b, rm, rv = _state(shape[1], gen, torch.float64)
    w.requires_grad_(affine)
    b.requires_grad_(affine)
    ref_rm, ref_rv = rm.clone(), rv.clone()
    fn = GN.batch_norm_by_reductions if impl == "reductions" else _broken
    args = (w, b) if affine else (None, None)
    if impl == "broken" and not affine:
        args = (torch.ones_like(w), torch.zeros_like(b))
    y = fn(x, rm, rv, *args, 0.3, 1e-5)
    ref = F.batch_norm(x, ref_rm, ref_rv, *args, True, 0.3, 1e-5)
    close = torch.allclose(y, ref, rtol=1e-10, atol=1e-10)
    if impl == "broken":  # the negative control
        assert not close
        return
    assert close
    torch.testing.assert_close(rm, ref_rm, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(rv, ref_rv, rtol=1e-12, atol=1e-12)
    g = torch.randn(shape, generator=gen, dtype=torch.float64)
    inputs = (x, w, b) if affine else (x,)
    got = torch.autograd.grad(y, inputs, g)
    want = torch.autograd.grad(ref, inputs, g)
    for a, e in zip(got, want, strict=True):
        torch.testing.assert_close(a, e, rtol=1e-9, atol=1e-10)


def test_second_order(gen):
    x = torch.randn(3, 2, 4, 3, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    w, b, _, _ = _state(2, gen, torch.float64)
    w.requires_grad_()

    def fn(x, w):
        return GN.batch_norm_by_reductions(x, None, None, w, b, 0.1, 1e-5)

    assert torch.autograd.gradgradcheck(fn, (x, w))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_input(dtype, gen):
    """float32 statistics for a low-precision map with float32 parameters, as torch's batch norm;
    the output in the map's dtype, within its rounding of the float32 result."""
    x32 = torch.randn(4, 3, 8, 6, 6, generator=gen) * 2 + 5
    x = x32.to(dtype)
    w, b, rm, rv = _state(3, gen)
    y = GN.batch_norm_by_reductions(x, rm, rv, w, b, 0.1, 1e-5)
    assert y.dtype == dtype and rm.dtype == rv.dtype == torch.float32
    exact = F.batch_norm(x.float(), None, None, w, b, True, 0.1, 1e-5)
    err = (y.float() - exact).abs().max().item()
    assert err <= 2 * exact.abs().max().item() * torch.finfo(dtype).eps


def test_one_value_per_channel_raises():
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        GN.batch_norm_by_reductions(torch.randn(1, 3, 1, 1, 1), None, None, None, None, 0.1,
                                    1e-5)


def test_rule_keeps_cpu_native():
    """On CPU F.batch_norm is faster (measured: 2.7x), so the rule keeps it; CUDA splits from
    SPLIT_FROM elements per channel (a stand-in with CUDA's device type: none here)."""
    import types

    def on_cuda(shape):
        return types.SimpleNamespace(device=torch.device("cuda"), shape=shape,
                                     numel=lambda: torch.Size(shape).numel())

    assert not GN.split_batch_norm(torch.zeros(2, 2, 2, 2, 2))
    assert not GN.split_batch_norm(torch.zeros(2, 2, 2, 2, 2, device="meta"))
    big = (64, 8, 8, 64, 64)  # 2**21 elements per channel
    assert GN.split_batch_norm(on_cuda(big))
    assert not GN.split_batch_norm(torch.zeros(big, device="meta"))
    assert GN.split_batch_norm(on_cuda((64, 8, 8, 64, 32)))  # 2**20: the threshold
    assert not GN.split_batch_norm(on_cuda((64, 8, 8, 32, 32)))  # 2**19


@pytest.mark.parametrize("cls, shape", [(GroupBatchNorm2d, (4, 3, 8, 5, 5)),
                                        (GroupBatchNorm3d, (2, 3, 24, 3, 3, 3))])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_modules_take_the_split_path(cls, shape, momentum, monkeypatch, gen):
    """With the rule forced on (as on CUDA) the modules train and evaluate as with
    ``F.batch_norm``: outputs, gradients, running statistics and the batch counter."""
    a, ref = cls(shape[1], momentum=momentum).double(), cls(shape[1], momentum=momentum).double()
    ref.load_state_dict(a.state_dict())
    calls = []

    def spy(*args, **kwargs):
        calls.append(1)
        return by_reductions(*args, **kwargs)

    by_reductions = GN.batch_norm_by_reductions
    for step in range(3):
        x = torch.randn(shape, generator=gen, dtype=torch.float64) + step
        with monkeypatch.context() as m:
            m.setattr(GN, "split_batch_norm", lambda x: True)
            m.setattr(GN, "batch_norm_by_reductions", spy)
            ya = a(x.requires_grad_())
        yr = ref(x)
        torch.testing.assert_close(ya, yr, rtol=1e-10, atol=1e-10)
        ga = torch.autograd.grad(ya.square().sum(), (x, a.weight))
        gr = torch.autograd.grad(yr.square().sum(), (x, ref.weight))
        for u, v in zip(ga, gr, strict=True):
            torch.testing.assert_close(u, v, rtol=1e-9, atol=1e-9)
    assert len(calls) == 3
    for name, t in a.state_dict().items():
        torch.testing.assert_close(t, ref.state_dict()[name], rtol=1e-12, atol=1e-12)
    a.eval()
    ref.eval()
    with monkeypatch.context() as m:
        m.setattr(GN, "split_batch_norm", lambda x: True)
        m.setattr(GN, "batch_norm_by_reductions", spy)
        torch.testing.assert_close(a(x), ref(x))
    assert len(calls) == 3  # eval uses the running statistics: F.batch_norm's elementwise path


def test_eager_takes_the_hand_written_backward(gen):
    x = torch.randn(3, 2, 4, 3, 3, generator=gen, requires_grad=True)
    y = GN.batch_norm_by_reductions(x, None, None, None, None, 0.1, 1e-5)
    assert "ByReductions" in type(y.grad_fn).__name__


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_gradients(dtype, gen):
    """The hand-written backward of a low-precision map: float32 reductions, the gradient in
    the map's dtype within its rounding of the float32 gradient."""
    x32 = torch.randn(4, 3, 8, 6, 6, generator=gen) * 2 + 5
    w, b, _, _ = _state(3, gen)
    g = torch.randn(x32.shape, generator=gen).to(dtype)
    x = x32.to(dtype).requires_grad_()
    w.requires_grad_()
    gx, gw = torch.autograd.grad(GN.batch_norm_by_reductions(x, None, None, w, b, 0.1, 1e-5),
                                 (x, w), g)
    assert gx.dtype == dtype and gw.dtype == torch.float32
    xe = x.detach().float().requires_grad_()
    ex, ew = torch.autograd.grad(F.batch_norm(xe, None, None, w, b, True, 0.1, 1e-5), (xe, w),
                                 g.float())
    assert (gx.float() - ex).abs().max() <= 4 * ex.abs().max() * torch.finfo(dtype).eps
    torch.testing.assert_close(gw, ew, rtol=1e-4, atol=1e-4)


def test_transforms_take_the_plain_ops(gen):
    """torch.func (grad, vmap, jvp) and forward-mode AD see plain ops, with F.batch_norm's
    derivatives."""
    x = torch.randn(5, 3, 2, 4, 3, 3, generator=gen, dtype=torch.float64)
    t = torch.randn(x.shape[1:], generator=gen, dtype=torch.float64)

    def ours(x):
        return GN.batch_norm_by_reductions(x, None, None, None, None, 0.1, 1e-5).sin().sum()

    def ref(x):
        return F.batch_norm(x, None, None, None, None, True, 0.1, 1e-5).sin().sum()

    got = torch.func.vmap(torch.func.grad(ours))(x)
    torch.testing.assert_close(got, torch.func.vmap(torch.func.grad(ref))(x))
    assert not torch.allclose(got, torch.func.vmap(torch.func.grad(ref))(x.flip(0)))
    torch.testing.assert_close(torch.func.jvp(ours, (x[0],), (t,))[1],
                               torch.func.jvp(ref, (x[0],), (t,))[1])


@pytest.mark.parametrize("statistics", ["order", "field", "order_centred"])
def test_harmonic_batch_norm_refuses_one_value_per_channel_in_training(statistics, gen):
    """As torch's batch norms: a batch of one 1x1 map has variance 0 about its mean. It was
    normalized by sqrt(eps) (order-1 outputs of 1200-2100) and pulled running_var to 0."""
    from equilayers.nn import GroupBatchNorm3d, HarmonicBatchNorm

    bn = HarmonicBatchNorm(2, 2, group="so2", statistics=statistics)
    before = bn.running_var.clone()
    with pytest.raises(ValueError, match=r"harmonic_batch_norm: expected more than 1 value "
                                         r"per channel.*\(1, 2, 5, 1, 1\)"):
        bn(torch.randn(1, 2, 5, 1, 1, generator=gen))
    assert torch.equal(bn.running_var, before)
    bn(torch.randn(2, 2, 5, 1, 1, generator=gen))  # the control: two values train
    assert bn.eval()(torch.randn(1, 2, 5, 1, 1, generator=gen)).isfinite().all()
    # the user's 6-D shape and the layer, not torch's folded 5-D one
    with pytest.raises(ValueError, match=r"GroupBatchNorm3d: .*\(1, 2, 1, 1, 1, 1\)"):
        GroupBatchNorm3d(2)(torch.randn(1, 2, 1, 1, 1, 1, generator=gen))
    # a volume of planar fields: the user's 6-D shape, not the planes' (B, C, F, D, H*W) view
    with pytest.raises(ValueError, match=r"harmonic_batch_norm: .*\(1, 2, 5, 1, 1, 1\)"):
        HarmonicBatchNorm(2, 2, group="so2", statistics=statistics, spatial_dims=3)(
            torch.randn(1, 2, 5, 1, 1, 1, generator=gen))
