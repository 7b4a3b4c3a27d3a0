"""Module hooks carried from a layer to the layer that replaces it (``antialias``, ``export``),
as ``torch.ao.quantization``'s module swap carries them: a hook a user registered on a layer
(a feature extractor, a gradient probe) still fires on its replacement, which takes the same
input and gives an output of the same shape and meaning. Also the copy those tools make
(:func:`copied`), and the test both make before replacing a layer (:func:`own_forward`)."""

from __future__ import annotations

import copy
from collections import OrderedDict
from typing import TypeVar

from torch import nn

__all__ = ["carry_hooks", "copied", "without_hooks", "own_forward"]

#: The per-module hook tables of ``nn.Module`` (forward, pre-forward, backward), in the names
#: torch keeps them under (a table a torch version lacks is skipped).
_TABLES = ("_forward_pre_hooks", "_forward_pre_hooks_with_kwargs", "_forward_hooks",
           "_forward_hooks_with_kwargs", "_forward_hooks_always_called", "_backward_pre_hooks",
           "_backward_hooks")


def carry_hooks(old: nn.Module, new: nn.Module, *, share: bool = True) -> None:
    """Give ``new`` the hooks registered on ``old``. With ``share``, the tables themselves are
    handed over (``new`` is freshly built and has none of its own), so the handles the user
    holds (``handle.remove()``) still reach them; without, ``new`` gets copies (``old`` stays
    the user's, untied from ``new``)."""
    if not any(getattr(old, t, None) for t in _TABLES):
        return
    for table in _TABLES:
        hooks = old.__dict__.get(table)
        if hooks is None or table not in new.__dict__:
            continue
        if new.__dict__[table] or not share:  # (a new layer has no hooks of its own)
            new.__dict__[table].update(hooks)
        else:
            new.__dict__[table] = hooks
    if old.__dict__.get("_backward_hooks"):
        new._is_full_backward_hook = old._is_full_backward_hook


M = TypeVar("M", bound=nn.Module)


def without_hooks(module: M) -> M:
    """``module`` with empty hook tables (a copy of a replaced layer that becomes part of its
    replacement: the replacement fires the layer's hooks once, on its own output)."""
    for table in _TABLES:
        if table in module.__dict__:
            module.__dict__[table] = OrderedDict()
    return module


def copied(model: nn.Module, what: str, fix: str) -> nn.Module:
    """A deep copy of ``model`` for a tool that rewrites one (``antialias``, ``export``):
    torch refuses to copy a weight that ``prune`` or the legacy ``weight_norm`` computes, and
    its error names neither the tool nor the way out (``ValueError`` naming both, ``fix``)."""
    try:
        return copy.deepcopy(model)
    except RuntimeError as e:
        raise ValueError(f"{what} copies the model first, and torch cannot copy this one "
                         f"({e}); a pruned or legacy weight_norm layer holds a computed "
                         f"weight: {fix}") from e


def own_forward(m: nn.Module, library: str) -> str | None:
    """The name of the class of ``m`` that gives it a ``forward`` of its own, above the
    library's (the first class of its MRO whose module starts with ``library``, ``"torch."``
    or ``"equilayers."``), or ``None``. A replacement computes what the library's class
    computes: a user's subclass that adds a residual, a scale or TF "same" padding in its
    forward (timm's ``MaxPool2dSame``) would silently lose it."""
    for cls in type(m).__mro__:
        if cls.__module__.startswith(library):
            return None
        if "forward" in vars(cls):
            return cls.__name__
    return None
