"""The machinery of the bad-input matrix (``tests/test_bad_input.py``): the values tried for
each kind of argument, the tensor perturbations, and the check that an error is one equilayers
raises on purpose (a ``raise`` statement in equilayers' own code, naming the argument or the
problem), not a deep torch error.

A :class:`Case` describes one public callable: a valid call (the baseline), the kind of every
argument worth fuzzing, its tensor inputs, and which bad-looking values it accepts (with an
equivalent valid value to compare against, or :data:`OK`). :func:`expand` turns the table into
``(id, check)`` pairs: one per argument x value, per tensor x perturbation, plus the baseline
and the empty batch.
"""

from __future__ import annotations

import linecache
import math
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
from conftest import seeded_rng
from torch import nn

#: An accepted value with no equivalent to compare against: the call must just succeed (or
#: raise a named error about the input, for a constructor argument that changes what the
#: module expects).
OK = object()

# label -> value, per kind of argument
INT = {"0": 0, "-1": -1, "1.5": 1.5, "True": True, "None": None, "str": "3"}
PAIR = {**INT, "triple": (1, 1, 1), "pair-float": (1.5, 1)}
FLOAT = {"0": 0.0, "-1": -1.0, "nan": math.nan, "inf": math.inf, "True": True, "None": None,
         "str": "0.1"}
CHOICE = {"bogus": "bogus", "None": None, "0": 0}
GROUP = {"bogus": "bogus", "None": None, "0": 0, "c0": "c0"}
DTYPE = {"int64": torch.int64, "bool": torch.bool, "str": "float32"}
CALLABLE = {"None": None, "0": 0, "str": "relu"}
FLAG = {"None": None, "0": 0, "1": 1, "str": "True"}

_BAD_DTYPES = {"int64": torch.int64, "bool": torch.bool, "complex64": torch.complex64}
_EQUILAYERS = os.sep + "equilayers" + os.sep


@dataclass(frozen=True)
class T:
    """A tensor input: its valid shape and the perturbations that apply.

    ``ranks``: wrong ranks to try; ``channel``/``fiber``: the dim whose size the other
    arguments fix; ``small``: a full shape smaller than the kernel (``small_ok``: it is valid,
    the result must be finite); ``batched``: dim 0 is the batch (narrowed to 0 by the empty
    case); ``dtypes``: int/bool/complex must raise ``TypeError`` (``dtype_ok``: they give the
    exact result instead: permutations); ``make``: builds the valid tensor from a generator."""

    shape: tuple[int, ...]
    ranks: tuple[int, ...] = ()
    channel: int | None = None
    fiber: int | None = None
    small: tuple[int, ...] | None = None
    small_ok: bool = False
    batched: bool = True
    dtypes: bool = True
    dtype_ok: bool = False
    make: Callable[[torch.Generator], Any] | None = None

    def build(self, gen: torch.Generator):
        if self.make is not None:
            return self.make(gen)
        return torch.randn(self.shape, generator=gen)


@dataclass
class Case:
    """One public callable. ``fn`` is a function, or a class (an ``nn.Module`` is built from
    ``kwargs`` and then called on ``inputs``; any other class is just built)."""

    fn: Callable[..., Any]
    kwargs: dict[str, Any] = field(default_factory=dict)
    args: dict[str, dict[str, Any]] = field(default_factory=dict)
    inputs: dict[str, T] = field(default_factory=dict)
    accept: dict[str, dict[str, Any]] = field(default_factory=dict)
    extra: dict[str, Callable[[dict], dict]] = field(default_factory=dict)  # bad inputs
    empty: str = "result"  # "result": B=0 gives B=0 out; "error": a named error is fine
    xfail: dict[str, str] = field(default_factory=dict)  # label (or "prefix*") -> reason
    warns: dict[str, str] = field(default_factory=dict)  # label -> the UserWarning it must give
    variant: str = ""
    needs_kernel: bool = False  # a Triton kernel wrapper: skip what needs the kernel to run

    @property
    def is_module(self) -> bool:
        return isinstance(self.fn, type) and issubclass(self.fn, nn.Module)


# --- running a call ------------------------------------------------------------------------------
def _inputs(case: Case) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(0)
    return {k: spec.build(gen) for k, spec in case.inputs.items()}


def _build(case: Case, kwargs: dict):
    with seeded_rng(0):
        return case.fn(**kwargs)


def _call(case: Case, kwargs: dict, inputs: dict):
    if case.is_module:  # forward's arguments in order (``nn.BatchNorm``'s is ``input``)
        return _build(case, kwargs)(*inputs.values())
    with seeded_rng(0):
        return case.fn(**kwargs, **inputs)


def _origin(exc: BaseException) -> tuple[str, int, str]:
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return "?", 0, ""
    fname = tb.tb_frame.f_code.co_filename
    return fname, tb.tb_lineno, linecache.getline(fname, tb.tb_lineno).strip()


def deep(exc: BaseException) -> str | None:
    """Why ``exc`` is not an error equilayers raised on purpose (``None`` when it is): it must
    come from a ``raise`` statement in equilayers' code (an error from inside torch, or from
    a torch call on an equilayers line, is a deep error)."""
    fname, line, src = _origin(exc)
    if _EQUILAYERS not in fname or not src.startswith("raise"):
        return (f"deep error {type(exc).__name__} at {fname}:{line} ({src!r}): "
                f"{str(exc)[:300]}")
    return None


def expect_named(exc: BaseException, needles: list[str], types=(ValueError, TypeError,
                                                                 RuntimeError)) -> None:
    why = deep(exc)
    assert why is None, why
    assert isinstance(exc, types), f"{type(exc).__name__} (want {types}): {exc}"
    msg = str(exc)
    assert any(n in msg for n in needles), f"the message names none of {needles}: {msg}"


def _tensors(out) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _tensors(o)]
    return []


def _finite(out) -> None:
    for t in _tensors(out):
        if t.is_floating_point() or t.is_complex():
            assert torch.isfinite(t).all(), f"non-finite output {t}"


def _same(a, b) -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.shape == b.shape and a.dtype == b.dtype, (a, b)
        torch.testing.assert_close(a, b, equal_nan=True)
    elif isinstance(a, (tuple, list)):
        assert type(a) is type(b) and len(a) == len(b), (a, b)
        for u, v in zip(a, b, strict=True):
            _same(u, v)
    elif isinstance(a, (int, float, str, bool)) or a is None:
        assert a == b or (a != a and b != b), (a, b)


def _run(fn: Callable[[], Any], needles: list[str], types=(ValueError, TypeError,
                                                            RuntimeError)):
    """``(ok, result)``: the result of ``fn()``, or (False, None) after checking its error."""
    try:
        return True, fn()
    except Exception as exc:  # noqa: BLE001 - classified
        expect_named(exc, needles, types)
        return False, None


# --- the checks ----------------------------------------------------------------------------------
def _needs_kernel(case: Case) -> None:
    """Skip what needs a Triton kernel to run where none can (no CUDA, no interpreter)."""
    if case.needs_kernel:
        from equilayers import kernels

        x = _inputs(case)["x"]
        op = case.fn.__name__.removeprefix("triton_")
        ok, why = kernels.kernel_support(op, x, **case.kwargs)
        if not ok:
            pytest.skip(f"the kernel cannot run here: {why}")


def check_baseline(case: Case) -> None:
    _needs_kernel(case)
    out = _call(case, case.kwargs, _inputs(case))
    _finite(out)


def check_arg(case: Case, arg: str, label: str, value: Any) -> None:
    kwargs = {**case.kwargs, arg: value}
    accepted = case.accept.get(arg, {})
    needles = [arg]
    if label in accepted:
        _needs_kernel(case)
    if not case.is_module:
        ok, out = _run(lambda: _call(case, kwargs, _inputs(case)), needles)
        if not ok:
            return
        assert label in accepted, f"{arg}={value!r} was accepted silently: {out!r}"[:400]
        if accepted[label] is not OK:
            _same(out, _call(case, {**case.kwargs, arg: accepted[label]}, _inputs(case)))
        _finite(out)
        return
    ok, module = _run(lambda: _build(case, kwargs), needles)
    if not ok:
        return
    # built: the value must be a documented one, not one that fails at the first forward
    if label not in accepted:
        try:
            module(*_inputs(case).values())
        except Exception as exc:  # noqa: BLE001
            raise AssertionError(f"{arg}={value!r} was accepted by the constructor and failed "
                                 f"only in forward ({type(exc).__name__}: {exc})") from exc
        raise AssertionError(f"{arg}={value!r} was accepted silently by the constructor")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ok, out = _run(lambda: module(*_inputs(case).values()),
                       ["shape", "fiber", "channels", arg])
    for w in caught:  # an accepted stride or padding may be inexact at the case's size: expected
        if "is not exactly equivariant" not in str(w.message):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)  # the rest: news
    if ok and accepted[label] is not OK:
        _same(out, _call(case, {**case.kwargs, arg: accepted[label]}, _inputs(case)))
    if ok:
        _finite(out)


def _batch(t):
    return t.shape[0] if isinstance(t, torch.Tensor) and t.dim() else None


def check_empty(case: Case) -> None:
    _needs_kernel(case)
    inputs = _inputs(case)
    base = _call(case, case.kwargs, inputs)
    empty = {k: (v[:0] if case.inputs[k].batched else v) for k, v in inputs.items()}
    if case.empty == "error":
        ok, out = _run(lambda: _call(case, case.kwargs, empty), ["empty", "(0,", "B=0"])
        if not ok:
            return
    else:
        out = _call(case, case.kwargs, empty)
    batch = next(_batch(v) for k, v in inputs.items() if case.inputs[k].batched)
    want = [t.shape for t in _tensors(base)]
    got = [t.shape for t in _tensors(out)]
    assert len(want) == len(got), (want, got)
    for w, g in zip(want, got, strict=True):
        expect = (0, *w[1:]) if len(w) and w[0] == batch else w
        assert tuple(g) == tuple(expect), f"empty batch gave shape {tuple(g)}, want {expect}"


def _perturb(x: torch.Tensor, how: str, spec: T):
    if how.startswith("rank"):
        n = int(how[4:])
        while x.dim() > n:
            x = x[0]
        while x.dim() < n:
            x = torch.stack([x, x], dim=1 if x.dim() else 0)
        return x
    if how in ("channels", "fiber"):
        dim = spec.channel if how == "channels" else spec.fiber
        return torch.cat([x, x.narrow(dim, 0, 1)], dim)
    if how == "small":
        return torch.randn(spec.small, generator=torch.Generator().manual_seed(1))
    if how == "list":
        return x.tolist()
    if how == "complex64":
        return x.to(torch.complex64)
    if how == "bool":
        return x > 0
    return (3 * x).round().to(_BAD_DTYPES[how])


def _needles(bad, how: str) -> list[str]:
    if how in _BAD_DTYPES:
        return [str(_BAD_DTYPES[how]).replace("torch.", "")]
    if how == "list":
        return ["tensor", "list"]
    shape = tuple(bad.shape)
    out = [str(shape), str(list(shape)), f"{bad.dim()}-D", f"{bad.dim()} dims"]
    out += [str(shape[-k:]) for k in (1, 2, 3)]
    if bad.dim() >= 2:
        out.append(f"{shape[-2]}x{shape[-1]}")
    return out


def check_tensor(case: Case, name: str, how: str) -> None:
    spec = case.inputs[name]
    inputs = _inputs(case)
    bad = _perturb(inputs[name], how, spec)
    call = {**inputs, name: bad}
    dtype_case = how in _BAD_DTYPES
    types = (TypeError,) if dtype_case else (ValueError, TypeError, RuntimeError)
    if how == "small" and spec.small_ok:  # a valid input: only where the kernel can run
        _needs_kernel(case)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ok, out = _run(lambda: _call(case, case.kwargs, call), _needles(bad, how), types)
    for w in caught:  # a pool may say a tiny input is too small to be exact: expected
        if not (how == "small" and "is not exactly equivariant" in str(w.message)):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)  # the rest: news
    if not ok:
        return
    _needs_kernel(case)
    if dtype_case and spec.dtype_ok:
        real = bad.real if bad.is_complex() else bad
        ref = _call(case, case.kwargs, {**inputs, name: real.double()})
        got = _tensors(out)[0]
        assert got.dtype == bad.dtype, f"dtype {got.dtype} out for {bad.dtype} in"
        _same((got.real if got.is_complex() else got).double(), _tensors(ref)[0])
        return
    if how == "small" and spec.small_ok:
        _finite(out)
        return
    raise AssertionError(f"{name} perturbed by {how} (shape {tuple(getattr(bad, 'shape', ()))}"
                         f") was accepted: {str(out)[:200]}")


def _reference_input(case: Case, inputs: dict) -> str | None:
    """The first floating tensor input: the one the other tensors must match."""
    return next((k for k, v in inputs.items()
                 if isinstance(v, torch.Tensor) and v.is_floating_point()), None)


def _mismatched(case: Case) -> list[tuple[str, str]]:
    """``(name, how)``: each floating tensor input of a function (not a module) after the
    first, moved to ``"meta"`` and (unless its spec says ``dtypes=False``) to ``"float64"``."""
    if case.is_module or not case.inputs:
        return []
    inputs = _inputs(case)
    first = _reference_input(case, inputs)
    out = []
    for name, v in inputs.items():
        if name == first or not (isinstance(v, torch.Tensor) and v.is_floating_point()):
            continue
        out.append((name, "meta"))
        if case.inputs[name].dtypes:
            out.append((name, "float64"))
    return out


def check_mismatch(case: Case, name: str, how: str) -> None:
    """One tensor on another device (``meta``: a model built with ``device="meta"`` and not
    materialized) or in another dtype than the first: a named error (a meta weight with a CPU
    ``x`` returned uninitialized memory from some ops), or for a dtype the case accepts
    (``accept={name: {"float64": OK}}``: an op that casts it), a finite result."""
    inputs = _inputs(case)
    bad = inputs[name].to("meta") if how == "meta" else inputs[name].double()
    types = (ValueError,) if how == "meta" else (TypeError,)
    ok, out = _run(lambda: _call(case, case.kwargs, {**inputs, name: bad}), [name], types)
    if not ok:
        return
    assert how in case.accept.get(name, {}), f"{name} on {how} was accepted: {str(out)[:200]}"
    _finite(out)


def check_extra(case: Case, label: str) -> None:
    inputs = case.extra[label](_inputs(case))
    ok, out = _run(lambda: _call(case, case.kwargs, inputs), [label.split(":")[0]])
    assert not ok, f"{label} was accepted: {str(out)[:200]}"


# --- the table -> test ids --------------------------------------------------------------------
def case_id(case: Case) -> str:
    mod = case.fn.__module__.split(".")
    where = mod[1] if len(mod) > 1 and not mod[1].startswith("_") else "top"
    return f"{where}.{case.fn.__name__}{case.variant}"


def checks(case: Case) -> list[tuple[str, Callable[[], None]]]:
    """``(label, check)``: the baseline, every argument x value, every tensor x perturbation,
    the extras and the empty batch."""
    items: list[tuple[str, Callable[[], None]]] = [("baseline", lambda: check_baseline(case))]
    for arg, values in case.args.items():
        for label, value in values.items():
            items.append((f"{arg}={label}",
                          lambda a=arg, lb=label, v=value: check_arg(case, a, lb, v)))
    for name, spec in case.inputs.items():
        hows = [f"rank{n}" for n in spec.ranks]
        hows += ["channels"] * (spec.channel is not None) + ["fiber"] * (spec.fiber is not None)
        hows += ["small"] * (spec.small is not None)
        if spec.dtypes:
            hows += list(_BAD_DTYPES) + ["list"]
        for how in hows:
            items.append((f"{name}:{how}", lambda n=name, h=how: check_tensor(case, n, h)))
    for name, how in _mismatched(case):
        items.append((f"{name}:{how}", lambda n=name, h=how: check_mismatch(case, n, h)))
    for label in case.extra:
        items.append((label, lambda lb=label: check_extra(case, lb)))
    if any(spec.batched for spec in case.inputs.values()) and case.empty != "skip":
        items.append(("empty", lambda: check_empty(case)))
    return items


def xfail_reason(case: Case, label: str) -> str | None:
    return next((r for k, r in case.xfail.items()
                 if k == label or (k.endswith("*") and label.startswith(k[:-1]))), None)


def run(case: Case, only: str | None = None) -> None:
    """Run every check of ``case`` (or those whose label starts with ``only``) and report all
    failures at once; failures whose labels are all declared in ``case.xfail`` xfail."""
    failed: list[str] = []
    expected: list[str] = []
    reasons: set[str] = set()
    for label, check in checks(case):
        if only is not None and not label.startswith(only):
            continue
        try:
            if label in case.warns:  # an accepted value the layer warns about, on purpose
                with pytest.warns(UserWarning, match=case.warns[label]):
                    check()
            else:
                check()
        except pytest.skip.Exception:
            continue
        except Exception as exc:  # noqa: BLE001 - collected, reported below
            line = f"  {label}: {type(exc).__name__}: {exc}".replace("\n", " ")[:400]
            reason = xfail_reason(case, label)
            (expected if reason else failed).append(line)
            if reason:
                reasons.add(reason)
    if failed:
        pytest.fail(f"{case_id(case)}: {len(failed)} bad input(s) not handled"
                    + (f" ({len(expected)} more expected)" if expected else "") + ":\n"
                    + "\n".join(failed), pytrace=False)
    if expected:
        pytest.xfail(f"{'; '.join(sorted(reasons))}: {len(expected)} case(s), e.g.\n"
                     f"{expected[0]}")
