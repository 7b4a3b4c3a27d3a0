"""Which implementation a call takes: the Triton kernel, a fast PyTorch formulation, or the
pure-PyTorch reference.

The rule, checked in this order (the first that applies decides):

1. ``EQUILAYERS_DISABLE_TRITON=1`` in the environment -> reference.
2. Inside ``use_reference()`` -> reference.
3. Inside a ``torch.func`` transform (``grad``, ``vmap``, ``jvp``, ``jacrev``, ...) or a
   forward-mode AD level (``torch.autograd.forward_ad.dual_level()``) -> reference: plain
   PyTorch ops, which every transform differentiates and batches (the fast paths write into
   preallocated buffers and have hand-written backwards without a ``jvp``, which functorch
   cannot transform and forward-mode AD refuses: "You must implement the jvp function").
4. The op's argument spec (the ``check`` of its entry in the op table,
   :mod:`equilayers.kernels._op_table`, which the reference runs first) rejects the call
   (not a floating-point tensor, sizes too small for the padding...) -> reference, which
   raises the error that names the fix. No other path sees a call the reference rejects.
5. The Triton kernel can take the call -> ``"triton"``: the op's entry has a kernel; the input
   is on CUDA, or on CPU with ``EQUILAYERS_TRITON_INTERPRET=1`` and ``TRITON_INTERPRET=1``
   (Triton's interpreter, for tests); triton is installed; the dtype is one of the entry's
   ``triton_dtypes`` (float32, float16, bfloat16) and the rank one of its ``triton_ndims``
   (4-D or 5-D); its ``triton_supports`` takes the arguments (today: blur size 1..7, max window
   1..4 with any valid max-pool padding; polyphase pooling: every valid stride, criterion,
   blur size and padding mode on a non-empty input, its blur being the blur_pool2d kernel at
   stride 1). Any memory layout is accepted (the kernels index through the strides; a
   channels_last input gives a channels_last output).
6. The entry has fast PyTorch formulations for this device type (its candidates), with the
   reference's exact semantics, the dtype is one of its ``fast_dtypes`` (float32, float64),
   its ``fast_supports`` takes the call, the input is no tensor subclass (whose type and
   per-op semantics the reference's torch ops keep and the fast paths' plain ``out=`` buffers
   drop), and the call is not being traced -> ``"fast"``, by
   the candidate that the measured layout table (:mod:`._layout`) names for this op, device,
   layout, size, arguments and pass, or ``"reference"`` where the table measured the
   reference fastest; without an entry, the first candidate that takes the call (its own
   ``supports``), the op's default. Inside ``use_fast_path(name)`` the candidate ``name``
   where it takes the call (for tests and benchmarks). Today on CPU: ``blur_pool2d`` as
   separable strided adds with the padding done by index arithmetic (``separable``, the
   default) or as one depthwise strided ``conv2d`` (``depthwise_conv``, which oneDNN
   vectorises over channels in channels_last; zero padding, the border ring recomputed in the
   op's padding mode); ``max_blur_pool2d``, whose stride-1 max
   pooling becomes elementwise maxima then the separable blur (``separable``), or
   ``max_pool2d`` at stride 1 then the depthwise conv (``depthwise_conv``); both separable
   paths with hand-written backwards, run in cache-sized chunks; and ``polyphase_pool2d``
   with its component norms summed in float64 row chunk by row chunk instead of
   ``vector_norm`` (``chunked_norms``); see :mod:`equilayers.kernels._cpu` and
   :mod:`._conv_paths`. Under ``torch.compile``, ``torch.export`` and ``torch.jit.trace``
   the reference is traced instead (the fast backward has a data-dependent branch for NaN
   windows, and a compiler fuses the reference itself).
7. Otherwise -> ``"reference"``.

Under ``torch.autocast``, where the reference computes in autocast's dtype, rules 4-7 read
the input cast to it (:mod:`._amp`): every path returns the reference's dtype.

:func:`dispatch` remembers the route of a call it has seen, keyed by everything rules 4-7
read (see ``_route``: nothing but the description of the call, the switches, the ops and the
table's entry, each checked on every hit); :func:`choose` and :func:`explain` decide afresh.

Nothing here imports Triton (nor ``torch._dynamo``). Under ``torch.compile`` the choice is
traced like any Python code, so it is made at compile time: after changing a switch, call
``torch.compiler.reset()`` before relying on a compiled function to follow it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import torch

from .. import _checks as C
from . import _layout_table
from ._amp import autocast_dtype, cast_like
from ._autodiff import plain_tensor, transforms_active
from ._layout import measured_choice, table_key
from ._registry import FastPath, KernelOp, get_op, kernel_ops

__all__ = ["Choice", "choose", "dispatch", "explain", "kernel_support", "select",
           "triton_available", "use_fast_path", "use_reference"]

_state = threading.local()


@contextlib.contextmanager
def use_reference() -> Iterator[None]:
    """Force the pure-PyTorch reference for every op called inside the ``with`` block.

    Example:
        >>> import torch
        >>> from equilayers import kernels
        >>> with kernels.use_reference():
        ...     kernels.select("blur_pool2d", torch.zeros(1, 1, 4, 4))[0]
        'reference'
    """
    depth = getattr(_state, "force_reference", 0)
    _state.force_reference = depth + 1
    try:
        yield
    finally:
        _state.force_reference = depth


@contextlib.contextmanager
def use_fast_path(name: str) -> Iterator[None]:
    """Inside the ``with`` block, an op whose fast paths include one named ``name`` takes it
    wherever it takes the call and a fast path would run (over the measured layout table and
    the default); everything else dispatches as usual. For tests and benchmarks that compare
    the candidates through :func:`dispatch`.

    Example:
        >>> import torch
        >>> from equilayers import kernels
        >>> with kernels.use_fast_path("depthwise_conv"):
        ...     kernels.choose("blur_pool2d", torch.zeros(1, 1, 8, 8)).fast_path
        'depthwise_conv'
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise TypeError(f"use_fast_path: name={name!r} must be a fast path's name, such as "
                        "'depthwise_conv' (see equilayers.kernels.FAST_OPS)")
    previous = getattr(_state, "fast_path", None)
    _state.fast_path = name
    try:
        yield
    finally:
        _state.fast_path = previous


_triton_found: list[bool] = []


def triton_available() -> bool:
    """Whether the ``triton`` package is installed (it is not imported here). A package found
    once stays found (the search costs ~60 us, and the routes of CUDA calls ask every call);
    until then every call searches again, so an install during the session is seen."""
    if _triton_found:
        return True
    if importlib.util.find_spec("triton") is None:
        return False
    _triton_found.append(True)
    return True


# The switches are environment variables read on every call. ``os.environ.get`` encodes the
# name and decodes the value (~2 us a read); on POSIX ``os.environ`` keeps its bytes mapping
# in step (``os.environ[...] = ...``, ``del``, ``monkeypatch.setenv`` all write it), so a read
# of that mapping sees the same values at a tenth of the cost.
_ENV_BYTES = getattr(os.environ, "_data", None) if os.name == "posix" else None
if not isinstance(_ENV_BYTES, dict):
    _ENV_BYTES = None


def _env_is_1(name: str, key: bytes) -> bool:
    """``os.environ.get(name) == "1"`` (``key``: ``name`` encoded)."""
    if _ENV_BYTES is not None:
        return _ENV_BYTES.get(key) == b"1"
    return os.environ.get(name) == "1"


def _interpret_enabled() -> bool:
    return (_env_is_1("EQUILAYERS_TRITON_INTERPRET", b"EQUILAYERS_TRITON_INTERPRET")
            and _env_is_1("TRITON_INTERPRET", b"TRITON_INTERPRET"))


def _triton_support(op: KernelOp | None, op_name: str, x: torch.Tensor,
                    kwargs: dict) -> tuple[bool, str]:
    """Whether the Triton kernel can take a valid call (ignoring the switches that force the
    reference)."""
    if op is None or op.triton is None:
        return False, f"{op_name!r} has no Triton kernel (kernels exist for {kernel_ops()})"
    device_type, dtype = x.device.type, x.dtype
    if device_type == "cpu":
        if not _interpret_enabled():
            return False, ("the input is on CPU; the Triton kernels run on CUDA (set "
                           "EQUILAYERS_TRITON_INTERPRET=1 and TRITON_INTERPRET=1 to run "
                           "them on CPU through Triton's interpreter, for testing)")
        where = "on CPU through Triton's interpreter (EQUILAYERS_TRITON_INTERPRET=1)"
    elif device_type == "cuda":
        where = "on CUDA"
    else:
        return False, f"the input is on {device_type}; the Triton kernels run on CUDA"
    if not triton_available():
        return False, "triton is not installed (pip install 'equilayers[triton]')"
    if dtype not in op.triton_dtypes:
        names = "/".join(_name(d) for d in op.triton_dtypes)
        return False, f"dtype {dtype} is not one of the kernel's {names}"
    if x.dim() not in op.triton_ndims:
        ranks = " or ".join(f"{n}-D" for n in op.triton_ndims)
        return False, f"the input has {x.dim()} dims; the kernel takes {ranks} input"
    why = op.triton_supports(x, **kwargs) if op.triton_supports is not None else None
    if why is not None:
        return False, why
    return True, f"Triton kernel {where}, {_name(dtype)}"


def _name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def _invalid(op: KernelOp | None, x: torch.Tensor, kwargs: dict) -> str | None:
    """Why the reference rejects the call (the op's own spec, ``op.check``), or ``None``."""
    if op is None:
        return None
    if not x.dtype.is_floating_point:  # the spec's TypeError says so in its own words
        return f"dtype {x.dtype} is not floating point"
    return op.invalid_reason(x, **kwargs)


class Choice(NamedTuple):
    """What :func:`choose` says: the path (``"triton"``, ``"fast"`` or ``"reference"``), the
    fast path's name when the path is ``"fast"`` (else ``None``), and why."""

    path: str
    fast_path: str | None
    reason: str


def _switched() -> Choice | None:
    """The switches that force the reference whatever the call (rules 1-3), or ``None``."""
    if _env_is_1("EQUILAYERS_DISABLE_TRITON", b"EQUILAYERS_DISABLE_TRITON"):
        return Choice("reference", None, "EQUILAYERS_DISABLE_TRITON=1 is set")
    if getattr(_state, "force_reference", 0):
        return Choice("reference", None, "inside equilayers.kernels.use_reference()")
    if transforms_active():
        return Choice("reference", None, "inside a torch.func transform or a forward-mode AD "
                      "level, which differentiate and batch the plain-PyTorch reference")
    return None


def _choose(op_name: str, x: torch.Tensor, kwargs: dict) -> Choice:
    switched = _switched()
    if switched is not None:
        return switched
    op = get_op(op_name)
    if op is None or (amp := autocast_dtype(op, x, kwargs)) is None:
        return _decide(op_name, x, kwargs)
    path, fast_path, why = _decide(op_name, cast_like(x, amp), kwargs)
    return Choice(path, fast_path, f"under torch.autocast the input is cast to {_name(amp)} "
                  f"first, as the reference's conv casts it: {why}")


# --- the route's memo (dispatch only) ------------------------------------------------------------
# Which callable runs a call (rules 4-7) is a pure function of the call's description (op
# name; x's type, device, dtype, shape, strides and whether autograd records it; the keyword
# arguments), of the switches read per call (a forced fast path, the Triton interpreter's
# variables, triton being installed where it matters), of the registered ops and of the name
# the measured layout table's entry for the call picks. The memo is keyed by the first two;
# each entry holds the op it was decided for (a replaced or re-registered op is another
# object: the entry misses), the table is held by identity (a new table empties the memo
# before the next lookup), and each hit compares the name the table's entry picks now with the
# one the decision read. So an entry can never route a call it was not computed for. Calls
# with an argument that is not a plain scalar, and traced calls, are decided afresh;
# :func:`choose` and :func:`explain` always are (their reasons quote the table's times). (The
# route of one call reads its own op only, so other ops are not compared: a call after a large
# memory-bound op pays ~1 us per object touched, and the check read every registered op.)
_MEMO_SIZE = 1024
_PLAIN = (int, bool, float, str, type(None))
#: key -> ((path, fast path), the callable, the table key read or None, the name it picked,
#: the op)
_memo: dict[tuple, tuple[tuple[str, str | None], Callable[..., Any], tuple | None,
                         str | None, KernelOp]] = {}
_memo_table: list[object] = [None]


def _picked(table_key: tuple | None) -> str | None:
    """The name the table's entry under ``table_key`` picks (``None`` where there is none)."""
    entry = _layout_table.MEASURED.get(table_key) if table_key is not None else None
    return None if entry is None else entry[0]


def _route(op: KernelOp, x: torch.Tensor,
           kwargs: dict) -> tuple[tuple[str, str | None], Callable[..., Any]]:
    """``((path, fast path), the callable that runs it)`` for a call of a table op that the
    switches leave to rules 4-7, from the memo where it can be."""
    arguments = []
    for k, v in kwargs.items():
        t = type(v)
        if t not in _PLAIN:
            break
        arguments.append((k, t, v))
    else:
        if not (torch.compiler.is_compiling() or torch.jit.is_tracing()):
            return _memo_route(op, x, kwargs, tuple(arguments))
    # a tuple, a list, a tensor...: decide afresh (True == 1 and 2.0 == 2 would share a key,
    # so every value's exact type is part of the key and only plain scalars qualify)
    choice = _decide(op.name, x, kwargs)
    return (choice.path, choice.fast_path), _fn(op, x, choice)


def _memo_route(op: KernelOp, x: torch.Tensor, kwargs: dict, arguments: tuple
                ) -> tuple[tuple[str, str | None], Callable[..., Any]]:
    device = x.device
    interpret = _interpret_enabled()
    key = (op.name, type(x), device, x.dtype, x.shape, x.stride(),
           x.requires_grad and torch.is_grad_enabled(),  # pass_of(x), the table's pass
           arguments, getattr(_state, "fast_path", None), interpret,
           triton_available() if device.type == "cuda" or interpret else None)
    if _layout_table.MEASURED is not _memo_table[0]:
        _memo.clear()
        _memo_table[0] = _layout_table.MEASURED
    hit = _memo.get(key)
    if hit is not None and hit[4] is op and _picked(hit[2]) == hit[3]:
        return hit[0], hit[1]
    if len(_memo) >= _MEMO_SIZE:
        _memo.clear()
    tkey = table_key(op, x, kwargs) if op.fast.get(device.type) else None
    seen = _picked(tkey)
    choice = _decide(op.name, x, kwargs)
    path, fn = (choice.path, choice.fast_path), _fn(op, x, choice)
    _memo[key] = (path, fn, tkey, seen, op)
    return path, fn


def _fn(op: KernelOp, x: torch.Tensor, choice: Choice) -> Callable[..., Any]:
    if choice.path == "triton":
        assert op.triton is not None  # _decide takes "triton" only for an op with a kernel
        return op.triton
    if choice.path == "fast":
        return next(p.fn for p in op.fast[x.device.type] if p.name == choice.fast_path)
    return op.reference


def _decide(op_name: str, x: torch.Tensor, kwargs: dict) -> Choice:
    """Rules 4-7 (the switches of rules 1-3 already passed)."""
    op = get_op(op_name)
    bad = _invalid(op, x, kwargs)
    if bad is not None:
        return Choice("reference", None, f"{bad}; the reference reports it")
    ok, reason = _triton_support(op, op_name, x, kwargs)
    if ok:
        return Choice("triton", None, reason)
    if torch.compiler.is_compiling() or torch.jit.is_tracing():  # before reading op.fast: a
        # MappingProxyType, a lookup in which the dynamo of torch 2.4-2.6 cannot trace
        return Choice("reference", None, f"tracing (torch.compile/export/jit.trace) takes the "
                      f"reference, which the compiler fuses itself (no kernel: {reason})")
    paths = op.fast.get(x.device.type, ()) if op is not None else ()
    if op is None or not paths:  # (no op: no fast path)
        return Choice("reference", None, reason)
    if not plain_tensor(x):
        return Choice("reference", None, f"x is a {type(x).__name__}, a tensor subclass: the "
                      "reference's torch ops keep it, the fast paths' plain out= buffers "
                      f"would not (no kernel: {reason})")
    if x.dtype not in op.fast_dtypes:
        names = " and ".join(_name(d) for d in op.fast_dtypes)
        return Choice("reference", None, f"the fast path takes {names}, not {_name(x.dtype)} "
                      f"(no kernel: {reason})")
    why = op.fast_supports(x, **kwargs) if op.fast_supports is not None else None
    if why is not None:
        return Choice("reference", None,
                      why if why == reason else f"{why} (no kernel: {reason})")
    return _choose_fast(op, x, kwargs, paths, reason)


def _choose_fast(op: KernelOp, x: torch.Tensor, kwargs: dict, paths: tuple[FastPath, ...],
                 no_kernel: str) -> Choice:
    """Among the device's fast paths (and the reference): the forced one, the measured one,
    or the first that takes the call."""
    refusals = {p.name: p.supports(x, **kwargs) if p.supports is not None else None
                for p in paths}
    able = tuple(p for p in paths if refusals[p.name] is None)
    tail = f" (no kernel: {no_kernel})"
    forced = getattr(_state, "fast_path", None)
    for p in able:
        if p.name == forced:
            return Choice("fast", p.name, f"forced by use_fast_path({forced!r}): {p.note}"
                          + tail)
    if not able:
        why = "; ".join(f"{name}: {r}" for name, r in refusals.items())
        return Choice("reference", None, f"no fast path takes the call ({why})" + tail)
    measured = measured_choice(op, x, kwargs, able)
    if measured is not None:
        if measured.choice == "reference":
            return Choice("reference", None, measured.why + tail)
        path = next(p for p in able if p.name == measured.choice)
        return Choice("fast", path.name, f"{measured.why}: {path.note}" + tail)
    path = able[0]
    skipped = [f"{name}: {r}" for name, r in refusals.items() if r is not None]
    default = "the default" if path is paths[0] else f"the first that takes it ({skipped[0]})"
    key = table_key(op, x, kwargs)
    entry = _layout_table.MEASURED.get(key) if key is not None else None
    if entry is not None and refusals.get(entry[0]) is not None:  # the winner declined
        return Choice("fast", path.name, f"{path.note}; {default}: the measured fastest for "
                      f"this layout and size, {entry[0]}, declined ({refusals[entry[0]]})"
                      + tail)
    return Choice("fast", path.name, f"{path.note}; {default}, no measured entry for this "
                  "layout and size" + tail)


def _check_op_name(op_name, what: str) -> None:
    if not isinstance(op_name, str):
        raise TypeError(f"{what}: op_name={op_name!r} must be the op's name, a string such as "
                        f"'blur_pool2d' (kernels exist for {kernel_ops()})")


def kernel_support(op_name: str, x: torch.Tensor, **kwargs) -> tuple[bool, str]:
    """``(ok, reason)``: whether the Triton kernel can take this call, switches aside."""
    _check_op_name(op_name, "kernel_support")
    C.check_tensor(x, "x", "kernel_support", floating=False)
    op = get_op(op_name)
    bad = _invalid(op, x, kwargs) if op is not None and op.triton is not None else None
    if bad is not None:
        return False, bad
    return _triton_support(op, op_name, x, kwargs)


def select(op_name: str, x: torch.Tensor, **kwargs) -> tuple[str, str]:
    """``(path, reason)`` for ``op_name(x, **kwargs)``; ``path`` is ``"triton"``, ``"fast"``
    or ``"reference"``.

    Args:
        op_name: an op of the table (``"blur_pool2d"``, ``"max_blur_pool2d"``,
            ``"polyphase_pool2d"``), or any other functional op name (always the reference).
        x: the input (only its type, device, dtype and shape are read).
        **kwargs: the op's keyword arguments (``kernel_size``, ``stride``, ``padding_mode``...).
    """
    _check_op_name(op_name, "select")
    path, _, reason = choose(op_name, x, **kwargs)
    return path, reason


def choose(op_name: str, x: torch.Tensor, **kwargs) -> Choice:
    """:func:`select`'s choice with the name of the fast path it takes:
    ``Choice(path, fast_path, reason)``.

    Example:
        >>> import torch
        >>> from equilayers import kernels
        >>> kernels.choose("blur_pool2d", torch.zeros(1, 2, 8, 8)).fast_path
        'separable'
    """
    _check_op_name(op_name, "choose")
    if not isinstance(x, torch.Tensor):
        return Choice("reference", None, f"x is a {type(x).__name__}, not a tensor; the "
                      "reference reports it")
    return _choose(op_name, x, kwargs)


def explain(op_name: str, x: torch.Tensor, **kwargs) -> str:
    """One line saying which implementation ``op_name(x, **kwargs)`` runs, and why.

    Example:
        >>> import torch
        >>> from equilayers import kernels
        >>> x = torch.zeros(1, 1, 8, 8, dtype=torch.float16)  # no CPU fast path in float16
        >>> kernels.explain("blur_pool2d", x, kernel_size=3).startswith("blur_pool2d: reference")
        True
    """
    _check_op_name(op_name, "explain")
    path, fast_path, reason = choose(op_name, x, **kwargs)
    return f"{op_name}: {path}{f'[{fast_path}]' if fast_path else ''} ({reason})"


def dispatch(op_name: str, x: torch.Tensor, **kwargs):
    """Run the table's op ``op_name`` on ``(x, **kwargs)`` by the path :func:`select` picks:
    its Triton kernel, its fast path or its reference (which raises on invalid arguments).

    Example:
        >>> import torch
        >>> from equilayers import kernels
        >>> kernels.dispatch("blur_pool2d", torch.ones(1, 2, 7, 8), kernel_size=3).shape
        torch.Size([1, 2, 4, 4])
    """
    _check_op_name(op_name, "dispatch")
    op = get_op(op_name)
    if op is None:
        raise ValueError(f"dispatch: op_name={op_name!r} must be an op of the kernel table "
                         f"(equilayers.kernels._op_table); got an unknown name. The table "
                         f"has kernels for {kernel_ops()}")
    # (_switched() inline: this runs on every call of every pool)
    if (not isinstance(x, torch.Tensor) or x.is_nested  # (the reference names both)
            or _env_is_1("EQUILAYERS_DISABLE_TRITON", b"EQUILAYERS_DISABLE_TRITON")
            or bool(getattr(_state, "force_reference", 0)) or transforms_active()):
        return op.reference(x, **kwargs)
    amp = autocast_dtype(op, x, kwargs)  # under autocast: the dtype the reference's conv takes
    if amp is not None:
        x = x.to(amp)
    return _route(op, x, kwargs)[1](x, **kwargs)
