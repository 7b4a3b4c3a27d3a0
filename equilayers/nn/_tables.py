"""Integer tables written in place: a module's integer buffers (a group conv's gather indices,
a subgroup's slot indices) are fixed functions of its constructor's arguments, and a write
into them gives wrong outputs with no error. ``torch.optim.swa_utils.AveragedModel(...,
use_buffers=True)`` makes one: it averages every buffer, and torch's averaging of an integer
tensor computes in floating point and truncates (``7 * 0.9 + 7 * 0.1`` may land on 6).

:func:`check_tables` compares each integer buffer it has not seen at its current version with
the table built afresh (once per new tensor or in-place write, not per call) and raises a
``RuntimeError`` naming the buffer and the fix where they differ. A write through ``.data``
bumps no version counter and is not seen (docs/training.md, "Around the training loop").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn

__all__ = ["check_tables"]

_ATTR = "_tables_seen"
_is_wrapped = getattr(torch._C._functorch, "is_functorch_wrapped_tensor", lambda t: False)


def _checkable(b: torch.Tensor | None) -> bool:
    return (b is not None and type(b) is torch.Tensor and not b.is_floating_point()
            and not b.is_meta and not _is_wrapped(b) and not b.is_inference())


def check_tables(module: nn.Module, rebuild: Callable[[], Mapping[str, torch.Tensor]]) -> None:
    """Raise ``RuntimeError`` if an integer buffer of ``module`` differs from ``rebuild()``'s
    table of the same name (``rebuild`` is called only when a buffer is new or was written
    since the last check)."""
    if torch.compiler.is_compiling() or torch.jit.is_tracing():
        return
    seen = module.__dict__.get(_ATTR, {})
    fresh = {n: b for n, b in module._buffers.items() if b is not None and _checkable(b)
             and (n not in seen or seen[n][0] is not b or seen[n][1] != b._version)}
    if not fresh:
        return
    built = rebuild()
    for n, b in fresh.items():
        want = built[n]
        if want.shape != b.shape or not torch.equal(want.to(b.device), b):
            name = type(module).__name__
            raise RuntimeError(
                f"{name}: its buffer {n!r}, an integer table fixed by the constructor's "
                "arguments, holds other values than the ones it was built with: something "
                "wrote to it in place, e.g. torch.optim.swa_utils.AveragedModel(..., "
                "use_buffers=True), whose averaging truncates integer buffers; its outputs "
                f"would be wrong. Rebuild the tables with model.to({str(b.device)!r}) (every "
                ".to() rebuilds them) and average only the floating-point buffers (docs/"
                "training.md, 'Around the training loop')")
    module.__dict__[_ATTR] = {**seen, **{n: (b, b._version) for n, b in fresh.items()}}
