"""Fused kernels and the dispatch between them and the pure-PyTorch references.

A functional op (``equilayers.functional.blur_pool2d``...) calls :func:`dispatch` with its
name; the op table (:mod:`equilayers.kernels._op_table`, one entry per op) holds its
reference, argument spec, Triton kernel and fast paths, and :func:`select` picks the path: the
Triton kernel (CUDA; float32, float16, bfloat16; any layout, channels_last kept), a faster
PyTorch formulation with the same semantics where one was measured faster (``"fast"``), or the
pure-PyTorch reference, which is the specification; among several fast paths for a device,
the one a benchmark measured fastest for the input's layout and size (:func:`choose` names
it). :func:`explain` says which and why;
``EQUILAYERS_DISABLE_TRITON=1`` and :func:`use_reference` force the reference. The kernels are
``torch.library`` custom ops (``torch.ops.equilayers.*``), so ``torch.compile(fullgraph=True)``
keeps each call as one node.

Importing this package does not import Triton; the kernels load on first use.
"""

from __future__ import annotations

import torch

from . import _op_table  # noqa: F401  (fills the op table)
from ._amp import autocast_dtype
from ._autodiff import transforms_active
from ._cpu import max_pool2d_stride1
from ._dispatch import (
    Choice,
    choose,
    dispatch,
    explain,
    kernel_support,
    select,
    triton_available,
    use_fast_path,
    use_reference,
)
from ._registry import fast_ops, get_op, kernel_ops

__all__ = [
    "Choice",
    "FAST_OPS",
    "KERNEL_OPS",
    "choose",
    "dispatch",
    "explain",
    "kernel_support",
    "max_pool2d_stride1",
    "select",
    "triton_available",
    "triton_blur_pool2d",
    "triton_max_blur_pool2d",
    "triton_polyphase_pool2d",
    "use_fast_path",
    "use_reference",
]


def __getattr__(name: str):
    # The table's views, read at access time (an op registered later shows up).
    if name == "KERNEL_OPS":  # the ops with a Triton kernel
        return kernel_ops()
    if name == "FAST_OPS":  # {op: {device_type: {fast path: what it does}}}
        return fast_ops()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _triton_entry(name: str, x: torch.Tensor, kwargs: dict):
    """Run the op's Triton kernel, bypassing dispatch: the spec's errors first (those of the
    functional op), ``RuntimeError`` inside a ``torch.func`` transform or forward-mode AD,
    then ``ValueError`` when the kernel cannot take the call. Under ``torch.autocast`` the
    input is cast as :func:`dispatch` casts it (the reference's dtype)."""
    op = get_op(name)
    assert op is not None  # called with the names of the table's Triton ops only
    op.check(x, **kwargs)
    if transforms_active():
        # the custom ops have a registered backward only: torch.func.jvp gave a zero tangent,
        # forward AD none, without a word; grad asked for setup_context
        raise RuntimeError(
            f"triton_{name}: the Triton kernel has no forward-mode derivative and no "
            f"torch.func rules, so it cannot run inside a torch.func transform (grad, vmap, "
            f"jvp, ...) or torch.autograd.forward_ad; call equilayers.functional.{name}, "
            f"which takes its differentiable reference there")
    amp = autocast_dtype(op, x, kwargs)  # under autocast the reference's dtype, as dispatch
    if amp is not None:
        x = x.to(amp)
    ok, reason = kernel_support(name, x, **kwargs)
    if not ok:
        raise ValueError(f"{name}: the Triton kernel cannot take this input: {reason}")
    assert op.triton is not None  # kernel_support is ok for an op with a kernel only
    return op.triton(x, **kwargs)


def triton_blur_pool2d(x: torch.Tensor, kernel_size: int = 3, stride: int = 2,
                       padding_mode: str = "reflect") -> torch.Tensor:
    """Blur pooling by the Triton kernel, bypassing dispatch (the functional op dispatches).

    Raises ``ValueError`` when the kernel cannot take ``x`` (see :func:`explain`).
    """
    return _triton_entry("blur_pool2d", x, {"kernel_size": kernel_size, "stride": stride,
                                            "padding_mode": padding_mode})


def triton_max_blur_pool2d(x: torch.Tensor, kernel_size: int = 2, stride: int = 2,
                           blur_size: int = 3, padding_mode: str = "reflect", *,
                           padding: int = 0) -> torch.Tensor:
    """Max-blur pooling by the fused Triton kernel, bypassing dispatch."""
    return _triton_entry("max_blur_pool2d", x, {
        "kernel_size": kernel_size, "stride": stride, "blur_size": blur_size,
        "padding_mode": padding_mode, "padding": padding})


def triton_polyphase_pool2d(x: torch.Tensor, stride: int = 2, *, criterion: str = "l2",
                            blur_size: int = 1, padding_mode: str = "circular",
                            return_index: bool = False):
    """Adaptive polyphase sampling by the Triton kernels, bypassing dispatch (the blur, when
    ``blur_size > 1``, by the blur_pool2d kernel at stride 1)."""
    kwargs = {"stride": stride, "criterion": criterion, "blur_size": blur_size,
              "padding_mode": padding_mode, "return_index": return_index}
    op = get_op("polyphase_pool2d")
    assert op is not None  # an op of the table
    op.check(x, **kwargs)
    if x.numel() == 0:  # nothing to launch: the empty result, as the reference gives it
        y = x.new_empty(*x.shape[:-2], x.shape[-2] // stride, x.shape[-1] // stride)
        index = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        return (y, index) if return_index else y
    return _triton_entry("polyphase_pool2d", x, kwargs)
