"""``cpu_cache`` and ``device_cache``: the process-wide caches equilayers keeps.

Derived tables (steerable bases, gather indices, tap tables, Cayley tables) depend only on
hashable arguments, so a process-wide cache of them is correct by construction, provided that
what it stores does not depend on the caller's context. Two contexts would leak into a plain
``functools.lru_cache``: a default device (a module built under ``with torch.device("meta"):``
would store meta tensors, and every later CPU build would fail), and tracing modes (a
``FakeTensor`` built under ``torch.export`` or ``torch.compile`` must not outlive the trace).
So a ``cpu_cache`` builds under an explicit ``torch.device("cpu")`` (where the default device
is not already the CPU: the mode costs a Python call in every torch call) and stores a result
only when every tensor in it is a plain CPU ``torch.Tensor``; anything else is returned
uncached. A third context is ``torch.jit.trace``, whose tensors are plain: a table built inside
a traced call is built with the tracer suspended, so it enters the graph as a constant, as it
does from the cache on every later call (recorded, its construction ops were in the first
trace only, and the trace's default ``check_trace`` found two different graphs).
Callers move (copy) a cached tensor to their device and dtype; they never write to it.

``device_cache`` is the same cache for a table that a module reads on its parameters' device
in every forward (a group conv's gather indices): the CPU result itself on the CPU, and on any
other device a copy of it that is made once per device and kept (so a CUDA forward does not
copy host -> device every call). A copy that is not a plain tensor on the asked device (meta,
``FakeTensor`` under export or compile) is made fresh and never stored. Under ``torch.compile``
and strict ``torch.export`` the lookup runs once at trace time and its result is a constant of
the graph (``torch.compiler.assume_constant_result``); under ``torch.jit.trace`` the copy is
made with the tracer suspended, as the CPU build. Tables are built with inference mode off
(an inference tensor cannot be saved for a backward that reads the indices).
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections import OrderedDict, namedtuple
from collections.abc import Callable, Iterator
from typing import Any, Protocol, TypeVar, cast

import torch

__all__ = ["cpu_cache", "device_cache"]

T = TypeVar("T")
CacheInfo = namedtuple("CacheInfo", ["hits", "misses", "maxsize", "currsize"])


class CachedFunction(Protocol[T]):
    """What :func:`cpu_cache` returns: the function, with ``functools.lru_cache``'s
    ``cache_clear()`` and ``cache_info()`` and the uncached ``__wrapped__``."""

    __wrapped__: Callable[..., T]
    cache_clear: Callable[[], None]
    cache_info: Callable[[], CacheInfo]

    def __call__(self, *args: Any) -> T: ...


def _plain_cpu(obj: Any) -> bool:
    if isinstance(obj, torch.Tensor):
        return type(obj) is torch.Tensor and obj.device.type == "cpu" and not obj.is_inference()
    if isinstance(obj, (tuple, list)):
        return all(_plain_cpu(o) for o in obj)
    return True


@contextlib.contextmanager
def _untraced() -> Iterator[None]:
    """Suspend ``torch.jit.trace``'s recording: a table built inside a traced call is then a
    constant of the graph, as it is on every later (cached) call. Recorded, its construction
    was in the first graph only, and ``torch.jit.trace``'s check of a second trace failed."""
    state = torch._C._get_tracing_state()
    if state is None:
        yield
        return
    # the setter has no stub in torch/_C/__init__.pyi (the getter has)
    set_state = torch._C._set_tracing_state  # type: ignore[attr-defined]
    set_state(None)
    try:
        yield
    finally:
        set_state(state)


def cpu_cache(maxsize: int = 128) -> Callable[[Callable[..., T]], CachedFunction[T]]:
    """An LRU cache (positional, hashable arguments) of CPU-only results; see the module
    docstring. The wrapper has ``cache_clear()`` and ``cache_info()``, as
    ``functools.lru_cache``'s."""

    def deco(fn: Callable[..., T]) -> CachedFunction[T]:
        store: OrderedDict[tuple, T] = OrderedDict()
        lock = threading.Lock()
        counts = {"hits": 0, "misses": 0}

        @functools.wraps(fn)
        def cached(*args: Any) -> T:
            with lock:
                if args in store:
                    store.move_to_end(args)
                    counts["hits"] += 1
                    return store[args]
                counts["misses"] += 1
            out = _build_cpu(fn, args)
            if _plain_cpu(out):
                with lock:
                    store[args] = out
                    while len(store) > maxsize:
                        store.popitem(last=False)
            return out

        def cache_clear() -> None:
            with lock:
                store.clear()
                counts["hits"] = counts["misses"] = 0

        def cache_info() -> CacheInfo:
            with lock:
                return CacheInfo(counts["hits"], counts["misses"], maxsize, len(store))

        wrapper = cast("CachedFunction[T]", cached)  # functools.wraps set __wrapped__
        wrapper.cache_clear = cache_clear
        wrapper.cache_info = cache_info
        return wrapper

    return deco


def _build_cpu(fn: Callable[..., T], args: tuple) -> T:
    """``fn(*args)`` as a cache builds it: tracer suspended, on the CPU whatever the default
    device, with inference mode off (a table is read by training forwards too)."""
    with _untraced(), torch.inference_mode(False):
        if torch.get_default_device().type == "cpu":  # already: no mode in every call
            return fn(*args)
        with torch.device("cpu"):
            return fn(*args)


def device_cache(maxsize: int = 64) -> Callable[[Callable[..., torch.Tensor]],
                                                CachedFunction[torch.Tensor]]:
    """A cache of a tensor-valued ``fn(*args)`` (hashable, positional arguments; built on the
    CPU) whose wrapper takes the device first, ``table(device, *args)``: the CPU tensor on the
    CPU, a copy of it kept per device on another device, a fresh copy where that is not a plain
    tensor on the device (see the module docstring). At most ``maxsize`` entries, the oldest
    stored dropped first (a hit does not reorder them). A stored tensor written in place (its
    version counter moved) is built again. Callers never write to it."""

    def deco(fn: Callable[..., torch.Tensor]) -> CachedFunction[torch.Tensor]:
        store: OrderedDict[tuple, tuple[torch.Tensor, int]] = OrderedDict()
        lock = threading.Lock()
        counts = {"hits": 0, "misses": 0}

        def lookup(key: tuple) -> torch.Tensor | None:
            # one dict read (atomic), no lock and no reordering: a forward's lookup costs less
            # than a lock and an LRU move (0.7 us against 1.4 us, one-off); a hit count lost to
            # a race is harmless
            hit = store.get(key)
            if hit is None or hit[0]._version != hit[1]:
                counts["misses"] += 1
                return None
            counts["hits"] += 1
            return hit[0]

        def keep(key: tuple, out: torch.Tensor, device: torch.device) -> None:
            _static(out)
            if (type(out) is torch.Tensor and out.device == device and not out.is_meta
                    and not out.is_inference()):  # not meta, fake or an inference tensor
                with lock:
                    store[key] = (out, out._version)
                    while len(store) > maxsize:
                        store.popitem(last=False)

        @functools.wraps(fn)
        def table(device: torch.device, *args: Any) -> torch.Tensor:
            key = (device, *args)
            out = lookup(key)
            if out is not None:
                return out
            cpu_key = (_CPU, *args)
            base = lookup(cpu_key) if device != _CPU else None
            if base is None:
                base = _build_cpu(fn, args)
                keep(cpu_key, base, _CPU)
            if device == _CPU:
                return base
            with _untraced(), torch.inference_mode(False):
                out = base.to(device, copy=True)
            keep(key, out, device)
            return out

        # Under torch.compile / strict torch.export Dynamo calls ``table`` once while tracing
        # and makes its result a constant of the graph (the lock and the store are nothing it
        # could trace): the flag torch.compiler.assume_constant_result sets (calling that
        # imports torch._dynamo, 2.5 s at ``import equilayers``)
        table._dynamo_marked_constant = True  # type: ignore[attr-defined]

        def cache_clear() -> None:
            with lock:
                store.clear()
                counts["hits"] = counts["misses"] = 0

        def cache_info() -> CacheInfo:
            with lock:
                return CacheInfo(counts["hits"], counts["misses"], maxsize, len(store))

        wrapper = cast("CachedFunction[torch.Tensor]", table)
        wrapper.cache_clear = cache_clear
        wrapper.cache_info = cache_info
        return wrapper

    return deco


_CPU = torch.device("cpu")


def _static(t: torch.Tensor) -> None:
    """Mark every dim of ``t`` static for Dynamo, as ``torch._dynamo.mark_static(t)`` does
    (without importing torch._dynamo). Dynamo gives every constant of one cached function
    the same source, so tables of two shapes in one graph (two convs) looked like one input
    whose shape changed: automatic dynamic shapes gave them symbolic sizes, with guards it
    could not build ("list index out of range") and no ``.shape`` ("Unsupported
    python_type() call"), torch 2.13."""
    # Dynamo's own marker attribute, which the Tensor stub does not declare
    t._dynamo_static_indices = set(range(t.dim()))  # type: ignore[attr-defined]
