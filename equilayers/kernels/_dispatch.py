"""Which implementation a call takes: the Triton kernel, a fast PyTorch formulation, or the
pure-PyTorch reference.

The rule, checked in this order (the first that applies decides):

1. ``EQUILAYERS_DISABLE_TRITON=1`` in the environment -> reference.
2. Inside ``use_reference()`` -> reference.
3. Inside a ``torch.func`` transform (``grad``, ``vmap``, ``jvp``, ``jacrev``, ...) ->
   reference: plain PyTorch ops, which every transform differentiates and batches (the fast
   paths write into preallocated buffers and have hand-written backwards, which functorch
   cannot transform).
4. The arguments are invalid (not a floating-point tensor, sizes too small for the padding...)
   -> reference, which raises the error that names the fix.
5. The Triton kernel can take the call -> ``"triton"``: the op has a kernel; the input is on
   CUDA, or on CPU with ``EQUILAYERS_TRITON_INTERPRET=1`` and ``TRITON_INTERPRET=1`` (Triton's
   interpreter, for tests); triton is installed; the dtype is float32, float16 or bfloat16; the
   input is 4-D or 5-D; the arguments are within the kernel's (blur size 1..7, max window
   1..4 with any valid max-pool padding; polyphase pooling: every valid stride, criterion,
   blur size and padding mode, its blur being the blur_pool2d kernel at stride 1). Any memory
   layout is accepted (the kernels index through the strides; a channels_last input gives a
   channels_last output).
6. The op has a fast PyTorch formulation with the reference's exact semantics, measured faster
   on this device, for this dtype (float32, float64), and the call is not being traced ->
   ``"fast"`` (today on CPU: ``blur_pool2d`` as separable strided adds with the padding done by
   index arithmetic, and ``max_blur_pool2d``, whose stride-1 max pooling becomes elementwise
   maxima, both with hand-written backwards and run in cache-sized chunks, and
   ``polyphase_pool2d`` with its component norms summed in float64 row chunk by row chunk
   instead of ``vector_norm``; see :mod:`equilayers.kernels._cpu`). Under ``torch.compile``,
   ``torch.export`` and ``torch.jit.trace`` the reference is traced instead (the fast
   backward has a data-dependent branch for NaN windows, and a compiler fuses the reference
   itself).
7. Otherwise -> ``"reference"``.

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

from .. import _checks as C

__all__ = ["FAST_OPS", "KERNEL_OPS", "explain", "kernel_support", "select", "triton_available",
           "use_reference"]

#: Ops with a Triton kernel.
KERNEL_OPS = ("blur_pool2d", "max_blur_pool2d", "polyphase_pool2d")
#: Ops with a fast PyTorch formulation, per device type where it was measured faster.
FAST_OPS = {
    "blur_pool2d": {"cpu": "PyTorch fast path: separable strided adds, padding by index "
                           "arithmetic, hand-written backward"},
    "max_blur_pool2d": {"cpu": "PyTorch fast path: the stride-1 max pooling (any window and "
                               "padding) as elementwise maxima with a mask backward, then the "
                               "separable fast blur"},
    "polyphase_pool2d": {"cpu": "PyTorch fast path: component norms in float64 by row chunks, "
                                "one gather, a scatter backward"},
}
# The dtypes the fast paths were checked and measured in.
_FAST_DTYPES = (torch.float32, torch.float64)
_DTYPES = (torch.float32, torch.float16, torch.bfloat16)

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


def functorch_active() -> bool:
    """Whether a ``torch.func`` transform (grad, vmap, jvp, ...) is running: custom autograd
    Functions with ``out=`` buffers must step aside for plain ops then."""
    if torch.compiler.is_compiling():  # a traced graph holds plain ops either way
        return False
    return torch._C._are_functorch_transforms_active()


def triton_available() -> bool:
    """Whether the ``triton`` package is installed (it is not imported here)."""
    return importlib.util.find_spec("triton") is not None


def _interpret_enabled() -> bool:
    return (os.environ.get("EQUILAYERS_TRITON_INTERPRET") == "1"
            and os.environ.get("TRITON_INTERPRET") == "1")


def _check_arguments(op: str, kwargs: dict) -> None:
    """The reference's argument checks (the shared ones of :mod:`equilayers._checks`, which
    the functional ops run too): raise their ``TypeError``/``ValueError``."""
    if op == "blur_pool2d":
        C.check_blur_pool_args(kwargs.get("kernel_size", 3), kwargs.get("stride", 2),
                               kwargs.get("padding_mode", "reflect"), op)
    elif op == "max_blur_pool2d":
        C.check_max_blur_args(kwargs.get("kernel_size", 2), kwargs.get("stride", 2),
                              kwargs.get("blur_size", 3), kwargs.get("padding_mode", "reflect"),
                              kwargs.get("padding", 0), op)
    elif op == "polyphase_pool2d":
        C.check_polyphase_args(kwargs.get("stride", 2), kwargs.get("criterion", "l2"),
                               kwargs.get("blur_size", 1), kwargs.get("padding_mode", "circular"),
                               op)


def _check_sizes(op: str, shape: tuple[int, ...], kwargs: dict) -> None:
    """The reference's checks of the input's rank and sizes against valid arguments: raise
    its ``ValueError``."""
    if len(shape) < 3:
        raise ValueError(f"{op}: x must be at least 3-D (B, ..., H, W); got a {len(shape)}-D "
                         f"tensor of shape {shape}")
    spatial = shape[-2:]
    if op == "polyphase_pool2d":
        stride, k = kwargs.get("stride", 2), kwargs.get("blur_size", 1)
        if spatial[0] % stride or spatial[1] % stride:
            raise ValueError(f"{op} needs H and W divisible by stride={stride}; got H="
                             f"{spatial[0]}, W={spatial[1]} (shape {shape})")
        C.check_blur_padding(spatial, k, kwargs.get("padding_mode", "circular"), op, shape,
                             "blur_size")
        return
    if op == "max_blur_pool2d":
        m, pad = kwargs.get("kernel_size", 2), kwargs.get("padding", 0)
        spatial = tuple(n + 2 * pad - m + 1 for n in spatial)
        if min(spatial) < 1:
            raise ValueError(f"{op}: x of spatial size {shape[-2]}x{shape[-1]} (shape {shape}) "
                             f"padded by {pad} is smaller than the max-pool window {m}x{m}")
        C.check_blur_padding(spatial, kwargs.get("blur_size", 3),
                             kwargs.get("padding_mode", "reflect"), op, shape, "blur_size")
        return
    C.check_blur_padding(spatial, kwargs.get("kernel_size", 3),
                         kwargs.get("padding_mode", "reflect"), op, shape)


def _invalid(op: str, dtype: torch.dtype, shape: tuple[int, ...], kwargs: dict) -> str | None:
    """Why the reference will reject this call (it raises the error), or ``None``: the same
    checks (:mod:`equilayers._checks`), so no path accepts what the reference rejects."""
    if not dtype.is_floating_point:
        return f"dtype {dtype} is not floating point"
    try:
        _check_arguments(op, kwargs)
        _check_sizes(op, shape, kwargs)
    except (TypeError, ValueError) as exc:
        return str(exc)
    if op == "polyphase_pool2d" and 0 in shape:
        return f"the input is empty (shape {shape})"
    return None


def _kernel_args(op: str, ndim: int, kwargs: dict) -> str | None:
    """Why the kernel cannot take these (valid) arguments, or ``None`` when it can."""
    if ndim not in (4, 5):
        return f"the input has {ndim} dims; the kernel takes 4-D or 5-D input"
    if op == "max_blur_pool2d":
        m = kwargs.get("kernel_size", 2)
        if m > 4:
            return f"max-pool kernel_size {m} is outside the kernel's 1..4"
    return None


def _support(op: str, device_type: str, dtype: torch.dtype, ndim: int,
             kernel_args: str | None) -> tuple[bool, str]:
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
    if kernel_args is not None:
        return False, kernel_args
    return True, f"Triton kernel {where}, {str(dtype).replace('torch.', '')}"


def _select(op: str, device_type: str, dtype: torch.dtype, shape: tuple[int, ...],
            kwargs: dict) -> tuple[str, str]:
    if os.environ.get("EQUILAYERS_DISABLE_TRITON") == "1":
        return "reference", "EQUILAYERS_DISABLE_TRITON=1 is set"
    if getattr(_state, "force_reference", 0):
        return "reference", "inside equilayers.kernels.use_reference()"
    if functorch_active():
        return "reference", ("inside a torch.func transform, which differentiates and batches "
                             "the plain-PyTorch reference")
    if op in KERNEL_OPS or op in FAST_OPS:
        bad = _invalid(op, dtype, shape, kwargs)
        if bad is not None:
            return "reference", f"{bad}; the reference reports it"
    kernel_args = _kernel_args(op, len(shape), kwargs) if op in KERNEL_OPS else None
    ok, reason = _support(op, device_type, dtype, len(shape), kernel_args)
    if ok:
        return "triton", reason
    if op in FAST_OPS and device_type in FAST_OPS[op]:
        if torch.compiler.is_compiling() or torch.jit.is_tracing():
            return "reference", (f"tracing (torch.compile/export/jit.trace) takes the reference, "
                                 f"which the compiler fuses itself (no kernel: {reason})")
        if dtype not in _FAST_DTYPES:
            return "reference", (f"the fast path takes float32 and float64, not "
                                 f"{str(dtype).replace('torch.', '')} (no kernel: {reason})")
        return "fast", f"{FAST_OPS[op][device_type]} (no kernel: {reason})"
    return "reference", reason


def _check_op_name(op_name, what: str) -> None:
    if not isinstance(op_name, str):
        raise TypeError(f"{what}: op_name={op_name!r} must be the op's name, a string such as "
                        f"'blur_pool2d' (kernels exist for {KERNEL_OPS})")


def kernel_support(op_name: str, x: torch.Tensor, **kwargs) -> tuple[bool, str]:
    """``(ok, reason)``: whether the Triton kernel can take this call, switches aside."""
    _check_op_name(op_name, "kernel_support")
    C.check_tensor(x, "x", "kernel_support", floating=False)
    bad = _invalid(op_name, x.dtype, tuple(x.shape), kwargs) if op_name in KERNEL_OPS else None
    if bad is not None:
        return False, bad
    kernel_args = _kernel_args(op_name, x.dim(), kwargs) if op_name in KERNEL_OPS else None
    return _support(op_name, x.device.type, x.dtype, x.dim(), kernel_args)


def select(op_name: str, x: torch.Tensor, **kwargs) -> tuple[str, str]:
    """``(path, reason)`` for ``op_name(x, **kwargs)``; ``path`` is ``"triton"``, ``"fast"``
    or ``"reference"``.

    Args:
        op_name: ``"blur_pool2d"``, ``"max_blur_pool2d"``, ``"polyphase_pool2d"``, or any
            other functional op name.
        x: the input (only its type, device, dtype and shape are read).
        **kwargs: the op's keyword arguments (``kernel_size``, ``stride``, ``padding_mode``...).
    """
    _check_op_name(op_name, "select")
    if not isinstance(x, torch.Tensor):
        return "reference", (f"x is a {type(x).__name__}, not a tensor; the reference reports "
                             "it")
    return _select(op_name, x.device.type, x.dtype, tuple(x.shape), kwargs)


def explain(op_name: str, x: torch.Tensor, **kwargs) -> str:
    """One line saying which implementation ``op_name(x, **kwargs)`` runs, and why.

    Example:
        >>> import torch
        >>> from equilayers import kernels
        >>> x = torch.zeros(1, 1, 8, 8, dtype=torch.float64)
        >>> kernels.explain("blur_pool2d", x, kernel_size=3).startswith("blur_pool2d: reference")
        True
    """
    _check_op_name(op_name, "explain")
    path, reason = select(op_name, x, **kwargs)
    return f"{op_name}: {path} ({reason})"
