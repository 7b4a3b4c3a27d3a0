"""Constructor and forward checks shared by the harmonic-field modules: each error names the
module, the argument, the value and the fix."""

from __future__ import annotations

import math

import torch


def positive_int(value, name: str, cls: str, what: str = "the number of fields C") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{cls}: {name} must be a positive integer ({what}); got "
                         f"{name}={value!r}")
    return value


def order(max_order, cls: str) -> int:
    if isinstance(max_order, bool) or not isinstance(max_order, int) or max_order < 0:
        raise ValueError(f"{cls}: max_order must be an integer >= 0 (fiber 2*max_order+1); got "
                         f"max_order={max_order!r}")
    return max_order


def positive_float(value, name: str, cls: str) -> float:
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0
            or math.isinf(value)):
        raise ValueError(f"{cls}: {name} must be a finite float > 0 (e.g. {name}=1e-5); got "
                         f"{name}={value!r}")
    return float(value)


def nonnegative_float(value, name: str, cls: str) -> float:
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0
            or math.isinf(value)):
        raise ValueError(f"{cls}: {name} must be a finite float >= 0; got {name}={value!r}")
    return float(value)


def momentum(value, cls: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"{cls}: momentum must be a float in [0, 1] (or None for a cumulative "
                         f"moving average, as nn.BatchNorm); got momentum={value!r}")
    return float(value)


def function(value, cls: str):
    if not callable(value):
        raise TypeError(f"{cls}: function must be callable, e.g. torch.nn.functional.relu; got "
                        f"function={value!r}")
    return value


def flag(value, name: str, cls: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{cls}: {name} must be True or False; got {name}={value!r}")
    return value


def choice(value, name: str, cls: str, options: tuple[str, ...]) -> str:
    if value not in options:
        raise ValueError(f"{cls}: {name} must be one of {', '.join(map(repr, options))}; got "
                         f"{name}={value!r}")
    return value


def fields(x: torch.Tensor, channels: int, cls: str, name: str = "channels") -> None:
    """``x`` is 5-D with ``channels`` fields (the fiber is checked by the functional)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{cls} expects a tensor; got {type(x).__name__}")
    if x.dim() != 5:
        raise ValueError(f"{cls} expects a 5-D harmonic field (B, C, 2M+1, H, W); got shape "
                         f"{tuple(x.shape)}")
    if x.shape[1] != channels:
        raise ValueError(f"{cls}({name}={channels}) expects C={channels} fields in dim 1; got "
                         f"shape {tuple(x.shape)} (build it with {name}={x.shape[1]})")
