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
from equilayers.kernels import _dispatch, _registry
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
        assert path == "fast" and reason.startswith("toy fast path: one multiply (no kernel:")
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


# --- every entry: a reference, the op's signature, and parity of the paths -----------------------

@pytest.mark.parametrize("name", sorted(_registry._OPS))
def test_every_entry_has_a_reference_and_the_ops_signature(name):
    op = _registry.get_op(name)
    assert callable(op.reference) and callable(op.check)
    spec = inspect.signature(op.check).parameters
    assert list(spec) == list(inspect.signature(op.reference).parameters)
    for fn in [op.triton, *(p.fn for p in op.fast.values())]:
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
        path = kernels.select(name, x, **kw)[0]
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
    xs = [make(shape), make(shape, torch.float64), make(shape, torch.float16),
          make(shape, torch.bfloat16), make(shape).long(), make((0, *shape[1:])),
          make((*shape[:-2], 2, 1)), make((2, 1, 3, h, w)),
          make(shape).contiguous(memory_format=torch.channels_last)]
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
        {"return_index": True, "blur_size": 3}]),
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
    if DEVICE == "cpu":
        assert "fast" in paths  # the matrix reached the fast path


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
