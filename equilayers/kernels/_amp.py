"""The dispatcher's autocast rule: under ``torch.autocast`` every path returns what the
reference returns.

autocast casts the inputs of the ops on its lower-precision list (convolutions, matmuls) to
its dtype and leaves elementwise ops alone. The references of the blur pools blur with a
depthwise ``F.conv2d``, so under ``torch.autocast(device, dtype)`` they compute in ``dtype``
and return it; the CPU fast paths (strided adds, chunked norms) and the Triton kernels are
not autocast ops and returned float32, so a module's output dtype under mixed precision
changed with the path (train vs eval, size, layout, eager vs compiled). So, at the dispatch
entry, where autocast is on for the input's device and the op's entry says the reference
computes in autocast's dtype for the call (:attr:`KernelOp.autocast <._registry.KernelOp>`:
its conv runs), the input is cast to that dtype first, as autocast casts a conv's input (a
floating-point tensor other than float64), and the dispatcher picks a path for the cast
input: the Triton kernels take float16 and bfloat16 (so AMP keeps them), on CPU a
low-precision input takes the reference. Where the reference does not compute in autocast's
dtype (no conv runs: a blur of size 1, polyphase sampling without a blur, an empty input),
nothing is cast and every path keeps the input's dtype.

The reads are the ones Dynamo constant-folds (``torch._C._is_any_autocast_enabled``,
``torch.is_autocast_enabled``, ``torch.get_autocast_dtype``), so a compiled call casts as
an eager one; the first, one C call, is all a call outside autocast pays.
"""

from __future__ import annotations

import torch

from ._registry import KernelOp

__all__ = ["autocast_dtype", "cast_like"]

#: The device types whose autocast state is read while compiling (on torch's floor Dynamo
#: cannot trace ``torch.amp.is_autocast_available``); the other types have no Triton kernel
#: or fast path, so a compiled call there traces the reference, which autocast casts itself.
_KNOWN = ("cpu", "cuda")
_PLAIN = (int, bool, float, str, type(None))
_MEMO_SIZE = 1024
#: ``(op name, dtype, shape, arguments, autocast dtype) -> (op, whether to cast)``: the spec
#: runs once per kind of call (5-8 us), as the dispatcher's route memo keeps the route; an
#: entry counts for the op object it was decided for only (a re-registered op misses).
_memo: dict[tuple, tuple[KernelOp, bool]] = {}


def _amp(device_type: str) -> torch.dtype | None:
    """The dtype ``torch.autocast`` casts to on ``device_type`` where it is on, else None."""
    if not torch._C._is_any_autocast_enabled():  # outside autocast: one C call
        return None
    if device_type not in _KNOWN and (torch.compiler.is_compiling()
                                      or not torch.amp.is_autocast_available(device_type)):
        return None
    if not torch.is_autocast_enabled(device_type):
        return None
    return torch.get_autocast_dtype(device_type)


def _casts(op: KernelOp, x: torch.Tensor, kwargs: dict) -> bool:
    """Whether the spec accepts the call and the reference's conv runs on it."""
    return (op.autocast is not None and op.invalid_reason(x, **kwargs) is None
            and bool(op.autocast(x, **kwargs)))


def autocast_dtype(op: KernelOp, x: torch.Tensor, kwargs: dict) -> torch.dtype | None:
    """The dtype to cast ``x`` to before a path is picked for ``op(x, **kwargs)`` (the one
    the reference computes in under autocast), or ``None`` to leave it."""
    dtype = _amp(x.device.type)
    if (dtype is None or x.dtype == dtype or x.dtype == torch.float64
            or not x.dtype.is_floating_point):
        return None
    if torch.compiler.is_compiling() or torch.jit.is_tracing() or not all(
            type(v) in _PLAIN for v in kwargs.values()):
        return dtype if _casts(op, x, kwargs) else None
    key = (op.name, x.dtype, x.shape, tuple((k, type(v), v) for k, v in kwargs.items()),
           dtype)
    hit = _memo.get(key)
    if hit is None or hit[0] is not op:
        if len(_memo) >= _MEMO_SIZE:
            _memo.clear()
        hit = _memo[key] = (op, _casts(op, x, kwargs))
    return dtype if hit[1] else None


def cast_like(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised tensor with the metadata ``x.to(dtype)`` would have (device, shape,
    strides, autograd state): what :func:`~._dispatch.choose` decides on, without a copy."""
    return torch.empty_like(x, dtype=dtype).requires_grad_(x.requires_grad)
