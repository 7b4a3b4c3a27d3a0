"""Which implementation a call takes: the Triton kernel or the pure-PyTorch reference.

The rule, checked in this order (the first that applies decides):

1. ``EQUILAYERS_DISABLE_TRITON=1`` in the environment -> reference.
2. Inside ``use_reference()`` -> reference.
3. The op has no kernel -> reference.
4. The input is on CUDA, or on CPU with ``EQUILAYERS_TRITON_INTERPRET=1`` and
   ``TRITON_INTERPRET=1`` (Triton's interpreter, for tests) -> go on; any other device ->
   reference.
5. Triton is not installed -> reference.
6. The dtype is not float32, float16 or bfloat16 -> reference.
7. The arguments are outside what the kernel implements -> reference.
8. Otherwise -> the Triton kernel. Any memory layout is accepted (the kernels index through the
   strides; contiguous and channels_last outputs keep the input's layout).

Nothing here imports Triton (nor ``torch._dynamo``). Under ``torch.compile`` the choice is
traced like any Python code, so it is made at compile time: after changing a switch, call
``torch.compiler.reset()`` before relying on a compiled function to follow it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import threading
from collections.abc import Iterator

import torch

__all__ = ["KERNEL_OPS", "explain", "kernel_support", "select", "triton_available",
           "use_reference"]

#: Ops with a Triton kernel, and the kernel arguments each supports.
KERNEL_OPS = ("blur_pool2d", "max_blur_pool2d")
_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_MODES = ("reflect", "replicate", "zeros", "circular")

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


def triton_available() -> bool:
    """Whether the ``triton`` package is installed (it is not imported here)."""
    return importlib.util.find_spec("triton") is not None


def _interpret_enabled() -> bool:
    return (os.environ.get("EQUILAYERS_TRITON_INTERPRET") == "1"
            and os.environ.get("TRITON_INTERPRET") == "1")


def _args_reason(op: str, kwargs: dict) -> str | None:
    """Why the kernel cannot take these arguments, or ``None`` when it can."""
    k = kwargs.get("kernel_size", 3) if op == "blur_pool2d" else kwargs.get("blur_size", 3)
    if not isinstance(k, int) or not 1 <= k <= 7:
        return f"blur size {k!r} is outside the kernel's 1..7"
    stride = kwargs.get("stride", 2)
    if not isinstance(stride, int) or stride < 1:
        return f"stride {stride!r} is not a positive int"
    mode = kwargs.get("padding_mode", "reflect")
    if mode not in _MODES:
        return f"padding_mode {mode!r} is not one of {_MODES}"
    if op == "max_blur_pool2d":
        mk = kwargs.get("kernel_size", 2)
        if not isinstance(mk, int) or not 1 <= mk <= 4:
            return f"max-pool kernel_size {mk!r} is outside the kernel's 1..4"
    return None


def _support(op: str, device_type: str, dtype: torch.dtype, ndim: int,
             args_reason: str | None) -> tuple[bool, str]:
    """Whether the kernel can take the call (ignoring the switches that force the reference)."""
    if op not in KERNEL_OPS:
        return False, f"{op!r} has no Triton kernel (kernels exist for {KERNEL_OPS})"
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
    if dtype not in _DTYPES:
        return False, f"dtype {dtype} is not one of the kernel's float32/float16/bfloat16"
    if ndim not in (4, 5):
        return False, f"the input has {ndim} dims; the kernel takes 4-D or 5-D input"
    if args_reason is not None:
        return False, args_reason
    return True, f"Triton kernel {where}, {str(dtype).replace('torch.', '')}"


def _select(op: str, device_type: str, dtype: torch.dtype, ndim: int,
            args_reason: str | None) -> tuple[str, str]:
    if os.environ.get("EQUILAYERS_DISABLE_TRITON") == "1":
        return "reference", "EQUILAYERS_DISABLE_TRITON=1 is set"
    if getattr(_state, "force_reference", 0):
        return "reference", "inside equilayers.kernels.use_reference()"
    ok, reason = _support(op, device_type, dtype, ndim, args_reason)
    return ("triton" if ok else "reference"), reason


def kernel_support(op_name: str, x: torch.Tensor, **kwargs) -> tuple[bool, str]:
    """``(ok, reason)``: whether the Triton kernel can take this call, switches aside."""
    reason = _args_reason(op_name, kwargs) if op_name in KERNEL_OPS else None
    return _support(op_name, x.device.type, x.dtype, x.dim(), reason)


def select(op_name: str, x: torch.Tensor, **kwargs) -> tuple[str, str]:
    """``(path, reason)``: ``path`` is ``"triton"`` or ``"reference"`` for ``op_name(x, **kwargs)``.

    Args:
        op_name: ``"blur_pool2d"``, ``"max_blur_pool2d"``, or any other functional op name.
        x: the input tensor (only its device, dtype and number of dims are read).
        **kwargs: the op's keyword arguments (``kernel_size``, ``stride``, ``padding_mode``...).
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"select: x must be a torch.Tensor, got {type(x).__name__}")
    reason = _args_reason(op_name, kwargs) if op_name in KERNEL_OPS else None
    return _select(op_name, x.device.type, x.dtype, x.dim(), reason)


def explain(op_name: str, x: torch.Tensor, **kwargs) -> str:
    """One line saying which implementation ``op_name(x, **kwargs)`` runs, and why.

    Example:
        >>> import torch
        >>> from equilayers import kernels
        >>> x = torch.zeros(1, 1, 8, 8, dtype=torch.float64)
        >>> kernels.explain("blur_pool2d", x, kernel_size=3).startswith("blur_pool2d: reference")
        True
    """
    path, reason = select(op_name, x, **kwargs)
    return f"{op_name}: {path} ({reason})"
