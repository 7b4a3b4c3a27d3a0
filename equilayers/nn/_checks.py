"""Constructor and forward checks of the harmonic-field modules, in the vocabulary of those
modules, on top of the one shared rule set (:mod:`equilayers._checks`): each error names the
module, the argument, the value and the fix."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .. import _checks as C


def positive_int(value, name: str, cls: str, what: str = "the number of fields C") -> int:
    return C.check_int(value, name, cls, minimum=1, fix=what)


def positive_float(value, name: str, cls: str) -> float:
    return C.check_number(value, name, cls, positive=True, fix=f"e.g. {name}=1e-5")


def nonnegative_float(value, name: str, cls: str) -> float:
    return C.check_number(value, name, cls, minimum=0)


def momentum(value, cls: str) -> float | None:
    if value is None:
        return None
    return C.check_number(value, "momentum", cls, minimum=0, maximum=1,
                          fix="or None for a cumulative moving average, as nn.BatchNorm")


def function(value, cls: str):
    return C.check_callable(value, "function", cls, fix="e.g. torch.nn.functional.relu")


def flag(value, name: str, cls: str) -> bool:
    return C.check_flag(value, name, cls)


def dtype(value, cls: str) -> torch.dtype | None:
    """``None`` or a floating-point ``torch.dtype`` (of the module's parameters/buffers)."""
    return C.check_float_dtype(value, "dtype", cls)


def choice(value, name: str, cls: str, options: tuple[str, ...]) -> str:
    return C.check_choice(value, name, options, cls)


def fields(x: torch.Tensor, channels: int, cls: str, name: str = "channels", ndim: int = 5
           ) -> None:
    """``x`` is 5-D (6-D: SO(3) fields) with ``channels`` fields (the fiber is checked by the
    functional)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{cls} expects a tensor; got {type(x).__name__}")
    if x.dim() != ndim:
        layout = "(B, C, 2M+1, H, W)" if ndim == 5 else "(B, C, (M+1)^2, D, H, W)"
        raise ValueError(f"{cls} expects a {ndim}-D harmonic field {layout}; got shape "
                         f"{tuple(x.shape)}")
    if x.shape[1] != channels:
        raise ValueError(f"{cls}({name}={channels}) expects C={channels} fields in dim 1; got "
                         f"shape {tuple(x.shape)} (build it with {name}={x.shape[1]})")


def check_input_once(module: nn.Module, x, options: tuple,
                     check: Callable[[], bool | None]) -> None:
    """Run ``check()`` (a conv's input checks) and the dtype check (a floating ``x`` in the
    weight's dtype, or autocast on for its device) unless ``x`` is like the last input they
    passed for ``module``: the key is ``x``'s shape, dtype and meta flag, the weight's meta
    flag and dtype, the autocast flag and ``options``, which must hold every other value
    ``check`` reads (so the key cannot match an input or a setting the checks were not run
    for). Not memoized for non-tensors, while
    ``torch.compile`` traces, or when ``check()`` returns ``False`` (a part of it that could
    not be settled for this input yet, e.g. an exactness warning skipped under
    ``quiet_exactness_warnings``)."""
    key = None
    weight = module.weight
    assert isinstance(weight, torch.Tensor)  # the convs that call this have a weight
    if isinstance(x, torch.Tensor) and not torch.compiler.is_compiling():
        amp = C.autocast_on(x.device.type)
        key = (x.shape, x.dtype, x.is_meta, weight.is_meta, weight.dtype, amp, *options)
        if key == module.__dict__.get("_checked"):
            return
    settled = check()
    C.check_dtype_match(x, weight, type(module).__name__)
    if key is not None and settled is not False:
        module.__dict__["_checked"] = key
