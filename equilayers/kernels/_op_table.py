"""The op table: one :func:`register_op` entry per op with a Triton kernel or a fast path.

A functional op calls ``kernels.dispatch("<name>", x, **kwargs)``; the entry tells the
dispatcher the op's reference and argument spec (:mod:`._reference`), its Triton kernel (the
``torch.library`` ops of :mod:`._ops`, imported on first use) and its fast paths per device
type (:mod:`._cpu`, :mod:`._cpu_polyphase`, :mod:`._conv_paths`): the first of a device is
its default, the measured layout table (:mod:`._layout`) picks among them per layout and size.
Adding an op: write its spec and reference, its
kernel or fast path, and one entry here (``ARCHITECTURE.md`` has a worked example).
"""

from __future__ import annotations

import torch

from . import _conv_paths, _cpu, _cpu_polyphase
from . import _reference as R
from ._registry import FastPath, KernelOp, register_op

__all__: list[str] = []


# --- the Triton entries: keyword arguments -> the custom ops' positional ones --------------------
# In plain eager mode (``_eager.plain``) the same kernels run through the custom ops' eager
# twins (:mod:`._eager`), which skip ``torch.library``'s per-call Python; everywhere else (a
# compiler, a tracer, a mode, a tensor subclass) the custom ops themselves.

_modules: list = []  # [_ops, _eager] once a kernel has run (they import Triton)


def _kernels(x: torch.Tensor):
    """The module whose ops run this call: :mod:`._eager` or :mod:`._ops`."""
    if not _modules:
        from . import _eager, _ops

        _modules.extend((_ops, _eager))
    return _modules[1] if _modules[1].plain(x) else _modules[0]


def _triton_blur_pool2d(x: torch.Tensor, kernel_size: int = 3, stride: int = 2,
                        padding_mode: str = "reflect") -> torch.Tensor:
    return _kernels(x).blur_pool2d(x, kernel_size, stride, padding_mode)


def _triton_max_blur_pool2d(x: torch.Tensor, kernel_size: int = 2, stride: int = 2,
                            blur_size: int = 3, padding_mode: str = "reflect",
                            padding: int = 0) -> torch.Tensor:
    return _kernels(x).max_blur_pool2d(x, kernel_size, stride, blur_size, padding_mode,
                                       padding)


def _triton_polyphase_pool2d(x: torch.Tensor, stride: int = 2, *, criterion: str = "l2",
                             blur_size: int = 1, padding_mode: str = "circular",
                             return_index: bool = False):
    ops = _kernels(x)
    if blur_size > 1:  # the blur by the blur_pool2d kernel at stride 1
        x = ops.blur_pool2d(x, blur_size, 1, padding_mode)
    y, index = ops.polyphase_pool2d(x, stride, criterion)
    return (y, index) if return_index else y


# --- what a path cannot take among the calls the spec accepts -----------------------------------

def _max_window_at_most_4(x: torch.Tensor, kernel_size: int = 2, **kwargs) -> str | None:
    if kernel_size > 4:
        return f"max-pool kernel_size {kernel_size} is outside the kernel's 1..4"
    return None


def _not_empty(x: torch.Tensor, *args, **kwargs) -> str | None:
    return f"the input is empty (shape {tuple(x.shape)})" if x.numel() == 0 else None


# --- where the reference computes in autocast's dtype: its blur's conv runs ----------------------

def _blur_conv_runs(x: torch.Tensor, kernel_size: int = 3, **kwargs) -> bool:
    return kernel_size != 1 and x.numel() > 0


# (each with its op's defaults: check_max_blur_pool2d's blur_size=3, the polyphase one's 1)
def _max_blur_conv_runs(x: torch.Tensor, blur_size: int = 3, **kwargs) -> bool:
    return blur_size != 1 and x.numel() > 0


def _polyphase_conv_runs(x: torch.Tensor, blur_size: int = 1, **kwargs) -> bool:
    return blur_size != 1 and x.numel() > 0


# --- the table -----------------------------------------------------------------------------------

register_op(KernelOp(
    name="blur_pool2d",
    reference=R.blur_pool2d,
    check=R.check_blur_pool2d,
    triton=_triton_blur_pool2d,
    autocast=_blur_conv_runs,
    fast={"cpu": (
        FastPath(_cpu.blur_pool2d, "PyTorch fast path: separable strided adds, padding by "
                 "index arithmetic, hand-written backward", "separable"),
        FastPath(_conv_paths.blur_pool2d, "PyTorch fast path: one depthwise strided conv2d "
                 "with zero padding, the border ring recomputed in the padding mode",
                 "depthwise_conv", supports=_not_empty),
    )},
))

register_op(KernelOp(
    name="max_blur_pool2d",
    reference=R.max_blur_pool2d,
    check=R.check_max_blur_pool2d,
    triton=_triton_max_blur_pool2d,
    triton_supports=_max_window_at_most_4,
    autocast=_max_blur_conv_runs,
    fast={"cpu": (
        FastPath(_cpu.max_blur_pool2d, "PyTorch fast path: the stride-1 max pooling (any "
                 "window and padding) as elementwise maxima with a mask backward, then the "
                 "separable fast blur", "separable"),
        FastPath(_conv_paths.max_blur_pool2d, "PyTorch fast path: max_pool2d at stride 1, "
                 "then one depthwise strided conv2d with zero padding, the border ring "
                 "recomputed in the padding mode", "depthwise_conv", supports=_not_empty),
    )},
))

register_op(KernelOp(
    name="polyphase_pool2d",
    reference=R.polyphase_pool2d,
    check=R.check_polyphase_pool2d,
    triton=_triton_polyphase_pool2d,
    triton_supports=_not_empty,
    autocast=_polyphase_conv_runs,
    fast={"cpu": (FastPath(_cpu_polyphase.polyphase_pool2d, "PyTorch fast path: component "
                           "norms in float64 by row chunks, one gather, a scatter backward",
                           "chunked_norms"),)},
    fast_supports=_not_empty,
))
