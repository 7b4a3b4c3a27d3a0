"""``kernels.dispatch`` remembers which callable runs a call (``_dispatch._route``'s memo), so
a repeated call skips the argument spec and the table lookup. The memo must never route a call
it was not computed for: each test below changes one thing the route depends on between two
calls with everything else equal, and checks that the second call takes the new route (a memo
keyed on less, or one that kept the old op or table entry, fails it). Each test also checks
that the first call did fill the memo, so none passes with the memo switched off by accident.
"""

from __future__ import annotations

from collections.abc import Mapping

import pytest
import torch
from _refs import DEVICE

from equilayers import _checks as C
from equilayers import kernels
from equilayers.kernels import _dispatch, _layout, _layout_table
from equilayers.kernels._registry import FastPath, KernelOp, register_op

pytestmark = pytest.mark.skipif(DEVICE != "cpu", reason="the toy op's fast paths are on CPU")


def _check(x, factor=2):
    C.check_int(factor, "factor", "toy_memo", minimum=1)
    C.check_tensor(x, "x", "toy_memo", min_ndim=1)


def _op(calls: list, tag: str = "") -> KernelOp:
    def path(name):
        def fn(x, factor=2):
            calls.append(tag + name)
            return x * factor
        return fn

    def reference(x, factor=2):
        _check(x, factor)
        calls.append(tag + "reference")
        return x * factor

    return KernelOp(name="toy_memo", reference=reference, check=_check, fast={"cpu": (
        FastPath(path("first"), "first", "first"), FastPath(path("second"), "second", "second"))})


@pytest.fixture
def plain(monkeypatch):
    monkeypatch.delenv("EQUILAYERS_TRITON_INTERPRET", raising=False)
    monkeypatch.delenv("EQUILAYERS_DISABLE_TRITON", raising=False)
    _dispatch._memo.clear()


def _filled(op_name: str) -> bool:
    return any(key[0] == op_name for key in _dispatch._memo)


def test_a_repeated_call_is_routed_from_the_memo_the_same_way_choose_decides(plain):
    x = torch.randn(2, 3, 9, 8)
    for kw in ({}, {"padding_mode": "zeros"}, {"kernel_size": 5, "stride": 3}):
        choice = kernels.choose("blur_pool2d", x, **kw)
        for _ in range(2):
            y = kernels.dispatch("blur_pool2d", x, **kw)
            path, _ = _dispatch._route(_dispatch.get_op("blur_pool2d"), x, kw)
            assert path == (choice.path, choice.fast_path)
        with kernels.use_reference():
            torch.testing.assert_close(y, kernels.dispatch("blur_pool2d", x, **kw))
    assert _filled("blur_pool2d")


def test_the_argument_types_are_part_of_the_key(plain):
    x = torch.randn(2, 3, 9, 8)
    kernels.dispatch("blur_pool2d", x, stride=1)  # valid; True == 1 and hash(True) == 1
    assert _filled("blur_pool2d")
    with pytest.raises(TypeError, match="stride"):
        kernels.dispatch("blur_pool2d", x, stride=True)
    kernels.dispatch("blur_pool2d", x, kernel_size=2)
    with pytest.raises(TypeError, match="kernel_size"):
        kernels.dispatch("blur_pool2d", x, kernel_size=2.0)


def test_a_call_with_a_non_scalar_argument_is_decided_afresh(plain):
    """A tuple (a list, a tensor...) argument is no part of a key: such a call is not
    memoized at all, so a later plain call of the same description is not routed by it (a key
    that skipped the tuple sent the plain call to the reference)."""
    calls: list[str] = []
    x = torch.randn(2, 3, 8, 8)
    with register_op(_op(calls)):
        with pytest.raises(TypeError, match="factor"):
            kernels.dispatch("toy_memo", x, factor=(3,))
        assert not _filled("toy_memo")
        kernels.dispatch("toy_memo", x)
    assert calls == ["first"]


def test_the_shape_strides_dtype_and_pass_are_part_of_the_key(plain):
    calls: list[str] = []
    x = torch.randn(2, 3, 8, 8)
    with register_op(_op(calls)):
        kernels.dispatch("toy_memo", x)
        assert _filled("toy_memo")
        # an invalid call of the same description but the rank: the reference raises
        with pytest.raises(ValueError, match="x"):
            kernels.dispatch("toy_memo", torch.randn(()))
        kernels.dispatch("toy_memo", x.half())  # no fast path in float16
        assert calls == ["first", "reference"]


def test_the_pass_picks_its_own_entry_of_the_layout_table(plain, monkeypatch):
    """The table keys forward and forward+backward apart (``pass_of``): a call that autograd
    records, after one of the same description that it does not record, takes its own pass's
    entry, and back under ``torch.no_grad()`` (the test above changes everything but the pass;
    a memo keyed without it passed it)."""
    calls: list[str] = []
    x = torch.randn(2, 3, 8, 8)
    xg = x.clone().requires_grad_(True)
    with register_op(op := _op(calls)):
        key = _layout.table_key(op, xg, {})
        assert key is not None and key[-1] == "forward+backward"
        monkeypatch.setattr(_layout_table, "MEASURED",
                            {**_layout_table.MEASURED, key: ("second", {})})
        kernels.dispatch("toy_memo", x)
        assert _filled("toy_memo")
        kernels.dispatch("toy_memo", xg)
        with torch.no_grad():
            kernels.dispatch("toy_memo", xg)
    assert calls == ["first", "second", "first"]


def test_the_strides_pick_their_own_layout_entry(plain, monkeypatch):
    """Same shape, dtype and pass, another layout: a channels_last call after a contiguous one
    takes the channels_last entry of the table, and back (a memo keyed without the strides
    routed both by the first call's entry)."""
    calls: list[str] = []
    x = torch.randn(2, 3, 8, 8)
    cl = x.contiguous(memory_format=torch.channels_last)
    with register_op(op := _op(calls)):
        key = _layout.table_key(op, cl, {})
        assert key is not None and key[2] == "channels_last 4-D"
        assert _layout.table_key(op, x, {}) != key
        monkeypatch.setattr(_layout_table, "MEASURED",
                            {**_layout_table.MEASURED, key: ("second", {})})
        kernels.dispatch("toy_memo", x)
        assert _filled("toy_memo")
        kernels.dispatch("toy_memo", cl)
        kernels.dispatch("toy_memo", x)
    assert calls == ["first", "second", "first"]


def test_an_entry_of_the_layout_table_edited_in_place_reroutes(plain, monkeypatch):
    calls: list[str] = []
    x = torch.randn(2, 3, 8, 8)
    with register_op(op := _op(calls)):
        key = _layout.table_key(op, x, {})
        table = dict(_layout_table.MEASURED)
        monkeypatch.setattr(_layout_table, "MEASURED", table)
        kernels.dispatch("toy_memo", x)
        assert _filled("toy_memo")
        table[key] = ("second", {"first": 2.0, "second": 1.0})
        kernels.dispatch("toy_memo", x)
        table[key] = ("reference", {"first": 2.0, "reference": 1.0})
        kernels.dispatch("toy_memo", x)
        del table[key]
        kernels.dispatch("toy_memo", x)
        monkeypatch.setattr(_layout_table, "MEASURED", {key: ("second", {})})  # a new table
        kernels.dispatch("toy_memo", x)
    assert calls == ["first", "second", "reference", "first", "second"]


def test_a_replaced_op_and_the_switches_reroute(plain, monkeypatch):
    calls: list[str] = []
    x = torch.randn(2, 3, 8, 8)
    with register_op(_op(calls, "old ")):
        kernels.dispatch("toy_memo", x)
        assert _filled("toy_memo")
        with kernels.use_fast_path("second"):
            kernels.dispatch("toy_memo", x)
        with kernels.use_reference():
            kernels.dispatch("toy_memo", x)
        monkeypatch.setenv("EQUILAYERS_DISABLE_TRITON", "1")
        kernels.dispatch("toy_memo", x)
        monkeypatch.delenv("EQUILAYERS_DISABLE_TRITON")
    with register_op(_op(calls, "new ")):  # the same name, another op
        kernels.dispatch("toy_memo", x)
    assert calls == ["old first", "old second", "old reference", "old reference", "new first"]


class _Untraceable(Mapping):
    """A ``fast`` table any lookup in which fails, as one in ``op.fast`` (a MappingProxyType)
    does inside the dynamo of torch 2.4-2.6 (``Unsupported: call_method
    UserDefinedObjectVariable(mappingproxy) get``)."""

    def __getitem__(self, key):
        raise AssertionError(f"op.fast[{key!r}] was read while tracing")

    def __iter__(self):
        raise AssertionError("op.fast was iterated while tracing")

    def __len__(self):
        raise AssertionError("len(op.fast) was read while tracing")


def test_tracing_takes_the_reference_without_reading_the_fast_table(plain, monkeypatch):
    """Under torch.compile/export/jit.trace the route is the reference, decided before
    ``op.fast`` is read: reading it first broke ``torch.compile(fullgraph=True)`` of every op
    with a fast path on torch 2.4 to 2.6 (test_blur's and test_polyphase's
    ``test_compile_fullgraph`` failed there)."""
    calls: list[str] = []
    x = torch.randn(2, 3, 8, 8)
    op = _op(calls)
    with register_op(op):
        assert kernels.choose("toy_memo", x).fast_path == "first"  # the control: eager, fast
        object.__setattr__(op, "fast", _Untraceable())  # (a frozen dataclass)
        monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
        choice = kernels.choose("toy_memo", x)
        assert choice.path == "reference" and "tracing" in choice.reason
        kernels.dispatch("toy_memo", x)
    assert calls == ["reference"]


def test_the_memo_stays_bounded(plain):
    for n in range(8, 8 + _dispatch._MEMO_SIZE + 10):
        kernels.choose("blur_pool2d", torch.empty(1, 1, 2, n))  # choose does not fill it
    assert not _dispatch._memo
    for n in range(1, _dispatch._MEMO_SIZE + 10):
        _dispatch._route(_dispatch.get_op("blur_pool2d"), torch.empty(1, 1, 2, n), {})
    assert 0 < len(_dispatch._memo) <= _dispatch._MEMO_SIZE


def test_a_filter_first_built_in_inference_mode_still_trains():
    """The depthwise path keeps its binomial filter per (size, dtype, device); one first built
    inside ``torch.inference_mode`` must not be an inference tensor, which a later training
    call's conv would have to save for backward (it raises then)."""
    from equilayers.kernels import _conv_paths

    _conv_paths._FILTERS.clear()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    with torch.inference_mode():
        y0 = _conv_paths.blur_pool2d(x, 3, 2, "zeros")
    assert _conv_paths._FILTERS  # kept
    xg = x.clone().requires_grad_()
    y = _conv_paths.blur_pool2d(xg, 3, 2, "zeros")
    y.sum().backward()
    assert xg.grad is not None
    with kernels.use_reference():
        torch.testing.assert_close(y0, kernels.dispatch("blur_pool2d", x, padding_mode="zeros"))


def test_triton_found_later_is_seen(monkeypatch):
    """``triton_available`` remembers a found package only; until then it searches on every
    call."""
    import importlib.util

    monkeypatch.setattr(_dispatch, "_triton_found", [])
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert not kernels.triton_available()
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object())
    assert kernels.triton_available()
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert kernels.triton_available()  # found once: stays found
