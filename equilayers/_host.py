"""Small constant tensors built from Python values, on any device without a host-device sync;
and traced sizes read back as the Python ints they are at a static shape."""

from __future__ import annotations

import warnings
from typing import Any

import torch

__all__ = ["host_tensor", "traced_ints"]


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
