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
- ``fast``: ``{device_type: FastPath(fn, note, name) or a tuple of them}``: PyTorch
  formulations with the reference's exact semantics, the candidates for that device. The first
  is the default; the measured layout table (:mod:`._layout`, written by ``python -m benchmarks
  --family layout --write-table``) picks another, or the reference, for the layouts and sizes
  where it measured one faster. ``fast_supports`` limits them all, a path's own ``supports``
  that path alone.

- ``autocast(x, **kwargs)``: whether, for a call ``check`` accepts, the reference computes
  in ``torch.autocast``'s dtype (it runs an op autocast casts, such as a conv, on the
  input), or ``None`` (it never does). Under autocast the dispatcher then casts the input to
  that dtype before it picks a path, so every path returns the reference's dtype
  (:mod:`._amp`).

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


#: Names a fast path cannot take: the other paths' names.
RESERVED_NAMES = ("reference", "triton", "fast")


class FastPath(NamedTuple):
    """A PyTorch formulation of an op for one device type: ``fn(x, **kwargs)``, the line
    :func:`equilayers.kernels.explain` shows for it, its name among the device's candidates
    (an identifier, the key of the measured layout table) and an optional ``supports``."""

    fn: Callable[..., Any]
    note: str
    name: str = "default"
    supports: Supports | None = None


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
    fast: Mapping[str, tuple[FastPath, ...]] = field(default_factory=dict)
    fast_supports: Supports | None = None
    fast_dtypes: tuple[torch.dtype, ...] = (torch.float32, torch.float64)
    autocast: Callable[..., bool] | None = None

    def __post_init__(self) -> None:
        what = "KernelOp"
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise TypeError(f"{what}: name={self.name!r} must be the op's name, an identifier "
                            "such as 'blur_pool2d'")
        C.check_callable(self.reference, "reference", what, fix="the op's pure-PyTorch "
                         "reference, f(x, **kwargs)")
        C.check_callable(self.check, "check", what, fix="the op's argument spec, "
                         "f(x, **kwargs), raising TypeError/ValueError")
        for name in ("triton", "triton_supports", "fast_supports", "autocast"):
            if getattr(self, name) is not None:
                C.check_callable(getattr(self, name), name, what, fix="or None")
        object.__setattr__(self, "fast", MappingProxyType(_candidates(self.fast, what)))

    def invalid_reason(self, x: torch.Tensor, **kwargs) -> str | None:
        """Why the reference rejects ``(x, **kwargs)`` (the message of the error ``check``
        raises, which the reference raises too), or ``None`` for a valid call."""
        try:
            self.check(x, **kwargs)
        except (TypeError, ValueError) as exc:
            return str(exc)
        return None


def _candidates(fast: object, what: str) -> dict[str, tuple[FastPath, ...]]:
    """``fast`` with each device's paths as a tuple, checked: callables, unique identifier
    names (none of :data:`RESERVED_NAMES`), at least one per device."""
    def bad() -> TypeError:
        return TypeError(f"{what}: fast={fast!r} must map device types ('cpu') to "
                         "FastPath(fn, note, name) or a non-empty tuple of them")

    if not isinstance(fast, Mapping):
        raise bad()
    out = {}
    for device, paths in fast.items():
        paths = (paths,) if isinstance(paths, FastPath) else paths
        if (not isinstance(device, str) or not isinstance(paths, tuple | list) or not paths
                or not all(isinstance(p, FastPath) for p in paths)):
            raise bad()
        names = [p.name for p in paths]
        for p in paths:
            C.check_callable(p.fn, "fast fn", what)
            if p.supports is not None:
                C.check_callable(p.supports, "fast supports", what, fix="or None")
            if not isinstance(p.name, str) or not p.name.isidentifier() or (
                    p.name in RESERVED_NAMES):
                raise ValueError(f"{what}: fast path name={p.name!r} must be an identifier "
                                 f"other than {RESERVED_NAMES}, such as 'depthwise_conv'")
        if len(set(names)) != len(names):
            raise ValueError(f"{what}: the {device!r} fast paths need distinct names; got "
                             f"{names}")
        out[device] = tuple(paths)
    return out


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


def fast_ops() -> dict[str, dict[str, dict[str, str]]]:
    """``{op: {device_type: {path name: note}}}`` for the ops with fast PyTorch formulations
    (the first of each device is its default)."""
    return {name: {dev: {p.name: p.note for p in paths} for dev, paths in op.fast.items()}
            for name, op in _OPS.items() if op.fast}
