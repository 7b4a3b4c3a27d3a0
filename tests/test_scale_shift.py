"""The per-slot affine of the harmonic batch norms (``functional._harmonic_bn.scale_shift``):
on the CPU, from ``SCALE_SHIFT_BN_FROM`` elements, an eval-mode ``F.batch_norm`` (mean 0,
variance 1, ``eps = 0``) instead of a broadcasting ``addcmul``. The two paths agree to float
rounding in outputs, every gradient, second derivatives, under ``torch.func``, forward-mode AD,
``torch.compile``, ``torch.export`` and ``torch.jit.trace``; the layers' running statistics
are untouched by the choice. The threshold is set to 0 (every call takes ``F.batch_norm``) or
to infinity (none does) with ``monkeypatch``, and each test checks which op ran, so no check
passes on the path it does not mean to test."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import equilayers.functional._harmonic_bn as H
from equilayers.nn import HarmonicBatchNorm


class _Ops(TorchDispatchMode):
    """The names of the aten ops that ran."""

    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.add(func.__name__.split(".")[0])
        return func(*args, **(kwargs or {}))


def _took_batch_norm(names: set[str]) -> bool:
    return any("batch_norm" in n for n in names)


@pytest.fixture(params=["batch_norm", "addcmul"])
def path(request, monkeypatch):
    monkeypatch.setattr(H, "SCALE_SHIFT_BN_FROM", 0 if request.param == "batch_norm" else math.inf)
    return request.param


def _inputs(dtype=torch.float64, shape=(3, 4, 5, 6, 7)):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=gen, dtype=dtype)
    scale = torch.randn(shape[1], shape[2], generator=gen, dtype=dtype)
    shift = torch.randn(shape[1], shape[2], generator=gen, dtype=dtype)
    return x, scale, shift


def _reference(x, scale, shift):
    view = (1, *scale.shape) + (1,) * (x.dim() - 3)
    return x * scale.view(view) + shift.view(view)


@pytest.mark.parametrize("shape", [(3, 4, 5, 6, 7), (2, 3, 4, 3, 4, 5), (0, 4, 5, 6, 7)])
def test_values_and_gradients_equal_the_product(path, shape):
    x, scale, shift = (t.requires_grad_(True) for t in _inputs(shape=shape))
    with _Ops() as ops:
        y = H.scale_shift(x, scale, shift)
    if x.numel():  # torch's batch_norm answers an empty input without its kernel
        assert _took_batch_norm(ops.names) == (path == "batch_norm"), ops.names
    want = _reference(x, scale, shift)
    torch.testing.assert_close(y, want, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(y)
    got = torch.autograd.grad(y, (x, scale, shift), g)
    ref = torch.autograd.grad(want, (x, scale, shift), g)
    for a, b in zip(got, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_the_check_rejects_a_wrong_affine(monkeypatch):
    """Negative control: the same comparison fails when shift is added twice."""
    monkeypatch.setattr(H, "SCALE_SHIFT_BN_FROM", 0)
    x, scale, shift = _inputs()
    with pytest.raises(AssertionError):
        torch.testing.assert_close(H.scale_shift(x, scale, 2 * shift),
                                   _reference(x, scale, shift), rtol=1e-12, atol=1e-12)


def test_second_derivatives(path):
    x, scale, shift = (t.requires_grad_(True) for t in _inputs(shape=(2, 2, 3, 3, 3)))
    assert torch.autograd.gradgradcheck(H.scale_shift, (x, scale, shift))


def test_torch_func_and_forward_ad(path):
    x, scale, shift = _inputs()
    tangents = tuple(torch.randn_like(t) for t in (x, scale, shift))
    out, jvp = torch.func.jvp(H.scale_shift, (x, scale, shift), tangents)
    r_out, r_jvp = torch.func.jvp(_reference, (x, scale, shift), tangents)
    torch.testing.assert_close(out, r_out, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(jvp, r_jvp, rtol=1e-12, atol=1e-12)
    got = torch.func.vmap(lambda xi: H.scale_shift(xi[None], scale, shift)[0])(x)
    torch.testing.assert_close(got, _reference(x, scale, shift), rtol=1e-12, atol=1e-12)
    grads = torch.func.grad(lambda s: H.scale_shift(x, s, shift).square().sum())(scale)
    ref = torch.func.grad(lambda s: _reference(x, s, shift).square().sum())(scale)
    torch.testing.assert_close(grads, ref, rtol=1e-12, atol=1e-12)


def _bn_pair(name: str):
    gen = torch.Generator().manual_seed(0)
    if name == "so3":
        make, shape = (lambda: HarmonicBatchNorm(3, 1, group="so3")), (4, 3, 4, 5, 6, 7)
    elif name == "field":
        make, shape = (lambda: HarmonicBatchNorm(3, 2, statistics="field")), (4, 3, 5, 9, 8)
    else:
        make, shape = (lambda: HarmonicBatchNorm(3, 2)), (4, 3, 5, 9, 8)
    m = make().double()
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return m, torch.randn(*shape, generator=gen, dtype=torch.float64)


@pytest.mark.parametrize("name", ["planar", "field", "so3"])
def test_layers_equal_on_both_paths(name, monkeypatch):
    """HarmonicBatchNorm in training (the hand-written backward of planar fields, with its sums
    and ``dx`` from ``native_batch_norm_backward`` or not; plain autograd for the others) and
    in eval: outputs, gradients and running statistics equal on the two paths."""
    results = {}
    for threshold in (0, math.inf):
        monkeypatch.setattr(H, "SCALE_SHIFT_BN_FROM", threshold)
        m, x = _bn_pair(name)
        x.requires_grad_(True)
        out = {}
        with _Ops() as ops:
            y = m(x)
        assert _took_batch_norm(ops.names) == (threshold == 0), ops.names
        g = torch.randn(y.shape, generator=torch.Generator().manual_seed(1), dtype=y.dtype)
        with _Ops() as ops:  # planar: the hand-written backward's fused sums; else autograd's
            grads = torch.autograd.grad(y, (x, *m.parameters()), g)
        assert ("native_batch_norm_backward" in ops.names) == (threshold == 0), ops.names
        out["train"] = (y.detach(), *grads)
        # the expanded (stride 0) gradient of a sum
        out["sum"] = torch.autograd.grad(m(x).sum(), (x, *m.parameters()))
        with torch.autograd.forward_ad.dual_level():  # the plain-op path of training
            dual = torch.autograd.forward_ad.make_dual(x.detach(), torch.ones_like(x))
            out["forward_ad"] = tuple(torch.autograd.forward_ad.unpack_dual(m(dual)))
        out["stats"] = tuple(b.clone() for b in m.buffers())
        m.eval()
        with torch.no_grad():
            out["eval"] = (m(x),)
        results[threshold] = out
    for key in results[0]:
        for a, b in zip(results[0][key], results[math.inf][key], strict=True):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12, msg=key)


def test_compile_export_and_trace(monkeypatch):
    """The batch-norm path under ``torch.compile(fullgraph=True)`` (eager backend), in an
    exported program and in a ``torch.jit.trace``: the eager outputs and gradients."""
    monkeypatch.setattr(H, "SCALE_SHIFT_BN_FROM", 0)
    m, x = _bn_pair("planar")
    m.eval()
    with torch.no_grad():
        want = m(x)
    compiled = torch.compile(m, backend="eager", fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), want, rtol=1e-12, atol=1e-12)
    exported = torch.export.export(m, (x,))
    torch.testing.assert_close(exported.module()(x), want, rtol=1e-12, atol=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.trace's deprecation (torch 2.13 on)
        traced = torch.jit.trace(m, (x,))
    torch.testing.assert_close(traced(x), want, rtol=1e-12, atol=1e-12)
    m.train()
    xg = x.clone().requires_grad_(True)
    torch.compile(m, backend="eager", fullgraph=True)(xg).square().sum().backward()
    xr = x.clone().requires_grad_(True)
    monkeypatch.setattr(H, "SCALE_SHIFT_BN_FROM", math.inf)
    m2, _ = _bn_pair("planar")
    m2(xr).square().sum().backward()
    torch.testing.assert_close(xg.grad, xr.grad, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_inputs_and_autocast(dtype, monkeypatch):
    """float16/bfloat16 inputs (statistics and affine in float32) and CPU autocast: the two
    paths agree to the output dtype's rounding."""
    outs = []
    for threshold in (0, math.inf):
        monkeypatch.setattr(H, "SCALE_SHIFT_BN_FROM", threshold)
        m, x = _bn_pair("planar")
        m = m.float()
        y_half = m(x.to(dtype))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y_amp = m(x.float())
        outs.append((y_half, y_amp))
    for a, b in zip(*outs, strict=True):
        assert a.dtype == b.dtype
        torch.testing.assert_close(a.float(), b.float(), rtol=1e-2, atol=1e-2)


def test_non_contiguous_and_small_inputs_take_the_addcmul(monkeypatch):
    """A channels_last_3d or sliced ``x`` (a ``view`` to ``(B, C F, -1)`` would need a copy) and
    an ``x`` below the threshold take the ``addcmul``; the results still agree."""
    monkeypatch.setattr(H, "SCALE_SHIFT_BN_FROM", 0)
    x, scale, shift = _inputs()
    for xi in (x.to(memory_format=torch.channels_last_3d), x[..., ::2]):
        with _Ops() as ops:
            y = H.scale_shift(xi, scale, shift)
        assert not _took_batch_norm(ops.names)
        torch.testing.assert_close(y, _reference(xi, scale, shift), rtol=1e-12, atol=1e-12)
    monkeypatch.setattr(H, "SCALE_SHIFT_BN_FROM", x.numel() + 1)
    with _Ops() as ops:
        H.scale_shift(x, scale, shift)
    assert not _took_batch_norm(ops.names)


@pytest.mark.parametrize("statistics", ["order", "field"])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_path_is_exactly_equivariant_and_keeps_nan(statistics, training, monkeypatch):
    """On the batch-norm path, HarmonicBatchNorm commutes with the fiber's quarter turns to
    float64 rounding (the equivariance table runs its small inputs on the ``addcmul``); a map
    that is not equivariant fails the same check (negative control). A NaN in the input
    reaches the output there too."""
    from equilayers.metrics import equivariance_error

    monkeypatch.setattr(H, "SCALE_SHIFT_BN_FROM", 0)
    m, x = _bn_pair("planar")
    if statistics == "field":
        m = HarmonicBatchNorm(3, 2, statistics="field").double()
        m(x)  # running statistics
    m.train(training)
    with _Ops() as ops:
        m(x)
    assert _took_batch_norm(ops.names)
    assert equivariance_error(m, x, "c4", in_rep="harmonic", out_rep="harmonic") < 1e-10
    assert equivariance_error(torch.nn.functional.elu, x, "c4", in_rep="harmonic",
                              out_rep="harmonic") > 1e-2
    nan = x.clone()
    nan[1, 2, 3, 4, 5] = float("nan")
    assert torch.isnan(m(nan)).any()
