"""Small constant tensors built from Python values, on any device without a host-device sync;
constant tables built and read as real tensors under torch's shape-propagation mode; and traced
sizes read back as the Python ints they are at a static shape."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any, TypeVar

import torch

__all__ = ["fake_mode_active", "host_constants", "host_tensor", "in_fake_mode", "readable",
           "traced_ints"]

T = TypeVar("T")

_FAKE = torch._C._TorchDispatchModeKey.FAKE


@contextlib.contextmanager
def host_constants() -> Iterator[None]:
    """Inside: the tensors built are real, plain ones whose values can be read, for constant
    tables (functions of Python arguments: group matrices, gather indices, bases, and what is
    read from them). A ``FakeTensorMode`` (torch's shape propagation,
    ``torch._subclasses.fake_tensor``: its tensors have shapes and no values) is suspended, as
    torch's own ``unset_fake_temporarily`` does; and so are ``torch.func`` transforms, which
    wrap every new tensor (torch 2.4-2.6 cannot read a wrapped tensor's values). Under
    ``torch.compile`` and ``torch.export`` the fake mode is the tracer's and stays (their
    ``is_compiling()`` branches read no values)."""
    fake = None if torch.compiler.is_compiling() else torch._C._unset_dispatch_mode(_FAKE)
    try:
        with torch._C._DisableFuncTorch():
            yield
    finally:
        if fake is not None:
            torch._C._set_dispatch_mode(fake)


def fake_mode_active() -> bool:
    """Whether a ``FakeTensorMode`` is active (``False`` while compiling: see
    :func:`host_constants`)."""
    return not torch.compiler.is_compiling() and torch._C._get_dispatch_mode(_FAKE) is not None


def in_fake_mode(obj: T) -> T:
    """``obj`` (a tensor, or a tuple or list of them, nested; anything else is returned as it
    is) as the active ``FakeTensorMode`` takes it: with each real tensor converted into the
    mode (a fake tensor of its shape, dtype and strides, what a table built under the mode
    would be) where the mode refuses real tensors (``allow_non_fake_inputs=False``, torch's
    default); ``obj`` itself where the mode takes them (its values stay readable: a
    ``.tolist()`` of a real tensor reads them under the mode), where no fake mode is active,
    and while compiling (see :func:`host_constants`)."""
    mode = None if torch.compiler.is_compiling() else torch._C._get_dispatch_mode(_FAKE)
    if mode is None or getattr(mode, "allow_non_fake_inputs", True):
        return obj
    return _into(mode, obj)


def _into(mode: Any, obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return mode.from_tensor(obj, static_shapes=True) if readable(obj) else obj
    if isinstance(obj, list):
        return [_into(mode, o) for o in obj]
    if isinstance(obj, tuple):
        items = [_into(mode, o) for o in obj]
        return type(obj)(*items) if hasattr(obj, "_fields") else tuple(items)
    return obj


def readable(t: torch.Tensor) -> bool:
    """Whether ``t``'s values exist to be read: not a fake tensor (``FakeTensorMode``'s, or a
    wrapper of one), which has a shape and no values (a value check on it raised torch's
    ``DataDependentOutputException``), nor a meta tensor. A real ``t`` is read inside
    :func:`host_constants` where a fake mode is active."""
    if t.is_meta:
        return False
    if type(t) is torch.Tensor or type(t) is torch.nn.Parameter:  # (the common case: no import)
        return True
    from torch._subclasses.fake_tensor import is_fake

    return not is_fake(t)


def host_tensor(values: Any, *, dtype: torch.dtype | None = None,
                device: torch.device | str | None = None) -> torch.Tensor:
    """``torch.tensor(values, dtype=dtype, device=device)``, copied to an accelerator without
    waiting for it.

    ``torch.tensor(..., device="cuda")`` copies from pageable host memory with a blocking copy,
    which waits until the device's queue has drained: one such call per forward makes a model
    host-bound (an H200 run on 2026-12-04 found three per step of an SO(2) CNN). Here the values
    are built on the CPU and copied with ``non_blocking=True``: CUDA stages pageable memory
    before the call returns, so the source may be freed at once, and the copy is ordered on the
    current stream before the kernels that read it.

    Example:
        >>> host_tensor([1, 2], dtype=torch.float64)
        tensor([1., 2.], dtype=torch.float64)
    """
    t = torch.tensor(values, dtype=dtype)
    if device is None:
        return t
    device = torch.device(device)
    if device.type == "cpu" or device.type == "meta":
        return t.to(device)
    return t.to(device, non_blocking=True)


def traced_ints(*sizes: Any) -> tuple[int, ...]:
    """``sizes`` as Python ints: where ``torch.jit`` traces sizes as 0-dim tensors (the legacy
    ONNX exporter, ``torch.onnx.export(..., dynamo=False)``), a shape computed from them reaches
    the ONNX graph as a computation whose result its shape inference does not know, and a conv
    whose filter or input has such a shape fails to export ("convolution for kernel of unknown
    shape"). As ints they are constants of the trace: right for sizes fixed by a module's
    arguments (a weight's), and for an input's size at the shape traced (static shapes). The
    tracer's warning that a size becomes a constant is silenced here. Callers test
    ``isinstance(size, torch.Tensor)`` first, so an eager call does no more work."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        return tuple(int(n) for n in sizes)
