"""The shape check of the parameters a module reads through tables or bases built for its
constructor's shapes (a group conv's gather indices and filter and group bases, a steerable
conv's basis, a tensor product's basis).

A parameter of another shape put in their place (``torch.func.functional_call(m, {"weight":
w})``, ``m.weight = nn.Parameter(w)``) was gathered through those tables as if it had the
built shape: a larger one ran and gave a meaningless output, a smaller one failed deep in the
gather (``IndexError``, "INDICES element is out of DATA bounds"). ``nn.Conv2d`` computes with
the tensor it is given; these modules cannot, so they compare the shapes on every call (a
comparison of tuples, no tensor op: it holds under ``torch.compile``, ``vmap`` and ``grad``,
where the shapes are static, and ``functional_call`` swaps the parameters per call) and raise
a ``ValueError`` naming the parameter, the shape built, the shape given and the fix.
"""

from __future__ import annotations

from typing import TypeVar

import torch
from torch import nn

__all__ = ["checked"]

_T = TypeVar("_T", torch.Tensor, torch.Tensor | None)


def checked(module: nn.Module, name: str, value: _T, shape: tuple[int, ...]) -> _T:
    """``value`` (``module``'s parameter ``name``, ``None`` for a module without it), after
    checking that its shape is ``shape``: ``ValueError`` otherwise."""
    if value is not None and tuple(value.shape) != shape:
        cls = type(module).__name__
        given = tuple(value.shape)
        raise ValueError(
            f"{cls}: {name} must have shape {shape}, the shape {cls}({module.extra_repr()}) "
            f"was built for (its index tables and bases read the {name} in that shape, so "
            f"another one would give a meaningless output); got {name} of shape {given}. "
            f"Pass a {name} of shape {shape} (to torch.func.functional_call, or as the new "
            f"nn.Parameter), or build a new {cls} whose arguments give {name} shape {given}")
    return value
