"""The kernel-op table (``equilayers.kernels._registry`` / ``_op_table``): a registered op is
routed by its entry alone, and every path of every entry accepts exactly what the op's
reference accepts.

The parity matrix runs the CPU fast paths everywhere and the Triton kernels where they can run
(CUDA, or ``TRITON_INTERPRET=1`` with triton installed: ``make test`` sets it).
"""

from __future__ import annotations

import inspect
import itertools

import pytest
import torch
from _refs import CAN_RUN, DEVICE

from equilayers import _checks as C
from equilayers import kernels
from equilayers.kernels import _dispatch, _layout, _layout_table, _registry
from equilayers.kernels._registry import FastPath, KernelOp, register_op

# --- a toy op, registered for one test at a time -------------------------------------------------


def _check_toy(x, factor=2):
    C.check_int(factor, "factor", "toy_scale", minimum=1)
    C.check_tensor(x, "x", "toy_scale", min_ndim=1)


def _toy_op(calls: list, *, fast_device="cpu", lax=False) -> KernelOp:
    """``toy_scale(x, factor) = factor * x``; each path records its calls. ``lax``: the fast
    path takes ``factor=0``, which the reference rejects (and no spec says so)."""

    def reference(x, factor=2):
        calls.append("reference")
        C.check_int(factor, "factor", "toy_scale", minimum=1)  # the rule the lax spec lacks
        _check_toy(x, factor)
        return x * factor

    def fast(x, factor=2):
        calls.append("fast")
        return x * factor

    def triton(x, factor=2):
        calls.append("triton")
        return x * factor

    def check(x, factor=2):
        if not lax:
            _check_toy(x, factor)

    return KernelOp(
        name="toy_scale", reference=reference, check=check, triton=triton,
        triton_supports=lambda x, factor=2: "factor 3 is not the kernel's" if factor == 3
        else None,
        fast={fast_device: FastPath(fast, "toy fast path: one multiply")},
        fast_supports=lambda x, factor=2: f"factor {factor} > 3" if factor > 3 else None,
    )


@pytest.fixture
def plain_cpu(monkeypatch):
    monkeypatch.delenv("EQUILAYERS_TRITON_INTERPRET", raising=False)
    monkeypatch.delenv("EQUILAYERS_DISABLE_TRITON", raising=False)


def test_a_registered_op_is_routed_by_its_entry(plain_cpu, monkeypatch):
    calls: list[str] = []
    x = torch.arange(24.0).reshape(1, 2, 3, 4)
    with register_op(_toy_op(calls)):
        assert "toy_scale" in kernels.KERNEL_OPS and "toy_scale" in kernels.FAST_OPS
        # the fast path where it takes the call, the reference where it does not
        path, reason = kernels.select("toy_scale", x)
        assert path == "fast" and reason.startswith("toy fast path: one multiply; the default")
        torch.testing.assert_close(kernels.dispatch("toy_scale", x), 2 * x)
        torch.testing.assert_close(kernels.dispatch("toy_scale", x, factor=5), 5 * x)
        assert "factor 5 > 3" in kernels.explain("toy_scale", x, factor=5)
        assert calls == ["fast", "reference"]
        # float16 is not a fast dtype; use_reference and the environment switch force it
        calls.clear()
        kernels.dispatch("toy_scale", x.half())
        with kernels.use_reference():
            kernels.dispatch("toy_scale", x)
        monkeypatch.setenv("EQUILAYERS_DISABLE_TRITON", "1")
        kernels.dispatch("toy_scale", x)
        monkeypatch.delenv("EQUILAYERS_DISABLE_TRITON")
        assert calls == ["reference"] * 3
        # invalid arguments reach the reference, which raises the spec's error
        calls.clear()
        with pytest.raises(ValueError, match="toy_scale: factor=0 must be an integer >= 1"):
            kernels.dispatch("toy_scale", x, factor=0)
        with pytest.raises(TypeError, match="toy_scale: x has dtype torch.int64"):
            kernels.dispatch("toy_scale", x.long())
        assert calls == ["reference", "reference"]
        # the Triton entry, where the kernel may run (the interpreter on CPU)
        monkeypatch.setenv("EQUILAYERS_TRITON_INTERPRET", "1")
        monkeypatch.setenv("TRITON_INTERPRET", "1")
        monkeypatch.setattr(_dispatch, "triton_available", lambda: True)
        calls.clear()
        kernels.dispatch("toy_scale", x)
        kernels.dispatch("toy_scale", x, factor=3)  # not the kernel's: the fast path
        assert calls == ["triton", "fast"]
        assert "factor 3 is not the kernel's" in kernels.explain("toy_scale", x, factor=3)
    # removed with its registration
    assert "toy_scale" not in kernels.KERNEL_OPS and _registry.get_op("toy_scale") is None


def test_routing_negative_controls(plain_cpu):
    """An unregistered name is never dispatched; a fast path for another device type is not
    taken; a name cannot be registered twice."""
    x = torch.ones(2, 3)
    with pytest.raises(ValueError, match="op_name='toy_scale' must be an op of the kernel"):
        kernels.dispatch("toy_scale", x)
    assert "has no Triton kernel" in kernels.select("toy_scale", x)[1]
    calls: list[str] = []
    with register_op(_toy_op(calls, fast_device="mps")):
        assert kernels.select("toy_scale", x)[0] == "reference"
        kernels.dispatch("toy_scale", x)
        assert calls == ["reference"]
        with pytest.raises(ValueError, match="already in the table"):
            register_op(_toy_op(calls))
    with pytest.raises(TypeError, match="fast=.* must map device types"):
        KernelOp(name="bad", reference=abs, check=abs, fast={"cpu": abs})
    with pytest.raises(TypeError, match="fast=.* must map device types"):
        KernelOp(name="bad", reference=abs, check=abs, fast={"cpu": ()})
    with pytest.raises(ValueError, match="need distinct names; got \\['a', 'a'\\]"):
        KernelOp(name="bad", reference=abs, check=abs,
                 fast={"cpu": (FastPath(abs, "", "a"), FastPath(abs, "", "a"))})
    with pytest.raises(ValueError, match="name='reference' must be an identifier other than"):
        KernelOp(name="bad", reference=abs, check=abs, fast={"cpu": FastPath(abs, "", "reference")})


# --- every entry: a reference, the op's signature, and parity of the paths -----------------------

@pytest.mark.parametrize("name", sorted(_registry._OPS))
def test_every_entry_has_a_reference_and_the_ops_signature(name):
    op = _registry.get_op(name)
    assert callable(op.reference) and callable(op.check)
    spec = inspect.signature(op.check).parameters
    assert list(spec) == list(inspect.signature(op.reference).parameters)
    for fn in [op.triton, *(p.fn for paths in op.fast.values() for p in paths)]:
        if fn is not None:  # every path takes every argument of the spec by name
            params = inspect.signature(fn).parameters
            assert [p for p in spec if p not in params] == [], fn


def _run(name, x, kw):
    try:
        return kernels.dispatch(name, x, **kw), None
    except Exception as exc:  # noqa: BLE001  (a deep torch error is a disagreement too)
        return None, type(exc)


def _close(a, b, dtype) -> bool:
    if isinstance(a, tuple):
        return all(_close(u, v, dtype) for u, v in zip(a, b, strict=True))
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    tol = {torch.float16: 1e-2, torch.bfloat16: 5e-2, torch.float32: 1e-5}.get(dtype, 1e-10)
    return torch.allclose(a.double(), b.double(), atol=tol, rtol=tol, equal_nan=True)


def disagreements(name: str, cases) -> tuple[list[str], set[str]]:
    """Each ``(x, kwargs)`` of ``cases`` through :func:`kernels.dispatch` (whatever path it
    picks) and through the reference forced: the calls where one raises and the other does not
    (or another exception type), or where the results differ; and the paths that ran."""
    bad, paths = [], set()
    for x, kw in cases:
        choice = kernels.choose(name, x, **kw)
        path = choice.path + (f"[{choice.fast_path}]" if choice.fast_path else "")
        got, got_exc = _run(name, x, kw)
        with kernels.use_reference():
            want, want_exc = _run(name, x, kw)
        label = f"{name}({tuple(x.shape)}, {x.dtype}, {kw}) on {path}"
        if got_exc is not want_exc:
            bad.append(f"{label}: raised {got_exc} where the reference raised {want_exc}")
        elif want_exc is None and not _close(got, want, x.dtype):
            bad.append(f"{label}: differs from the reference")
        paths.add(path)
    return bad, paths


def _inputs(gen, shape, *, rank_bad=(2, 6)):
    def make(s, dtype=torch.float32):
        return torch.randn(s, generator=gen).to(DEVICE, dtype)

    h, w = shape[-2:]
    cl = torch.channels_last
    xs = [make(shape), make(shape, torch.float64), make(shape, torch.float16),
          make(shape, torch.bfloat16), make(shape).long(), make((0, *shape[1:])),
          make((*shape[:-2], 2, 1)), make((2, 1, 3, h, w)),
          make(shape).contiguous(memory_format=cl),
          make((*shape[:-1], 2 * w))[..., ::2],                            # sliced
          make((2, 6, h, w)).contiguous(memory_format=cl).view(2, 3, 2, h, w)]  # group map
    return xs + [make((h, w)), make((1, 1, 1, 1, h, w))]


_MODES = list(C.PADDING_MODES) + ["mirror", None]
#: Per op of the table: a valid input shape and the keyword arguments to try on each input.
MATRIX = {
    "blur_pool2d": ((2, 3, 7, 6), [
        {}, *({"padding_mode": m} for m in _MODES),
        *({"kernel_size": k} for k in (1, 2, 4, 7, 8, 0, 2.0)),
        *({"stride": s} for s in (1, 3, 0, True)),
        {"kernel_size": 5, "stride": 3, "padding_mode": "circular"}]),
    "max_blur_pool2d": ((2, 3, 7, 6), [
        {}, *({"padding_mode": m} for m in _MODES),
        *({"kernel_size": k} for k in (1, 3, 5, 0)),
        {"kernel_size": 3, "padding": 1}, {"kernel_size": 2, "padding": 2},
        *({"blur_size": k} for k in (1, 4, 8)),
        *({"stride": s} for s in (1, 3, 0))]),
    "polyphase_pool2d": ((2, 3, 6, 6), [
        {}, *({"padding_mode": m, "blur_size": 3} for m in _MODES),
        *({"stride": s} for s in (3, 4, 1, 0)),
        *({"criterion": c} for c in ("l1", "linf", "l3")),
        *({"blur_size": k} for k in (2, 7, 8)),
        {"return_index": True, "blur_size": 3}, {"return_index": 1}]),
}


def test_the_matrix_covers_every_op():
    assert sorted(MATRIX) == sorted(_registry._OPS)


def _parity(name, gen):
    shape, kwargs = MATRIX[name]
    return disagreements(name, list(itertools.product(_inputs(gen, shape), kwargs)))


@pytest.mark.parametrize("name", sorted(MATRIX))
def test_fast_path_accepts_what_the_reference_accepts(plain_cpu, gen, name):
    bad, paths = _parity(name, gen)
    assert not bad, "\n".join(bad)
    if DEVICE == "cpu":  # the matrix reached the default fast path
        default = _registry.get_op(name).fast["cpu"][0].name
        assert f"fast[{default}]" in paths, paths


#: (op, fast path) for every fast path of every op on this device.
CANDIDATES = [(name, p.name) for name, op in sorted(_registry._OPS.items())
              for p in op.fast.get(DEVICE, ())]


@pytest.mark.parametrize(("name", "fast_path"), CANDIDATES)
def test_every_fast_path_accepts_what_the_reference_accepts(plain_cpu, gen, name, fast_path):
    """Each candidate forced in turn through the whole matrix (odd sizes, float64,
    channels_last, sliced, 5-D, channels_last group maps, bad arguments)."""
    with kernels.use_fast_path(fast_path):
        bad, paths = _parity(name, gen)
    assert not bad, "\n".join(bad)
    assert f"fast[{fast_path}]" in paths, paths  # the matrix reached it


def _grad_inputs(gen, shape):
    """float64 inputs the backward comparison runs on: odd sizes, channels_last, sliced, 5-D
    contiguous and as the channels_last view of a group conv's output."""
    def make(s):
        return torch.randn(s, generator=gen, dtype=torch.float64).to(DEVICE)

    h, w = shape[-2:]
    cl = torch.channels_last
    return [make(shape), make(shape).contiguous(memory_format=cl),
            make((*shape[:-1], 2 * w))[..., ::2], make((2, 2, 3, h, w)),
            make((2, 6, h, w)).contiguous(memory_format=cl).view(2, 2, 3, h, w)]


#: Per op: argument sets whose backward each fast path must get right.
GRAD_KWARGS = {
    "blur_pool2d": [*({"padding_mode": m} for m in C.PADDING_MODES),
                    {"kernel_size": 4, "stride": 3, "padding_mode": "circular"},
                    {"kernel_size": 2, "padding_mode": "zeros"}],
    "max_blur_pool2d": [*({"padding_mode": m} for m in C.PADDING_MODES),
                        {"kernel_size": 3, "padding": 1}, {"blur_size": 4, "stride": 3}],
    "polyphase_pool2d": [{}, {"blur_size": 3, "padding_mode": "reflect"},
                         {"criterion": "l1", "stride": 3}],
}


@pytest.mark.parametrize(("name", "fast_path"), CANDIDATES)
def test_every_fast_path_backward_equals_the_reference(plain_cpu, gen, name, fast_path):
    shape = (2, 3, 6, 6) if name == "polyphase_pool2d" else MATRIX[name][0]
    for x in _grad_inputs(gen, shape):
        for kw in GRAD_KWARGS[name]:
            with kernels.use_fast_path(fast_path):
                assert kernels.choose(name, x, **kw).fast_path == fast_path, (x.shape, kw)
                xf = x.detach().requires_grad_(True)
                y = kernels.dispatch(name, xf, **kw)
            xr = x.detach().requires_grad_(True)
            with kernels.use_reference():
                yr = kernels.dispatch(name, xr, **kw)
            g = torch.randn(yr.shape, generator=gen, dtype=x.dtype).to(DEVICE)
            (gf,), (gr,) = torch.autograd.grad(y, xf, g), torch.autograd.grad(yr, xr, g)
            label = f"{name} {fast_path} {tuple(x.shape)} {x.stride()} {kw}"
            torch.testing.assert_close(y, yr, atol=1e-10, rtol=1e-10, msg=label)
            torch.testing.assert_close(gf, gr, atol=1e-10, rtol=1e-10, msg=label)


@pytest.mark.skipif(not CAN_RUN, reason="the Triton kernels need triton and CUDA, or "
                    "TRITON_INTERPRET=1 (TRITON_INTERPRET=1 pytest tests/test_kernel_table.py)")
@pytest.mark.parametrize("name", sorted(MATRIX))
def test_triton_path_accepts_what_the_reference_accepts(interpret, gen, name):
    bad, paths = _parity(name, gen)
    assert not bad, "\n".join(bad)
    assert "triton" in paths  # the matrix reached the kernel


def test_parity_negative_control(plain_cpu):
    """A spec laxer than its reference lets the fast path take ``factor=0``, which the
    reference rejects: the same check flags it (and passes the strict spec)."""
    x = torch.ones(2, 3)
    cases = [(x, {"factor": f}) for f in (1, 2, 0)]
    with register_op(_toy_op([], lax=True)):
        bad, _ = disagreements("toy_scale", cases)
    assert len(bad) == 1 and "factor': 0" in bad[0] and "on fast" in bad[0], bad
    with register_op(_toy_op([])):
        assert disagreements("toy_scale", cases)[0] == []


# --- the measured layout table -------------------------------------------------------------------

def test_layout_names_and_size_buckets():
    cl = torch.channels_last
    x = torch.zeros(2, 6, 9, 7)
    assert _layout.layout_of(x) == "contiguous 4-D"
    assert _layout.layout_of(x.contiguous(memory_format=cl)) == "channels_last 4-D"
    assert _layout.layout_of(x.view(2, 3, 2, 9, 7)) == "contiguous 5-D"
    assert _layout.layout_of(x.contiguous(memory_format=cl).view(2, 3, 2, 9, 7)) == (
        "channels_last 5-D")
    assert _layout.layout_of(x.view(2, 3, 2, 9, 7).contiguous(
        memory_format=torch.channels_last_3d)) == "channels_last_3d 5-D"
    for other in (x[..., ::2], x.transpose(-1, -2), x[0], x[None, None]):  # no entry matches
        assert _layout.layout_of(other) is None
    assert [_layout.size_bucket(n, n) for n in (1, 16, 17, 28, 56, 112, 224, 300)] == [
        16, 16, 32, 32, 64, 128, 256, 512]
    assert _layout.size_bucket(20, 100) == 128


def _entry(x, op="blur_pool2d", **kw):
    """The table key of ``op(x, **kw)`` as the dispatcher computes it."""
    return _layout.table_key(_registry.get_op(op), x, kw)


def test_the_layout_table_picks_the_measured_path(plain_cpu, monkeypatch):
    cl = torch.channels_last
    x = torch.randn(2, 4, 56, 50).contiguous(memory_format=cl)
    kw = {"kernel_size": 3, "stride": 2, "padding_mode": "reflect"}
    key = _entry(x, **kw)
    assert key == ("blur_pool2d", "cpu", "channels_last 4-D", 64,
                   "kernel_size=3, stride=2, padding_mode='reflect'", "forward")
    assert _entry(x) == key  # the defaults filled in
    table = {key: ("depthwise_conv", {"separable": 5.5, "depthwise_conv": 2.1,
                                      "reference": 5.1})}
    monkeypatch.setattr(_layout_table, "MEASURED", table)
    assert kernels.choose("blur_pool2d", x).fast_path == "depthwise_conv"
    text = kernels.explain("blur_pool2d", x)
    assert text.startswith("blur_pool2d: fast[depthwise_conv] (channels_last 4-D, H, W up "
                           "to 64, forward: depthwise_conv measured fastest 2.1 ms vs "
                           "reference 5.1 ms, separable 5.5 ms (benchmarks/results/"), text
    # the result is the reference's
    with kernels.use_reference():
        torch.testing.assert_close(kernels.dispatch("blur_pool2d", x), ref := kernels.dispatch(
            "blur_pool2d", x.contiguous()))
    torch.testing.assert_close(kernels.dispatch("blur_pool2d", x), ref)
    # other keys keep the default: layout, size, arguments, the pass
    for other, kwargs in [(x.contiguous(), {}), (x[..., :33, :33], {}),
                          (x, {"padding_mode": "zeros"}),
                          (x.detach().requires_grad_(True), {})]:
        assert kernels.choose("blur_pool2d", other, **kwargs).fast_path == "separable"
    with torch.no_grad():  # no autograd record: the forward entry applies
        assert kernels.choose("blur_pool2d", x.detach().requires_grad_(True)).fast_path == (
            "depthwise_conv")
    # the switches win over the table
    with kernels.use_reference():
        assert kernels.choose("blur_pool2d", x).path == "reference"
    with kernels.use_fast_path("separable"):
        assert kernels.choose("blur_pool2d", x).fast_path == "separable"
    # the reference measured fastest, or a winner that cannot take the call, or is unknown
    table[key] = ("reference", {"separable": 5.5, "reference": 1.0})
    choice = kernels.choose("blur_pool2d", x)
    assert choice.path == "reference" and "reference measured fastest 1 ms" in choice.reason
    table[key] = ("no_such_path", {})
    assert kernels.choose("blur_pool2d", x).fast_path == "separable"
    # a measured winner that declines this call (an empty batch) says so
    empty = torch.empty(0, 4, 56, 50).contiguous(memory_format=cl)
    table[_entry(empty, **kw)] = ("depthwise_conv", {"depthwise_conv": 1.0})
    assert "the measured fastest for this layout and size, depthwise_conv, declined (the " \
        "input is empty" in kernels.choose("blur_pool2d", empty, **kw).reason


@pytest.mark.parametrize("op,kw", [
    ("blur_pool2d", {"kernel_size": 3, "stride": 2, "padding_mode": "zeros"}),
    ("blur_pool2d", {"kernel_size": 3, "stride": 2, "padding_mode": "reflect"}),
    ("max_blur_pool2d", {"kernel_size": 2, "stride": 2, "blur_size": 3,
                         "padding_mode": "zeros", "padding": 0}),
])
def test_large_contiguous_inputs_take_the_default(plain_cpu, monkeypatch, op, kw):
    """From 32 MiB a contiguous input takes the op's default (separable) path even where the
    table (measured at 25 MiB per input) names another at that layout and size: the paths
    that allocate an input-sized temporary per call were measured 2-4x slower there.
    channels_last and smaller inputs keep the table's choice; the explanation says why."""
    from equilayers.kernels._layout import LARGE_CONTIGUOUS_BYTES as limit
    small = torch.empty(7, 64, 128, 128)  # 28 MiB
    large = torch.empty(9, 64, 128, 128)  # 36 MiB: empty() touches no memory
    large_cl = large.contiguous(memory_format=torch.channels_last)
    assert small.numel() * 4 < limit < large.numel() * 4
    assert limit == 32 << 20  # glibc's mmap threshold: from there a temporary page-faults in
    for winner in ("depthwise_conv", "reference"):
        table = {_entry(x, op, **kw): (winner, {"separable": 5.5, winner: 2.1})
                 for x in (small, large, large_cl)}
        monkeypatch.setattr(_layout_table, "MEASURED", table)
        for x in (small, large_cl):
            assert kernels.choose(op, x, **kw).path == (
                "reference" if winner == "reference" else "fast")
            assert kernels.choose(op, x, **kw).fast_path in (None, "depthwise_conv")
        choice = kernels.choose(op, large, **kw)
        assert choice.fast_path == "separable", choice
        assert choice.reason.startswith("a contiguous input of 36 MiB: from 32 MiB"), choice
        double = torch.empty(5, 64, 128, 128, dtype=torch.float64)  # 40 MiB in float64
        assert kernels.choose(op, double, **kw).fast_path == "separable"


def test_a_fast_path_that_refuses_falls_to_the_next(plain_cpu):
    calls: list[str] = []
    first = FastPath(lambda x, factor=2: calls.append("first") or x * factor, "first path",
                     "first", supports=lambda x, factor=2: "odd" if factor % 2 else None)
    second = FastPath(lambda x, factor=2: calls.append("second") or x * factor, "second path",
                      "second")
    op = KernelOp(name="toy_scale", reference=lambda x, factor=2: x * factor, check=_check_toy,
                  fast={"cpu": (first, second)})
    x = torch.ones(2, 3)
    with register_op(op):
        assert kernels.FAST_OPS["toy_scale"] == {"cpu": {"first": "first path",
                                                         "second": "second path"}}
        kernels.dispatch("toy_scale", x)
        kernels.dispatch("toy_scale", x, factor=3)
        assert calls == ["first", "second"]
        assert "the first that takes it (first: odd)" in kernels.explain("toy_scale", x,
                                                                         factor=3)
        with kernels.use_fast_path("first"):  # forced, but refusing: the next one
            assert kernels.choose("toy_scale", x, factor=3).fast_path == "second"
    with pytest.raises(TypeError, match="use_fast_path: name=3 must be a fast path's name"):
        with kernels.use_fast_path(3):
            pass


def test_the_shipped_layout_table_is_well_formed():
    """Every entry of the written table names an op, device, layout, bucket, argument list
    and pass the dispatcher can produce, and a path the op has (or the reference)."""
    layouts = {"contiguous 4-D", "channels_last 4-D", "contiguous 5-D", "channels_last 5-D",
               "channels_last_3d 5-D"}
    for key, (choice, times) in _layout_table.MEASURED.items():
        name, device, layout, bucket, args, pass_ = key
        op = _registry.get_op(name)
        assert op is not None and device in op.fast, key
        assert layout in layouts and bucket == _layout.size_bucket(bucket, bucket), key
        names = [p.name for p in op.fast[device]]
        assert choice in [*names, "reference"] and choice in times, key
        assert set(times) <= {*names, "reference"}, key
        assert [a.split("=")[0] for a in args.split(", ")] == [
            n for n, _ in _layout._spec(op.check)], key
        assert pass_ in ("forward", "forward+backward"), key
    assert isinstance(_layout_table.SOURCE, str) and isinstance(_layout_table.MACHINE, str)
