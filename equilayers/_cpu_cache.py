"""``cpu_cache``: the one kind of process-wide cache equilayers keeps.

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
trace only, and the trace's default ``check_trace`` found two different graphs). A fourth
is ``torch.inference_mode``: a table is built with it off, so a first call under inference
mode does not store an inference tensor that a later training call would have to save for
backward (``.to()`` on the same device and dtype returns the cached tensor itself). A fifth is
torch's ``FakeTensorMode`` used directly for shape propagation: a table is built with it
suspended (:func:`equilayers._host.host_constants`), real and cached like any other, where
the builders' value reads (``.tolist()``, ``torch.equal``) raised torch's
``DataDependentOutputException`` on its fake tensors. A call under a mode that takes real
tensors (``allow_non_fake_inputs=True``) gets the real table, as from any other call; one
under a mode that refuses them gets it converted into the mode
(:func:`equilayers._host.in_fake_mode`), as a build under the mode returned it.
Callers move (copy) a cached tensor to their device and dtype; they never write to it.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections import OrderedDict, namedtuple
from collections.abc import Callable, Iterator
from typing import Any, Protocol, TypeVar, cast

import torch

from ._host import host_constants, in_fake_mode

__all__ = ["cpu_cache", "default_device"]

T = TypeVar("T")
_MISSING = object()
CacheInfo = namedtuple("CacheInfo", ["hits", "misses", "maxsize", "currsize"])


class CachedFunction(Protocol[T]):
    """What :func:`cpu_cache` returns: the function, with ``functools.lru_cache``'s
    ``cache_clear()`` and ``cache_info()`` and the uncached ``__wrapped__``."""

    __wrapped__: Callable[..., T]
    cache_clear: Callable[[], None]
    cache_info: Callable[[], CacheInfo]

    def __call__(self, *args: Any) -> T: ...


def default_device() -> torch.device:
    """The device a factory function given no ``device=`` uses here: the innermost ``with
    torch.device(...)``, else ``torch.set_default_device``'s. (``torch.get_default_device()``
    of torch 2.6 ignores the ``with`` form: under ``with torch.device("meta"):`` it said
    "cpu", the caches built their tables on meta, and steerable convs failed to build.)"""
    return torch.empty(0).device


def _plain_cpu(obj: Any) -> bool:
    if isinstance(obj, torch.Tensor):
        return (type(obj) is torch.Tensor and obj.device.type == "cpu" and not obj.is_inference()
                and not torch._C._functorch.is_functorch_wrapped_tensor(obj))
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


def _nbytes(obj: Any) -> int:
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, (tuple, list)):
        return sum(_nbytes(o) for o in obj)
    return 0


def cpu_cache(maxsize: int = 128, max_bytes: int | None = None
              ) -> Callable[[Callable[..., T]], CachedFunction[T]]:
    """An LRU cache (positional, hashable arguments) of CPU-only results; see the module
    docstring. The wrapper has ``cache_clear()`` and ``cache_info()``, as
    ``functools.lru_cache``'s. ``max_bytes``: a bound on the tensors it holds too, for a
    table keyed on an input size (a count alone let 256 of them grow to gigabytes); a result
    larger than the bound is returned uncached."""

    def deco(fn: Callable[..., T]) -> CachedFunction[T]:
        store: OrderedDict[tuple, T] = OrderedDict()
        held = {"bytes": 0}
        lock = threading.Lock()
        counts = {"hits": 0, "misses": 0}

        @functools.wraps(fn)
        def cached(*args: Any) -> T:
            with lock:
                hit = store.get(args, _MISSING)
                if hit is not _MISSING:
                    store.move_to_end(args)
                    counts["hits"] += 1
                else:
                    counts["misses"] += 1
            if hit is not _MISSING:
                return in_fake_mode(cast("T", hit))
            # functorch off: inside torch.func.grad/jvp every new tensor is wrapped, and a
            # wrapped table kept here would outlive its transform (torch 2.4-2.6 cannot even
            # read its values); the table takes no differentiable input. A FakeTensorMode
            # suspended too (host_constants): its tensors have no values to read
            # inference mode off: a table first built inside torch.inference_mode would be an
            # inference tensor, which every later training call that saves it for backward
            # (a gather index) rejects
            with _untraced(), host_constants(), torch.inference_mode(False):
                if default_device().type == "cpu":  # already: no mode in every call
                    out = fn(*args)
                else:
                    with torch.device("cpu"):
                        out = fn(*args)
            size = _nbytes(out) if max_bytes is not None else 0
            if _plain_cpu(out) and (max_bytes is None or size <= max_bytes):
                with lock:
                    if args not in store:  # (another thread may have stored it meanwhile)
                        store[args] = out
                        held["bytes"] += size
                    while len(store) > maxsize or (max_bytes is not None
                                                   and held["bytes"] > max_bytes):
                        _, old = store.popitem(last=False)
                        held["bytes"] -= _nbytes(old) if max_bytes is not None else 0
            return in_fake_mode(out)

        def cache_clear() -> None:
            with lock:
                store.clear()
                held["bytes"] = 0
                counts["hits"] = counts["misses"] = 0

        def cache_info() -> CacheInfo:
            with lock:
                return CacheInfo(counts["hits"], counts["misses"], maxsize, len(store))

        wrapper = cast("CachedFunction[T]", cached)  # functools.wraps set __wrapped__
        wrapper.cache_clear = cache_clear
        wrapper.cache_info = cache_info
        return wrapper

    return deco
