"""The kernel-op registry: one :class:`KernelOp` per op that has a fast path or a Triton kernel.

An entry holds everything the dispatcher (:mod:`._dispatch`) needs, so adding an op is one
:func:`register_op` call (in :mod:`._op_table`) plus the code it names:

- ``reference(x, **kwargs)``: the pure-PyTorch specification. It starts with ``check``, so it
  raises the op's errors; every other path computes what it computes.
- ``check(x, **kwargs)``: the op's argument spec, the one place its rules live. It raises
  the ``TypeError``/``ValueError`` that names the fix; the reference runs it, and the
  dispatcher sends every call it rejects to the reference (:meth:`KernelOp.invalid_reason`).
  Its signature, defaults included, is the op's.
- ``triton(x, **kwargs)``: the Triton kernel's entry (imports Triton lazily), or ``None``.
  It takes ``triton_dtypes``, ``triton_ndims`` and what ``triton_supports`` accepts.
- ``fast``: ``{device_type: FastPath(fn, note)}``: PyTorch formulations with the reference's
  exact semantics, measured faster on that device; ``fast_supports`` limits them further.

``*_supports(x, **kwargs)`` see only calls ``check`` accepted and return why their path
cannot take one (a string, shown by :func:`equilayers.kernels.explain`) or ``None``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple

import torch

from .. import _checks as C

__all__ = ["FastPath", "KernelOp", "OpRegistration", "fast_ops", "get_op", "kernel_ops",
           "register_op"]

#: What a ``*_supports`` callable returns: why the path cannot take the call, or ``None``.
Supports = Callable[..., "str | None"]


class FastPath(NamedTuple):
    """A PyTorch formulation of an op for one device type: ``fn(x, **kwargs)`` and the line
    :func:`equilayers.kernels.explain` shows for it."""

    fn: Callable[..., Any]
    note: str


@dataclass(frozen=True)
class KernelOp:
    """One row of the op table (see the module docstring for each field)."""

    name: str
    reference: Callable[..., Any]
    check: Callable[..., None]
    triton: Callable[..., Any] | None = None
    triton_supports: Supports | None = None
    triton_dtypes: tuple[torch.dtype, ...] = (torch.float32, torch.float16, torch.bfloat16)
    triton_ndims: tuple[int, ...] = (4, 5)
    fast: Mapping[str, FastPath] = field(default_factory=dict)
    fast_supports: Supports | None = None
    fast_dtypes: tuple[torch.dtype, ...] = (torch.float32, torch.float64)

    def __post_init__(self) -> None:
        what = "KernelOp"
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise TypeError(f"{what}: name={self.name!r} must be the op's name, an identifier "
                            "such as 'blur_pool2d'")
        C.check_callable(self.reference, "reference", what, fix="the op's pure-PyTorch "
                         "reference, f(x, **kwargs)")
        C.check_callable(self.check, "check", what, fix="the op's argument spec, "
                         "f(x, **kwargs), raising TypeError/ValueError")
        for name in ("triton", "triton_supports", "fast_supports"):
            if getattr(self, name) is not None:
                C.check_callable(getattr(self, name), name, what, fix="or None")
        if not isinstance(self.fast, Mapping) or not all(
                isinstance(k, str) and isinstance(v, FastPath) for k, v in self.fast.items()):
            raise TypeError(f"{what}: fast={self.fast!r} must map device types ('cpu') to "
                            "FastPath(fn, note)")
        for path in self.fast.values():
            C.check_callable(path.fn, "fast fn", what)
        object.__setattr__(self, "fast", MappingProxyType(dict(self.fast)))

    def invalid_reason(self, x: torch.Tensor, **kwargs) -> str | None:
        """Why the reference rejects ``(x, **kwargs)`` (the message of the error ``check``
        raises, which the reference raises too), or ``None`` for a valid call."""
        try:
            self.check(x, **kwargs)
        except (TypeError, ValueError) as exc:
            return str(exc)
        return None


_OPS: dict[str, KernelOp] = {}


class OpRegistration:
    """What :func:`register_op` returns: ``remove()`` takes the op out of the table again; as
    a context manager it removes it on exit (as :class:`equilayers.groups.GroupRegistration`)."""

    def __init__(self, op: KernelOp) -> None:
        self.op = op

    def remove(self) -> None:
        if _OPS.get(self.op.name) is self.op:
            del _OPS[self.op.name]

    def __enter__(self) -> OpRegistration:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def __repr__(self) -> str:
        return f"OpRegistration({self.op.name!r})"


def register_op(op: KernelOp) -> OpRegistration:
    """Put ``op`` in the table: :func:`equilayers.kernels.dispatch` and ``select`` route its
    name from now on. Raises ``ValueError`` when the name is taken (remove the old entry
    first)."""
    if not isinstance(op, KernelOp):
        raise TypeError(f"register_op: op={op!r} must be a KernelOp")
    if op.name in _OPS:
        raise ValueError(f"register_op: an op named {op.name!r} is already in the table; "
                         "remove its registration first")
    _OPS[op.name] = op
    return OpRegistration(op)


def get_op(name: str) -> KernelOp | None:
    """The table's entry for ``name``, or ``None``."""
    return _OPS.get(name)


def kernel_ops() -> tuple[str, ...]:
    """The names of the ops with a Triton kernel, in registration order."""
    return tuple(name for name, op in _OPS.items() if op.triton is not None)


def fast_ops() -> dict[str, dict[str, str]]:
    """``{op: {device_type: note}}`` for the ops with a fast PyTorch formulation."""
    return {name: {dev: path.note for dev, path in op.fast.items()}
            for name, op in _OPS.items() if op.fast}
