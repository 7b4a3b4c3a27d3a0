"""Fused kernels and the dispatch between them and the pure-PyTorch references.

A functional op (``equilayers.functional.blur_pool2d``...) asks :func:`select` which
implementation takes a call: the Triton kernel (CUDA; float32, float16, bfloat16; any layout,
channels_last kept), a faster PyTorch formulation with the same semantics where one was measured
faster (``"fast"``), or its pure-PyTorch reference, which is the specification.
:func:`explain` says which and why; ``EQUILAYERS_DISABLE_TRITON=1`` and :func:`use_reference`
force the reference. The kernels are ``torch.library`` custom ops (``torch.ops.equilayers.*``),
so ``torch.compile(fullgraph=True)`` keeps each call as one node.

Importing this package does not import Triton; the kernels load on first use.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .. import _checks as C
from ._cpu import max_pool2d_stride1
from ._dispatch import (
    FAST_OPS,
    KERNEL_OPS,
    _check_arguments,
    _check_op_name,
    _check_sizes,
    explain,
    kernel_support,
    select,
    triton_available,
    use_reference,
)

__all__ = [
    "FAST_OPS",
    "KERNEL_OPS",
    "dispatch",
    "explain",
    "kernel_support",
    "max_pool2d_stride1",
    "select",
    "triton_available",
    "triton_blur_pool2d",
    "triton_max_blur_pool2d",
    "triton_polyphase_pool2d",
    "use_reference",
]


def _check_kernel_input(name: str, x: torch.Tensor, **kwargs) -> None:
    # the reference's own checks first (the same errors as the functional op), then the
    # kernel's limits
    _check_arguments(name, kwargs)
    C.check_tensor(x, "x", name)
    _check_sizes(name, tuple(x.shape), kwargs)
    ok, reason = kernel_support(name, x, **kwargs)
    if not ok:
        raise ValueError(f"{name}: the Triton kernel cannot take this input: {reason}")


def triton_blur_pool2d(x: torch.Tensor, kernel_size: int = 3, stride: int = 2,
                       padding_mode: str = "reflect") -> torch.Tensor:
    """Blur pooling by the Triton kernel, bypassing dispatch (the functional op dispatches).

    Raises ``ValueError`` when the kernel cannot take ``x`` (see :func:`explain`).
    """
    _check_kernel_input("blur_pool2d", x, kernel_size=kernel_size, stride=stride,
                        padding_mode=padding_mode)
    from . import _ops

    return _ops.blur_pool2d(x, kernel_size, stride, padding_mode)


def triton_max_blur_pool2d(x: torch.Tensor, kernel_size: int = 2, stride: int = 2,
                           blur_size: int = 3, padding_mode: str = "reflect", *,
                           padding: int = 0) -> torch.Tensor:
    """Max-blur pooling by the fused Triton kernel, bypassing dispatch."""
    _check_kernel_input("max_blur_pool2d", x, kernel_size=kernel_size, stride=stride,
                        blur_size=blur_size, padding_mode=padding_mode, padding=padding)
    from . import _ops

    return _ops.max_blur_pool2d(x, kernel_size, stride, blur_size, padding_mode, padding)


def triton_polyphase_pool2d(x: torch.Tensor, stride: int = 2, *, criterion: str = "l2",
                            blur_size: int = 1, padding_mode: str = "circular",
                            return_index: bool = False):
    """Adaptive polyphase sampling by the Triton kernels, bypassing dispatch (the blur, when
    ``blur_size > 1``, by the blur_pool2d kernel at stride 1)."""
    kwargs = {"stride": stride, "criterion": criterion, "blur_size": blur_size,
              "padding_mode": padding_mode}
    _check_arguments("polyphase_pool2d", kwargs)
    C.check_tensor(x, "x", "polyphase_pool2d")
    _check_sizes("polyphase_pool2d", tuple(x.shape), kwargs)
    if x.numel() == 0:  # nothing to launch: the empty result, as the reference gives it
        y = x.new_empty(*x.shape[:-2], x.shape[-2] // stride, x.shape[-1] // stride)
        index = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        return (y, index) if return_index else y
    _check_kernel_input("polyphase_pool2d", x, **kwargs)
    return _polyphase(x, return_index=return_index, **kwargs)


def _polyphase(x: torch.Tensor, stride: int = 2, criterion: str = "l2", blur_size: int = 1,
               padding_mode: str = "circular", return_index: bool = False):
    from . import _ops

    if blur_size > 1:
        x = _ops.blur_pool2d(x, blur_size, 1, padding_mode)
    y, index = _ops.polyphase_pool2d(x, stride, criterion)
    return (y, index) if return_index else y


def dispatch(op_name: str, x: torch.Tensor, reference: Callable[..., torch.Tensor], *,
             fast: Callable[..., torch.Tensor] | None = None, **kwargs) -> torch.Tensor:
    """Run ``op_name(x, **kwargs)`` on the path :func:`select` picks.

    ``reference`` is the pure-PyTorch specification and ``fast`` (optional) a faster formulation
    with the same semantics, each called as ``f(x, **kwargs)``. Invalid arguments always reach
    the reference, which raises the error.
    """
    _check_op_name(op_name, "dispatch")
    C.check_callable(reference, "reference", "dispatch", fix="the op's pure-PyTorch reference")
    if fast is not None:
        C.check_callable(fast, "fast", "dispatch", fix="or None")
    path, _ = select(op_name, x, **kwargs)
    if path == "fast" and fast is not None:
        return fast(x, **kwargs)
    if path != "triton":
        return reference(x, **kwargs)
    if op_name == "polyphase_pool2d":
        return _polyphase(x, **kwargs)
    from . import _ops

    if op_name == "blur_pool2d":
        return _ops.blur_pool2d(x, kwargs.get("kernel_size", 3), kwargs.get("stride", 2),
                                kwargs.get("padding_mode", "reflect"))
    return _ops.max_blur_pool2d(x, kwargs.get("kernel_size", 2), kwargs.get("stride", 2),
                                kwargs.get("blur_size", 3), kwargs.get("padding_mode", "reflect"),
                                kwargs.get("padding", 0))
