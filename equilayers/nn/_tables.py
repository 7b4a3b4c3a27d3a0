"""Integer tables: a module's gather indices (a group conv's ``expansion_index`` or, 3-D,
``expansion_table``, and its ``bias_index``; ``Restrict``'s and ``CosetPool``'s ``index``),
fixed functions of its constructor's arguments.

They are plain tensor attributes named by the class's ``_table_names``, not buffers: tools
that treat every buffer as state would otherwise write to them. ``torch.optim.swa_utils.
AveragedModel(..., use_buffers=True)`` (torch's EMA recipe, torchvision's reference scripts)
averages every buffer, and torch's averaging of an integer tensor computes in floating point
and truncates (``7 * 0.9 + 7 * 0.1`` may land on 6): the averaged model's outputs were wrong
(later a loud error). DDP also broadcast them with the buffers on every forward. Each
module's ``_apply`` rebuilds them on the parameters' (or, for the parameter-free modules, the
converted tables') device, so ``.to()``, ``to_empty()`` and ``.cuda()`` move them; a forward
reads them through :func:`table_on` (a copy on the right device where a tool moved the
parameters without ``_apply``, as FSDP2 does).

:func:`check_tables` compares each table it has not seen at its current version with the
table built afresh (once per new tensor or in-place write, not per call) and raises a
``RuntimeError`` naming the table and the fix where they differ; under torch's
``FakeTensorMode`` too (both built and compared as real tensors), where a fake table (of a
module built inside the mode) has no values to compare and is not checked. A write through
``.data`` bumps no version counter and is not seen (docs/training.md, "Around the training
loop").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn

from .._host import host_constants

__all__ = ["check_tables", "integer_tables", "table_on"]

_ATTR = "_tables_seen"
_is_wrapped = torch._C._functorch.is_functorch_wrapped_tensor  # (on every torch >= the floor)


def _checkable(b: torch.Tensor | None) -> bool:
    return (b is not None and type(b) is torch.Tensor and not b.is_floating_point()
            and not b.is_meta and not _is_wrapped(b) and not b.is_inference())


def integer_tables(module: nn.Module) -> dict[str, torch.Tensor]:
    """``module``'s integer tables by name (its class's ``_table_names``)."""
    d = module.__dict__
    return {n: d[n] for n in getattr(type(module), "_table_names", ()) if d.get(n) is not None}


def table_on(table: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``table`` on ``device`` (itself where it already is, as after every ``.to()``)."""
    return table if table.device == device else table.to(device)


def check_tables(module: nn.Module, rebuild: Callable[[], Mapping[str, torch.Tensor]]) -> None:
    """Raise ``RuntimeError`` if an integer table of ``module`` differs from ``rebuild()``'s
    table of the same name (``rebuild`` is called only when a table is new or was written
    since the last check)."""
    if torch.compiler.is_compiling() or torch.jit.is_tracing():
        return
    seen = module.__dict__.get(_ATTR, {})
    fresh = {n: b for n, b in integer_tables(module).items() if _checkable(b)
             and (n not in seen or seen[n][0] is not b or seen[n][1] != b._version)}
    if not fresh:
        return
    # Built and compared as real tensors, also under a FakeTensorMode (shape propagation),
    # where the module's real tables are still checked (the comparison raised torch's
    # DataDependentOutputException on the mode's fake tensors); a fake table is not checkable.
    with host_constants():
        built = rebuild()
        if any(t.is_meta for t in built.values()):
            # The parameters are on the meta device and the tables are real (``.to("meta")``
            # leaves them, so that ``functional_call`` with real parameters on a meta copy
            # still works): there are no values to compare with, and no output values to
            # protect. (The comparison raised torch's "Cannot copy out of meta tensor" on such
            # a forward.)
            return
        changed = [n for n, b in fresh.items() if built[n].shape != b.shape
                   or not torch.equal(built[n].to(b.device), b)]
    if changed:
        n, name = changed[0], type(module).__name__
        raise RuntimeError(
            f"{name}: its integer table {n!r}, fixed by the constructor's arguments, holds "
            "other values than the ones it was built with: something wrote to it in "
            "place, and its outputs would be wrong. Rebuild the tables with "
            f"model.to({str(fresh[n].device)!r}) (every .to() rebuilds them) and leave them "
            "read-only (docs/training.md, 'Around the training loop')")
    module.__dict__[_ATTR] = {**seen, **{n: (b, b._version) for n, b in fresh.items()}}
