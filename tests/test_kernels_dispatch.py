"""The dispatch between the Triton kernels, the CPU fast path and the pure-PyTorch references
(``kernels.select`` / ``explain``, the switches, a forced reference), and the CPU fast path:
the stride-1 max pool equals ``max_pool2d`` (values, gradients, higher order), the functional
fast path equals the reference and is not traced. These run with or without triton (the
kernels themselves: ``tests/test_kernels.py``).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from _refs import ref_blur, ref_max_blur

from equilayers import functional as EF
from equilayers import kernels
from equilayers.kernels import _dispatch, _registry

# --- dispatch: these run with or without triton ------------------------------------------------

def test_kernel_dispatch_cpu_default_is_fast_or_reference(monkeypatch):
    monkeypatch.delenv("EQUILAYERS_TRITON_INTERPRET", raising=False)
    monkeypatch.delenv("EQUILAYERS_DISABLE_TRITON", raising=False)
    path, reason = kernels.select("blur_pool2d", torch.zeros(1, 2, 8, 8))
    assert path == "fast" and "separable" in reason and "CPU" in reason
    assert kernels.explain("max_blur_pool2d", torch.zeros(1, 2, 8, 8)).startswith(
        "max_blur_pool2d: fast[separable] (PyTorch fast path")
    assert kernels.select("max_blur_pool2d", torch.zeros(1, 2, 8, 8), padding=1)[0] == "fast"
    path, reason = kernels.select("blur_pool2d", torch.zeros(1, 2, 8, 8, dtype=torch.bfloat16))
    assert path == "reference" and "takes float32 and float64, not bfloat16" in reason
    path, reason = kernels.select("polyphase_pool2d", torch.zeros(1, 2, 8, 8))
    assert path == "fast" and "float64 by row chunks" in reason
    path, reason = kernels.select("polyphase_pool2d", torch.zeros(1, 2, 8, 8, dtype=torch.half))
    assert path == "reference" and "not float16" in reason


def test_kernel_dispatch_reasons(monkeypatch):
    monkeypatch.setenv("EQUILAYERS_TRITON_INTERPRET", "1")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.delenv("EQUILAYERS_DISABLE_TRITON", raising=False)
    monkeypatch.setattr(_dispatch, "triton_available", lambda: True)
    x = torch.zeros(1, 2, 8, 8)
    assert kernels.select("blur_pool2d", x)[0] == "triton"
    assert "interpreter" in kernels.explain("blur_pool2d", x)
    cases = [
        (("blur_pool2d", x), {"kernel_size": 9}, "kernel_size=9 must be an integer in 1..7"),
        (("blur_pool2d", x), {"padding_mode": "mirror"}, "padding_mode='mirror'"),
        (("blur_pool2d", x.long()), {}, "not floating point"),
        (("blur_pool2d", torch.zeros(1, 1, 8, 1)), {"kernel_size": 5, "padding_mode": "circular"},
         "padding_mode='circular' with kernel_size=5"),
        (("max_blur_pool2d", torch.zeros(1, 1, 4, 8)),
         {"kernel_size": 4, "blur_size": 5, "padding_mode": "circular"},
         "padding_mode='circular' with blur_size=5"),
        (("blur_pool2d", [1.0]), {}, "not a tensor"),
        (("polyphase_upsample2d", x), {}, "has no Triton kernel"),
    ]
    for args, kwargs, expected in cases:
        path, reason = kernels.select(*args, **kwargs)
        assert path == "reference" and expected in reason, (args, kwargs, reason)
    # kernel_support (switches aside) refuses a call the spec rejects, in the spec's words
    assert kernels.kernel_support("blur_pool2d", x) == (True, kernels.select("blur_pool2d", x)[1])
    for args, kwargs, expected in cases[:5]:
        ok, reason = kernels.kernel_support(*args, **kwargs)
        assert not ok and expected in reason, (args, kwargs, reason)
    path, reason = kernels.select("blur_pool2d", x.double())  # not the kernel's: the CPU fast path
    assert path == "fast" and "float64 is not one of the kernel's" in reason, reason
    path, reason = kernels.select("blur_pool2d", torch.zeros(2, 8, 8))
    assert path == "fast" and "the input has 3 dims" in reason, reason
    path, reason = kernels.select("max_blur_pool2d", x, kernel_size=6)  # valid, not for the kernel
    assert path == "fast" and "max-pool kernel_size 6 is outside" in reason, reason
    # the kernel's window limit is exactly 4: 4 takes it, 5 does not
    assert kernels.select("max_blur_pool2d", x, kernel_size=4)[0] == "triton"
    path, reason = kernels.select("max_blur_pool2d", x, kernel_size=5)
    assert path == "fast" and "max-pool kernel_size 5 is outside the kernel's 1..4" in reason
    assert kernels.select("max_blur_pool2d", x, kernel_size=3, padding=1)[0] == "triton"
    with kernels.use_reference():
        assert kernels.select("blur_pool2d", x) == (
            "reference", "inside equilayers.kernels.use_reference()")
        with kernels.use_reference():
            pass
        assert kernels.select("blur_pool2d", x)[0] == "reference"  # nesting restores depth
    assert kernels.select("blur_pool2d", x)[0] == "triton"
    monkeypatch.setenv("EQUILAYERS_DISABLE_TRITON", "1")
    assert kernels.select("blur_pool2d", x) == ("reference", "EQUILAYERS_DISABLE_TRITON=1 is set")
    monkeypatch.delenv("EQUILAYERS_DISABLE_TRITON")
    monkeypatch.setattr(_dispatch, "triton_available", lambda: False)
    assert "triton is not installed" in kernels.select("blur_pool2d", x)[1]


@pytest.mark.parametrize("interpret_on", [False, True])
def test_kernel_dispatch_sparse_input_is_the_specs_type_error(monkeypatch, interpret_on):
    """A sparse input took the kernel (or the CPU fast path), which raised PyTorch's 'Cannot
    access storage of SparseTensorImpl' / 'as_strided' errors; the spec now names the fix."""
    monkeypatch.setenv("EQUILAYERS_TRITON_INTERPRET", "1" if interpret_on else "0")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setattr(_dispatch, "triton_available", lambda: True)
    dense = torch.zeros(1, 2, 4, 4)
    for op in ("blur_pool2d", "max_blur_pool2d", "polyphase_pool2d"):
        assert kernels.select(op, dense)[0] == ("triton" if interpret_on else "fast")  # control
        path, reason = kernels.select(op, dense.to_sparse())
        assert path == "reference" and "dense (strided)" in reason, reason
        with pytest.raises(TypeError, match=rf"{op}: x must be a dense .* x\.to_dense\(\)"):
            kernels.dispatch(op, dense.to_sparse())


def test_kernel_dispatch_calls_reference_when_forced(monkeypatch, gen):
    monkeypatch.setenv("EQUILAYERS_TRITON_INTERPRET", "1")
    calls = []
    op = _registry.get_op("blur_pool2d")

    def reference(t, **kw):
        calls.append(kw)
        return op.reference(t, **kw)

    # the table's entry, with a reference that records its calls
    monkeypatch.setitem(_registry._OPS, "blur_pool2d", dataclasses.replace(op, reference=reference))
    x = torch.randn(1, 2, 7, 7, generator=gen)
    with kernels.use_reference():
        y = kernels.dispatch("blur_pool2d", x, kernel_size=3, stride=2, padding_mode="zeros")
    assert calls == [{"kernel_size": 3, "stride": 2, "padding_mode": "zeros"}]
    torch.testing.assert_close(y, ref_blur(x, 3, 2, "zeros"))


def test_kernel_explicit_entry_rejects_unsupported_input(monkeypatch):
    monkeypatch.delenv("EQUILAYERS_TRITON_INTERPRET", raising=False)
    with pytest.raises(ValueError, match="cannot take this input"):
        kernels.triton_blur_pool2d(torch.zeros(1, 1, 8, 8, dtype=torch.float64))


def test_kernel_dispatch_traces_fullgraph_on_the_reference_path(monkeypatch, gen):
    monkeypatch.delenv("EQUILAYERS_TRITON_INTERPRET", raising=False)

    def f(t):
        return kernels.dispatch("blur_pool2d", t, kernel_size=3, stride=2,
                                padding_mode="reflect")

    x = torch.randn(1, 2, 8, 8, generator=gen)
    torch.testing.assert_close(torch.compile(f, fullgraph=True, backend="eager")(x), ref_blur(x))


# --- the CPU fast path: same values and gradients as max_pool2d(stride=1) ------------------------

@pytest.mark.parametrize("m", [1, 2, 3])
def test_kernel_cpu_max_pool2d_stride1_equals_max_pool2d(gen, m):
    x = torch.randn(2, 3, 9, 8, generator=gen)
    ties = torch.randint(0, 3, (2, 3, 9, 8), generator=gen).float()  # first-maximum routing
    nan = x.clone()
    nan[0, 1, 4, 4] = nan[1, 2, 0, 1] = float("nan")
    for t in [x, ties, x.contiguous(memory_format=torch.channels_last), x.transpose(-1, -2),
              nan]:
        a = t.detach().requires_grad_(True)
        b = t.detach().requires_grad_(True)
        ya = kernels.max_pool2d_stride1(a, m)
        yb = F.max_pool2d(b, m, stride=1)
        assert torch.equal(ya, yb) or (ya.isnan() == yb.isnan()).all()
        g = torch.randn(yb.shape, generator=gen)
        (ga,) = torch.autograd.grad(ya, a, g)
        (gb,) = torch.autograd.grad(yb, b, g)
        # The same routing; sums over overlapping windows may round in another order.
        torch.testing.assert_close(ga, gb, atol=1e-6, rtol=1e-6)


def test_kernel_cpu_max_pool2d_stride1_gradcheck(gen):
    x = torch.randn(1, 2, 5, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: kernels.max_pool2d_stride1(t, 2), (x,))
    for shape in [(1, 1, 3, 8), (1, 1, 8, 3)]:  # too short along H, then along W
        with pytest.raises(ValueError, match="kernel_size=4 is larger"):
            kernels.max_pool2d_stride1(torch.zeros(shape), 4)


@pytest.mark.parametrize("m", [2, 3])
def test_kernel_cpu_max_pool2d_stride1_non_finite_upstream_gradient(gen, m):
    """A finite input with an inf or NaN upstream gradient: max_pool2d's backward sends each
    entry to its window's maximum only, where the mask backward's ``0 * inf`` would put NaN on
    every other input the window covers (so such a gradient takes max_pool2d's own)."""
    x = torch.randn(2, 3, 7, 6, generator=gen)
    g = torch.randn(2, 3, 8 - m, 7 - m, generator=gen)
    g[0, 1, 2, 2], g[1, 0, 0, 1] = float("inf"), float("nan")
    a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    (ga,) = torch.autograd.grad(kernels.max_pool2d_stride1(a, m), a, g)
    (gb,) = torch.autograd.grad(F.max_pool2d(b, m, stride=1), b, g)
    torch.testing.assert_close(ga, gb, equal_nan=True)
    assert int(ga.isnan().sum()) == 1  # the NaN lands on one maximum, not its whole window


@pytest.mark.parametrize("m", [2, 3])
def test_kernel_cpu_max_pool2d_stride1_higher_order(gen, m):
    """Double backward (a gradient penalty), torch.func and forward-mode AD give
    ``F.max_pool2d``'s answers. Before: ``m=2``'s backward wrote through ``out=`` buffers
    ("addcmul(): functions with out=... arguments don't support automatic differentiation"),
    ``m=3``'s was ``once_differentiable``, which left its path out of a gradient penalty
    without a word (a conv's weight got 43711 for 109325 in the probe), every ``torch.func``
    transform asked for ``setup_context`` and forward AD for a ``jvp``."""
    from torch.autograd import forward_ad as fwAD

    x = torch.randn(1, 2, 5, 6, generator=gen, dtype=torch.float64)
    v = torch.randn(x.shape, generator=gen, dtype=x.dtype)
    weight = torch.randn(3, 2, 2, 2, generator=gen, dtype=x.dtype)
    ours = lambda t: kernels.max_pool2d_stride1(t, m)  # noqa: E731
    ref = lambda t: F.max_pool2d(t, m, stride=1)  # noqa: E731
    assert torch.autograd.gradgradcheck(ours, (x.clone().requires_grad_(True),))
    pen = []
    for fn in (ours, ref):  # WGAN-GP: the input gradient's norm, differentiated in the weight
        t, w = x.clone().requires_grad_(True), weight.clone().requires_grad_(True)
        (g,) = torch.autograd.grad((fn(F.conv2d(t, w, padding=1)) ** 2).sum(), t,
                                   create_graph=True)
        pen.append(torch.autograd.grad((g ** 2).sum(), w)[0])
    torch.testing.assert_close(*pen, rtol=1e-12, atol=1e-12)
    jvp = lambda f: torch.func.jvp(f, (x,), (v,))[1]  # noqa: E731
    hessian = lambda f: torch.func.hessian(lambda t: (f(t) ** 3).sum())(x)  # noqa: E731
    batched = lambda f: torch.func.vmap(f)(torch.stack([x, 2 * x]))  # noqa: E731
    for run in (jvp, hessian, batched):
        torch.testing.assert_close(run(ours), run(ref), rtol=1e-12, atol=1e-12)
    with fwAD.dual_level():
        tangent = fwAD.unpack_dual(ours(fwAD.make_dual(x, v))).tangent
    torch.testing.assert_close(tangent, torch.func.jvp(ref, (x,), (v,))[1])


def test_kernel_functional_fast_path_equals_reference(monkeypatch, gen):
    monkeypatch.delenv("EQUILAYERS_TRITON_INTERPRET", raising=False)
    x = torch.randn(2, 3, 2, 9, 8, generator=gen, dtype=torch.float64)
    assert kernels.select("max_blur_pool2d", x)[0] == "fast"
    for kw in [{}, {"kernel_size": 3, "stride": 2, "blur_size": 4, "padding_mode": "circular"}]:
        torch.testing.assert_close(EF.max_blur_pool2d(x, **kw), ref_max_blur(x, **kw))
    # Training takes the fast path for every window and max-pool padding (the ResNet stem's
    # MaxBlurPool2d(3, 2, 1) included), values and gradients equal to the reference's.
    x.requires_grad_(True)
    for kw in [{}, {"kernel_size": 3, "stride": 2, "padding": 1},
               {"kernel_size": 4, "stride": 2, "padding": 2}]:
        assert kernels.select("max_blur_pool2d", x, **kw)[0] == "fast"
        (ga,) = torch.autograd.grad(EF.max_blur_pool2d(x, **kw).sum(), x)
        (gb,) = torch.autograd.grad(ref_max_blur(x, **kw).sum(), x)
        torch.testing.assert_close(ga, gb)
    with pytest.raises(ValueError, match="kernel_size=0 must be an integer >= 1"):
        EF.max_blur_pool2d(x, kernel_size=0)


def test_kernel_fast_path_is_not_traced(monkeypatch, gen):
    monkeypatch.delenv("EQUILAYERS_TRITON_INTERPRET", raising=False)
    targets = []

    def backend(gm, example_inputs):
        targets.extend(str(n.target) for n in gm.graph.nodes if n.op == "call_function")
        return gm.forward

    x = torch.randn(1, 2, 9, 8, generator=gen)
    out = torch.compile(EF.max_blur_pool2d, fullgraph=True, backend=backend)(x)
    assert targets and not any("maximum" in t or "autograd_function" in t for t in targets)
    torch.testing.assert_close(out, ref_max_blur(x))
    targets.clear()  # the check above can fail: the fast path, traced, shows its maxima
    torch.compile(lambda t: kernels.max_pool2d_stride1(t, 2), fullgraph=True, backend=backend)(x)
    assert any("maximum" in t or "autograd_function" in t for t in targets), targets


def test_axis_tables_copy_only_the_pass_they_serve():
    """A kernel call copies the two tables of its pass (forward taps, or the transposed ones
    for the backward), not all four: on a GPU each copy is a host-to-device transfer per call."""
    from equilayers.kernels._tables import _tables_cpu, axis_tables

    full = _tables_cpu(9, 3, 2, "reflect")
    fwd, bwd = axis_tables(9, 3, 2, "reflect", "cpu"), axis_tables(9, 3, 2, "reflect", "cpu",
                                                                    backward=True)
    assert len(fwd) == len(bwd) == 2
    assert all(torch.equal(a, b) for a, b in zip(fwd + bwd, full, strict=True))
    assert fwd[0].shape == (5, 3) and bwd[0].shape[0] == 9
