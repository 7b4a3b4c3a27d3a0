"""The polyphase pooling Triton kernels == the pure-PyTorch reference, and their dispatch.

As in ``tests/test_kernels.py``: on CUDA when present, else on CPU through Triton's interpreter
(``TRITON_INTERPRET=1``, set by ``make test``); skipped with the reason otherwise. The dispatch
tests run everywhere. Tensors are small: the interpreter runs each program in numpy.
"""

from __future__ import annotations

import pytest
import torch
from _refs import DEVICE, needs_triton, ref_poly
from hypothesis import given, settings
from hypothesis import strategies as st

from equilayers import functional as EF
from equilayers import kernels
from equilayers.kernels import _dispatch


def _randn(gen, *shape, dtype=torch.float32):
    return torch.randn(*shape, generator=gen).to(device=DEVICE, dtype=dtype)


def _compare(x, gen, op=kernels.triton_polyphase_pool2d, atol=0.0, **kw):
    """Forward (values and chosen index) and backward of ``op`` vs the float64 reference."""
    xk = x.detach().requires_grad_(True)
    xr = x.detach().double().requires_grad_(True)
    y, index = op(xk, return_index=True, **kw)
    yr, index_r = ref_poly(xr, return_index=True, **kw)
    assert y.shape == yr.shape and y.dtype == x.dtype and index.dtype == torch.int64
    assert torch.equal(index, index_r), (index, index_r)
    gy = torch.randn(yr.shape, generator=gen, dtype=torch.float64).to(x.device).to(x.dtype)
    (gk,) = torch.autograd.grad(y, xk, gy)
    (gr,) = torch.autograd.grad(yr, xr, gy.double())
    # Without a blur the forward is a copy and the backward a scatter: exact.
    torch.testing.assert_close(y.double(), yr, atol=atol, rtol=atol)
    torch.testing.assert_close(gk.double(), gr, atol=atol, rtol=atol)
    return y, index


@needs_triton
@pytest.mark.parametrize("shape,stride,criterion", [
    ((2, 3, 6, 10), 2, "l2"),  # odd H/s, W/s and channel count
    ((3, 5, 9, 15), 3, "l1"),
    ((2, 1, 12, 8), 4, "linf"),
    ((2, 2, 3, 6, 10), 2, "l2"),  # 5-D: one choice per sample over C, F, H', W'
    ((2, 2, 3, 9, 6), 3, "linf"),
])
def test_triton_polyphase_equals_reference(interpret, gen, shape, stride, criterion):
    _compare(_randn(gen, *shape), gen, stride=stride, criterion=criterion)


@needs_triton
@settings(max_examples=12, deadline=None)
@given(b=st.integers(1, 3), c=st.integers(1, 4), fiber=st.sampled_from([0, 1, 3]),
       stride=st.integers(2, 4), ho=st.integers(1, 4), wo=st.integers(1, 4),
       criterion=st.sampled_from(["l2", "l1", "linf"]),
       layout=st.sampled_from(["contiguous", "channels_last", "transposed"]),
       seed=st.integers(0, 2**31 - 1))
def test_triton_polyphase_property(b, c, fiber, stride, ho, wo, criterion, layout, seed):
    # Hypothesis forbids function-scoped fixtures: the interpreter switch is set here.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EQUILAYERS_TRITON_INTERPRET", "1")
        mp.delenv("EQUILAYERS_DISABLE_TRITON", raising=False)
        g = torch.Generator().manual_seed(seed)
        shape = (b, c, fiber, ho * stride, wo * stride) if fiber else (b, c, ho * stride,
                                                                      wo * stride)
        x = _randn(g, *shape)
        if layout == "channels_last" and not fiber:
            x = x.contiguous(memory_format=torch.channels_last)
        elif layout == "transposed":
            x = _randn(g, *shape[:-2], shape[-1], shape[-2]).transpose(-1, -2)
        _compare(x, g, stride=stride, criterion=criterion)


@needs_triton
def test_triton_polyphase_layouts(interpret, gen):
    x = _randn(gen, 3, 5, 9, 12)
    cl = x.contiguous(memory_format=torch.channels_last)
    y, _ = _compare(cl, gen, stride=3)
    assert y.is_contiguous(memory_format=torch.channels_last)
    # Channels strided and spatial dims transposed; a sliced window with an offset.
    noncontig = _randn(gen, 2, 6, 13, 10).transpose(1, 2)[:, ::2]
    assert not noncontig.is_contiguous() and noncontig.shape == (2, 7, 6, 10)
    _compare(noncontig, gen, stride=2)
    _compare(_randn(gen, 2, 3, 11, 12).transpose(-1, -2)[..., 1:10, 1:7], gen, stride=3,
             criterion="l1")
    # sum().backward() hands the backward kernel a stride-0 (expanded) gradient.
    xg = x.detach().requires_grad_(True)
    kernels.triton_polyphase_pool2d(xg, 3).sum().backward()
    xr = x.detach().double().requires_grad_(True)
    ref_poly(xr, 3).sum().backward()
    assert torch.equal(xg.grad.double(), xr.grad)


@needs_triton
@pytest.mark.parametrize("criterion", ["l2", "l1", "linf"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_triton_polyphase_norms_span_several_chunks(interpret, gen, criterion, channels_last,
                                                   monkeypatch):
    """Components of 3 * 40 * 40 = 4800 elements: more than one chunk of partial norms (4096
    per chunk on CPU; on CUDA 8 blocks, pinned here to 256 elements each, whatever the tuned
    launch table says), the last one partial. The decisive elements sit in the
    last chunk: sample 0's winner (component 3) only there, and in sample 1 component 0 has a
    maximum in the first chunk and another in the last, which a sum of the partial maxima
    would wrongly rank above component 1's single larger one under linf (l1 rightly ranks
    component 0 first: 1.9 > 1.5)."""
    from equilayers.kernels import _triton

    monkeypatch.setitem(_triton.LAUNCH, "phase_norms", ((256, 4), (256, 4)))
    x = _randn(gen, 2, 3, 80, 80) * 1e-3
    x[0, 2, 79, 79] = 5.0  # component 3, last chunk
    x[0, 0, 0, 1] = 1.0  # component 1, first chunk
    x[1, 0, 0, 0], x[1, 2, 78, 78] = 1.0, 0.9  # component 0: both chunks
    x[1, 0, 0, 1] = 1.5  # component 1: first chunk
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    _, index = _compare(x, gen, criterion=criterion)
    assert index.tolist() == [3, 0 if criterion == "l1" else 1]


@needs_triton
def test_triton_polyphase_ties_go_to_the_lowest_index(interpret, gen):
    # Integer values: the float64 sums are exact, so permuted components tie exactly.
    base = torch.randint(-3, 4, (2, 3, 4, 4), generator=gen).float()
    x = torch.zeros(2, 3, 8, 8)
    x[..., 1::2, 0::2] = base  # component 2
    x[..., 0::2, 1::2] = base.flip(-1)  # component 1, same norm
    x = x.to(DEVICE)
    for criterion in ["l2", "l1", "linf"]:
        _, index = _compare(x, gen, criterion=criterion)
        assert index.tolist() == [1, 1]
    _, index = _compare(torch.zeros(2, 2, 6, 6, device=DEVICE), gen, stride=3)
    assert index.tolist() == [0, 0]
    # A NaN makes its component's norm NaN, which argmax takes as the largest.
    nan = _randn(gen, 2, 2, 6, 6)
    k = (ref_poly(nan, 2, return_index=True)[1][1].item() + 1) % 4  # not the clean choice
    nan[1, 1, 2 + k // 2, 4 + k % 2] = float("nan")
    y, index = kernels.triton_polyphase_pool2d(nan, 2, return_index=True)
    assert index[1].item() == k and y[1].isnan().any()
    assert torch.equal(index, ref_poly(nan, 2, return_index=True)[1])


@needs_triton
@pytest.mark.parametrize("criterion", ["linf", "l1"])
def test_triton_polyphase_nan_wins_under_linf_and_l1(interpret, gen, criterion):
    """A NaN makes its component's norm NaN, which argmax takes as the largest: linf's
    partial maxima too (the kernel counts NaNs: tl.max, in Triton's interpreter as well, can
    drop them). One small input and one of several chunks."""
    for shape, where in [((2, 2, 6, 6), (1, 1, 2, 5)), ((2, 3, 80, 80), (1, 2, 79, 78))]:
        x = _randn(gen, *shape)
        k = (where[-2] % 2) * 2 + where[-1] % 2
        x[where] = float("nan")
        y, index = kernels.triton_polyphase_pool2d(x, 2, criterion=criterion, return_index=True)
        assert index[1].item() == k and y[1].isnan().any() and not y[0].isnan().any()
        assert torch.equal(index, ref_poly(x, 2, criterion=criterion, return_index=True)[1])


@needs_triton
def test_triton_polyphase_l2_ranks_the_rounded_norms_as_the_reference(interpret, gen):
    """The l2 choice compares sqrt(sum of squares), as the reference's vector_norm does, not
    the sums: components 0 and 1 have float64 sums of squares one ulp apart
    (26.341295216825525 < ...532) whose square roots round to the same double, so the
    reference ties them and takes component 0, where the larger sum would pick 1."""
    a, b, b2 = 5.1323771476745605, 0.00017565155576448888, 0.0001756515703164041
    assert a * a + b * b < a * a + b2 * b2
    x = torch.zeros(2, 1, 2, 4)
    x[:, 0, 0] = torch.tensor([a, a, b, b2])  # component 0: (a, b); component 1: (a, b2)
    _, index = _compare(x.to(DEVICE), gen)
    assert index.tolist() == [0, 0]


@needs_triton
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_triton_polyphase_half_dtypes(interpret, gen, dtype):
    # The norms are float64 sums of the exact half values: the same choice as the reference.
    _compare(_randn(gen, 2, 3, 6, 8, dtype=dtype), gen, criterion="l2")
    _compare(_randn(gen, 2, 3, 2, 6, 6, dtype=dtype), gen, stride=3, criterion="linf")


@needs_triton
@pytest.mark.parametrize("blur_size,mode", [(3, "circular"), (4, "reflect"), (2, "zeros")])
def test_triton_polyphase_blur_through_the_functional(interpret, gen, blur_size, mode):
    x = _randn(gen, 2, 3, 8, 6)
    kw = {"stride": 2, "blur_size": blur_size, "padding_mode": mode}
    assert kernels.select("polyphase_pool2d", x, **kw)[0] == "triton"
    # The blur (the blur_pool2d kernel, float32 accumulation) rounds differently.
    _compare(x, gen, op=EF.polyphase_pool2d, atol=1e-5, **kw)


@needs_triton
@pytest.mark.parametrize("shape,kw", [((2, 3, 2, 6, 9), {"stride": 3, "criterion": "l1"}),
                                      ((2, 3, 6, 8), {"blur_size": 3, "padding_mode": "reflect"})])
def test_triton_polyphase_double_backward_equals_the_reference(interpret, gen, shape, kw):
    """The backward differentiated again (gradient penalties): its op had no autograd formula,
    a RuntimeError on the kernel path only. It is the gather of the chosen component."""
    x = _randn(gen, *shape)
    assert kernels.select("polyphase_pool2d", x, **kw)[0] == "triton"
    y = ref_poly(x.double(), **kw)
    gy = torch.randn(y.shape, generator=gen, dtype=torch.float64).to(DEVICE)
    v = torch.randn(x.shape, generator=gen, dtype=torch.float64).to(DEVICE)
    got = []
    for op, t in [(EF.polyphase_pool2d, x), (ref_poly, x.double())]:
        t = t.detach().requires_grad_(True)
        g_in = gy.to(t.dtype).requires_grad_(True)
        (g,) = torch.autograd.grad(op(t, **kw), t, g_in, create_graph=True)
        (a,) = torch.autograd.grad((g * v.to(t.dtype)).sum(), g_in)
        got.append(a)
    torch.testing.assert_close(got[0].double(), got[1], atol=1e-5, rtol=1e-5)


@needs_triton
def test_triton_polyphase_opcheck(interpret, gen):
    from equilayers.kernels import _ops

    x = _randn(gen, 2, 3, 6, 8).requires_grad_(True)
    cl = _randn(gen, 2, 5, 6, 9).contiguous(memory_format=torch.channels_last)
    torch.library.opcheck(_ops.polyphase_pool2d, (x, 2, "l2"))
    torch.library.opcheck(_ops.polyphase_pool2d, (cl.requires_grad_(True), 3, "linf"))
    torch.library.opcheck(_ops.polyphase_pool2d, (_randn(gen, 1, 2, 2, 4, 4), 2, "l1"))
    index = torch.tensor([3, 0], device=DEVICE)
    torch.library.opcheck(_ops.polyphase_pool2d_backward,
                          (_randn(gen, 2, 3, 3, 4), index, 6, 8, 2))
    # a gradient that requires grad: the backward's own autograd formula (double backward)
    torch.library.opcheck(_ops.polyphase_pool2d_backward,
                          (_randn(gen, 2, 2, 3, 3, 4).requires_grad_(True), index, 6, 8, 2))


@needs_triton
def test_triton_polyphase_compile_fullgraph_sees_one_op(interpret, gen):
    targets = []

    def backend(gm, example_inputs):
        targets.extend(str(n.target) for n in gm.graph.nodes if n.op == "call_function")
        return gm.forward

    x = _randn(gen, 2, 3, 6, 8)
    fn = torch.compile(lambda t: EF.polyphase_pool2d(t, 2, return_index=True), fullgraph=True,
                       backend=backend)
    y, index = fn(x)
    assert [t for t in targets if "getitem" not in t] == ["equilayers.polyphase_pool2d.default"]
    yr, index_r = ref_poly(x, return_index=True)
    assert torch.equal(y, yr) and torch.equal(index, index_r)


@pytest.mark.parametrize("interpret_on", [False, True])
def test_kernel_polyphase_empty_inputs_take_the_reference(monkeypatch, interpret_on):
    """An empty input is neither the kernel's nor the CPU fast path's (whose reshapes cannot
    infer a size from 0 elements): the reference takes it, says so, and gives its result."""
    monkeypatch.setenv("EQUILAYERS_TRITON_INTERPRET", "1" if interpret_on else "0")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.delenv("EQUILAYERS_DISABLE_TRITON", raising=False)
    monkeypatch.setattr(_dispatch, "triton_available", lambda: True)
    for shape in [(0, 2, 4, 4), (2, 0, 4, 4), (2, 2, 0, 4), (2, 2, 4, 0), (2, 0, 3, 4, 4)]:
        x = torch.zeros(shape)
        path, reason = kernels.select("polyphase_pool2d", x)
        assert path == "reference" and "the input is empty" in reason, (shape, reason)
        y, index = EF.polyphase_pool2d(x, return_index=True)
        yr, index_r = ref_poly(x, return_index=True)
        assert y.shape == yr.shape and torch.equal(index, index_r)
    assert kernels.select("polyphase_pool2d", torch.zeros(2, 2, 4, 4))[0] == (
        "triton" if interpret_on else "fast")  # negative control: a non-empty input


@needs_triton
def test_triton_polyphase_module_dispatches(interpret, gen):
    from equilayers.nn import PolyphasePool2d

    x = _randn(gen, 2, 4, 6, 6)
    assert kernels.explain("polyphase_pool2d", x, stride=3).startswith(
        "polyphase_pool2d: triton (Triton kernel")
    torch.testing.assert_close(PolyphasePool2d(3)(x), ref_poly(x, 3), atol=0, rtol=0)


# --- dispatch: these run with or without triton ------------------------------------------------

def test_kernel_polyphase_dispatch_reasons(monkeypatch, gen):
    monkeypatch.setenv("EQUILAYERS_TRITON_INTERPRET", "1")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.delenv("EQUILAYERS_DISABLE_TRITON", raising=False)
    monkeypatch.setattr(_dispatch, "triton_available", lambda: True)
    x = torch.zeros(1, 2, 6, 6)
    assert "polyphase_pool2d" in kernels.KERNEL_OPS
    for kw in [{}, {"stride": 3, "criterion": "linf"}, {"blur_size": 7, "padding_mode": "zeros"}]:
        assert kernels.select("polyphase_pool2d", x, **kw)[0] == "triton", kw
    assert kernels.select("polyphase_pool2d", torch.zeros(1, 2, 3, 6, 6))[0] == "triton"
    # No kernel, but the CPU fast path takes these (its reason says why there is no kernel).
    for t, expected in [(x.double(), "float64"), (torch.zeros(2, 6, 6), "3 dims")]:
        path, reason = kernels.select("polyphase_pool2d", t)
        assert path == "fast" and expected in reason, reason
    cases = [
        (x.long(), {}, "not floating point"),
        (x, {"stride": 1}, "stride=1 must be an integer >= 2"),
        (x, {"stride": 4}, "divisible by stride=4"),
        (x, {"criterion": "l3"}, "criterion='l3'"),
        (x, {"blur_size": 8}, "blur_size=8 must be"),
        (x, {"padding_mode": "mirror"}, "padding_mode='mirror'"),
        (torch.zeros(1, 2, 2, 2), {"blur_size": 7, "padding_mode": "circular"},
         "padding_mode='circular' with blur_size=7"),
        (torch.zeros(0, 2, 6, 6), {}, "empty"),
    ]
    for t, kwargs, expected in cases:
        path, reason = kernels.select("polyphase_pool2d", t, **kwargs)
        assert path == "reference" and expected in reason, (kwargs, reason)
    with kernels.use_reference():
        assert kernels.select("polyphase_pool2d", x)[0] == "reference"
    monkeypatch.setenv("EQUILAYERS_DISABLE_TRITON", "1")
    assert kernels.select("polyphase_pool2d", x) == (
        "reference", "EQUILAYERS_DISABLE_TRITON=1 is set")


def test_kernel_polyphase_reference_path_unchanged(monkeypatch, gen):
    # Forced to the reference, the functional is its reference, errors included; the CPU
    # fast path (the default) picks the same components.
    monkeypatch.delenv("EQUILAYERS_TRITON_INTERPRET", raising=False)
    x = torch.randn(2, 3, 6, 6, generator=gen)
    xr = x.reshape(2, 3, 3, 2, 3, 2)
    index = (xr.double() ** 2).sum(dim=(1, 2, 4)).reshape(2, 4).argmax(1)
    expected = torch.stack([xr[b, :, :, i // 2, :, i % 2] for b, i in enumerate(index.tolist())])
    with kernels.use_reference():
        assert kernels.select("polyphase_pool2d", x)[0] == "reference"
        y, got = EF.polyphase_pool2d(x, return_index=True)
    assert torch.equal(got, index) and torch.equal(y, expected)
    assert kernels.select("polyphase_pool2d", x)[0] == "fast"
    y, got = EF.polyphase_pool2d(x, return_index=True)
    assert torch.equal(got, index) and torch.equal(y, expected)
    with pytest.raises(ValueError, match="divisible by stride=4"):
        EF.polyphase_pool2d(x, 4)
    with pytest.raises(ValueError, match="stride=1 must be an integer >= 2"):
        EF.polyphase_pool2d(x, 1)
    with pytest.raises(ValueError, match="cannot take this input"):
        kernels.triton_polyphase_pool2d(x.double())


def test_kernel_polyphase_benchmark_rows():
    from benchmarks import bench_kernels

    rows = [c for c in bench_kernels.cases(quick=True) if "Polyphase" in c.name]
    assert [c.name.split(" b")[0] for c in rows] == ["PolyphasePool2d dispatched",
                                                     "PolyphasePool2d reference"]
    for case in rows:
        fn, x = case.make(device="cpu")
        assert fn(x).shape == (*x.shape[:2], x.shape[-2] // 2, x.shape[-1] // 2)


def test_the_norms_launch_fits_cudas_grid_at_any_size():
    """The norms kernel's launch had ``n_comp / (BLOCK * 8)`` programs on the grid's second
    dim, which CUDA caps at 65535: a ``(1, 16, 8, 4096, 4096)`` input (8.6 GB, fits an H100)
    asked for 131k. The blocks per program double until it fits; small inputs keep 8."""
    pytest.importorskip("triton", reason="pip install triton (the launch plan lives beside "
                                         "the kernels)")
    from equilayers.kernels._triton import phase_chunks

    assert phase_chunks(1000, 512) == (8, 1)
    for n_comp in (16 * 8 * 2048 * 2048, 2**31 + 7, 10**11):
        for block in (256, 512, 4096):
            iters, chunks = phase_chunks(n_comp, block)
            per = block * iters  # elements a program covers
            assert chunks <= 65535 and chunks * per >= n_comp > (chunks - 1) * per
