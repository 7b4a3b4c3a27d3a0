"""Constructor and forward checks of the harmonic-field modules, in the vocabulary of those
modules, on top of the one shared rule set (:mod:`equilayers._checks`): each error names the
module, the argument, the value and the fix."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from .. import _checks as C
from ..groups import Group


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


def _order_of_fiber(f: int, volume: bool) -> int | None:
    """The ``M`` whose harmonic fiber has ``f`` slots (``2M+1``; SO(3): ``(M+1)^2``), or
    ``None`` when no order has that many."""
    if volume:
        root = math.isqrt(f) if f >= 1 else 0
        return root - 1 if root >= 1 and root * root == f else None
    return (f - 1) // 2 if f % 2 == 1 else None


def module_label(module: nn.Module) -> str:
    """``Name(group='c8', max_order=1)``: the module with the settings that fix its fiber
    (those it has; ``group`` only where one is set)."""
    parts = []
    group = getattr(module, "group", None)
    if group is not None:
        parts.append(f"group={getattr(group, 'name', group)!r}")
    if getattr(module, "max_order", None) is not None:
        parts.append(f"max_order={module.max_order}")
    return f"{type(module).__name__}({', '.join(parts)})"


def harmonic_fiber(x, module: nn.Module) -> None:
    """Raise ``ValueError`` unless dim 2 of ``x`` is a harmonic fiber of orders
    ``0..module.max_order`` (``2M+1`` slots; SO(3)/O(3) fields: ``(M+1)^2``), naming the
    module, both fibers and the fix: the ``max_order`` the input has. A ``max_order`` of
    ``None`` (read from the input) asks only for a harmonic fiber. A non-tensor or a wrong
    rank is left to the functional, which names it."""
    group = getattr(module, "group", None)
    volume = getattr(group, "spatial_dim", 2) == 3
    max_order = getattr(module, "max_order", None)
    if not isinstance(x, torch.Tensor) or x.dim() != (6 if volume else 5):
        return
    f = int(x.shape[2])
    implied = _order_of_fiber(f, volume)
    formula = "(max_order+1)^2" if volume else "2*max_order+1"
    if max_order is None:
        if implied is not None:
            return
        expects = f"{module_label(module)} expects a harmonic fiber of {formula} slots in dim 2"
    else:
        want = (max_order + 1) ** 2 if volume else 2 * max_order + 1
        if f == want:
            return
        expects = (f"{module_label(module)} expects a fiber of {want} slots (orders 0..{max_order}"
                   f"{', (max_order+1)^2' if volume else ''}) in dim 2")
    if implied is None:
        got, fix = (f"got F={f}, which no order gives", "pass harmonic fields (regular fields "
                    "go through RegularToHarmonic first)")
    else:
        got, fix = f"got F={f} (orders 0..{implied})", f"build it with max_order={implied}"
    raise ValueError(f"{expects}; {got}, shape {tuple(x.shape)}: {fix}")


def regular_fiber(x, module: nn.Module) -> None:
    """Raise ``ValueError`` unless dim 2 of a 5-D ``x`` has the ``|G|`` slots of a regular
    fiber of ``module.group``, naming the module and the fix."""
    group = module.group
    assert isinstance(group, Group)  # the modules that take regular fields hold their group
    order = int(group.order)
    if not isinstance(x, torch.Tensor) or x.dim() != 5 or int(x.shape[2]) == order:
        return
    f = int(x.shape[2])
    raise ValueError(f"{module_label(module)} expects a regular {group.name} fiber of "
                     f"|G|={order} slots in dim 2; got F={f}, shape {tuple(x.shape)}: build it "
                     f"with the group whose regular fields the input holds (|G| = {f})")


def check_input_once(module: nn.Module, x, options: tuple,
                     check: Callable[[], bool | None]) -> None:
    """Run ``check()`` (a conv's input checks) and the dtype check (a floating ``x`` in the
    weight's dtype, or autocast on for its device) unless ``x`` is like the last input they
    passed for ``module``: the key is ``x``'s shape, dtype and meta flag, the weight's meta
    flag and dtype, the autocast flag and ``options``, which must hold every other value
    ``check`` reads (so the key cannot match an input or a setting the checks were not run
    for). Not memoized for non-tensors, while ``torch.compile`` or ``torch.jit.trace``
    traces, or when ``check()`` returns ``False`` (a part of it that could not be settled for
    this input yet, e.g. an exactness warning skipped under ``quiet_exactness_warnings``).
    (The checks read the input's sizes, which ``torch.jit.trace`` records: run on the first
    traced call and skipped on the next, they made the two graphs differ, and the default
    ``check_trace`` of ``torch.jit.trace`` failed.)"""
    key = None
    weight = module.weight
    assert isinstance(weight, torch.Tensor)  # the convs that call this have a weight
    if (isinstance(x, torch.Tensor) and not torch.compiler.is_compiling()
            and not torch.jit.is_tracing()):
        amp = C.autocast_on(x.device.type)
        key = (x.shape, x.dtype, x.is_meta, weight.is_meta, weight.dtype, amp, *options)
        if key == module.__dict__.get("_checked"):
            return
    settled = check()
    C.check_dtype_match(x, weight, type(module).__name__)
    if key is not None and settled is not False:
        module.__dict__["_checked"] = key
