"""The eval-mode filter of a group conv: the expanded filter kept between inference calls, and
checked against the module's current values before every reuse, so it cannot go stale.

A group conv expands its weight into a dense filter on every forward (one gather, or one matmul
with the basis). At batch 1 on small images that per-call work is a large share of the time
(benchmarks/results/redesign-before-after.md). In eval mode with autograd off, the module keeps
the last expanded filter and bias together with

- a copy of the values of the weight and bias (as ``module.weight`` returns them: the
  computed value of a parametrized or pruned weight) and of any other parameter the module
  holds itself (a subclass's own gain), compared with ``torch.equal`` on every call: a
  change by any route (an optimizer step, fused optimizers included, which do not bump
  ``_version``; a ``.data`` edit; ``load_state_dict``; ``.to(dtype)``; a new ``Parameter``
  assigned; a parametrization's output; a new pruning mask) makes them differ. The weight
  and bias are compared by value only, not by identity: a parametrized weight
  (``torch.nn.utils.parametrize``, ``weight_norm``) or a pruned one (``torch.nn.utils.prune``)
  is a new tensor on every read, and its filter is still reused while its values hold;
- the derived buffers themselves (basis tables, gather indices: fixed functions of the
  module's arguments, rebuilt by ``.to()``), compared by identity and version counter;
  holding them keeps their identities from being reused;
- a copy of the floating-point buffers' values (the bases, small next to the filter),
  compared with ``torch.equal``: an edit through ``.data`` does not bump the version counter.
  The integer tables (gather indices, one output field's share of the expanded filter) are
  compared by version only, so a write to them through ``.data`` is not seen (docs/training.md);
- the module's expansion settings, and the autocast state of the parameters' device (the
  expansion's matmul runs in the autocast dtype: a filter made under ``torch.autocast`` is
  not the one a plain call computes).

Any difference recomputes the entry. The copies are taken before the expansion and compared
again after it, and the entry is kept only where they still match: a write that lands during
the expansion (a training thread, a Hogwild process sharing the weights) cannot pair an old
filter with the new values. (A write undone before the expansion ends, A -> B -> A, is not
seen: the call races with it as a plain ``nn.Conv2d`` would, and its filter is kept.) The
comparison reads the parameters and the bases twice; the expansion reads them too and writes
``|G|`` times the parameters, so reuse is always the cheaper of the two. Never reused on an
accelerator (see :func:`reuses`: the checks would synchronise host and device every call), in
training mode or with autograd on (the filter must be in the graph), under ``torch.compile``
/ ``torch.export`` or ``torch.jit.trace`` (the trace would freeze the filter), torch's
``FakeTensorMode`` (shape propagation: no values to compare, and a fake filter must not be
kept) or ``torch.func`` transforms, while a forward-mode AD level is open (a dual weight, e.g.
through ``functional_call``, equals its primal by value: its filter would lose the tangent), nor for
meta, subclassed or inference tensors (a module built, loaded or converted under
``torch.inference_mode`` holds those: no version counter to check). ``train()`` drops the
entry; pickling and ``state_dict`` leave it out.
"""

from __future__ import annotations

import operator
from collections.abc import Callable

import torch
from torch import nn

from .._checks import autocast_on
from .._host import fake_mode_active
from ._tables import _is_wrapped, integer_tables

__all__ = ["EvalFilterMixin", "eval_filter"]

_ATTR = "_eval_filter"


def _plain(t: torch.Tensor | None) -> bool:
    # (an inference tensor, made under torch.inference_mode, has no version counter)
    return t is None or (type(t) in (torch.Tensor, nn.Parameter) and not t.is_meta
                         and not _is_wrapped(t) and not t.is_inference())


def _same(now: torch.Tensor | None, kept: torch.Tensor | None) -> bool:
    if now is None or kept is None:
        return now is None and kept is None
    return (now.shape == kept.shape and now.dtype == kept.dtype and now.device == kept.device
            and bool(torch.equal(now, kept)))


def _value_copy(b: torch.Tensor | None) -> torch.Tensor | None:
    return b.detach().clone() if b is not None and b.is_floating_point() else None


def _same_values(now: torch.Tensor | None, kept: torch.Tensor | None) -> bool:
    return kept is None or _same(now, kept)


def _versions(buffers: tuple) -> tuple[int, ...]:
    return tuple(-1 if b is None or b.is_inference() else b._version for b in buffers)


def eval_filter(module: nn.Module, settings: tuple,
                params: tuple[torch.Tensor | None, ...],
                compute: Callable[[], tuple[torch.Tensor, torch.Tensor | None]]
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``compute()`` (the expanded filter and per-slot bias of ``module``), or the entry kept
    from the last eval call when ``params`` (the values ``compute`` reads, as the module's
    attributes return them: a parametrized weight is its computed value), the module's
    buffers and ``settings`` are all still what they were then (see the module docstring)."""
    if (module.training or torch.is_grad_enabled() or torch.jit.is_tracing()
            or torch.compiler.is_compiling() or fake_mode_active()  # (no values to compare)
            or torch.autograd.forward_ad._current_level >= 0):  # (tangents: not in a copy)
        return compute()
    device_type = next(p.device.type for p in params if p is not None)
    if not reuses(device_type):
        return compute()
    # any other parameter of the module itself (a subclass whose filter also reads a gain of
    # its own, as the 3-D test cases' do): compared by value as the weight is
    params = params + tuple(p for k, p in module._parameters.items()
                            if p is not None and k not in ("weight", "bias"))
    buffers = tuple(module._buffers.values()) + tuple(integer_tables(module).values())
    amp = autocast_on(device_type)
    settings = (settings, torch.get_autocast_dtype(device_type) if amp else None)
    kept = module.__dict__.get(_ATTR)
    if kept is not None:
        k_settings, k_copies, k_buffers, k_versions, k_values, out = kept
        # plain tensors with the same values as when the entry was made (parameters: their
        # identity may change, e.g. a parametrized or pruned weight is a new tensor on every
        # read), and the same buffer objects at the same versions, with the same values
        if (k_settings == settings and len(k_copies) == len(params)
                and len(k_buffers) == len(buffers)
                and all(map(_plain, params))
                and all(map(operator.is_, buffers, k_buffers))
                and _versions(buffers) == k_versions
                and all(map(_same, params, k_copies))
                and all(map(_same_values, buffers, k_values))):
            return out
    if not (all(map(_plain, params)) and all(map(_plain, buffers))):
        return compute()
    # the copies are taken before the expansion and compared again after it: a write that
    # lands while it runs (another thread or process sharing the weights) keeps it out of the
    # entry, which would otherwise pair the old filter with the new values for good
    copies = tuple(None if p is None else p.detach().clone() for p in params)
    values = tuple(map(_value_copy, buffers))
    versions = _versions(buffers)
    out = compute()
    if (all(map(_same, params, copies)) and all(map(_same_values, buffers, values))
            and _versions(buffers) == versions):
        module.__dict__[_ATTR] = (settings, copies, buffers, versions, values, out)
    return out


def reuses(device_type: str) -> bool:
    """Whether a module on this device type keeps its eval filter: on the CPU only. On an
    accelerator the checks would synchronise host and device on every call (``torch.equal``
    returns a Python bool, so it waits for the queue), which costs more than the expansion's
    one or two kernels and stalls the host's run-ahead (the CUDA path of this check was never
    timed; the rule follows from the sync)."""
    return device_type == "cpu"


def drop(module: nn.Module) -> None:
    """Forget ``module``'s kept entry (on ``train()`` and when pickled)."""
    module.__dict__.pop(_ATTR, None)


class EvalFilterMixin(nn.Module):
    """Mixin for a module whose forward goes through :func:`eval_filter`: ``train()`` drops the
    kept entry (no memory held while training) and pickling leaves it out."""

    def train(self, mode: bool = True):
        drop(self)
        return super().train(mode)

    def __getstate__(self):
        state = super().__getstate__()
        state.pop(_ATTR, None)
        return state

